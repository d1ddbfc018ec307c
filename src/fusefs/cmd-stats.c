/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache stats MOUNTPOINT`: prints the counters a mount exposes as user.cfs.*
 * extended attributes of its root, as lines or as JSON with one object per server. */
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
#define MAX_SERVERS 64

void cfs_cache_print_json_string(const char *v)
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

static void print_json_value(const char *v)
{
	size_t len = strlen(v);

	if (len > 0 && len <= 19 && strspn(v, "0123456789") == len)
		fputs(v, stdout);
	else
		cfs_cache_print_json_string(v);
}

/* "server.N.FIELD": N and FIELD; "server.N" (the one-line form) and others: -1. */
static int server_field(const char *name, const char **field_ret)
{
	char *end;
	long n;

	if (strncmp(name, "server.", 7) != 0)
		return -1;
	n = strtol(name + 7, &end, 10);
	if (end == name + 7 || *end != '.' || n < 0 || n >= MAX_SERVERS)
		return -1;
	*field_ret = end + 1;
	return (int)n;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: cfs-cache stats [--json] MOUNTPOINT\n\n"
		   "Prints the counters of a cfs-cache mount: the store (objects and bytes with\n"
		   "--max-size or --pin, its filesystem's size and free space), lookups that\n"
		   "reached the daemon, misses, objects and bytes fetched, hand-offs, negative-cache\n"
		   "hits, failures, evictions, and each server's state and requests. --json prints\n"
		   "one object, with \"servers\": [{\"url\": ..., \"state\": ..., ...}]. Every counter\n"
		   "is described in cfs-cache(1), COUNTERS.\n");
}

int cfs_cache_cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char names[16384], value[1024];
	bool json = false, any = false, first = true;
	int n_servers = 0;
	const char *mnt;
	ssize_t len;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'cfs-cache stats --help'.\n");
			return CFS_EXIT_MISUSE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "Usage: cfs-cache stats [--json] MOUNTPOINT\n");
		return CFS_EXIT_MISUSE;
	}
	mnt = argv[optind];
	len = listxattr(mnt, names, sizeof(names));
	if (len < 0) {
		fprintf(stderr, "cfs-cache stats: %s: %s\n", mnt, strerror(errno));
		return 1;
	}
	for (char *n = names; n < names + len && !any; n += strlen(n) + 1)
		any = strncmp(n, PREFIX, strlen(PREFIX)) == 0;
	if (!any) {
		fprintf(stderr, "cfs-cache stats: %s is not a cfs-cache mount\n", mnt);
		return 1;
	}
	if (json) {
		printf("{\"mount\": ");
		cfs_cache_print_json_string(mnt);
	}
	/* The counters; in JSON the per-server fields wait for the "servers" array. */
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		const char *name = n + strlen(PREFIX), *field;
		int server;
		ssize_t vl;

		if (strncmp(n, PREFIX, strlen(PREFIX)) != 0)
			continue;
		vl = getxattr(mnt, n, value, sizeof(value) - 1);
		if (vl < 0)
			continue;
		value[vl] = '\0';
		server = server_field(name, &field);
		if (server >= 0) {
			if (server + 1 > n_servers)
				n_servers = server + 1;
			continue;
		}
		if (json) {
			if (strncmp(name, "server.", 7) == 0)
				continue; /* the one-line form: the array has it all */
			printf(", ");
			cfs_cache_print_json_string(name);
			printf(": ");
			print_json_value(value);
		} else {
			printf("%-18s %s\n", name, value);
		}
	}
	if (json) {
		printf(", \"servers\": [");
		for (int i = 0; i < n_servers; i++) {
			char prefix[32];

			snprintf(prefix, sizeof(prefix), PREFIX "server.%d.", i);
			printf("%s{", i ? ", " : "");
			first = true;
			for (char *n = names; n < names + len; n += strlen(n) + 1) {
				ssize_t vl;

				if (strncmp(n, prefix, strlen(prefix)) != 0)
					continue;
				vl = getxattr(mnt, n, value, sizeof(value) - 1);
				if (vl < 0)
					continue;
				value[vl] = '\0';
				printf("%s", first ? "" : ", ");
				cfs_cache_print_json_string(n + strlen(prefix));
				printf(": ");
				print_json_value(value);
				first = false;
			}
			printf("}");
		}
		printf("]}\n");
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
