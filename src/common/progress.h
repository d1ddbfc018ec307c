/* SPDX-License-Identifier: MIT */
/* cfscache: a one-line progress bar on stderr for long jobs, drawn only on a terminal and fitted
 * to its width (read again at each redraw, so a resize is followed). */
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
	int drawn_len; /* characters of the line on screen */
};

/* Enabled when stderr is a terminal and @force_off is false. */
void cfs_progress_init(struct cfs_progress *p, const char *label, uint64_t total_items,
		       uint64_t total_bytes, bool force_off);
/* Adds work done; redraws at most ten times a second. */
void cfs_progress_add(struct cfs_progress *p, uint64_t items, uint64_t bytes);
void cfs_progress_draw(struct cfs_progress *p, bool force);
/* Formats the line for a terminal @width columns wide into @buf (at most width - 1 characters:
 * label, bar, percentage, bytes done/total, rate, ETA, items done/total; what does not fit is
 * left out, the bar first). Returns its length. */
int cfs_progress_format(const struct cfs_progress *p, uint64_t now_ns, int width, char *buf,
			size_t len);
/* Clears the bar line. */
void cfs_progress_done(struct cfs_progress *p);
double cfs_progress_elapsed(const struct cfs_progress *p);

#endif
