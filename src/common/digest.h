/* SPDX-License-Identifier: MIT */
/* cfscache: fs-verity file digest (SHA-256, 4096-byte blocks, no salt) with a streaming push API. */
#ifndef CFS_DIGEST_H
#define CFS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define CFS_DIGEST_SIZE 32
#define CFS_DIGEST_HEX_SIZE 64
#define CFS_VERITY_BLOCK_SIZE 4096

struct cfs_digest_ctx;

/* Allocates a context ready for data. Returns 0 or -ENOMEM. Free with cfs_digest_free. */
int cfs_digest_new(struct cfs_digest_ctx **ctx_ret);
void cfs_digest_free(struct cfs_digest_ctx *ctx);
/* Forgets all data fed so far. */
void cfs_digest_reset(struct cfs_digest_ctx *ctx);
/* Feeds the next @len bytes of the file. Never fails once the context exists. */
void cfs_digest_update(struct cfs_digest_ctx *ctx, const void *data, size_t len);
/* Number of bytes fed since the last reset. */
uint64_t cfs_digest_size(const struct cfs_digest_ctx *ctx);
/* Writes the fs-verity digest of everything fed. The context must be reset before reuse. */
void cfs_digest_final(struct cfs_digest_ctx *ctx, uint8_t digest[CFS_DIGEST_SIZE]);

/* From now on, data blocks are hashed by a helper thread while the caller goes on (for large
 * streams: receiving and hashing then use two cores). Results are identical. Returns 0 or
 * -errno (the context then stays synchronous). cfs_digest_final and cfs_digest_reset wait for
 * the helper and return the context to synchronous mode. */
int cfs_digest_start_async(struct cfs_digest_ctx *ctx);

/* One-shot digest of a buffer. Returns 0 or -ENOMEM. */
int cfs_digest_buffer(const void *data, size_t len, uint8_t digest[CFS_DIGEST_SIZE]);
/* Digest of a whole file, read with pread from offset 0 to end of file. Large files are
 * hashed with up to @nthreads threads (0 = number of online CPUs). Returns 0 or -errno;
 * *size_ret (optional) gets the number of bytes hashed. */
int cfs_digest_fd(int fd, unsigned nthreads, uint8_t digest[CFS_DIGEST_SIZE], uint64_t *size_ret);

/* Plain SHA-256, for callers that need one outside the Merkle tree. */
void cfs_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
