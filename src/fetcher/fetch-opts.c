/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch-client option table and its parser, help printer and file checks. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "fetcher/fetch-opts.h"

#define HOUR_MS ((uint64_t)3600000)

enum kind {
	K_SERVER, /* repeatable string */
	K_COUNT,  /* decimal integer */
	K_MS,     /* duration kept in milliseconds */
	K_SECS,   /* duration kept in whole seconds */
	K_SIZE,   /* size in bytes */
	K_FILE,   /* path */
	K_SET,    /* flag: true */
	K_CLEAR,  /* flag: false */
};

struct opt_def {
	const char *name; /* the long option, without a front end's prefix */
	const char *arg;  /* the value's name in the help, NULL for a flag */
	enum kind kind;
	uint64_t min, max; /* of the parsed value: a count, milliseconds or bytes */
	bool show_default;
	const char *help; /* '\n' continues at the help column */
};

static const struct opt_def defs[CFS_FETCH_OPT_COUNT] = {
    [CFS_FETCH_OPT_SERVER] = {"server", "URL", K_SERVER, 0, 0, false,
                              "base URL of an object server, repeatable, tried in order"},
    [CFS_FETCH_OPT_MAX_TRANSFERS] = {"max-transfers", "N", K_COUNT, 1, 1000000, true,
                                     "concurrent transfers"},
    [CFS_FETCH_OPT_PER_SERVER] = {"per-server", "N", K_COUNT, 1, 1000000, true,
                                  "concurrent transfers per server"},
    [CFS_FETCH_OPT_RETRIES] = {"retries", "N", K_COUNT, 0, 100, true, "extra attempts per server"},
    [CFS_FETCH_OPT_CONNECT_TIMEOUT] = {"connect-timeout", "DURATION", K_MS, 1, HOUR_MS, true,
                                       "per connection attempt"},
    [CFS_FETCH_OPT_LOW_SPEED_TIME] = {"low-speed-time", "DURATION", K_SECS, 1000, HOUR_MS, true,
                                      "abort transfers below 1 KiB/s this long"},
    [CFS_FETCH_OPT_COMMIT_DELAY] = {"commit-delay", "DURATION", K_MS, 0, HOUR_MS, false,
                                    "group-commit window before objects get their store names\n"
                                    "(default 1s with hand-off, widened while flushes are\n"
                                    "slow; else 2ms)"},
    [CFS_FETCH_OPT_MAX_OBJECT_SIZE] = {"max-object-size", "SIZE", K_SIZE, 1, UINT64_MAX, true,
                                       "abort a body (decoded) larger than SIZE"},
    [CFS_FETCH_OPT_TOKEN_FILE] = {"token-file", "FILE", K_FILE, 0, 0, false,
                                  "send 'Authorization: Bearer <file contents>'"},
    [CFS_FETCH_OPT_CA_FILE] = {"ca-file", "FILE", K_FILE, 0, 0, false,
                               "CA certificates for HTTPS servers"},
    [CFS_FETCH_OPT_CERT] = {"cert", "FILE", K_FILE, 0, 0, false, "client certificate (PEM)"},
    [CFS_FETCH_OPT_KEY] = {"key", "FILE", K_FILE, 0, 0, false, "client private key (PEM)"},
    [CFS_FETCH_OPT_INSECURE] = {"insecure", NULL, K_SET, 0, 0, false,
                                "do not verify TLS peers (testing only)"},
    [CFS_FETCH_OPT_NO_ZSTD] = {"no-zstd", NULL, K_CLEAR, 0, 0, false,
                               "do not ask for zstd-encoded bodies"},
};

void cfs_fetch_opts_init(struct cfs_fetch_opts *fo)
{
	memset(fo, 0, sizeof(*fo));
	cfs_fetch_options_init(&fo->o);
	fo->o.servers = (const char *const *)fo->servers;
}

