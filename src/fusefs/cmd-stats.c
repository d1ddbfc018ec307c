/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache stats MOUNTPOINT`: prints the counters a mount exposes as user.cfs.*
 * extended attributes of its root. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fusefs/cmds.h"

#define PREFIX "user.cfs."

/* Prints @v as a JSON string: quotes, backslashes and control characters escaped. */
static void print_json_string(const char *v)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

int cfs_cache_cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char names[8192], value[1024];
	bool json = false, first = true;
	ssize_t len;
	int c;

	while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("Usage: cfs-cache stats [--json] MOUNTPOINT\n\n"
			       "Prints the counters of a cfs-cache mount: lookups, hits, misses,\n"
			       "bytes fetched, failures, per-server state.\n");
			return 0;
		default:
			return CFS_EXIT_MISUSE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "Usage: cfs-cache stats [--json] MOUNTPOINT\n");
		return CFS_EXIT_MISUSE;
	}
	len = listxattr(argv[optind], names, sizeof(names));
	if (len < 0) {
		fprintf(stderr, "cfs-cache stats: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	if (json)
		printf("{");
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		ssize_t vl;

		if (strncmp(n, PREFIX, strlen(PREFIX)) != 0)
			continue;
		vl = getxattr(argv[optind], n, value, sizeof(value) - 1);
		if (vl < 0)
			continue;
		value[vl] = '\0';
		if (json) {
			bool numeric = vl > 0 && strspn(value, "0123456789") == (size_t)vl;

			printf("%s\"%s\": ", first ? "" : ", ", n + strlen(PREFIX));
			if (numeric)
				fputs(value, stdout);
			else
				print_json_string(value);
		} else {
			printf("%-18s %s\n", n + strlen(PREFIX), value);
		}
		first = false;
	}
	if (json)
		printf("}\n");
	if (first) {
		fprintf(stderr, "cfs-cache stats: %s is not a cfs-cache mount\n", argv[optind]);
		return 1;
	}
	return 0;
}
