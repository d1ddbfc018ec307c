/* SPDX-License-Identifier: MIT */
/* cfscache: the counters of cfs-cache: as extended attributes of the mount root and in the
 * Prometheus text format. */
#include "config.h"

#include "fusefs/fs-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "fusefs/devio.h"

/* One counter: its xattr name (after user.cfs.), value, and what a metrics scraper makes of it. */
enum item_kind { ITEM_COUNTER, ITEM_GAUGE, ITEM_STRING };

struct stat_item {
	char name[64];
	char value[1024];
	enum item_kind kind;
	int server; /* server.N.field: N, else -1 */
};

/* Room for every counter and ten per server. */
#define MAX_ITEMS 256

struct collector {
	struct stat_item *items;
	size_t n, max;
};

static void __attribute__((format(printf, 5, 6)))
add_item(struct collector *c, enum item_kind kind, int server, const char *name, const char *fmt,
         ...)
{
	struct stat_item *it;
	va_list ap;

	if (c->n == c->max)
		return;
	it = &c->items[c->n++];
	if (server >= 0)
		snprintf(it->name, sizeof(it->name), XATTR_PREFIX "server.%d.%s", server, name);
	else
		snprintf(it->name, sizeof(it->name), XATTR_PREFIX "%s", name);
	va_start(ap, fmt);
	vsnprintf(it->value, sizeof(it->value), fmt, ap);
	va_end(ap);
	it->kind = kind;
	it->server = server;
}

#define COUNTER(nm, v) add_item(c, ITEM_COUNTER, -1, nm, "%" PRIu64, (uint64_t)(v))
#define GAUGE(nm, v) add_item(c, ITEM_GAUGE, -1, nm, "%" PRIu64, (uint64_t)(v))

static void collect_servers(struct cfs_fetch *fetch, struct collector *c)
{
	size_t ns = fetch ? cfs_fetch_server_count(fetch) : 0;

	for (size_t i = 0; i < ns; i++) {
		struct cfs_fetch_server_stats ss;
		const char *state;
		char legacy[32];
		int k = (int)i;

		if (cfs_fetch_server_stats(fetch, i, &ss) < 0)
			continue;
		state = cfs_fetch_server_state_name(ss.state);
		/* The one-line form, as before the per-field names. */
		snprintf(legacy, sizeof(legacy), "server.%zu", i);
		add_item(c, ITEM_STRING, -1, legacy,
		         "%s state=%s requests=%" PRIu64 " bytes=%" PRIu64 " failures=%" PRIu64
		         " not_found=%" PRIu64 " verify_failures=%" PRIu64 " active=%u",
		         ss.url, state, ss.requests, ss.bytes, ss.failures, ss.not_found,
		         ss.verify_failures, ss.active);
		add_item(c, ITEM_STRING, k, "url", "%s", ss.url);
		add_item(c, ITEM_STRING, k, "state", "%s", state);
		add_item(c, ITEM_COUNTER, k, "requests", "%" PRIu64, ss.requests);
		add_item(c, ITEM_COUNTER, k, "bytes", "%" PRIu64, ss.bytes);
		add_item(c, ITEM_COUNTER, k, "failures", "%" PRIu64, ss.failures);
		add_item(c, ITEM_COUNTER, k, "not_found", "%" PRIu64, ss.not_found);
		add_item(c, ITEM_COUNTER, k, "verify_failures", "%" PRIu64, ss.verify_failures);
		add_item(c, ITEM_GAUGE, k, "consecutive_failures", "%u", ss.consecutive_failures);
		add_item(c, ITEM_GAUGE, k, "active", "%u", ss.active);
	}
}

static size_t collect_stats(struct cfs_fs *fs, struct stat_item *items, size_t max)
{
	struct collector col = {.items = items, .max = max}, *c = &col;
	struct cfs_fetch *fetch = atomic_load(&fs->fetch);
	struct cfs_fetch_stats f = {0};
	struct cfs_fs_stats s;
	struct statvfs sv;

	cfs_fs_get_stats(fs, &s);
	if (fetch)
		cfs_fetch_get_stats(fetch, &f);
	/* The store first: what the node holds. */
	add_item(c, ITEM_STRING, -1, "store_dir", "%s", cfs_store_path(fs->store));
	if (fstatvfs(cfs_store_dirfd(fs->store), &sv) == 0) {
		GAUGE("store_fs_bytes", (uint64_t)sv.f_blocks * sv.f_frsize);
		GAUGE("store_fs_free", (uint64_t)sv.f_bavail * sv.f_frsize);
	}
	if (fs->quota) {
		struct cfs_quota_stats q;

		cfs_quota_get_stats(fs->quota, &q);
		GAUGE("store_objects", q.objects);
		GAUGE("store_bytes", q.bytes);
		GAUGE("max_size", q.max_bytes);
		COUNTER("evictions", q.evictions);
		COUNTER("bytes_evicted", q.bytes_evicted);
		GAUGE("pinned", q.pinned);
	}
	/* What reached the daemon and what became of it. */
	COUNTER("lookups", s.lookups);
	/* With the hand-off layer the kernel finds stored objects itself: a "hit" here is only a
	 * commit that raced overlayfs' look into the store, counted among the handoffs. */
	if (!fs->handoff)
		COUNTER("hits", s.hits);
	COUNTER("misses", s.misses);
	COUNTER("fetched", f.fetched);
	COUNTER("bytes_fetched", f.bytes);
	COUNTER("handoffs", s.handoffs);
	COUNTER("not_found", s.not_found);
	COUNTER("negative_hits", s.negative_hits);
	COUNTER("failures", s.failures);
	COUNTER("verify_failures", f.verify_failures);
	COUNTER("rejected", s.rejected);
	COUNTER("store_gone", s.store_gone);
	GAUGE("pending", s.pending);
	COUNTER("requests", f.requests);
	COUNTER("retries", f.retries);
	COUNTER("resumed", f.resumed);
	COUNTER("joined", f.joined);
	GAUGE("in_flight", f.in_flight);
	GAUGE("queued", f.queued);
	COUNTER("commits", f.commits);
	COUNTER("opens", s.opens);
	COUNTER("reads", s.reads);
	COUNTER("read_bytes", s.read_bytes);
	GAUGE("passthrough", cfs_passthrough_active() ? 1 : 0);
	COUNTER("passthrough_opens", s.passthrough_opens);
	GAUGE("backing_files", s.backing_files);
	GAUGE("handoff", fs->handoff ? 1 : 0);
	if (fs->handoff) {
		struct cfs_handoff_stats h;

		cfs_handoff_get_stats(fs->handoff, &h);
		GAUGE("handoff_names", h.names);
		/* Where mount-image finds the third data-only layer. */
		add_item(c, ITEM_STRING, -1, "handoff_dir", "%s", cfs_handoff_path(fs->handoff));
	}
	collect_servers(fetch, c);
	return col.n;
}

