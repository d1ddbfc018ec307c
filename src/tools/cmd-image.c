/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store objects, missing-objects, ls, dump (read composefs images) and mkimage. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "image/image.h"
#include "image/writer.h"
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
	    {"help", no_argument, NULL, 'h'},
	    {"store", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, store_ret ? "hs:" : "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){(char *)cmd, (char *)"--help", NULL},
			                    cmd);
			return 0;
		case 's':
			if (!store_ret)
				return cfs_tool_usage_error(cmd, "unknown option");
			*store_ret = optarg;
			break;
		default:
			return cfs_tool_usage_error(cmd, "unknown option");
		}
	}
	if (optind >= argc)
		return cfs_tool_usage_error(cmd, "no image given");
	return -1;
}

int cfs_cmd_objects(int argc, char **argv)
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

int cfs_cmd_missing_objects(int argc, char **argv)
{
	const char *store_path = NULL;
	struct cfs_store *store = NULL;
	uint8_t *d = NULL;
	size_t n = 0, nimg = 0;
	char **paths = NULL;
	int r, ret = 0;

	r = parse_image_options(argc, argv, "missing-objects", &store_path);
	if (r >= 0)
		return r;
	if (!store_path)
		return cfs_tool_usage_error("missing-objects", "--store is required");
	r = cfs_store_open(store_path, CFS_STORE_NO_CLEAN, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", store_path, strerror(-r));
		return 1;
	}
	nimg = (size_t)(argc - optind);
	paths = calloc(nimg, sizeof(*paths));
	if (!paths) {
		cfs_store_free(store);
		return 1;
	}
	/* An image is named by its path, or by its digest when it is an object of the store. */
	for (size_t i = 0; i < nimg; i++) {
		const char *arg = argv[optind + i];
		uint8_t idig[CFS_DIGEST_SIZE];
		char rel[CFS_NAME_PATH_LEN + 1];

		if (access(arg, F_OK) == 0 || cfs_name_parse_any(arg, strlen(arg), idig) < 0)
			continue;
		cfs_name_format_path(idig, rel);
		if (cfs_store_lookup(store, idig, NULL) < 0) {
			cfs_err("image %s: not in the store %s", arg, store_path);
			ret = 1;
			goto out;
		}
		if (asprintf(&paths[i], "%s/%s", cfs_store_path(store), rel) < 0) {
			paths[i] = NULL;
			ret = 1;
			goto out;
		}
	}
	for (size_t i = 0; i < nimg; i++)
		if (!paths[i] && !(paths[i] = strdup(argv[optind + i]))) {
			ret = 1;
			goto out;
		}
	r = cfs_image_objects_of_files(paths, nimg, &d, &n);
	if (r < 0) {
		ret = 1;
		goto out;
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
out:
	free(d);
	for (size_t i = 0; paths && i < nimg; i++)
		free(paths[i]);
	free(paths);
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

int cfs_cmd_ls(int argc, char **argv)
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

#define MKIMAGE_BATCH 256

struct mkimage_state {
	struct cfs_store *store;
	struct cfs_progress progress;
	struct cfs_store_txn *txn; /* verified writers waiting for one shared flush */
	unsigned threads;
	uint8_t *buf;
	size_t bufsize;
	uint64_t files, bytes;
};

/* Hashes a regular file of the tree (and copies it into the store when there is one). */
static int mk_file(int fd, const char *path, const struct stat *st, uint8_t digest[CFS_DIGEST_SIZE],
                   void *userdata)
{
	struct mkimage_state *ms = userdata;
	struct cfs_store_writer *w = NULL;
	uint64_t size = 0;
	int r;

	(void)path;
	(void)st;
	if (!ms->store) {
		r = cfs_digest_fd(fd, ms->threads, digest, &size);
		goto done;
	}
	r = cfs_store_writer_new(ms->store, NULL, &w);
	if (r < 0)
		return r;
	r = cfs_store_writer_write_fd(w, fd, ms->buf, ms->bufsize);
	if (r < 0)
		goto out;
	size = cfs_store_writer_size(w);
	r = cfs_store_writer_verify(w, digest);
	if (r < 0)
		goto out;
	r = cfs_store_txn_add(ms->txn, w, CFS_STORE_TXN_FREE);
	if (r < 0)
		goto out;
	w = NULL;
	/* Each waiting writer holds a descriptor: a flush every MKIMAGE_BATCH files. */
	if (cfs_store_txn_count(ms->txn) >= MKIMAGE_BATCH)
		r = cfs_store_txn_commit(ms->txn);
out:
	cfs_store_writer_free(w);
done:
	if (r == 0) {
		ms->files++;
		ms->bytes += size;
		cfs_progress_add(&ms->progress, 1, size);
	}
	return r;
}

/* Writes @len bytes to @path through a temporary file renamed into place ("-" = stdout). */
static int write_image_file(const char *path, const uint8_t *data, size_t len)
{
	char *tmp = NULL;
	int fd, r;

	if (strcmp(path, "-") == 0)
		return cfs_write_full(STDOUT_FILENO, data, len);
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = cfs_write_full(fd, data, len);
	if (r == 0 && fchmod(fd, 0644) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}

/* Stores the image itself as an object: its fs-verity digest is what nodes trust. */
static int store_image(struct cfs_store *store, const uint8_t *data, size_t len,
                       uint8_t digest[CFS_DIGEST_SIZE], bool *existed_ret)
{
	struct cfs_store_writer *w = NULL;
	int r;

	r = cfs_store_writer_new(store, NULL, &w);
	if (r < 0)
		return r;
	r = cfs_store_writer_write(w, data, len);
	if (r == 0)
		r = cfs_store_writer_verify(w, digest);
	if (r == 0)
		r = cfs_store_commit_one(w, existed_ret);
	cfs_store_writer_free(w);
	return r;
}

static int parse_version(const char *s, unsigned *v)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 10);
	if (errno || *end || end == s || x > CFS_WRITER_VERSION_MAX)
		return -EINVAL;
	*v = (unsigned)x;
	return 0;
}

enum {
	OPT_USE_EPOCH = 256,
	OPT_SKIP_DEVICES,
	OPT_SKIP_XATTRS,
	OPT_USER_XATTRS,
	OPT_MIN_VERSION,
	OPT_MAX_VERSION,
	OPT_PRINT_DIGEST,
	OPT_PRINT_DIGEST_ONLY,
	OPT_FROM_FILE,
	OPT_THREADS,
};

/* What `mkimage` was asked for, and what it made. */
struct mkimage_cmd {
	struct mkimage_state ms;
	struct cfs_write_options wopts;
	const char *store_path, *src, *image;
	bool print_digest, digest_only, from_file;
	unsigned flags;
	struct cfs_tree *tree;
	uint8_t *data, digest[CFS_DIGEST_SIZE];
	size_t len;
	char *failed;
};

/* Reads the command line: -1 to go on, else the exit status. */
static int mkimage_parse(struct mkimage_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"store", required_argument, NULL, 's'},
	    {"digest-store", required_argument, NULL, 's'},
	    {"use-epoch", no_argument, NULL, OPT_USE_EPOCH},
	    {"skip-devices", no_argument, NULL, OPT_SKIP_DEVICES},
	    {"skip-xattrs", no_argument, NULL, OPT_SKIP_XATTRS},
	    {"user-xattrs", no_argument, NULL, OPT_USER_XATTRS},
	    {"min-version", required_argument, NULL, OPT_MIN_VERSION},
	    {"max-version", required_argument, NULL, OPT_MAX_VERSION},
	    {"print-digest", no_argument, NULL, OPT_PRINT_DIGEST},
	    {"print-digest-only", no_argument, NULL, OPT_PRINT_DIGEST_ONLY},
	    {"from-file", no_argument, NULL, OPT_FROM_FILE},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {NULL, 0, NULL, 0},
	};
	bool max_given = false;
	int c;

	while ((c = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){argv[0], (char *)"--help", NULL},
			                    "mkimage");
			return 0;
		case 's':
			cmd->store_path = optarg;
			break;
		case OPT_USE_EPOCH:
			cmd->flags |= CFS_TREE_USE_EPOCH;
			break;
		case OPT_SKIP_DEVICES:
			cmd->flags |= CFS_TREE_SKIP_DEVICES;
			break;
		case OPT_SKIP_XATTRS:
			cmd->flags |= CFS_TREE_SKIP_XATTRS;
			break;
		case OPT_USER_XATTRS:
			cmd->flags |= CFS_TREE_USER_XATTRS;
			break;
		case OPT_MIN_VERSION:
			if (parse_version(optarg, &cmd->wopts.min_version) < 0)
				return cfs_tool_usage_error("mkimage", "bad --min-version %s",
				                            optarg);
			break;
		case OPT_MAX_VERSION:
			if (parse_version(optarg, &cmd->wopts.max_version) < 0)
				return cfs_tool_usage_error("mkimage", "bad --max-version %s",
				                            optarg);
			max_given = true;
			break;
		case OPT_PRINT_DIGEST:
			cmd->print_digest = true;
			break;
		case OPT_PRINT_DIGEST_ONLY:
			cmd->digest_only = cmd->print_digest = true;
			break;
		case OPT_FROM_FILE:
			cmd->from_file = true;
			break;
		case OPT_THREADS: {
			char *end;
			unsigned long t = strtoul(optarg, &end, 10);

			if (*end || end == optarg || t > 1024)
				return cfs_tool_usage_error("mkimage", "bad --threads %s", optarg);
			cmd->ms.threads = (unsigned)t;
			break;
		}
		default:
			return cfs_tool_usage_error("mkimage", "unknown option");
		}
	}
	if (argc - optind != (cmd->digest_only ? 1 : 2))
		return cfs_tool_usage_error(
		    "mkimage", cmd->digest_only
		                   ? "need a source (and no image) with --print-digest-only"
		                   : "need a source and an image path");
	if ((cmd->flags & CFS_TREE_SKIP_XATTRS) && (cmd->flags & CFS_TREE_USER_XATTRS))
		return cfs_tool_usage_error("mkimage", "--skip-xattrs and --user-xattrs conflict");
	if (max_given && cmd->wopts.max_version < cmd->wopts.min_version)
		return cfs_tool_usage_error("mkimage", "--max-version is below --min-version");
	cmd->src = argv[optind];
	if (!cmd->digest_only)
		cmd->image = argv[optind + 1];
	return -1;
}

