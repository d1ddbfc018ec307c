/* SPDX-License-Identifier: MIT */
/* cfscache: a hash map from a 64-bit key (an inode, a node id) to a caller's pointer. */
#ifndef CFS_U64MAP_H
#define CFS_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfs_u64map;

/* A map for about @expected entries (0: a small default; it grows either way). Returns 0 or
 * -ENOMEM. Not thread-safe: its owner's lock guards it. */
int cfs_u64map_new(size_t expected, struct cfs_u64map **map_ret);
/* Frees the map, not the values (iterate first to free them). NULL is a no-op. */
void cfs_u64map_free(struct cfs_u64map *map);

/* The value of @key, or NULL. */
void *cfs_u64map_get(const struct cfs_u64map *map, uint64_t key);
/* Sets @key's value to @value (not NULL), replacing any; the old value in *@old_ret (NULL when
 * there was none) if @old_ret. Returns 0, -EINVAL (NULL value) or -ENOMEM (map unchanged). May
 * grow the map: never during an iteration. */
int cfs_u64map_put(struct cfs_u64map *map, uint64_t key, void *value, void **old_ret);
/* Removes @key; returns its value, or NULL when it was absent. Safe during an iteration. */
void *cfs_u64map_remove(struct cfs_u64map *map, uint64_t key);

size_t cfs_u64map_count(const struct cfs_u64map *map);

/* Iterates in no particular order: start with *@pos = 0; each call that returns true gives the
 * next entry. The current entry may be removed; puts must wait until the end. */
bool cfs_u64map_next(const struct cfs_u64map *map, size_t *pos, uint64_t *key_ret,
                     void **value_ret);

#endif
