/* SPDX-License-Identifier: MIT */
/* cfscache: the 64-bit-key map is the digest map keyed by a digest holding the key in its first
 * 8 bytes and zeros after: one probing implementation serves both (the digest map's hash folds
 * the words, so this is multiplicative hashing of the key). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/digestmap.h"
#include "common/u64map.h"

struct cfs_u64map {
	struct cfs_digestmap *map;
};

static void key_digest(uint64_t key, uint8_t digest[CFS_DIGEST_SIZE])
{
	memset(digest, 0, CFS_DIGEST_SIZE);
	memcpy(digest, &key, sizeof(key));
}

int cfs_u64map_new(size_t expected, struct cfs_u64map **map_ret)
{
	struct cfs_u64map *map = calloc(1, sizeof(*map));
	int r;

	if (!map)
		return -ENOMEM;
	r = cfs_digestmap_new(expected, &map->map);
	if (r < 0) {
		free(map);
		return r;
	}
	*map_ret = map;
	return 0;
}

void cfs_u64map_free(struct cfs_u64map *map)
{
	if (!map)
		return;
	cfs_digestmap_free(map->map);
	free(map);
}

void *cfs_u64map_get(const struct cfs_u64map *map, uint64_t key)
{
	uint8_t d[CFS_DIGEST_SIZE];

	key_digest(key, d);
	return cfs_digestmap_get(map->map, d);
}

int cfs_u64map_put(struct cfs_u64map *map, uint64_t key, void *value, void **old_ret)
{
	uint8_t d[CFS_DIGEST_SIZE];

	key_digest(key, d);
	return cfs_digestmap_put(map->map, d, value, old_ret);
}

void *cfs_u64map_remove(struct cfs_u64map *map, uint64_t key)
{
	uint8_t d[CFS_DIGEST_SIZE];

	key_digest(key, d);
	return cfs_digestmap_remove(map->map, d);
}

size_t cfs_u64map_count(const struct cfs_u64map *map)
{
	return cfs_digestmap_count(map->map);
}

bool cfs_u64map_next(const struct cfs_u64map *map, size_t *pos, uint64_t *key_ret, void **value_ret)
{
	const uint8_t *d;

	if (!cfs_digestmap_next(map->map, pos, &d, value_ret))
		return false;
	if (key_ret)
		memcpy(key_ret, d, sizeof(*key_ret));
	return true;
}
