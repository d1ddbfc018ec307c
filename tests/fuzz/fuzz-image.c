/* SPDX-License-Identifier: MIT */
/* cfscache: libFuzzer entry point for the composefs image reader (open a buffer, walk, objects,
 * dump). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "image/writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches what the walk hands out so the sanitizers see every byte of it. */
static int touch(const struct cfs_image_entry *e, void *userdata)
{
	unsigned *sum = userdata;

	*sum += (unsigned)strlen(e->path) + (unsigned)e->path_len + e->mode;
	if (e->symlink)
		*sum += (unsigned)strlen(e->symlink);
	if (e->redirect)
		*sum += (unsigned)strlen(e->redirect) + (unsigned)e->redirect_len;
	if (e->has_object)
		*sum += e->object[0] + e->object[31];
	return 0;
}

static FILE *devnull;

static void run(const uint8_t *data, size_t size)
{
	struct cfs_image *img = NULL;
	uint8_t *digests = NULL;
	size_t n = 0;
	unsigned sum = 0;

	if (cfs_image_open_buffer(data, size, &img) < 0)
		return;
	if (cfs_image_walk(img, CFS_IMAGE_WALK_ROOT, touch, &sum) < 0 &&
	    cfs_image_error(img)[0] == '\0')
		abort(); /* every failure must say why */
	if (cfs_image_objects(img, &digests, &n) == 0 && n && !digests)
		abort();
	free(digests);
	cfs_image_free(img);
	/* The dump reads every xattr and inline content too. */
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (devnull) {
		char msg[256];

		if (cfs_image_dump(data, size, devnull, msg, sizeof(msg)) < 0 && !msg[0])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	run(data, size);
	/* Mutations nearly always break the superblock checksum and the block count; walk a copy
	 * without both as well so the fuzzer reaches the tree. */
	if (size < 1024 + 128)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[1024 + 8] &= (uint8_t)~1;
	memset(copy + 1024 + 36, 0, 4);
	run(copy, size);
	free(copy);
	return 0;
}
