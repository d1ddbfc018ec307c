/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store objects, missing-objects, ls (read composefs images) and mkimage. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <search.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "image/image.h"
#include "tools/cmds.h"

static void report_open_error(const char *path, int r, const char *msg)
{
	cfs_err("%s: %s", path, msg && msg[0] ? msg : strerror(-r));
}

/* Parses --help and, when @store_ret is given, --store DIR. Returns -1 to go on, else an exit
 * code. */
static int parse_image_options(int argc, char **argv, const char *cmd, const char **store_ret)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "store", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, store_ret ? "hs:" : "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			tool_wants_help(2, (char *[]){ (char *)cmd, (char *)"--help", NULL }, cmd);
			return 0;
		case 's':
			if (!store_ret)
				return tool_usage_error(cmd, "unknown option");
			*store_ret = optarg;
			break;
		default:
			return tool_usage_error(cmd, "unknown option");
		}
	}
	if (optind >= argc)
		return tool_usage_error(cmd, "no image given");
	return -1;
}

int cmd_objects(int argc, char **argv)
{
	uint8_t *d = NULL;
	size_t n = 0;
	int r;

	r = parse_image_options(argc, argv, "objects", NULL);
	if (r >= 0)
		return r;
	r = cfs_image_objects_of_files(argv + optind, (size_t)(argc - optind), &d, &n);
	if (r < 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		char path[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(d + i * CFS_DIGEST_SIZE, path);
		puts(path);
	}
	free(d);
	return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_missing_objects(int argc, char **argv)
{
	const char *store_path = NULL;
	struct cfs_store *store = NULL;
	uint8_t *d = NULL;
	size_t n = 0;
	int r, ret = 0;

	r = parse_image_options(argc, argv, "missing-objects", &store_path);
	if (r >= 0)
		return r;
	if (!store_path)
		return tool_usage_error("missing-objects", "--store is required");
	r = cfs_store_open(store_path, CFS_STORE_NO_CLEAN, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", store_path, strerror(-r));
		return 1;
	}
	r = cfs_image_objects_of_files(argv + optind, (size_t)(argc - optind), &d, &n);
	if (r < 0) {
		cfs_store_free(store);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		char path[CFS_NAME_PATH_LEN + 1];

		r = cfs_store_lookup(store, d + i * CFS_DIGEST_SIZE, NULL);
		if (r == 0)
			continue;
		cfs_name_format_path(d + i * CFS_DIGEST_SIZE, path);
		if (r != -ENOENT && r != -EUCLEAN) {
			cfs_err("%s: %s", path, strerror(-r));
			ret = 1;
		}
		puts(path);
	}
	free(d);
	cfs_store_free(store);
	if (fflush(stdout) != 0)
		ret = 1;
	return ret;
}

/* composefs-info's escaping: \\ \n \r \t, and \xNN for what is not printable (paths) or not
 * graphic (targets). */
static void print_escaped(const char *s, size_t len, bool allow_space)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\')
			fputs("\\\\", stdout);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c >= 0x80 || (allow_space ? !isprint(c) : !isgraph(c)))
			printf("\\x%.2x", c);
		else
			putchar(c);
	}
}

