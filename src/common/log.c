/* SPDX-License-Identifier: MIT */
/* cfscache: log sink (stderr with level tags, syslog, or a file), thread-safe, one line per call. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static const char *log_progname = "cfscache";
static enum cfs_log_level log_level = CFS_LOG_NOTICE;
static bool log_syslog;
static int log_fd = -1; /* cfs_log_use_file's file, or -1 */

static const char *const level_names[] = {
	[CFS_LOG_ERR] = "err",   [CFS_LOG_WARNING] = "warning", [CFS_LOG_NOTICE] = "notice",
	[CFS_LOG_INFO] = "info", [CFS_LOG_DEBUG] = "debug",
};

void cfs_log_init(const char *progname)
{
	if (progname) {
		const char *slash = strrchr(progname, '/');
		log_progname = slash ? slash + 1 : progname;
	}
}

void cfs_log_set_level(enum cfs_log_level level)
{
	log_level = level;
}

enum cfs_log_level cfs_log_get_level(void)
{
	return log_level;
}

bool cfs_log_enabled(enum cfs_log_level level)
{
	return level <= log_level;
}

void cfs_log_use_syslog(bool on)
{
	if (on && !log_syslog)
		openlog(log_progname, LOG_PID, LOG_DAEMON);
	else if (!on && log_syslog)
		closelog();
	log_syslog = on;
}

int cfs_log_use_file(const char *path)
{
	int fd = -1;

	if (path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd < 0)
			return -errno;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

/* One write(2) of a whole line keeps lines of threads and processes sharing the file whole. */
static void log_to_file(enum cfs_log_level level, const char *msg)
{
	char line[1200], stamp[32];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld]: %s: %s\n", stamp, ts.tv_nsec / 1000000,
		     log_progname, (long)getpid(), level_names[level], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(log_fd, line, (size_t)n) < 0) {
		/* Nowhere left to say it. */
	}
}

int cfs_log_parse_level(const char *s, enum cfs_log_level *level_ret)
{
	for (int l = CFS_LOG_ERR; l <= CFS_LOG_DEBUG; l++) {
		if (strcmp(s, level_names[l]) == 0 || (s[0] == '0' + l && s[1] == '\0')) {
			*level_ret = l;
			return 0;
		}
	}
	if (strcmp(s, "error") == 0 || strcmp(s, "warn") == 0) {
		*level_ret = s[0] == 'e' ? CFS_LOG_ERR : CFS_LOG_WARNING;
		return 0;
	}
	return -EINVAL;
}

void cfs_log(enum cfs_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int saved_errno = errno;

	if (!cfs_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fd >= 0) {
		log_to_file(level, msg);
	} else if (log_syslog) {
		syslog((int)level, "%s", msg);
	} else {
		/* One fprintf per line keeps lines from different threads whole. */
		fprintf(stderr, "%s: %s%s%s\n", log_progname,
			level <= CFS_LOG_WARNING ? level_names[level] : "",
			level <= CFS_LOG_WARNING ? ": " : "", msg);
	}
	errno = saved_errno;
}
