/* SPDX-License-Identifier: MIT */
/* cfscache: walks of the store: objects, strays and temp files; usage; removing strays and
 * stale temp files. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/name.h"
#include "common/store-internal.h"
#include "common/store.h"

int cfs_store_clean_temp(struct cfs_store *store)
{
	DIR *dir;
	struct dirent *de;
	int fd, removed = 0;

	if (store->tmpfd < 0)
		return 0;
	fd = openat(store->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		int tfd;

		if (strncmp(de->d_name, CFS_STORE_TMP_PREFIX, strlen(CFS_STORE_TMP_PREFIX)) != 0)
			continue;
		tfd = openat(store->tmpfd, de->d_name,
		             O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (tfd < 0)
			continue;
		/* A live writer (of this or another process) holds its file locked. */
		if (flock(tfd, LOCK_EX | LOCK_NB) == 0 &&
		    unlinkat(store->tmpfd, de->d_name, 0) == 0)
			removed++;
		close(tfd);
	}
	closedir(dir);
	return removed;
}

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

static int iter_prefix(struct cfs_store *store, unsigned prefix, bool all, cfs_store_iter_fn fn,
                       void *userdata)
{
	char pname[4], rel[CFS_NAME_PATH_LEN + 256];
	struct dirent *de;
	DIR *dir;
	int fd, r = 0;

	snprintf(pname, sizeof(pname), "%02x", prefix & 0xffu);
	fd = openat(store->dirfd, pname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* A file or a symlink under a prefix name is not followed: the top-level pass reports it
	 * as a stray. */
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		struct cfs_store_entry e = {.relpath = rel};

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", pname, de->d_name);
		if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed under us */
		if (S_ISREG(e.st.st_mode) &&
		    cfs_name_parse_rest(prefix, de->d_name, strlen(de->d_name), e.digest) == 0)
			e.kind = CFS_STORE_ENTRY_OBJECT;
		else if (all)
			e.kind = CFS_STORE_ENTRY_STRAY;
		else
			continue;
		r = fn(&e, userdata);
		if (r)
			break;
	}
	closedir(dir);
	return r;
}

int cfs_store_iter(struct cfs_store *store, bool all, cfs_store_iter_fn fn, void *userdata)
{
	char rel[300];
	int r;

	for (unsigned p = 0; p < 256; p++) {
		r = iter_prefix(store, p, all, fn, userdata);
		if (r)
			return r;
	}
	if (!all)
		return 0;
	/* Everything at the top that is not a prefix directory, and the temp files. */
	{
		int fd = openat(store->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *de;
		DIR *dir;

		if (fd < 0)
			return -errno;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return -errno;
		}
		r = 0;
		while (!r && (de = readdir(dir))) {
			struct cfs_store_entry e = {.relpath = rel, .kind = CFS_STORE_ENTRY_STRAY};
			unsigned prefix;

			/* ".cfs-*" names belong to cfscache (temp files, zstd side files). */
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			    strncmp(de->d_name, CFS_STORE_RESERVED_PREFIX,
			            strlen(CFS_STORE_RESERVED_PREFIX)) == 0)
				continue;
			if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (S_ISDIR(e.st.st_mode) &&
			    cfs_name_parse_prefix(de->d_name, strlen(de->d_name), &prefix) == 0)
				continue;
			/* mkfs makes it when the store is the root of its own filesystem. */
			if (S_ISDIR(e.st.st_mode) && strcmp(de->d_name, "lost+found") == 0)
				continue;
			snprintf(rel, sizeof(rel), "%s", de->d_name);
			r = fn(&e, userdata);
		}
		closedir(dir);
		if (r)
			return r;
	}
	if (store->tmpfd >= 0) {
		int fd = openat(store->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct dirent *de;
		DIR *dir;

		if (fd < 0)
			return -errno;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return -errno;
		}
		r = 0;
		while (!r && (de = readdir(dir))) {
			struct cfs_store_entry e = {.relpath = rel, .kind = CFS_STORE_ENTRY_TEMP};

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (fstatat(fd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			snprintf(rel, sizeof(rel), CFS_STORE_TMPDIR "/%s", de->d_name);
			r = fn(&e, userdata);
		}
		closedir(dir);
	}
	return r;
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