static int ls_entry(const struct cfs_image_entry *e, void *userdata)
{
	(void)userdata;
	/* A 0/0 character device is an overlay whiteout: composefs-info does not list it. */
	if (S_ISCHR(e->mode) && e->rdev == 0)
		return 0;
	print_escaped(e->path, e->path_len, true);
	if (S_ISDIR(e->mode)) {
		fputs("/\t", stdout);
	} else if (S_ISLNK(e->mode)) {
		fputs("\t-> ", stdout);
		print_escaped(e->symlink, strlen(e->symlink), false);
	} else if (S_ISREG(e->mode) && e->redirect) {
		const char *p = e->redirect;
		size_t len = e->redirect_len;

		/* composefs keeps the payload without the leading slash. */
		if (len && p[0] == '/') {
			p++;
			len--;
		}
		fputs("\t@ ", stdout);
		print_escaped(p, len, false);
	} else if (S_ISREG(e->mode) && e->has_object) {
		char path[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(e->object, path);
		printf("\t@ %s", path);
	}
	putchar('\n');
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	int r, ret = 0;

	r = parse_image_options(argc, argv, "ls", NULL);
	if (r >= 0)
		return r;
	for (int i = optind; i < argc; i++) {
		struct cfs_image *img = NULL;
		char msg[256] = "";

		r = cfs_image_open_msg(argv[i], &img, msg, sizeof(msg));
		if (r < 0) {
			report_open_error(argv[i], r, msg);
			ret = 1;
			continue;
		}
		r = cfs_image_walk(img, 0, ls_entry, NULL);
		if (r < 0) {
			fflush(stdout);
			report_open_error(argv[i], r, cfs_image_error(img));
			ret = 1;
		}
		cfs_image_free(img);
	}
	if (fflush(stdout) != 0)
		ret = 1;
	return ret;
}

/* ---- mkimage --------------------------------------------------------------------------- */

/* Files up to this size stay inline in the image, as mkcomposefs does. */
#define MKIMAGE_INLINE_MAX 64

struct mk_dir {
	char *path, *src;
	struct stat st;
};

struct mk_link {
	dev_t dev;
	ino_t ino;
	char *path;
};

struct mkimage_state {
	const char *src;
	size_t src_len;
	const char *shadow;
	dev_t skip_dev[2];
	ino_t skip_ino[2]; /* the shadow tree and an old image, when they sit inside the source */
	struct cfs_store *store;
	struct cfs_progress progress;
	struct cfs_store_batch batch; /* verified writers waiting for one shared flush */
	struct mk_dir *dirs;
	size_t ndirs, dirs_cap;
	void *links; /* tsearch tree of struct mk_link */
	uint8_t *buf;
	size_t bufsize;
	int err;
	uint64_t files, objects, bytes, inlined, others, warnings;
};

static struct mkimage_state *mk_st; /* nftw has no user pointer */

/* Hashes @fd (and copies it into the store when there is one); *size_ret is what was read. */
static int mk_object(struct mkimage_state *st, int fd, uint8_t digest[CFS_DIGEST_SIZE],
		     uint64_t *size_ret)
{
	struct cfs_store_writer *w = NULL;
	int r;

	if (!st->store)
		return cfs_digest_fd(fd, 0, digest, size_ret);
	r = cfs_store_writer_new(st->store, NULL, &w);
	if (r < 0)
		return r;
	r = cfs_store_writer_write_fd(w, fd, st->buf, st->bufsize);
	if (r < 0)
		goto out;
	*size_ret = cfs_store_writer_size(w);
	r = cfs_store_writer_verify(w, digest);
	if (r < 0)
		goto out;
	r = cfs_store_batch_add(&st->batch, cfs_steal_pointer(&w));
out:
	cfs_store_writer_free(w);
	return r;
}

/* Copies the extended attributes of @src to @dst (both not followed), except the overlay
 * ones that the image itself uses. */
static void mk_copy_xattrs(struct mkimage_state *st, const char *src, const char *dst)
{
	char names[65536], *value = NULL;
	ssize_t len;

	len = llistxattr(src, names, sizeof(names));
	if (len <= 0)
		return;
	value = malloc(65536);
	if (!value)
		return;
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		ssize_t vlen;

		if (strncmp(n, "trusted.overlay.", 16) == 0) {
			cfs_warn("%s: xattr %s not copied (reserved for the image)", src, n);
			st->warnings++;
			continue;
		}
		vlen = lgetxattr(src, n, value, 65536);
		if (vlen < 0 || lsetxattr(dst, n, value, (size_t)vlen, 0) < 0) {
			cfs_warn("%s: cannot copy xattr %s: %s", src, n, strerror(errno));
			st->warnings++;
		}
	}
	free(value);
}

