/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's request-head gate: each head is scanned and checked before evhttp sees it.
 */
/*
 * Why a gate in front of evhttp: evhttp reads a request's whole body before the handler runs,
 * and has no deadline for a head, only an idle timeout per read. So:
 *  - every connection with an incomplete head (from accept, TLS handshake included, or from
 *    the first byte of a later request) is in its loop's waiting list, oldest first, and is
 *    closed --header-timeout after it entered it; over --max-connections, a request that has
 *    arrived closes the oldest of them on its loop instead of getting a 503, and so does a
 *    new connection if that one has waited a moment already;
 *  - a partial head stays in the input buffer (read watermarks keep evhttp's read callback
 *    away, and bound the buffer at --max-header-size + 1) until its empty line arrives;
 *  - a complete head is checked: framing (Content-Length, Transfer-Encoding, obs-fold), and
 *    for a body what may be read at all (method, path, token, declared size). A refusal is
 *    answered by the gate itself, at once, and whatever the client still sends is discarded.
 * Only then does evhttp parse the head (and send 100 Continue if asked).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "server/http.h"
#include "server/server-internal.h"

static uint64_t now_ms(void)
{
	return cfs_now_ns() / 1000000;
}

static void waiting_arm(struct srv_thread *t, uint64_t now)
{
	struct srv_conn *first = TAILQ_FIRST(&t->waiting);
	uint64_t due, ms;
	struct timeval tv;

	if (!first || evtimer_pending(t->waiting_ev, NULL))
		return;
	due = first->g.since_ms + t->srv->cfg.header_timeout_ms;
	ms = (due > now ? due - now : 0) + 1; /* not a millisecond early */
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(t->waiting_ev, &tv);
}

static void waiting_add(struct srv_conn *c)
{
	struct srv_thread *t = c->t;

	if (c->g.waiting)
		return;
	c->g.waiting = true;
	c->g.since_ms = now_ms();
	TAILQ_INSERT_TAIL(&t->waiting, c, g.link);
	t->n_waiting++;
	atomic_fetch_add_explicit(&t->srv->waiting_conns, 1, memory_order_relaxed);
	waiting_arm(t, c->g.since_ms);
}

static void waiting_remove(struct srv_conn *c)
{
	if (!c->g.waiting)
		return;
	TAILQ_REMOVE(&c->t->waiting, c, g.link);
	c->t->n_waiting--;
	atomic_fetch_sub_explicit(&c->t->srv->waiting_conns, 1, memory_order_relaxed);
	c->g.waiting = false;
}

/* Closes a connection that is not in any evhttp callback (the loop's own timer or accept). */
static void gate_close(struct srv_conn *c)
{
	waiting_remove(c);
	evhttp_connection_free(c->evcon); /* its close callback frees c */
}

void cfs_gate_waiting_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;
	uint64_t now = now_ms();
	struct srv_conn *c;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&t->waiting)) &&
	       c->g.since_ms + t->srv->cfg.header_timeout_ms <= now) {
		if (c->g.state == G_HEAD)
			STAT_ADD(t->stats.head_timeouts, 1);
		gate_close(c);
	}
	waiting_arm(t, now);
}

static void hold_back(struct srv_conn *c, bool on)
{
	size_t max = c->t->srv->cfg.max_header_size + 1;

	if (c->g.held_back == on)
		return;
	c->g.held_back = on;
	/* Low = high: evhttp's read callback only runs once the buffer is over the head limit
	 * (which the gate refuses first), and the socket is not read beyond it. */
	bufferevent_setwatermark(c->bev, EV_READ, on ? max : 0, on ? max : 0);
}

static void scan_reset(struct srv_conn *c)
{
	c->g.scanned = 0;
	c->g.line = 0;
	c->g.line_cr = false;
	c->g.any_lf = false;
}

/* ---- refusals ---- */

/* What a refused client may still send before it is cut off: enough for the end of a body
 * already on its way, not a way to keep the loop busy until the linger deadline. */
#define GATE_DISCARD_MAX (1u << 20)

static void refused_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct srv_conn *c = arg;

	c->g.discarded += evbuffer_get_length(in);
	c->g.in_cb = true;
	evbuffer_drain(in, evbuffer_get_length(in));
	c->g.in_cb = false;
	if (c->g.discarded > GATE_DISCARD_MAX) {
		waiting_remove(c);
		evhttp_connection_free(c->evcon);
	}
}

static void refused_write_cb(struct bufferevent *bev, void *arg)
{
	struct srv_conn *c = arg;

	/* The answer is out: a FIN tells the client there is nothing more. Its data still
	 * arriving is read and dropped until it stops or the linger ends. */
	if (!c->t->srv->ssl)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void refused_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct srv_conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		waiting_remove(c);
		evhttp_connection_free(c->evcon);
	}
}

/* Answers @code itself and takes the connection away from evhttp: called from the input
 * buffer's callback, it only changes callbacks and buffers; the close comes later (client
 * EOF, error, the idle timeout, or the linger deadline of the waiting list). */