void cfs_fetch_opts_free(struct cfs_fetch_opts *fo)
{
	for (size_t i = 0; i < fo->n_servers; i++)
		free(fo->servers[i]);
	for (size_t i = 0; i < CFS_ARRAY_SIZE(fo->files); i++)
		free(fo->files[i]);
	memset(fo, 0, sizeof(*fo));
}

bool cfs_fetch_opts_has_arg(enum cfs_fetch_opt_id id)
{
	return defs[id].arg != NULL;
}

int cfs_fetch_opts_lookup(unsigned mask, const char *name, size_t len)
{
	for (int id = 0; id < CFS_FETCH_OPT_COUNT; id++) {
		const char *n = defs[id].name;
		size_t i;

		if (!(mask & (1u << id)) || strlen(n) != len)
			continue;
		for (i = 0; i < len; i++)
			if (n[i] != name[i] && !(n[i] == '-' && name[i] == '_'))
				break;
		if (i == len)
			return id;
	}
	return -ENOENT;
}

/* "5s", "2ms", "1h": the shortest exact spelling. */
static void format_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms && ms % HOUR_MS == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / HOUR_MS);
	else if (ms && ms % 60000 == 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
	else if (ms && ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static void format_bytes(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && b && b % 1024 == 0) {
		b /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, b);
	else
		snprintf(buf, len, "%" PRIu64 "%c", b, units[u]);
}

static void format_range(const struct opt_def *d, char *buf, size_t len)
{
	char lo[24], hi[24];

	if (d->kind == K_COUNT) {
		snprintf(buf, len, "%" PRIu64 " to %" PRIu64, d->min, d->max);
		return;
	}
	if (d->kind == K_SIZE) {
		format_bytes(d->min, lo, sizeof(lo));
		snprintf(buf, len, "at least %s", lo);
		return;
	}
	format_ms(d->min, lo, sizeof(lo));
	format_ms(d->max, hi, sizeof(hi));
	snprintf(buf, len, "%s to %s", lo, hi);
}

static int parse_count(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || s[0] == ' ')
		return -EINVAL;
	*v = x;
	return 0;
}

/* Parses and range-checks @value for @d: 0, or -EINVAL with the message in @err. */
static int parse_value(const struct opt_def *d, const char *value, const char *name, uint64_t *v,
                       char err[CFS_FETCH_OPTS_ERR_LEN])
{
	char range[64];
	int r;

	r = d->kind == K_COUNT  ? parse_count(value, v)
	    : d->kind == K_SIZE ? cfs_parse_size(value, v)
	                        : cfs_parse_duration_ms(value, v);
	if (r == 0 && *v >= d->min && *v <= d->max)
		return 0;
	format_range(d, range, sizeof(range));
	snprintf(err, CFS_FETCH_OPTS_ERR_LEN, "bad %.40s '%.60s' (%s)", name, value, range);
	return -EINVAL;
}

static int set_file(struct cfs_fetch_opts *fo, enum cfs_fetch_opt_id id, const char *value)
{
	size_t slot = (size_t)(id - CFS_FETCH_OPT_TOKEN_FILE);
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(fo->files[slot]);
	fo->files[slot] = copy;
	switch (id) {
	case CFS_FETCH_OPT_TOKEN_FILE:
		fo->o.token_file = copy;
		break;
	case CFS_FETCH_OPT_CA_FILE:
		fo->o.ca_file = copy;
		break;
	case CFS_FETCH_OPT_CERT:
		fo->o.client_cert = copy;
		break;
	default:
		fo->o.client_key = copy;
		break;
	}
	return 0;
}

static int add_server(struct cfs_fetch_opts *fo, const char *url, char err[CFS_FETCH_OPTS_ERR_LEN])
{
	if (fo->n_servers == CFS_FETCH_OPTS_MAX_SERVERS) {
		snprintf(err, CFS_FETCH_OPTS_ERR_LEN, "at most %d servers",
		         CFS_FETCH_OPTS_MAX_SERVERS);
		return -EINVAL;
	}
	fo->servers[fo->n_servers] = strdup(url);
	if (!fo->servers[fo->n_servers])
		return -ENOMEM;
	fo->n_servers++;
	fo->o.servers = (const char *const *)fo->servers;
	fo->o.n_servers = fo->n_servers;
	return 0;
}

