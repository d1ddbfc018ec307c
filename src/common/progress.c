/* SPDX-License-Identifier: MIT */
/* cfscache: terminal progress bar: items, bytes done of total, rate and ETA on one redrawn line
 * that fits the terminal's width. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/progress.h"
#include "common/util.h"

#define MIN_BAR 8
#define MAX_BAR 40

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

static void format_eta(double secs, char *buf, size_t len)
{
	unsigned long s = (unsigned long)(secs + 0.5);

	if (s >= 3600)
		snprintf(buf, len, "ETA %luh%02lum", s / 3600, s / 60 % 60);
	else if (s >= 60)
		snprintf(buf, len, "ETA %lum%02lus", s / 60, s % 60);
	else
		snprintf(buf, len, "ETA %lus", s);
}

/* "17.7M": a size in one to five characters and a unit letter. */
static char *short_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTP";
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(units) - 1) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, len, u ? "%.1f%c" : "%.0f%c", v, units[u]);
	return buf;
}

int cfs_progress_format(const struct cfs_progress *p, uint64_t now_ns, int width, char *buf,
			size_t len)
{
	/* What the line can hold, most wanted first; the rest drops out as the width shrinks. */
	enum { PCT, BYTES, RATE, ETA, ITEMS, NFIELDS };
	char field[NFIELDS][48] = { "" }, shorter[NFIELDS][48] = { "" }, a[16], b[16];
	double secs = now_ns > p->start_ns ? (double)(now_ns - p->start_ns) / 1e9 : 0;
	double frac = -1;
	int keep = NFIELDS, used, bar = 0, n;

	if (p->total_bytes)
		frac = (double)p->bytes / (double)p->total_bytes;
	else if (p->total_items)
		frac = (double)p->items / (double)p->total_items;
	if (frac > 1)
		frac = 1;
	if (frac >= 0)
		snprintf(field[PCT], sizeof(field[PCT]), "%3d%%", (int)(frac * 100));
	cfs_format_size(p->bytes, a, sizeof(a));
	if (p->total_bytes)
		snprintf(field[BYTES], sizeof(field[BYTES]), "%s/%s", a,
			 cfs_format_size(p->total_bytes, b, sizeof(b)));
	else
		snprintf(field[BYTES], sizeof(field[BYTES]), "%s", a);
	/* For narrow terminals: "1.2G/3.4G" (still powers of 1024). */
	short_size(p->bytes, a, sizeof(a));
	if (p->total_bytes)
		snprintf(shorter[BYTES], sizeof(shorter[BYTES]), "%s/%s", a,
			 short_size(p->total_bytes, b, sizeof(b)));
	if (secs > 0.001) {
		if (p->bytes)
			snprintf(field[RATE], sizeof(field[RATE]), "%s/s",
				 cfs_format_size((uint64_t)((double)p->bytes / secs), a, sizeof(a)));
		else
			snprintf(field[RATE], sizeof(field[RATE]), "%.0f/s",
				 (double)p->items / secs);
	}
	if (frac > 0.001 && frac < 1 && secs > 0.5)
		format_eta(secs / frac - secs, field[ETA], sizeof(field[ETA]));
	if (p->total_items)
		snprintf(field[ITEMS], sizeof(field[ITEMS]), "%llu/%llu objects",
			 (unsigned long long)p->items, (unsigned long long)p->total_items);
	else
		snprintf(field[ITEMS], sizeof(field[ITEMS]), "%llu objects",
			 (unsigned long long)p->items);
	if (width < 1)
		width = 1;
	/* Never the last column: some terminals wrap there. */
	width--;
	for (;;) {
		used = (int)strlen(p->label);
		for (int i = 0; i < keep; i++)
			if (field[i][0])
				used += 1 + (int)strlen(field[i]);
		if (used <= width || keep == 0)
			break;
		/* The last field kept gets its shorter form before it goes. */
		if (shorter[keep - 1][0]) {
			memcpy(field[keep - 1], shorter[keep - 1], sizeof(field[0]));
			shorter[keep - 1][0] = '\0';
			continue;
		}
		keep--;
	}
	if (width - used >= MIN_BAR + 3)
		bar = CFS_MIN(width - used - 3, MAX_BAR);
	n = snprintf(buf, len, "%s", p->label);
	if (bar && (size_t)n + (size_t)bar + 3 < len) {
		int filled = frac < 0 ? 0 : (int)(frac * bar);

		buf[n++] = ' ';
		buf[n++] = '[';
		for (int i = 0; i < bar; i++)
			buf[n++] = frac < 0 ? '-' : i < filled ? '#' : '.';
		buf[n++] = ']';
		buf[n] = '\0';
	}
	for (int i = 0; i < keep && (size_t)n < len; i++)
		if (field[i][0])
			n += snprintf(buf + n, len - (size_t)n, " %s", field[i]);
	if ((size_t)n >= len)
		n = (int)len - 1;
	/* A label alone wider than the terminal is cut. */
	if (n > width) {
		n = width;
		buf[n] = '\0';
	}
	return n;
}

/* The terminal's width now (it may have been resized since the last draw). */
static int term_width(void)
{
	struct winsize ws;
	const char *cols;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	cols = getenv("COLUMNS");
	if (cols && atoi(cols) > 0)
		return atoi(cols);
	return 80;
}

void cfs_progress_draw(struct cfs_progress *p, bool force)
{
	uint64_t now = cfs_now_ns();
	char line[512];
	int n, width;

	if (!p->enabled || (!force && now - p->last_draw_ns < 100000000ULL))
		return;
	p->last_draw_ns = now;
	width = CFS_MIN(term_width(), (int)sizeof(line) - 1);
	n = cfs_progress_format(p, now, width, line, sizeof(line));
	/* Spaces over the rest of the last line (no escape codes: a dumb terminal works too). */
	fprintf(stderr, "\r%s%*s", line, p->drawn_len > n ? p->drawn_len - n : 0, "");
	if (p->drawn_len > n)
		fprintf(stderr, "\r%s", line);
	p->drawn_len = n;
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
		fprintf(stderr, "\r%*s\r", p->drawn_len, "");
	p->drawn = false;
	p->drawn_len = 0;
}
