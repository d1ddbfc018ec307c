/* SPDX-License-Identifier: MIT */
/* cfscache: FUSE low-level operations of cfs-cache: the ops table, the root and its 256 prefix
 * directories, opens and reads of objects, and the filesystem's life cycle. Lookups are in
 * fs-lookup.c, the node table in fs-nodes.c, the counters in fs-stats.c. */
#include "config.h"

#include "fusefs/fs-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/name.h"
#include "common/u64map.h"
#include "common/util.h"

struct dir_snapshot {
	size_t n;
	char (*names)[CFS_NAME_REST_LEN + 1];
};

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

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct cfs_fs *fs = fuse_req_userdata(req);

	if (ino & OBJECT_INO_FLAG)
		cfs_fs_node_unref(fs, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct cfs_fs *fs = fuse_req_userdata(req);

	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino & OBJECT_INO_FLAG)
			cfs_fs_node_unref(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_fs *fs = fuse_req_userdata(req);
	uint8_t digest[CFS_DIGEST_SIZE];
	struct stat st, store_st;

	if (ino == FUSE_ROOT_ID || is_prefix_ino(ino)) {
		cfs_fs_dir_attr(ino, &st);
		fuse_reply_attr(req, &st, fs->timeout);
		return;
	}
	if (!cfs_fs_node_digest(fs, ino, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fi && fstat(fh_fd(fi->fh), &store_st) == 0) {
		cfs_fs_object_attr(ino, &store_st, &st);
		fuse_reply_attr(req, &st, fs->timeout);
		return;
	}
	if (cfs_store_lookup(fs->store, digest, &store_st) < 0) {
		/* Evicted since lookup: the size is immutable, but we no longer know it here. */
		fuse_reply_err(req, ENOENT);
		return;
	}
	cfs_fs_object_attr(ino, &store_st, &st);
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
	if (!cfs_fs_node_digest(fs, ino, digest)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	atomic_fetch_add(&fs->opens, 1);
	if (fs->quota)
		cfs_quota_touch(fs->quota, digest);
	r = cfs_fs_open_object_fd(fs, digest, &fd);
	if (r == -ENOENT) {
		/* Evicted after the lookup: fetch it again and answer the open then. */
		cfs_fs_start_fetch(fs, req, PENDING_OPEN, digest, ino, fi);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	cfs_fs_reply_open_object(fs, req, ino, fi, fd);
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
	cfs_fs_node_backing_put(fs, ino, fh_backing_id(fi->fh));
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
	fd = openat(cfs_store_dirfd(fs->store), name,
	            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
		struct stat st = {0};
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

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = cfs_fs_op_lookup,
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
    .getxattr = cfs_fs_op_getxattr,
    .listxattr = cfs_fs_op_listxattr,
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