/* Stores a parsed number where the engine reads it. */
static void set_number(struct cfs_fetch_options *o, enum cfs_fetch_opt_id id, uint64_t v)
{
	switch (id) {
	case CFS_FETCH_OPT_MAX_TRANSFERS:
		o->max_transfers = (unsigned)v;
		break;
	case CFS_FETCH_OPT_PER_SERVER:
		o->max_per_server = (unsigned)v;
		break;
	case CFS_FETCH_OPT_RETRIES:
		o->retries = (unsigned)v;
		break;
	case CFS_FETCH_OPT_CONNECT_TIMEOUT:
		o->connect_timeout_ms = (unsigned)v;
		break;
	case CFS_FETCH_OPT_LOW_SPEED_TIME:
		o->low_speed_secs = (unsigned)(v / 1000);
		break;
	case CFS_FETCH_OPT_COMMIT_DELAY:
		o->commit_delay_ms = (unsigned)v;
		break;
	case CFS_FETCH_OPT_MAX_OBJECT_SIZE:
		o->max_object_size = v;
		break;
	default:
		break;
	}
}

int cfs_fetch_opts_set(struct cfs_fetch_opts *fo, enum cfs_fetch_opt_id id, const char *value,
                       char err[CFS_FETCH_OPTS_ERR_LEN])
{
	return cfs_fetch_opts_set_as(fo, id, value, NULL, err);
}

int cfs_fetch_opts_set_as(struct cfs_fetch_opts *fo, enum cfs_fetch_opt_id id, const char *value,
                          const char *name, char err[CFS_FETCH_OPTS_ERR_LEN])
{
	const struct opt_def *d;
	char spelt[48];
	uint64_t v = 0;
	int r = 0;

	err[0] = '\0';
	if ((unsigned)id >= CFS_FETCH_OPT_COUNT)
		return -EINVAL;
	d = &defs[id];
	if (!name) {
		snprintf(spelt, sizeof(spelt), "--%s", d->name);
		name = spelt;
	}
	if (d->arg && !value) {
		snprintf(err, CFS_FETCH_OPTS_ERR_LEN, "%s needs a value", name);
		return -EINVAL;
	}
	switch (d->kind) {
	case K_SERVER:
		r = add_server(fo, value, err);
		break;
	case K_FILE:
		r = set_file(fo, id, value);
		break;
	case K_SET:
		fo->o.insecure = true;
		break;
	case K_CLEAR:
		fo->o.accept_zstd = false;
		break;
	default:
		r = parse_value(d, value, name, &v, err);
		if (r == 0)
			set_number(&fo->o, id, v);
		break;
	}
	if (r == 0)
		fo->given |= 1u << id;
	return r;
}

void cfs_fetch_opts_getopt(struct cfs_fetch_opts_getopt *g, unsigned mask, const char *prefix,
                           int base)
{
	g->n = 0;
	for (int id = 0; id < CFS_FETCH_OPT_COUNT; id++) {
		if (!(mask & (1u << id)))
			continue;
		snprintf(g->names[g->n], sizeof(g->names[g->n]), "%s%s", prefix ? prefix : "",
		         defs[id].name);
		g->opts[g->n] =
		    (struct option){g->names[g->n], defs[id].arg ? required_argument : no_argument,
		                    NULL, base + id};
		g->n++;
	}
}

size_t cfs_fetch_opts_getopt_append(const struct cfs_fetch_opts_getopt *g, struct option *opts,
                                    size_t n)
{
	memcpy(opts + n, g->opts, g->n * sizeof(*opts));
	n += g->n;
	opts[n] = (struct option){NULL, 0, NULL, 0};
	return n;
}

