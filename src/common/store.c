/* SPDX-License-Identifier: MIT */
/* cfscache: object store: verified inserts through locked temp files, atomic no-replace renames. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fsverity.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"

#define TMP_PREFIX "tmp."
/* Large objects: hash on a second core from this size on, and start writeback every chunk so
 * the final flush has little left to wait for. */
#define ASYNC_HASH_AT (8u << 20)
#define WRITEBACK_CHUNK (8u << 20)

#define STORE_READY_MAX 32

struct cfs_store {
	int dirfd;
	int tmpfd;
	char *path;
	/* Which prefix directories are known to exist, so inserts skip mkdirat. */
	_Atomic unsigned char have_prefix[256];
	/* Whether FS_IOC_ENABLE_VERITY is worth trying on this filesystem. */
	_Atomic int verity_state; /* 0 unknown, 1 works, -1 unsupported */
	pid_t pid; /* in temp names, read once (a name taken already is only retried) */
	/* Temp files made ahead of need (cfs_store_prepare): created, locked, empty. */
	pthread_mutex_t ready_lock;
	struct ready_tmp {
		int fd, lockfd;
		char name[64];
	} ready[STORE_READY_MAX];
	unsigned nready;
};

struct cfs_store_writer {
	struct cfs_store *store;
	struct cfs_digest_ctx *digest;
	int fd;     /* for writing, until verified */
	int lockfd; /* read-only, holds the temp file's lock from creation to the end */
	char tmpname[64];
	bool has_expected, verified, committed, async_tried, sealed;
	uint64_t size;
	uint64_t writeback_from; /* bytes before this offset were handed to writeback */
	uint8_t expected[CFS_DIGEST_SIZE];
	uint8_t computed[CFS_DIGEST_SIZE];
};

static atomic_uint tmp_counter;

static int writer_create_tmp(struct cfs_store_writer *w);

int cfs_store_dirfd(const struct cfs_store *store)
{
	return store->dirfd;
}

const char *cfs_store_path(const struct cfs_store *store)
{
	return store->path;
}

int cfs_store_open(const char *path, unsigned flags, struct cfs_store **store_ret)
{
	struct cfs_store *store = NULL;
	int r;

	store = calloc(1, sizeof(*store));
	if (!store)
		return -ENOMEM;
	store->dirfd = store->tmpfd = -1;
	store->pid = getpid();
	pthread_mutex_init(&store->ready_lock, NULL);
	store->path = strdup(path);
	if (!store->path) {
		r = -ENOMEM;
		goto fail;
	}
	if ((flags & CFS_STORE_CREATE) && mkdir(path, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		cfs_err("cannot create store %s: %s", path, strerror(-r));
		goto fail;
	}
	store->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store->dirfd < 0) {
		r = -errno;
		goto fail;
	}
	if (mkdirat(store->dirfd, CFS_STORE_TMPDIR, 0700) < 0 && errno != EEXIST) {
		/* A read-only store can still be served and read. */
		if (errno != EROFS && errno != EACCES) {
			r = -errno;
			goto fail;
		}
	}
	store->tmpfd = openat(store->dirfd, CFS_STORE_TMPDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!(flags & CFS_STORE_NO_CLEAN) && store->tmpfd >= 0) {
		r = cfs_store_clean_temp(store);
		if (r > 0)
			cfs_info("removed %d stale temporary file(s) from %s", r, path);
	}
	*store_ret = store;
	return 0;
fail:
	cfs_store_free(store);
	return r;
}

void cfs_store_free(struct cfs_store *store)
{
	if (!store)
		return;
	for (unsigned i = 0; i < store->nready; i++) {
		unlinkat(store->tmpfd, store->ready[i].name, 0);
		if (store->ready[i].lockfd != store->ready[i].fd)
			close(store->ready[i].lockfd);
		close(store->ready[i].fd);
	}
	pthread_mutex_destroy(&store->ready_lock);
	if (store->tmpfd >= 0)
		close(store->tmpfd);
	if (store->dirfd >= 0)
		close(store->dirfd);
	free(store->path);
	free(store);
}

