/* SPDX-License-Identifier: MIT */
/* cfscache: a one-line progress bar on stderr for long jobs, drawn only on a terminal. */
#ifndef CFS_PROGRESS_H
#define CFS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct cfs_progress {
	const char *label;
	uint64_t total_items, total_bytes; /* 0 when unknown */
	uint64_t items, bytes;
	uint64_t start_ns, last_draw_ns;
	bool enabled, drawn;
};

/* Enabled when stderr is a terminal and @force_off is false. */
void cfs_progress_init(struct cfs_progress *p, const char *label, uint64_t total_items,
		       uint64_t total_bytes, bool force_off);
/* Adds work done; redraws at most ten times a second. */
void cfs_progress_add(struct cfs_progress *p, uint64_t items, uint64_t bytes);
void cfs_progress_draw(struct cfs_progress *p, bool force);
/* Clears the bar line. */
void cfs_progress_done(struct cfs_progress *p);
double cfs_progress_elapsed(const struct cfs_progress *p);

#endif
