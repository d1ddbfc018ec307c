/* SPDX-License-Identifier: MIT */
/* cfscache: command-line options of the fetch engine shared by `cfs-cache fetch` and
 * `cfs-cache prefetch` (servers, retries, timeouts, TLS, token, zstd). */
#ifndef CFS_FUSEFS_FETCH_CLI_H
#define CFS_FUSEFS_FETCH_CLI_H

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/progress.h"
#include "fetcher/fetch.h"

enum {
	FETCH_CLI_RETRIES = 0x400,
	FETCH_CLI_CONNECT_TIMEOUT,
	FETCH_CLI_TOKEN_FILE,
	FETCH_CLI_CA_FILE,
	FETCH_CLI_CERT,
	FETCH_CLI_KEY,
	FETCH_CLI_NO_ZSTD,
	FETCH_CLI_MAX_OBJECT_SIZE,
};

/* Objects larger than this abort their transfer, whatever the encoding made of them. */
#define FETCH_CLI_DEFAULT_MAX_OBJECT_SIZE (4ULL << 30)

/* Entries for a command's getopt_long table ('S' = --server, 'k' = --insecure). */
#define FETCH_CLI_LONG_OPTIONS                                                                     \
	{"server", required_argument, NULL, 'S'},                                                  \
	    {"retries", required_argument, NULL, FETCH_CLI_RETRIES},                               \
	    {"connect-timeout", required_argument, NULL, FETCH_CLI_CONNECT_TIMEOUT},               \
	    {"token-file", required_argument, NULL, FETCH_CLI_TOKEN_FILE},                         \
	    {"ca-file", required_argument, NULL, FETCH_CLI_CA_FILE},                               \
	    {"cert", required_argument, NULL, FETCH_CLI_CERT},                                     \
	    {"key", required_argument, NULL, FETCH_CLI_KEY}, {"insecure", no_argument, NULL, 'k'}, \
	    {"max-object-size", required_argument, NULL, FETCH_CLI_MAX_OBJECT_SIZE},               \
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

void cfs_cli_init(struct fetch_cli *cli);
void cfs_cli_free(struct fetch_cli *cli);
/* Applies option @c if it is one of the shared ones (these, -q, -v and -V). Returns 1 when it
 * was, FETCH_CLI_DONE after -V printed the version (exit 0), 0 when it is not shared, -EINVAL
 * after printing "cfs-cache CMD: bad ..." for a bad value, or -ENOMEM. */
#define FETCH_CLI_DONE 2
int cfs_cli_option(struct fetch_cli *cli, int c, const char *arg, const char *cmd);
/* Parses a transfer count (1..1000000) for --jobs and friends. Returns 0 or -EINVAL. */
int cfs_cli_parse_count(const char *s, unsigned *v);
/* Raises the soft limit on open files: many objects may wait for one shared flush. */
void cfs_cli_raise_nofile(void);

/* What a command's fetches came to, counted by the engine's callbacks (cfs_tally_cb, with
 * the tally as userdata) and read by the command's thread under @lock. */
struct fetch_tally {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t done;
	uint64_t fetched, fetched_bytes, present, missing, failed;
	uint64_t bytes_pending; /* for the progress bar, consumed by cfs_tally_wait */
	size_t items_pending;
	size_t wake_at; /* the waiter wants a signal once done reaches this */
	/* Refusals (HTTP 401/403) are said once, with what to do, then only counted. */
	const char *token_file; /* the command's --token-file, for that advice */
	uint64_t refused;
};

#define FETCH_TALLY_INIT                                                                           \
	{                                                                                          \
		.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,               \
		.wake_at = SIZE_MAX                                                                \
	}
/* The cfs_fetch callback: logs a failure with the object's name and counts the result. */
void cfs_tally_cb(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                    const struct cfs_fetch_result *info, void *userdata);
/* Waits (with @lock held) until @done reaches @wake_at or @ms pass, then feeds the progress bar
 * what completed meanwhile. Completions signal only the one the waiter asked for: a bulk fetch
 * does not wake the command's thread once per object. */
/* After the run: how many more objects were refused like the first one (nothing if none). */
void cfs_tally_report(struct fetch_tally *t, const char *cmd);
void cfs_tally_wait(struct fetch_tally *t, struct cfs_progress *progress, size_t wake_at,
                      unsigned ms);

#endif