/* Opens the store (with --store) and its transaction, and the copy buffer: 0 or -errno (said). */
static int mkimage_setup(struct mkimage_cmd *cmd)
{
	struct mkimage_state *ms = &cmd->ms;
	int r;

	if (cmd->store_path) {
		r = cfs_store_open(cmd->store_path, CFS_STORE_CREATE, &ms->store);
		if (r < 0) {
			cfs_err("cannot open store %s: %s", cmd->store_path, strerror(-r));
			return r;
		}
		r = cfs_store_txn_new(ms->store, &ms->txn);
		if (r < 0)
			return r;
	} else if (!cfs_tool_quiet && !cmd->from_file) {
		cfs_notice("no --store given: the content of %s is not saved anywhere, only its "
		           "digests go into the image",
		           cmd->src);
	}
	ms->buf = malloc(ms->bufsize);
	if (!ms->buf)
		return -ENOMEM;
	cfs_progress_init(&ms->progress, "mkimage", 0, 0, cfs_tool_no_progress || cfs_tool_quiet);
	return 0;
}

/* Builds the tree from a dump (--from-file) or a directory, whose files go into the store. */
static int mkimage_read_tree(struct mkimage_cmd *cmd)
{
	int r;

	if (cmd->from_file) {
		FILE *f = strcmp(cmd->src, "-") == 0 ? stdin : fopen(cmd->src, "re");
		size_t line = 0;

		if (!f) {
			r = -errno;
			cfs_err("%s: %s", cmd->src, strerror(-r));
			return r;
		}
		r = cfs_tree_from_dump(f, &cmd->tree, &line);
		if (f != stdin)
			fclose(f);
		if (r == -EINVAL)
			cfs_err("%s:%zu: not a valid composefs dump line", cmd->src, line);
		else if (r < 0)
			cfs_err("%s: %s", cmd->src, strerror(-r));
	} else {
		r = cfs_tree_from_dir(cmd->src, cmd->flags, mk_file, &cmd->ms, &cmd->tree,
		                      &cmd->failed);
		if (r < 0) {
			cfs_err("%s: %s", cmd->failed ? cmd->failed : cmd->src, strerror(-r));
			return r;
		}
		r = cmd->ms.txn ? cfs_store_txn_commit(cmd->ms.txn) : 0;
		if (r < 0)
			cfs_err("cannot commit objects: %s", strerror(-r));
	}
	cfs_progress_done(&cmd->ms.progress);
	return r;
}

