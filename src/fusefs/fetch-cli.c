/* SPDX-License-Identifier: MIT */
/* cfscache: the client options, -q, -v and -V of the fetch and prefetch subcommands, and the
 * tally of their fetches. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/name.h"
#include "common/util.h"
#include "fusefs/cmds.h"
#include "fusefs/fetch-cli.h"

static const char cli_shorts[CFS_FETCH_OPT_COUNT] = {
    [CFS_FETCH_OPT_SERVER] = 'S',
    [CFS_FETCH_OPT_INSECURE] = 'k',
};

void cfs_cli_init(struct fetch_cli *cli, unsigned mask)
{
	memset(cli, 0, sizeof(*cli));
	cfs_fetch_opts_init(&cli->fo);
	cli->mask = mask;
	cli->level = CFS_LOG_NOTICE;
}

void cfs_cli_free(struct fetch_cli *cli)
{
	cfs_fetch_opts_free(&cli->fo);
}

const struct option *cfs_cli_longopts(struct fetch_cli *cli, const struct option *own, size_t n_own)
{
	if (n_own > FETCH_CLI_MAX_OWN)
		n_own = FETCH_CLI_MAX_OWN;
	memcpy(cli->longopts, own, n_own * sizeof(*own));
	cfs_fetch_opts_getopt(&cli->g, cli->mask, NULL, FETCH_CLI_BASE);
	cfs_fetch_opts_getopt_append(&cli->g, cli->longopts, n_own);
	return cli->longopts;
}

void cfs_cli_print_help(const struct fetch_cli *cli, FILE *f)
{
	cfs_fetch_opts_print_help(f, cli->mask, NULL, cli_shorts, 29);
}

int cfs_cli_set(struct fetch_cli *cli, enum cfs_fetch_opt_id id, const char *arg, const char *name,
                const char *cmd)
{
	char err[CFS_FETCH_OPTS_ERR_LEN];
	int r = cfs_fetch_opts_set_as(&cli->fo, id, arg, name, err);

	if (r == -EINVAL)
		fprintf(stderr, "cfs-cache %s: %s\nTry 'cfs-cache %s --help'.\n", cmd, err, cmd);
	return r < 0 ? r : 1;
}

int cfs_cli_option(struct fetch_cli *cli, int c, const char *arg, const char *cmd)
{
	switch (c) {
	case 'q':
		cli->quiet = true;
		cli->level = CFS_LOG_ERR;
		return 1;
	case 'v':
		if (cli->level < CFS_LOG_DEBUG)
			cli->level++;
		return 1;
	case 'V':
		printf("cfs-cache (cfscache) %s\n", PACKAGE_VERSION);
		return FETCH_CLI_DONE;
	case 'S':
		return cfs_cli_set(cli, CFS_FETCH_OPT_SERVER, arg, NULL, cmd);
	case 'k':
		return cfs_cli_set(cli, CFS_FETCH_OPT_INSECURE, NULL, NULL, cmd);
	default:
		if (c >= FETCH_CLI_BASE && c < FETCH_CLI_BASE + CFS_FETCH_OPT_COUNT)
			return cfs_cli_set(cli, (enum cfs_fetch_opt_id)(c - FETCH_CLI_BASE), arg,
			                   NULL, cmd);
		return 0;
	}
}

int cfs_cli_check_files(const struct fetch_cli *cli)
{
	char err[512];
	int r = cfs_fetch_opts_check_files(&cli->fo.o, err, sizeof(err));

	if (r < 0)
		cfs_err("%s", err);
	return r;
}

int cfs_cli_usage_error(const char *cmd, const char *what, const char *arg)
{
	fprintf(stderr, "cfs-cache %s: %s%s%s%s\nTry 'cfs-cache %s --help'.\n", cmd, what,
	        arg ? " '" : "", arg ? arg : "", arg ? "'" : "", cmd);
	return CFS_EXIT_MISUSE;
}

void cfs_tally_cb(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                  const struct cfs_fetch_result *info, void *userdata)
{
	struct fetch_tally *t = userdata;
	char path[CFS_NAME_PATH_LEN + 1];
	bool refused = result < 0 && result != -ENOENT &&
	               (info->http_status == 401 || info->http_status == 403);

	if (refused) {
		bool first;

		pthread_mutex_lock(&t->lock);
		first = t->refused++ == 0;
		pthread_mutex_unlock(&t->lock);
		if (first)
			cfs_err(
			    "%s refused the request (HTTP %ld): %s; other objects it refuses are "
			    "counted, not listed",
			    info->server ? info->server : "the server", info->http_status,
			    !t->token_file ? "the server requires a token: give --token-file FILE"
			    : info->http_status == 401
			        ? "the token is not accepted: check --token-file"
			        : "the token may lack the right to read these "
			          "objects");
	} else if (result < 0) {
		cfs_name_format_path(digest, path);
		if (result == -ENOENT)
			cfs_err("%s: not found on any server", path);
		else
			/* The reason names the error already (errno text or the server's answer).
			 */
			cfs_err("%s: %s", path, info->reason ? info->reason : strerror(-result));
	}
	pthread_mutex_lock(&t->lock);
	if (result == 0 && info->fetched) {
		t->fetched++;
		t->fetched_bytes += info->size;
		t->bytes_pending += info->size;
	} else if (result == 0) {
		t->present++; /* a mount on the same store got it first */
	} else if (result == -ENOENT) {
		t->missing++;
	} else {
		t->failed++;
	}
	t->items_pending++;
	t->done++;
	if (t->done >= t->wake_at)
		pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void cfs_tally_report(struct fetch_tally *t, const char *cmd)
{
	if (t->refused > 1)
		cfs_err("%s: %llu objects in all were refused that way", cmd,
		        (unsigned long long)t->refused);
}

void cfs_tally_wait(struct fetch_tally *t, struct cfs_progress *progress, size_t wake_at,
                    unsigned ms)
{
	struct timespec ts;
	uint64_t items, bytes;

	cfs_deadline_ms(&ts, ms);
	t->wake_at = wake_at;
	while (t->done < wake_at && pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT) {
	}
	t->wake_at = SIZE_MAX;
	items = t->items_pending;
	bytes = t->bytes_pending;
	t->items_pending = 0;
	t->bytes_pending = 0;
	pthread_mutex_unlock(&t->lock);
	cfs_progress_add(progress, items, bytes);
	pthread_mutex_lock(&t->lock);
}

void cfs_tally_submit(struct fetch_tally *t, struct cfs_fetch *f,
                      const uint8_t digest[CFS_DIGEST_SIZE])
{
	int r = cfs_fetch_submit(f, digest, 0, cfs_tally_cb, t);

	if (r < 0) {
		cfs_err("cannot submit: %s", strerror(-r));
		pthread_mutex_lock(&t->lock);
		t->failed++;
		t->done++;
		pthread_mutex_unlock(&t->lock);
	}
}

void cfs_tally_finish(struct fetch_tally *t, struct cfs_progress *progress, size_t n)
{
	pthread_mutex_lock(&t->lock);
	while (t->done < n)
		cfs_tally_wait(t, progress, n, 100);
	pthread_mutex_unlock(&t->lock);
	cfs_progress_done(progress);
}

void cfs_tally_format(const struct fetch_tally *t, const struct cfs_progress *progress,
                      char size[32], char rate[32], double *secs_ret)
{
	double secs = cfs_progress_elapsed(progress);

	cfs_format_size(t->fetched_bytes, size, 32);
	cfs_format_size(secs > 0 ? (uint64_t)((double)t->fetched_bytes / secs) : 0, rate, 32);
	*secs_ret = secs;
}
