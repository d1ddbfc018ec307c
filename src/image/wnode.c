/* SPDX-License-Identifier: MIT */
/* cfscache: the image writer's tree: nodes, their children (sorted by name), xattrs, content and
 * hard links, as the directory reader, the dump parser and tests build it. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "image/writer-internal.h"

int cfs_wnode_new(struct cfs_wnode **node_ret)
{
	struct cfs_wnode *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	n->nlink = 1;
	n->shared_idx = NULL;
	*node_ret = n;
	return 0;
}

void cfs_wnode_free(struct cfs_wnode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nchildren; i++)
		cfs_wnode_free(n->children[i]);
	free(n->children);
	for (size_t i = 0; i < n->nxattrs; i++) {
		free(n->xattrs[i].key);
		free(n->xattrs[i].value);
	}
	free(n->xattrs);
	free(n->shared_idx);
	free(n->name);
	free(n->payload);
	free(n->content);
	free(n);
}

void cfs_tree_free(struct cfs_tree *tree)
{
	if (!tree)
		return;
	cfs_wnode_free(tree->root);
	free(tree);
}

/* Binary search by name; *pos_ret gets the insertion point when it is absent. */
static struct cfs_wnode *find_child(const struct cfs_wnode *dir, const char *name, size_t *pos_ret)
{
	size_t lo = 0, hi = dir->nchildren;

	/* Children mostly arrive in order: look at the end first. */
	if (hi > 0) {
		int c = strcmp(name, dir->children[hi - 1]->name);

		if (c == 0) {
			if (pos_ret)
				*pos_ret = hi - 1;
			return dir->children[hi - 1];
		}
		if (c > 0) {
			if (pos_ret)
				*pos_ret = hi;
			return NULL;
		}
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, dir->children[mid]->name);

		if (c == 0) {
			if (pos_ret)
				*pos_ret = mid;
			return dir->children[mid];
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (pos_ret)
		*pos_ret = lo;
	return NULL;
}

struct cfs_wnode *cfs_wnode_lookup(const struct cfs_wnode *dir, const char *name)
{
	return find_child(dir, name, NULL);
}

int cfs_wnode_add_child(struct cfs_wnode *dir, struct cfs_wnode *child, const char *name)
{
	size_t pos, len = strlen(name);

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	if (len == 0)
		return -EINVAL;
	if (len > CFS_WRITER_NAME_MAX)
		return -ENAMETOOLONG;
	if (find_child(dir, name, &pos))
		return -EEXIST;
	if (dir->nchildren == dir->children_cap) {
		size_t ncap = dir->children_cap ? dir->children_cap * 2 : 16;
		struct cfs_wnode **n = reallocarray(dir->children, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		dir->children = n;
		dir->children_cap = ncap;
	}
	child->name = strdup(name);
	if (!child->name)
		return -ENOMEM;
	child->name_len = len;
	memmove(dir->children + pos + 1, dir->children + pos,
	        (dir->nchildren - pos) * sizeof(*dir->children));
	dir->children[pos] = child;
	dir->nchildren++;
	child->parent = dir;
	return 0;
}

static ssize_t find_xattr(const struct cfs_wnode *n, const char *key)
{
	for (size_t i = 0; i < n->nxattrs; i++)
		if (strcmp(n->xattrs[i].key, key) == 0)
			return (ssize_t)i;
	return -1;
}

const struct cfs_wxattr *cfs_wnode_get_xattr(const struct cfs_wnode *n, const char *key)
{
	ssize_t i = find_xattr(n, key);

	return i < 0 ? NULL : &n->xattrs[i];
}

int cfs_wnode_set_xattr(struct cfs_wnode *n, const char *key, const void *value, size_t len)
{
	ssize_t i = find_xattr(n, key);
	struct cfs_wxattr *x;
	uint8_t *v;

	if (*key == '\0' || strlen(key) > 255)
		return -ERANGE;
	if (len > UINT16_MAX)
		return -EINVAL;
	v = malloc(len ? len : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, len);
	if (i >= 0) {
		x = &n->xattrs[i];
		free(x->value);
	} else {
		char *k = strdup(key);

		x = reallocarray(n->xattrs, n->nxattrs + 1, sizeof(*x));
		if (!x || !k) {
			if (x)
				n->xattrs = x;
			free(k);
			free(v);
			return -ENOMEM;
		}
		n->xattrs = x;
		x = &n->xattrs[n->nxattrs++];
		x->key = k;
	}
	x->value = v;
	x->len = len;
	return 0;
}

int cfs_wnode_set_payload(struct cfs_wnode *n, const char *payload)
{
	char *dup = NULL;

	if (payload) {
		if (strlen(payload) >= 4096)
			return -ENAMETOOLONG;
		dup = strdup(payload);
		if (!dup)
			return -ENOMEM;
	}
	free(n->payload);
	n->payload = dup;
	return 0;
}

int cfs_wnode_set_content(struct cfs_wnode *n, const void *data, size_t len)
{
	uint8_t *dup = NULL;

	if (data && len) {
		if (len > CFS_WRITER_CONTENT_MAX)
			return -EINVAL;
		dup = malloc(len);
		if (!dup)
			return -ENOMEM;
		memcpy(dup, data, len);
	}
	free(n->content);
	n->content = dup;
	n->size = len;
	return 0;
}

void cfs_wnode_make_hardlink(struct cfs_wnode *link, struct cfs_wnode *target)
{
	link->link_to = target;
	target->nlink++;
}

struct cfs_wnode *cfs_wnode_follow(struct cfs_wnode *n)
{
	/* Links are made to resolved targets, so one step is enough; bound it anyway. */
	for (int i = 0; n->link_to && i < 64; i++)
		n = n->link_to;
	return n;
}

static int foreach_object(struct cfs_wnode *n, cfs_tree_object_fn fn, void *userdata)
{
	int r;

	if (n->link_to)
		return 0;
	if (S_ISREG(n->mode) && n->size > 0 && !n->content && n->has_digest) {
		r = fn(n->digest, n->size, userdata);
		if (r)
			return r;
	}
	for (size_t i = 0; i < n->nchildren; i++) {
		r = foreach_object(n->children[i], fn, userdata);
		if (r)
			return r;
	}
	return 0;
}

int cfs_tree_foreach_object(struct cfs_tree *tree, cfs_tree_object_fn fn, void *userdata)
{
	return foreach_object(tree->root, fn, userdata);
}
