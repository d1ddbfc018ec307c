/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store digest, import, verify and stat. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "tools/cmds.h"

/* Parses only --help and unknown options for commands without options of their own. */
static int parse_no_options(int argc, char **argv, const char *cmd)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			cfs_tool_wants_help(2, (char *[]){(char *)cmd, (char *)"--help", NULL},
			                    cmd);
			return 0;
		}
		return cfs_tool_usage_error(cmd, "unknown option");
	}
	return -1;
}

/* open_regular's "not a regular file" (a FIFO, a device, a socket or a directory). */
#define NOT_REGULAR EINVAL

/* Opens a regular file for reading without blocking on a FIFO (O_NONBLOCK, then fstat):
 * 0 and *fd_ret, -NOT_REGULAR for anything else, or -errno. */
static int open_regular(const char *path, int flags, int *fd_ret)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | flags);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		int r = S_ISREG(sb.st_mode) ? -errno : -NOT_REGULAR;

		close(fd);
		return r;
	}
	/* O_NONBLOCK only guarded the open. */
	fcntl(fd, F_SETFL, 0);
	*fd_ret = fd;
	return 0;
}

int cfs_cmd_digest(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"threads", required_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	unsigned threads = 0;
	int c, r, ret = 0;

	while ((c = getopt_long(argc, argv, "hj:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){argv[0], (char *)"--help", NULL},
			                    "digest");
			return 0;
		case 'j': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || end == optarg || v > 64)
				return cfs_tool_usage_error("digest", "invalid --threads '%s'",
				                            optarg);
			threads = (unsigned)v;
			break;
		}
		default:
			return cfs_tool_usage_error("digest", "unknown option");
		}
	}
	if (optind >= argc)
		return cfs_tool_usage_error("digest", "no file given");
	for (int i = optind; i < argc; i++) {
		uint8_t d[CFS_DIGEST_SIZE];
		char hex[CFS_DIGEST_HEX_SIZE + 1];
		int fd;

		r = open_regular(argv[i], 0, &fd);
		if (r < 0) {
			cfs_err("%s: %s", argv[i],
			        r == -NOT_REGULAR ? "not a regular file" : strerror(-r));
			ret = 1;
			continue;
		}
		r = cfs_digest_fd(fd, threads, d, NULL);
		close(fd);
		if (r < 0) {
			cfs_err("%s: %s", argv[i], strerror(-r));
			ret = 1;
			continue;
		}
		cfs_name_format_hex(d, hex);
		printf("sha256:%s %s\n", hex, argv[i]);
	}
	if (fflush(stdout) != 0)
		ret = 1;
	return ret;
}

/* ---- import ---------------------------------------------------------------------------- */

struct import_state {
	struct cfs_store *store;
	struct cfs_progress progress;
	struct cfs_store_txn *txn; /* verified writers waiting for one shared flush */
	uint8_t *buf;
	size_t bufsize;
	bool dry_run;
	int err;
	uint64_t files_added, bytes_added, files_dedup, bytes_dedup, skipped, special, errors;
};

#define IMPORT_BATCH 256

static int import_file(struct import_state *st, const char *path, const struct stat *sb)
{
	struct cfs_store_writer *w = NULL;
	uint8_t digest[CFS_DIGEST_SIZE];
	int fd, r;

	/* Replaced by a FIFO since the walk looked: refused, not waited on. */
	r = open_regular(path, O_NOFOLLOW, &fd);
	if (r < 0)
		return r;
	if (st->dry_run) {
		r = cfs_digest_fd(fd, 0, digest, NULL);
		if (r == 0) {
			if (cfs_store_lookup(st->store, digest, NULL) == 0) {
				st->files_dedup++;
				st->bytes_dedup += (uint64_t)sb->st_size;
			} else {
				st->files_added++;
				st->bytes_added += (uint64_t)sb->st_size;
			}
		}
		close(fd);
		return r;
	}
	r = cfs_store_writer_new(st->store, NULL, &w);
	if (r < 0)
		goto out;
	r = cfs_store_writer_write_fd(w, fd, st->buf, st->bufsize);
	if (r < 0)
		goto out;
	r = cfs_store_writer_verify(w, digest);
	if (r < 0)
		goto out;
	r = cfs_store_txn_add(st->txn, w, CFS_STORE_TXN_FREE);
	if (r < 0)
		goto out;
	w = NULL;
	/* Each waiting writer holds a descriptor: a flush every IMPORT_BATCH files. */
	if (cfs_store_txn_count(st->txn) >= IMPORT_BATCH)
		r = cfs_store_txn_commit(st->txn);
out:
	cfs_store_writer_free(w);
	close(fd);
	return r;
}

