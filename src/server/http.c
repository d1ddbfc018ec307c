/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's pure HTTP helpers: routes, request heads, header values (see http.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/name.h"
#include "common/util.h"
#include "server/http.h"

enum cfs_http_route cfs_http_route(const char *uri, size_t len, size_t max_uri,
                                   uint8_t digest[CFS_DIGEST_SIZE])
{
	const char *q;
	size_t plen;

	if (len > max_uri)
		return R_TOO_LONG;
	q = memchr(uri, '?', len);
	plen = q ? (size_t)(q - uri) : len;
	if (plen == 0 || uri[0] != '/')
		return R_BAD;
	for (size_t i = 0; i < plen; i++) {
		unsigned char ch = (unsigned char)uri[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '%' || ch == '\\' || ch == '#')
			return R_BAD;
		if (ch == '/' && i + 1 < plen && (uri[i + 1] == '/' || uri[i + 1] == '.'))
			return R_BAD;
	}
	if (plen == 8 && memcmp(uri, "/healthz", 8) == 0)
		return R_HEALTH;
	if (plen == 8 && memcmp(uri, "/metrics", 8) == 0)
		return R_METRICS;
	if (plen > 9 && memcmp(uri, "/objects/", 9) == 0)
		return cfs_name_parse_path(uri + 9, plen - 9, digest) == 0 ? R_OBJECT : R_BAD;
	return R_NOT_FOUND;
}

bool cfs_http_token_ok(const char *token, size_t token_len, const char *h, size_t len)
{
	if (!token)
		return true;
	if (!h || len < 7 || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	len -= 7;
	while (len && *h == ' ')
		h++, len--;
	return cfs_const_time_eq(h, len, token, token_len);
}

/* The q= parameter among the parameters [@p, @end) of one list element, or NULL. Parameter
 * names are case-insensitive (RFC 9110 §5.6.6). */
static const char *find_q(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if ((*p == 'q' || *p == 'Q') && p[1] == '=')
			return p;
	return NULL;
}

bool cfs_http_accepts_zstd(const char *h)
{
	while (h && *h) {
		const char *end = strchr(h, ','), *semi;
		size_t n = end ? (size_t)(end - h) : strlen(h), name;

		while (n && (*h == ' ' || *h == '\t'))
			h++, n--;
		semi = memchr(h, ';', n);
		name = semi ? (size_t)(semi - h) : n;
		while (name && (h[name - 1] == ' ' || h[name - 1] == '\t'))
			name--;
		if (name == 4 && strncasecmp(h, "zstd", 4) == 0) {
			const char *qp = semi ? find_q(semi, h + n) : NULL;

			if (!qp)
				return true;
			return strtod(qp + 2, NULL) > 0;
		}
		h = end ? end + 1 : NULL;
	}
	return false;
}

/* Only the representation about to be sent counts: the zstd tag does not match a plain answer. */
bool cfs_http_etag_matches(const char *h, const char *etag)
{
	size_t elen = strlen(etag);

	while (h && *h) {
		const char *end = strchr(h, ',');
		size_t n = end ? (size_t)(end - h) : strlen(h);

		while (n && (*h == ' ' || *h == '\t'))
			h++, n--;
		while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
			n--;
		if (n == 1 && h[0] == '*')
			return true;
		if (n >= 2 && h[0] == 'W' && h[1] == '/')
			h += 2, n -= 2;
		if (n == elen && memcmp(h, etag, n) == 0)
			return true;
		h = end ? end + 1 : NULL;
	}
	return false;
}

/* One more decimal digit @d on @x, or false past UINT64_MAX. */
static bool add_digit(uint64_t *x, unsigned d)
{
	if (*x > (UINT64_MAX - d) / 10)
		return false;
	*x = *x * 10 + d;
	return true;
}

static bool parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++)
		if (!add_digit(&x, (unsigned)(*s - '0')))
			return false;
	*p = s;
	*v = x;
	return true;
}

bool cfs_http_parse_length(const char *v, size_t len, uint64_t *out)
{
	uint64_t x = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (v[i] < '0' || v[i] > '9' || !add_digit(&x, (unsigned)(v[i] - '0')))
			return false;
	*out = x;
	return true;
}

