/* SPDX-License-Identifier: MIT */
/* cfscache: the local object store, laid out like `mkcomposefs --digest-store` (XX/<62hex>). */
#ifndef CFS_STORE_H
#define CFS_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/digest.h"

/* Temporary files live in this directory inside the store; its name is never an object name. */
#define CFS_STORE_TMPDIR ".cfs-tmp"
/* Top-level names starting with this are cfscache's own (temp files, derived files); they are
 * never objects and never reported as strays. */
#define CFS_STORE_RESERVED_PREFIX ".cfs-"

struct cfs_store;
struct cfs_store_writer;

enum cfs_store_open_flags {
	CFS_STORE_CREATE = 1 << 0,   /* create the store directory if missing */
	CFS_STORE_NO_CLEAN = 1 << 1, /* leave stale temporary files alone (read-only users) */
};

/* Opens (and with CFS_STORE_CREATE creates) a store and removes temporary files that no live
 * writer holds. Returns 0 or -errno; free with cfs_store_free. */
int cfs_store_open(const char *path, unsigned flags, struct cfs_store **store_ret);
void cfs_store_free(struct cfs_store *store);
int cfs_store_dirfd(const struct cfs_store *store);
const char *cfs_store_path(const struct cfs_store *store);

/* 0 and *st_ret filled when the object is present as a regular file, -ENOENT when absent,
 * -EUCLEAN when something that is not a regular file sits under its name. */
int cfs_store_lookup(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE],
                     struct stat *st_ret);
/* openat() of a path relative to @dirfd that never leaves it and follows no symlink at any
 * level (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS; on older kernels each level is opened
 * with O_NOFOLLOW). O_NOFOLLOW and O_CLOEXEC are implied. Returns the fd or -errno. */
int cfs_store_openat_beneath(int dirfd, const char *rel, int flags);
/* Opens an object read-only, refusing symlinks and non-regular files. Caller closes *fd_ret. */
int cfs_store_open_object(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE],
                          int *fd_ret);
/* Removes an object, and what was derived from it (cfs_store_remove_derived), then tells the
 * observer. 0 or -ENOENT / -errno. */
int cfs_store_remove(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE]);

/* Files derived from objects (cfs-serve's encodings) live in this directory, never at an object
 * path: those of object XX/<62hex> are XX/<62hex>.<suffix>; names in XX/ starting with '.' are
 * their maker's unfinished files. Its name is cfs-serve's zstd side files', the first of them. */
