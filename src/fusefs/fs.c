/* SPDX-License-Identifier: MIT */
/* cfscache: FUSE low-level operations: 256 prefix dirs, objects looked up in the local store and
 * fetched on a miss, with the reply sent from the fetch completion (no worker waits). */
#include "config.h"

#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"
#include "common/name.h"
#include "common/u64map.h"
#include "common/util.h"
#include "fusefs/fs.h"
#include "fusefs/devio.h"

#define PREFIX_INO_BASE 2 /* prefix directory p has inode 2 + p */
#define OBJECT_INO_FLAG (1ULL << 63)
#define XATTR_PREFIX "user.cfs."

/* An object inode the kernel knows, in the node table by its inode. */
struct node {
	uint64_t nlookup;
	/* The kernel allows one backing file per inode: open files share it. */
	uint32_t backing_id, backing_users;
	uint8_t digest[CFS_DIGEST_SIZE];
};

struct cfs_fs {
	struct cfs_store *store;
	struct cfs_quota *quota;
	struct cfs_handoff *handoff;
	_Atomic(struct cfs_fetch *) fetch;
	double timeout;
	uint64_t start_ns;

	pthread_mutex_t lock; /* guards the node table and the trace file */
	struct cfs_u64map *nodes; /* inode -> struct node */
	FILE *trace;

	atomic_uint_fast64_t lookups, hits, misses, handoffs, not_found, failures, rejected, opens,
		passthrough_opens, backing_files, reads, read_bytes, pending, store_gone;
	/* When the last line about a removed store, or about a server refusing requests, was
	 * logged: those are said once a minute, not once per lookup. */
	atomic_uint_fast64_t store_gone_said_ns, refused_said_ns;

	/* Objects absent on every server, answered ENOENT without a request until they expire:
	 * direct-mapped, so bounded, and a newer absence replaces an older one. */
	pthread_mutex_t neg_lock;
	struct neg_entry *neg; /* NEG_SLOTS entries; NULL when off */
	uint64_t neg_timeout_ns;
	atomic_uint_fast64_t negative_hits;
};

#define NEG_SLOTS 4096

struct neg_entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t expires_ns; /* 0: empty */
};

#define REPEAT_LOG_INTERVAL_NS (60ULL * 1000000000ULL)

/* True when a line last said at *@said_ns may be said again now (and it is then marked said). */
static bool say_again(atomic_uint_fast64_t *said_ns)
{
	uint64_t now = cfs_now_ns(), said = atomic_load(said_ns);

	return (said == 0 || now - said >= REPEAT_LOG_INTERVAL_NS) &&
	       atomic_compare_exchange_strong(said_ns, &said, now);
}

enum pending_kind { PENDING_LOOKUP, PENDING_OPEN };

/* A request parked until its object arrives; owns copies of everything it needs. */
struct pending {
	struct cfs_fs *fs;
	fuse_req_t req;
	enum pending_kind kind;
	fuse_ino_t ino;        /* of an open */
	atomic_bool answered;  /* the request got its reply (from the fetch or an interrupt) */
	bool interrupted_early; /* interrupted before the fetch started */
	struct fuse_file_info fi;
	uint8_t digest[CFS_DIGEST_SIZE];
};

struct dir_snapshot {
	size_t n;
	char (*names)[CFS_NAME_REST_LEN + 1];
};

static fuse_ino_t object_ino(const uint8_t digest[CFS_DIGEST_SIZE])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | digest[i];
	return (fuse_ino_t)(v | OBJECT_INO_FLAG);
}

static bool is_prefix_ino(fuse_ino_t ino)
{
	return ino >= PREFIX_INO_BASE && ino < PREFIX_INO_BASE + 256;
}

/* ---- node table (inode -> digest), reference counted by kernel lookups ---- */

/* Takes one kernel reference on the object's node. Returns 0, -ENOMEM or -EIO (collision). */
static int node_ref(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], fuse_ino_t *ino_ret)
{
	fuse_ino_t ino = object_ino(digest);
	struct node *n;
	int r = 0;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (memcmp(n->digest, digest, CFS_DIGEST_SIZE) != 0)
			r = -EIO; /* two digests sharing 64 bits: practically never */
		else
			n->nlookup++;
	} else {
		n = calloc(1, sizeof(*n));
		if (!n) {
			r = -ENOMEM;
		} else {
			n->nlookup = 1;
			memcpy(n->digest, digest, CFS_DIGEST_SIZE);
			r = cfs_u64map_put(fs->nodes, ino, n, NULL);
			if (r < 0)
				free(n);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (r == 0)
		*ino_ret = ino;
	return r;
}

static void node_unref(struct cfs_fs *fs, fuse_ino_t ino, uint64_t count)
{
	struct node *n, *victim = NULL;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (n->nlookup <= count)
			victim = cfs_u64map_remove(fs->nodes, ino);
		else
			n->nlookup -= count;
	}
	pthread_mutex_unlock(&fs->lock);
	free(victim);
}

