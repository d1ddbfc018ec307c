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
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* Connection hand-over (see cfs_devio_keep_init / cfs_devio_adopt). The state memfd, mapped
 * shared so that it outlives the process that writes it: the kernel's INIT, and the requests read
 * and not answered yet, for a successor on a kernel that cannot resend them. */
#define INFLIGHT_SLOTS 4096
#define INFLIGHT_PROBES 16
struct kept_state {
	_Atomic uint32_t init_len;
	_Alignas(8) uint8_t init[INIT_KEEP_MAX];
	_Atomic uint64_t inflight[INFLIGHT_SLOTS]; /* uniques, 0 = free */
};

static struct kept_state *kept;       /* mapped state, NULL when none */
static _Alignas(8) uint8_t replay[INIT_KEEP_MAX]; /* an adopted connection's INIT, replayed to libfuse */
static size_t replay_len;
static atomic_bool replay_pending;
static atomic_uint_fast64_t replay_unique; /* its reply goes nowhere: the kernel had one */

static size_t inflight_slot(uint64_t unique, unsigned probe)
{
	return (size_t)((unique >> 1) * 0x9E3779B97F4A7C15ULL >> 52 ^ probe) % INFLIGHT_SLOTS;
}

/* Notes a request that will get a reply (best effort: a full neighbourhood is skipped). */
static void inflight_add(uint64_t unique)
{
	for (unsigned p = 0; kept && unique && p < INFLIGHT_PROBES; p++) {
		uint64_t free_slot = 0;

		if (atomic_compare_exchange_strong(&kept->inflight[inflight_slot(unique, p)],
						   &free_slot, unique))
			return;
	}
}

static void inflight_del(uint64_t unique)
{
	for (unsigned p = 0; kept && unique && p < INFLIGHT_PROBES; p++) {
		uint64_t want = unique;

		if (atomic_compare_exchange_strong(&kept->inflight[inflight_slot(unique, p)],
						   &want, 0))
			return;
	}
}

/* Asks the kernel to queue again every request a previous daemon read and never answered. Where
 * it cannot (before Linux 6.9), those requests are answered with EIO from the table the previous
 * daemon kept, so that no reader waits for ever. */
static void send_resend(int fd)
{
	struct fuse_out_header h = { .len = sizeof(h), .error = CFS_FUSE_NOTIFY_RESEND };
	unsigned answered = 0;
	int e;

	/* CFS_DEVIO_NO_RESEND: tests play a kernel without FUSE_NOTIFY_RESEND. */
	if (!getenv("CFS_DEVIO_NO_RESEND") && write(fd, &h, sizeof(h)) == (ssize_t)sizeof(h)) {
		/* Resent requests come with new uniques: the old ones are done with. */
		for (size_t i = 0; kept && i < INFLIGHT_SLOTS; i++)
			atomic_store(&kept->inflight[i], 0);
		cfs_notice("adopted the FUSE connection; the kernel resends what was in flight");
		return;
	}
	e = getenv("CFS_DEVIO_NO_RESEND") ? EINVAL : errno;
	for (size_t i = 0; kept && i < INFLIGHT_SLOTS; i++) {
		uint64_t u = atomic_exchange(&kept->inflight[i], 0);
		struct fuse_out_header err = { .len = sizeof(err), .error = -EIO, .unique = u };

		if (u && write(fd, &err, sizeof(err)) == (ssize_t)sizeof(err))
			answered++;
	}
	cfs_warn("adopted the FUSE connection, but the kernel cannot resend requests in flight "
		 "(%s; Linux 6.9+ can): %u of them answered with EIO, their readers may try again",
		 strerror(e), answered);
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
	/* Requests that are never answered: forgets and interrupts. */
	if (!replayed && n >= (ssize_t)sizeof(*h) && h->opcode != FUSE_FORGET &&
	    h->opcode != FUSE_BATCH_FORGET && h->opcode != FUSE_INTERRUPT)
		inflight_add(h->unique);
	if (n >= (ssize_t)need && h->opcode == FUSE_INIT) {
		const struct fuse_init_in *in = (const void *)(h + 1);

		if (!replayed && kept && n <= INIT_KEEP_MAX) {
			memcpy(kept->init, buf, (size_t)n);
			atomic_store(&kept->init_len, (uint32_t)n);
		}
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
	if (iov[0].iov_len >= sizeof(*h))
		inflight_del(h->unique);
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

/* Maps the state memfd @fd (sizing it when new). 0 or -errno. */
static int map_state(int fd)
{
	struct stat st;
	void *p;

	if (kept)
		return 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((size_t)st.st_size < sizeof(*kept) && ftruncate(fd, sizeof(*kept)) < 0)
		return -errno;
	p = mmap(NULL, sizeof(*kept), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	kept = p;
	return 0;
}

void cfs_devio_keep_init(int fd)
{
	int r = map_state(fd);

	if (r < 0)
		cfs_warn("cannot keep the FUSE state for a restart: %s", strerror(-r));
}

int cfs_devio_adopt(struct fuse_session *se, int init_fd)
{
	uint32_t n;
	int r = map_state(init_fd);

	if (r < 0)
		return r;
	n = atomic_load(&kept->init_len);
	if (n == 0) {
		/* The first daemon died before it answered INIT: the kernel resends that too. */
		send_resend(fuse_session_fd(se));
		return 0;
	}
	if (n > sizeof(replay) ||
	    n < sizeof(struct fuse_in_header) + offsetof(struct fuse_init_in, flags2) ||
	    ((const struct fuse_in_header *)kept->init)->opcode != FUSE_INIT)
		return -EBADMSG;
	memcpy(replay, kept->init, n);
	/* It must not count as in flight: the first daemon answered it. */
	inflight_del(((const struct fuse_in_header *)replay)->unique);
	replay_len = n;
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
