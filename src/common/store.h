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
/* Top-level names starting with this are cfscache's own (temp files, cfs-serve's zstd side
 * files); they are never objects and never reported as strays. */
#define CFS_STORE_RESERVED_PREFIX ".cfs-"

struct cfs_store;
struct cfs_store_writer;

enum cfs_store_open_flags {
	CFS_STORE_CREATE = 1 << 0,  /* create the store directory if missing */
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
/* Removes an object, and what was derived from it (cfs_store_remove_derived). 0 or -ENOENT /
 * -errno. */
int cfs_store_remove(struct cfs_store *store, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Files derived from objects that cfs-serve keeps inside the store, never at an object path:
 * XX/<62hex>.zst (the zstd encoding) and XX/<62hex>.raw (not worth compressing). */
#define CFS_STORE_ZSTD_DIR ".cfs-zstd"
/* Removes what was derived from the object at @relpath (XX/<62hex>); none is fine. */
void cfs_store_remove_derived(struct cfs_store *store, const char *relpath);
/* Removes derived files whose object is gone (objects removed by hand or by older versions),
 * and derived temp files not touched for @tmp_age_secs (a crashed server's). Returns how many
 * were removed, or -errno; *bytes_ret (may be NULL) gets their size. */
int cfs_store_sweep_derived(struct cfs_store *store, unsigned tmp_age_secs, uint64_t *bytes_ret);
/* Flushes the store's filesystem (one syncfs for a batch of writers committed with NOSYNC). */
int cfs_store_sync(struct cfs_store *store);

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
 * the temp file as @rel under @dirfd (same filesystem), before the commit gives it its name in
 * the store. The temp file stays the writer's. Returns 0 or -errno (-EEXIST: @rel exists). */
int cfs_store_writer_link(struct cfs_store_writer *w, int dirfd, const char *rel);

enum cfs_store_commit_flags {
	/* The caller has made the data durable already (cfs_store_sync after verify). */
	CFS_STORE_NOSYNC = 1 << 0,
};
/* After a successful verify: flush (unless NOSYNC), enable fs-verity where the filesystem
 * supports it, and move the object under its name without replacing anything. Returns 0 when
 * the object is now present; *existed_ret (optional) tells whether another writer won. */
int cfs_store_writer_commit(struct cfs_store_writer *w, unsigned flags, bool *existed_ret);
/* Frees the writer and removes its temporary file unless committed. */
void cfs_store_writer_free(struct cfs_store_writer *w);

/* Verified writers committed together: one flush of the store's filesystem makes all their temp
 * files durable, then each is moved under its name. Zero-initialize, then set @store. */
#define CFS_STORE_BATCH_MAX 256
struct cfs_store_batch {
	struct cfs_store *store;
	struct cfs_store_writer *w[CFS_STORE_BATCH_MAX];
	size_t n;
	/* What the commits so far found: objects (and their bytes) added, or present already. */
	uint64_t added, bytes_added, present, bytes_present;
};
/* Takes the verified writer @w, committing the batch when it is full. Returns 0 or -errno. */
int cfs_store_batch_add(struct cfs_store_batch *b, struct cfs_store_writer *w);
/* Commits what the batch holds (nothing to do is fine). Returns 0 or the first -errno; the
 * writers are freed either way. */
int cfs_store_batch_commit(struct cfs_store_batch *b);
/* Frees the writers not committed (their temp files go). */
void cfs_store_batch_discard(struct cfs_store_batch *b);

/* Verify + commit with flush, for callers without batches. */
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
	const char *relpath; /* relative to the store directory */
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