static bool node_digest(struct cfs_fs *fs, fuse_ino_t ino, uint8_t digest[CFS_DIGEST_SIZE])
{
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n)
		memcpy(digest, n->digest, CFS_DIGEST_SIZE);
	pthread_mutex_unlock(&fs->lock);
	return n != NULL;
}

/* A passthrough backing id for an open of @ino whose store file is @fd (0: none), shared by all
 * open files of the inode. */
static uint32_t node_backing_get(struct cfs_fs *fs, fuse_ino_t ino, int fd)
{
	struct node *n;
	uint32_t id = 0;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (!n->backing_id) {
			n->backing_id = cfs_passthrough_attach(fd);
			if (n->backing_id)
				atomic_fetch_add(&fs->backing_files, 1);
		}
		if (n->backing_id) {
			n->backing_users++;
			id = n->backing_id;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return id;
}

static void node_backing_put(struct cfs_fs *fs, fuse_ino_t ino, uint32_t id)
{
	struct node *n;
	bool last = false;

	if (!id)
		return;
	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n && n->backing_id == id && --n->backing_users == 0) {
		n->backing_id = 0;
		last = true;
	}
	pthread_mutex_unlock(&fs->lock);
	if (last) {
		cfs_passthrough_detach(id);
		atomic_fetch_sub(&fs->backing_files, 1);
	}
}

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

/* ---- attributes ---- */

static void dir_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = ino == FUSE_ROOT_ID ? 258 : 2;
}

static void object_attr(fuse_ino_t ino, const struct stat *store_st, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = store_st->st_size;
	st->st_blocks = store_st->st_blocks;
	st->st_blksize = 4096;
	st->st_mtim = store_st->st_mtim;
	st->st_ctim = store_st->st_ctim;
	st->st_atim = store_st->st_atim;
}

static void reply_object_entry(struct cfs_fs *fs, fuse_req_t req,
			       const uint8_t digest[CFS_DIGEST_SIZE], const struct stat *store_st)
{
	struct fuse_entry_param e = { .attr_timeout = fs->timeout, .entry_timeout = fs->timeout };
	int r = node_ref(fs, digest, &e.ino);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	object_attr(e.ino, store_st, &e.attr);
	/* If the kernel dropped the request meanwhile, give back the reference just taken. */
	if (fuse_reply_entry(req, &e) == -ENOENT)
		node_unref(fs, e.ino, 1);
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

static int open_object_fd(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], int *fd_ret)
{
	int r = cfs_store_open_object(fs->store, digest, fd_ret);

	return r == -EUCLEAN ? -EIO : r;
}

/* An open object's file handle: the store file's descriptor, and in the high half the kernel's
 * backing id when the open is a passthrough one. */
static int fh_fd(uint64_t fh)
{
	return (int)(uint32_t)fh;
}

static uint32_t fh_backing_id(uint64_t fh)
{
	return (uint32_t)(fh >> 32);
}

/* Answers an open of an object with its store file, bound to it in the kernel where possible. */
static void reply_open_object(struct cfs_fs *fs, fuse_req_t req, fuse_ino_t ino,
			      struct fuse_file_info *fi, int fd)
{
	uint32_t id = node_backing_get(fs, ino, fd);

	if (id)
		atomic_fetch_add(&fs->passthrough_opens, 1);
	fi->fh = (uint64_t)(uint32_t)fd | (uint64_t)id << 32;
	fi->keep_cache = 1; /* immutable content (ignored for passthrough) */
	if (cfs_passthrough_reply_open(req, fi, id) == -ENOENT) {
		/* The kernel dropped the request meanwhile: no release will come. */
		node_backing_put(fs, ino, id);
		close(fd);
	}
}

/* The reader gave up (a signal): answer EINTR now; the download goes on and the object still
 * lands in the store. */
static _Thread_local bool registering_interrupt;