/* Lays out the image, stores it (with --store) and writes its file: 0 or -errno (said). */
static int mkimage_write(struct mkimage_cmd *cmd)
{
	int r = cfs_tree_write(cmd->tree, &cmd->wopts, &cmd->data, &cmd->len);

	if (r < 0) {
		cfs_err("cannot lay out the image of %s: %s", cmd->src,
		        r == -ENAMETOOLONG ? "a symlink target does not fit in one EROFS block"
		                           : strerror(-r));
		return r;
	}
	if (cmd->ms.store) {
		bool existed = false;

		r = store_image(cmd->ms.store, cmd->data, cmd->len, cmd->digest, &existed);
		if (r < 0) {
			cfs_err("cannot store the image in %s: %s", cmd->store_path, strerror(-r));
			return r;
		}
	} else {
		r = cfs_digest_buffer(cmd->data, cmd->len, cmd->digest);
		if (r < 0)
			return r;
	}
	if (cmd->image) {
		r = write_image_file(cmd->image, cmd->data, cmd->len);
		if (r < 0) {
			cfs_err("cannot write %s: %s", cmd->image, strerror(-r));
			return r;
		}
	}
	return 0;
}

/* Prints the digest (stdout) and the summary (stderr): the exit status. */
static int mkimage_report(struct mkimage_cmd *cmd)
{
	const struct mkimage_state *ms = &cmd->ms;
	struct cfs_store_txn_stats ts = {0};
	const char *what = cmd->image ? cmd->image : cmd->src;
	char hex[2 * CFS_DIGEST_SIZE + 1], b1[32], b2[32], b3[32];

	cfs_hex_encode(cmd->digest, CFS_DIGEST_SIZE, hex);
	/* The digest is the image's name: printed when asked, or when the image went into the
	 * store, on stdout alone so scripts can take it. */
	if (cmd->print_digest || ms->store)
		printf("%s\n", hex);
	if (ms->txn)
		cfs_store_txn_get_stats(ms->txn, &ts);
	if (!cfs_tool_quiet && !cmd->from_file && ms->store)
		fprintf(
		    stderr,
		    "%s: %llu files (%s), %llu objects (%llu added, %s; %llu already stored), "
		    "image %s, in %.1fs\n",
		    what, (unsigned long long)ms->files, cfs_format_size(ms->bytes, b1, sizeof(b1)),
		    (unsigned long long)(ts.added + ts.present), (unsigned long long)ts.added,
		    cfs_format_size(ts.bytes_added, b2, sizeof(b2)), (unsigned long long)ts.present,
		    cfs_format_size(cmd->len, b3, sizeof(b3)), cfs_progress_elapsed(&ms->progress));
	else if (!cfs_tool_quiet && !cmd->from_file)
		fprintf(stderr, "%s: %llu files (%s), no store given, image %s, in %.1fs\n", what,
		        (unsigned long long)ms->files, cfs_format_size(ms->bytes, b1, sizeof(b1)),
		        cfs_format_size(cmd->len, b3, sizeof(b3)),
		        cfs_progress_elapsed(&ms->progress));
	return fflush(stdout) == 0 ? 0 : 1;
}

