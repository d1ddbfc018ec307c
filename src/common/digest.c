/* SPDX-License-Identifier: MIT */
/* cfscache: fs-verity Merkle tree digest; the only file that talks to OpenSSL's hash API. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/digest.h"
#include "common/util.h"

#define BLOCK CFS_VERITY_BLOCK_SIZE
#define HASH 32
/* 2^64 bytes need 5 hash levels above the data at 128 hashes per block. */
#define MAX_LEVELS 8
#define READ_CHUNK (1u << 20)
#define PARALLEL_MIN (8u << 20)

struct level {
	uint8_t buf[BLOCK];
	size_t fill;
	uint64_t count; /* blocks of this level already hashed into the next one */
};

/* Blocks handed to the hashing thread in async mode: a ring of whole data blocks. */
#define RING_BLOCKS 512
/* Hashing threads beyond the cores only add switching: cap the helpers process-wide. */
#define MAX_ASYNC 4

static atomic_int async_active;

struct async_hasher {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	EVP_MD_CTX *md;
	uint8_t *ring; /* RING_BLOCKS * BLOCK */
	uint64_t head, tail; /* blocks produced / consumed */
	bool done;
};

struct cfs_digest_ctx {
	EVP_MD_CTX *md;
	struct async_hasher *async;
	uint64_t data_size;
	uint64_t data_blocks;
	size_t block_fill;
	uint8_t block[BLOCK];
	/* levels[0] holds the hashes of data blocks, levels[1] the hashes of levels[0]... */
	struct level levels[MAX_LEVELS];
};

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_init_once(void)
{
	/* An explicit fetch avoids an implicit method lookup on every block. */
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_get(void)
{
	pthread_once(&sha256_once, sha256_init_once);
	return sha256_md ? sha256_md : EVP_sha256();
}

static void hash_with(EVP_MD_CTX *md, const void *data, size_t len, uint8_t out[HASH])
{
	unsigned int n;

	EVP_DigestInit_ex(md, NULL, NULL);
	EVP_DigestUpdate(md, data, len);
	EVP_DigestFinal_ex(md, out, &n);
}

void cfs_sha256(const void *data, size_t len, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md || !EVP_DigestInit_ex(md, sha256_get(), NULL))
		abort();
	hash_with(md, data, len, out);
	EVP_MD_CTX_free(md);
}

int cfs_digest_new(struct cfs_digest_ctx **ctx_ret)
{
	/* Not calloc: the block and level buffers (36 KiB) are only read where written, and
	 * zeroing them cost as much as hashing a small object. */
	struct cfs_digest_ctx *ctx = malloc(sizeof(*ctx));

	if (!ctx)
		return -ENOMEM;
	ctx->async = NULL;
	cfs_digest_reset(ctx);
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md || !EVP_DigestInit_ex(ctx->md, sha256_get(), NULL)) {
		cfs_digest_free(ctx);
		return -ENOMEM;
	}
	*ctx_ret = ctx;
	return 0;
}

static void async_stop(struct cfs_digest_ctx *ctx);

