/* SPDX-License-Identifier: MIT */
/* cfscache: per-loop cache of open objects: small bodies in memory, larger ones as sendfile
 * segments. */
#ifndef CFS_SERVER_OCACHE_H
#define CFS_SERVER_OCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/digest.h"

struct evbuffer;
struct cfs_ocache;

/* What a hit hands back: which file it was (to revalidate against the store) and a way to
 * add any byte range of it to a reply. Valid until the next call on the cache. */
struct cfs_ocache_entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t checked;                      /* when it was last found under its name (seconds) */
	void *data;                           /* small objects: the bytes */
	struct evbuffer_file_segment *seg;    /* larger objects: the open file */
	struct cfs_ocache_entry *prev, *next; /* the LRU list */
};

/* @max_bytes bounds the bytes held for small objects, @max_files the open descriptors.
 * Returns 0 or -ENOMEM. One cache per event loop: it is not thread-safe. */
int cfs_ocache_new(size_t max_bytes, unsigned max_files, struct cfs_ocache **oc_ret);
void cfs_ocache_free(struct cfs_ocache *oc);
/* The entry for @digest, or NULL. The caller revalidates it (cfs_ocache_drop if stale). */
struct cfs_ocache_entry *cfs_ocache_find(struct cfs_ocache *oc,
                                         const uint8_t digest[CFS_DIGEST_SIZE]);
void cfs_ocache_drop(struct cfs_ocache *oc, struct cfs_ocache_entry *e);
/* Objects up to this size are held in memory; larger ones as an open file. */
#define CFS_OCACHE_SMALL (16 * 1024)

/* Caches the object open at @fd (described by @st). Returns the entry, and then the cache
 * owns @fd; or NULL (not cacheable, or an error), and then @fd is still the caller's. */
struct cfs_ocache_entry *cfs_ocache_insert(struct cfs_ocache *oc,
                                           const uint8_t digest[CFS_DIGEST_SIZE], int fd,
                                           const struct stat *st, bool sendfile_ok);
/* Appends bytes [@off, @off+@len) of the entry's object to @out. Returns 0 or -ENOMEM. */
int cfs_ocache_add(struct cfs_ocache_entry *e, struct evbuffer *out, uint64_t off, uint64_t len);

#endif
