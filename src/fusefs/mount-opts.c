/* SPDX-License-Identifier: MIT */
/* cfscache: the mount daemon's option parser: its own table and the client options' one
 * (fetcher/fetch-opts.h) serve getopt_long (--name VALUE) and mount.fuse3's -o name=value (with
 * '-' or '_'); FUSE and mount options go on to libfuse. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fusefs/mount-opts.h"

enum kind { K_VALUE, K_FLAG, K_PIN };

struct daemon_opt {
	const char *name; /* the long option; -o takes it with '_' for '-' too */
	enum kind kind;
	size_t off; /* of the char * (K_VALUE) or int (K_FLAG) in struct mount_opts */
};

#define VAL(n, f)                                                                                  \
	{                                                                                          \
		n, K_VALUE, offsetof(struct mount_opts, f)                                         \
	}
#define FLAG(n, f)                                                                                 \
	{                                                                                          \
		n, K_FLAG, offsetof(struct mount_opts, f)                                          \
	}
static const struct daemon_opt daemon_opts[] = {
    VAL("store", store),
    VAL("trace", trace),
    VAL("log-level", log_level),
    VAL("log-file", log_file),
    VAL("timeout", timeout),
    VAL("max-size", max_size),
    VAL("low-water", low_water),
    {"pin", K_PIN, 0},
    VAL("rescan", rescan),
    VAL("handoff", handoff),
    VAL("negative-timeout", negative_timeout),
    VAL("metrics-file", metrics_file),
    VAL("metrics-interval", metrics_interval),
    FLAG("no-passthrough", no_passthrough),
    FLAG("passthrough", passthrough),
    FLAG("no-handoff", no_handoff),
    FLAG("supervise", supervise),
    FLAG("syslog", use_syslog),
};
#define N_DAEMON_OPTS CFS_ARRAY_SIZE(daemon_opts)
#define LONG_BASE 0x1000
/* getopt values of the client options: FETCH_BASE + their id. */
#define FETCH_BASE 0x2000

/* Options libfuse (and the kernel through it) takes after -o; mount flags included. */
static const char *const fuse_names[] = {
    "allow_other",  "allow_root",
    "auto_unmount", "default_permissions",
    "fsname",       "subtype",
    "max_read",     "blkdev",
    "blksize",      "context",
    "fscontext",    "defcontext",
    "rootcontext",  "rw",
    "ro",           "suid",
    "nosuid",       "dev",
    "nodev",        "exec",
    "noexec",       "async",
    "sync",         "dirsync",
    "atime",        "noatime",
    "diratime",     "nodiratime",
    "relatime",     "norelatime",
    "strictatime",  "nostrictatime",
    "lazytime",     "nolazytime",
    "debug",        "clone_fd",
    "max_threads",  "max_idle_threads",
    "rootmode",     "user_id",
    "group_id",     "fd",
};
/* Options mount(8) and mount.fuse3 act on themselves; ignored if they reach us. */
static const char *const ignored_names[] = {
    "_netdev", "nofail", "user", "auto", "noauto", "nouser", "users", "defaults", "owner", "group",
};

static bool in_list(const char *const *list, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(list[i]) == len && strncmp(list[i], name, len) == 0)
			return true;
	return false;
}

static int __attribute__((format(printf, 1, 2))) misuse(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "cfs-cache: %s\nTry 'cfs-cache --help'.\n", msg);
	return -EINVAL;
}

static int set_string(char **field, const char *value)
{
	char *v = strdup(value);

	if (!v)
		return -ENOMEM;
	free(*field);
	*field = v;
	return 0;
}

static int apply(struct mount_opts *mo, const struct daemon_opt *o, const char *value)
{
	char *base = (char *)mo;

	switch (o->kind) {
	case K_VALUE:
		return set_string((char **)(base + o->off), value);
	case K_FLAG:
		*(int *)(base + o->off) = 1;
		return 0;
	case K_PIN:
		if (mo->n_pins == MOUNT_MAX_PINS)
			return misuse("at most %d --pin options", MOUNT_MAX_PINS);
		mo->pins[mo->n_pins] = strdup(value);
		return mo->pins[mo->n_pins++] ? 0 : -ENOMEM;
	}
	return -EINVAL;
}