void cfs_digest_free(struct cfs_digest_ctx *ctx)
{
	if (!ctx)
		return;
	async_stop(ctx);
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

void cfs_digest_reset(struct cfs_digest_ctx *ctx)
{
	async_stop(ctx);
	ctx->data_size = 0;
	ctx->data_blocks = 0;
	ctx->block_fill = 0;
	for (int i = 0; i < MAX_LEVELS; i++) {
		ctx->levels[i].fill = 0;
		ctx->levels[i].count = 0;
	}
}

uint64_t cfs_digest_size(const struct cfs_digest_ctx *ctx)
{
	return ctx->data_size;
}

/* Appends one hash to level @lv. A full block is hashed upward only once more data arrives for
 * that level, so the block that ends up alone at the top is recognised as the root in final. */
static void push_hash_md(struct cfs_digest_ctx *ctx, EVP_MD_CTX *md, int lv,
			 const uint8_t h[HASH])
{
	struct level *l = &ctx->levels[lv];

	if (l->fill == BLOCK) {
		uint8_t up[HASH];

		hash_with(md, l->buf, BLOCK, up);
		l->fill = 0;
		l->count++;
		push_hash_md(ctx, md, lv + 1, up);
	}
	memcpy(l->buf + l->fill, h, HASH);
	l->fill += HASH;
}

static void push_hash(struct cfs_digest_ctx *ctx, int lv, const uint8_t h[HASH])
{
	push_hash_md(ctx, ctx->md, lv, h);
}

static void async_enqueue(struct async_hasher *a, const uint8_t *block)
{
	pthread_mutex_lock(&a->lock);
	while (a->head - a->tail == RING_BLOCKS)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
	/* Only this thread writes slot head; the hasher reads it after head moves. */
	memcpy(a->ring + (a->head % RING_BLOCKS) * BLOCK, block, BLOCK);
	pthread_mutex_lock(&a->lock);
	a->head++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

static void push_data_block(struct cfs_digest_ctx *ctx, const uint8_t *block)
{
	uint8_t h[HASH];

	if (ctx->async) {
		async_enqueue(ctx->async, block);
		return;
	}
	hash_with(ctx->md, block, BLOCK, h);
	ctx->data_blocks++;
	push_hash(ctx, 0, h);
}

/* The hashing thread owns the tree levels while async mode lasts. */
static void *async_main(void *arg)
{
	struct cfs_digest_ctx *ctx = arg;
	struct async_hasher *a = ctx->async;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		uint64_t avail;

		while (a->head == a->tail && !a->done)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->head == a->tail && a->done)
			break;
		avail = a->head - a->tail;
		pthread_mutex_unlock(&a->lock);
		for (uint64_t i = 0; i < avail; i++) {
			uint8_t h[HASH];

			hash_with(a->md, a->ring + ((a->tail + i) % RING_BLOCKS) * BLOCK, BLOCK, h);
			ctx->data_blocks++;
			push_hash_md(ctx, a->md, 0, h);
		}
		pthread_mutex_lock(&a->lock);
		a->tail += avail;
		pthread_cond_broadcast(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static void async_free(struct async_hasher *a)
{
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	EVP_MD_CTX_free(a->md);
	free(a->ring);
	free(a);
}

/* Waits for every queued block to be hashed and ends the helper thread. */
static void async_stop(struct cfs_digest_ctx *ctx)
{
	struct async_hasher *a = ctx->async;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->done = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	ctx->async = NULL;
	async_free(a);
	atomic_fetch_sub(&async_active, 1);
}

int cfs_digest_start_async(struct cfs_digest_ctx *ctx)
{
	struct async_hasher *a;

	if (ctx->async)
		return 0;
	if (atomic_fetch_add(&async_active, 1) >= MAX_ASYNC) {
		atomic_fetch_sub(&async_active, 1);
		return -EBUSY;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		atomic_fetch_sub(&async_active, 1);
		return -ENOMEM;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	a->md = EVP_MD_CTX_new();
	a->ring = malloc((size_t)RING_BLOCKS * BLOCK);
	if (!a->md || !a->ring || !EVP_DigestInit_ex(a->md, sha256_get(), NULL)) {
		async_free(a);
		atomic_fetch_sub(&async_active, 1);
		return -ENOMEM;
	}
	ctx->async = a;
	if (pthread_create(&a->thread, NULL, async_main, ctx) != 0) {
		ctx->async = NULL;
		async_free(a);
		atomic_fetch_sub(&async_active, 1);
		return -EAGAIN;
	}
	return 0;
}

void cfs_digest_update(struct cfs_digest_ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;

	ctx->data_size += len;
	if (ctx->block_fill) {
		size_t n = CFS_MIN(len, BLOCK - ctx->block_fill);

		memcpy(ctx->block + ctx->block_fill, p, n);
		ctx->block_fill += n;
		p += n;
		len -= n;
		if (ctx->block_fill < BLOCK)
			return;
		push_data_block(ctx, ctx->block);
		ctx->block_fill = 0;
	}
	/* Full blocks straight from the caller's buffer; the tail waits for more data. */
	while (len >= BLOCK) {
		push_data_block(ctx, p);
		p += BLOCK;
		len -= BLOCK;
	}
	memcpy(ctx->block, p, len);
	ctx->block_fill = len;
}

static void root_hash(struct cfs_digest_ctx *ctx, uint8_t root[HASH])
{
	if (ctx->block_fill) {
		memset(ctx->block + ctx->block_fill, 0, BLOCK - ctx->block_fill);
		push_data_block(ctx, ctx->block);
		ctx->block_fill = 0;
	}
	async_stop(ctx); /* every block hashed; the levels are ours again */
	if (ctx->data_blocks == 0) {
		memset(root, 0, HASH);
		return;
	}
	if (ctx->data_blocks == 1) {
		/* A one-block file: the root is the hash of that block. */
		memcpy(root, ctx->levels[0].buf, HASH);
		return;
	}
	for (int lv = 0; lv < MAX_LEVELS; lv++) {
		struct level *l = &ctx->levels[lv];
		uint8_t h[HASH];

		memset(l->buf + l->fill, 0, BLOCK - l->fill);
		hash_with(ctx->md, l->buf, BLOCK, h);
		if (l->count == 0) {
			memcpy(root, h, HASH);
			return;
		}
		l->fill = 0;
		l->count++;
		push_hash(ctx, lv + 1, h);
	}
	abort(); /* unreachable: MAX_LEVELS covers 2^64 bytes */
}

void cfs_digest_final(struct cfs_digest_ctx *ctx, uint8_t digest[CFS_DIGEST_SIZE])
{
	/* struct fsverity_descriptor, 256 bytes, little endian. */
	uint8_t desc[256] = { 0 };
	uint64_t size = ctx->data_size;

	desc[0] = 1;  /* version */
	desc[1] = 1;  /* FS_VERITY_HASH_ALG_SHA256 */
	desc[2] = 12; /* log2(block size) */
	desc[3] = 0;  /* salt size */
	for (int i = 0; i < 8; i++)
		desc[8 + i] = (uint8_t)(size >> (8 * i));
	root_hash(ctx, desc + 16);
	hash_with(ctx->md, desc, sizeof(desc), digest);
}

int cfs_digest_buffer(const void *data, size_t len, uint8_t digest[CFS_DIGEST_SIZE])
{
	struct cfs_digest_ctx *ctx;
	int r = cfs_digest_new(&ctx);

	if (r < 0)
		return r;
	cfs_digest_update(ctx, data, len);
	cfs_digest_final(ctx, digest);
	cfs_digest_free(ctx);
	return 0;
}

struct leaf_job {
	int fd;
	uint64_t first_block, end_block; /* [first, end) of the file's data blocks */
	uint64_t size;
	uint8_t *hashes; /* one per data block of the whole file */
	int err;
};

/* Hashes a contiguous range of data blocks; ranges of different threads are independent. */
static void *leaf_worker(void *arg)
{
	struct leaf_job *job = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(READ_CHUNK);
	uint64_t b = job->first_block;

	if (!md || !buf || !EVP_DigestInit_ex(md, sha256_get(), NULL)) {
		job->err = -ENOMEM;
		goto out;
	}
	while (b < job->end_block) {
		uint64_t nb = CFS_MIN((uint64_t)(READ_CHUNK / BLOCK), job->end_block - b);
		uint64_t off = b * BLOCK;
		size_t want = (size_t)CFS_MIN(nb * BLOCK, job->size - off);
		ssize_t got = cfs_pread_full(job->fd, buf, want, (off_t)off);

		if (got < 0) {
			job->err = (int)got;
			goto out;
		}
		if ((size_t)got != want) {
			job->err = -EIO; /* the file shrank while we read it */
			goto out;
		}
		if (want % BLOCK)
			memset(buf + want, 0, BLOCK - want % BLOCK);
		for (uint64_t i = 0; i < nb; i++)
			hash_with(md, buf + i * BLOCK, BLOCK, job->hashes + (b + i) * HASH);
		b += nb;
	}
out:
	free(buf);
	EVP_MD_CTX_free(md);
	return NULL;
}

static int digest_fd_parallel(int fd, uint64_t size, unsigned nthreads, uint8_t digest[32])
{
	uint64_t nblocks = (size + BLOCK - 1) / BLOCK;
	struct leaf_job jobs[16];
	pthread_t tids[16];
	struct cfs_digest_ctx *ctx = NULL;
	uint8_t *hashes;
	bool started[16] = { false };
	int r = 0;

	if (nthreads > CFS_ARRAY_SIZE(jobs))
		nthreads = CFS_ARRAY_SIZE(jobs);
	hashes = malloc(nblocks * HASH);
	if (!hashes)
		return -ENOMEM;
	for (unsigned t = 0; t < nthreads; t++) {
		jobs[t] = (struct leaf_job){
			.fd = fd,
			.first_block = nblocks * t / nthreads,
			.end_block = nblocks * (t + 1) / nthreads,
			.size = size,
			.hashes = hashes,
		};
		if (t > 0)
			started[t] = pthread_create(&tids[t], NULL, leaf_worker, &jobs[t]) == 0;
	}
	/* The calling thread takes range 0 and any range whose thread could not start. */
	for (unsigned t = 0; t < nthreads; t++)
		if (!started[t])
			leaf_worker(&jobs[t]);
	for (unsigned t = 0; t < nthreads; t++) {
		if (started[t])
			pthread_join(tids[t], NULL);
		if (jobs[t].err && !r)
			r = jobs[t].err;
	}
	if (r < 0)
		goto out;
	r = cfs_digest_new(&ctx);
	if (r < 0)
		goto out;
	ctx->data_size = size;
	ctx->data_blocks = nblocks;
	for (uint64_t i = 0; i < nblocks; i++)
		push_hash(ctx, 0, hashes + i * HASH);
	cfs_digest_final(ctx, digest);
out:
	cfs_digest_free(ctx);
	free(hashes);
	return r;
}

int cfs_digest_fd(int fd, unsigned nthreads, uint8_t digest[CFS_DIGEST_SIZE], uint64_t *size_ret)
{
	struct cfs_digest_ctx *ctx = NULL;
	size_t bufsize = READ_CHUNK;
	uint8_t *buf = NULL;
	struct stat st;
	uint64_t off = 0;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (nthreads == 0) {
		/* sysconf reads a sysfs file each time: ask once. */
		static atomic_uint ncpus;
		unsigned n = atomic_load(&ncpus);

		if (n == 0) {
			long v = sysconf(_SC_NPROCESSORS_ONLN);

			n = v > 0 ? (unsigned)v : 1;
			atomic_store(&ncpus, n);
		}
		nthreads = n;
	}
	if (S_ISREG(st.st_mode) && nthreads > 1 && (uint64_t)st.st_size >= PARALLEL_MIN) {
		r = digest_fd_parallel(fd, (uint64_t)st.st_size, nthreads, digest);
		if (r == 0 && size_ret)
			*size_ret = (uint64_t)st.st_size;
		return r;
	}
	r = cfs_digest_new(&ctx);
	if (r < 0)
		return r;
	/* Small files get a small buffer: a 1 MiB one would be mapped and unmapped each time. */
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < READ_CHUNK)
		bufsize = ((size_t)st.st_size / BLOCK + 1) * BLOCK;
	buf = malloc(bufsize);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = cfs_pread_full(fd, buf, bufsize, (off_t)off);

		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		cfs_digest_update(ctx, buf, (size_t)n);
		off += (uint64_t)n;
	}
	cfs_digest_final(ctx, digest);
	if (size_ret)
		*size_ret = off;
out:
	free(buf);
	cfs_digest_free(ctx);
	return r;
}