/* Imports one regular file of the walk. Returns 1 when the store can take no more (said). */
static int import_visit(struct import_state *st, const char *path, const struct stat *sb)
{
	int r;

	if (sb->st_size == 0) {
		st->skipped++;
		return 0;
	}
	r = import_file(st, path, sb);
	if (r == -ENOSPC || r == -EDQUOT || r == -EROFS || r == -EIO) {
		/* The store cannot take more; stop instead of failing every file. */
		cfs_err("%s: %s", path, strerror(-r));
		st->err = r;
		return 1;
	}
	if (r == -NOT_REGULAR) {
		cfs_info("%s: not a regular file, skipped", path);
		st->special++;
		return 0;
	}
	if (r < 0) {
		cfs_warn("%s: %s, skipped", path, strerror(-r));
		st->errors++;
		return 0;
	}
	cfs_progress_add(&st->progress, 1, (uint64_t)sb->st_size);
	return 0;
}

/* Walks @dir without following symlinks or leaving its filesystem and imports its regular
 * files. Returns 0, or -errno when the walk itself failed. */
static int import_tree(struct import_state *st, const char *dir)
{
	char *paths[] = {(char *)dir, NULL};
	FTS *fts = fts_open(paths, FTS_PHYSICAL | FTS_XDEV | FTS_NOCHDIR, NULL);
	FTSENT *e;
	int r = 0;

	if (!fts)
		return -errno;
	errno = 0;
	while (!st->err && (e = fts_read(fts))) {
		switch (e->fts_info) {
		case FTS_DNR:
		case FTS_NS:
		case FTS_ERR:
			cfs_warn("%s: cannot read, skipped", e->fts_path);
			st->errors++;
			break;
		case FTS_F:
			import_visit(st, e->fts_path, e->fts_statp);
			break;
		case FTS_DEFAULT:
			/* FIFOs, sockets and devices have no content to store (symlinks are kept by
			 * images, not stored). */
			cfs_info("%s: not a regular file, skipped", e->fts_path);
			st->special++;
			break;
		default:
			break;
		}
		errno = 0;
	}
	if (!st->err && errno)
		r = -errno;
	fts_close(fts);
	return r;
}

int cfs_cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	struct import_state st = {.bufsize = 1 << 20};
	char added[32], dedup[32];
	int c, r, ret = 0;

	while ((c = getopt_long(argc, argv, "hn", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){argv[0], (char *)"--help", NULL},
			                    "import");
			return 0;
		case 'n':
			st.dry_run = true;
			break;
		default:
			return cfs_tool_usage_error("import", "unknown option");
		}
	}
	if (argc - optind < 2)
		return cfs_tool_usage_error("import", "need a source directory and a store");
	r = cfs_store_open(argv[argc - 1], st.dry_run ? 0 : CFS_STORE_CREATE, &st.store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", argv[argc - 1], strerror(-r));
		return 1;
	}
	st.buf = malloc(st.bufsize);
	if (!st.buf || cfs_store_txn_new(st.store, &st.txn) < 0) {
		free(st.buf);
		cfs_store_free(st.store);
		return 1;
	}
	cfs_progress_init(&st.progress, "import", 0, 0, cfs_tool_no_progress || cfs_tool_quiet);
	for (int i = optind; i < argc - 1 && !st.err; i++) {
		struct stat sb;

		if (stat(argv[i], &sb) < 0 || !S_ISDIR(sb.st_mode)) {
			cfs_err("%s: not a directory", argv[i]);
			ret = 1;
			continue;
		}
		r = import_tree(&st, argv[i]);
		if (r < 0) {
			cfs_err("%s: %s", argv[i], strerror(-r));
			ret = 1;
		}
	}
	r = cfs_store_txn_commit(st.txn);
	if (r < 0 && !st.err) {
		cfs_err("cannot commit objects: %s", strerror(-r));
		st.err = r;
	}
	if (!st.dry_run) {
		struct cfs_store_txn_stats ts;

		cfs_store_txn_get_stats(st.txn, &ts);
		st.files_added = ts.added;
		st.bytes_added = ts.bytes_added;
		st.files_dedup = ts.present;
		st.bytes_dedup = ts.bytes_present;
	}
	cfs_store_txn_free(st.txn);
	cfs_progress_done(&st.progress);
	if (!cfs_tool_quiet)
		printf("%s%llu files added (%s), %llu deduplicated (%s), %llu empty skipped, "
		       "%llu not regular (FIFO, socket, device) skipped, %llu errors in %.1fs\n",
		       st.dry_run ? "dry run: " : "", (unsigned long long)st.files_added,
		       cfs_format_size(st.bytes_added, added, sizeof(added)),
		       (unsigned long long)st.files_dedup,
		       cfs_format_size(st.bytes_dedup, dedup, sizeof(dedup)),
		       (unsigned long long)st.skipped, (unsigned long long)st.special,
		       (unsigned long long)st.errors, cfs_progress_elapsed(&st.progress));
	free(st.buf);
	cfs_store_free(st.store);
	return st.err || st.errors || ret ? 1 : 0;
}

