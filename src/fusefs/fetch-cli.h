/* SPDX-License-Identifier: MIT */
/* cfscache: what `cfs-cache fetch` and `cfs-cache prefetch` share: the client options (through
 * fetcher/fetch-opts.h) with -q, -v and -V, and the tally of their fetches. */
#ifndef CFS_FUSEFS_FETCH_CLI_H
#define CFS_FUSEFS_FETCH_CLI_H

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"
#include "common/progress.h"
#include "fetcher/fetch.h"
#include "fetcher/fetch-opts.h"

/* getopt values of the shared options: FETCH_CLI_BASE + the option's id. */
#define FETCH_CLI_BASE 0x400
/* Room in a command's getopt table for its own entries. */
#define FETCH_CLI_MAX_OWN 24

struct fetch_cli {
	struct cfs_fetch_opts fo; /* defaults, then what the options said */
	unsigned mask;            /* the client options this command takes */
	bool quiet;               /* -q */
	enum cfs_log_level level; /* notice, err with -q, one step more per -v */
	struct cfs_fetch_opts_getopt g;
	struct option longopts[FETCH_CLI_MAX_OWN + CFS_FETCH_OPT_COUNT + 1];
};

/* Starts with the defaults; @mask: CFS_FETCH_OPT() bits of the client options taken. */
void cfs_cli_init(struct fetch_cli *cli, unsigned mask);
void cfs_cli_free(struct fetch_cli *cli);
/* The getopt_long table: the command's @own entries (at most FETCH_CLI_MAX_OWN, no end
 * marker), then the client options ('S' = --server, 'k' = --insecure). */
const struct option *cfs_cli_longopts(struct fetch_cli *cli, const struct option *own,
                                      size_t n_own);
/* The client options' help lines. */
void cfs_cli_print_help(const struct fetch_cli *cli, FILE *f);
/* Applies option @c if it is one of the shared ones (these, -q, -v and -V). Returns 1 when it
 * was, FETCH_CLI_DONE after -V printed the version (exit 0), 0 when it is not shared, -EINVAL
 * after printing "cfs-cache CMD: bad ..." for a bad value, or -ENOMEM. */
#define FETCH_CLI_DONE 2
int cfs_cli_option(struct fetch_cli *cli, int c, const char *arg, const char *cmd);
/* Sets client option @id as cfs_cli_option does; a bad value is named @name (a command's own
 * spelling, e.g. "--jobs"), or by the option's name when NULL. */
int cfs_cli_set(struct fetch_cli *cli, enum cfs_fetch_opt_id id, const char *arg, const char *name,
                const char *cmd);
/* Checks the token and TLS files before any transfer: 0, or -errno after saying why. */
int cfs_cli_check_files(const struct fetch_cli *cli);
/* Says "cfs-cache CMD: WHAT 'ARG'" (ARG may be NULL) and where help is: CFS_EXIT_MISUSE. */
int cfs_cli_usage_error(const char *cmd, const char *what, const char *arg);

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
/* After the run: how many more objects were refused like the first one (nothing if none). */
void cfs_tally_report(struct fetch_tally *t, const char *cmd);
/* Waits (with @lock held) until @done reaches @wake_at or @ms pass, then feeds the progress bar
 * what completed meanwhile. Completions signal only the one the waiter asked for: a bulk fetch
 * does not wake the command's thread once per object. */
void cfs_tally_wait(struct fetch_tally *t, struct cfs_progress *progress, size_t wake_at,
                    unsigned ms);
/* Submits @digest with the tally as its callback's userdata (@lock not held); a refused
 * submission is said and counted as a failure at once. */
void cfs_tally_submit(struct fetch_tally *t, struct cfs_fetch *f,
                      const uint8_t digest[CFS_DIGEST_SIZE]);
/* Waits (@lock not held) until @n objects are done, feeding the progress bar, and ends it. */
void cfs_tally_finish(struct fetch_tally *t, struct cfs_progress *progress, size_t n);
/* The bytes fetched and their rate over the run, for a summary line. */
void cfs_tally_format(const struct fetch_tally *t, const struct cfs_progress *progress,
                      char size[32], char rate[32], double *secs_ret);

#endif
