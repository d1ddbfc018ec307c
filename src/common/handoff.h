/* SPDX-License-Identifier: MIT */
/* cfscache: the hand-off directory: verified objects hard-linked where overlayfs finds them as
 * the data layer after FUSE, before (and for a while after) they get their name in the store. */
#ifndef CFS_HANDOFF_H
#define CFS_HANDOFF_H

#include <stdint.h>

#include "common/digest.h"
#include "common/store.h"

/*
 * A composefs mount over cfs-cache has three data-only layers, STORE : FUSE : HANDOFF. A miss
 * reaches FUSE; cfs-cache fetches and verifies the object, links the verified file here as
 * XX/<62hex> and answers ENOENT, so overlayfs opens the real file from this directory. HANDOFF
 * must be on the store's filesystem (hard links) and outside it (overlayfs refuses nested
 * layers); by default it is the store's sibling "<store>.handoff".
 *
 * Names here are never trusted across a restart: opening the directory empties it (files that
 * overlayfs already opened stay readable). A name stays while its object is not yet durable in
 * the store, and a linger time after it is (or after a lookup asked for it), so an overlayfs
 * lookup that was just told ENOENT by FUSE always finds it.
 */

struct cfs_handoff;

/* Default linger of a name once its object is in the store. */
#define CFS_HANDOFF_LINGER_MS 10000

/* Writes the default hand-off path of a store ("<store>.handoff") into a new string. */
int cfs_handoff_default_path(const char *store_path, char **path_ret);

/* Opens (creating it if missing) the hand-off directory @path (NULL: the default) of @store and
 * empties it. Refuses, with a message in *msg_ret (static or owned by nobody; may be NULL), a
 * directory on another filesystem than the store, inside it, or containing it. Returns 0 or
 * -errno; free with cfs_handoff_free. */
int cfs_handoff_open(struct cfs_store *store, const char *path, unsigned linger_ms,
		     struct cfs_handoff **h_ret, const char **msg_ret);
/* Removes every name still held and frees @h. */
void cfs_handoff_free(struct cfs_handoff *h);
const char *cfs_handoff_path(const struct cfs_handoff *h);

/* Links the verified temp file of @w here under its digest's name, held until
 * cfs_handoff_release or cfs_handoff_drop. An existing name counts as success. 0 or -errno. */
int cfs_handoff_add_writer(struct cfs_handoff *h, struct cfs_store_writer *w,
			   const uint8_t digest[CFS_DIGEST_SIZE]);
/* The object is durable in the store: its name here goes after the linger time. */
void cfs_handoff_release(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE]);
/* The object did not make it into the store: its name here goes now. */
void cfs_handoff_drop(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE]);
/* Makes sure the object has a name here for at least the linger time: an existing one is kept
 * longer, else the store's file is linked. 0, -ENOENT when neither has it, or -errno. */
int cfs_handoff_ensure(struct cfs_handoff *h, const uint8_t digest[CFS_DIGEST_SIZE]);

struct cfs_handoff_stats {
	uint64_t names;     /* names here now */
	uint64_t linked;    /* names made (from fetches and from the store) */
	uint64_t from_store; /* of which linked from objects already in the store */
	uint64_t expired;   /* names removed after their linger time */
};
void cfs_handoff_get_stats(struct cfs_handoff *h, struct cfs_handoff_stats *stats_ret);

#endif
