/* SPDX-License-Identifier: MIT */
/* cfscache: zstd side files of objects, kept under <store>/.cfs-zstd (never an object path):
 * XX/<62hex>.zst (the encoding), XX/<62hex>.raw (not worth compressing) and unfinished
 * XX/.tmp-*, the store's rule for derived files, so that removing an object (gc, verify
 * --delete-bad, eviction) removes them too and gc sweeps what a crash left. */
#ifndef CFS_SERVER_ZCACHE_H
#define CFS_SERVER_ZCACHE_H

#include <stdint.h>
#include <sys/stat.h>

#include "common/digest.h"
#include "common/store.h"

#define CFS_ZCACHE_DIR CFS_STORE_DERIVED_DIR

struct cfs_zcache;
struct cfs_zcache_ctx; /* per-thread compression state */

/* Opens (creating if needed) the side-file directory inside the store at @store_dirfd.
 * Returns 0 or -errno; free with cfs_zcache_free. */
int cfs_zcache_new(int store_dirfd, int level, uint64_t max_size, struct cfs_zcache **zc_ret);
void cfs_zcache_free(struct cfs_zcache *zc);
int cfs_zcache_ctx_new(struct cfs_zcache_ctx **ctx_ret);
void cfs_zcache_ctx_free(struct cfs_zcache_ctx *ctx);

/* Finds or makes the zstd encoding of the object open at @obj_fd (size @st->st_size). A new
 * encoding is kept only if the bytes it was made from have the object's digest, and only once
 * it is on disk (fsync before its rename): a damaged object or a crash never leaves a side file
 * that would outlive the repair. Returns 0 with *fd_ret (caller closes) and *size_ret of the compressed file, -ENOENT when
 * compression does not pay off for this object, -EAGAIN when a background thread has been
 * asked to make it (objects over 1 MiB: the event loop never compresses those), or another
 * -errno. The result (or "not worth it") is remembered on disk. */
int cfs_zcache_get(struct cfs_zcache *zc, struct cfs_zcache_ctx *ctx, int obj_fd,
                   const struct stat *st, const uint8_t digest[CFS_DIGEST_SIZE], int *fd_ret,
                   uint64_t *size_ret);

#endif
