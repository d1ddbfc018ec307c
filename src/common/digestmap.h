/* SPDX-License-Identifier: MIT */
/* cfscache: a hash map from a digest to a caller's pointer (open addressing, grows by itself). */
#ifndef CFS_DIGESTMAP_H
#define CFS_DIGESTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

struct cfs_digestmap;

/* A map for about @expected entries (0: a small default; it grows either way). Returns 0 or
 * -ENOMEM. Not thread-safe: its owner's lock guards it. */
int cfs_digestmap_new(size_t expected, struct cfs_digestmap **map_ret);
/* Frees the map, not the values (iterate first to free them). NULL is a no-op. */
void cfs_digestmap_free(struct cfs_digestmap *map);

/* The value of @digest, or NULL. */
void *cfs_digestmap_get(const struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Sets @digest's value to @value (not NULL), replacing any; the old value in *@old_ret (NULL
 * when there was none) if @old_ret. Returns 0, -EINVAL (NULL value) or -ENOMEM (map unchanged).
 * May grow the map: never during an iteration. */
int cfs_digestmap_put(struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE], void *value,
                      void **old_ret);
/* Removes @digest; returns its value, or NULL when it was absent. Safe during an iteration. */
void *cfs_digestmap_remove(struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE]);

size_t cfs_digestmap_count(const struct cfs_digestmap *map);
/* Makes room for @n entries in all without growing again. Returns 0 or -ENOMEM. */
int cfs_digestmap_reserve(struct cfs_digestmap *map, size_t n);

/* Iterates in no particular order: start with *@pos = 0; each call that returns true gives the
 * next entry (its digest stays valid until it is removed). The current entry may be removed;
 * puts must wait until the end. */
bool cfs_digestmap_next(const struct cfs_digestmap *map, size_t *pos, const uint8_t **digest_ret,
                        void **value_ret);

#endif
