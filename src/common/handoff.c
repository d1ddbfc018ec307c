/* SPDX-License-Identifier: MIT */
/* cfscache: the hand-off directory (see handoff.h): links, their linger times, and the reaper
 * thread that removes expired names. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/handoff.h"
#include "common/log.h"
#include "common/name.h"
#include "common/util.h"

#define HELD UINT64_MAX /* deadline of a name whose object is not durable yet */

/* One name in the directory. Lingering entries are on a list in deadline order. */
struct handoff_entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t deadline; /* ns, or HELD */
	struct handoff_entry *prev, *next;
};

struct cfs_handoff {
	struct cfs_store *store;
	char *path;
	int dirfd;
	uint64_t linger_ns;

	pthread_mutex_t lock; /* guards everything below, and every link and unlink here */
	pthread_cond_t cond;  /* wakes the reaper: stop, or a new earliest deadline */
	void *tree;           /* tsearch tree of struct handoff_entry, by digest */
	struct handoff_entry *head, *tail; /* lingering entries, earliest deadline first */
	bool stop, started, emptied;
	pthread_t reaper;
	struct cfs_handoff_stats stats;
	bool have_prefix[256];
};

static int entry_cmp(const void *a, const void *b)
{
	return memcmp(((const struct handoff_entry *)a)->digest, ((const struct handoff_entry *)b)->digest,
		      CFS_DIGEST_SIZE);
}

int cfs_handoff_default_path(const char *store_path, char **path_ret)
{
	size_t len = strlen(store_path);

	while (len > 1 && store_path[len - 1] == '/')
		len--;
	if (asprintf(path_ret, "%.*s.handoff", (int)len, store_path) < 0)
		return -ENOMEM;
	return 0;
}

/* True when @inner is @outer or lies below it (both canonical). */
static bool path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	if (strcmp(outer, "/") == 0)
		return true;
	return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* Finds a top-level name that a hand-off directory never holds (anything but the prefix
 * directories), so that a wrong --handoff path is refused before anything in it is removed.
 * Returns 0 (none; *name_ret empty) or 1 with the name in @name_ret. */
static int find_foreign(int dfd, char *name_ret, size_t len)
{
	int fd = dup(dfd);
	DIR *top = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int found = 0;

	name_ret[0] = '\0';
	if (!top) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while (!found && (de = readdir(top))) {
		unsigned prefix;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (cfs_name_parse_prefix(de->d_name, strlen(de->d_name), &prefix) < 0 ||
		    (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)) {
			snprintf(name_ret, len, "%s", de->d_name);
			found = 1;
		}
	}
	closedir(top);
	return found;
}

/* Empties the prefix directories: names from before this process are never trusted. */
static void empty_dir(struct cfs_handoff *h)
{
	unsigned removed = 0;

	for (unsigned p = 0; p < 256; p++) {
		char name[3];
		int pfd;
		DIR *d;
		struct dirent *e;

		snprintf(name, sizeof(name), "%02x", p);
		pfd = openat(h->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (pfd < 0)
			continue;
		d = fdopendir(pfd);
		if (!d) {
			close(pfd);
			continue;
		}
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				removed++;
		}
		closedir(d);
		h->have_prefix[p] = true;
	}
	if (removed)
		cfs_info("hand-off directory %s: %u name(s) from before removed", h->path, removed);
}