#undef COUNTER
#undef GAUGE

/* Prometheus text: a label value with \, " and newlines escaped. */
static void metrics_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

int cfs_fs_write_metrics(struct cfs_fs *fs, FILE *f, const char *mountpoint)
{
	struct stat_item *items = malloc(MAX_ITEMS * sizeof(*items));
	const char *urls[MAX_ITEMS] = {0};
	size_t n;

	if (!items)
		return -ENOMEM;
	n = collect_stats(fs, items, MAX_ITEMS);
	for (size_t i = 0; i < n; i++)
		if (items[i].server >= 0 && items[i].server < MAX_ITEMS &&
		    strcmp(strrchr(items[i].name, '.') + 1, "url") == 0)
			urls[items[i].server] = items[i].value;
	for (size_t i = 0; i < n; i++) {
		const struct stat_item *it = &items[i];
		const char *field =
		    it->server >= 0 ? strrchr(it->name, '.') + 1 : it->name + strlen(XATTR_PREFIX);
		const char *type = it->kind == ITEM_COUNTER ? "counter" : "gauge";

		if (it->kind == ITEM_STRING && !(it->server >= 0 && strcmp(field, "state") == 0))
			continue;
		if (it->server >= 0 && strcmp(field, "state") == 0) {
			/* One series per server whose label is the state: 1 (the others absent). */
			if (it->server == 0)
				fprintf(f, "# TYPE cfs_cache_server_state gauge\n");
			fprintf(f, "cfs_cache_server_state{mount=\"");
			metrics_label(f, mountpoint);
			fprintf(f, "\",server=\"");
			metrics_label(f, urls[it->server] ? urls[it->server] : "");
			fprintf(f, "\",state=\"%s\"} 1\n", it->value);
			continue;
		}
		if (it->server <= 0)
			fprintf(f, "# TYPE cfs_cache_%s%s%s %s\n", it->server == 0 ? "server_" : "",
			        field, it->kind == ITEM_COUNTER ? "_total" : "", type);
		fprintf(f, "cfs_cache_%s%s%s{mount=\"", it->server >= 0 ? "server_" : "", field,
		        it->kind == ITEM_COUNTER ? "_total" : "");
		metrics_label(f, mountpoint);
		if (it->server >= 0) {
			fprintf(f, "\",server=\"");
			metrics_label(f, urls[it->server] ? urls[it->server] : "");
		}
		fprintf(f, "\"} %s\n", it->value);
	}
	free(items);
	return ferror(f) ? -EIO : 0;
}

void cfs_fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	struct stat_item *items;
	size_t n;

	if (ino != FUSE_ROOT_ID || strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	items = malloc(MAX_ITEMS * sizeof(*items));
	if (!items) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = collect_stats(fs, items, MAX_ITEMS);
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (strcmp(items[i].name, name) != 0)
			continue;
		len = strlen(items[i].value);
		if (size == 0)
			fuse_reply_xattr(req, len);
		else if (size < len)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, items[i].value, len);
		free(items);
		return;
	}
	free(items);
	fuse_reply_err(req, ENODATA);
}

void cfs_fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	struct stat_item *items;
	char *buf;
	size_t n, len = 0;

	if (ino != FUSE_ROOT_ID) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	items = malloc(MAX_ITEMS * sizeof(*items));
	buf = malloc(MAX_ITEMS * sizeof(items[0].name));
	if (!items || !buf) {
		free(items);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = collect_stats(fs, items, MAX_ITEMS);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(items[i].name) + 1;

		memcpy(buf + len, items[i].name, l);
		len += l;
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
	free(items);
	free(buf);
}

void cfs_fs_get_stats(struct cfs_fs *fs, struct cfs_fs_stats *s)
{
	s->lookups = atomic_load(&fs->lookups);
	s->hits = atomic_load(&fs->hits);
	s->misses = atomic_load(&fs->misses);
	s->handoffs = atomic_load(&fs->handoffs);
	s->not_found = atomic_load(&fs->not_found);
	s->failures = atomic_load(&fs->failures);
	s->rejected = atomic_load(&fs->rejected);
	s->opens = atomic_load(&fs->opens);
	s->passthrough_opens = atomic_load(&fs->passthrough_opens);
	s->backing_files = atomic_load(&fs->backing_files);
	s->reads = atomic_load(&fs->reads);
	s->read_bytes = atomic_load(&fs->read_bytes);
	s->pending = atomic_load(&fs->pending);
	s->store_gone = atomic_load(&fs->store_gone);
	s->negative_hits = atomic_load(&fs->negative_hits);
}
