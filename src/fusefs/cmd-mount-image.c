/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache mount-image`: mounts a composefs image like mount.composefs does, with
 * the new mount API: a detached EROFS mount of the image (file-backed, or through a loop device
 * on older kernels) under an overlayfs whose data-only layers are the local store and FUSE. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "fusefs/cmds.h"

#define MAX_BASEDIRS 8

/* Prints the messages the kernel queued on a filesystem context. */
static void drain_fs_messages(int fsfd)
{
	char buf[512];
	ssize_t n;

	while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		fprintf(stderr, "cfs-cache mount-image: kernel: %s\n", buf);
	}
}

static int set_string(int fsfd, const char *key, const char *value)
{
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, key, value, 0) < 0) {
		int r = -errno;

		fprintf(stderr, "cfs-cache mount-image: %s=%s: %s\n", key, value ? value : "",
			strerror(-r));
		drain_fs_messages(fsfd);
		return r;
	}
	return 0;
}

/* Attaches @image to a free loop device, read-only, cleared when the last user goes away. */
static int attach_loop(const char *image, char *dev, size_t devlen, int *loopfd_ret)
{
	struct loop_config cfg = { 0 };
	int ctl = -1, imgfd = -1, loopfd = -1, r;
	long nr;

	imgfd = open(image, O_RDONLY | O_CLOEXEC);
	if (imgfd < 0)
		return -errno;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		r = -errno;
		goto out;
	}
	for (int attempt = 0; attempt < 10; attempt++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0) {
			r = -errno;
			goto out;
		}
		snprintf(dev, devlen, "/dev/loop%ld", nr);
		loopfd = open(dev, O_RDONLY | O_CLOEXEC);
		if (loopfd < 0) {
			r = -errno;
			goto out;
		}
		cfg.fd = (unsigned)imgfd;
		cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		if (ioctl(loopfd, LOOP_CONFIGURE, &cfg) == 0) {
			*loopfd_ret = loopfd;
			loopfd = -1;
			r = 0;
			goto out;
		}
		r = -errno;
		close(loopfd);
		loopfd = -1;
		if (r != -EBUSY)
			goto out;
	}
out:
	if (loopfd >= 0)
		close(loopfd);
	if (ctl >= 0)
		close(ctl);
	close(imgfd);
	return r;
}

/* Returns a detached, read-only mount of the EROFS image, or -errno. */
static int mount_erofs(const char *image)
{
	char dev[64];
	int fsfd, mfd = -1, loopfd = -1, r;

	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	/* Kernels since 6.12 mount an image file directly; older ones need a block device. */
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", image, 0) == 0 &&
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		goto created;
	while (read(fsfd, dev, sizeof(dev)) > 0)
		; /* discard the messages of the failed attempt */
	close(fsfd);
	r = attach_loop(image, dev, sizeof(dev), &loopfd);
	if (r < 0) {
		fprintf(stderr, "cfs-cache mount-image: cannot attach %s to a loop device: %s\n",
			image, strerror(-r));
		return r;
	}
	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0) {
		r = -errno;
		goto out;
	}
	r = set_string(fsfd, "source", dev);
	if (r < 0)
		goto out;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: %s is not an EROFS image: %s\n", image,
			strerror(-r));
		drain_fs_messages(fsfd);
		goto out;
	}
created:
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	r = mfd < 0 ? -errno : mfd;
out:
	if (loopfd >= 0)
		close(loopfd); /* autoclear: the loop device goes with the mount */
	if (fsfd >= 0)
		close(fsfd);
	return r;
}

static int mount_overlay(int erofs_mfd, const char *const *basedirs, size_t n,
			 const char *mountpoint)
{
	char lower[64];
	int fsfd, mfd = -1, r;

	fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	snprintf(lower, sizeof(lower), "/proc/self/fd/%d", erofs_mfd);
	r = set_string(fsfd, "source", "composefs");
	if (r == 0)
		r = set_string(fsfd, "lowerdir+", lower);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = set_string(fsfd, "datadir+", basedirs[i]);
	if (r == 0)
		r = set_string(fsfd, "metacopy", "on");
	if (r == 0)
		r = set_string(fsfd, "redirect_dir", "on");
	if (r < 0)
		goto out;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: overlayfs refused the layers: %s\n",
			strerror(-r));
		drain_fs_messages(fsfd);
		goto out;
	}
	/* Read-only like mount.composefs, device nodes allowed: the image may be a root fs. */
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
	if (mfd < 0) {
		r = -errno;
		goto out;
	}
	if (move_mount(mfd, "", AT_FDCWD, mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: cannot mount on %s: %s\n", mountpoint,
			strerror(-r));
		goto out;
	}
	r = 0;
out:
	if (mfd >= 0)
		close(mfd);
	close(fsfd);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cfs-cache mount-image IMAGE MOUNTPOINT --store DIR [--remote FUSE_MOUNT]\n"
		"                             [--basedir DIR]...\n\n"
		"Mounts a composefs image read-only: the EROFS metadata image under overlayfs\n"
		"(metacopy=on, redirect_dir=on) with the local store as the first data-only layer\n"
		"and the cfs-cache FUSE mount as the second, so objects present locally never\n"
		"reach FUSE. Equivalent to:\n"
		"  mount -t composefs IMAGE -o basedir=STORE:FUSE_MOUNT MOUNTPOINT\n"
		"Unmount with umount MOUNTPOINT.\n\n"
		"  --store DIR          local object store (first basedir)\n"
		"  --remote DIR         cfs-cache FUSE mount (next basedir)\n"
		"  --basedir DIR        further basedirs, tried in the order given\n"
		"  -h, --help           this help\n");
}

int cfs_cache_cmd_mount_image(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "remote", required_argument, NULL, 'r' },
		{ "basedir", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *basedirs[MAX_BASEDIRS];
	const char *store = NULL;
	const char *extra[MAX_BASEDIRS];
	size_t n = 0, nextra = 0;
	struct stat st;
	int c, mfd, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			store = optarg;
			break;
		case 'r':
		case 'b':
			if (nextra == MAX_BASEDIRS - 1) {
				fprintf(stderr, "cfs-cache mount-image: too many basedirs\n");
				return CFS_EXIT_MISUSE;
			}
			extra[nextra++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return CFS_EXIT_MISUSE;
		}
	}
	if (argc - optind != 2 || (!store && nextra == 0)) {
		usage(stderr);
		return CFS_EXIT_MISUSE;
	}
	if (store)
		basedirs[n++] = store;
	for (size_t i = 0; i < nextra; i++)
		basedirs[n++] = extra[i];
	for (size_t i = 0; i < n; i++) {
		if (stat(basedirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "cfs-cache mount-image: %s is not a directory\n", basedirs[i]);
			return 1;
		}
	}
	if (stat(argv[optind], &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "cfs-cache mount-image: %s: not a regular file\n", argv[optind]);
		return 1;
	}
	mfd = mount_erofs(argv[optind]);
	if (mfd < 0) {
		fprintf(stderr, "cfs-cache mount-image: cannot mount %s: %s\n", argv[optind],
			strerror(-mfd));
		return 1;
	}
	r = mount_overlay(mfd, basedirs, n, argv[optind + 1]);
	close(mfd); /* the overlay keeps the EROFS mount alive; nothing else refers to it */
	return r < 0 ? 1 : 0;
}