static void gate_refuse(struct srv_conn *c, const struct cfs_http_head *h, int code)
{
	struct srv_thread *t = c->t;
	struct cfs_serve *srv = t->srv;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char body[64], method[16], target[256], *peer = NULL;
	const char *extra = "";
	ev_uint16_t port = 0;
	int n;

	/* @h points into the input buffer, about to be drained. */
	snprintf(method, sizeof(method), "%.*s", h ? (int)CFS_MIN(h->method_len, 15) : 1,
	         h ? h->method : "-");
	snprintf(target, sizeof(target), "%.*s", h ? (int)CFS_MIN(h->target_len, 255) : 1,
	         h ? h->target : "-");
	c->g.state = G_REFUSED;
	/* A fresh place in the waiting list: it lingers at most one header timeout. */
	waiting_remove(c);
	waiting_add(c);
	c->g.in_cb = true;
	evbuffer_drain(in, evbuffer_get_length(in));
	c->g.in_cb = false;
	hold_back(c, false);
	bufferevent_setcb(c->bev, refused_read_cb, refused_write_cb, refused_event_cb, c);
	if (code == 401)
		extra = "WWW-Authenticate: Bearer realm=\"cfs-serve\"\r\n";
	else if (code == 405)
		extra =
		    srv->cfg.allow_upload ? "Allow: GET, HEAD, PUT\r\n" : "Allow: GET, HEAD\r\n";
	n = snprintf(body, sizeof(body), "%d %s\n", code, cfs_http_reason(code));
	evbuffer_add_printf(
	    bufferevent_get_output(c->bev),
	    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n"
	    "%s\r\n%s",
	    code, cfs_http_reason(code), cfs_srv_date(t), n, extra, body);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (c->evcon)
		evhttp_connection_get_peer(c->evcon, &peer, &port);
	cfs_srv_count(t, h ? h->m : M_OTHER, method, target, peer, code, (uint64_t)n);
}

/* ---- checking a complete head ---- */

/* 0 to let the request through, or the status to refuse it with. */
static int gate_check(struct srv_conn *c, const char *p, size_t len, struct cfs_http_head *h)
{
	struct cfs_serve *srv = c->t->srv;
	uint8_t digest[CFS_DIGEST_SIZE];
	bool body;
	int code = cfs_http_parse_head(p, len, h);

	if (code)
		return code;
	body = h->have_te || h->cl > 0;
	if (h->m != M_PUT) {
		/* Nothing but an upload has any use for a body. */
		return h->have_cl && h->cl > SRV_SMALL_BODY_LIMIT ? 413 : 0;
	}
	if (!body)
		return 0; /* nothing to hold back: the loop answers as for any request */
	if (!srv->cfg.allow_upload)
		return 405;
	if (!cfs_http_token_ok(srv->cfg.token, srv->token_len, h->auth, h->auth_len))
		return 401;
	switch (cfs_http_route(h->target, h->target_len, srv->cfg.max_uri, digest)) {
	case R_OBJECT:
		break;
	case R_TOO_LONG:
		return 414;
	case R_NOT_FOUND:
		return 404;
	case R_BAD:
		return 400;
	default:
		return 405;
	}
	return h->have_cl && h->cl > srv->cfg.max_upload ? 413 : 0;
}

static void gate_pass(struct srv_conn *c)
{
	c->g.state = G_PASS;
	waiting_remove(c);
	scan_reset(c);
	hold_back(c, false);
	c->head_done_ns = cfs_now_ns();
}

/* Looks for the end of the head (an empty line, CRLF or bare LF) in the bytes not scanned yet.
 * Returns the head's length with its empty line, or 0 if it is not complete. */
static size_t scan_head(struct srv_conn *c, struct evbuffer *buf, size_t len)
{
	struct evbuffer_iovec v[8];
	struct evbuffer_ptr pos;
	size_t off = c->g.scanned;

	while (off < len) {
		int nv;

		if (evbuffer_ptr_set(buf, &pos, off, EVBUFFER_PTR_SET) < 0)
			break;
		nv = evbuffer_peek(buf, (ev_ssize_t)(len - off), &pos, v, 8);
		for (int i = 0; i < nv && i < 8 && off < len; i++) {
			const char *s = v[i].iov_base;
			size_t vl = CFS_MIN(v[i].iov_len, len - off);
			const char *p = s, *e = s + vl;

			while (p < e) {
				const char *lf = memchr(p, '\n', (size_t)(e - p));
				size_t k = (size_t)((lf ? lf : e) - p);
				bool cr1 = c->g.line == 0 ? (k == 1 && p[0] == '\r')
				                          : (k == 0 && c->g.line_cr);

				if (!lf) {
					c->g.line_cr = cr1;
					c->g.line += k;
					p = e;
					break;
				}
				if (c->g.any_lf && (c->g.line + k == 0 || cr1))
					return off + (size_t)(lf - s) + 1;
				c->g.any_lf = true;
				c->g.line = 0;
				c->g.line_cr = false;
				p = lf + 1;
			}
			off += vl;
		}
		if (nv <= 0)
			break;
	}
	c->g.scanned = len;
	return 0;
}

