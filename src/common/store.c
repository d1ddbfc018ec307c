/* SPDX-License-Identifier: MIT */
/* cfscache: object store: opening it, looking objects up, removing them with what was derived
 * from them, and the observer told of names given and taken. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store-internal.h"
#include "common/store.h"

int cfs_store_dirfd(const struct cfs_store *store)
{
	return store->dirfd;
}

const char *cfs_store_path(const struct cfs_store *store)
{
	return store->path;
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

		if (strncmp(de->d_name, CFS_STORE_TMP_PREFIX, strlen(CFS_STORE_TMP_PREFIX)) != 0)
			continue;
		tfd = openat(store->tmpfd, de->d_name,
		             O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (tfd < 0)
			continue;
		/* A live writer (of this or another process) holds its file locked. */
		if (flock(tfd, LOCK_EX | LOCK_NB) == 0 &&
		    unlinkat(store->tmpfd, de->d_name, 0) == 0)
			removed++;
		close(tfd);
	}
	closedir(dir);
	return removed;
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
		       : fd == -ENOTDIR                             ? -ENOENT
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

/* Opens the derived files' directory of objects with prefix @prefix (two hex digits). */
static int open_derived_dir(struct cfs_store *store, const char *prefix)
{
	char dir[sizeof(CFS_STORE_DERIVED_DIR) + 3];

	snprintf(dir, sizeof(dir), "%s/%.2s", CFS_STORE_DERIVED_DIR, prefix);
	return cfs_store_openat_beneath(store->dirfd, dir, O_RDONLY | O_DIRECTORY);
}

/* Whether @name (in a prefix directory of derived files) is a derived file, XX/<62hex>.<suffix>
 * with @prefix = XX; *digest_ret gets its object's digest. */
static bool derived_name(const char *prefix, const char *name, uint8_t digest_ret[CFS_DIGEST_SIZE])
{
	char rel[CFS_NAME_PATH_LEN + 1];
	size_t rest = CFS_NAME_PATH_LEN - 3;

	if (strlen(name) <= rest + 1 || name[rest] != '.')
		return false;
	snprintf(rel, sizeof(rel), "%.2s/%.*s", prefix, (int)rest, name);
	return cfs_name_parse_path(rel, strlen(rel), digest_ret) == 0;
}

void cfs_store_remove_derived(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE])
{
	char rel[CFS_NAME_PATH_LEN + 1];
	struct dirent *de;
	uint8_t d[CFS_DIGEST_SIZE];
	DIR *dir;
	int fd;

	cfs_name_format_path(digest, rel);
	fd = open_derived_dir(store, rel);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	/* Suffixes are the makers' business: every XX/<62hex>.* goes. */
	while ((de = readdir(dir)))
		if (derived_name(rel, de->d_name, d) && memcmp(d, digest, CFS_DIGEST_SIZE) == 0)
			unlinkat(fd, de->d_name, 0);
	closedir(dir);
}

/* Sweeps one prefix directory of derived files (see cfs_store_sweep_derived). */
static int sweep_derived_dir(struct cfs_store *store, const char *prefix, time_t tmp_before,
                             uint64_t *bytes)
{
	struct dirent *de;
	struct stat st;
	int fd, removed = 0;
	DIR *dir;

	fd = open_derived_dir(store, prefix);
	if (fd < 0)
		return 0;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		const char *n = de->d_name;
		uint8_t d[CFS_DIGEST_SIZE];
		bool orphan = false;

		if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (derived_name(prefix, n, d))
			orphan = cfs_store_lookup(store, d, NULL) == -ENOENT;
		else if (n[0] == '.')
			/* Unfinished: a crashed maker's when old (a live one names its own soon).
			 */
			orphan = st.st_mtime < tmp_before;
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
	struct stat st;
	int removed = 0;

	if (bytes_ret)
		*bytes_ret = 0;
	if (fstatat(store->dirfd, CFS_STORE_DERIVED_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	for (unsigned i = 0; i < 256 && removed >= 0; i++) {
		char prefix[3];
		int r;

		snprintf(prefix, sizeof(prefix), "%02x", i);
		r = sweep_derived_dir(store, prefix, tmp_before, &bytes);
		removed = r < 0 ? r : removed + r;
	}
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
	cfs_store_remove_derived(store, digest);
	if (store->observer.removed)
		store->observer.removed(store->observer_ctx, digest);
	return 0;
}

void cfs_store_set_observer(struct cfs_store *store, const struct cfs_store_observer *obs,
                            void *ctx)
{
	store->observer = obs ? *obs : (struct cfs_store_observer){0};
	store->observer_ctx = obs ? ctx : NULL;
}

bool cfs_store_observed_by(const struct cfs_store *store, const void *ctx)
{
	return store->observer_ctx == ctx;
}
