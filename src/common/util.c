/* SPDX-License-Identifier: MIT */
/* cfscache: small helpers shared by every module (I/O loops, sizes, time, hex). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/util.h"

/* Reads until @len bytes, end of file or an error; at @off, or at the file offset when @off < 0. */
static ssize_t read_full_at(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		char *p = (char *)buf + done;
		ssize_t n = off < 0 ? read(fd, p, len - done)
		                    : pread(fd, p, len - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t cfs_read_full(int fd, void *buf, size_t len)
{
	return read_full_at(fd, buf, len, -1);
}

ssize_t cfs_pread_full(int fd, void *buf, size_t len, off_t off)
{
	return off < 0 ? -EINVAL : read_full_at(fd, buf, len, off);
}

int cfs_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int cfs_parse_size(const char *s, uint64_t *size_ret)
{
	static const char units[] = "kmgtp";
	const char *u;
	char *end;
	double v, mult = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isdigit((unsigned char)end[-1]))
		return -EINVAL;
	if (*end && (u = strchr(units, tolower((unsigned char)*end)))) {
		int power = (int)(u - units) + 1;
		double base = 1024;

		end++;
		if (*end == 'i' || *end == 'I')
			end++; /* KiB, Ki: 1024-based */
		else if (*end == 'b' || *end == 'B')
			base = 1000; /* kB, KB, MB: 1000-based, as coreutils reads them */
		if (*end == 'b' || *end == 'B')
			end++;
		while (power-- > 0)
			mult *= base;
	} else if (*end == 'b' || *end == 'B') {
		end++;
	}
	if (*end)
		return -EINVAL;
	if (v * mult >= 18446744073709551615.0)
		return -EINVAL;
	*size_ret = (uint64_t)(v * mult);
	return 0;
}

char *cfs_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < CFS_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

int cfs_parse_duration_ms(const char *s, uint64_t *ms_ret)
{
	char *end;
	double v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		v *= 1000.0;
	else if (strcmp(end, "ms") == 0)
		;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		v *= 60000.0;
	else if (strcmp(end, "h") == 0)
		v *= 3600000.0;
	else
		return -EINVAL;
	*ms_ret = (uint64_t)v;
	return 0;
}

uint64_t cfs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void cfs_deadline_ms(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void cfs_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

int cfs_read_small_file(const char *path, size_t max, char **content_ret)
{
	int fd = -1, r;
	char *buf = NULL;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	n = cfs_read_full(fd, buf, max + 1);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	if ((size_t)n > max) {
		r = -EFBIG;
		goto out;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	*content_ret = cfs_steal_pointer(&buf);
	r = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

bool cfs_const_time_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	unsigned char diff = alen != blen;
	size_t n = alen < blen ? alen : blen;

	/* Always walk the shorter length; the length difference is folded in above. */
	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

void cfs_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}
