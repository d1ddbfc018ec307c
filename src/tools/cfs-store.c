/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store, the offline tool for object stores (digest, import, verify, stat, ...). */
#include "config.h"

#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tools/cmds.h"

bool cfs_tool_quiet;
bool cfs_tool_no_progress;

#define SIZE_HELP                                                                               \
	"SIZE is a byte count with an optional unit: K, M, G, T or KiB, MiB, GiB, TiB are\n"   \
	"powers of 1024; kB (or KB), MB, GB, TB are powers of 1000; e.g. 20G, 512MiB, 1.5GB.\n"

static const struct tool_cmd commands[] = {
	{ "digest", cfs_cmd_digest, "[-j N] FILE...",
	  "print the fs-verity digest of files (like `fsverity digest`)",
	  "  -j, --threads N      hash a large file on N threads (default: every CPU)\n"
	  "\n"
	  "Only regular files: a FIFO, a device or a directory is refused (exit status 1).\n",
	  " -j --threads " },
	{ "import", cfs_cmd_import, "[--dry-run] SRC_DIR... STORE",
	  "add every non-empty regular file of trees to a store",
	  "  -n, --dry-run        only hash; say what would be added\n"
	  "\n"
	  "Symlinks, FIFOs, sockets and devices are skipped. STORE is created if missing.\n",
	  NULL },
	{ "verify", cfs_cmd_verify, "[--delete-bad] STORE", "re-hash every object and report problems",
	  "  -d, --delete-bad     remove corrupt and misnamed objects, strays and stale\n"
	  "                       temporary files (symlinks are removed, never followed)\n"
	  "\n"
	  "Exit status 1 when anything was reported.\n",
	  NULL },
	{ "stat", cfs_cmd_stat, "STORE", "print object count, bytes and disk use",
	  "bytes is the sum of the objects' sizes; disk is the space they take\n"
	  "(allocated blocks, st_blocks x 512), what gc --max-size and cfs-cache --max-size count.\n",
	  NULL },
	{ "objects", cfs_cmd_objects, "IMAGE...", "list the objects composefs images point at", NULL,
	  NULL },
	{ "missing-objects", cfs_cmd_missing_objects, "--store DIR IMAGE|DIGEST...",
	  "list the objects of images that a store lacks",
	  "  -s, --store DIR      the store to look in (required)\n"
	  "\n"
	  "An image may be named by its digest (sha256:HEX, 64 hex or XX/<62hex>): it is then\n"
	  "looked up in the store.\n",
	  " -s --store " },
	{ "ls", cfs_cmd_ls, "IMAGE...", "list the files of images with their objects", NULL, NULL },
	{ "mkimage", cfs_cmd_mkimage,
	  "[--store STORE] [--use-epoch] [--skip-devices] [--skip-xattrs] [--user-xattrs] "
	  "[--min-version N] [--max-version N] [--print-digest] [--print-digest-only] "
	  "[--threads N] [--from-file] SRC IMAGE",
	  "import a tree and write its composefs image (as mkcomposefs 1.0.8 does)",
	  "  -s, --store STORE    import the objects into STORE, and the image itself\n"
	  "                       (its digest is printed)\n"
	  "      --use-epoch      every timestamp 0\n"
	  "      --skip-devices   leave device nodes out\n"
	  "      --skip-xattrs    leave extended attributes out\n"
	  "      --user-xattrs    keep only user.* extended attributes\n"
	  "      --min-version N, --max-version N\n"
	  "                       composefs format versions to choose from (default 0 and 1)\n"
	  "      --print-digest   print the image's fs-verity digest\n"
	  "      --print-digest-only\n"
	  "                       only compute and print it (IMAGE may be omitted)\n"
	  "      --threads N      hash on N threads\n"
	  "      --from-file      SRC is a composefs-dump(5) file, not a directory\n",
	  " -s --store --digest-store --min-version --max-version --threads " },
	{ "dump", cfs_cmd_dump, "IMAGE...", "print composefs images in the composefs-dump(5) format",
	  NULL, NULL },
	{ "gc", cfs_cmd_gc, "[--max-size SIZE] [--keep IMAGE]... [--unreferenced] [--dry-run] STORE",
	  "remove objects no kept image refers to, or least recently used ones down to a size",
	  "  -m, --max-size SIZE  remove least recently used objects (not those of --keep\n"
	  "                       images) until the store's disk use is at most SIZE\n"
	  "  -k, --keep IMAGE     protect the objects of this composefs image (repeatable)\n"
	  "  -u, --unreferenced   remove every object no --keep image refers to\n"
	  "  -n, --dry-run        list what would be removed ('would remove: XX/...'), remove\n"
	  "                       nothing\n"
	  "\n"
	  "Sizes are disk use: allocated blocks (st_blocks x 512), as du(1) counts them, the\n"
	  "same as cfs-cache --max-size.\n" SIZE_HELP,
	  " -m --max-size -k --keep " },
	{ "push", cfs_cmd_push,
	  "[--token-file F] [--image IMAGE]... [--jobs N] [--retries N] [--ca-file F] "
	  "[--cert F] [--key F] [--insecure] [--dry-run] STORE URL",
	  "upload the objects a server lacks (all, or those of images)", NULL,
	  " -i --image -t --token-file -j --jobs --retries --ca-file " },
};

