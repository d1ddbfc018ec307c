/* SPDX-License-Identifier: MIT */
/* cfscache: the walk of a composefs image's tree (every directory once, with a budget against
 * hostile sharing), and the objects its regular files name. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/u64map.h"
#include "common/util.h"
#include "image/image-internal.h"

/* ---- walk ------------------------------------------------------------------------------ */

/* Adds a directory nid to the visited set; -EEXIST when it was there already. */
static int visit_dir(struct cfs_image *img, uint64_t nid)
{
	void *old;
	int r;

	if (!img->visited) {
		r = cfs_u64map_new(0, &img->visited);
		if (r < 0)
			return r;
	}
	/* The value only says "visited": any non-NULL pointer does. */
	r = cfs_u64map_put(img->visited, nid, img, &old);
	if (r < 0)
		return r;
	return old ? -EEXIST : 0;
}

static int read_symlink(struct cfs_image *img, const struct inode *ino, char *buf, size_t bufsize)
{
	uint64_t done = 0;
	int r;

	if (ino->size == 0 || ino->size >= bufsize)
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: bad symlink length %llu",
		                      (unsigned long long)ino->nid, (unsigned long long)ino->size);
	for (uint64_t b = 0; done < ino->size; b++) {
		uint64_t off, len;

		r = cfs_image_map_block(img, ino, b, &off, &len);
		if (r < 0)
			return r;
		memcpy(buf + done, img->data + off, len);
		done += len;
	}
	buf[done] = '\0';
	return 0;
}

/* Fills the overlay fields of @e. A redirect is where overlayfs goes looking for the data in
 * every data-only layer, so the only one accepted is an object path "/XX/<62hex>" on a
 * regular file, naming the object its metacopy digest (when it has one) names: anything else
 * (/etc/passwd, /.cfs-tmp/x) would have the kernel open other files of the store. */
static int fill_object(struct cfs_image *img, struct cfs_image_entry *e,
                       const struct xattr_result *xr, char *redirect)
{
	/* struct ovl_metacopy: version 0, length, flags 0, digest algorithm (1 = SHA-256). */
	if (xr->have_metacopy) {
		const uint8_t *m = xr->metacopy;

		if (xr->metacopy_len == 0) {
			e->metacopy = true;
		} else if (xr->metacopy_len >= 4 && m[0] == 0 && m[1] == xr->metacopy_len &&
		           m[2] == 0) {
			e->metacopy = true;
			if (xr->metacopy_len == 4 + CFS_DIGEST_SIZE && m[3] == 1) {
				e->has_digest = true;
				memcpy(e->digest, m + 4, CFS_DIGEST_SIZE);
			}
		}
	}
	if (xr->have_redirect) {
		uint8_t named[CFS_DIGEST_SIZE];

		memcpy(redirect, xr->redirect, xr->redirect_len);
		redirect[xr->redirect_len] = '\0';
		e->redirect = redirect;
		e->redirect_len = xr->redirect_len;
		if (!S_ISREG(e->mode))
			return cfs_image_fail(img, -EUCLEAN,
			                      "inode %llu: overlay redirect on a non-regular file",
			                      (unsigned long long)e->nid);
		if (e->redirect_len != CFS_NAME_PATH_LEN + 1 || e->redirect[0] != '/' ||
		    cfs_name_parse_path(e->redirect + 1, CFS_NAME_PATH_LEN, named) < 0)
			return cfs_image_fail(
			    img, -EUCLEAN,
			    "inode %llu: overlay redirect \"%.80s\" is not an object path",
			    (unsigned long long)e->nid, redirect);
		if (e->has_digest && memcmp(named, e->digest, CFS_DIGEST_SIZE) != 0)
			return cfs_image_fail(
			    img, -EUCLEAN,
			    "inode %llu: overlay redirect %s does not match its fs-verity digest",
			    (unsigned long long)e->nid, redirect);
		memcpy(e->object, named, CFS_DIGEST_SIZE);
		e->has_object = true;
	} else if (S_ISREG(e->mode) && e->has_digest) {
		memcpy(e->object, e->digest, CFS_DIGEST_SIZE);
		e->has_object = true;
	}
	return 0;
}

static int walk_dir(struct cfs_image *img, const struct inode *dir, size_t plen, unsigned depth);

