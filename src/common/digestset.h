/* SPDX-License-Identifier: MIT */
/* cfscache: a growable set of digests, each with an optional fixed-size record: add, seal
 * (sort and drop duplicates), binary-search lookups. */
#ifndef CFS_DIGESTSET_H
#define CFS_DIGESTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

/* Lives in its owner's struct or on the stack, like git's oid_array: zero-initialised (or
 * CFS_DIGESTSET_INIT) it is an empty set of bare digests. The fields are the module's. */
struct cfs_digestset {
	uint8_t *v; /* n records of record_size bytes, each starting with its digest */
	size_t n, cap;
	size_t record_size; /* 0: CFS_DIGEST_SIZE */
	bool sealed;
};

#define CFS_DIGESTSET_INIT ((struct cfs_digestset){0})

/* Makes @set an empty set of records of @record_size bytes (>= CFS_DIGEST_SIZE; 0 for bare
 * digests) whose first CFS_DIGEST_SIZE bytes are the digest. Nothing to free yet. */
void cfs_digestset_init(struct cfs_digestset *set, size_t record_size);

/* Appends @digest (duplicates too: cfs_digestset_seal drops them); unseals the set. With
 * @record_ret, *record_ret is the new record (zeroed past its digest), valid until the next
 * add or seal. Returns 0 or -ENOMEM (the set unchanged). */
int cfs_digestset_add(struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE],
                      void **record_ret);

/* Sorts by digest and keeps one record of each digest (which one of equals is unspecified). */
void cfs_digestset_seal(struct cfs_digestset *set);

/* The record of @digest in a sealed set, or NULL. */
void *cfs_digestset_find(const struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE]);
bool cfs_digestset_contains(const struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE]);

size_t cfs_digestset_count(const struct cfs_digestset *set);
/* Record @i (< count); its digest is its first CFS_DIGEST_SIZE bytes. */
void *cfs_digestset_at(const struct cfs_digestset *set, size_t i);

/* Keeps only the records for which @keep returns true, in their order (a sealed set stays
 * sealed). */
void cfs_digestset_filter(struct cfs_digestset *set, bool (*keep)(void *record, void *ctx),
                          void *ctx);

/* Hands the records over: returns the array (the caller frees it; NULL when empty) and its
 * count in *@count_ret, and leaves @set empty. */
void *cfs_digestset_steal(struct cfs_digestset *set, size_t *count_ret);

/* Frees the records; @set is then empty (and may be used again). */
void cfs_digestset_free(struct cfs_digestset *set);

#endif
