/* SPDX-License-Identifier: MIT */
/* cfscache: a directory tree read into a writer tree, as mkcomposefs 1.0.8 reads one. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "image/writer-internal.h"

struct walk {
	unsigned flags;
	cfs_tree_file_fn fn;
	void *userdata;
	char path[PATH_MAX + 1]; /* of the current entry, for xattrs and errors */
	char *names, *value;     /* xattr buffers, 64 KiB each */
};

static int read_xattrs(struct walk *w, struct cfs_wnode *n)
{
	ssize_t len;

	if (w->flags & CFS_TREE_SKIP_XATTRS)
		return 0;
	len = llistxattr(w->path, w->names, 65536);
	if (len < 0)
		return errno == ENOTSUP ? 0 : -errno;
	for (char *k = w->names; k < w->names + len; k += strlen(k) + 1) {
		ssize_t vlen;
		int r;

		if ((w->flags & CFS_TREE_USER_XATTRS) && strncmp(k, "user.", 5) != 0)
			continue;
		vlen = lgetxattr(w->path, k, w->value, 65536);
		if (vlen < 0)
			return -errno;
		r = cfs_wnode_set_xattr(n, k, w->value, (size_t)vlen);
		if (r < 0)
			return r;
	}
	return 0;
}

static int load_regular(struct walk *w, int dirfd, const char *name, const struct stat *st,
                        struct cfs_wnode *n)
{
	int fd, r = 0;

	if (st->st_size == 0)
		return 0;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (st->st_size > CFS_WRITER_INLINE_MAX) {
		r = w->fn ? w->fn(fd, w->path, st, n->digest, w->userdata) : -EINVAL;
		if (r == 0)
			n->has_digest = true;
		if (r == 0) {
			char p[2 * CFS_DIGEST_SIZE + 2];

			cfs_hex_encode(n->digest, 1, p);
			p[2] = '/';
			cfs_hex_encode(n->digest + 1, CFS_DIGEST_SIZE - 1, p + 3);
			r = cfs_wnode_set_payload(n, p);
		}
	} else {
		uint8_t buf[CFS_WRITER_INLINE_MAX];
		ssize_t got = cfs_read_full(fd, buf, (size_t)st->st_size);

		if (got < 0)
			r = (int)got;
		else if (got != st->st_size)
			r = -ENODATA; /* shrank while we looked */
		else
			r = cfs_wnode_set_content(n, buf, (size_t)got);
	}
	close(fd);
	return r;
}

static int load_node(struct walk *w, int dirfd, const char *name, const struct stat *st,
                     struct cfs_wnode **node_ret)
{
	struct cfs_wnode *n;
	int r;

	r = cfs_wnode_new(&n);
	if (r < 0)
		return r;
	n->mode = st->st_mode;
	n->uid = st->st_uid;
	n->gid = st->st_gid;
	n->rdev = st->st_rdev;
	n->size = (uint64_t)st->st_size;
	if (S_ISREG(st->st_mode)) {
		r = load_regular(w, dirfd, name, st, n);
	} else if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t len = readlinkat(dirfd, name, target, PATH_MAX);

		if (len < 0) {
			r = -errno;
		} else if (len == 0) {
			r = -EINVAL;
		} else {
			target[len] = '\0';
			r = cfs_wnode_set_payload(n, target);
			n->size = (uint64_t)len;
		}
	}
	if (r == 0 && !(w->flags & CFS_TREE_USE_EPOCH)) {
		n->mtime_sec = st->st_mtim.tv_sec;
		n->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	}
	if (r == 0)
		r = read_xattrs(w, n);
	if (r < 0) {
		cfs_wnode_free(n);
		return r;
	}
	*node_ret = n;
	return 0;
}

/* Reads directory @dirfd (whose node @dir is) into @dir; w->path is its path. */
static int walk_dir(struct walk *w, int dirfd, struct cfs_wnode *dir, unsigned depth)
{
	size_t plen = strlen(w->path);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (depth > 1024)
		return -ELOOP;
	d = fdopendir(dirfd);
	if (!d) {
		r = -errno;
		close(dirfd);
		return r;
	}
	for (;;) {
		struct cfs_wnode *n = NULL;
		struct stat st;

		errno = 0;
		de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (plen + 1 + strlen(de->d_name) > PATH_MAX) {
			r = -ENAMETOOLONG;
			break;
		}
		snprintf(w->path + plen, sizeof(w->path) - plen, "/%s", de->d_name);
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if ((w->flags & CFS_TREE_SKIP_DEVICES) &&
		    (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)))
			continue;
		r = load_node(w, dirfd, de->d_name, &st, &n);
		if (r < 0)
			break;
		r = cfs_wnode_add_child(dir, n, de->d_name);
		if (r < 0) {
			cfs_wnode_free(n);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0) {
				r = -errno;
				break;
			}
			r = walk_dir(w, sub, n, depth + 1);
			if (r < 0)
				break;
		}
		w->path[plen] = '\0';
	}
	closedir(d);
	return r;
}

int cfs_tree_from_dir(const char *path, unsigned flags, cfs_tree_file_fn fn, void *userdata,
                      struct cfs_tree **tree_ret, char **failed_ret)
{
	struct cfs_tree *tree = calloc(1, sizeof(*tree));
	struct walk *w = calloc(1, sizeof(*w));
	struct stat st;
	int fd = -1, r = -ENOMEM;

	if (failed_ret)
		*failed_ret = NULL;
	if (!tree || !w)
		goto out;
	if ((flags & CFS_TREE_SKIP_XATTRS) && (flags & CFS_TREE_USER_XATTRS)) {
		r = -EINVAL;
		goto out;
	}
	w->flags = flags;
	w->fn = fn;
	w->userdata = userdata;
	w->names = malloc(65536);
	w->value = malloc(65536);
	if (!w->names || !w->value)
		goto out;
	if (strlen(path) >= sizeof(w->path)) {
		r = -ENAMETOOLONG;
		goto out;
	}
	strcpy(w->path, path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	r = load_node(w, AT_FDCWD, path, &st, &tree->root);
	if (r < 0)
		goto out;
	r = walk_dir(w, fd, tree->root, 0);
	fd = -1; /* walk_dir closed it */
	if (r < 0)
		goto out;
	*tree_ret = cfs_steal_pointer(&tree);
out:
	if (r < 0 && failed_ret && w)
		*failed_ret = strdup(w->path);
	if (fd >= 0)
		close(fd);
	if (w) {
		free(w->names);
		free(w->value);
		free(w);
	}
	cfs_tree_free(tree);
	return r;
}
