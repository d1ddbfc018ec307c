/* SPDX-License-Identifier: MIT */
/* cfscache: faultd, a small HTTP/1.1 test server for a store that injects faults per object. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define REQ_MAX 16384
#define MAX_CONNS 1024
#define EXTRA_BYTES 65536
#define HUGE_BYTES (1024ULL << 20)
#define ZSTD_MAX (64u << 20)

enum mode {
	M_NONE,
	M_CORRUPT,
	M_TRUNCATE,
	M_STALL,
	M_DRIP,
	M_500,
	M_404,
	M_RESET,
	M_OVERSIZE,
	M_HUGE,
	M_LIE_LENGTH,
	M_DELAY,
};

static const char *const mode_names[] = {
    [M_NONE] = "none",
    [M_CORRUPT] = "corrupt",
    [M_TRUNCATE] = "truncate",
    [M_STALL] = "stall",
    [M_DRIP] = "drip",
    [M_500] = "500",
    [M_404] = "404",
    [M_RESET] = "reset",
    [M_OVERSIZE] = "oversize",
    [M_HUGE] = "huge",
    [M_LIE_LENGTH] = "lie-length",
    [M_DELAY] = "delay",
};

struct rule {
	char prefix[65];
	enum mode mode;
	long remaining; /* -1: every request */
};

static struct rule rules[64];
static size_t n_rules;
static pthread_mutex_t rules_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *root = ".";
static const char *base = "/objects";
static char *token;
static bool opt_zstd;
static unsigned stall_secs = 30, delay_ms = 500, drip_bps = 100;
static int log_fd = -1;
static int conns;
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

static int parse_rule(const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct rule *r;
	char mode[32];
	char *colon;
	size_t plen;

	if (!eq || n_rules >= sizeof(rules) / sizeof(rules[0]))
		return -1;
	plen = (size_t)(eq - arg);
	if (plen == 0 || plen > 64)
		return -1;
	r = &rules[n_rules];
	memcpy(r->prefix, arg, plen);
	r->prefix[plen] = '\0';
	snprintf(mode, sizeof(mode), "%s", eq + 1);
	r->remaining = -1;
	colon = strchr(mode, ':');
	if (colon) {
		*colon = '\0';
		r->remaining = strtol(colon + 1, NULL, 10);
	}
	for (size_t m = 1; m < sizeof(mode_names) / sizeof(mode_names[0]); m++) {
		if (strcmp(mode, mode_names[m]) == 0) {
			r->mode = (enum mode)m;
			n_rules++;
			return 0;
		}
	}
	return -1;
}

static enum mode match_rule(const char *hex)
{
	enum mode m = M_NONE;

	pthread_mutex_lock(&rules_lock);
	for (size_t i = 0; i < n_rules; i++) {
		struct rule *r = &rules[i];

		if (r->remaining == 0)
			continue;
		if (strcmp(r->prefix, "*") != 0 && strncmp(hex, r->prefix, strlen(r->prefix)) != 0)
			continue;
		if (r->remaining > 0)
			r->remaining--;
		m = r->mode;
		break;
	}
	pthread_mutex_unlock(&rules_lock);
	return m;
}

