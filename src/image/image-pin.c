/* SPDX-License-Identifier: MIT */
/* cfscache: the objects of images pinned in a quota (the mount's --pin, gc --keep); apart from
 * the reader so that the reader links without the store. */
#include "config.h"

#include <stdlib.h>

#include "common/quota.h"
#include "image/image.h"

int cfs_image_pin_files(struct cfs_quota *quota, char *const *paths, size_t n)
{
	uint8_t *digests = NULL;
	size_t count = 0;
	int r = cfs_image_objects_of_files(paths, n, &digests, &count);

	if (r == 0)
		r = cfs_quota_pin_many(quota, digests, count);
	free(digests);
	return r < 0 ? r : (int)count;
}