/* The default of @id as the help shows it, or "" for none. */
static void format_default(enum cfs_fetch_opt_id id, const struct cfs_fetch_options *o, char *buf,
                           size_t len)
{
	buf[0] = '\0';
	switch (id) {
	case CFS_FETCH_OPT_MAX_TRANSFERS:
		snprintf(buf, len, "%u", o->max_transfers);
		break;
	case CFS_FETCH_OPT_PER_SERVER:
		snprintf(buf, len, "%u", o->max_per_server);
		break;
	case CFS_FETCH_OPT_RETRIES:
		snprintf(buf, len, "%u", o->retries);
		break;
	case CFS_FETCH_OPT_CONNECT_TIMEOUT:
		format_ms(o->connect_timeout_ms, buf, len);
		break;
	case CFS_FETCH_OPT_LOW_SPEED_TIME:
		format_ms(o->low_speed_secs * 1000ULL, buf, len);
		break;
	case CFS_FETCH_OPT_MAX_OBJECT_SIZE:
		format_bytes(o->max_object_size, buf, len);
		break;
	default:
		break;
	}
}

void cfs_fetch_opts_print_help(FILE *f, unsigned mask, const char *prefix, const char *shorts,
                               int column)
{
	struct cfs_fetch_opts defaults;

	cfs_fetch_opts_init(&defaults);
	for (int id = 0; id < CFS_FETCH_OPT_COUNT; id++) {
		const struct opt_def *d = &defs[id];
		char head[96], def[24];
		const char *h;
		int len;

		if (!(mask & (1u << id)))
			continue;
		if (shorts && shorts[id])
			len = snprintf(head, sizeof(head), "  -%c, --%s%s%s%s", shorts[id],
			               prefix ? prefix : "", d->name, d->arg ? " " : "",
			               d->arg ? d->arg : "");
		else
			len = snprintf(head, sizeof(head), "  %s--%s%s%s%s", shorts ? "    " : "",
			               prefix ? prefix : "", d->name, d->arg ? " " : "",
			               d->arg ? d->arg : "");
		/* Too long a head puts its text on the next line. */
		if (len >= column)
			fprintf(f, "%s\n%*s", head, column, "");
		else
			fprintf(f, "%-*s", column, head);
		for (h = d->help; strchr(h, '\n'); h = strchr(h, '\n') + 1)
			fprintf(f, "%.*s\n%*s", (int)(strchr(h, '\n') - h), h, column, "");
		format_default((enum cfs_fetch_opt_id)id, &defaults.o, def, sizeof(def));
		if (d->show_default && def[0])
			fprintf(f, "%s (default %s)\n", h, def);
		else
			fprintf(f, "%s\n", h);
	}
	cfs_fetch_opts_free(&defaults);
}

int cfs_fetch_opts_check_files(const struct cfs_fetch_options *o, char *err, size_t err_len)
{
	const char *const files[] = {o->ca_file, o->client_cert, o->client_key};
	const char *const names[] = {"--ca-file", "--cert", "--key"};
	char *token = NULL;
	int r;

	if (o->token_file) {
		r = cfs_fetch_token_read(o->token_file, &token);
		if (r == -EINVAL) {
			snprintf(err, err_len, "token file %s must hold one non-empty line",
			         o->token_file);
			return r;
		}
		if (r < 0) {
			snprintf(err, err_len, "cannot read token file %s: %s", o->token_file,
			         strerror(-r));
			return r;
		}
		explicit_bzero(token, strlen(token));
		free(token);
	}
	for (size_t i = 0; i < CFS_ARRAY_SIZE(files); i++) {
		if (files[i] && access(files[i], R_OK) < 0) {
			r = -errno;
			snprintf(err, err_len, "cannot read %s %s: %s", names[i], files[i],
			         strerror(-r));
			return r;
		}
	}
	return 0;
}
