/* SPDX-License-Identifier: MIT */
/* cfscache: the store's private state, shared by its files (objects, writers, walks, txns). */
#ifndef CFS_STORE_INTERNAL_H
#define CFS_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "common/store.h"

#define CFS_STORE_TMP_PREFIX "tmp."
#define CFS_STORE_READY_MAX 32

struct cfs_store {
	int dirfd;
	int tmpfd;
	char *path;
	/* Which prefix directories are known to exist, so inserts skip mkdirat. */
	_Atomic unsigned char have_prefix[256];
	/* Whether FS_IOC_ENABLE_VERITY is worth trying on this filesystem. */
	_Atomic int verity_state; /* 0 unknown, 1 works, -1 unsupported */
	pid_t pid; /* in temp names, read once (a name taken already is only retried) */
	/* Temp files made ahead of need (cfs_store_prepare): created, locked, empty. */
	pthread_mutex_t ready_lock;
	struct ready_tmp {
		int fd, lockfd;
		char name[64];
	} ready[CFS_STORE_READY_MAX];
	unsigned nready;
	/* Set once before other threads use the store (cfs_store_set_observer). */
	struct cfs_store_observer observer;
	void *observer_ctx;
};

/* Where a writer is on its way to a name; changed only by the writer's and the txn's code. */
enum writer_state {
	WRITER_OPEN,      /* taking bytes */
	WRITER_VERIFIED,  /* digest checked, temp file locked, waiting for a transaction */
	WRITER_COMMITTED, /* the object has its name (perhaps another writer's copy) */
	WRITER_FAILED,    /* a transaction could not name it; result says why */
};

struct cfs_store_writer {
	struct cfs_store *store;
	struct cfs_digest_ctx *digest;
	int fd;     /* for writing, until verified */
	int lockfd; /* read-only, holds the temp file's lock from creation to the end */
	char tmpname[64];
	enum writer_state state;
	bool has_expected, async_tried, sealed;
	bool existed; /* committed: the object was present already */
	int result;   /* failed: -errno */
	uint64_t size;
	uint64_t writeback_from; /* bytes before this offset were handed to writeback */
	uint8_t expected[CFS_DIGEST_SIZE];
	uint8_t computed[CFS_DIGEST_SIZE];
};

/* Enables fs-verity (where the filesystem has it) on a verified temp file, once, before anything
 * may open it by another name. */
void cfs_store_writer_seal(struct cfs_store_writer *w);

#endif
