/* SPDX-License-Identifier: MIT */
/* cfscache: lookups of objects: names parsed, objects found in the store or the hand-off
 * directory, misses parked and answered by the fetch completion (no worker waits), the
 * negative cache of objects absent everywhere. */
#include "config.h"

#include "fusefs/fs-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/name.h"
#include "common/util.h"

#define REPEAT_LOG_INTERVAL_NS (60ULL * 1000000000ULL)

/* True when a line last said at *@said_ns may be said again now (and it is then marked said). */
static bool say_again(atomic_uint_fast64_t *said_ns)
{
	uint64_t now = cfs_now_ns(), said = atomic_load(said_ns);

	return (said == 0 || now - said >= REPEAT_LOG_INTERVAL_NS) &&
	       atomic_compare_exchange_strong(said_ns, &said, now);
}

/* A request parked until its object arrives; owns copies of everything it needs. */
struct pending {
	struct cfs_fs *fs;
	fuse_req_t req;
	enum pending_kind kind;
	fuse_ino_t ino;         /* of an open */
	atomic_bool answered;   /* the request got its reply (from the fetch or an interrupt) */
	bool interrupted_early; /* interrupted before the fetch started */
	struct fuse_file_info fi;
	uint8_t digest[CFS_DIGEST_SIZE];
};

/* ---- negative cache ---- */

static struct neg_entry *neg_slot(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE])
{
	/* Digests are uniformly random past the prefix byte. */
	return &fs->neg[((unsigned)digest[8] << 8 | digest[9]) & (NEG_SLOTS - 1)];
}

static bool neg_hit(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct neg_entry *e;
	bool hit;

	if (!fs->neg)
		return false;
	pthread_mutex_lock(&fs->neg_lock);
	e = neg_slot(fs, digest);
	hit = e->expires_ns > cfs_now_ns() && memcmp(e->digest, digest, CFS_DIGEST_SIZE) == 0;
	pthread_mutex_unlock(&fs->neg_lock);
	if (hit)
		atomic_fetch_add(&fs->negative_hits, 1);
	return hit;
}

static void neg_add(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct neg_entry *e;

	if (!fs->neg)
		return;
	pthread_mutex_lock(&fs->neg_lock);
	e = neg_slot(fs, digest);
	memcpy(e->digest, digest, CFS_DIGEST_SIZE);
	e->expires_ns = cfs_now_ns() + fs->neg_timeout_ns;
	pthread_mutex_unlock(&fs->neg_lock);
}

/* ---- replies ---- */

static void reply_object_entry(struct cfs_fs *fs, fuse_req_t req,
                               const uint8_t digest[CFS_DIGEST_SIZE], const struct stat *store_st)
{
	struct fuse_entry_param e = {.attr_timeout = fs->timeout, .entry_timeout = fs->timeout};
	int r = cfs_fs_node_ref(fs, digest, &e.ino);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	cfs_fs_object_attr(e.ino, store_st, &e.attr);
	/* If the kernel dropped the request meanwhile, give back the reference just taken. */
	if (fuse_reply_entry(req, &e) == -ENOENT)
		cfs_fs_node_unref(fs, e.ino, 1);
}

/* Answers a lookup of an object that has (@linked) or is given a name in the hand-off
 * directory: ENOENT, not cached, so overlayfs goes on to the hand-off layer and opens the real
 * file there. Nothing of the object ever goes through FUSE. */
