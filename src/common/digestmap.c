/* SPDX-License-Identifier: MIT */
/* cfscache: a digest-keyed hash map: linear probing over slots holding the digest and a value,
 * removals leave tombstones (so iterating while removing is safe), dropped when they end a probe
 * run and swept when the map grows. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/digestmap.h"

#define MIN_SLOTS 64

struct slot {
	uint8_t digest[CFS_DIGEST_SIZE];
	void *value; /* NULL: empty; &tombstone: removed */
};

struct cfs_digestmap {
	struct slot *slots;
	size_t nslots;  /* a power of two */
	unsigned shift; /* 64 - log2(nslots) */
	size_t live, removed;
};

static char tombstone;
#define TOMBSTONE ((void *)&tombstone)

static bool is_live(const struct slot *s)
{
	return s->value && s->value != TOMBSTONE;
}

/* Every byte of the digest counts: digests of honest objects are uniformly random, but an image
 * may name any, and names sharing a prefix must not share a probe sequence. The words are folded
 * and multiplied once, and the slot is the product's top bits, which depend on every bit of the
 * fold: one multiply, as this is on the fetcher's path of every miss. */
static size_t slot_of(const struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE])
{
	uint64_t a, b, c, d;

	/* Word by word: a copy into an array goes through the stack and stalls the loads. */
	memcpy(&a, digest, 8);
	memcpy(&b, digest + 8, 8);
	memcpy(&c, digest + 16, 8);
	memcpy(&d, digest + 24, 8);
	return (size_t)(((a ^ b ^ c ^ d) * 0x9E3779B97F4A7C15ULL) >> map->shift);
}

/* The live slot of @digest, or NULL; with @insert_ret, where it would go (the first tombstone
 * or empty slot of its probe sequence). Inlined in each caller: a call less per operation. */
static inline __attribute__((always_inline)) struct slot *
find(const struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE],
     struct slot **insert_ret)
{
	size_t mask = map->nslots - 1, i = slot_of(map, digest);
	struct slot *free_slot = NULL;

	/* Ends: the map is never more than 3/4 full with entries and tombstones. */
	for (;; i = (i + 1) & mask) {
		struct slot *s = &map->slots[i];

		if (!s->value) {
			if (!free_slot)
				free_slot = s;
			break;
		}
		if (s->value == TOMBSTONE) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		if (memcmp(s->digest, digest, CFS_DIGEST_SIZE) == 0)
			return s;
	}
	if (insert_ret)
		*insert_ret = free_slot;
	return NULL;
}

static unsigned shift_for(size_t nslots)
{
	return 64 - (unsigned)__builtin_ctzll((unsigned long long)nslots);
}

static size_t slots_for(size_t n)
{
	size_t nslots = MIN_SLOTS;

	/* At most 3/4 full. */
	while (nslots / 4 * 3 < n) {
		if (nslots > SIZE_MAX / 2 / sizeof(struct slot))
			return 0;
		nslots *= 2;
	}
	return nslots;
}

static int rehash(struct cfs_digestmap *map, size_t nslots)
{
	struct slot *old = map->slots, *ins;
	size_t old_n = map->nslots;

	map->slots = calloc(nslots, sizeof(*map->slots));
	if (!map->slots) {
		map->slots = old;
		return -ENOMEM;
	}
	map->nslots = nslots;
	map->shift = shift_for(nslots);
	map->removed = 0;
	for (size_t i = 0; i < old_n; i++) {
		if (!is_live(&old[i]))
			continue;
		find(map, old[i].digest, &ins);
		*ins = old[i];
	}
	free(old);
	return 0;
}

int cfs_digestmap_new(size_t expected, struct cfs_digestmap **map_ret)
{
	struct cfs_digestmap *map = calloc(1, sizeof(*map));
	size_t nslots = slots_for(expected);

	if (!map || !nslots)
		goto fail;
	map->slots = calloc(nslots, sizeof(*map->slots));
	if (!map->slots)
		goto fail;
	map->nslots = nslots;
	map->shift = shift_for(nslots);
	*map_ret = map;
	return 0;
fail:
	free(map);
	return -ENOMEM;
}

void cfs_digestmap_free(struct cfs_digestmap *map)
{
	if (!map)
		return;
	free(map->slots);
	free(map);
}

void *cfs_digestmap_get(const struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct slot *s = find(map, digest, NULL);

	return s ? s->value : NULL;
}

/* Rehashes into enough slots for @n entries (or as many as now, sweeping the tombstones). */
static int grow(struct cfs_digestmap *map, size_t n)
{
	size_t nslots = slots_for(n);

	if (!nslots)
		return -ENOMEM;
	return rehash(map, nslots > map->nslots ? nslots : map->nslots);
}

int cfs_digestmap_reserve(struct cfs_digestmap *map, size_t n)
{
	if (n + map->removed <= map->nslots / 4 * 3)
		return 0;
	return grow(map, n);
}

int cfs_digestmap_put(struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE], void *value,
                      void **old_ret)
{
	struct slot *s, *ins;
	int r;

	if (!value || value == TOMBSTONE)
		return -EINVAL;
	s = find(map, digest, &ins);
	if (s) {
		if (old_ret)
			*old_ret = s->value;
		s->value = value;
		return 0;
	}
	if (map->live + map->removed + 1 > map->nslots / 4 * 3) {
		/* Twice the room needed: a map kept nearly full by removals and puts would
		 * otherwise sweep its tombstones on every put. */
		r = grow(map, 2 * (map->live + 1));
		if (r < 0)
			return r;
		find(map, digest, &ins);
	}
	if (ins->value == TOMBSTONE)
		map->removed--;
	memcpy(ins->digest, digest, CFS_DIGEST_SIZE);
	ins->value = value;
	map->live++;
	if (old_ret)
		*old_ret = NULL;
	return 0;
}

/* A tombstone followed by an empty slot ends no probe sequence that reaches a live entry, so it
 * can be empty itself: the tombstones just before an empty slot go, keeping a map that sees a
 * put and a remove per use (the fetcher's jobs) as short to probe as a fresh one. Only slots
 * that hold no entry change, so an iteration is not disturbed. */
static void clear_tombstones(struct cfs_digestmap *map, size_t i)
{
	size_t mask = map->nslots - 1;

	if (map->slots[(i + 1) & mask].value)
		return;
	while (map->slots[i].value == TOMBSTONE) {
		map->slots[i].value = NULL;
		map->removed--;
		i = (i - 1) & mask;
	}
}

void *cfs_digestmap_remove(struct cfs_digestmap *map, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct slot *s = find(map, digest, NULL);
	void *value;

	if (!s)
		return NULL;
	value = s->value;
	s->value = TOMBSTONE;
	map->live--;
	map->removed++;
	clear_tombstones(map, (size_t)(s - map->slots));
	return value;
}

size_t cfs_digestmap_count(const struct cfs_digestmap *map)
{
	return map->live;
}

bool cfs_digestmap_next(const struct cfs_digestmap *map, size_t *pos, const uint8_t **digest_ret,
                        void **value_ret)
{
	for (size_t i = *pos; i < map->nslots; i++) {
		const struct slot *s = &map->slots[i];

		if (!is_live(s))
			continue;
		*pos = i + 1;
		if (digest_ret)
			*digest_ret = s->digest;
		if (value_ret)
			*value_ret = s->value;
		return true;
	}
	*pos = map->nslots;
	return false;
}