static void pending_interrupted(fuse_req_t req, void *data)
{
	struct pending *p = data;

	/* Called from inside fuse_req_interrupt_func: replying there would free the request under
	 * libfuse's feet, so start_fetch answers instead. */
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
				"again in a minute", name, info->server ? info->server : "the server",
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
		int r = open_object_fd(fs, digest, &fd);

		if (r < 0)
			fuse_reply_err(p->req, r == -ENOENT ? EIO : -r);
		else
			reply_open_object(fs, p->req, p->ino, &p->fi, fd);
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

/* Parks @req until the object is fetched. The reply comes from fetch_done. */
static void start_fetch(struct cfs_fs *fs, fuse_req_t req, enum pending_kind kind,
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

/* ---- operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Reads are answered by splicing from the store file. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_SPLICE_MOVE)
		conn->want |= FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA; /* objects never change */
	conn->max_readahead = conn->max_readahead > (1u << 20) ? conn->max_readahead : (1u << 20);
}

/* A lookup of an object the local store lacks: absent everywhere a moment ago, or fetched. */
static void lookup_miss(struct cfs_fs *fs, fuse_req_t req, const uint8_t digest[CFS_DIGEST_SIZE])
{
	if (neg_hit(fs, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	start_fetch(fs, req, PENDING_LOOKUP, digest, 0, NULL);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	size_t len = strlen(name);
	uint8_t digest[CFS_DIGEST_SIZE];
	struct stat st;
	unsigned prefix;
	int r;

	if (parent == FUSE_ROOT_ID) {
		struct fuse_entry_param e = { .attr_timeout = fs->timeout,
					      .entry_timeout = fs->timeout };

		if (cfs_name_parse_prefix(name, len, &prefix) < 0) {
			atomic_fetch_add(&fs->rejected, 1);
			fuse_reply_err(req, ENOENT);
			return;
		}
		e.ino = PREFIX_INO_BASE + prefix;
		dir_attr(e.ino, &e.attr);
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
		/* In the store (a commit just raced overlayfs' look there) or handed off already. */
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

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct cfs_fs *fs = fuse_req_userdata(req);

	if (ino & OBJECT_INO_FLAG)
		node_unref(fs, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct cfs_fs *fs = fuse_req_userdata(req);

	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino & OBJECT_INO_FLAG)
			node_unref(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	uint8_t digest[CFS_DIGEST_SIZE];
	struct stat st, store_st;

	if (ino == FUSE_ROOT_ID || is_prefix_ino(ino)) {
		dir_attr(ino, &st);
		fuse_reply_attr(req, &st, fs->timeout);
		return;
	}
	if (!node_digest(fs, ino, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fi && fstat(fh_fd(fi->fh), &store_st) == 0) {
		object_attr(ino, &store_st, &st);
		fuse_reply_attr(req, &st, fs->timeout);
		return;
	}
	if (cfs_store_lookup(fs->store, digest, &store_st) < 0) {
		/* Evicted since lookup: the size is immutable, but we no longer know it here. */
		fuse_reply_err(req, ENOENT);
		return;
	}
	object_attr(ino, &store_st, &st);
	fuse_reply_attr(req, &st, fs->timeout);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	uint8_t digest[CFS_DIGEST_SIZE];
	int fd, r;

	if (!(ino & OBJECT_INO_FLAG)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (!node_digest(fs, ino, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	atomic_fetch_add(&fs->opens, 1);
	if (fs->quota)
		cfs_quota_touch(fs->quota, digest);
	r = open_object_fd(fs, digest, &fd);
	if (r == -ENOENT) {
		/* Evicted after the lookup: fetch it again and answer the open then. */
		start_fetch(fs, req, PENDING_OPEN, digest, ino, fi);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	reply_open_object(fs, req, ino, fi, fd);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	atomic_fetch_add(&fs->reads, 1);
	atomic_fetch_add(&fs->read_bytes, size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fh_fd(fi->fh);
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);

	close(fh_fd(fi->fh));
	node_backing_put(fs, ino, fh_backing_id(fi->fh));
	fuse_reply_err(req, 0);
}

static int snapshot_prefix(struct cfs_fs *fs, unsigned prefix, struct dir_snapshot **snap_ret)
{
	struct dir_snapshot *snap = calloc(1, sizeof(*snap));
	size_t cap = 0;
	char name[3];
	struct dirent *de;
	DIR *dir = NULL;
	int fd;

	if (!snap)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%02x", prefix & 0xffu);
	fd = openat(cfs_store_dirfd(fs->store), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		goto done; /* no such prefix yet: empty */
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		goto done;
	}
	while ((de = readdir(dir))) {
		uint8_t d[CFS_DIGEST_SIZE];

		if (cfs_name_parse_rest(prefix, de->d_name, strlen(de->d_name), d) < 0)
			continue;
		if (snap->n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *nn = realloc(snap->names, ncap * sizeof(*snap->names));

			if (!nn)
				break;
			snap->names = nn;
			cap = ncap;
		}
		memcpy(snap->names[snap->n++], de->d_name, CFS_NAME_REST_LEN + 1);
	}
	closedir(dir);
done:
	*snap_ret = snap;
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	struct dir_snapshot *snap = NULL;
	int r;

	if (ino == FUSE_ROOT_ID) {
		fi->fh = 0;
		fuse_reply_open(req, fi);
		return;
	}
	if (!is_prefix_ino(ino)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	r = snapshot_prefix(fs, (unsigned)(ino - PREFIX_INO_BASE), &snap);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)snap;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		free(snap->names);
		free(snap);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dir_snapshot *snap = (struct dir_snapshot *)(uintptr_t)fi->fh;
	size_t total = ino == FUSE_ROOT_ID ? 256 : (snap ? snap->n : 0);
	char *buf = malloc(size), name[CFS_NAME_REST_LEN + 1];
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Offsets: 0 ".", 1 "..", then entry i at 2 + i. */
	for (off_t i = off; i < (off_t)total + 2; i++) {
		struct stat st = { 0 };
		size_t n;

		if (i == 0 || i == 1) {
			st.st_ino = ino;
			st.st_mode = S_IFDIR;
			snprintf(name, sizeof(name), "%s", i == 0 ? "." : "..");
		} else if (ino == FUSE_ROOT_ID) {
			st.st_ino = PREFIX_INO_BASE + (fuse_ino_t)(i - 2);
			st.st_mode = S_IFDIR;
			snprintf(name, sizeof(name), "%02x", (unsigned)(i - 2) & 0xffu);
		} else {
			uint8_t d[CFS_DIGEST_SIZE];

			memcpy(name, snap->names[i - 2], sizeof(name));
			if (cfs_name_parse_rest((unsigned)(ino - PREFIX_INO_BASE), name,
						CFS_NAME_REST_LEN, d) < 0)
				continue;
			st.st_ino = object_ino(d);
			st.st_mode = S_IFREG;
		}
		n = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_snapshot *snap = (struct dir_snapshot *)(uintptr_t)fi->fh;

	if (snap) {
		free(snap->names);
		free(snap);
	}
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	struct statvfs sv;

	if (fstatvfs(cfs_store_dirfd(fs->store), &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

/* ---- counters as extended attributes of the root ---- */

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
		add_item(c, ITEM_STRING, -1, legacy, "%s state=%s requests=%" PRIu64 " bytes=%" PRIu64
			 " failures=%" PRIu64 " not_found=%" PRIu64 " verify_failures=%" PRIu64
			 " active=%u", ss.url, state, ss.requests, ss.bytes, ss.failures,
			 ss.not_found, ss.verify_failures, ss.active);
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
	struct collector col = { .items = items, .max = max }, *c = &col;
	struct cfs_fetch *fetch = atomic_load(&fs->fetch);
	struct cfs_fetch_stats f = { 0 };
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
	const char *urls[MAX_ITEMS] = { 0 };
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
		const char *field = it->server >= 0 ? strrchr(it->name, '.') + 1
						    : it->name + strlen(XATTR_PREFIX);
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


static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
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

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
};

const struct fuse_lowlevel_ops *cfs_fs_ops(void)
{
	return &ops;
}

int cfs_fs_new(const struct cfs_fs_options *o, struct cfs_fs **fs_ret)
{
	struct cfs_fs *fs = calloc(1, sizeof(*fs));
	int r;

	if (!fs)
		return -ENOMEM;
	fs->store = o->store;
	fs->quota = o->quota;
	fs->handoff = o->handoff;
	atomic_init(&fs->fetch, o->fetch);
	fs->timeout = o->entry_timeout > 0 ? o->entry_timeout : 86400.0;
	fs->start_ns = cfs_now_ns();
	r = cfs_u64map_new(1024, &fs->nodes);
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->neg_lock, NULL);
	fs->neg_timeout_ns = o->negative_timeout_ms * 1000000ULL;
	if (fs->neg_timeout_ns)
		fs->neg = calloc(NEG_SLOTS, sizeof(*fs->neg));
	if (r < 0 || (fs->neg_timeout_ns && !fs->neg)) {
		cfs_fs_free(fs);
		return -ENOMEM;
	}
	if (o->trace_path) {
		fs->trace = fopen(o->trace_path, "ae");
		if (!fs->trace) {
			r = -errno;
			cfs_fs_free(fs);
			return r;
		}
	}
	*fs_ret = fs;
	return 0;
}

void cfs_fs_set_fetch(struct cfs_fs *fs, struct cfs_fetch *fetch)
{
	atomic_store(&fs->fetch, fetch);
}

void cfs_fs_free(struct cfs_fs *fs)
{
	if (!fs)
		return;
	if (fs->nodes) {
		void *n;

		for (size_t pos = 0; cfs_u64map_next(fs->nodes, &pos, NULL, &n);)
			free(n);
		cfs_u64map_free(fs->nodes);
	}
	free(fs->neg);
	pthread_mutex_destroy(&fs->neg_lock);
	if (fs->trace)
		fclose(fs->trace);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
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
