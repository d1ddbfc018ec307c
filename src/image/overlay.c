/* SPDX-License-Identifier: MIT */
/* cfscache: the writer's rewrite of a tree for overlayfs, as mkcomposefs 1.0.8 does it: overlay
 * xattrs (metacopy, redirect, escaped names), "." and "..", escaped whiteouts, and the root's
 * opaque mark and whiteouts 00..ff. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/writer-internal.h"

#define OVL_PREFIX "trusted.overlay."
#define OVL_ESCAPE_PREFIX "trusted.overlay.overlay."

static bool is_whiteout(const struct cfs_wnode *n)
{
	return S_ISCHR(n->mode) && n->rdev == 0;
}

/* Version 1 changed how whiteouts are written: a tree with one is raised to it if allowed. */
static void update_version(const struct cfs_wnode *n, unsigned *version, unsigned max)
{
	if (*version >= 1 || max < 1)
		return;
	if (is_whiteout(n)) {
		*version = 1;
		return;
	}
	for (size_t i = 0; i < n->nchildren; i++)
		if (!n->children[i]->link_to)
			update_version(n->children[i], version, max);
}

/* A whiteout of the tree becomes a regular file that the composefs mount shows as an overlay
 * "xwhiteout" to an overlay stacked on it. Its directory is marked the way the kernel of each
 * format version wants it: "whiteouts" (Linux 6.7), then opaque=x (6.8 on), which is what
 * version 1 is about. */
static int escape_whiteout(struct cfs_wnode *n, unsigned version)
{
	const char *mark = version >= 1 ? "opaque" : "whiteouts";
	const char *value = version >= 1 ? "x" : "";
	char key[64];
	int r;

	n->mode = S_IFREG | (n->mode & ~S_IFMT);
	r = cfs_wnode_set_xattr(n, OVL_ESCAPE_PREFIX "whiteout", "", 0);
	if (r == 0)
		r = cfs_wnode_set_xattr(n, "user.overlay.whiteout", "", 0);
	snprintf(key, sizeof(key), "%s%s", OVL_ESCAPE_PREFIX, mark);
	if (r == 0)
		r = cfs_wnode_set_xattr(n->parent, key, value, strlen(value));
	snprintf(key, sizeof(key), "user.overlay.%s", mark);
	if (r == 0)
		r = cfs_wnode_set_xattr(n->parent, key, value, strlen(value));
	return r;
}

static int add_overlay_xattrs(struct cfs_wnode *n, unsigned version)
{
	int r;

	/* Source xattrs in the overlay namespace are escaped, so overlayfs shows them as they
	 * were. A rename cannot collide: any colliding name is renamed too. */
	for (size_t i = 0; i < n->nxattrs; i++) {
		char *k = n->xattrs[i].key, *renamed;

		if (strncmp(k, OVL_PREFIX, strlen(OVL_PREFIX)) != 0)
			continue;
		if (asprintf(&renamed, "%s%s", OVL_ESCAPE_PREFIX, k + strlen(OVL_PREFIX)) < 0)
			return -ENOMEM;
		free(k);
		n->xattrs[i].key = renamed;
	}
	if (S_ISREG(n->mode) && n->size > 0 && !n->content) {
		uint8_t mc[4 + CFS_DIGEST_SIZE];
		size_t mclen = 0;

		if (n->has_digest) {
			/* struct ovl_metacopy: version 0, length, flags 0, SHA-256. */
			mc[0] = 0;
			mc[1] = sizeof(mc);
			mc[2] = 0;
			mc[3] = 1;
			memcpy(mc + 4, n->digest, CFS_DIGEST_SIZE);
			mclen = sizeof(mc);
		}
		r = cfs_wnode_set_xattr(n, OVL_PREFIX "metacopy", mc, mclen);
		if (r < 0)
			return r;
		if (n->payload && *n->payload) {
			const char *slash = n->payload[0] == '/' ? "" : "/";
			char *path;

			if (asprintf(&path, "%s%s", slash, n->payload) < 0)
				return -ENOMEM;
			r = cfs_wnode_set_xattr(n, OVL_PREFIX "redirect", path, strlen(path));
			free(path);
			if (r < 0)
				return r;
		}
	}
	if (is_whiteout(n) && n->parent)
		return escape_whiteout(n, version);
	return 0;
}

static int add_link_child(struct cfs_wnode *dir, struct cfs_wnode *target, const char *name)
{
	struct cfs_wnode *l;
	int r;

	if (cfs_wnode_lookup(dir, name))
		return 0;
	r = cfs_wnode_new(&l);
	if (r < 0)
		return r;
	l->mode = 0;
	cfs_wnode_make_hardlink(l, target);
	r = cfs_wnode_add_child(dir, l, name);
	if (r < 0)
		cfs_wnode_free(l);
	return r;
}

static int rewrite_node(struct cfs_wnode *n, struct cfs_wnode *parent, unsigned version,
                        unsigned depth)
{
	int r;

	if (depth > 4096)
		return -ELOOP;
	r = add_overlay_xattrs(n, version);
	if (r < 0)
		return r;
	if (!S_ISDIR(n->mode))
		return 0;
	r = add_link_child(n, n, ".");
	if (r < 0)
		return r;
	r = add_link_child(n, parent, "..");
	if (r < 0)
		return r;
	for (size_t i = 0; i < n->nchildren; i++) {
		if (n->children[i]->link_to)
			continue;
		r = rewrite_node(n->children[i], n, version, depth + 1);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The root gets whiteouts 00..ff, so the object directories of the data-only layers never
 * show through the composefs mount. */
static int add_root_whiteouts(struct cfs_wnode *root)
{
	static const char hex[] = "0123456789abcdef";
	const struct cfs_wxattr *selinux = cfs_wnode_get_xattr(root, "security.selinux");
	int r;

	for (int i = 0; i < 256; i++) {
		char name[3] = {hex[i >> 4], hex[i & 15], 0};
		struct cfs_wnode *w;

		if (cfs_wnode_lookup(root, name))
			continue;
		r = cfs_wnode_new(&w);
		if (r < 0)
			return r;
		w->mode = S_IFCHR | 0644;
		w->uid = root->uid;
		w->gid = root->gid;
		w->mtime_sec = root->mtime_sec;
		w->mtime_nsec = root->mtime_nsec;
		if (selinux &&
		    (r = cfs_wnode_set_xattr(w, selinux->key, selinux->value, selinux->len)) < 0) {
			cfs_wnode_free(w);
			return r;
		}
		r = cfs_wnode_add_child(root, w, name);
		if (r < 0) {
			cfs_wnode_free(w);
			return r;
		}
	}
	return 0;
}

int cfs_tree_rewrite_overlay(struct cfs_wnode *root, unsigned *version, unsigned max)
{
	int r;

	update_version(root, version, max);
	r = rewrite_node(root, root, *version, 0);
	if (r == 0)
		r = cfs_wnode_set_xattr(root, OVL_PREFIX "opaque", "y", 1);
	if (r == 0)
		r = add_root_whiteouts(root);
	return r;
}
