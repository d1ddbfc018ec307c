/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's listening sockets: one per loop and address, used by no other server. */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "server/server-internal.h"

int cfs_srv_parse_listen(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		s++;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			/* A bare port. */
			if (!s[0] || strlen(s) >= portlen)
				return -EINVAL;
			host[0] = '\0';
			strcpy(port, s);
			return 0;
		}
		hl = (size_t)(colon - s);
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static bool proc_addr_is_wildcard(const char *hex)
{
	return strspn(hex, "0") == strlen(hex);
}

void cfs_srv_proc_addr_format(const struct sockaddr *sa, char *out, size_t outlen, unsigned *port)
{
	const uint8_t *b;
	size_t n, o = 0;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		b = s6->sin6_addr.s6_addr;
		n = 16;
		*port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		b = (const uint8_t *)&s4->sin_addr.s_addr;
		n = 4;
		*port = ntohs(s4->sin_port);
	}
	/* The kernel prints each 32-bit word as a host-order integer. */
	for (size_t w = 0; w < n; w += 4) {
		uint32_t v;

		memcpy(&v, b + w, 4);
		o += (size_t)snprintf(out + o, outlen - o, "%08X", v);
	}
}

bool cfs_srv_proc_listener(const char *line, const char *want, unsigned port,
                           unsigned long *inode_ret)
{
	char addr[40];
	unsigned lport, state;
	unsigned long inode;

	if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", addr, &lport,
	           &state, &inode) != 4 ||
	    state != 0x0A || lport != port)
		return false;
	/* Overlapping: the same address, or either side a wildcard. */
	if (!proc_addr_is_wildcard(addr) && !proc_addr_is_wildcard(want) && strcmp(addr, want) != 0)
		return false;
	*inode_ret = inode;
	return true;
}

/* SO_REUSEPORT lets another process of the same user bind the same port, and the kernel would
 * then spread connections over both servers: after listening, any LISTEN socket on an
 * overlapping address whose inode is not one of ours means the address is in use. */
static int srv_check_sole_listener(struct cfs_serve *srv, size_t li, const struct sockaddr *sa)
{
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	char want[40], line[512];
	unsigned port;

	cfs_srv_proc_addr_format(sa, want, sizeof(want), &port);
	for (size_t ti = 0; ti < CFS_ARRAY_SIZE(tables); ti++) {
		FILE *f = fopen(tables[ti], "re");

		if (!f)
			continue; /* no /proc (or no IPv6): nothing to check against */
		while (fgets(line, sizeof(line), f)) {
			unsigned long inode;
			bool ours = false;

			if (!cfs_srv_proc_listener(line, want, port, &inode))
				continue;
			for (unsigned i = 0; i < srv->nthreads && !ours; i++) {
				struct stat st;

				ours = fstat(srv->threads[i].lfds[li], &st) == 0 &&
				       (unsigned long)st.st_ino == inode;
			}
			if (!ours) {
				fclose(f);
				cfs_err("cannot listen on %s: address in use by another server "
				        "(socket inode %lu)",
				        srv->cfg.listen[li], inode);
				return -EADDRINUSE;
			}
		}
		fclose(f);
	}
	return 0;
}

int cfs_srv_bind_all(struct cfs_serve *srv, size_t li)
{
	char host[256], port[32], shown[300] = "?";
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	int r, one = 1;

	r = cfs_srv_parse_listen(srv->cfg.listen[li], host, sizeof(host), port, sizeof(port));
	if (r < 0) {
		cfs_err("bad listen address '%s' (want ADDR:PORT)", srv->cfg.listen[li]);
		return r;
	}
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (r != 0) {
		cfs_err("listen address '%s': %s", srv->cfg.listen[li], gai_strerror(r));
		return -EINVAL;
	}
	for (unsigned i = 0; i < srv->nthreads; i++) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			r = -errno;
			goto out;
		}
		srv->threads[i].lfds[li] = fd;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* One listening socket per loop; the kernel spreads connections across them. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
			r = -errno;
			cfs_err("cannot listen on %s: %s", srv->cfg.listen[li], strerror(-r));
			goto out;
		}
		if (i == 0) {
			/* Port 0: every other loop binds the port the first one got. */
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char h[NI_MAXHOST], p[NI_MAXSERV];

			if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
			    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
			                NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
				memcpy(ai->ai_addr, &ss, ai->ai_addrlen);
				snprintf(shown, sizeof(shown),
				         ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
			}
		}
	}
	r = srv_check_sole_listener(srv, li, ai->ai_addr);
	if (r == 0)
		cfs_notice("listening on %s%s", srv->cfg.tls_cert ? "https://" : "http://", shown);
out:
	freeaddrinfo(ai);
	return r;
}
