/* SPDX-License-Identifier: MIT */
/* cfscache: libFuzzer entry point for the composefs-dump parser and the writer (parse, lay out,
 * read the image back). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfs_tree *tree = NULL;
	uint8_t *img = NULL;
	size_t len = 0, line = 0;
	char msg[256];
	FILE *f;

	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	if (cfs_tree_from_dump(f, &tree, &line) == 0) {
		/* What the writer accepts must come out as an image the reader takes. */
		if (cfs_tree_write(tree, NULL, &img, &len) == 0) {
			if (!devnull)
				devnull = fopen("/dev/null", "w");
			if (devnull && cfs_image_dump(img, len, devnull, msg, sizeof(msg)) < 0 &&
			    !strstr(msg, "redirect"))
				abort();
		}
		cfs_tree_free(tree);
		free(img);
	}
	fclose(f);
	return 0;
}