int cfs_cmd_mkimage(int argc, char **argv)
{
	struct mkimage_cmd cmd = {
	    .ms = {.bufsize = 1 << 20},
	    .wopts = {.min_version = 0, .max_version = 1},
	};
	int r = mkimage_parse(&cmd, argc, argv);

	if (r >= 0)
		return r;
	r = 1;
	if (mkimage_setup(&cmd) == 0 && mkimage_read_tree(&cmd) == 0 && mkimage_write(&cmd) == 0)
		r = mkimage_report(&cmd);
	cfs_store_txn_free(cmd.ms.txn);
	cfs_tree_free(cmd.tree);
	free(cmd.data);
	free(cmd.failed);
	free(cmd.ms.buf);
	cfs_store_free(cmd.ms.store);
	return r;
}

/* Reads a whole file (at most @max bytes) into a malloc'ed buffer. */
static int read_file(const char *path, uint64_t max, uint8_t **data_ret, size_t *len_ret)
{
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		r = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	n = cfs_read_full(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	*data_ret = cfs_steal_pointer(&buf);
	*len_ret = (size_t)n;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

int cfs_cmd_dump(int argc, char **argv)
{
	int r, ret = 0;

	r = parse_image_options(argc, argv, "dump", NULL);
	if (r >= 0)
		return r;
	for (int i = optind; i < argc; i++) {
		char msg[256] = "";
		uint8_t *data = NULL;
		size_t len = 0;

		r = read_file(argv[i], CFS_IMAGE_MAX_SIZE, &data, &len);
		if (r < 0) {
			report_open_error(argv[i], r, NULL);
			ret = 1;
			continue;
		}
		r = cfs_image_dump(data, len, stdout, msg, sizeof(msg));
		free(data);
		if (r < 0) {
			fflush(stdout);
			report_open_error(argv[i], r, msg);
			ret = 1;
		}
	}
	if (fflush(stdout) != 0)
		ret = 1;
	return ret;
}