static void reply_handed_off(struct cfs_fs *fs, fuse_req_t req,
                             const uint8_t digest[CFS_DIGEST_SIZE], bool linked)
{
	int r = linked ? 0 : cfs_handoff_ensure(fs->handoff, digest);

	if (r < 0) {
		char name[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(digest, name);
		cfs_err("cannot hand %s over through %s: %s", name, cfs_handoff_path(fs->handoff),
		        strerror(-r));
		fuse_reply_err(req, EIO);
		return;
	}
	atomic_fetch_add(&fs->handoffs, 1);
	fuse_reply_err(req, ENOENT);
}

/* ---- fetch completions (run on the fetcher's thread) ---- */

static void trace_fetch(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size)
{
	char name[CFS_NAME_PATH_LEN + 1];

	if (!fs->trace)
		return;
	cfs_name_format_path(digest, name);
	pthread_mutex_lock(&fs->lock);
	fprintf(fs->trace, "%s %" PRIu64 " %.3f\n", name, size,
	        (double)(cfs_now_ns() - fs->start_ns) / 1e9);
	fflush(fs->trace);
	pthread_mutex_unlock(&fs->lock);
}

/* The reader gave up (a signal): answer EINTR now; the download goes on and the object still
 * lands in the store. */
static _Thread_local bool registering_interrupt;

static void pending_interrupted(fuse_req_t req, void *data)
{
	struct pending *p = data;

	/* Called from inside fuse_req_interrupt_func: replying there would free the request under
	 * libfuse's feet, so cfs_fs_start_fetch answers instead. */
	if (registering_interrupt) {
		p->interrupted_early = true;
		return;
	}
	/* Nothing of @p is used after the exchange: the completion may free it. */
	if (!atomic_exchange(&p->answered, true))
		fuse_reply_err(req, EINTR);
}

/* Takes the right to answer @p's request; false when an interrupt already answered it. After a
 * true return the interrupt callback is not running and will not run. */
static bool pending_claim(struct pending *p)
{
	if (atomic_exchange(&p->answered, true))
		return false;
	fuse_req_interrupt_func(p->req, NULL, NULL);
	return true;
}

static void fetch_done(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                       const struct cfs_fetch_result *info, void *userdata)
{
	struct pending *p = userdata;
	struct cfs_fs *fs = p->fs;
	char name[CFS_NAME_PATH_LEN + 1];
	struct stat st;
	int fd;

	atomic_fetch_sub(&fs->pending, 1);
	if (result == 0 && info && info->fetched)
		trace_fetch(fs, digest, info->size);
	if (result == -ENOENT) {
		atomic_fetch_add(&fs->not_found, 1);
		neg_add(fs, digest);
	} else if (result < 0 && info && (info->http_status == 401 || info->http_status == 403)) {
		/* A token missing or refused fails every lookup alike: said once a minute. */
		atomic_fetch_add(&fs->failures, 1);
		cfs_name_format_path(digest, name);
		if (say_again(&fs->refused_said_ns))
			cfs_err("fetch of %s failed: %s refused the request (HTTP %ld): check "
			        "--token-file; further refusals are counted in 'failures' and said "
			        "again in a minute",
			        name, info->server ? info->server : "the server",
			        info->http_status);
		result = -EIO;
	} else if (result < 0) {
		atomic_fetch_add(&fs->failures, 1);
		cfs_name_format_path(digest, name);
		cfs_err("fetch of %s failed: %s (last server tried: %s)", name,
		        info && info->reason ? info->reason : strerror(-result),
		        info && info->server ? info->server : "none");
		result = result == -ECANCELED ? -EINTR : -EIO;
	}
	if (!pending_claim(p))
		goto out;
	if (result < 0) {
		fuse_reply_err(p->req, -result);
		goto out;
	}
	if (p->kind == PENDING_LOOKUP && fs->handoff) {
		reply_handed_off(fs, p->req, digest, info && info->handed_off);
	} else if (p->kind == PENDING_LOOKUP) {
		int r = cfs_store_lookup(fs->store, digest, &st);

		if (r < 0)
			fuse_reply_err(p->req, r == -ENOENT ? EIO : (r == -EUCLEAN ? EIO : -r));
		else
			reply_object_entry(fs, p->req, digest, &st);
	} else {
		int r = cfs_fs_open_object_fd(fs, digest, &fd);

		if (r < 0)
			fuse_reply_err(p->req, r == -ENOENT ? EIO : -r);
		else
			cfs_fs_reply_open_object(fs, p->req, p->ino, &p->fi, fd);
	}
out:
	free(p);
}

/* True when the store's directory was removed under the daemon (its descriptor stays valid,
 * but every lookup misses and no object can be saved): logged once a minute and counted. */
static bool store_gone(struct cfs_fs *fs)
{
	struct stat st;

	if (fstat(cfs_store_dirfd(fs->store), &st) == 0 && st.st_nlink > 0)
		return false;
	atomic_fetch_add(&fs->store_gone, 1);
	if (say_again(&fs->store_gone_said_ns))
		cfs_err("the store directory %s was removed under the running daemon: lookups fail "
		        "with EIO (%" PRIu64 " so far); recreate the store and restart cfs-cache",
		        cfs_store_path(fs->store), (uint64_t)atomic_load(&fs->store_gone));
	return true;
}

/* The reply comes from fetch_done. */
void cfs_fs_start_fetch(struct cfs_fs *fs, fuse_req_t req, enum pending_kind kind,
                        const uint8_t digest[CFS_DIGEST_SIZE], fuse_ino_t ino,
                        const struct fuse_file_info *fi)
{
	struct cfs_fetch *fetch = atomic_load(&fs->fetch);
	struct pending *p;
	int r;

	if (store_gone(fs)) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (!fetch) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->fs = fs;
	p->req = req;
	p->kind = kind;
	p->ino = ino;
	if (fi)
		p->fi = *fi;
	memcpy(p->digest, digest, CFS_DIGEST_SIZE);
	registering_interrupt = true;
	fuse_req_interrupt_func(req, pending_interrupted, p);
	registering_interrupt = false;
	if (p->interrupted_early) {
		fuse_req_interrupt_func(req, NULL, NULL);
		free(p);
		fuse_reply_err(req, EINTR);
		return;
	}
	atomic_fetch_add(&fs->misses, 1);
	atomic_fetch_add(&fs->pending, 1);
	r = cfs_fetch_submit(fetch, digest, 0, fetch_done, p);
	if (r < 0) {
		atomic_fetch_sub(&fs->pending, 1);
		if (pending_claim(p))
			fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
		free(p);
	}
}

/* ---- lookup ---- */

/* A lookup of an object the local store lacks: absent everywhere a moment ago, or fetched. */
static void lookup_miss(struct cfs_fs *fs, fuse_req_t req, const uint8_t digest[CFS_DIGEST_SIZE])
{
	if (neg_hit(fs, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	cfs_fs_start_fetch(fs, req, PENDING_LOOKUP, digest, 0, NULL);
}

void cfs_fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	size_t len = strlen(name);
	uint8_t digest[CFS_DIGEST_SIZE];
	struct stat st;
	unsigned prefix;
	int r;

	if (parent == FUSE_ROOT_ID) {
		struct fuse_entry_param e = {.attr_timeout = fs->timeout,
		                             .entry_timeout = fs->timeout};

		if (cfs_name_parse_prefix(name, len, &prefix) < 0) {
			atomic_fetch_add(&fs->rejected, 1);
			fuse_reply_err(req, ENOENT);
			return;
		}
		e.ino = PREFIX_INO_BASE + prefix;
		cfs_fs_dir_attr(e.ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (!is_prefix_ino(parent)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* Malformed names never reach the store or the network. */
	if (cfs_name_parse_rest((unsigned)(parent - PREFIX_INO_BASE), name, len, digest) < 0) {
		atomic_fetch_add(&fs->rejected, 1);
		fuse_reply_err(req, ENOENT);
		return;
	}
	atomic_fetch_add(&fs->lookups, 1);
	if (fs->handoff) {
		/* In the store (a commit just raced overlayfs' look there) or handed off already.
		 */
		r = cfs_handoff_ensure(fs->handoff, digest);
		if (r == 0) {
			atomic_fetch_add(&fs->hits, 1);
			reply_handed_off(fs, req, digest, true);
			return;
		}
		if (r != -ENOENT) {
			fuse_reply_err(req, EIO);
			return;
		}
		lookup_miss(fs, req, digest);
		return;
	}
	r = cfs_store_lookup(fs->store, digest, &st);
	if (r == 0) {
		atomic_fetch_add(&fs->hits, 1);
		if (fs->quota)
			cfs_quota_touch(fs->quota, digest);
		reply_object_entry(fs, req, digest, &st);
		return;
	}
	if (r != -ENOENT) {
		fuse_reply_err(req, EIO);
		return;
	}
	lookup_miss(fs, req, digest);
}
