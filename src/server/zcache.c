/* SPDX-License-Identifier: MIT */
/* cfscache: zstd side files: compress an object once, keep the result beside the store. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"
#include "server/zcache.h"

#define ZC_CHUNK (128 * 1024)
#define ZC_MIN_SIZE 256
/* Worth it only when the encoding saves at least a tenth. */
#define ZC_WORTH(csize, size) ((csize)*10 < (uint64_t)(size)*9)

/* Objects above this size are compressed by a background thread, not in the event loop:
 * their first answers are identity, later ones zstd. */
#define ZC_INLINE_MAX (1024 * 1024)
#define ZC_QUEUE 64

/* A finished side file to flush and rename: names relative to the side-file directory. */
struct zc_commit {
	char tmp[CFS_NAME_PATH_LEN + 48];
	char rel[CFS_NAME_PATH_LEN + 8];
};

struct cfs_zcache {
	int dirfd, store_fd;
	int level;
	uint64_t max_size;
	atomic_uint tmp_seq;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t tid;
	bool started, stopping;
	unsigned qhead, qlen;
	uint8_t queue[ZC_QUEUE][CFS_DIGEST_SIZE];
	/* Side files made by an event loop, waiting for the background thread to flush and name
	 * them (the loop serves them from their temp file meanwhile). */
	unsigned chead, clen;
	struct zc_commit commits[ZC_QUEUE];
};

struct cfs_zcache_ctx {
	ZSTD_CCtx *cctx;
	struct cfs_digest_ctx *dctx; /* checks that the bytes compressed are the object's */
	void *in, *out;
};

