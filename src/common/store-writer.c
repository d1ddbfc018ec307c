/* SPDX-License-Identifier: MIT */
/* cfscache: store writers: locked temp files in the store's own filesystem, hashed while they
 * are written and verified before a transaction may name them; temp files made ahead. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fsverity.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/store-internal.h"
#include "common/store.h"
#include "common/util.h"

/* Large objects: hash on a second core from this size on, and start writeback every chunk so
 * the final flush has little left to wait for. */
#define ASYNC_HASH_AT (8u << 20)
#define WRITEBACK_CHUNK (8u << 20)

static atomic_uint tmp_counter;

static int writer_create_tmp(struct cfs_store_writer *w)
{
	struct cfs_store *store = w->store;

	if (store->tmpfd < 0)
		return -EROFS;
	for (int attempt = 0; attempt < 100; attempt++) {
		struct stat st;
		unsigned n = atomic_fetch_add(&tmp_counter, 1);
		int fd, lockfd;

		snprintf(w->tmpname, sizeof(w->tmpname), CFS_STORE_TMP_PREFIX "%d.%u.%lx",
		         (int)store->pid, n, (unsigned long)(cfs_now_ns() & 0xffffff));
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
	n = n < CFS_STORE_READY_MAX ? n : CFS_STORE_READY_MAX;
	for (;;) {
		struct cfs_store_writer w = {.store = store, .fd = -1, .lockfd = -1};
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
		if (store->nready < CFS_STORE_READY_MAX) {
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

	if (w->state != WRITER_OPEN)
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
	if (w->state != WRITER_OPEN)
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
	if (w->state != WRITER_OPEN)
		return -EBADF;
	cfs_digest_final(w->digest, w->computed);
	if (digest_ret)
		memcpy(digest_ret, w->computed, CFS_DIGEST_SIZE);
	if (w->has_expected && memcmp(w->computed, w->expected, CFS_DIGEST_SIZE) != 0)
		return -EBADMSG;
	w->state = WRITER_VERIFIED;
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

void cfs_store_writer_seal(struct cfs_store_writer *w)
{
	if (w->sealed)
		return;
	try_enable_verity(w);
	w->sealed = true;
}

int cfs_store_writer_result(const struct cfs_store_writer *w, bool *existed_ret)
{
	if (w->state == WRITER_COMMITTED && existed_ret)
		*existed_ret = w->existed;
	return w->state == WRITER_COMMITTED ? 0
	       : w->state == WRITER_FAILED  ? w->result
	                                    : -EINPROGRESS;
}

int cfs_store_writer_link(struct cfs_store_writer *w, int dirfd, const char *rel)
{
	if (w->state != WRITER_VERIFIED && w->state != WRITER_FAILED)
		return -EINVAL;
	cfs_store_writer_seal(w);
	if (linkat(w->store->tmpfd, w->tmpname, dirfd, rel, 0) < 0)
		return -errno;
	return 0;
}

void cfs_store_writer_free(struct cfs_store_writer *w)
{
	if (!w)
		return;
	if (w->state != WRITER_COMMITTED && w->tmpname[0] && w->store->tmpfd >= 0)
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