int cfs_store_openat_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .mode = (flags & O_CREAT) ? 0644 : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	const char *slash;
	char dir[16];
	int fd, dfd;

	fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd >= 0)
		return fd;
	if (errno != ENOSYS && errno != EPERM)
		return -errno;
	/* Older kernels: the only directory level is the two-hex prefix; open it without
	 * following a symlink, then the file inside it the same way. */
	slash = strchr(rel, '/');
	if (!slash || (size_t)(slash - rel) >= sizeof(dir))
		return -EINVAL;
	memcpy(dir, rel, (size_t)(slash - rel));
	dir[slash - rel] = '\0';
	dfd = openat(dirfd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = openat(dfd, slash + 1, flags | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		fd = -errno;
	close(dfd);
	return fd;
}

int cfs_store_lookup(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE],
		     struct stat *st_ret)
{
	char rel[CFS_NAME_PATH_LEN + 1];
	struct stat st;
	int fd, r = 0;

	cfs_name_format_path(digest, rel);
	/* O_PATH: no open of the file itself; a symlinked prefix directory is refused. */
	fd = cfs_store_openat_beneath(store->dirfd, rel, O_PATH);
	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd == -ELOOP || fd == -EXDEV ? -EUCLEAN : fd;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (!S_ISREG(st.st_mode))
		r = -EUCLEAN;
	else if (st_ret)
		*st_ret = st;
	close(fd);
	return r;
}

int cfs_store_open_object(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE],
			  int *fd_ret)
{
	char rel[CFS_NAME_PATH_LEN + 1];
	struct stat st;
	int fd;

	cfs_name_format_path(digest, rel);
	fd = cfs_store_openat_beneath(store->dirfd, rel, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd == -ELOOP || fd == -ENXIO || fd == -EXDEV ? -EUCLEAN
		       : fd == -ENOTDIR				      ? -ENOENT
								      : fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EUCLEAN;
	}
	/* O_NONBLOCK only guarded the open against FIFOs. */
	fcntl(fd, F_SETFL, 0);
	*fd_ret = fd;
	return 0;
}

void cfs_store_remove_derived(struct cfs_store *store, const char *relpath)
{
	char dir[sizeof(CFS_STORE_ZSTD_DIR) + 3], name[CFS_NAME_PATH_LEN + 8];
	int fd;

	if (strlen(relpath) != CFS_NAME_PATH_LEN || relpath[2] != '/')
		return;
	snprintf(dir, sizeof(dir), "%s/%.2s", CFS_STORE_ZSTD_DIR, relpath);
	fd = cfs_store_openat_beneath(store->dirfd, dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return;
	snprintf(name, sizeof(name), "%s.zst", relpath + 3);
	unlinkat(fd, name, 0);
	snprintf(name, sizeof(name), "%s.raw", relpath + 3);
	unlinkat(fd, name, 0);
	close(fd);
}

/* Sweeps one prefix directory of derived files (see cfs_store_sweep_derived). */
static int sweep_derived_dir(struct cfs_store *store, int zfd, const char *prefix,
                             time_t tmp_before, uint64_t *bytes)
{
	char rel[CFS_NAME_PATH_LEN + 1];
	struct dirent *de;
	struct stat st;
	int fd, removed = 0;
	DIR *dir;

	fd = cfs_store_openat_beneath(zfd, prefix, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 0;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		bool orphan = false;

		if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (strncmp(n, ".tmp-", 5) == 0) {
			/* Left by a crashed server (a live one renames its own soon). */
			orphan = st.st_mtime < tmp_before;
		} else if (len == CFS_NAME_PATH_LEN - 3 + 4 &&
		           (strcmp(n + len - 4, ".zst") == 0 || strcmp(n + len - 4, ".raw") == 0)) {
			uint8_t d[CFS_DIGEST_SIZE];

			snprintf(rel, sizeof(rel), "%.2s/%.62s", prefix, n);
			orphan = cfs_name_parse_path(rel, strlen(rel), d) == 0 &&
			         cfs_store_lookup(store, d, NULL) == -ENOENT;
		}
		if (orphan && unlinkat(fd, n, 0) == 0) {
			*bytes += (uint64_t)st.st_size;
			removed++;
		}
	}
	closedir(dir);
	return removed;
}

int cfs_store_sweep_derived(struct cfs_store *store, unsigned tmp_age_secs, uint64_t *bytes_ret)
{
	time_t tmp_before = time(NULL) - (time_t)tmp_age_secs;
	uint64_t bytes = 0;
	int zfd, removed = 0;

	zfd = cfs_store_openat_beneath(store->dirfd, CFS_STORE_ZSTD_DIR, O_RDONLY | O_DIRECTORY);
	if (zfd < 0) {
		if (bytes_ret)
			*bytes_ret = 0;
		return zfd == -ENOENT ? 0 : zfd;
	}
	for (unsigned i = 0; i < 256 && removed >= 0; i++) {
		char prefix[3];
		int r;

		snprintf(prefix, sizeof(prefix), "%02x", i);
		r = sweep_derived_dir(store, zfd, prefix, tmp_before, &bytes);
		removed = r < 0 ? r : removed + r;
	}
	close(zfd);
	if (bytes_ret)
		*bytes_ret = bytes;
	return removed;
}

int cfs_store_remove(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE])
{
	char rel[CFS_NAME_PATH_LEN + 1];

	cfs_name_format_path(digest, rel);
	if (unlinkat(store->dirfd, rel, 0) < 0)
		return errno == ENOTDIR ? -ENOENT : -errno;
	cfs_store_remove_derived(store, rel);
	return 0;
}