/* ---- verify ---------------------------------------------------------------------------- */

struct verify_state {
	struct cfs_store *store;
	struct cfs_progress progress;
	bool delete_bad;
	uint64_t ok, corrupt, misnamed, stray, temp, in_use, deleted, unreadable;
};

static const char *kind_name(mode_t mode)
{
	return S_ISREG(mode)    ? "file"
	       : S_ISDIR(mode)  ? "directory"
	       : S_ISLNK(mode)  ? "symlink, not followed"
	       : S_ISFIFO(mode) ? "FIFO"
	       : S_ISSOCK(mode) ? "socket"
	                        : "device";
}

/* Whether a live writer holds the temp file @rel (under @dirfd) locked. */
static bool temp_in_use(int dirfd, const char *rel)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	bool busy;

	if (fd < 0)
		return false;
	busy = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return busy;
}

static int verify_visit(const struct cfs_store_entry *e, void *userdata)
{
	struct verify_state *st = userdata;
	int dirfd = cfs_store_dirfd(st->store);
	uint8_t d[CFS_DIGEST_SIZE];
	bool bad = false;
	int fd, r;

	switch (e->kind) {
	case CFS_STORE_ENTRY_OBJECT:
		/* Nothing on the way is followed, and a FIFO swapped in does not block. */
		fd = cfs_store_openat_beneath(dirfd, e->relpath, O_RDONLY | O_NONBLOCK);
		if (fd < 0) {
			printf("unreadable: %s: %s\n", e->relpath, strerror(-fd));
			st->unreadable++;
			return 0;
		}
		r = cfs_digest_fd(fd, 0, d, NULL);
		close(fd);
		if (r < 0) {
			printf("unreadable: %s: %s\n", e->relpath, strerror(-r));
			st->unreadable++;
		} else if (memcmp(d, e->digest, CFS_DIGEST_SIZE) != 0) {
			char hex[CFS_DIGEST_HEX_SIZE + 1];

			cfs_name_format_hex(d, hex);
			printf("corrupt: %s (content hashes to %s)\n", e->relpath, hex);
			st->corrupt++;
			bad = true;
		} else {
			st->ok++;
		}
		cfs_progress_add(&st->progress, 1, (uint64_t)e->st.st_size);
		break;
	case CFS_STORE_ENTRY_STRAY:
		/* A regular file inside a prefix directory is a misnamed object. */
		if (S_ISREG(e->st.st_mode) && strchr(e->relpath, '/')) {
			printf("misnamed: %s\n", e->relpath);
			st->misnamed++;
			bad = true;
		} else {
			printf("stray: %s (%s)\n", e->relpath, kind_name(e->st.st_mode));
			st->stray++;
			if (st->delete_bad) {
				r = cfs_store_remove_stray(st->store, e->relpath);
				if (r == 0) {
					printf("deleted: %s\n", e->relpath);
					st->deleted++;
				} else {
					cfs_err("cannot delete %s: %s", e->relpath, strerror(-r));
				}
			}
		}
		break;
	case CFS_STORE_ENTRY_TEMP:
		/* A live writer (a mount, a fetch) holds its temp file locked: not a problem. */
		if (temp_in_use(dirfd, e->relpath)) {
			st->in_use++;
			break;
		}
		printf("temp: %s\n", e->relpath);
		st->temp++;
		break;
	}
	if (bad && st->delete_bad) {
		if (unlinkat(dirfd, e->relpath, 0) == 0) {
			/* A zstd side file cfs-serve made of an object must not outlive it. */
			if (e->kind == CFS_STORE_ENTRY_OBJECT)
				cfs_store_remove_derived(st->store, e->digest);
			printf("deleted: %s\n", e->relpath);
			st->deleted++;
		} else {
			cfs_err("cannot delete %s: %s", e->relpath, strerror(errno));
		}
	}
	return 0;
}

