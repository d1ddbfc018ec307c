/* SPDX-License-Identifier: MIT */
/* cfscache: command-line options of the fetch engine shared by `cfs-cache fetch` and
 * `cfs-cache prefetch` (servers, retries, timeouts, TLS, token, zstd). */
#ifndef CFS_FUSEFS_FETCH_CLI_H
#define CFS_FUSEFS_FETCH_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/log.h"
#include "fetcher/fetch.h"

enum {
	FETCH_CLI_RETRIES = 0x400,
	FETCH_CLI_CONNECT_TIMEOUT,
	FETCH_CLI_TOKEN_FILE,
	FETCH_CLI_CA_FILE,
	FETCH_CLI_CERT,
	FETCH_CLI_KEY,
	FETCH_CLI_NO_ZSTD,
};

/* Entries for a command's getopt_long table ('S' = --server, 'k' = --insecure). */
#define FETCH_CLI_LONG_OPTIONS                                                                     \
	{"server", required_argument, NULL, 'S'},                                                  \
	    {"retries", required_argument, NULL, FETCH_CLI_RETRIES},                               \
	    {"connect-timeout", required_argument, NULL, FETCH_CLI_CONNECT_TIMEOUT},               \
	    {"token-file", required_argument, NULL, FETCH_CLI_TOKEN_FILE},                         \
	    {"ca-file", required_argument, NULL, FETCH_CLI_CA_FILE},                               \
	    {"cert", required_argument, NULL, FETCH_CLI_CERT},                                     \
	    {"key", required_argument, NULL, FETCH_CLI_KEY}, {"insecure", no_argument, NULL, 'k'}, \
	{                                                                                          \
		"no-zstd", no_argument, NULL, FETCH_CLI_NO_ZSTD                                    \
	}

struct fetch_cli {
	struct cfs_fetch_options o; /* defaults, then what the options said */
	const char **servers;       /* --server values, in order (point into argv) */
	size_t n_servers;
	bool quiet;                 /* -q */
	enum cfs_log_level level;   /* notice, err with -q, one step more per -v */
};

void fetch_cli_init(struct fetch_cli *cli);
void fetch_cli_free(struct fetch_cli *cli);
/* Applies option @c if it is one of the shared ones (these, -q, -v and -V). Returns 1 when it
 * was, FETCH_CLI_DONE after -V printed the version (exit 0), 0 when it is not shared, -EINVAL
 * after printing "cfs-cache CMD: bad ..." for a bad value, or -ENOMEM. */
#define FETCH_CLI_DONE 2
int fetch_cli_option(struct fetch_cli *cli, int c, const char *arg, const char *cmd);
/* Parses a transfer count (1..1000000) for --jobs and friends. Returns 0 or -EINVAL. */
int fetch_cli_parse_count(const char *s, unsigned *v);
/* Raises the soft limit on open files: many objects may wait for one shared flush. */
void fetch_cli_raise_nofile(void);

#endif
