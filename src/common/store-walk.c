/* SPDX-License-Identifier: MIT */
/* cfscache: walks of the store: objects, strays and temp files; usage; removing strays and
 * stale temp files. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/name.h"
#include "common/store-internal.h"
#include "common/store.h"

/* Removes @name in @dfd: unlinks a file or symlink (never followed), empties and removes a
 * directory, staying on the store's filesystem @dev and at most STRAY_MAX_DEPTH levels down. */
#define STRAY_MAX_DEPTH 32
static int remove_tree_at(int dfd, const char *name, dev_t dev, unsigned depth)
{
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int fd, r = 0;

	if (unlinkat(dfd, name, 0) == 0)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth >= STRAY_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_dev != dev) {
		r = st.st_dev != dev ? -EXDEV : -errno;
		close(fd);
		return r;
	}
	dir = fdopendir(fd);
	if (!dir) {
		r = -errno;
		close(fd);
		return r;
	}
	while ((de = readdir(dir))) {
		int q;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		q = remove_tree_at(fd, de->d_name, dev, depth + 1);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(dir);
	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

int cfs_store_remove_stray(struct cfs_store *store, const char *relpath)
{
	const char *slash = strchr(relpath, '/');
	struct stat st;
	int pfd, r;

	if (!*relpath ||
	    strncmp(relpath, CFS_STORE_RESERVED_PREFIX, strlen(CFS_STORE_RESERVED_PREFIX)) == 0)
		return -EPERM;
	if (fstat(store->dirfd, &st) < 0)
		return -errno;
	if (!slash)
		return strcmp(relpath, ".") && strcmp(relpath, "..")
		           ? remove_tree_at(store->dirfd, relpath, st.st_dev, 0)
		           : -EINVAL;
	/* Inside a prefix directory: XX/NAME, one level, no symlink on the way. */
	if (slash - relpath != 2 || strchr(slash + 1, '/') || !slash[1] ||
	    strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	pfd = cfs_store_openat_beneath(store->dirfd, (char[]){relpath[0], relpath[1], '\0'},
	                               O_RDONLY | O_DIRECTORY);
	if (pfd < 0)
		return pfd;
	r = remove_tree_at(pfd, slash + 1, st.st_dev, 0);
	close(pfd);
	return r;
}

/* Decides what an entry of a walked directory is: false to pass over it. */
typedef bool (*walk_keep_fn)(const char *name, struct cfs_store_entry *e, const void *ctx);

/* Calls @fn for each entry of @dirfd/@dir that @keep keeps, named "@dir/NAME" ("NAME" at the
 * top, @dir "."); a missing directory is empty when @missing_ok. Entries removed under us are
 * passed over. Returns 0, @fn's first non-zero value, or -errno. */
static int walk_dir(int dirfd, const char *dir, bool missing_ok, walk_keep_fn keep,
                    const void *kctx, cfs_store_iter_fn fn, void *userdata)
{
	bool top = strcmp(dir, ".") == 0;
	char rel[CFS_NAME_PATH_LEN + 256];
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	/* A file or a symlink under a directory's name is not followed: the top-level pass
	 * reports it as a stray. */
	fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return missing_ok && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
		           ? 0
		           : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (!r && (de = readdir(d))) {
		struct cfs_store_entry e = {.relpath = rel};

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!keep(de->d_name, &e, kctx))
			continue;
		snprintf(rel, sizeof(rel), "%s%s%s", top ? "" : dir, top ? "" : "/", de->d_name);
		r = fn(&e, userdata);
	}
	closedir(d);
	return r;
}

struct prefix_walk {
	unsigned prefix;
	bool all;
};

/* In a prefix directory: objects, and with @all whatever else is there as strays. */
static bool keep_in_prefix(const char *name, struct cfs_store_entry *e, const void *ctx)
{
	const struct prefix_walk *w = ctx;

	if (S_ISREG(e->st.st_mode) &&
	    cfs_name_parse_rest(w->prefix, name, strlen(name), e->digest) == 0)
		e->kind = CFS_STORE_ENTRY_OBJECT;
	else if (w->all)
		e->kind = CFS_STORE_ENTRY_STRAY;
	else
		return false;
	return true;
}

/* At the top: everything that is not a prefix directory or cfscache's own is a stray. */
static bool keep_at_top(const char *name, struct cfs_store_entry *e, const void *ctx)
{
	unsigned prefix;

	(void)ctx;
	/* ".cfs-*" names belong to cfscache (temp files, derived files). */
	if (strncmp(name, CFS_STORE_RESERVED_PREFIX, strlen(CFS_STORE_RESERVED_PREFIX)) == 0)
		return false;
	if (S_ISDIR(e->st.st_mode) && cfs_name_parse_prefix(name, strlen(name), &prefix) == 0)
		return false;
	/* mkfs makes it when the store is the root of its own filesystem. */
	if (S_ISDIR(e->st.st_mode) && strcmp(name, "lost+found") == 0)
		return false;
	e->kind = CFS_STORE_ENTRY_STRAY;
	return true;
}

static bool keep_temp(const char *name, struct cfs_store_entry *e, const void *ctx)
{
	(void)name;
	(void)ctx;
	e->kind = CFS_STORE_ENTRY_TEMP;
	return true;
}

int cfs_store_iter(struct cfs_store *store, bool all, cfs_store_iter_fn fn, void *userdata)
{
	int r;

	for (unsigned p = 0; p < 256; p++) {
		struct prefix_walk w = {.prefix = p, .all = all};
		char pname[4];

		snprintf(pname, sizeof(pname), "%02x", p);
		r = walk_dir(store->dirfd, pname, true, keep_in_prefix, &w, fn, userdata);
		if (r)
			return r;
	}
	if (!all)
		return 0;
	r = walk_dir(store->dirfd, ".", false, keep_at_top, NULL, fn, userdata);
	if (r || store->tmpfd < 0)
		return r;
	return walk_dir(store->dirfd, CFS_STORE_TMPDIR, false, keep_temp, NULL, fn, userdata);
}

static int usage_cb(const struct cfs_store_entry *e, void *userdata)
{
	struct cfs_store_usage *u = userdata;

	u->objects++;
	u->bytes += (uint64_t)e->st.st_size;
	u->disk_bytes += (uint64_t)e->st.st_blocks * 512;
	return 0;
}

int cfs_store_usage(struct cfs_store *store, struct cfs_store_usage *usage_ret)
{
	struct cfs_store_usage u = {0};
	int r = cfs_store_iter(store, false, usage_cb, &u);

	if (r < 0)
		return r;
	*usage_ret = u;
	return 0;
}
