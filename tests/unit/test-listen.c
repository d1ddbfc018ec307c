/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of the pure parts of cfs-serve's listen.c: listen addresses, and the rows
 * of /proc/net/tcp{,6} that make an address "in use by another server". */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/server-internal.h"

#define ROWS(a) (sizeof(a) / sizeof((a)[0]))

static void test_parse_listen(void **state)
{
	static const struct {
		const char *s;
		int want;
		const char *host, *port;
	} rows[] = {
	    {"127.0.0.1:8080", 0, "127.0.0.1", "8080"},
	    {"0.0.0.0:80", 0, "0.0.0.0", "80"},
	    {"[::1]:8443", 0, "::1", "8443"},
	    {"[::]:80", 0, "::", "80"},
	    {"[]:80", 0, "", "80"},
	    {":8080", 0, "", "8080"},
	    {"8080", 0, "", "8080"},
	    {"localhost:http", 0, "localhost", "http"}, /* getaddrinfo refuses a name later */
	    {"::1:80", 0, "::1", "80"},                 /* the last colon splits */
	    {"", -EINVAL},
	    {"host:", -EINVAL},
	    {":", -EINVAL},
	    {"[::1]", -EINVAL},
	    {"[::1]80", -EINVAL},
	    {"[::1:80", -EINVAL},
	    {"[::1]:", -EINVAL},
	    {"123456789012345678901234567890123", -EINVAL},   /* a port too long */
	    {"h:123456789012345678901234567890123", -EINVAL}, /* ... after a host */
	    {"hosthosthosthosthost:1", -EINVAL},              /* a host too long */
	    {"[hosthosthosthosthost]:1", -EINVAL},
	};

	for (size_t i = 0; i < ROWS(rows); i++) {
		char host[16] = "unset", port[32] = "unset";
		int r = cfs_srv_parse_listen(rows[i].s, host, sizeof(host), port, sizeof(port));

		if (r != rows[i].want)
			print_message("listen \"%s\": %d\n", rows[i].s, r);
		assert_int_equal(r, rows[i].want);
		if (r == 0) {
			assert_string_equal(host, rows[i].host);
			assert_string_equal(port, rows[i].port);
		}
	}
}

static void test_proc_addr(void **state)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	char out[40];
	unsigned port = 0;

	inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
	cfs_srv_proc_addr_format((struct sockaddr *)&s4, out, sizeof(out), &port);
	assert_int_equal(port, 8080);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	assert_string_equal(out, "0100007F");
#else
	assert_string_equal(out, "7F000001");
#endif
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	cfs_srv_proc_addr_format((struct sockaddr *)&s6, out, sizeof(out), &port);
	assert_int_equal(port, 443);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	assert_string_equal(out, "00000000000000000000000001000000");
#else
	assert_string_equal(out, "00000000000000000000000000000001");
#endif
	inet_pton(AF_INET6, "::", &s6.sin6_addr);
	cfs_srv_proc_addr_format((struct sockaddr *)&s6, out, sizeof(out), &port);
	assert_string_equal(out, "00000000000000000000000000000000");
}

/* Rows as the kernel prints them (port 0x1F90 = 8080). */
#define ROW4(addr, port, st, inode)                                                                \
	"   3: " addr ":" port " 00000000:0000 " st " 00000000:00000000 00:00000000 00000000  "    \
	"1000        0 " inode " 1 0000000000000000 100 0 0 10 0\n"
#define ROW6(addr, port, st, inode)                                                                \
	"   0: " addr ":" port " 00000000000000000000000000000000:0000 " st                        \
	" 00000000:00000000 00:00000000 00000000  1000        0 " inode " 1 0000000000000000\n"
#define LO4 "0100007F"
#define ANY4 "00000000"
#define LO6 "00000000000000000000000001000000"
#define ANY6 "00000000000000000000000000000000"

static void test_proc_listener(void **state)
{
	static const struct {
		const char *line, *want;
		bool listener;
		unsigned long inode;
	} rows[] = {
	    {ROW4(LO4, "1F90", "0A", "4242"), LO4, true, 4242},
	    {ROW4(ANY4, "1F90", "0A", "17"), LO4, true, 17}, /* a wildcard there */
	    {ROW4(LO4, "1F90", "0A", "17"), ANY4, true, 17}, /* a wildcard here */
	    {ROW6(ANY6, "1F90", "0A", "99"), LO4, true, 99}, /* across the families */
	    {ROW6(LO6, "1F90", "0A", "5"), LO6, true, 5},
	    {ROW4("0200007F", "1F90", "0A", "17"), LO4, false}, /* another address */
	    {ROW4(LO4, "1F91", "0A", "17"), LO4, false},        /* another port */
	    {ROW4(LO4, "1F90", "01", "17"), LO4, false},        /* established, not LISTEN */
	    {ROW4(LO4, "1F90", "06", "17"), LO4, false},        /* TIME_WAIT */
	    {"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
	     "timeout inode\n",
	     LO4, false}, /* the heading */
	    {"", LO4, false},
	    {"   3: 0100007F:1F90\n", LO4, false}, /* cut short */
	};

	for (size_t i = 0; i < ROWS(rows); i++) {
		unsigned long inode = 0;
		bool r = cfs_srv_proc_listener(rows[i].line, rows[i].want, 8080, &inode);

		if (r != rows[i].listener)
			print_message("row %zu \"%s\": %d\n", i, rows[i].line, r);
		assert_int_equal(r, rows[i].listener);
		assert_int_equal(inode, r ? rows[i].inode : 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_listen),
	    cmocka_unit_test(test_proc_addr),
	    cmocka_unit_test(test_proc_listener),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