/* Owner, mode and times, in that order (chown clears set-id bits). */
static int mk_set_meta(const char *dst, const struct stat *sb)
{
	struct timespec ts[2] = { sb->st_atim, sb->st_mtim };

	if (lchown(dst, sb->st_uid, sb->st_gid) < 0)
		return -errno;
	if (!S_ISLNK(sb->st_mode) && chmod(dst, sb->st_mode & 07777) < 0)
		return -errno;
	if (utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int mk_link_cmp(const void *a, const void *b)
{
	const struct mk_link *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

static void mk_link_free(void *p)
{
	struct mk_link *l = p;

	free(l->path);
	free(l);
}

static int mk_regular(struct mkimage_state *st, const char *path, const char *dst,
		      const struct stat *sb)
{
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t size = 0;
	int fd = -1, out = -1, r;

	if (sb->st_nlink > 1) {
		struct mk_link key = { .dev = sb->st_dev, .ino = sb->st_ino }, *l, **found;

		found = tfind(&key, &st->links, mk_link_cmp);
		if (found) {
			if (link((*found)->path, dst) < 0)
				return -errno;
			return 0;
		}
		l = calloc(1, sizeof(*l));
		if (!l || !(l->path = strdup(dst))) {
			free(l);
			return -ENOMEM;
		}
		l->dev = sb->st_dev;
		l->ino = sb->st_ino;
		if (!tsearch(l, &st->links, mk_link_cmp)) {
			mk_link_free(l);
			return -ENOMEM;
		}
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		r = -errno;
		goto out;
	}
	if (sb->st_size > MKIMAGE_INLINE_MAX) {
		char redirect[1 + CFS_NAME_PATH_LEN + 1];
		uint8_t metacopy[4 + CFS_DIGEST_SIZE] = { 0, sizeof(metacopy), 0, 1 };

		r = mk_object(st, fd, digest, &size);
		if (r < 0)
			goto out;
		/* The content lives in the store: a sparse file of the real size carries the
		 * overlay xattrs that point at it. */
		if (ftruncate(out, (off_t)size) < 0) {
			r = -errno;
			goto out;
		}
		memcpy(metacopy + 4, digest, CFS_DIGEST_SIZE);
		redirect[0] = '/';
		cfs_name_format_path(digest, redirect + 1);
		if (fsetxattr(out, "trusted.overlay.metacopy", metacopy, sizeof(metacopy), 0) < 0 ||
		    fsetxattr(out, "trusted.overlay.redirect", redirect, strlen(redirect), 0) < 0) {
			r = -errno;
			goto out;
		}
		st->objects++;
	} else {
		ssize_t n = cfs_read_full(fd, st->buf, MKIMAGE_INLINE_MAX + 1);

		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if (n > MKIMAGE_INLINE_MAX) {
			r = -EAGAIN; /* grew while we looked */
			goto out;
		}
		r = cfs_write_full(out, st->buf, (size_t)n);
		if (r < 0)
			goto out;
		size = (uint64_t)n;
		st->inlined++;
	}
	st->files++;
	st->bytes += size;
	cfs_progress_add(&st->progress, 1, size);
	r = 0;
out:
	if (out >= 0)
		close(out);
	close(fd);
	return r;
}

static int mk_visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	struct mkimage_state *st = mk_st;
	const char *rel = path + st->src_len;
	char *dst = NULL;
	int r = 0;

	(void)ftw;
	if (type == FTW_DNR || type == FTW_NS) {
		cfs_err("%s: cannot read", path);
		st->err = -EIO;
		return FTW_STOP;
	}
	for (int i = 0; i < 2; i++)
		if (sb->st_dev == st->skip_dev[i] && sb->st_ino == st->skip_ino[i])
			return FTW_SKIP_SUBTREE;
	if (asprintf(&dst, "%s%s", st->shadow, rel) < 0) {
		st->err = -ENOMEM;
		return FTW_STOP;
	}
	if (S_ISDIR(sb->st_mode)) {
		struct mk_dir *d;

		if (*rel && mkdir(dst, 0700) < 0) {
			r = -errno;
			goto out;
		}
		if (st->ndirs == st->dirs_cap) {
			size_t ncap = st->dirs_cap ? st->dirs_cap * 2 : 64;

			d = realloc(st->dirs, ncap * sizeof(*d));
			if (!d) {
				r = -ENOMEM;
				goto out;
			}
			st->dirs = d;
			st->dirs_cap = ncap;
		}
		/* Metadata after the children, which would change the times. */
		st->dirs[st->ndirs].src = strdup(path);
		if (!st->dirs[st->ndirs].src) {
			r = -ENOMEM;
			goto out;
		}
		st->dirs[st->ndirs].path = cfs_steal_pointer(&dst);
		st->dirs[st->ndirs++].st = *sb;
		return 0;
	}
	if (S_ISREG(sb->st_mode)) {
		r = mk_regular(st, path, dst, sb);
	} else if (S_ISLNK(sb->st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t n = readlink(path, target, PATH_MAX);

		if (n < 0) {
			r = -errno;
		} else {
			target[n] = '\0';
			if (symlink(target, dst) < 0)
				r = -errno;
		}
		st->others++;
	} else {
		if (mknod(dst, sb->st_mode & (S_IFMT | 07777), sb->st_rdev) < 0)
			r = -errno;
		st->others++;
	}
	if (r == 0 && sb->st_nlink > 1 && S_ISREG(sb->st_mode)) {
		struct stat now;

		/* A second name of a file already done: metadata is shared. */
		if (lstat(dst, &now) == 0 && now.st_nlink > 1)
			goto out;
	}
	if (r == 0) {
		mk_copy_xattrs(st, path, dst);
		r = mk_set_meta(dst, sb);
	}
out:
	/* An image missing a file would be wrong: every failure stops the build. */
	if (r < 0) {
		cfs_err("%s: %s", path, strerror(-r));
		st->err = r;
		free(dst);
		return FTW_STOP;
	}
	free(dst);
	return FTW_CONTINUE;
}

static int rm_visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Finds @prog in PATH, so a missing tool is reported before any work. */
static bool have_program(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;
	bool found = false;

	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	copy = strdup(path);
	if (!copy)
		return false;
	for (char *dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char full[PATH_MAX];

		snprintf(full, sizeof(full), "%s/%s", *dir ? dir : ".", prog);
		found = access(full, X_OK) == 0;
	}
	free(copy);
	return found;
}

static int run_mkfs(const char *image, const char *shadow)
{
	char *const args[] = { (char *)"mkfs.erofs", (char *)"-x2",
			       (char *)"--chunksize=1048576", (char *)"--quiet",
			       (char *)image, (char *)shadow, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int r, status;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	r = posix_spawnp(&pid, "mkfs.erofs", &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -r;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EIO;
	return 0;
}

int cmd_mkimage(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "store", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct mkimage_state st = { .bufsize = 1 << 20 };
	const char *store_path = NULL, *image;
	char *src = NULL, *shadow = NULL, *imgdir = NULL, b1[32], b2[32];
	struct stat sb;
	int c, r, ret = 1;

	while ((c = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			tool_wants_help(2, (char *[]){ argv[0], (char *)"--help", NULL }, "mkimage");
			return 0;
		case 's':
			store_path = optarg;
			break;
		default:
			return tool_usage_error("mkimage", "unknown option");
		}
	}
	if (argc - optind != 2)
		return tool_usage_error("mkimage", "need a source directory and an image path");
	image = argv[optind + 1];
	if (!have_program("mkfs.erofs")) {
		cfs_err("mkfs.erofs not found in PATH: install erofs-utils");
		return 1;
	}
	src = realpath(argv[optind], NULL);
	if (!src || stat(src, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		cfs_err("%s: not a directory", argv[optind]);
		goto out;
	}
	st.src = src;
	st.src_len = strcmp(src, "/") == 0 ? 0 : strlen(src);
	/* The shadow tree sits next to the image: same filesystem, and sparse files cost
	 * nothing there. */
	imgdir = strdup(image);
	if (!imgdir || asprintf(&shadow, "%s/.cfs-mkimage.XXXXXX", dirname(imgdir)) < 0) {
		shadow = NULL;
		goto out;
	}
	if (!mkdtemp(shadow)) {
		cfs_err("cannot create a temporary directory next to %s: %s", image,
			strerror(errno));
		free(shadow);
		shadow = NULL;
		goto out;
	}
	st.shadow = shadow;
	/* The overlay xattrs are trusted.*: find out now, not at the first file. */
	if (lsetxattr(shadow, "trusted.cfs-probe", "1", 1, 0) < 0) {
		if (errno == EPERM)
			cfs_err("mkimage needs root (CAP_SYS_ADMIN) to write trusted.overlay xattrs");
		else
			cfs_err("cannot write trusted xattrs next to %s: %s", image, strerror(errno));
		goto out;
	}
	lremovexattr(shadow, "trusted.cfs-probe");
	if (stat(shadow, &sb) == 0) {
		st.skip_dev[0] = sb.st_dev;
		st.skip_ino[0] = sb.st_ino;
	}
	if (stat(image, &sb) == 0) {
		st.skip_dev[1] = sb.st_dev;
		st.skip_ino[1] = sb.st_ino;
	}
	if (store_path) {
		r = cfs_store_open(store_path, CFS_STORE_CREATE, &st.store);
		if (r < 0) {
			cfs_err("cannot open store %s: %s", store_path, strerror(-r));
			goto out;
		}
		st.batch.store = st.store;
	}
	st.buf = malloc(st.bufsize);
	if (!st.buf)
		goto out;
	cfs_progress_init(&st.progress, "mkimage", 0, 0, tool_no_progress || tool_quiet);
	mk_st = &st;
	if (nftw(src, mk_visit, 64, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL) < 0 && !st.err) {
		cfs_err("%s: %s", src, strerror(errno));
		st.err = -errno;
	}
	r = cfs_store_batch_commit(&st.batch);
	if (r < 0 && !st.err) {
		cfs_err("cannot commit objects: %s", strerror(-r));
		st.err = r;
	}
	for (size_t i = st.ndirs; i-- > 0;) {
		if (st.err)
			break;
		mk_copy_xattrs(&st, st.dirs[i].src, st.dirs[i].path);
		r = mk_set_meta(st.dirs[i].path, &st.dirs[i].st);
		if (r < 0) {
			cfs_err("%s: %s", st.dirs[i].path, strerror(-r));
			st.err = r;
		}
	}
	cfs_progress_done(&st.progress);
	if (st.err)
		goto out;
	cfs_info("shadow tree of %s written in %.1fs", src, cfs_progress_elapsed(&st.progress));
	r = run_mkfs(image, shadow);
	if (r < 0) {
		cfs_err("mkfs.erofs failed to write %s: %s", image, strerror(-r));
		goto out;
	}
	cfs_info("mkfs.erofs done at %.1fs", cfs_progress_elapsed(&st.progress));
	if (!tool_quiet && st.store)
		printf("%s: %llu files (%s), %llu objects (%llu added, %s; %llu already stored), "
		       "%llu inline, %llu other inodes, %llu warnings in %.1fs\n",
		       image, (unsigned long long)st.files,
		       cfs_format_size(st.bytes, b1, sizeof(b1)), (unsigned long long)st.objects,
		       (unsigned long long)st.batch.added,
		       cfs_format_size(st.batch.bytes_added, b2, sizeof(b2)),
		       (unsigned long long)st.batch.present, (unsigned long long)st.inlined,
		       (unsigned long long)st.others, (unsigned long long)st.warnings,
		       cfs_progress_elapsed(&st.progress));
	else if (!tool_quiet)
		printf("%s: %llu files (%s), %llu objects (no store given), %llu inline, "
		       "%llu other inodes, %llu warnings in %.1fs\n",
		       image, (unsigned long long)st.files,
		       cfs_format_size(st.bytes, b1, sizeof(b1)), (unsigned long long)st.objects,
		       (unsigned long long)st.inlined, (unsigned long long)st.others,
		       (unsigned long long)st.warnings, cfs_progress_elapsed(&st.progress));
	ret = 0;
out:
	cfs_store_batch_discard(&st.batch);
	for (size_t i = 0; i < st.ndirs; i++) {
		free(st.dirs[i].path);
		free(st.dirs[i].src);
	}
	free(st.dirs);
	tdestroy(st.links, mk_link_free);
	if (shadow) {
		nftw(shadow, rm_visit, 64, FTW_DEPTH | FTW_PHYS);
		free(shadow);
	}
	free(st.buf);
	cfs_store_free(st.store);
	free(imgdir);
	free(src);
	return ret;
}
