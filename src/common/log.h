/* SPDX-License-Identifier: MIT */
/* cfscache: the one log module; binaries choose the sink and level, libraries only call cfs_log. */
#ifndef CFS_LOG_H
#define CFS_LOG_H

#include <stdbool.h>

enum cfs_log_level {
	CFS_LOG_ERR = 3,
	CFS_LOG_WARNING = 4,
	CFS_LOG_NOTICE = 5,
	CFS_LOG_INFO = 6,
	CFS_LOG_DEBUG = 7,
};

/* Sets the program name shown on stderr lines and used as the syslog ident. */
void cfs_log_init(const char *progname);
/* Messages above @level are dropped. Default: CFS_LOG_NOTICE. */
void cfs_log_set_level(enum cfs_log_level level);
enum cfs_log_level cfs_log_get_level(void);
/* Sends messages to syslog (daemon facility) instead of stderr. */
void cfs_log_use_syslog(bool on);
/* Appends messages to @path (created 0640 if missing), one timestamped line each, instead of
 * stderr or syslog; NULL goes back to stderr. Returns 0 or -errno (the sink is unchanged). */
int cfs_log_use_file(const char *path);
/* Parses "err", "warning", "notice", "info", "debug" (or 3..7). Returns 0 or -EINVAL. */
int cfs_log_parse_level(const char *s, enum cfs_log_level *level_ret);
bool cfs_log_enabled(enum cfs_log_level level);

void cfs_log(enum cfs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cfs_err(...) cfs_log(CFS_LOG_ERR, __VA_ARGS__)
#define cfs_warn(...) cfs_log(CFS_LOG_WARNING, __VA_ARGS__)
#define cfs_notice(...) cfs_log(CFS_LOG_NOTICE, __VA_ARGS__)
#define cfs_info(...) cfs_log(CFS_LOG_INFO, __VA_ARGS__)
#define cfs_debug(...)                                                                             \
	do {                                                                                       \
		if (cfs_log_enabled(CFS_LOG_DEBUG))                                                \
			cfs_log(CFS_LOG_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif
