/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store, the offline tool for object stores (digest, import, verify, stat, ...). */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tools/cmds.h"

bool tool_quiet;
bool tool_no_progress;

static const struct tool_cmd commands[] = {
	{ "digest", cmd_digest, "[--threads N] FILE...",
	  "print the fs-verity digest of files (like `fsverity digest`)" },
	{ "import", cmd_import, "[--dry-run] SRC_DIR... STORE",
	  "add every non-empty regular file of trees to a store" },
	{ "verify", cmd_verify, "[--delete-bad] STORE", "re-hash every object and report problems" },
	{ "stat", cmd_stat, "STORE", "print object count and bytes" },
	{ "objects", cmd_objects, "IMAGE...", "list the objects composefs images point at" },
	{ "missing-objects", cmd_missing_objects, "--store DIR IMAGE|DIGEST...",
	  "list the objects of images that a store lacks" },
	{ "ls", cmd_ls, "IMAGE...", "list the files of images with their objects" },
	{ "mkimage", cmd_mkimage,
	  "[--store STORE] [--use-epoch] [--skip-devices] [--skip-xattrs] [--user-xattrs] "
	  "[--min-version N] [--max-version N] [--print-digest] [--print-digest-only] "
	  "[--threads N] [--from-file] SRC IMAGE",
	  "import a tree and write its composefs image (as mkcomposefs 1.0.8 does)" },
	{ "dump", cmd_dump, "IMAGE...", "print composefs images in the composefs-dump(5) format" },
	{ "gc", cmd_gc, "[--max-size SIZE] [--keep IMAGE]... [--unreferenced] STORE",
	  "remove objects no kept image refers to, or least recently used ones down to a size" },
	{ "push", cmd_push,
	  "[--token-file F] [--image IMAGE]... [--jobs N] [--ca-file F] [--insecure] [--dry-run] "
	  "STORE URL",
	  "upload the objects a server lacks (all, or those of images)" },
};

static void print_help(FILE *f)
{
	fprintf(f, "Usage: cfs-store [OPTIONS] COMMAND [ARGS...]\n\n"
		   "Offline tool for cfscache object stores (composefs digest stores).\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions:\n"
		   "  -q, --quiet          print only errors\n"
		   "  -v, --verbose        more log output (repeat for debug)\n"
		   "      --log-level L    err, warning, notice, info or debug\n"
		   "      --no-progress    never draw a progress bar\n"
		   "  -h, --help           show this help\n"
		   "  -V, --version        show the version\n\n"
		   "Run 'cfs-store COMMAND --help' for a command's options. See cfs-store(1).\n");
}

bool tool_wants_help(int argc, char **argv, const char *cmd)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
				if (strcmp(commands[c].name, cmd) == 0)
					printf("Usage: cfs-store %s %s\n\n%s.\n", cmd,
					       commands[c].synopsis, commands[c].summary);
			return true;
		}
	}
	return false;
}

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cfs-store %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (strcmp(commands[c].name, cmd) == 0)
			fprintf(stderr, "Usage: cfs-store %s %s\n", cmd, commands[c].synopsis);
	return EXIT_MISUSE;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "no-progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	enum cfs_log_level level = CFS_LOG_NOTICE;
	int c;

	cfs_log_init("cfs-store");
	/* '+' stops at the command name so each command parses its own options. */
	while ((c = getopt_long(argc, argv, "+qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			tool_quiet = true;
			level = CFS_LOG_ERR;
			break;
		case 'v':
			if (level < CFS_LOG_DEBUG)
				level++;
			break;
		case 'L':
			if (cfs_log_parse_level(optarg, &level) < 0) {
				fprintf(stderr, "cfs-store: unknown log level '%s'\n", optarg);
				return EXIT_MISUSE;
			}
			break;
		case 'P':
			tool_no_progress = true;
			break;
		case 'h':
			print_help(stdout);
			return 0;
		case 'V':
			printf("cfs-store (cfscache) %s\n", PACKAGE_VERSION);
			return 0;
		default:
			print_help(stderr);
			return EXIT_MISUSE;
		}
	}
	cfs_log_set_level(level);
	if (optind >= argc) {
		fprintf(stderr, "cfs-store: missing command\n");
		print_help(stderr);
		return EXIT_MISUSE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int first = optind;

			optind = 0; /* reset getopt for the command's own parsing */
			return commands[i].run(argc - first, argv + first);
		}
	}
	fprintf(stderr, "cfs-store: unknown command '%s'\n", argv[optind]);
	print_help(stderr);
	return EXIT_MISUSE;
}
