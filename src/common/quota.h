/* SPDX-License-Identifier: MIT */
/* cfscache: size quota for a store: an index of objects with their last use, and LRU eviction
 * down to a low-water mark that never touches pinned objects. Sizes are disk use: allocated
 * blocks (st_blocks * 512) as a walk of the store reads them; an object the quota sees a
 * transaction name counts as its size rounded up to the filesystem's block until the next
 * rescan. */
#ifndef CFS_QUOTA_H
#define CFS_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/store.h"

struct cfs_quota;

struct cfs_quota_stats {
	uint64_t objects, bytes;      /* what the index holds now; bytes = disk use */
	uint64_t max_bytes, low_water;
	uint64_t evictions, bytes_evicted;
	uint64_t pinned;         /* pinned digests, present or not */
	uint64_t pinned_present; /* of the objects, those pinned */
};

/* Indexes every object of @store (not owned) and becomes its observer: objects transactions
 * name are counted (and room made for them) just before they get their name, on the committing
 * thread; objects removed through the store leave the index. Eviction starts when the indexed
 * bytes exceed @max_bytes and goes down to @low_water (0 = 90% of max_bytes). @max_bytes 0
 * means no quota: the index still tracks use, for cfs_quota_evict_to. Returns 0 or -errno. */
int cfs_quota_new(struct cfs_store *store, uint64_t max_bytes, uint64_t low_water,
		  struct cfs_quota **quota_ret);
void cfs_quota_free(struct cfs_quota *quota);

/* For offline users (cfs-store gc): @fn (may be NULL) is called, lock held, for each object that
 * eviction or cfs_quota_remove_unpinned removes, with its disk use; with @dry_run nothing is
 * removed, but the index drops the victims all the same (so its counts are a real run's). */
typedef void (*cfs_quota_victim_fn)(const uint8_t digest[CFS_DIGEST_SIZE], uint64_t bytes,
				    void *ctx);
void cfs_quota_set_victim_fn(struct cfs_quota *quota, bool dry_run, cfs_quota_victim_fn fn,
			     void *ctx);

/* Protects an object from eviction (it need not be present yet). Returns 0 or -ENOMEM. */
int cfs_quota_pin(struct cfs_quota *quota, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Pins @n digests stored back to back. Returns 0 or -ENOMEM. */
int cfs_quota_pin_many(struct cfs_quota *quota, const uint8_t *digests, size_t n);
bool cfs_quota_is_pinned(struct cfs_quota *quota, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Records a use of an object now. */
void cfs_quota_touch(struct cfs_quota *quota, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Evicts least recently used, unpinned objects until at most @target bytes remain.
 * Recency is the later of the index's record and the file's atime, read again just before
 * removal, so objects read directly by the kernel (never seen here) count as used.
 * Returns the number of objects removed or -errno. */
int cfs_quota_evict_to(struct cfs_quota *quota, uint64_t target);
/* The fetch engine's make_room (@ctx is the quota): the store's filesystem is full, so least
 * recently used, unpinned objects worth @bytes go. Returns the number removed or -errno. */
int cfs_quota_make_room(void *ctx, uint64_t bytes);
/* Removes every object that is not pinned. Returns the count or -errno. */
int cfs_quota_remove_unpinned(struct cfs_quota *quota);
/* Re-reads the store (objects added or removed by other processes); the walk does not hold the
 * index, so lookups and fetches go on meanwhile. */
int cfs_quota_rescan(struct cfs_quota *quota);
/* The same, then evicts if the store is over its quota: for a running daemon whose store other
 * processes write too (prefetch, gc). */
struct cfs_quota_refresh {
	uint64_t added, removed, evicted;
};
int cfs_quota_refresh(struct cfs_quota *quota, struct cfs_quota_refresh *res_ret);
void cfs_quota_get_stats(struct cfs_quota *quota, struct cfs_quota_stats *stats_ret);

#endif
