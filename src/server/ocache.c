/* SPDX-License-Identifier: MIT */
/* cfscache: per-loop LRU of open objects so that a hot object costs one fstatat, not four calls. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/digestmap.h"
#include "common/util.h"
#include "server/ocache.h"

struct cfs_ocache {
	struct cfs_digestmap *map;            /* digest -> entry */
	struct cfs_ocache_entry *head, *tail; /* most recently used first */
	size_t bytes, max_bytes;
	unsigned files, max_files;
};

int cfs_ocache_new(size_t max_bytes, unsigned max_files, struct cfs_ocache **oc_ret)
{
	struct cfs_ocache *oc = calloc(1, sizeof(*oc));

	if (!oc || cfs_digestmap_new(max_files, &oc->map) < 0) {
		free(oc);
		return -ENOMEM;
	}
	oc->max_bytes = max_bytes;
	oc->max_files = max_files;
	*oc_ret = oc;
	return 0;
}

static void oc_unlink(struct cfs_ocache *oc, struct cfs_ocache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		oc->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		oc->tail = e->prev;
	e->prev = e->next = NULL;
}

static void oc_push_front(struct cfs_ocache *oc, struct cfs_ocache_entry *e)
{
	e->prev = NULL;
	e->next = oc->head;
	if (oc->head)
		oc->head->prev = e;
	oc->head = e;
	if (!oc->tail)
		oc->tail = e;
}

void cfs_ocache_drop(struct cfs_ocache *oc, struct cfs_ocache_entry *e)
{
	cfs_digestmap_remove(oc->map, e->digest);
	oc_unlink(oc, e);
	if (e->seg) {
		/* Replies still sending from the segment hold their own references. */
		evbuffer_file_segment_free(e->seg);
		oc->files--;
	} else {
		oc->bytes -= e->size;
		free(e->data);
	}
	free(e);
}

void cfs_ocache_free(struct cfs_ocache *oc)
{
	if (!oc)
		return;
	while (oc->head)
		cfs_ocache_drop(oc, oc->head);
	cfs_digestmap_free(oc->map);
	free(oc);
}

struct cfs_ocache_entry *cfs_ocache_find(struct cfs_ocache *oc,
                                         const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct cfs_ocache_entry *e = cfs_digestmap_get(oc->map, digest);

	if (e && oc->head != e) {
		oc_unlink(oc, e);
		oc_push_front(oc, e);
	}
	return e;
}

struct cfs_ocache_entry *cfs_ocache_insert(struct cfs_ocache *oc,
                                           const uint8_t digest[CFS_DIGEST_SIZE], int fd,
                                           const struct stat *st, bool sendfile_ok)
{
	uint64_t size = (uint64_t)st->st_size;
	bool small = size <= CFS_OCACHE_SMALL;
	struct cfs_ocache_entry *e, *old;
	ssize_t n;

	if ((small && (size > oc->max_bytes || !oc->max_bytes)) ||
	    (!small && (!sendfile_ok || !oc->max_files)))
		return NULL;
	old = cfs_ocache_find(oc, digest);
	if (old)
		cfs_ocache_drop(oc, old);
	/* Room in the map first: once the object is read or its file taken, the put cannot fail. */
	if (cfs_digestmap_reserve(oc->map, cfs_digestmap_count(oc->map) + 1) < 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->digest, digest, CFS_DIGEST_SIZE);
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = size;
	if (small) {
		e->data = malloc(size ? size : 1);
		if (!e->data)
			goto fail;
		n = cfs_pread_full(fd, e->data, size, 0);
		if (n != (ssize_t)size)
			goto fail;
		close(fd);
		oc->bytes += size;
	} else {
		e->seg = evbuffer_file_segment_new(fd, 0, (ev_off_t)size, EVBUF_FS_CLOSE_ON_FREE);
		if (!e->seg)
			goto fail;
		oc->files++;
	}
	cfs_digestmap_put(oc->map, e->digest, e, NULL);
	oc_push_front(oc, e);
	/* Evict least recently used entries over either budget, never the new one. */
	while ((oc->bytes > oc->max_bytes || oc->files > oc->max_files) && oc->tail != e)
		cfs_ocache_drop(oc, oc->tail);
	return e;
fail:
	free(e->data);
	free(e);
	return NULL;
}

int cfs_ocache_add(struct cfs_ocache_entry *e, struct evbuffer *out, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (e->seg)
		return evbuffer_add_file_segment(out, e->seg, (ev_off_t)off, (ev_off_t)len) == 0
		           ? 0
		           : -ENOMEM;
	return evbuffer_add(out, (const char *)e->data + off, (size_t)len) == 0 ? 0 : -ENOMEM;
}
