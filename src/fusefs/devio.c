/* SPDX-License-Identifier: MIT */
/* cfscache: FUSE INIT flags and passthrough through libfuse's custom device I/O (see devio.h). */
#include "config.h"

#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "fusefs/devio.h"

/* Protocol 7.40 parts that Debian 12's kernel headers (7.38) do not name yet. */
#define CFS_FUSE_PASSTHROUGH (1ULL << 37) /* INIT flag */
#define CFS_FOPEN_PASSTHROUGH (1u << 7)   /* open_flags */
#define CFS_MAX_STACK_DEPTH 1             /* the store is a plain filesystem */
#define CFS_FUSE_NOTIFY_RESEND 7          /* Linux 6.9+: requeue requests read, not answered */
#define INIT_KEEP_MAX 256                 /* a FUSE_INIT request is 64-104 bytes */

struct cfs_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};

#define CFS_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct cfs_backing_map)
#define CFS_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)

_Static_assert(sizeof(struct cfs_backing_map) == 16, "fuse_backing_map is 16 bytes");
_Static_assert(sizeof(struct fuse_open_out) == 16, "fuse_open_out is 16 bytes");
/* 7.40 put max_stack_depth where 7.38 has unused[0], and backing_id where it has padding. */
_Static_assert(offsetof(struct fuse_init_out, unused) == 36, "max_stack_depth at offset 36");
_Static_assert(offsetof(struct fuse_open_out, padding) == 12, "backing_id at offset 12");

enum pt_state {
	PT_OFF,     /* not asked for, or not offered by the kernel */
	PT_WANTED,  /* to be asked for in the INIT reply */
	PT_ACTIVE,  /* INIT reply carried the flag */
	PT_REFUSED, /* the kernel refused the first backing file: ordinary reads from now on */
};

static atomic_int state = PT_OFF;
static atomic_bool attached_once;
static int dev_fd = -1;
static atomic_uint_fast64_t init_unique; /* unique of the FUSE_INIT to patch, 0 = none */
static uint64_t init_add;                 /* flags to add to the INIT reply (same thread) */

/* What the next reply written by this thread needs (set just around fuse_reply_open). */
static _Thread_local uint32_t open_backing_id;

/* Connection hand-over (see cfs_devio_keep_init / cfs_devio_adopt). */
static int keep_fd = -1;             /* where the kernel's FUSE_INIT request is kept */
static uint8_t replay[INIT_KEEP_MAX]; /* an adopted connection's INIT, replayed to libfuse */
static size_t replay_len;
static atomic_bool replay_pending;
static atomic_uint_fast64_t replay_unique; /* its reply goes nowhere: the kernel had one */

/* Asks the kernel to queue again every request a previous daemon read and never answered. */
static void send_resend(int fd)
{
	struct fuse_out_header h = { .len = sizeof(h), .error = CFS_FUSE_NOTIFY_RESEND };

	if (write(fd, &h, sizeof(h)) == (ssize_t)sizeof(h)) {
		cfs_notice("adopted the FUSE connection; the kernel resends what was in flight");
		return;
	}
	cfs_warn("adopted the FUSE connection, but the kernel cannot resend requests in flight "
		 "(%s; Linux 6.9+ can): their readers wait until interrupted",
		 strerror(errno));
}

static ssize_t hook_read(int fd, void *buf, size_t len, void *userdata)
{
	const size_t need = sizeof(struct fuse_in_header) + offsetof(struct fuse_init_in, flags2) +
			    sizeof(uint32_t);
	const struct fuse_in_header *h = buf;
	bool replayed = false;
	ssize_t n;

	(void)userdata;
	if (atomic_exchange(&replay_pending, false) && replay_len <= len) {
		memcpy(buf, replay, replay_len);
		n = (ssize_t)replay_len;
		atomic_store(&replay_unique, h->unique);
		replayed = true;
	} else {
		n = read(fd, buf, len);
	}
	if (n >= (ssize_t)need && h->opcode == FUSE_INIT) {
		if (!replayed && keep_fd >= 0 && n <= INIT_KEEP_MAX &&
		    (pwrite(keep_fd, buf, (size_t)n, 0) != n || ftruncate(keep_fd, n) < 0))
			cfs_warn("cannot keep the FUSE_INIT for a restart: %s", strerror(errno));
		const struct fuse_init_in *in = (const void *)(h + 1);
		uint64_t flags = in->flags;

		if (flags & FUSE_INIT_EXT)
			flags |= (uint64_t)in->flags2 << 32;
		init_add = flags & FUSE_PARALLEL_DIROPS;
		if (atomic_load(&state) == PT_WANTED) {
			if (flags & CFS_FUSE_PASSTHROUGH) {
				init_add |= CFS_FUSE_PASSTHROUGH;
			} else {
				atomic_store(&state, PT_OFF);
				cfs_info("the kernel does not offer FUSE passthrough: reads go "
					 "through cfs-cache");
			}
		}
		if (init_add)
			atomic_store(&init_unique, h->unique);
	}
	return n;
}

/* Writes @iov with its payload (iov[1], @len bytes) replaced by @patched. */
static ssize_t writev_patched(int fd, struct iovec *iov, int count, void *patched, size_t len)
{
	struct iovec copy[8];

	if (count > 8)
		return writev(fd, iov, count);
	memcpy(copy, iov, (size_t)count * sizeof(*iov));
	copy[1].iov_base = patched;
	copy[1].iov_len = len;
	return writev(fd, copy, count);
}