static int visit_inode(struct cfs_image *img, uint64_t nid, size_t plen, struct inode *ino)
{
	struct cfs_image_entry e = {0};
	struct xattr_result xr;
	int r;

	r = cfs_image_read_inode(img, nid, ino);
	if (r < 0)
		return r;
	r = cfs_image_parse_xattrs(img, ino, &xr);
	if (r < 0)
		return r;
	e.path = plen ? img->path : "/";
	e.path_len = plen ? plen : 1;
	e.nid = nid;
	e.mode = ino->mode;
	e.uid = ino->uid;
	e.gid = ino->gid;
	e.nlink = ino->nlink;
	e.size = ino->size;
	e.mtime = ino->mtime;
	e.mtime_nsec = ino->mtime_nsec;
	e.flat = ino->layout == LAYOUT_FLAT_PLAIN || ino->layout == LAYOUT_FLAT_INLINE;
	if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode))
		e.rdev = ino->u;
	if (S_ISLNK(ino->mode)) {
		r = read_symlink(img, ino, img->symlink, sizeof(img->symlink));
		if (r < 0)
			return r;
		e.symlink = img->symlink;
	}
	r = fill_object(img, &e, &xr, img->redirect);
	if (r < 0)
		return r;
	return img->fn ? img->fn(&e, img->userdata) : 0;
}

static int walk_block(struct cfs_image *img, const struct inode *dir, const uint8_t *blk,
                      uint64_t len, size_t plen, unsigned depth)
{
	unsigned nameoff0, ndirents;
	int r;

	if (len < EROFS_DIRENT_SIZE)
		return cfs_image_fail(img, -EUCLEAN, "directory %llu: block too small",
		                      (unsigned long long)dir->nid);
	nameoff0 = le16(blk + 8);
	if (nameoff0 < EROFS_DIRENT_SIZE || nameoff0 > len || nameoff0 % EROFS_DIRENT_SIZE)
		return cfs_image_fail(img, -EUCLEAN, "directory %llu: bad dirent table",
		                      (unsigned long long)dir->nid);
	ndirents = nameoff0 / EROFS_DIRENT_SIZE;
	for (unsigned i = 0; i < ndirents; i++) {
		const uint8_t *d = blk + i * EROFS_DIRENT_SIZE;
		uint64_t nid = le64(d);
		unsigned off = le16(d + 8), end;
		size_t nlen;
		const char *name;
		struct inode child;

		end = i + 1 < ndirents ? le16(d + EROFS_DIRENT_SIZE + 8) : (unsigned)len;
		if (off < nameoff0 || off >= end || end > len)
			return cfs_image_fail(img, -EUCLEAN, "directory %llu: bad name offset",
			                      (unsigned long long)dir->nid);
		name = (const char *)blk + off;
		nlen = end - off;
		if (i + 1 == ndirents)
			nlen = strnlen(name, nlen); /* the last name may be NUL-padded */
		if (nlen == 0 || nlen > EROFS_NAME_LEN || memchr(name, '/', nlen) ||
		    memchr(name, '\0', nlen))
			return cfs_image_fail(img, -EUCLEAN, "directory %llu: bad file name",
			                      (unsigned long long)dir->nid);
		if ((nlen == 1 && name[0] == '.') ||
		    (nlen == 2 && name[0] == '.' && name[1] == '.'))
			continue;
		if (img->budget == 0)
			return cfs_image_fail(img, -EUCLEAN,
			                      "more directory entries than the image can hold");
		img->budget--;
		if (plen + 1 + nlen > CFS_IMAGE_MAX_PATH)
			return cfs_image_fail(img, -ENAMETOOLONG, "path too long under %s",
			                      img->path);
		img->path[plen] = '/';
		memcpy(img->path + plen + 1, name, nlen);
		img->path[plen + 1 + nlen] = '\0';
		r = visit_inode(img, nid, plen + 1 + nlen, &child);
		if (r != 0) {
			if (r < 0 && img->err[0] && !strstr(img->err, " at /"))
				snprintf(img->err + strlen(img->err),
				         sizeof(img->err) - strlen(img->err), " at %.*s",
				         (int)CFS_MIN(plen + 1 + nlen, 120), img->path);
			return r;
		}
		if (S_ISDIR(child.mode)) {
			r = walk_dir(img, &child, plen + 1 + nlen, depth + 1);
			if (r != 0)
				return r;
		}
		img->path[plen] = '\0';
	}
	return 0;
}

