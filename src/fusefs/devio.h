/* SPDX-License-Identifier: MIT */
/* cfscache: FUSE features newer than the libfuse we build with, set up through its custom device
 * I/O hooks.
 *
 * libfuse 3.14 (Debian 12) cannot ask the kernel for two things cfs-cache wants:
 * - parallel directory operations: libfuse turns FUSE_CAP_PARALLEL_DIROPS on but never puts it in
 *   its INIT reply, so the kernel serializes lookups per directory (one pending miss per prefix
 *   directory);
 * - passthrough (Linux 6.9+): an open object is bound to its store file in the kernel, and reads,
 *   splice and mmap go straight to the store's filesystem and page cache, never to the daemon.
 * The read hook sees what the kernel offers in FUSE_INIT; the writev hook adds those flags (and
 * the passthrough stack depth) to the INIT reply, and the passthrough flag and backing id to the
 * OPEN replies that ask for it. Passthrough falls back to ordinary reads through the daemon when
 * the kernel, the privileges or the store's filesystem do not allow it.
 *
 * One FUSE session per process (the state is process-wide). */
#ifndef CFS_FUSEFS_DEVIO_H
#define CFS_FUSEFS_DEVIO_H

#include <stdbool.h>
#include <stdint.h>

struct fuse_session;
struct fuse_file_info;
typedef struct fuse_req *fuse_req_t;

/* Installs the device I/O hooks on a mounted session (call after fuse_session_mount); with
 * @passthrough false, passthrough is never asked for. Returns 0 or -errno. */
int cfs_devio_install(struct fuse_session *se, bool passthrough);

/* Connection hand-over, so that a new process (a restart after a crash, an upgrade) can go on
 * serving a mount without mounting again. libfuse 3.14 serves only a connection whose FUSE_INIT
 * it sees, and the kernel sends INIT once: the first daemon keeps the kernel's INIT request in
 * @fd (a memfd stored beside the connection); an adopting daemon replays it to libfuse, drops
 * libfuse's reply, and asks the kernel to resend every request the dead process had read but
 * not answered (FUSE_NOTIFY_RESEND, Linux 6.9+). The negotiation is the first daemon's: an
 * adopting one must run with the same options. */
void cfs_devio_keep_init(int fd);
/* Call after cfs_devio_install on a session over an inherited connection. Returns 0, -EBADMSG
 * (@init_fd holds no INIT) or -errno. */
int cfs_devio_adopt(struct fuse_session *se, int init_fd);

/* True once the kernel accepted passthrough in FUSE_INIT and no backing file was refused. */
bool cfs_passthrough_active(void);

/* Registers @fd (an open store file) as a backing file. Returns its backing id (> 0), or 0 when
 * passthrough is not in use: the open is then answered the ordinary way. */
uint32_t cfs_passthrough_attach(int fd);

/* Gives back a backing id from cfs_passthrough_attach (0 is ignored). */
void cfs_passthrough_detach(uint32_t backing_id);

/* fuse_reply_open that binds the file to @backing_id (0: an ordinary open). Same return. */
int cfs_passthrough_reply_open(fuse_req_t req, const struct fuse_file_info *fi,
			       uint32_t backing_id);

#endif