static void gate_scan(struct srv_conn *c, struct evbuffer *buf)
{
	size_t max = c->t->srv->cfg.max_header_size;
	size_t len = evbuffer_get_length(buf), end;
	struct cfs_http_head h = {.m = M_OTHER};
	int code;

	if (len == 0)
		return;
	end = scan_head(c, buf, CFS_MIN(len, max + 1));
	if ((!end && len > max) || end > max)
		return gate_refuse(c, NULL, 431);
	if (!end) {
		waiting_add(c); /* from the first partial read of a later request's head */
		hold_back(c, true);
		return;
	}
	code = gate_check(c, (const char *)evbuffer_pullup(buf, (ev_ssize_t)end), end, &h);
	if (code)
		return gate_refuse(c, h.method ? &h : NULL, code);
	gate_pass(c);
}

static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct srv_conn *c = arg;

	if (info->n_added == 0 || c->g.in_cb)
		return;
	STAT_ADD(c->t->stats.bytes_received, info->n_added);
	if (c->g.state == G_PASS) {
		/* evhttp goes on reading while the loop answers and keeps what arrives: a client
		 * could pile up pipelined bytes without bound. They are the next head: held to
		 * the head limit like any other (from the next read on). */
		if (c->busy)
			hold_back(c, true);
		return;
	}
	if (c->g.state != G_HEAD)
		return;
	if (!c->evcon) {
		hold_back(c, true); /* before the set-up: cfs_gate_accepted looks at it */
		return;
	}
	gate_scan(c, buf);
}

int cfs_gate_attach(struct srv_conn *c)
{
	c->g.state = G_HEAD;
	c->g.cbent = evbuffer_add_cb(bufferevent_get_input(c->bev), input_cb, c);
	return c->g.cbent ? 0 : -ENOMEM;
}

/* Hands a head that arrived while evhttp was held off (or before the set-up) to the gate, and
 * evhttp's read callback the bytes if it passes. Runs from the loop, in no bufferevent callback. */
static void gate_replay(struct srv_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (c->g.held && evbuffer_get_length(c->g.held)) {
		c->g.in_cb = true;
		evbuffer_prepend_buffer(in, c->g.held);
		c->g.in_cb = false;
	}
	gate_scan(c, in);
	if (c->g.state == G_PASS)
		bufferevent_trigger(c->bev, EV_READ, 0); /* may free c */
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	gate_replay(arg);
}

/* Over --max-connections, a new connection or request takes the place of this loop's oldest
 * incomplete head rather than get a 503: slow senders only ever hold what nobody else asks
 * for. Returns whether the server is within its limit now. */
bool cfs_gate_make_room(struct srv_thread *t, const struct srv_conn *keep, bool for_request)
{
	/* For a new connection, a head younger than this may be a normal client in its TLS
	 * handshake or first round trip: a burst of new connections must not close it. A request
	 * that has arrived is a client that behaves, and takes the oldest head whatever its age. */
	uint64_t grace = for_request ? 0 : CFS_MIN(t->srv->cfg.header_timeout_ms / 4, 500);

	while (atomic_load(&t->srv->open_conns) > t->srv->cfg.max_connections) {
		struct srv_conn *old = TAILQ_FIRST(&t->waiting);

		if (!old || old == keep || old->g.since_ms + grace > now_ms())
			return false;
		STAT_ADD(t->stats.head_evictions, 1);
		gate_close(old);
	}
	return true;
}

void cfs_gate_accepted(struct srv_conn *c)
{
	waiting_add(c);
	cfs_gate_make_room(c->t, c, false);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)))
		gate_replay(c);
}

void cfs_gate_next(struct srv_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->g.state = G_HEAD;
	scan_reset(c);
	if (evbuffer_get_length(in) == 0)
		return;
	/* A pipelined request: evhttp would parse it from its own deferred callback, past the
	 * gate. Set it aside until this callback has returned, then let the gate see it first. */
	if (!c->g.held)
		c->g.held = evbuffer_new();
	if (!c->g.kick_ev)
		c->g.kick_ev = event_new(c->t->base, -1, 0, kick_cb, c);
	c->g.in_cb = true;
	if (c->g.held && c->g.kick_ev)
		evbuffer_add_buffer(c->g.held, in);
	else
		evbuffer_drain(in, evbuffer_get_length(in)); /* out of memory: the client retries */
	c->g.in_cb = false;
	if (c->g.kick_ev)
		event_active(c->g.kick_ev, EV_TIMEOUT, 1);
}

void cfs_gate_closed(struct srv_conn *c)
{
	waiting_remove(c);
	if (c->g.cbent && c->bev)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->g.cbent);
	c->g.cbent = NULL;
	if (c->g.kick_ev)
		event_free(c->g.kick_ev);
	c->g.kick_ev = NULL;
	if (c->g.held)
		evbuffer_free(c->g.held);
	c->g.held = NULL;
}