static void print_help(FILE *f)
{
	fprintf(f, "Usage: cfs-store [OPTIONS] COMMAND [ARGS...]\n\n"
		   "Offline tool for cfscache object stores (composefs digest stores).\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions (before or after the command):\n"
		   "  -q, --quiet          print only errors and problems found\n"
		   "  -v, --verbose        more log output (repeat for debug)\n"
		   "      --log-level L    err, warning, notice, info or debug\n"
		   "      --no-progress    never draw a progress bar (it is drawn only on a terminal)\n"
		   "  -h, --help           show this help\n"
		   "  -V, --version        show the version\n\n"
		   "Sizes are printed in KiB, MiB, GiB (powers of 1024).\n" SIZE_HELP "\n"
		   "Run 'cfs-store COMMAND --help' for a command's options. See cfs-store(1).\n");
}

bool cfs_tool_wants_help(int argc, char **argv, const char *cmd)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
				const struct tool_cmd *t = &commands[c];

				if (strcmp(t->name, cmd) != 0)
					continue;
				printf("Usage: cfs-store %s %s\n\n%c%s.\n", cmd, t->synopsis,
				       toupper((unsigned char)t->summary[0]), t->summary + 1);
				if (t->help)
					printf("\n%s%s", t->help[0] == ' ' ? "Options:\n" : "",
					       t->help);
				printf("\nThe global options (-q, -v, --log-level, --no-progress) go "
				       "before or after\nthe command. See cfs-store(1).\n");
			}
			return true;
		}
	}
	return false;
}

int cfs_tool_usage_error(const char *cmd, const char *fmt, ...)
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

/* The global options, wherever they are on the command line. */
struct globals {
	enum cfs_log_level level;
};

/* Applies one global option: 1 when @arg is one (2 when it took @next as its value too), 0 when
 * not, or -EXIT_MISUSE after a message. */
static int take_global(struct globals *g, const char *arg, const char *next)
{
	const char *val = NULL;
	int used = 1;

	if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
		cfs_tool_quiet = true;
		g->level = CFS_LOG_ERR;
		return 1;
	}
	if (strcmp(arg, "--verbose") == 0) {
		if (g->level < CFS_LOG_DEBUG)
			g->level++;
		return 1;
	}
	if (arg[0] == '-' && arg[1] == 'v' && strspn(arg + 1, "v") == strlen(arg + 1)) {
		for (size_t i = 1; arg[i]; i++)
			if (g->level < CFS_LOG_DEBUG)
				g->level++;
		return 1;
	}
	if (strcmp(arg, "--no-progress") == 0) {
		cfs_tool_no_progress = true;
		return 1;
	}
	if (strncmp(arg, "--log-level=", 12) == 0) {
		val = arg + 12;
	} else if (strcmp(arg, "--log-level") == 0) {
		val = next;
		used = 2;
	} else {
		return 0;
	}
	if (!val) {
		fprintf(stderr, "cfs-store: option '--log-level' needs a value (err, warning, notice, "
				"info or debug)\n");
		return -EXIT_MISUSE;
	}
	if (cfs_log_parse_level(val, &g->level) < 0) {
		fprintf(stderr, "cfs-store: --log-level: unknown level '%s' (err, warning, notice, "
				"info or debug)\n", val);
		return -EXIT_MISUSE;
	}
	return used;
}

/* Takes the global options out of a command's arguments (up to "--"), so each command parses
 * only its own: `cfs-store verify -q STORE` is `cfs-store -q verify STORE`. The values of the
 * command's own options are skipped, never read as global options. Returns the new argc or
 * -EXIT_MISUSE. */
static int take_globals_after(struct globals *g, const struct tool_cmd *cmd, int argc, char **argv)
{
	int out = 1, i = 1;

	while (i < argc) {
		char spelled[64];
		int r;

		if (strcmp(argv[i], "--") == 0)
			break;
		r = take_global(g, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
		if (r < 0)
			return r;
		if (r > 0) {
			i += r;
			continue;
		}
		snprintf(spelled, sizeof(spelled), " %s ", argv[i]);
		if (cmd->value_opts && strstr(cmd->value_opts, spelled) && i + 1 < argc) {
			argv[out++] = argv[i++];
		}
		argv[out++] = argv[i++];
	}
	while (i < argc)
		argv[out++] = argv[i++];
	argv[out] = NULL;
	return out;
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
	struct globals g = { .level = CFS_LOG_NOTICE };
	int c;

	cfs_log_init("cfs-store");
	/* '+' stops at the command name; what follows is the command's (global options too). */
	while ((c = getopt_long(argc, argv, "+qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			take_global(&g, "-q", NULL);
			break;
		case 'v':
			take_global(&g, "-v", NULL);
			break;
		case 'L':
			if (take_global(&g, "--log-level", optarg) < 0)
				return EXIT_MISUSE;
			break;
		case 'P':
			cfs_tool_no_progress = true;
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
	if (optind >= argc) {
		fprintf(stderr, "cfs-store: missing command\n");
		print_help(stderr);
		return EXIT_MISUSE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int first = optind, n;

			n = take_globals_after(&g, &commands[i], argc - first, argv + first);
			if (n < 0)
				return -n;
			cfs_log_set_level(g.level);
			optind = 0; /* reset getopt for the command's own parsing */
			return commands[i].run(n, argv + first);
		}
	}
	fprintf(stderr, "cfs-store: unknown command '%s'\n", argv[optind]);
	print_help(stderr);
	return EXIT_MISUSE;
}