#define CFS_STORE_DERIVED_DIR ".cfs-zstd"
/* Removes what was derived from the object @digest; none is fine. */
void cfs_store_remove_derived(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Removes derived files whose object is gone (objects removed by hand or by older versions),
 * and unfinished ones not touched for @tmp_age_secs (a crashed maker's). Returns how many were
 * removed, or -errno; *bytes_ret (may be NULL) gets their size. */
int cfs_store_sweep_derived(struct cfs_store *store, unsigned tmp_age_secs, uint64_t *bytes_ret);

/* Who keeps account of the store's objects (a quota). Both callbacks must be thread-safe and
 * quick; either may be NULL. */
struct cfs_store_observer {
	/* Just before a transaction gives an object its name, on the committing thread (it may
	 * turn out present already): @size bytes. */
	void (*added)(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size);
	/* After cfs_store_remove took an object away, on the removing thread. */
	void (*removed)(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE]);
};
/* Sets the store's one observer (@obs copied; NULL clears it). Call before other threads use
 * the store. */
void cfs_store_set_observer(struct cfs_store *store, const struct cfs_store_observer *obs,
                            void *ctx);
/* Whether @ctx is the store's observer now. */
bool cfs_store_observed_by(const struct cfs_store *store, const void *ctx);

/* Makes temp files ahead of need, up to @n (at most 32) ready ones, so that inserts on a
 * latency-critical path (a lookup waiting for its object) need not create one. Each is locked
 * like a live writer's; cfs_store_free removes those not taken. Thread-safe. Returns how many are
 * ready, or -errno. */
int cfs_store_prepare(struct cfs_store *store, unsigned n);
unsigned cfs_store_prepared(struct cfs_store *store);

/* Streaming insert. The writer owns a temporary file in the store; bytes are hashed as they are
 * written. When @expected is given the object must have that digest. Returns 0 or -errno. */
int cfs_store_writer_new(struct cfs_store *store, const uint8_t *expected,
                         struct cfs_store_writer **writer_ret);
int cfs_store_writer_write(struct cfs_store_writer *w, const void *buf, size_t len);
/* Bytes written so far (resume offset). */
uint64_t cfs_store_writer_size(const struct cfs_store_writer *w);
/* Writes the rest of @fd (read from its offset to end of file through @buf). 0 or -errno. */
int cfs_store_writer_write_fd(struct cfs_store_writer *w, int fd, void *buf, size_t bufsize);
/* Drops everything written so far, to start over. */
int cfs_store_writer_reset(struct cfs_store_writer *w);
/* Finishes hashing and compares with the expected digest: 0, or -EBADMSG on mismatch.
 * *digest_ret (optional) gets the computed digest. The temp file stays open until commit
 * or free, so callers that batch many writers should bound how many wait. */
int cfs_store_writer_verify(struct cfs_store_writer *w, uint8_t digest_ret[CFS_DIGEST_SIZE]);

/* After a successful verify: enables fs-verity where the filesystem supports it and hard-links
 * the temp file as @rel under @dirfd (same filesystem), before a transaction gives it its name
 * in the store. The temp file stays the writer's. Returns 0 or -errno (-EEXIST: @rel exists). */
int cfs_store_writer_link(struct cfs_store_writer *w, int dirfd, const char *rel);
/* What a transaction did with the writer: 0 when the object has its name (*existed_ret,
 * optional: another writer's copy was there first), -EINPROGRESS before a commit, or the
 * commit's -errno. */
int cfs_store_writer_result(const struct cfs_store_writer *w, bool *existed_ret);
/* Frees the writer and removes its temporary file unless committed. */
void cfs_store_writer_free(struct cfs_store_writer *w);

/* A transaction: the only way a verified object gets its name. It takes verified writers;
 * its commit makes all their temp files durable with one flush of the store's filesystem (one
 * fsync when it holds one writer), then gives each its name without replacing anything, telling
 * the observer just before each. When to commit (a window, a timer, a count) is the caller's. */
struct cfs_store_txn;
int cfs_store_txn_new(struct cfs_store *store, struct cfs_store_txn **txn_ret);
/* Discards what it holds (cfs_store_txn_discard) and frees it. */
void cfs_store_txn_free(struct cfs_store_txn *txn);

enum cfs_store_txn_flags {
	/* The transaction frees the writer after its commit or discard; otherwise the caller
	 * does, and may read cfs_store_writer_result first. */
	CFS_STORE_TXN_FREE = 1 << 0,
};
/* Adds the verified writer @w (not yet committed). Returns 0, -EINVAL when @w is not verified
 * or already committed, or -ENOMEM; on error @w stays the caller's. */
int cfs_store_txn_add(struct cfs_store_txn *txn, struct cfs_store_writer *w, unsigned flags);
/* How many writers wait for the next commit. */
size_t cfs_store_txn_count(const struct cfs_store_txn *txn);
/* Commits what the transaction holds (none is fine) and empties it for reuse. Each writer is
 * committed or fails on its own (cfs_store_writer_result); a failed flush fails them all.
 * Returns 0 or the first -errno. */
int cfs_store_txn_commit(struct cfs_store_txn *txn);
/* Drops the writers without naming them: their temp files go when they are freed. */
void cfs_store_txn_discard(struct cfs_store_txn *txn);

/* What the commits of a transaction so far found: objects (and their bytes) added, or present
 * already. */
struct cfs_store_txn_stats {
	uint64_t added, bytes_added, present, bytes_present;
	uint64_t last_flush_ns; /* how long the last commit's flush took */
};
void cfs_store_txn_get_stats(const struct cfs_store_txn *txn, struct cfs_store_txn_stats *ret);

/* A transaction of the one verified writer @w: commit with fsync. Returns
 * cfs_store_writer_result's value; @w stays the caller's. */
int cfs_store_commit_one(struct cfs_store_writer *w, bool *existed_ret);

/* Writes @fd to the store, verifies and commits it alone. */
int cfs_store_insert_fd(struct cfs_store *store, int fd, const uint8_t *expected,
                        uint8_t digest_ret[CFS_DIGEST_SIZE], bool *existed_ret);

enum cfs_store_entry_kind {
	CFS_STORE_ENTRY_OBJECT, /* a regular file with an object name */
	CFS_STORE_ENTRY_STRAY,  /* anything else: at the top (a file, a symlink, a directory
	                         * with another name) or inside a prefix directory; never
	                         * followed. A top-level lost+found directory is not one. */
	CFS_STORE_ENTRY_TEMP,   /* a temporary file */
};

struct cfs_store_entry {
	enum cfs_store_entry_kind kind;
	const char *relpath;             /* relative to the store directory */
	uint8_t digest[CFS_DIGEST_SIZE]; /* objects only */
	struct stat st;
};

/* Calls @fn for every entry (objects only unless @all). A non-zero return from @fn stops the
 * walk and is returned. Returns 0 or -errno. */
typedef int (*cfs_store_iter_fn)(const struct cfs_store_entry *entry, void *userdata);
int cfs_store_iter(struct cfs_store *store, bool all, cfs_store_iter_fn fn, void *userdata);

struct cfs_store_usage {
	uint64_t objects;
	uint64_t bytes;      /* sum of object sizes */
	uint64_t disk_bytes; /* allocated blocks */
};
int cfs_store_usage(struct cfs_store *store, struct cfs_store_usage *usage_ret);

/* Removes a stray entry of cfs_store_iter (@relpath as it reported it): a file or a symlink is
 * unlinked, never followed; a directory is removed with what it holds, never leaving the store's
 * filesystem. cfscache's own ".cfs-" names are refused (-EPERM). Returns 0 or -errno. */
int cfs_store_remove_stray(struct cfs_store *store, const char *relpath);

/* Removes unlocked temporary files (done by open). Returns the count removed or -errno. */
int cfs_store_clean_temp(struct cfs_store *store);

#endif
