/* SPDX-License-Identifier: MIT */
/* cfscache: small helpers shared by every module (I/O loops, sizes, time, hex). */
#ifndef CFS_UTIL_H
#define CFS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define CFS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CFS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CFS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Full reads and writes, retrying on EINTR and short counts. Return 0 or -errno;
 * cfs_read_full returns the byte count read (short only at end of file) or -errno. */
ssize_t cfs_read_full(int fd, void *buf, size_t len);
ssize_t cfs_pread_full(int fd, void *buf, size_t len, off_t off);
int cfs_write_full(int fd, const void *buf, size_t len);

/* Parses a size: "123", "123B", then K, M, G, T, P or KiB, MiB, ... (powers of 1024, any case)
 * or kB/KB, MB, GB, TB, PB (powers of 1000, as coreutils reads them): "4k", "20G", "1.5MiB",
 * "100MB". Returns 0 or -EINVAL. */
int cfs_parse_size(const char *s, uint64_t *size_ret);
/* Formats @bytes as "1.5 MiB" into @buf. Returns @buf. */
char *cfs_format_size(uint64_t bytes, char *buf, size_t len);
/* Parses a duration "30", "500ms", "2s", "5m". Returns 0 or -EINVAL. */
int cfs_parse_duration_ms(const char *s, uint64_t *ms_ret);

/* Monotonic clock in nanoseconds. */
uint64_t cfs_now_ns(void);
/* The CLOCK_REALTIME time @ms from now, as pthread_cond_timedwait takes it. */
void cfs_deadline_ms(struct timespec *ts, uint64_t ms);

/* Hex helpers; lower case only. */
void cfs_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);

/* Reads a whole small file (e.g. a token), strips one trailing newline. Caller frees. */
/* Raises the soft limit on open files to the hard one: a server's connections, or objects
 * waiting for one shared flush, each hold a descriptor. */
void cfs_raise_nofile(void);
int cfs_read_small_file(const char *path, size_t max, char **content_ret);

/* Constant-time comparison of two byte strings of possibly different lengths. */
bool cfs_const_time_eq(const void *a, size_t alen, const void *b, size_t blen);

static inline void *cfs_steal_pointer(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}

#endif
