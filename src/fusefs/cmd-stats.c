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
	fprintf(
	    f,
	    "Usage: cfs-cache stats [--json] MOUNTPOINT\n\n"
	    "Prints the counters of a cfs-cache mount: the store (objects and bytes with\n"
	    "--max-size or --pin, its filesystem's size and free space), lookups that\n"
	    "reached the daemon, misses, objects and bytes fetched, hand-offs, negative-cache\n"
	    "hits, failures, evictions, and each server's state and requests. --json prints\n"
	    "one object, with \"servers\": [{\"url\": ..., \"state\": ..., ...}]. Every counter\n"
	    "is described in cfs-cache(1), COUNTERS.\n");
}

/* A mount's counters: the names of its attributes. */
struct stats_view {
	const char *mnt;
	char names[16384];
	ssize_t len;
};

/* The value of attribute @name in @value (NUL-terminated): its length, or -1. */
static ssize_t stats_get(const struct stats_view *v, const char *name, char *value, size_t size)
{
	ssize_t vl = getxattr(v->mnt, name, value, size - 1);

	if (vl >= 0)
		value[vl] = '\0';
	return vl;
}

/* Lists the mount's attributes: 0, or 1 after saying why (not a cfs-cache mount). */
static int stats_open(struct stats_view *v, const char *mnt)
{
	bool any = false;

	v->mnt = mnt;
	v->len = listxattr(mnt, v->names, sizeof(v->names));
	if (v->len < 0) {
		fprintf(stderr, "cfs-cache stats: %s: %s\n", mnt, strerror(errno));
		return 1;
	}
	for (const char *n = v->names; n < v->names + v->len; n += strlen(n) + 1) {
		if (strncmp(n, PREFIX, strlen(PREFIX)) == 0)
			any = true;
	}
	if (!any) {
		fprintf(stderr, "cfs-cache stats: %s is not a cfs-cache mount\n", mnt);
		return 1;
	}
	return 0;
}

/* The counters, one per line or as JSON fields; per-server fields are left to
 * stats_print_servers. Returns how many servers there are. */
static int stats_print_counters(const struct stats_view *v, bool json)
{
	char value[1024];
	int n_servers = 0;

	for (const char *n = v->names; n < v->names + v->len; n += strlen(n) + 1) {
		const char *name = n + strlen(PREFIX), *field;
		int server;

		if (strncmp(n, PREFIX, strlen(PREFIX)) != 0 ||
		    stats_get(v, n, value, sizeof(value)) < 0)
			continue;
		server = server_field(name, &field);
		if (server >= 0) {
			if (server + 1 > n_servers)
				n_servers = server + 1;
			continue;
		}
		if (!json) {
			printf("%-18s %s\n", name, value);
		} else if (strncmp(name, "server.", 7) !=
		           0) { /* the one-line form: the array has it */
			printf(", ");
			cfs_cache_print_json_string(name);
			printf(": ");
			print_json_value(value);
		}
	}
	return n_servers;
}

/* The JSON "servers" array: one object of fields per server. */
static void stats_print_servers(const struct stats_view *v, int n_servers)
{
	char value[1024];

	printf(", \"servers\": [");
	for (int i = 0; i < n_servers; i++) {
		char prefix[32];
		bool first = true;

		snprintf(prefix, sizeof(prefix), PREFIX "server.%d.", i);
		printf("%s{", i ? ", " : "");
		for (const char *n = v->names; n < v->names + v->len; n += strlen(n) + 1) {
			if (strncmp(n, prefix, strlen(prefix)) != 0 ||
			    stats_get(v, n, value, sizeof(value)) < 0)
				continue;
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

int cfs_cache_cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct stats_view v;
	bool json = false;
	int c, n_servers;

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
	if (stats_open(&v, argv[optind]) != 0)
		return 1;
	if (json) {
		printf("{\"mount\": ");
		cfs_cache_print_json_string(v.mnt);
	}
	n_servers = stats_print_counters(&v, json);
	if (json)
		stats_print_servers(&v, n_servers);
	return fflush(stdout) == 0 ? 0 : 1;
}