int cfs_http_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	uint64_t a, b;

	if (!h || strncasecmp(h, "bytes", 5) != 0)
		return 0;
	h += 5;
	while (*h == ' ')
		h++;
	if (*h++ != '=')
		return 0;
	while (*h == ' ')
		h++;
	if (strchr(h, ','))
		return 0;
	if (*h == '-') {
		h++;
		if (!parse_u64(&h, &b))
			return 0;
		while (*h == ' ')
			h++;
		if (*h)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		b = CFS_MIN(b, size);
		*off = size - b;
		*len = b;
		return 1;
	}
	if (!parse_u64(&h, &a) || *h++ != '-')
		return 0;
	if (*h >= '0' && *h <= '9') {
		if (!parse_u64(&h, &b) || b < a)
			return 0;
	} else {
		b = UINT64_MAX;
	}
	while (*h == ' ')
		h++;
	if (*h)
		return 0;
	if (a >= size)
		return -1;
	*off = a;
	*len = CFS_MIN(b, size - 1) - a + 1;
	return 1;
}

bool cfs_http_name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static bool is_tchar(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* The request line: METHOD SP TARGET SP HTTP/x.y (@n bytes, without its line end). */
static int parse_request_line(const char *p, size_t n, struct cfs_http_head *h)
{
	const char *sp = memchr(p, ' ', n);

	if (!sp || sp == p)
		return 400;
	h->method = p;
	h->method_len = (size_t)(sp - p);
	h->target = sp + 1;
	sp = memchr(h->target, ' ', n - h->method_len - 1);
	if (!sp || sp == h->target)
		return 400;
	h->target_len = (size_t)(sp - h->target);
	if ((size_t)(p + n - (sp + 1)) < 5 || memcmp(sp + 1, "HTTP/", 5) != 0)
		return 400;
	if (cfs_http_name_is(h->method, h->method_len, "GET"))
		h->m = M_GET;
	else if (cfs_http_name_is(h->method, h->method_len, "HEAD"))
		h->m = M_HEAD;
	else if (cfs_http_name_is(h->method, h->method_len, "PUT"))
		h->m = M_PUT;
	return 0;
}

/* One header line (@n bytes, without its line end). */
static int parse_header(const char *p, size_t n, struct cfs_http_head *h)
{
	const char *colon = memchr(p, ':', n), *v, *ve;
	size_t nlen;

	/* Folded lines and names evhttp would not match exactly are ways to hide a length from
	 * one parser and not the other: refused (RFC 9112 §5). */
	if (p[0] == ' ' || p[0] == '\t' || !colon || colon == p)
		return 400;
	for (const char *q = p; q < colon; q++)
		if (!is_tchar((unsigned char)*q))
			return 400;
	nlen = (size_t)(colon - p);
	v = colon + 1;
	ve = p + n;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	if (cfs_http_name_is(p, nlen, "Content-Length")) {
		uint64_t x;

		if (!cfs_http_parse_length(v, (size_t)(ve - v), &x) || (h->have_cl && x != h->cl))
			return 400;
		h->have_cl = true;
		h->cl = x;
	} else if (cfs_http_name_is(p, nlen, "Transfer-Encoding")) {
		if (h->have_te)
			return 400;
		h->have_te = true;
		h->chunked = cfs_http_name_is(v, (size_t)(ve - v), "chunked");
	} else if (cfs_http_name_is(p, nlen, "Authorization") && !h->auth) {
		h->auth = v;
		h->auth_len = (size_t)(ve - v);
	}
	return 0;
}

int cfs_http_parse_head(const char *p, size_t len, struct cfs_http_head *h)
{
	const char *e = p + len, *lf = memchr(p, '\n', len);
	size_t n;
	int r;

	memset(h, 0, sizeof(*h));
	h->m = M_OTHER;
	if (!lf)
		return 400;
	n = (size_t)(lf - p);
	if (n && p[n - 1] == '\r')
		n--;
	r = parse_request_line(p, n, h);
	if (r)
		return r;
	for (p = lf + 1; p < e; p = lf + 1) {
		lf = memchr(p, '\n', (size_t)(e - p));
		if (!lf)
			break;
		n = (size_t)(lf - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the empty line */
		r = parse_header(p, n, h);
		if (r)
			return r;
	}
	if (h->have_cl && h->have_te)
		return 400;
	if (h->have_te && !h->chunked)
		return 501;
	return 0;
}

const char *cfs_http_reason(int code)
{
	switch (code) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	default:
		return "Error";
	}
}

void cfs_http_escape(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; s && *s && o + 5 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x21 || ch >= 0x7f || ch == '"' || ch == '\\')
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}
