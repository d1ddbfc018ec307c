/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch-client options every front end shares (cfs-cache's mount, fetch and
 * prefetch, cfs-serve --upstream, cfs-store push): one table of names, limits, defaults and help,
 * parsed from getopt_long or from mount's -o name=value, and the token and TLS file checks. */
#ifndef CFS_FETCH_OPTS_H
#define CFS_FETCH_OPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "fetcher/fetch.h"

enum cfs_fetch_opt_id {
	CFS_FETCH_OPT_SERVER,
	CFS_FETCH_OPT_MAX_TRANSFERS,
	CFS_FETCH_OPT_PER_SERVER,
	CFS_FETCH_OPT_RETRIES,
	CFS_FETCH_OPT_CONNECT_TIMEOUT,
	CFS_FETCH_OPT_LOW_SPEED_TIME,
	CFS_FETCH_OPT_COMMIT_DELAY,
	CFS_FETCH_OPT_MAX_OBJECT_SIZE,
	CFS_FETCH_OPT_TOKEN_FILE,
	CFS_FETCH_OPT_CA_FILE,
	CFS_FETCH_OPT_CERT,
	CFS_FETCH_OPT_KEY,
	CFS_FETCH_OPT_INSECURE,
	CFS_FETCH_OPT_NO_ZSTD,
	CFS_FETCH_OPT_COUNT
};

/* A set of options, for the front ends that take only some. */
#define CFS_FETCH_OPT(id) (1u << (CFS_FETCH_OPT_##id))
#define CFS_FETCH_OPT_TLS                                                                          \
	(CFS_FETCH_OPT(TOKEN_FILE) | CFS_FETCH_OPT(CA_FILE) | CFS_FETCH_OPT(CERT) |                \
	 CFS_FETCH_OPT(KEY) | CFS_FETCH_OPT(INSECURE))

/* At most this many servers (the engine's limit). */
#define CFS_FETCH_OPTS_MAX_SERVERS 64
/* The longest error message the parser writes. */
#define CFS_FETCH_OPTS_ERR_LEN 256

/* The client's options: the engine's, with every string owned here. */
struct cfs_fetch_opts {
	struct cfs_fetch_options o; /* o.servers points at the list below */
	unsigned given;             /* CFS_FETCH_OPT() bits of the options set */
	char *servers[CFS_FETCH_OPTS_MAX_SERVERS];
	size_t n_servers;
	char *files[4]; /* token, CA, cert, key */
};

/* The client defaults: the engine's (cfs_fetch_options_init). Free with cfs_fetch_opts_free. */
void cfs_fetch_opts_init(struct cfs_fetch_opts *fo);
void cfs_fetch_opts_free(struct cfs_fetch_opts *fo);

/* Sets option @id from @value (NULL for a flag; a server is added). Returns 0, -ENOMEM, or
 * -EINVAL with a message naming the option (e.g. "bad --retries 'x' (0 to 100)") in @err. */
int cfs_fetch_opts_set(struct cfs_fetch_opts *fo, enum cfs_fetch_opt_id id, const char *value,
                       char err[CFS_FETCH_OPTS_ERR_LEN]);
/* The same, with the option spelt @name in the message (a front end's alias: "--jobs"). */
int cfs_fetch_opts_set_as(struct cfs_fetch_opts *fo, enum cfs_fetch_opt_id id, const char *value,
                          const char *name, char err[CFS_FETCH_OPTS_ERR_LEN]);
/* The option of @mask spelt @name (@len bytes; '_' may stand for '-'), or -ENOENT. */
int cfs_fetch_opts_lookup(unsigned mask, const char *name, size_t len);
/* Whether option @id takes a value. */
bool cfs_fetch_opts_has_arg(enum cfs_fetch_opt_id id);

/* getopt_long entries for the options of @mask, named @prefix + name, each returning
 * @base + its id. */
struct cfs_fetch_opts_getopt {
	struct option opts[CFS_FETCH_OPT_COUNT];
	char names[CFS_FETCH_OPT_COUNT][48];
	size_t n;
};
void cfs_fetch_opts_getopt(struct cfs_fetch_opts_getopt *g, unsigned mask, const char *prefix,
                           int base);
/* Copies the entries after the @n of @opts (which has room) and ends the table: the new n. */
size_t cfs_fetch_opts_getopt_append(const struct cfs_fetch_opts_getopt *g, struct option *opts,
                                    size_t n);

/* Help lines for the options of @mask: "  -S, --server URL   text (default ...)", the text at
 * @column. @shorts (indexed by id, 0 for none) gives short letters, or NULL. */
void cfs_fetch_opts_print_help(FILE *f, unsigned mask, const char *prefix, const char *shorts,
                               int column);

/* Checks before any transfer that the token file is one line and the TLS files are readable.
 * Returns 0 or -errno with the reason in @err. */
int cfs_fetch_opts_check_files(const struct cfs_fetch_options *o, char *err, size_t err_len);

#endif
