/* SPDX-License-Identifier: MIT */
/* cfscache: terminal progress bar: items, bytes, rate and ETA on one redrawn line. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/progress.h"
#include "common/util.h"

void cfs_progress_init(struct cfs_progress *p, const char *label, uint64_t total_items,
		       uint64_t total_bytes, bool force_off)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->total_items = total_items;
	p->total_bytes = total_bytes;
	p->start_ns = cfs_now_ns();
	p->enabled = !force_off && isatty(STDERR_FILENO);
}

double cfs_progress_elapsed(const struct cfs_progress *p)
{
	return (double)(cfs_now_ns() - p->start_ns) / 1e9;
}

void cfs_progress_draw(struct cfs_progress *p, bool force)
{
	char done[32], rate[32], eta[32] = "";
	uint64_t now = cfs_now_ns();
	double secs = (double)(now - p->start_ns) / 1e9;
	double bps = secs > 0 ? (double)p->bytes / secs : 0;
	int width = 24, filled = 0;
	char bar[32];
	double frac = -1;

	if (!p->enabled || (!force && now - p->last_draw_ns < 100000000ULL))
		return;
	p->last_draw_ns = now;
	if (p->total_bytes)
		frac = (double)p->bytes / (double)p->total_bytes;
	else if (p->total_items)
		frac = (double)p->items / (double)p->total_items;
	if (frac > 1)
		frac = 1;
	if (frac >= 0) {
		filled = (int)(frac * width);
		if (frac > 0.001 && secs > 0.5)
			snprintf(eta, sizeof(eta), " ETA %.0fs", secs / frac - secs);
	}
	for (int i = 0; i < width; i++)
		bar[i] = frac < 0 ? '-' : i < filled ? '#' : '.';
	bar[width] = '\0';
	cfs_format_size(p->bytes, done, sizeof(done));
	cfs_format_size((uint64_t)bps, rate, sizeof(rate));
	if (p->total_items)
		fprintf(stderr, "\r\033[K%s [%s] %llu/%llu objects, %s, %s/s%s", p->label, bar,
			(unsigned long long)p->items, (unsigned long long)p->total_items, done, rate,
			eta);
	else
		fprintf(stderr, "\r\033[K%s [%s] %llu objects, %s, %s/s", p->label, bar,
			(unsigned long long)p->items, done, rate);
	p->drawn = true;
}

void cfs_progress_add(struct cfs_progress *p, uint64_t items, uint64_t bytes)
{
	p->items += items;
	p->bytes += bytes;
	cfs_progress_draw(p, false);
}

void cfs_progress_done(struct cfs_progress *p)
{
	if (p->drawn)
		fprintf(stderr, "\r\033[K");
	p->drawn = false;
}