int cfs_cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"delete-bad", no_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	struct verify_state st = {0};
	struct cfs_store_usage usage;
	uint64_t problems;
	int c, r;

	while ((c = getopt_long(argc, argv, "hd", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){argv[0], (char *)"--help", NULL},
			                    "verify");
			return 0;
		case 'd':
			st.delete_bad = true;
			break;
		default:
			return cfs_tool_usage_error("verify", "unknown option");
		}
	}
	if (argc - optind != 1)
		return cfs_tool_usage_error("verify", "need exactly one store");
	/* Stale temp files are reported, not silently cleaned, unless asked to repair. */
	r = cfs_store_open(argv[optind], st.delete_bad ? 0 : CFS_STORE_NO_CLEAN, &st.store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", argv[optind], strerror(-r));
		return 1;
	}
	if (cfs_store_usage(st.store, &usage) < 0)
		usage = (struct cfs_store_usage){0};
	cfs_progress_init(&st.progress, "verify", usage.objects, usage.bytes,
	                  cfs_tool_no_progress || cfs_tool_quiet);
	r = cfs_store_iter(st.store, true, verify_visit, &st);
	cfs_progress_done(&st.progress);
	cfs_store_free(st.store);
	if (r < 0) {
		cfs_err("cannot walk store %s: %s", argv[optind], strerror(-r));
		return 1;
	}
	problems = st.corrupt + st.misnamed + st.stray + st.temp + st.unreadable;
	if (!cfs_tool_quiet || problems)
		printf("%llu objects ok, %llu corrupt, %llu misnamed, %llu stray, %llu temp, "
		       "%llu unreadable%s\n",
		       (unsigned long long)st.ok, (unsigned long long)st.corrupt,
		       (unsigned long long)st.misnamed, (unsigned long long)st.stray,
		       (unsigned long long)st.temp, (unsigned long long)st.unreadable,
		       st.deleted ? " (bad entries deleted)" : "");
	if (st.in_use && !cfs_tool_quiet)
		printf("%llu temp files being written by a live process (not checked)\n",
		       (unsigned long long)st.in_use);
	return problems ? 1 : 0;
}

/* ---- stat ------------------------------------------------------------------------------ */

int cfs_cmd_stat(int argc, char **argv)
{
	struct cfs_store *store;
	struct cfs_store_usage u;
	char b1[32], b2[32];
	int r;

	r = parse_no_options(argc, argv, "stat");
	if (r >= 0)
		return r;
	if (argc - optind != 1)
		return cfs_tool_usage_error("stat", "need exactly one store");
	r = cfs_store_open(argv[optind], CFS_STORE_NO_CLEAN, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", argv[optind], strerror(-r));
		return 1;
	}
	r = cfs_store_usage(store, &u);
	cfs_store_free(store);
	if (r < 0) {
		cfs_err("cannot walk store %s: %s", argv[optind], strerror(-r));
		return 1;
	}
	printf("objects: %llu\nbytes: %llu (%s)\ndisk: %llu (%s)\n", (unsigned long long)u.objects,
	       (unsigned long long)u.bytes, cfs_format_size(u.bytes, b1, sizeof(b1)),
	       (unsigned long long)u.disk_bytes, cfs_format_size(u.disk_bytes, b2, sizeof(b2)));
	return 0;
}