int cfs_zcache_new(int store_dirfd, int level, uint64_t max_size, struct cfs_zcache **zc_ret)
{
	struct cfs_zcache *zc;
	int fd;

	if (mkdirat(store_dirfd, CFS_ZCACHE_DIR, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(store_dirfd, CFS_ZCACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	zc = calloc(1, sizeof(*zc));
	if (!zc) {
		close(fd);
		return -ENOMEM;
	}
	zc->dirfd = fd;
	zc->store_fd = store_dirfd;
	zc->level = level;
	zc->max_size = max_size;
	pthread_mutex_init(&zc->lock, NULL);
	pthread_cond_init(&zc->cond, NULL);
	*zc_ret = zc;
	return 0;
}

void cfs_zcache_free(struct cfs_zcache *zc)
{
	if (!zc)
		return;
	pthread_mutex_lock(&zc->lock);
	zc->stopping = true;
	pthread_cond_signal(&zc->cond);
	pthread_mutex_unlock(&zc->lock);
	if (zc->started)
		pthread_join(zc->tid, NULL);
	pthread_mutex_destroy(&zc->lock);
	pthread_cond_destroy(&zc->cond);
	close(zc->dirfd);
	free(zc);
}

int cfs_zcache_ctx_new(struct cfs_zcache_ctx **ctx_ret)
{
	struct cfs_zcache_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return -ENOMEM;
	*ctx_ret = ctx;
	return 0;
}

void cfs_zcache_ctx_free(struct cfs_zcache_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->cctx);
	cfs_digest_free(ctx->dctx);
	free(ctx->in);
	free(ctx->out);
	free(ctx);
}

/* A side file is trusted only if its frame header announces the object's size. */
static int zc_open_existing(struct cfs_zcache *zc, const char *rel, const struct stat *obj,
                            int *fd_ret, uint64_t *size_ret)
{
	unsigned char hdr[18]; /* ZSTD_FRAMEHEADERSIZE_MAX */
	struct stat st = {0};
	ssize_t n;
	int fd;

	fd = cfs_store_openat_beneath(zc->dirfd, rel, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto bad;
	n = cfs_pread_full(fd, hdr, sizeof(hdr), 0);
	if (n <= 0 || ZSTD_getFrameContentSize(hdr, (size_t)n) != (unsigned long long)obj->st_size)
		goto bad;
	*fd_ret = fd;
	*size_ret = (uint64_t)st.st_size;
	return 0;
bad:
	close(fd);
	if (S_ISREG(st.st_mode))
		unlinkat(zc->dirfd, rel, 0);
	return -ENOENT;
}

static int zc_mark_raw(struct cfs_zcache *zc, const char *rel_raw)
{
	int fd = cfs_store_openat_beneath(zc->dirfd, rel_raw, O_WRONLY | O_CREAT);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

/* Streams the object through the compressor into @out_fd, hashing what it reads. Returns the
 * compressed size, -ENOENT as soon as it is clear the result is not worth keeping, -EBADMSG
 * when the bytes read do not have the object's @digest, or -errno. */
static int64_t zc_compress(struct cfs_zcache *zc, struct cfs_zcache_ctx *ctx, int in_fd,
                           uint64_t size, const uint8_t digest[CFS_DIGEST_SIZE], int out_fd)
{
	uint64_t off = 0, total = 0;
	uint8_t got[CFS_DIGEST_SIZE];
	size_t zr;
	int r;

	if (!ctx->cctx) {
		ctx->cctx = ZSTD_createCCtx();
		ctx->in = malloc(ZC_CHUNK);
		ctx->out = malloc(ZC_CHUNK);
		if (!ctx->cctx || !ctx->in || !ctx->out)
			return -ENOMEM;
	}
	if (!ctx->dctx) {
		r = cfs_digest_new(&ctx->dctx);
		if (r < 0)
			return r;
	}
	cfs_digest_reset(ctx->dctx);
	ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(ctx->cctx, ZSTD_c_compressionLevel, zc->level);
	ZSTD_CCtx_setParameter(ctx->cctx, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setPledgedSrcSize(ctx->cctx, size);
	for (;;) {
		size_t want = (size_t)CFS_MIN((uint64_t)ZC_CHUNK, size - off);
		ssize_t n = want ? cfs_pread_full(in_fd, ctx->in, want, (off_t)off) : 0;
		ZSTD_EndDirective mode;
		ZSTD_inBuffer in;
		bool done;

		if (n < 0)
			return n;
		if ((size_t)n != want)
			return -EIO; /* the object changed size under us */
		cfs_digest_update(ctx->dctx, ctx->in, (size_t)n);
		off += (uint64_t)n;
		mode = off == size ? ZSTD_e_end : ZSTD_e_continue;
		in = (ZSTD_inBuffer){ctx->in, (size_t)n, 0};
		do {
			ZSTD_outBuffer out = {ctx->out, ZC_CHUNK, 0};

			zr = ZSTD_compressStream2(ctx->cctx, &out, &in, mode);
			if (ZSTD_isError(zr))
				return -EIO;
			r = cfs_write_full(out_fd, ctx->out, out.pos);
			if (r < 0)
				return r;
			total += out.pos;
			if (!ZC_WORTH(total, size))
				return -ENOENT;
			done = mode == ZSTD_e_end ? zr == 0 : in.pos == in.size;
		} while (!done);
		if (mode == ZSTD_e_end)
			break;
	}
	cfs_digest_final(ctx->dctx, got);
	return memcmp(got, digest, CFS_DIGEST_SIZE) == 0 ? (int64_t)total : -EBADMSG;
}

/* Flushes the finished side file open at @fd and gives it its name. 0 or -errno. */
static int zc_name(struct cfs_zcache *zc, int fd, const char *tmp, const char *rel)
{
	if (fsync(fd) < 0 || renameat(zc->dirfd, tmp, zc->dirfd, rel) < 0)
		return -errno;
	return 0;
}

static int zc_schedule(struct cfs_zcache *zc, const uint8_t digest[CFS_DIGEST_SIZE]);
static int zc_defer_commit(struct cfs_zcache *zc, const char *tmp, const char *rel);
/* The background thread's context (there is one such thread per cache). */
static __thread struct cfs_zcache_ctx zc_worker_ctx;

int cfs_zcache_get(struct cfs_zcache *zc, struct cfs_zcache_ctx *ctx, int obj_fd,
                   const struct stat *st, const uint8_t digest[CFS_DIGEST_SIZE], int *fd_ret,
                   uint64_t *size_ret)
{
	char path[CFS_NAME_PATH_LEN + 1], rel[CFS_NAME_PATH_LEN + 8], raw[CFS_NAME_PATH_LEN + 8];
	char tmp[CFS_NAME_PATH_LEN + 48], prefix[3];
	int fd = -1, r;
	int64_t csize;

	if (st->st_size < ZC_MIN_SIZE || (uint64_t)st->st_size > zc->max_size)
		return -ENOENT;
	cfs_name_format_path(digest, path);
	snprintf(rel, sizeof(rel), "%s.zst", path);
	r = zc_open_existing(zc, rel, st, fd_ret, size_ret);
	if (r != -ENOENT)
		return r;
	snprintf(raw, sizeof(raw), "%s.raw", path);
	if (faccessat(zc->dirfd, raw, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return -ENOENT;
	if (ctx && st->st_size > ZC_INLINE_MAX)
		return zc_schedule(zc, digest);
	if (!ctx)
		ctx = &zc_worker_ctx;

	memcpy(prefix, path, 2);
	prefix[2] = '\0';
	if (mkdirat(zc->dirfd, prefix, 0755) < 0 && errno != EEXIST)
		return -errno;
	/* A name with a leading dot and a sequence number: unique per process and thread. */
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%d-%u", prefix, path + 3, (int)getpid(),
	         atomic_fetch_add(&zc->tmp_seq, 1));
	fd = cfs_store_openat_beneath(zc->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL);
	if (fd < 0)
		return fd;
	csize = zc_compress(zc, ctx, obj_fd, (uint64_t)st->st_size, digest, fd);
	if (csize == -ENOENT) {
		cfs_debug("zstd: %s not worth compressing", path);
		zc_mark_raw(zc, raw);
		r = -ENOENT;
		goto fail;
	}
	if (csize == -EBADMSG) {
		/* Served as it is (clients verify); no encoding is kept of damaged bytes. */
		cfs_warn("object %s in the store does not match its name (run cfs-store verify)",
		         path);
		r = -ENOENT;
		goto fail;
	}
	if (csize < 0) {
		r = (int)csize;
		goto fail;
	}
	/* Durable before it has its name: a crash must not leave a torn side file behind it. An
	 * event loop hands the flush and the rename to the background thread and serves the temp
	 * file meanwhile; a crash before the rename leaves only a temp file (cfs-store gc). */
	if (ctx == &zc_worker_ctx || zc_defer_commit(zc, tmp, rel) < 0) {
		r = zc_name(zc, fd, tmp, rel);
		if (r < 0)
			goto fail;
	}
	cfs_debug("zstd: %s %lld -> %lld bytes", path, (long long)st->st_size, (long long)csize);
	*fd_ret = fd;
	*size_ret = (uint64_t)csize;
	return 0;
fail:
	unlinkat(zc->dirfd, tmp, 0);
	close(fd);
	return r;
}

/* zc_name for a side file an event loop handed over. */
static void zc_commit_now(struct cfs_zcache *zc, const struct zc_commit *c)
{
	int fd = cfs_store_openat_beneath(zc->dirfd, c->tmp, O_RDONLY);
	int r = fd < 0 ? fd : zc_name(zc, fd, c->tmp, c->rel);

	if (r < 0) {
		cfs_warn("zstd: keeping %s: %s", c->rel, strerror(-r));
		unlinkat(zc->dirfd, c->tmp, 0);
	}
	if (fd >= 0)
		close(fd);
}

static void *zc_worker(void *arg);

/* Starts the background thread if it is not running (lock held). 0 or -errno. */
static int zc_start_locked(struct cfs_zcache *zc)
{
	if (zc->started)
		return 0;
	if (zc->stopping || pthread_create(&zc->tid, NULL, zc_worker, zc) != 0)
		return -EAGAIN;
	zc->started = true;
	return 0;
}

/* Queues a finished side file for the background thread to flush and rename. 0, or -EAGAIN
 * when it cannot (queue full, no thread): the caller then does it itself. */
static int zc_defer_commit(struct cfs_zcache *zc, const char *tmp, const char *rel)
{
	struct zc_commit *c;
	int r = -EAGAIN;

	pthread_mutex_lock(&zc->lock);
	if (zc->clen < ZC_QUEUE && zc_start_locked(zc) == 0) {
		c = &zc->commits[(zc->chead + zc->clen) % ZC_QUEUE];
		snprintf(c->tmp, sizeof(c->tmp), "%s", tmp);
		snprintf(c->rel, sizeof(c->rel), "%s", rel);
		zc->clen++;
		pthread_cond_signal(&zc->cond);
		r = 0;
	}
	pthread_mutex_unlock(&zc->lock);
	return r;
}

static void *zc_worker(void *arg)
{
	struct cfs_zcache *zc = arg;

	pthread_mutex_lock(&zc->lock);
	for (;;) {
		uint8_t digest[CFS_DIGEST_SIZE];
		char rel[CFS_NAME_PATH_LEN + 1];
		struct stat st;
		uint64_t zsize;
		int fd, zfd, r;

		while (!zc->qlen && !zc->clen && !zc->stopping)
			pthread_cond_wait(&zc->cond, &zc->lock);
		if (zc->clen) {
			/* Naming finished side files first, even when stopping. */
			struct zc_commit c = zc->commits[zc->chead];

			zc->chead = (zc->chead + 1) % ZC_QUEUE;
			zc->clen--;
			pthread_mutex_unlock(&zc->lock);
			zc_commit_now(zc, &c);
			pthread_mutex_lock(&zc->lock);
			continue;
		}
		if (zc->stopping)
			break;
		memcpy(digest, zc->queue[zc->qhead], CFS_DIGEST_SIZE);
		pthread_mutex_unlock(&zc->lock);

		cfs_name_format_path(digest, rel);
		fd = cfs_store_openat_beneath(zc->store_fd, rel, O_RDONLY | O_NONBLOCK);
		if (fd >= 0) {
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
				/* NULL context: compress here, whatever the size. */
				r = cfs_zcache_get(zc, NULL, fd, &st, digest, &zfd, &zsize);
				if (r == 0)
					close(zfd);
				else if (r != -ENOENT)
					cfs_warn("zstd: compressing %s: %s", rel, strerror(-r));
			}
			close(fd);
		}

		pthread_mutex_lock(&zc->lock);
		/* Dequeue only now, so that the entry keeps deduplicating while it is worked on. */
		zc->qhead = (zc->qhead + 1) % ZC_QUEUE;
		zc->qlen--;
	}
	pthread_mutex_unlock(&zc->lock);
	ZSTD_freeCCtx(zc_worker_ctx.cctx);
	cfs_digest_free(zc_worker_ctx.dctx);
	free(zc_worker_ctx.in);
	free(zc_worker_ctx.out);
	return NULL;
}

/* Queues an object for the background thread (dropped when the queue is full: a later
 * request asks again). Returns -EAGAIN: no encoding yet. */
static int zc_schedule(struct cfs_zcache *zc, const uint8_t digest[CFS_DIGEST_SIZE])
{
	pthread_mutex_lock(&zc->lock);
	for (unsigned i = 0; i < zc->qlen; i++)
		if (memcmp(zc->queue[(zc->qhead + i) % ZC_QUEUE], digest, CFS_DIGEST_SIZE) == 0)
			goto out;
	if (zc->qlen == ZC_QUEUE || zc->stopping)
		goto out;
	if (zc_start_locked(zc) < 0)
		goto out;
	memcpy(zc->queue[(zc->qhead + zc->qlen) % ZC_QUEUE], digest, CFS_DIGEST_SIZE);
	zc->qlen++;
	pthread_cond_signal(&zc->cond);
out:
	pthread_mutex_unlock(&zc->lock);
	return -EAGAIN;
}
