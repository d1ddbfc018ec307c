/* SPDX-License-Identifier: MIT */
/* cfscache: read-only, bounds-checked reader of composefs (EROFS) images: walks the tree. */
#ifndef CFS_IMAGE_H
#define CFS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"

/* Images larger than this are refused (metadata images are small; this bounds memory). */
#define CFS_IMAGE_MAX_SIZE (4ULL << 30)
/* Deepest directory nesting and longest path the walker accepts. */
#define CFS_IMAGE_MAX_DEPTH 1024
#define CFS_IMAGE_MAX_PATH 4096

struct cfs_image;

/* Reads the whole image file into memory and checks its superblock. Returns 0, -errno from
 * I/O, -EUCLEAN (not a valid EROFS image; see cfs_image_error), -EOPNOTSUPP (a feature this
 * reader does not handle) or -EFBIG. Free with cfs_image_free. */
int cfs_image_open(const char *path, struct cfs_image **image_ret);
/* Same for an open descriptor (read with pread from offset 0; not closed). */
int cfs_image_open_fd(int fd, struct cfs_image **image_ret);
/* Same for a memory buffer, which is copied. */
int cfs_image_open_buffer(const void *data, size_t len, struct cfs_image **image_ret);
void cfs_image_free(struct cfs_image *image);

/* A human-readable description of the last error (e.g. "inode 42: xattrs beyond end of
 * image"), or "" when there was none. Valid until the next call on @image. */
const char *cfs_image_error(const struct cfs_image *image);
/* The same for a failed open, which leaves no image behind: open into a buffer the caller
 * provides. Returns 0 or the same codes as cfs_image_open_buffer. */
int cfs_image_open_buffer_msg(const void *data, size_t len, struct cfs_image **image_ret, char *msg,
                              size_t msglen);
int cfs_image_open_msg(const char *path, struct cfs_image **image_ret, char *msg, size_t msglen);

/* One inode reached by the walk, under one of its names. Pointers are valid during the
 * callback only. */
struct cfs_image_entry {
	const char *path; /* "/" for the root, else "/a/b" */
	size_t path_len;
	uint64_t nid;
	uint32_t mode; /* type and permission bits */
	uint32_t uid, gid, nlink;
	uint64_t size;
	uint64_t mtime; /* seconds (compact inodes: the superblock's build time) */
	uint32_t mtime_nsec;
	uint32_t rdev;        /* devices: the encoded device number */
	const char *symlink;  /* symlinks: the target (NUL-terminated), else NULL */
	const char *redirect; /* trusted.overlay.redirect value (NUL-terminated), or NULL */
	size_t redirect_len;
	bool flat;       /* data stored in the image itself (not chunk-based) */
	bool metacopy;   /* trusted.overlay.metacopy present and well-formed */
	bool has_digest; /* ...and carrying a SHA-256 fs-verity digest */
	uint8_t digest[CFS_DIGEST_SIZE];
	/* The object a regular file points at: the redirect when it names an object path
	 * "/XX/<62hex>", else the metacopy digest. False for inline and empty files. */
	bool has_object;
	uint8_t object[CFS_DIGEST_SIZE];
};

/* Called for every inode below the root in directory order (parents before children); the
 * root itself first when CFS_IMAGE_WALK_ROOT is given. A non-zero return stops the walk and
 * is returned by cfs_image_walk. */
typedef int (*cfs_image_walk_fn)(const struct cfs_image_entry *entry, void *userdata);

enum cfs_image_walk_flags {
	CFS_IMAGE_WALK_ROOT = 1 << 0,
};

/* Walks the tree from the root. Returns 0, the callback's non-zero value, -EUCLEAN for a
 * corrupt or hostile image (bad offsets, loops, bad names, ...), -EOPNOTSUPP, -ENAMETOOLONG
 * or -ENOMEM; cfs_image_error says where. Every offset is checked against the image size,
 * every directory is entered at most once, and the total work is bounded by the image size. */
int cfs_image_walk(struct cfs_image *image, unsigned flags, cfs_image_walk_fn fn, void *userdata);

/* Collects the sorted, unique objects of the image's regular files into *digests_ret (32
 * bytes each, caller frees; NULL when there are none) and their count into *count_ret.
 * Returns 0 or a walk error. */
int cfs_image_objects(struct cfs_image *image, uint8_t **digests_ret, size_t *count_ret);

struct cfs_quota;
/* Pins in @quota every object of the images at @paths (see cfs_quota_pin_many). Returns how
 * many objects were pinned, or -errno (a failing image is logged). */
int cfs_image_pin_files(struct cfs_quota *quota, char *const *paths, size_t n);
/* Opens and walks each of the images at @paths in turn (see cfs_image_walk, flags 0); a failure
 * is logged with the image's path and the reason, and ends the walk. Returns 0 or -errno. */
int cfs_image_walk_files(char *const *paths, size_t n, cfs_image_walk_fn fn, void *userdata);
/* The sorted union of the objects of several image files, for callers that only need that:
 * opens each, collects its objects, logs "<path>: <what is wrong>" through cfs_log on failure.
 * Returns 0 or the first error; the caller frees *digests_ret (32 bytes per object; NULL when
 * there are none). */
int cfs_image_objects_of_files(char *const *paths, size_t n, uint8_t **digests_ret,
                               size_t *count_ret);

/* Called for every xattr of an inode with its full name ("user.foo"); a non-zero return
 * stops and is returned. Pointers are valid during the callback only. */
typedef int (*cfs_image_xattr_fn)(const char *name, const uint8_t *value, size_t len,
                                  void *userdata);
/* Lists the xattrs of inode @nid (from a walk entry): inline ones first, then shared ones.
 * Returns 0, the callback's value or -EUCLEAN. */
int cfs_image_xattrs(struct cfs_image *image, uint64_t nid, cfs_image_xattr_fn fn, void *userdata);
/* Reads up to @len bytes of inode @nid's data from offset 0 into @buf (for inline content).
 * Returns the byte count (min(len, size)) or -EUCLEAN (e.g. data held elsewhere). */
ssize_t cfs_image_read_data(struct cfs_image *image, uint64_t nid, void *buf, size_t len);

/* Checks that @path is a composefs image that mounts as what it claims: superblock, size,
 * every inode and directory, every overlay redirect (see cfs_image_walk). Returns 0 or the
 * codes of cfs_image_open / cfs_image_walk, with the reason in @msg. For mount-image. */
int cfs_image_check(const char *path, char *msg, size_t msglen);

/* Number of inodes visited by the last walk (for statistics). */
uint64_t cfs_image_inodes_visited(const struct cfs_image *image);

#endif