/* A client option: parsed and checked now, misuse naming it if bad. */
static int apply_fetch(struct mount_opts *mo, int id, const char *value)
{
	char err[CFS_FETCH_OPTS_ERR_LEN];
	int r = cfs_fetch_opts_set(&mo->fetch, (enum cfs_fetch_opt_id)id, value, err);

	return r == -EINVAL ? misuse("%s", err) : r;
}

void cfs_mount_opts_print_fetch_help(FILE *f)
{
	cfs_fetch_opts_print_help(f, MOUNT_FETCH_OPTS, NULL, NULL, 26);
}

static int add_fuse_opt(struct mount_opts *mo, const char *opt, size_t len)
{
	size_t have = mo->fuse_opts ? strlen(mo->fuse_opts) : 0;
	char *n = realloc(mo->fuse_opts, have + len + 2);

	if (!n)
		return -ENOMEM;
	if (have)
		n[have++] = ',';
	memcpy(n + have, opt, len);
	n[have + len] = '\0';
	mo->fuse_opts = n;
	return 0;
}

/* One item of -o: ours (name=value or flag, '_' or '-'), FUSE's, mount(8)'s, or misuse. */
static int parse_o_item(struct mount_opts *mo, char *item)
{
	char *eq = strchr(item, '=');
	size_t len = eq ? (size_t)(eq - item) : strlen(item);
	char name[64];
	int id;

	if (len == 0)
		return 0;
	id = cfs_fetch_opts_lookup(MOUNT_FETCH_OPTS, item, len);
	if (id >= 0) {
		bool has_arg = cfs_fetch_opts_has_arg((enum cfs_fetch_opt_id)id);

		if (!has_arg && eq)
			return misuse("-o %s takes no value", item);
		if (has_arg && !eq)
			return misuse("-o %s needs a value (name=VALUE)", item);
		return apply_fetch(mo, id, eq ? eq + 1 : NULL);
	}
	if (len < sizeof(name)) {
		memcpy(name, item, len);
		name[len] = '\0';
		for (char *p = name; *p; p++)
			if (*p == '_')
				*p = '-';
		for (size_t i = 0; i < N_DAEMON_OPTS; i++) {
			const struct daemon_opt *o = &daemon_opts[i];

			if (strcmp(o->name, name) != 0)
				continue;
			if (o->kind == K_FLAG && eq)
				return misuse("-o %s takes no value", item);
			if (o->kind != K_FLAG && !eq)
				return misuse("-o %s needs a value (name=VALUE)", item);
			return apply(mo, o, eq ? eq + 1 : NULL);
		}
	}
	if (in_list(fuse_names, CFS_ARRAY_SIZE(fuse_names), item, len))
		return add_fuse_opt(mo, item, strlen(item));
	if (in_list(ignored_names, CFS_ARRAY_SIZE(ignored_names), item, len) ||
	    strncmp(item, "x-", 2) == 0 || strncmp(item, "comment=", 8) == 0)
		return 0;
	return misuse("unknown mount option '-o %s'", item);
}

static int parse_o(struct mount_opts *mo, const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	int r = copy ? 0 : -ENOMEM;

	for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item && r == 0;
	     item = strtok_r(NULL, ",", &save))
		r = parse_o_item(mo, item);
	free(copy);
	return r;
}