int cfs_store_sync(struct cfs_store *store)
{
	return syncfs(store->dirfd) < 0 ? -errno : 0;
}

int cfs_store_clean_temp(struct cfs_store *store)
{
	DIR *dir;
	struct dirent *de;
	int fd, removed = 0;

	if (store->tmpfd < 0)
		return 0;
	fd = openat(store->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		int tfd;

		if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
			continue;
		tfd = openat(store->tmpfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (tfd < 0)
			continue;
		/* A live writer (of this or another process) holds its file locked. */
		if (flock(tfd, LOCK_EX | LOCK_NB) == 0 && unlinkat(store->tmpfd, de->d_name, 0) == 0)
			removed++;
		close(tfd);
	}
	closedir(dir);
	return removed;
}

static int writer_create_tmp(struct cfs_store_writer *w)
{
	struct cfs_store *store = w->store;

	if (store->tmpfd < 0)
		return -EROFS;
	for (int attempt = 0; attempt < 100; attempt++) {
		struct stat st;
		unsigned n = atomic_fetch_add(&tmp_counter, 1);
		int fd, lockfd;

		snprintf(w->tmpname, sizeof(w->tmpname), TMP_PREFIX "%d.%u.%lx", (int)store->pid, n,
			 (unsigned long)(cfs_now_ns() & 0xffffff));
		fd = openat(store->tmpfd, w->tmpname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		/* Where fs-verity may work, the lock lives on a read-only descriptor of its own, so
		 * that the writable one can go (verity wants no writers) without a moment unlocked
		 * for a cleaner; elsewhere the writable one keeps it. Lock, then make sure a
		 * concurrent cleaner did not unlink the name first. */
		lockfd = atomic_load(&store->verity_state) < 0
				 ? fd
				 : openat(store->tmpfd, w->tmpname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0 || fstat(lockfd, &st) < 0) {
			int r = -errno;
			if (lockfd >= 0 && lockfd != fd)
				close(lockfd);
			close(fd);
			unlinkat(store->tmpfd, w->tmpname, 0);
			return r;
		}
		if (st.st_nlink == 0) {
			if (lockfd != fd)
				close(lockfd);
			close(fd);
			continue;
		}
		/* Modes are those of mkcomposefs, whatever the umask (usually it took nothing). */
		if ((st.st_mode & 07777) != 0644 && fchmod(fd, 0644) < 0) {
			int r = -errno;
			if (lockfd != fd)
				close(lockfd);
			close(fd);
			unlinkat(store->tmpfd, w->tmpname, 0);
			return r;
		}
		w->fd = fd;
		w->lockfd = lockfd;
		return 0;
	}
	return -EEXIST;
}

int cfs_store_prepare(struct cfs_store *store, unsigned n)
{
	n = n < STORE_READY_MAX ? n : STORE_READY_MAX;
	for (;;) {
		struct cfs_store_writer w = { .store = store, .fd = -1, .lockfd = -1 };
		unsigned have;
		int r;

		pthread_mutex_lock(&store->ready_lock);
		have = store->nready;
		pthread_mutex_unlock(&store->ready_lock);
		if (have >= n)
			return (int)have;
		r = writer_create_tmp(&w);
		if (r < 0)
			return r;
		pthread_mutex_lock(&store->ready_lock);
		if (store->nready < STORE_READY_MAX) {
			store->ready[store->nready].fd = w.fd;
			store->ready[store->nready].lockfd = w.lockfd;
			memcpy(store->ready[store->nready].name, w.tmpname, sizeof(w.tmpname));
			store->nready++;
			w.fd = w.lockfd = -1;
		}
		pthread_mutex_unlock(&store->ready_lock);
		if (w.fd >= 0) {
			unlinkat(store->tmpfd, w.tmpname, 0);
			if (w.lockfd != w.fd)
				close(w.lockfd);
			close(w.fd);
		}
	}
}

unsigned cfs_store_prepared(struct cfs_store *store)
{
	unsigned n;

	pthread_mutex_lock(&store->ready_lock);
	n = store->nready;
	pthread_mutex_unlock(&store->ready_lock);
	return n;
}

/* Takes a temp file made ahead of need, if there is one. */
static bool writer_take_ready(struct cfs_store_writer *w)
{
	struct cfs_store *store = w->store;
	bool got = false;

	pthread_mutex_lock(&store->ready_lock);
	if (store->nready) {
		store->nready--;
		w->fd = store->ready[store->nready].fd;
		w->lockfd = store->ready[store->nready].lockfd;
		memcpy(w->tmpname, store->ready[store->nready].name, sizeof(w->tmpname));
		got = true;
	}
	pthread_mutex_unlock(&store->ready_lock);
	return got;
}

int cfs_store_writer_new(struct cfs_store *store, const uint8_t *expected,
			 struct cfs_store_writer **writer_ret)
{
	struct cfs_store_writer *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->store = store;
	w->fd = w->lockfd = -1;
	if (expected) {
		w->has_expected = true;
		memcpy(w->expected, expected, CFS_DIGEST_SIZE);
	}
	r = cfs_digest_new(&w->digest);
	if (r < 0)
		goto fail;
	r = writer_take_ready(w) ? 0 : writer_create_tmp(w);
	if (r < 0)
		goto fail;
	*writer_ret = w;
	return 0;
fail:
	w->tmpname[0] = '\0';
	cfs_store_writer_free(w);
	return r;
}

int cfs_store_writer_write(struct cfs_store_writer *w, const void *buf, size_t len)
{
	uint64_t size;
	int r;

	if (w->fd < 0 || w->verified)
		return -EBADF;
	r = cfs_write_full(w->fd, buf, len);
	if (r < 0)
		return r;
	size = w->size;
	if (!w->async_tried && size + len >= ASYNC_HASH_AT) {
		w->async_tried = true;
		cfs_digest_start_async(w->digest); /* stays synchronous if it cannot */
	}
	cfs_digest_update(w->digest, buf, len);
	size += len;
	w->size = size;
	if (size - w->writeback_from >= WRITEBACK_CHUNK) {
		sync_file_range(w->fd, (off_t)w->writeback_from, (off_t)(size - w->writeback_from),
				SYNC_FILE_RANGE_WRITE);
		w->writeback_from = size;
	}
	return 0;
}

uint64_t cfs_store_writer_size(const struct cfs_store_writer *w)
{
	return w->size;
}

int cfs_store_writer_reset(struct cfs_store_writer *w)
{
	if (w->fd < 0 || w->verified)
		return -EBADF;
	if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
		return -errno;
	cfs_digest_reset(w->digest);
	w->size = 0;
	w->async_tried = false;
	w->writeback_from = 0;
	return 0;
}

int cfs_store_writer_verify(struct cfs_store_writer *w, uint8_t digest_ret[CFS_DIGEST_SIZE])
{
	if (w->fd < 0 || w->verified)
		return -EBADF;
	cfs_digest_final(w->digest, w->computed);
	if (digest_ret)
		memcpy(digest_ret, w->computed, CFS_DIGEST_SIZE);
	if (w->has_expected && memcmp(w->computed, w->expected, CFS_DIGEST_SIZE) != 0)
		return -EBADMSG;
	w->verified = true;
	/* Verified writers may wait long for a group commit: keep them small (no more writes:
	 * the lock's descriptor is enough for the flush, verity and the rename). */
	cfs_digest_free(w->digest);
	w->digest = NULL;
	if (w->fd != w->lockfd)
		close(w->fd);
	w->fd = -1;
	return 0;
}

static void try_enable_verity(struct cfs_store_writer *w)
{
	struct cfs_store *store = w->store;
	struct fsverity_enable_arg arg = {
		.version = 1,
		.hash_algorithm = FS_VERITY_HASH_ALG_SHA256,
		.block_size = CFS_VERITY_BLOCK_SIZE,
	};

	if (atomic_load(&store->verity_state) < 0)
		return;
	/* The writable descriptor is gone (verify closed it, the lock is on its own read-only
	 * one): verity allows no writers. */
	if (ioctl(w->lockfd, FS_IOC_ENABLE_VERITY, &arg) == 0) {
		atomic_store(&store->verity_state, 1);
	} else if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL) {
		if (atomic_exchange(&store->verity_state, -1) == 0)
			cfs_info("fs-verity not supported on %s; objects are verified by hash only",
				 store->path);
	} else {
		cfs_warn("enabling fs-verity on a new object failed: %s", strerror(errno));
	}
}

static int ensure_prefix(struct cfs_store *store, uint8_t prefix)
{
	char name[3];

	if (atomic_load(&store->have_prefix[prefix]))
		return 0;
	snprintf(name, sizeof(name), "%02x", prefix);
	if (mkdirat(store->dirfd, name, 0755) < 0) {
		if (errno != EEXIST)
			return -errno;
	} else if (fchmodat(store->dirfd, name, 0755, 0) < 0) {
		return -errno;
	}
	atomic_store(&store->have_prefix[prefix], 1);
	return 0;
}

/* Moves the temp file under its final name unless something is there already. */
static int link_noreplace(struct cfs_store *store, const char *tmpname, const char *rel)
{
	if (renameat2(store->tmpfd, tmpname, store->dirfd, rel, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* Filesystems without RENAME_NOREPLACE: link fails with EEXIST just the same. */
	if (linkat(store->tmpfd, tmpname, store->dirfd, rel, 0) < 0)
		return -errno;
	unlinkat(store->tmpfd, tmpname, 0);
	return 0;
}

/* Enables fs-verity (where the filesystem has it) on a verified temp file, once, before anything
 * may open it by another name. */
static void writer_seal(struct cfs_store_writer *w)
{
	if (w->sealed)
		return;
	try_enable_verity(w);
	w->sealed = true;
}

int cfs_store_writer_link(struct cfs_store_writer *w, int dirfd, const char *rel)
{
	if (!w->verified || w->committed)
		return -EINVAL;
	writer_seal(w);
	if (linkat(w->store->tmpfd, w->tmpname, dirfd, rel, 0) < 0)
		return -errno;
	return 0;
}

int cfs_store_writer_commit(struct cfs_store_writer *w, unsigned flags, bool *existed_ret)
{
	struct cfs_store *store = w->store;
	char rel[CFS_NAME_PATH_LEN + 1];
	bool existed = false;
	int r;

	if (!w->verified || w->committed)
		return -EINVAL;
	if (!(flags & CFS_STORE_NOSYNC) && fsync(w->lockfd) < 0)
		return -errno;
	writer_seal(w);
	/* The lock is held until the name is the object's: a cleaner never sees it unlocked. */
	r = ensure_prefix(store, w->computed[0]);
	if (r < 0)
		return r;
	cfs_name_format_path(w->computed, rel);
	r = link_noreplace(store, w->tmpname, rel);
	if (r == -ENOENT) {
		/* The prefix directory was removed under us (e.g. by hand): make it again. */
		atomic_store(&store->have_prefix[w->computed[0]], 0);
		r = ensure_prefix(store, w->computed[0]);
		if (r == 0)
			r = link_noreplace(store, w->tmpname, rel);
	}
	if (r == -EEXIST) {
		struct stat st;

		/* Present already: fine if it is a regular file, an error if something else. */
		r = fstatat(store->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
			    ? 0
			    : -EUCLEAN;
		existed = true;
		if (r == 0)
			unlinkat(store->tmpfd, w->tmpname, 0);
	}
	if (r < 0)
		return r;
	w->committed = true;
	if (existed_ret)
		*existed_ret = existed;
	return 0;
}

void cfs_store_writer_free(struct cfs_store_writer *w)
{
	if (!w)
		return;
	if (!w->committed && w->tmpname[0] && w->store->tmpfd >= 0)
		unlinkat(w->store->tmpfd, w->tmpname, 0);
	if (w->fd >= 0 && w->fd != w->lockfd)
		close(w->fd);
	if (w->lockfd >= 0)
		close(w->lockfd);
	cfs_digest_free(w->digest);
	free(w);
}

int cfs_store_writer_write_fd(struct cfs_store_writer *w, int fd, void *buf, size_t bufsize)
{
	for (;;) {
		ssize_t n = cfs_read_full(fd, buf, bufsize);
		int r;

		if (n <= 0)
			return (int)n;
		r = cfs_store_writer_write(w, buf, (size_t)n);
		if (r < 0)
			return r;
	}
}

int cfs_store_insert_fd(struct cfs_store *store, int fd, const uint8_t *expected,
			uint8_t digest_ret[CFS_DIGEST_SIZE], bool *existed_ret)
{
	struct cfs_store_writer *w = NULL;
	size_t bufsize = 256 * 1024;
	uint8_t *buf = malloc(bufsize);
	int r;

	if (!buf)
		return -ENOMEM;
	r = cfs_store_writer_new(store, expected, &w);
	if (r < 0)
		goto out;
	r = cfs_store_writer_write_fd(w, fd, buf, bufsize);
	if (r < 0)
		goto out;
	r = cfs_store_writer_verify(w, digest_ret);
	if (r < 0)
		goto out;
	r = cfs_store_writer_commit(w, 0, existed_ret);
out:
	cfs_store_writer_free(w);
	free(buf);
	return r;
}

/* Removes @name in @dfd: unlinks a file or symlink (never followed), empties and removes a
 * directory, staying on the store's filesystem @dev and at most STRAY_MAX_DEPTH levels down. */
#define STRAY_MAX_DEPTH 32
static int remove_tree_at(int dfd, const char *name, dev_t dev, unsigned depth)
{
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int fd, r = 0;

	if (unlinkat(dfd, name, 0) == 0)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth >= STRAY_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_dev != dev) {
		r = st.st_dev != dev ? -EXDEV : -errno;
		close(fd);
		return r;
	}
	dir = fdopendir(fd);
	if (!dir) {
		r = -errno;
		close(fd);
		return r;
	}
	while ((de = readdir(dir))) {
		int q;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		q = remove_tree_at(fd, de->d_name, dev, depth + 1);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(dir);
	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

int cfs_store_remove_stray(struct cfs_store *store, const char *relpath)
{
	const char *slash = strchr(relpath, '/');
	struct stat st;
	int pfd, r;

	if (!*relpath || strncmp(relpath, CFS_STORE_RESERVED_PREFIX,
				 strlen(CFS_STORE_RESERVED_PREFIX)) == 0)
		return -EPERM;
	if (fstat(store->dirfd, &st) < 0)
		return -errno;
	if (!slash)
		return strcmp(relpath, ".") && strcmp(relpath, "..")
			       ? remove_tree_at(store->dirfd, relpath, st.st_dev, 0)
			       : -EINVAL;
	/* Inside a prefix directory: XX/NAME, one level, no symlink on the way. */
	if (slash - relpath != 2 || strchr(slash + 1, '/') || !slash[1] ||
	    strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	pfd = cfs_store_openat_beneath(store->dirfd, (char[]){ relpath[0], relpath[1], '\0' },
				       O_RDONLY | O_DIRECTORY);
	if (pfd < 0)
		return pfd;
	r = remove_tree_at(pfd, slash + 1, st.st_dev, 0);
	close(pfd);
	return r;
}

static int iter_prefix(struct cfs_store *store, unsigned prefix, bool all, cfs_store_iter_fn fn,
		       void *userdata)
{
	char pname[4], rel[CFS_NAME_PATH_LEN + 256];
	struct dirent *de;
	DIR *dir;
	int fd, r = 0;

	snprintf(pname, sizeof(pname), "%02x", prefix & 0xffu);
	fd = openat(store->dirfd, pname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* A file or a symlink under a prefix name is not followed: the top-level pass reports it
	 * as a stray. */
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		struct cfs_store_entry e = { .relpath = rel };

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", pname, de->d_name);
		if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed under us */
		if (S_ISREG(e.st.st_mode) &&
		    cfs_name_parse_rest(prefix, de->d_name, strlen(de->d_name), e.digest) == 0)
			e.kind = CFS_STORE_ENTRY_OBJECT;
		else if (all)
			e.kind = CFS_STORE_ENTRY_STRAY;
		else
			continue;
		r = fn(&e, userdata);
		if (r)
			break;
	}
	closedir(dir);
	return r;
}

int cfs_store_iter(struct cfs_store *store, bool all, cfs_store_iter_fn fn, void *userdata)
{
	char rel[300];
	int r;

	for (unsigned p = 0; p < 256; p++) {
		r = iter_prefix(store, p, all, fn, userdata);
		if (r)
			return r;
	}
	if (!all)
		return 0;
	/* Everything at the top that is not a prefix directory, and the temp files. */
	{
		int fd = openat(store->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *de;
		DIR *dir;

		if (fd < 0)
			return -errno;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return -errno;
		}
		r = 0;
		while (!r && (de = readdir(dir))) {
			struct cfs_store_entry e = { .relpath = rel, .kind = CFS_STORE_ENTRY_STRAY };
			unsigned prefix;

			/* ".cfs-*" names belong to cfscache (temp files, zstd side files). */
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			    strncmp(de->d_name, CFS_STORE_RESERVED_PREFIX,
				    strlen(CFS_STORE_RESERVED_PREFIX)) == 0)
				continue;
			if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (S_ISDIR(e.st.st_mode) &&
			    cfs_name_parse_prefix(de->d_name, strlen(de->d_name), &prefix) == 0)
				continue;
			/* mkfs makes it when the store is the root of its own filesystem. */
			if (S_ISDIR(e.st.st_mode) && strcmp(de->d_name, "lost+found") == 0)
				continue;
			snprintf(rel, sizeof(rel), "%s", de->d_name);
			r = fn(&e, userdata);
		}
		closedir(dir);
		if (r)
			return r;
	}
	if (store->tmpfd >= 0) {
		int fd = openat(store->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *de;
		DIR *dir;

		if (fd < 0)
			return -errno;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return -errno;
		}
		r = 0;
		while (!r && (de = readdir(dir))) {
			struct cfs_store_entry e = { .relpath = rel, .kind = CFS_STORE_ENTRY_TEMP };

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			snprintf(rel, sizeof(rel), CFS_STORE_TMPDIR "/%s", de->d_name);
			r = fn(&e, userdata);
		}
		closedir(dir);
	}
	return r;
}

static int usage_cb(const struct cfs_store_entry *e, void *userdata)
{
	struct cfs_store_usage *u = userdata;

	u->objects++;
	u->bytes += (uint64_t)e->st.st_size;
	u->disk_bytes += (uint64_t)e->st.st_blocks * 512;
	return 0;
}

int cfs_store_usage(struct cfs_store *store, struct cfs_store_usage *usage_ret)
{
	struct cfs_store_usage u = { 0 };
	int r = cfs_store_iter(store, false, usage_cb, &u);

	if (r < 0)
		return r;
	*usage_ret = u;
	return 0;
}

int cfs_store_batch_commit(struct cfs_store_batch *b)
{
	int r;

	if (b->n == 0)
		return 0;
	r = cfs_store_sync(b->store);
	for (size_t i = 0; i < b->n; i++) {
		uint64_t size = cfs_store_writer_size(b->w[i]);
		bool existed = false;

		if (r == 0)
			r = cfs_store_writer_commit(b->w[i], CFS_STORE_NOSYNC, &existed);
		if (r == 0 && existed) {
			b->present++;
			b->bytes_present += size;
		} else if (r == 0) {
			b->added++;
			b->bytes_added += size;
		}
		cfs_store_writer_free(b->w[i]);
	}
	b->n = 0;
	return r;
}

int cfs_store_batch_add(struct cfs_store_batch *b, struct cfs_store_writer *w)
{
	b->w[b->n++] = w;
	return b->n == CFS_STORE_BATCH_MAX ? cfs_store_batch_commit(b) : 0;
}

void cfs_store_batch_discard(struct cfs_store_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		cfs_store_writer_free(b->w[i]);
	b->n = 0;
}
