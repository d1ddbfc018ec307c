/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-store gc`: offline garbage collection of a store: drop what no kept image
 * refers to, and/or evict least recently used objects down to a size. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/name.h"
#include "common/quota.h"
#include "common/store.h"
#include "common/util.h"
#include "image/image.h"
#include "tools/cmds.h"

#define MAX_KEEP 64

/* --dry-run: each object gc would remove. */
static void print_victim(const uint8_t digest[CFS_DIGEST_SIZE], uint64_t bytes, void *ctx)
{
	char path[CFS_NAME_PATH_LEN + 1], b[32];

	cfs_name_format_path(digest, path);
	printf("would remove: %s (%s)\n", path, cfs_format_size(bytes, b, sizeof(b)));
}

/* What `gc` was asked for. */
struct gc_cmd {
	char *keep[MAX_KEEP];
	size_t nkeep;
	bool unreferenced, have_max, dry_run;
	uint64_t max;
	const char *store_path;
};

/* Reads the command line: -1 to go on, else the exit status. */
static int gc_parse(struct gc_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},       {"max-size", required_argument, NULL, 'm'},
	    {"keep", required_argument, NULL, 'k'}, {"unreferenced", no_argument, NULL, 'u'},
	    {"dry-run", no_argument, NULL, 'n'},    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "hm:k:un", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cfs_tool_wants_help(2, (char *[]){argv[0], (char *)"--help", NULL}, "gc");
			return 0;
		case 'm':
			if (cfs_parse_size(optarg, &cmd->max) < 0)
				return cfs_tool_usage_error("gc", "invalid --max-size '%s'",
				                            optarg);
			cmd->have_max = true;
			break;
		case 'k':
			if (cmd->nkeep == MAX_KEEP)
				return cfs_tool_usage_error("gc", "at most %d --keep images",
				                            MAX_KEEP);
			cmd->keep[cmd->nkeep++] = optarg;
			break;
		case 'u':
			cmd->unreferenced = true;
			break;
		case 'n':
			cmd->dry_run = true;
			break;
		default:
			return cfs_tool_usage_error("gc", "unknown option");
		}
	}
	if (argc - optind != 1)
		return cfs_tool_usage_error("gc", "need exactly one store");
	if (!cmd->have_max && !cmd->unreferenced)
		return cfs_tool_usage_error("gc",
		                            "nothing to do: give --max-size and/or --unreferenced");
	if (cmd->unreferenced && cmd->nkeep == 0)
		return cfs_tool_usage_error("gc", "--unreferenced needs at least one --keep IMAGE "
		                                  "(it would delete everything)");
	cmd->store_path = argv[optind];
	return -1;
}

/* Pins the kept images' objects, then removes the unreferenced ones and evicts down to
 * --max-size (or, dry, says what it would): 0 or -errno (said). */
static int gc_collect(const struct gc_cmd *cmd, struct cfs_quota *quota)
{
	int r;

	if (cmd->dry_run)
		cfs_quota_set_victim_fn(quota, true, cfs_tool_quiet ? NULL : print_victim, NULL);
	if (cmd->nkeep) {
		r = cfs_image_pin_files(quota, cmd->keep, cmd->nkeep);
		if (r < 0)
			return r;
	}
	if (cmd->unreferenced) {
		r = cfs_quota_remove_unpinned(quota);
		if (r < 0) {
			cfs_err("removing unreferenced objects failed: %s", strerror(-r));
			return r;
		}
	}
	if (cmd->have_max) {
		r = cfs_quota_evict_to(quota, cmd->max);
		if (r < 0) {
			cfs_err("eviction failed: %s", strerror(-r));
			return r;
		}
	}
	return 0;
}

/* The summary: what went and what stayed, in disk use (allocated blocks, what --max-size
 * limits), and the side files swept. */
static void gc_report(const struct gc_cmd *cmd, const struct cfs_quota_stats *after, int side,
                      uint64_t side_bytes)
{
	char b1[32], b2[32], b3[32];

	if (cfs_tool_quiet)
		return;
	printf("%s %llu objects (%s); %s %llu objects (%s)",
	       cmd->dry_run ? "dry run: would remove" : "removed",
	       (unsigned long long)after->evictions,
	       cfs_format_size(after->bytes_evicted, b1, sizeof(b1)),
	       cmd->dry_run ? "would keep" : "kept", (unsigned long long)after->objects,
	       cfs_format_size(after->bytes, b2, sizeof(b2)));
	if (cmd->nkeep)
		printf(", %llu of them used by the %zu kept image(s)",
		       (unsigned long long)after->pinned_present, cmd->nkeep);
	if (cmd->have_max)
		printf("; limit %s", cfs_format_size(cmd->max, b3, sizeof(b3)));
	printf(" (sizes are disk use)\n");
	if (after->pinned > after->pinned_present)
		printf("%llu objects of the kept images are not in the store\n",
		       (unsigned long long)(after->pinned - after->pinned_present));
	if (side > 0)
		printf("removed %d zstd side files of absent objects (%s)\n", side,
		       cfs_format_size(side_bytes, b1, sizeof(b1)));
}

int cfs_cmd_gc(int argc, char **argv)
{
	struct gc_cmd cmd = {.nkeep = 0};
	struct cfs_quota_stats after;
	struct cfs_quota *quota = NULL;
	struct cfs_store *store = NULL;
	uint64_t side_bytes = 0;
	int side, r = gc_parse(&cmd, argc, argv), ret = 1;

	if (r >= 0)
		return r;
	r = cfs_store_open(cmd.store_path, 0, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", cmd.store_path, strerror(-r));
		return 1;
	}
	r = cfs_quota_new(store, 0, 0, &quota);
	if (r < 0) {
		cfs_err("cannot index store %s: %s", cmd.store_path, strerror(-r));
		goto out;
	}
	if (gc_collect(&cmd, quota) < 0)
		goto out;
	/* zstd side files whose object is gone, and a crashed server's unfinished ones. */
	side = cmd.dry_run ? 0 : cfs_store_sweep_derived(store, 3600, &side_bytes);
	if (side < 0)
		cfs_warn("cleaning side files: %s", strerror(-side));
	cfs_quota_get_stats(quota, &after);
	gc_report(&cmd, &after, side, side_bytes);
	ret = 0;
	if (cmd.have_max && after.bytes > cmd.max) {
		cfs_warn("kept objects alone exceed --max-size");
		ret = 1;
	}
out:
	cfs_quota_free(quota);
	cfs_store_free(store);
	return ret;
}