int cfs_mount_opts_parse(int argc, char **argv, struct mount_opts *mo)
{
	struct option longopts[N_DAEMON_OPTS + CFS_FETCH_OPT_COUNT + 4];
	struct cfs_fetch_opts_getopt g;
	char *positional[2];
	size_t n_pos = 0, k = 0;
	int c, r;

	memset(mo, 0, sizeof(*mo));
	cfs_fetch_opts_init(&mo->fetch);
	for (size_t i = 0; i < N_DAEMON_OPTS; i++)
		longopts[k++] =
		    (struct option){daemon_opts[i].name,
		                    daemon_opts[i].kind == K_FLAG ? no_argument : required_argument,
		                    NULL, (int)(LONG_BASE + i)};
	longopts[k++] = (struct option){"help", no_argument, NULL, 'h'};
	longopts[k++] = (struct option){"version", no_argument, NULL, 'V'};
	longopts[k++] = (struct option){"verbose", no_argument, NULL, 'v'};
	cfs_fetch_opts_getopt(&g, MOUNT_FETCH_OPTS, NULL, FETCH_BASE);
	cfs_fetch_opts_getopt_append(&g, longopts, k);
	optind = 1;
	opterr = 1; /* getopt names the unknown option itself */
	/* '-' at the front: positional arguments come back in order, wherever they are (mount.fuse3
	 * puts -o after SOURCE MOUNTPOINT). */
	while ((c = getopt_long(argc, argv, "-fdso:hVqv", longopts, NULL)) != -1) {
		r = 0;
		switch (c) {
		case 1:
			if (n_pos == 2)
				return misuse("unexpected argument '%s' (one MOUNTPOINT, or SOURCE "
				              "MOUNTPOINT)",
				              optarg);
			positional[n_pos++] = optarg;
			break;
		case 'f':
			mo->foreground = true;
			break;
		case 'd':
			mo->debug = true;
			break;
		case 's':
			mo->singlethread = true;
			break;
		case 'o':
			r = parse_o(mo, optarg);
			break;
		case 'h':
			mo->show_help = true;
			break;
		case 'V':
			mo->show_version = true;
			break;
		case 'q':
			mo->verbosity -= 2; /* errors only */
			break;
		case 'v':
			mo->verbosity++;
			break;
		default:
			if (c >= FETCH_BASE && c < FETCH_BASE + CFS_FETCH_OPT_COUNT) {
				r = apply_fetch(mo, c - FETCH_BASE, optarg);
				break;
			}
			if (c >= LONG_BASE && c < LONG_BASE + (int)N_DAEMON_OPTS) {
				r = apply(mo, &daemon_opts[c - LONG_BASE], optarg);
				break;
			}
			fprintf(stderr, "Try 'cfs-cache --help'.\n");
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (mo->show_help || mo->show_version)
		return 0;
	if (n_pos == 0)
		return misuse("%s", "expected a MOUNTPOINT");
	if (n_pos == 2 && !(mo->source = strdup(positional[0])))
		return -ENOMEM;
	mo->mountpoint = strdup(positional[n_pos - 1]);
	return mo->mountpoint ? 0 : -ENOMEM;
}

int cfs_mount_opts_log_level(const struct mount_opts *mo, enum cfs_log_level *level_ret)
{
	enum cfs_log_level level = CFS_LOG_NOTICE;
	int l;

	if (mo->log_level && cfs_log_parse_level(mo->log_level, &level) < 0)
		return misuse("bad --log-level '%s' (err, warning, notice, info, debug)",
		              mo->log_level);
	l = (int)level + mo->verbosity;
	*level_ret = (enum cfs_log_level)(l < CFS_LOG_ERR     ? CFS_LOG_ERR
	                                  : l > CFS_LOG_DEBUG ? CFS_LOG_DEBUG
	                                                      : l);
	return 0;
}

void cfs_mount_opts_free(struct mount_opts *mo)
{
	for (size_t i = 0; i < N_DAEMON_OPTS; i++)
		if (daemon_opts[i].kind == K_VALUE)
			free(*(char **)((char *)mo + daemon_opts[i].off));
	cfs_fetch_opts_free(&mo->fetch);
	for (size_t i = 0; i < mo->n_pins; i++)
		free(mo->pins[i]);
	free(mo->fuse_opts);
	free(mo->source);
	free(mo->mountpoint);
}