static int ensure_prefix_locked(struct cfs_handoff *h, uint8_t prefix)
{
	char name[3];

	if (h->have_prefix[prefix])
		return 0;
	snprintf(name, sizeof(name), "%02x", prefix);
	if (mkdirat(h->dirfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	h->have_prefix[prefix] = true;
	return 0;
}

int cfs_handoff_open(struct cfs_store *store, const char *path, unsigned linger_ms,
		     struct cfs_handoff **h_ret, const char **msg_ret)
{
	struct cfs_handoff *h = calloc(1, sizeof(*h));
	char *want = NULL, real_h[PATH_MAX], real_s[PATH_MAX], foreign[256];
	struct stat st_h, st_s;
	const char *msg = NULL;
	bool created = false;
	int r;

	if (!h)
		return -ENOMEM;
	h->store = store;
	h->dirfd = -1;
	h->linger_ns = (uint64_t)(linger_ms ? linger_ms : CFS_HANDOFF_LINGER_MS) * 1000000ULL;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (path) {
		want = strdup(path);
		r = want ? 0 : -ENOMEM;
	} else {
		r = cfs_handoff_default_path(cfs_store_path(store), &want);
	}
	if (r < 0)
		goto fail;
	if (mkdir(want, 0755) == 0) {
		created = true;
	} else if (errno != EEXIST) {
		r = -errno;
		msg = "cannot create the hand-off directory";
		goto fail;
	}
	if (!realpath(want, real_h) || !realpath(cfs_store_path(store), real_s)) {
		r = -errno;
		msg = "cannot resolve the hand-off or store path";
		goto fail;
	}
	h->path = strdup(real_h);
	if (!h->path) {
		r = -ENOMEM;
		goto fail;
	}
	h->dirfd = open(real_h, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (h->dirfd < 0 || fstat(h->dirfd, &st_h) < 0 ||
	    fstat(cfs_store_dirfd(store), &st_s) < 0) {
		r = -errno;
		msg = "cannot open the hand-off directory";
		goto fail;
	}
	if (st_h.st_dev != st_s.st_dev) {
		r = -EXDEV;
		msg = "the hand-off directory must be on the store's filesystem (its objects are hard "
		      "links); when the store is the root of its filesystem, keep it one level down "
		      "(e.g. DISK/objects) or give --handoff DIR on that filesystem";
		goto fail;
	}
	if (path_within(real_h, real_s) || path_within(real_s, real_h)) {
		r = -EINVAL;
		msg = "the hand-off directory must not be inside the store nor contain it "
		      "(overlayfs refuses nested layers)";
		goto fail;
	}
	if (find_foreign(h->dirfd, foreign, sizeof(foreign))) {
		r = -ENOTEMPTY;
		cfs_err("%s holds '%s': not a hand-off directory (it only ever holds XX/ "
			"directories of object names); nothing in it was touched",
			h->path, foreign);
		msg = "not a hand-off directory";
		goto fail;
	}
	empty_dir(h);
	h->emptied = true;
	/* All 256 prefix directories up front: no miss pays for a mkdir. */
	for (unsigned p = 0; p < 256; p++)
		if (ensure_prefix_locked(h, (uint8_t)p) < 0)
			break; /* made when needed, then */
	free(want);
	*h_ret = h;
	return 0;
fail:
	if (msg_ret)
		*msg_ret = msg;
	if (created)
		rmdir(want); /* a refused place keeps nothing of ours */
	free(want);
	cfs_handoff_free(h);
	return r;
}

const char *cfs_handoff_path(const struct cfs_handoff *h)
{
	return h->path;
}

static void *reaper_main(void *arg);

static void list_unlink(struct cfs_handoff *h, struct handoff_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else if (h->head == e)
		h->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else if (h->tail == e)
		h->tail = e->prev;
	e->prev = e->next = NULL;
}

/* Sets a lingering deadline: to the tail of the list (deadlines only grow). */
static void entry_linger(struct cfs_handoff *h, struct handoff_entry *e)
{
	bool was_empty = h->head == NULL;

	if (e->deadline != HELD)
		list_unlink(h, e);
	e->deadline = cfs_now_ns() + h->linger_ns;
	e->prev = h->tail;
	if (h->tail)
		h->tail->next = e;
	else
		h->head = e;
	h->tail = e;
	/* The reaper starts with the first lingering name: a daemon forks after opening. */
	if (!h->started) {
		int r = pthread_create(&h->reaper, NULL, reaper_main, h);

		if (r != 0)
			cfs_warn("cannot start the hand-off thread: %s (names stay until exit)",
				 strerror(r));
		h->started = r == 0;
	} else if (was_empty) {
		pthread_cond_signal(&h->cond);
	}
}

static struct handoff_entry *entry_find(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry key;
	void *found;

	memcpy(key.digest, digest, CFS_DIGEST_SIZE);
	found = tfind(&key, &h->tree, entry_cmp);
	return found ? *(struct handoff_entry **)found : NULL;
}

/* Records a name just made; NULL on allocation failure (the name is removed again). */
static struct handoff_entry *entry_add(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry *e = calloc(1, sizeof(*e));
	void *slot;

	if (!e)
		return NULL;
	memcpy(e->digest, digest, CFS_DIGEST_SIZE);
	e->deadline = HELD;
	slot = tsearch(e, &h->tree, entry_cmp);
	if (!slot) {
		free(e);
		return NULL;
	}
	h->stats.names++;
	h->stats.linked++;
	return e;
}

/* Removes the name and its record. */
static void entry_remove(struct cfs_handoff *h, struct handoff_entry *e)
{
	char rel[CFS_NAME_PATH_LEN + 1];

	cfs_name_format_path(e->digest, rel);
	if (unlinkat(h->dirfd, rel, 0) < 0 && errno != ENOENT)
		cfs_warn("cannot remove hand-off name %s/%s: %s", h->path, rel, strerror(errno));
	if (e->deadline != HELD)
		list_unlink(h, e);
	tdelete(e, &h->tree, entry_cmp);
	h->stats.names--;
	free(e);
}


/* Makes the name with @link_fn (a linkat of some file to @rel here); a missing prefix directory
 * (removed by hand) is made again once. */
static int link_locked(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE],
		       int (*link_fn)(void *ctx, int dirfd, const char *rel), void *ctx)
{
	char rel[CFS_NAME_PATH_LEN + 1];
	int r;

	cfs_name_format_path(digest, rel);
	for (int attempt = 0; attempt < 2; attempt++) {
		r = ensure_prefix_locked(h, digest[0]);
		if (r < 0)
			return r;
		r = link_fn(ctx, h->dirfd, rel);
		if (r != -ENOENT)
			break;
		h->have_prefix[digest[0]] = false;
	}
	return r == -EEXIST ? 0 : r;
}

static int link_writer(void *ctx, int dirfd, const char *rel)
{
	return cfs_store_writer_link(ctx, dirfd, rel);
}

static int link_store_object(void *ctx, int dirfd, const char *rel)
{
	struct cfs_handoff *h = ctx;

	if (linkat(cfs_store_dirfd(h->store), rel, dirfd, rel, 0) < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	return 0;
}

int cfs_handoff_add_writer(struct cfs_handoff *h, struct cfs_store_writer *w,
			   const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry *e;
	int r = 0;

	pthread_mutex_lock(&h->lock);
	e = entry_find(h, digest);
	if (e) {
		/* Linked from the store a moment ago: hold it until this copy is committed. */
		if (e->deadline != HELD)
			list_unlink(h, e);
		e->deadline = HELD;
		goto out;
	}
	r = link_locked(h, digest, link_writer, w);
	if (r == 0 && !entry_add(h, digest)) {
		char rel[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(digest, rel);
		unlinkat(h->dirfd, rel, 0);
		r = -ENOMEM;
	}
out:
	pthread_mutex_unlock(&h->lock);
	return r;
}

void cfs_handoff_release(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry *e;

	pthread_mutex_lock(&h->lock);
	e = entry_find(h, digest);
	if (e)
		entry_linger(h, e);
	pthread_mutex_unlock(&h->lock);
}

void cfs_handoff_drop(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry *e;

	pthread_mutex_lock(&h->lock);
	e = entry_find(h, digest);
	if (e)
		entry_remove(h, e);
	pthread_mutex_unlock(&h->lock);
}

int cfs_handoff_ensure(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct handoff_entry *e;
	struct stat st;
	int r = 0;

	pthread_mutex_lock(&h->lock);
	e = entry_find(h, digest);
	if (e && e->deadline == HELD)
		goto out; /* being committed */
	/* Only a regular file of the store is linked (linkat never follows a symlink anyway). */
	r = cfs_store_lookup(h->store, digest, &st);
	if (e) {
		/* A lingering name of an object evicted from the store since is not kept alive: the
		 * object is fetched again (and counted again), and the name stays until then. */
		if (r == 0)
			entry_linger(h, e);
		else if (r == -EUCLEAN)
			r = -EIO;
		goto out;
	}
	if (r == -EUCLEAN)
		r = -EIO;
	if (r == 0)
		r = link_locked(h, digest, link_store_object, h);
	if (r == 0) {
		e = entry_add(h, digest);
		if (!e) {
			r = -ENOMEM;
		} else {
			h->stats.from_store++;
			entry_linger(h, e);
		}
	}
out:
	pthread_mutex_unlock(&h->lock);
	return r;
}

void cfs_handoff_get_stats(struct cfs_handoff *h, struct cfs_handoff_stats *stats_ret)
{
	pthread_mutex_lock(&h->lock);
	*stats_ret = h->stats;
	pthread_mutex_unlock(&h->lock);
}

/* Removes names past their linger time, sleeping until the earliest next one. */
static void *reaper_main(void *arg)
{
	struct cfs_handoff *h = arg;

	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		uint64_t now = cfs_now_ns();
		struct timespec ts;

		while (h->head && h->head->deadline <= now) {
			entry_remove(h, h->head);
			h->stats.expired++;
		}
		if (!h->head) {
			pthread_cond_wait(&h->cond, &h->lock);
			continue;
		}
		cfs_deadline_ms(&ts, (h->head->deadline - now) / 1000000ULL + 1);
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void free_entry(void *p)
{
	free(p);
}

void cfs_handoff_free(struct cfs_handoff *h)
{
	if (!h)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_cond_signal(&h->cond);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->reaper, NULL);
	}
	/* Every name goes: after a clean stop the store has each object under its own name. */
	while (h->head)
		entry_remove(h, h->head);
	if (h->emptied)
		empty_dir(h);
	tdestroy(h->tree, free_entry);
	if (h->dirfd >= 0)
		close(h->dirfd);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h->path);
	free(h);
}