static int walk_dir(struct cfs_image *img, const struct inode *dir, size_t plen, unsigned depth)
{
	uint64_t nblocks;
	int r;

	if (depth > CFS_IMAGE_MAX_DEPTH)
		return cfs_image_fail(img, -ENAMETOOLONG, "directories nested too deep at %.120s",
		                      img->path);
	r = visit_dir(img, dir->nid);
	if (r == -EEXIST)
		return cfs_image_fail(img, -EUCLEAN,
		                      "directory loop: inode %llu reached twice at %.120s",
		                      (unsigned long long)dir->nid, plen ? img->path : "/");
	if (r < 0)
		return r;
	if (dir->size > img->size)
		return cfs_image_fail(img, -EUCLEAN, "directory %llu larger than the image",
		                      (unsigned long long)dir->nid);
	nblocks = (dir->size + img->blksz - 1) >> img->blkszbits;
	for (uint64_t b = 0; b < nblocks; b++) {
		uint64_t off, len;

		r = cfs_image_map_block(img, dir, b, &off, &len);
		if (r < 0)
			return r;
		r = walk_block(img, dir, img->data + off, len, plen, depth);
		if (r != 0)
			return r;
		img->path[plen] = '\0';
	}
	return 0;
}

int cfs_image_walk(struct cfs_image *image, unsigned flags, cfs_image_walk_fn fn, void *userdata)
{
	struct cfs_image *img = image;
	struct inode root;
	int r;

	img->err[0] = '\0';
	img->inodes = 0;
	cfs_u64map_free(img->visited);
	img->visited = NULL;
	/* A valid image stores every dirent (12 bytes) once: this bounds hostile sharing. */
	img->budget = img->size / EROFS_DIRENT_SIZE + 16;
	img->path[0] = '\0';
	img->fn = (flags & CFS_IMAGE_WALK_ROOT) ? fn : NULL;
	img->userdata = userdata;
	r = visit_inode(img, img->root_nid, 0, &root);
	if (r != 0)
		return r;
	if (!S_ISDIR(root.mode))
		return cfs_image_fail(img, -EUCLEAN, "root inode %llu is not a directory",
		                      (unsigned long long)root.nid);
	img->fn = fn;
	return walk_dir(img, &root, 0, 0);
}

/* ---- objects --------------------------------------------------------------------------- */

static int collect_object(const struct cfs_image_entry *e, void *userdata)
{
	return e->has_object ? cfs_digestset_add(userdata, e->object, NULL) : 0;
}

/* Adds the objects of @image's regular files to @set (unsealed). */
static int add_objects(struct cfs_image *image, struct cfs_digestset *set)
{
	int r = cfs_image_walk(image, 0, collect_object, set);

	if (r == -ENOMEM && !image->err[0])
		cfs_image_fail(image, r, "out of memory");
	return r;
}

int cfs_image_objects(struct cfs_image *image, uint8_t **digests_ret, size_t *count_ret)
{
	struct cfs_digestset set = CFS_DIGESTSET_INIT;
	int r;

	r = add_objects(image, &set);
	if (r != 0) {
		cfs_digestset_free(&set);
		return r;
	}
	cfs_digestset_seal(&set);
	*digests_ret = cfs_digestset_steal(&set, count_ret);
	return 0;
}

int cfs_image_walk_files(char *const *images, size_t n, cfs_image_walk_fn fn, void *userdata)
{
	for (size_t i = 0; i < n; i++) {
		struct cfs_image *img = NULL;
		char msg[256] = "";
		int r;

		r = cfs_image_open_msg(images[i], &img, msg, sizeof(msg));
		if (r < 0) {
			cfs_err("%s: %s", images[i], msg[0] ? msg : strerror(-r));
			return r;
		}
		r = cfs_image_walk(img, 0, fn, userdata);
		if (r == -ENOMEM && !img->err[0])
			cfs_image_fail(img, r, "out of memory");
		if (r < 0)
			cfs_err("%s: %s", images[i], img->err[0] ? img->err : strerror(-r));
		cfs_image_free(img);
		if (r < 0)
			return r;
	}
	return 0;
}

int cfs_image_objects_of_files(char *const *images, size_t n, uint8_t **digests_ret,
                               size_t *count_ret)
{
	struct cfs_digestset set = CFS_DIGESTSET_INIT;
	int r = cfs_image_walk_files(images, n, collect_object, &set);

	if (r < 0) {
		cfs_digestset_free(&set);
		return r;
	}
	cfs_digestset_seal(&set);
	*digests_ret = cfs_digestset_steal(&set, count_ret);
	return 0;
}

int cfs_image_check(const char *path, char *msg, size_t msglen)
{
	struct cfs_image *img = NULL;
	int r;

	if (msg && msglen)
		msg[0] = '\0';
	r = cfs_image_open_msg(path, &img, msg, msglen);
	if (r < 0) {
		if (msg && msglen && !msg[0])
			snprintf(msg, msglen, "%s", strerror(-r));
		return r;
	}
	r = cfs_image_walk(img, CFS_IMAGE_WALK_ROOT, NULL, NULL);
	if (r < 0 && msg && msglen)
		snprintf(msg, msglen, "%s", cfs_image_error(img));
	cfs_image_free(img);
	return r;
}