static ssize_t hook_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *h = iov[0].iov_base;
	uint64_t want_init = atomic_load(&init_unique);
	uint64_t replayed = atomic_load(&replay_unique);

	(void)userdata;
	if (replayed && iov[0].iov_len >= sizeof(*h) && h->unique == replayed) {
		/* The reply to the replayed INIT: the kernel negotiated with the first daemon. */
		ssize_t total = 0;

		for (int i = 0; i < count; i++)
			total += (ssize_t)iov[i].iov_len;
		if (count >= 2 && h->error == 0 && iov[1].iov_len >= sizeof(struct fuse_init_out)) {
			struct fuse_init_out out;

			memcpy(&out, iov[1].iov_base, sizeof(out));
			if ((init_add & CFS_FUSE_PASSTHROUGH) && (out.flags & FUSE_INIT_EXT))
				atomic_store(&state, PT_ACTIVE);
		}
		atomic_store(&replay_unique, 0);
		atomic_store(&init_unique, 0);
		send_resend(fd);
		return total;
	}
	if (count < 2 || iov[0].iov_len < sizeof(*h) || h->error != 0)
		return writev(fd, iov, count);
	if (want_init && h->unique == want_init && iov[1].iov_len >= sizeof(struct fuse_init_out)) {
		struct fuse_init_out out;
		ssize_t r;
		bool pt;

		memcpy(&out, iov[1].iov_base, sizeof(out));
		/* libfuse 3.14 turns parallel dirops on but never tells the kernel. */
		out.flags |= (uint32_t)(init_add & FUSE_PARALLEL_DIROPS);
		pt = (init_add & CFS_FUSE_PASSTHROUGH) && (out.flags & FUSE_INIT_EXT);
		if (pt) {
			out.flags2 |= (uint32_t)(CFS_FUSE_PASSTHROUGH >> 32);
			out.unused[0] = CFS_MAX_STACK_DEPTH;
		}
		atomic_store(&init_unique, 0);
		r = writev_patched(fd, iov, count, &out, sizeof(out));
		if (r >= 0 && pt) {
			atomic_store(&state, PT_ACTIVE);
			cfs_info("FUSE passthrough on: reads of open objects bypass cfs-cache");
		}
		return r;
	}
	if (open_backing_id && iov[1].iov_len == sizeof(struct fuse_open_out)) {
		struct fuse_open_out out;

		memcpy(&out, iov[1].iov_base, sizeof(out));
		/* Passthrough opens allow no caching flags: the store's page cache serves. */
		out.open_flags = (out.open_flags & ~(uint32_t)FOPEN_KEEP_CACHE) |
				 CFS_FOPEN_PASSTHROUGH;
		out.padding = open_backing_id;
		return writev_patched(fd, iov, count, &out, sizeof(out));
	}
	return writev(fd, iov, count);
}

static ssize_t hook_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int cfs_devio_install(struct fuse_session *se, bool passthrough)
{
	static const struct fuse_custom_io io = {
		.read = hook_read,
		.writev = hook_writev,
		.splice_send = hook_splice_send,
	};
	int r;

	dev_fd = fuse_session_fd(se);
	r = fuse_session_custom_io(se, &io, dev_fd);
	if (r < 0)
		return r;
	atomic_store(&state, passthrough ? PT_WANTED : PT_OFF);
	return 0;
}

void cfs_devio_keep_init(int fd)
{
	keep_fd = fd;
}

int cfs_devio_adopt(struct fuse_session *se, int init_fd)
{
	ssize_t n = pread(init_fd, replay, sizeof(replay), 0);

	if (n < 0)
		return -errno;
	keep_fd = init_fd;
	if (n == 0) {
		/* The first daemon died before it answered INIT: the kernel resends that too. */
		send_resend(fuse_session_fd(se));
		return 0;
	}
	if ((size_t)n < sizeof(struct fuse_in_header) + offsetof(struct fuse_init_in, flags2) ||
	    ((const struct fuse_in_header *)replay)->opcode != FUSE_INIT)
		return -EBADMSG;
	replay_len = (size_t)n;
	atomic_store(&replay_pending, true);
	return 0;
}

bool cfs_passthrough_active(void)
{
	return atomic_load(&state) == PT_ACTIVE;
}

uint32_t cfs_passthrough_attach(int fd)
{
	struct cfs_backing_map map = { .fd = fd };
	int id;

	if (atomic_load(&state) != PT_ACTIVE)
		return 0;
	id = ioctl(dev_fd, CFS_IOC_BACKING_OPEN, &map);
	if (id > 0) {
		atomic_store(&attached_once, true);
		return (uint32_t)id;
	}
	if (!atomic_load(&attached_once)) {
		int e = errno;
		int expected = PT_ACTIVE;

		/* The same refusal would come for every object: stop asking. */
		if (atomic_compare_exchange_strong(&state, &expected, PT_REFUSED))
			cfs_notice("FUSE passthrough refused (%s%s): reads go through cfs-cache",
				   strerror(e),
				   e == ELOOP ? ", the store is on a stacked filesystem"
				   : e == EPERM ? ", needs CAP_SYS_ADMIN" : "");
	} else {
		cfs_warn("FUSE passthrough for one open failed: %s", strerror(errno));
	}
	return 0;
}

void cfs_passthrough_detach(uint32_t backing_id)
{
	if (backing_id && ioctl(dev_fd, CFS_IOC_BACKING_CLOSE, &backing_id) < 0)
		cfs_warn("cannot release FUSE backing file %u: %s", backing_id, strerror(errno));
}

int cfs_passthrough_reply_open(fuse_req_t req, const struct fuse_file_info *fi,
			       uint32_t backing_id)
{
	int r;

	open_backing_id = backing_id;
	r = fuse_reply_open(req, fi);
	open_backing_id = 0;
	return r;
}
