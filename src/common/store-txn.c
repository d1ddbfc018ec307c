/* SPDX-License-Identifier: MIT */
/* cfscache: store transactions, the only way a verified object gets its name: one flush for the
 * group's temp files, then each moved under its name without replacing anything, the observer
 * told just before. A crash at any point leaves temp files (removed by the next open) and whole
 * objects, never a partial object under its name. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/name.h"
#include "common/store-internal.h"
#include "common/store.h"
#include "common/util.h"

struct txn_item {
	struct cfs_store_writer *w;
	unsigned flags;
};

struct cfs_store_txn {
	struct cfs_store *store;
	struct txn_item *items;
	size_t n, cap;
	struct cfs_store_txn_stats stats;
};

static int ensure_prefix(struct cfs_store *store, uint8_t prefix)
{
	char name[3];

	if (atomic_load(&store->have_prefix[prefix]))
		return 0;
	snprintf(name, sizeof(name), "%02x", prefix);
	if (mkdirat(store->dirfd, name, 0755) < 0) {
		if (errno != EEXIST)
			return -errno;
	} else if (fchmodat(store->dirfd, name, 0755, 0) < 0) {
		return -errno;
	}
	atomic_store(&store->have_prefix[prefix], 1);
	return 0;
}

/* Moves the temp file under its final name unless something is there already. */
static int link_noreplace(struct cfs_store *store, const char *tmpname, const char *rel)
{
	if (renameat2(store->tmpfd, tmpname, store->dirfd, rel, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* Filesystems without RENAME_NOREPLACE: link fails with EEXIST just the same. */
	if (linkat(store->tmpfd, tmpname, store->dirfd, rel, 0) < 0)
		return -errno;
	unlinkat(store->tmpfd, tmpname, 0);
	return 0;
}

/* Gives a verified writer's object its name (its data durable already): 0 when it has it now,
 * *existed_ret true when another writer's copy was first. */
static int writer_name(struct cfs_store_writer *w, bool *existed_ret)
{
	struct cfs_store *store = w->store;
	char rel[CFS_NAME_PATH_LEN + 1];
	int r;

	*existed_ret = false;
	cfs_store_writer_seal(w);
	/* The lock is held until the name is the object's: a cleaner never sees it unlocked. */
	r = ensure_prefix(store, w->computed[0]);
	if (r < 0)
		return r;
	if (store->observer.added)
		store->observer.added(store->observer_ctx, w->computed, w->size);
	cfs_name_format_path(w->computed, rel);
	r = link_noreplace(store, w->tmpname, rel);
	if (r == -ENOENT) {
		/* The prefix directory was removed under us (e.g. by hand): make it again. */
		atomic_store(&store->have_prefix[w->computed[0]], 0);
		r = ensure_prefix(store, w->computed[0]);
		if (r == 0)
			r = link_noreplace(store, w->tmpname, rel);
	}
	if (r == -EEXIST) {
		struct stat st;

		/* Present already: fine if it is a regular file, an error if something else. */
		r = fstatat(store->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
		        ? 0
		        : -EUCLEAN;
		*existed_ret = true;
		if (r == 0)
			unlinkat(store->tmpfd, w->tmpname, 0);
	}
	return r;
}

/* Records what naming @w came to, keeping the transaction's counts. */
static void writer_done(struct cfs_store_txn *txn, struct cfs_store_writer *w, int r, bool existed)
{
	if (r < 0) {
		w->state = WRITER_FAILED;
		w->result = r;
		return;
	}
	w->state = WRITER_COMMITTED;
	w->existed = existed;
	if (existed) {
		txn->stats.present++;
		txn->stats.bytes_present += w->size;
	} else {
		txn->stats.added++;
		txn->stats.bytes_added += w->size;
	}
}

int cfs_store_txn_new(struct cfs_store *store, struct cfs_store_txn **txn_ret)
{
	struct cfs_store_txn *txn = calloc(1, sizeof(*txn));

	if (!txn)
		return -ENOMEM;
	txn->store = store;
	*txn_ret = txn;
	return 0;
}

void cfs_store_txn_free(struct cfs_store_txn *txn)
{
	if (!txn)
		return;
	cfs_store_txn_discard(txn);
	free(txn->items);
	free(txn);
}

int cfs_store_txn_add(struct cfs_store_txn *txn, struct cfs_store_writer *w, unsigned flags)
{
	if (w->store != txn->store || (w->state != WRITER_VERIFIED && w->state != WRITER_FAILED))
		return -EINVAL;
	if (txn->n == txn->cap) {
		size_t cap = txn->cap ? txn->cap * 2 : 16;
		struct txn_item *items = realloc(txn->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		txn->items = items;
		txn->cap = cap;
	}
	txn->items[txn->n++] = (struct txn_item){.w = w, .flags = flags};
	return 0;
}

size_t cfs_store_txn_count(const struct cfs_store_txn *txn)
{
	return txn->n;
}

/* Makes the temp files durable: one fsync for a lone writer, else one syncfs for them all. */
static int txn_flush(struct cfs_store_txn *txn)
{
	int r;

	if (txn->n == 1)
		r = fsync(txn->items[0].w->lockfd);
	else
		r = syncfs(txn->store->dirfd);
	return r < 0 ? -errno : 0;
}

/* Empties the transaction, freeing the writers it was given to free. */
static void txn_release(struct cfs_store_txn *txn)
{
	for (size_t i = 0; i < txn->n; i++)
		if (txn->items[i].flags & CFS_STORE_TXN_FREE)
			cfs_store_writer_free(txn->items[i].w);
	txn->n = 0;
}

int cfs_store_txn_commit(struct cfs_store_txn *txn)
{
	int first = 0, flushed;
	uint64_t t0;

	if (txn->n == 0)
		return 0;
	t0 = cfs_now_ns();
	flushed = txn_flush(txn);
	txn->stats.last_flush_ns = cfs_now_ns() - t0;
	for (size_t i = 0; i < txn->n; i++) {
		struct cfs_store_writer *w = txn->items[i].w;
		bool existed = false;
		int r = flushed;

		if (r == 0)
			r = writer_name(w, &existed);
		writer_done(txn, w, r, existed);
		if (r < 0 && first == 0)
			first = r;
	}
	txn_release(txn);
	return first;
}

void cfs_store_txn_discard(struct cfs_store_txn *txn)
{
	txn_release(txn);
}

void cfs_store_txn_get_stats(const struct cfs_store_txn *txn, struct cfs_store_txn_stats *ret)
{
	*ret = txn->stats;
}

int cfs_store_commit_one(struct cfs_store_writer *w, bool *existed_ret)
{
	struct cfs_store_txn txn = {.store = w->store};
	struct txn_item item = {.w = w};
	int r;

	/* A transaction on the stack: a lone commit allocates nothing. */
	txn.items = &item;
	txn.n = txn.cap = 1;
	r = w->state == WRITER_VERIFIED || w->state == WRITER_FAILED ? cfs_store_txn_commit(&txn)
	                                                             : -EINVAL;
	return r < 0 ? r : cfs_store_writer_result(w, existed_ret);
}

int cfs_store_insert_fd(struct cfs_store *store, int fd, const uint8_t *expected,
                        uint8_t digest_ret[CFS_DIGEST_SIZE], bool *existed_ret)
{
	struct cfs_store_writer *w = NULL;
	size_t bufsize = 256 * 1024;
	uint8_t *buf = malloc(bufsize);
	int r;

	if (!buf)
		return -ENOMEM;
	r = cfs_store_writer_new(store, expected, &w);
	if (r < 0)
		goto out;
	r = cfs_store_writer_write_fd(w, fd, buf, bufsize);
	if (r < 0)
		goto out;
	r = cfs_store_writer_verify(w, digest_ret);
	if (r < 0)
		goto out;
	r = cfs_store_commit_one(w, existed_ret);
out:
	cfs_store_writer_free(w);
	free(buf);
	return r;
}
