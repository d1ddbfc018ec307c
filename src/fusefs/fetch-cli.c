/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch-engine options shared by the fetch and prefetch subcommands. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/name.h"
#include "common/util.h"
#include "fusefs/fetch-cli.h"

void cfs_cli_init(struct fetch_cli *cli)
{
	memset(cli, 0, sizeof(*cli));
	cfs_fetch_options_init(&cli->o);
	cli->o.max_object_size = FETCH_CLI_DEFAULT_MAX_OBJECT_SIZE;
	cli->level = CFS_LOG_NOTICE;
}

void cfs_cli_free(struct fetch_cli *cli)
{
	free(cli->servers);
	cli->servers = NULL;
	cli->n_servers = 0;
}

int cfs_cli_parse_count(const char *s, unsigned *v)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 10);
	if (errno || end == s || *end || x > 1000000 || s[0] == '-')
		return -EINVAL;
	*v = (unsigned)x;
	return 0;
}

static int bad(const char *cmd, const char *what, const char *arg)
{
	fprintf(stderr, "cfs-cache %s: bad %s '%s'\nTry 'cfs-cache %s --help'.\n", cmd, what, arg,
	        cmd);
	return -EINVAL;
}

int cfs_cli_option(struct fetch_cli *cli, int c, const char *arg, const char *cmd)
{
	struct cfs_fetch_options *o = &cli->o;
	uint64_t ms;

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
	case 'S': {
		const char **ns = realloc(cli->servers, (cli->n_servers + 1) * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		cli->servers = ns;
		cli->servers[cli->n_servers++] = arg;
		return 1;
	}
	case FETCH_CLI_RETRIES:
		if (cfs_cli_parse_count(arg, &o->retries) < 0 || o->retries > 100)
			return bad(cmd, "retry count", arg);
		return 1;
	case FETCH_CLI_CONNECT_TIMEOUT:
		if (cfs_parse_duration_ms(arg, &ms) < 0 || ms == 0 || ms > 3600000)
			return bad(cmd, "duration", arg);
		o->connect_timeout_ms = (unsigned)ms;
		return 1;
	case FETCH_CLI_TOKEN_FILE:
		o->token_file = arg;
		return 1;
	case FETCH_CLI_CA_FILE:
		o->ca_file = arg;
		return 1;
	case FETCH_CLI_CERT:
		o->client_cert = arg;
		return 1;
	case FETCH_CLI_KEY:
		o->client_key = arg;
		return 1;
	case 'k':
		o->insecure = true;
		return 1;
	case FETCH_CLI_NO_ZSTD:
		o->accept_zstd = false;
		return 1;
	case FETCH_CLI_MAX_OBJECT_SIZE:
		if (cfs_parse_size(arg, &o->max_object_size) < 0 || o->max_object_size == 0)
			return bad(cmd, "--max-object-size", arg);
		return 1;
	default:
		return 0;
	}
}

void cfs_cli_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
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
			cfs_err("%s refused the request (HTTP %ld): %s; other objects it refuses are "
			        "counted, not listed", info->server ? info->server : "the server",
			        info->http_status,
			        !t->token_file ? "the server requires a token: give --token-file FILE"
			        : info->http_status == 401 ? "the token is not accepted: check --token-file"
			                                   : "the token may lack the right to read these "
			                                     "objects");
	} else if (result < 0) {
		cfs_name_format_path(digest, path);
		if (result == -ENOENT)
			cfs_err("%s: not found on any server", path);
		else
			/* The reason names the error already (errno text or the server's answer). */
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
