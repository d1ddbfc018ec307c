/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's pure HTTP helpers: routes, request heads, header values. No I/O. */
#ifndef CFS_SERVER_HTTP_H
#define CFS_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

/* The methods the metrics tell apart. */
enum cfs_http_method { M_GET, M_HEAD, M_PUT, M_OTHER, M_COUNT };

enum cfs_http_route { R_BAD, R_TOO_LONG, R_NOT_FOUND, R_OBJECT, R_HEALTH, R_METRICS };

/* Classifies the raw request target (@len bytes, not NUL-terminated; a query is ignored).
 * Nothing is decoded: an object path is only ever rebuilt from @digest, set for R_OBJECT. */
enum cfs_http_route cfs_http_route(const char *uri, size_t len, size_t max_uri,
                                   uint8_t digest[CFS_DIGEST_SIZE]);

/* Whether an Authorization value (@len bytes, NULL if absent) is "Bearer @token"; a NULL
 * @token (no authentication) lets everything through. Compared in constant time. */
bool cfs_http_token_ok(const char *token, size_t token_len, const char *h, size_t len);

/* Whether an Accept-Encoding value (NULL: absent) lists zstd without q=0. */
bool cfs_http_accepts_zstd(const char *h);

/* Whether an If-None-Match value (NULL: absent) lists @etag (quoted; weak comparison) or "*". */
bool cfs_http_etag_matches(const char *h, const char *etag);

/* A Range value (NULL: absent) against an object of @size bytes. Returns 1 for one satisfiable
 * range (then *@off, *@len), 0 to ignore it and send everything (absent, malformed, several
 * ranges) or -1 when it cannot be satisfied (416). */
int cfs_http_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len);

/* A decimal of exactly @len bytes (a Content-Length). Returns false if it is empty, not all
 * digits or over UINT64_MAX. */
bool cfs_http_parse_length(const char *v, size_t len, uint64_t *out);

/* What a request head says about its method, target and framing. Its pointers point into the
 * parsed bytes. */
struct cfs_http_head {
	const char *method, *target;
	size_t method_len, target_len;
	enum cfs_http_method m;
	const char *auth; /* the first Authorization value, trimmed; NULL if absent */
	size_t auth_len;
	bool have_cl, have_te, chunked;
	uint64_t cl; /* Content-Length */
};

/* Parses a whole request head (@len bytes up to and with its empty line). Returns 0, or the
 * status to refuse it with: 400 for a malformed request line or header line (folded lines,
 * names with separators, conflicting lengths, Content-Length beside Transfer-Encoding), 501
 * for a transfer coding other than chunked. @h is filled as far as parsing went (method and
 * target as soon as the request line has them). */
int cfs_http_parse_head(const char *p, size_t len, struct cfs_http_head *h);

/* Whether @name (@len bytes) is @want, ignoring case. */
bool cfs_http_name_is(const char *name, size_t len, const char *want);

/* The reason phrase of the statuses the gate answers itself; "Error" for others. */
const char *cfs_http_reason(int code);

/* Copies @s (NULL: "") into @out (@outlen >= 1 bytes, always terminated) for a log line:
 * bytes that are not printable ASCII, '"' and '\\' become \xNN. Cut at @outlen. */
void cfs_http_escape(const char *s, char *out, size_t outlen);

#endif