static void log_line(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (log_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	pthread_mutex_lock(&log_lock);
	if (write(log_fd, line, (size_t)n) < 0) {
		/* nothing to do in a test server */
	}
	pthread_mutex_unlock(&log_lock);
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_fmt(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return send_all(fd, buf, (size_t)n);
}

/* Sends bytes [from, to) of the file; flips the byte at @flip (absolute) if in range. */
static int send_file_range(int sock, int fd, uint64_t from, uint64_t to, uint64_t flip,
                           uint64_t *sent)
{
	char buf[65536];

	while (from < to) {
		size_t want = (size_t)((to - from) < sizeof(buf) ? (to - from) : sizeof(buf));
		ssize_t n = pread(fd, buf, want, (off_t)from);

		if (n <= 0)
			return -1;
		if (flip >= from && flip < from + (uint64_t)n)
			buf[flip - from] ^= 0x5a;
		if (send_all(sock, buf, (size_t)n) < 0)
			return -1;
		from += (uint64_t)n;
		*sent += (uint64_t)n;
	}
	return 0;
}

static bool valid_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static void reset_conn(int sock)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct req {
	char method[16];
	char path[512];
	bool keep_alive, head, has_range, zstd_ok, auth_ok;
	unsigned long long rstart, rend; /* rend inclusive; ULLONG_MAX = open */
};

/* Returns 1 to keep the connection, 0 to close it. */
static int serve(int sock, struct req *q)
{
	const char *status_text = "OK";
	char hex[65], rel[80], file[4096];
	enum mode m = M_NONE;
	uint64_t size, from, to, sent = 0;
	size_t blen = strlen(base);
	struct stat st;
	int fd = -1, status = 200, keep = q->keep_alive;
	const char *rest;

	if (strcmp(q->method, "GET") != 0 && !q->head) {
		send_fmt(sock, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
		log_line("%s %s 405 0\n", q->method, q->path);
		return keep;
	}
	if (!q->auth_ok) {
		send_fmt(sock, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
		log_line("%s %s 401 0 auth=no\n", q->method, q->path);
		return keep;
	}
	rest = q->path;
	if (strncmp(rest, base, blen) == 0 && rest[blen] == '/')
		rest += blen + 1;
	else
		rest = NULL;
	if (!rest || strlen(rest) != 65 || rest[2] != '/' || !valid_hex(rest, 2) ||
	    !valid_hex(rest + 3, 62)) {
		send_fmt(sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
		log_line("%s %s 404 0\n", q->method, q->path);
		return keep;
	}
	snprintf(hex, sizeof(hex), "%.2s%.62s", rest, rest + 3);
	snprintf(rel, sizeof(rel), "%.65s", rest);
	m = match_rule(hex);
	/* Logged on arrival so that stalled requests are counted at once. */
	if (q->has_range)
		log_line("%s %s fault=%s range=%llu-\n", q->method, q->path, mode_names[m],
		         q->rstart);
	else
		log_line("%s %s fault=%s\n", q->method, q->path, mode_names[m]);
	if (m == M_DELAY)
		sleep_ms(delay_ms);
	if (m == M_RESET) {
		reset_conn(sock);
		return 0;
	}
	if (m == M_500) {
		send_fmt(sock,
		         "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\n\r\nerror\n");
		log_line("= %s 500 0\n", q->path);
		return keep;
	}
	snprintf(file, sizeof(file), "%s/%s", root, rel);
	if (m != M_404)
		fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		send_fmt(sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n");
		log_line("= %s 404 0\n", q->path);
		return keep;
	}
	size = (uint64_t)st.st_size;
	from = 0;
	to = size;
	if (q->has_range) {
		if (q->rstart >= size) {
			send_fmt(
			    sock,
			    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%llu\r\n"
			    "Content-Length: 0\r\n\r\n",
			    (unsigned long long)size);
			log_line("= %s 416 0\n", q->path);
			close(fd);
			return keep;
		}
		from = q->rstart;
		if (q->rend < size - 1)
			to = q->rend + 1;
		status = 206;
		status_text = "Partial Content";
	}

	if (m == M_NONE && opt_zstd && q->zstd_ok && !q->has_range && size > 0 &&
	    size <= ZSTD_MAX) {
		char *raw = malloc(size), *z = NULL;
		size_t zcap = ZSTD_compressBound(size), zlen = 0;
		ssize_t got = raw ? pread(fd, raw, size, 0) : -1;

		if (got == (ssize_t)size && (z = malloc(zcap)))
			zlen = ZSTD_compress(z, zcap, raw, size, 3);
		if (z && !ZSTD_isError(zlen)) {
			int rr = send_fmt(
			    sock,
			    "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nContent-Encoding: zstd\r\n"
			    "ETag: \"%s\"\r\n\r\n",
			    zlen, hex);
			if (rr == 0 && !q->head)
				rr = send_all(sock, z, zlen);
			log_line("= %s 200 %zu enc=zstd\n", q->path, q->head ? 0 : zlen);
			free(raw);
			free(z);
			close(fd);
			return rr == 0 ? keep : 0;
		}
		free(raw);
		free(z);
	}

	{
		uint64_t clen = to - from;
		char crange[96] = "";

		if (m == M_OVERSIZE)
			clen += EXTRA_BYTES;
		if (m == M_LIE_LENGTH)
			clen = clen / 2;
		if (m == M_CORRUPT && size == 0)
			clen = 1;
		if (status == 206)
			snprintf(crange, sizeof(crange), "Content-Range: bytes %llu-%llu/%llu\r\n",
			         (unsigned long long)from, (unsigned long long)(to - 1),
			         (unsigned long long)size);
		if (m == M_HUGE) {
			keep = 0;
			if (send_fmt(sock, "HTTP/1.1 %d %s\r\nConnection: close\r\n%s\r\n", status,
			             status_text, crange) < 0)
				goto out;
		} else if (send_fmt(sock,
		                    "HTTP/1.1 %d %s\r\nContent-Length: %llu\r\n%sETag: \"%s\"\r\n"
		                    "Accept-Ranges: bytes\r\n\r\n",
		                    status, status_text, (unsigned long long)clen, crange,
		                    hex) < 0) {
			keep = 0;
			goto out;
		}
	}
	if (q->head)
		goto out;
	switch (m) {
	case M_CORRUPT:
		if (size == 0)
			send_all(sock, "X", 1);
		else
			send_file_range(sock, fd, from, to, size / 2, &sent);
		break;
	case M_TRUNCATE:
		send_file_range(sock, fd, from, from < size / 2 ? size / 2 : from, UINT64_MAX,
		                &sent);
		keep = 0;
		break;
	case M_STALL:
		send_file_range(sock, fd, from, from < size / 2 ? size / 2 : from, UINT64_MAX,
		                &sent);
		sleep_ms(stall_secs * 1000);
		keep = 0;
		break;
	case M_DRIP: {
		uint64_t chunk = drip_bps / 10 ? drip_bps / 10 : 1;
		unsigned ticks = stall_secs * 10;

		for (uint64_t o = from; o < to && ticks > 0; o += chunk, ticks--) {
			if (send_file_range(sock, fd, o, o + chunk < to ? o + chunk : to,
			                    UINT64_MAX, &sent) < 0)
				break;
			sleep_ms(100);
		}
		keep = 0;
		break;
	}
	case M_OVERSIZE:
	case M_HUGE: {
		static const char junk[4096];
		uint64_t extra = m == M_HUGE ? HUGE_BYTES : EXTRA_BYTES;

		if (send_file_range(sock, fd, from, to, UINT64_MAX, &sent) < 0)
			break;
		for (uint64_t o = 0; o < extra; o += sizeof(junk)) {
			if (send_all(sock, junk, sizeof(junk)) < 0)
				break;
			sent += sizeof(junk);
		}
		if (m == M_HUGE)
			keep = 0;
		break;
	}
	default:
		if (send_file_range(sock, fd, from, to, UINT64_MAX, &sent) < 0)
			keep = 0;
		break;
	}
out:
	log_line("= %s %d %llu\n", q->path, status, (unsigned long long)sent);
	close(fd);
	return keep;
}

static void parse_headers(char *buf, struct req *q)
{
	char *line = strstr(buf, "\r\n");
	char version[16] = "";

	q->keep_alive = true;
	q->auth_ok = token == NULL;
	if (sscanf(buf, "%15s %511s %15s", q->method, q->path, version) < 2) {
		q->method[0] = '\0';
		return;
	}
	q->head = strcmp(q->method, "HEAD") == 0;
	if (strcmp(version, "HTTP/1.1") != 0)
		q->keep_alive = false;
	while (line && line[2]) {
		char *next, *v;

		line += 2;
		next = strstr(line, "\r\n");
		if (next)
			*next = '\0';
		v = strchr(line, ':');
		if (v) {
			*v++ = '\0';
			while (*v == ' ' || *v == '\t')
				v++;
			if (strcasecmp(line, "Range") == 0) {
				unsigned long long a, b;

				if (sscanf(v, "bytes=%llu-%llu", &a, &b) == 2) {
					q->has_range = true;
					q->rstart = a;
					q->rend = b;
				} else if (sscanf(v, "bytes=%llu-", &a) == 1) {
					q->has_range = true;
					q->rstart = a;
					q->rend = ~0ULL;
				}
			} else if (strcasecmp(line, "Accept-Encoding") == 0) {
				q->zstd_ok = strstr(v, "zstd") != NULL;
			} else if (strcasecmp(line, "Connection") == 0) {
				if (strcasecmp(v, "close") == 0)
					q->keep_alive = false;
			} else if (strcasecmp(line, "Authorization") == 0 && token) {
				q->auth_ok =
				    strncmp(v, "Bearer ", 7) == 0 && strcmp(v + 7, token) == 0;
			}
		}
		if (!next)
			break;
		*next = '\r';
		line = next;
	}
}

static void *conn_main(void *arg)
{
	int sock = (int)(intptr_t)arg;
	char *buf = malloc(REQ_MAX + 1);
	size_t have = 0;

	if (!buf)
		goto out;
	for (;;) {
		char *end;
		struct req q = {0};
		size_t used;

		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			ssize_t n;

			if (have >= REQ_MAX)
				goto out;
			n = recv(sock, buf + have, REQ_MAX - have, 0);
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		end[2] = '\0';
		used = (size_t)(end - buf) + 4;
		parse_headers(buf, &q);
		if (!q.method[0])
			goto out;
		if (!serve(sock, &q))
			goto out;
		memmove(buf, buf + used, have - used);
		have -= used;
	}
out:
	free(buf);
	close(sock);
	pthread_mutex_lock(&conns_lock);
	conns--;
	pthread_mutex_unlock(&conns_lock);
	return NULL;
}

static int write_file_atomic(const char *path, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: faultd --root STORE [--port N] [--port-file F] [--pidfile F] [--log F]\n"
	    "              [--base /objects] [--zstd] [--token-file F] [--stall-secs N]\n"
	    "              [--delay-ms N] [--drip-bps N] [--fault HEXPREFIX|*=MODE[:COUNT]]...\n"
	    "Test HTTP server for a store; MODE: corrupt truncate stall drip 500 404 reset\n"
	    "oversize huge lie-length delay. COUNT limits a fault to the first COUNT requests.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"port", required_argument, NULL, 'p'},
	    {"port-file", required_argument, NULL, 'P'},
	    {"pidfile", required_argument, NULL, 'i'},
	    {"log", required_argument, NULL, 'l'},
	    {"base", required_argument, NULL, 'b'},
	    {"zstd", no_argument, NULL, 'z'},
	    {"token-file", required_argument, NULL, 't'},
	    {"stall-secs", required_argument, NULL, 's'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"drip-bps", required_argument, NULL, 'D'},
	    {"fault", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *port_file = NULL, *pidfile = NULL;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t salen = sizeof(sa);
	int port = 0, lfd, c, one = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			root = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'P':
			port_file = optarg;
			break;
		case 'i':
			pidfile = optarg;
			break;
		case 'l':
			log_fd = open(optarg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (log_fd < 0) {
				perror(optarg);
				return 1;
			}
			break;
		case 'b':
			base = optarg;
			break;
		case 'z':
			opt_zstd = true;
			break;
		case 't': {
			FILE *f = fopen(optarg, "r");
			char line[1024];

			if (!f || !fgets(line, sizeof(line), f)) {
				fprintf(stderr, "faultd: cannot read %s\n", optarg);
				return 1;
			}
			fclose(f);
			line[strcspn(line, "\r\n")] = '\0';
			token = strdup(line);
			break;
		}
		case 's':
			stall_secs = (unsigned)atoi(optarg);
			break;
		case 'd':
			delay_ms = (unsigned)atoi(optarg);
			break;
		case 'D':
			drip_bps = (unsigned)atoi(optarg);
			break;
		case 'f':
			if (parse_rule(optarg) < 0) {
				fprintf(stderr, "faultd: bad fault rule '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(base, "/") == 0 || base[0] != '/')
		base = "";
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 512) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
		perror("faultd: listen");
		return 1;
	}
	if (pidfile && write_file_atomic(pidfile, "%d\n", (int)getpid()) < 0)
		return 1;
	if (port_file && write_file_atomic(port_file, "%d\n", ntohs(sa.sin_port)) < 0)
		return 1;
	for (;;) {
		struct timeval tv = {.tv_sec = 60};
		pthread_attr_t attr;
		pthread_t th;
		int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (s < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			return 1;
		}
		pthread_mutex_lock(&conns_lock);
		if (conns >= MAX_CONNS) {
			pthread_mutex_unlock(&conns_lock);
			close(s);
			continue;
		}
		conns++;
		pthread_mutex_unlock(&conns_lock);
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		if (pthread_create(&th, &attr, conn_main, (void *)(intptr_t)s) != 0) {
			close(s);
			pthread_mutex_lock(&conns_lock);
			conns--;
			pthread_mutex_unlock(&conns_lock);
		}
		pthread_attr_destroy(&attr);
	}
}
