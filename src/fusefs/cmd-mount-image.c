/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache mount-image`: mounts a composefs image like mount.composefs does, with
 * the new mount API: a detached EROFS mount of the image (file-backed, or through a loop device
 * on older kernels) under an overlayfs whose data-only layers are the local store and FUSE. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/xattr.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fsverity.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "fusefs/cmds.h"
#include "image/image.h"

#define MAX_BASEDIRS 8

/* Prints (or with !@show, drops) the messages the kernel queued on a filesystem context. */
static void drain_fs_messages(int fsfd, bool show)
{
	char buf[512];
	ssize_t n;

	while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		if (show)
			fprintf(stderr, "cfs-cache mount-image: kernel: %s\n", buf);
	}
}

static int set_string(int fsfd, const char *key, const char *value)
{
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, key, value, 0) < 0) {
		int r = -errno;

		fprintf(stderr, "cfs-cache mount-image: %s=%s: %s\n", key, value ? value : "",
		        strerror(-r));
		drain_fs_messages(fsfd, true);
		return r;
	}
	return 0;
}

/* Attaches @image to a free loop device, read-only, cleared when the last user goes away. */
static int attach_loop(const char *image, char *dev, size_t devlen, int *loopfd_ret)
{
	struct loop_config cfg = {0};
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

/* Returns a detached, read-only mount of the EROFS image at @image, or -errno after saying why
 * (naming it @name). */
static int mount_erofs(const char *image, const char *name)
{
	char dev[64];
	int fsfd, mfd = -1, loopfd = -1, r;

	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: this kernel cannot mount EROFS: %s\n",
		        strerror(-r));
		return r;
	}
	/* Kernels since 6.12 mount an image file directly; older ones need a block device (they
	 * say ENOTBLK). Any other refusal is the image's fault: say so, do not try a loop. */
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", image, 0) == 0 &&
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		goto created;
	r = -errno;
	if (r != -ENOTBLK) {
		fprintf(stderr, "cfs-cache mount-image: %s: %s\n", name,
		        r == -EINVAL
		            ? "not a valid EROFS image (the kernel found no valid superblock; "
		              "see dmesg)"
		            : strerror(-r));
		drain_fs_messages(fsfd, true);
		close(fsfd);
		return r;
	}
	drain_fs_messages(fsfd, false);
	close(fsfd);
	r = attach_loop(image, dev, sizeof(dev), &loopfd);
	if (r < 0) {
		fprintf(stderr, "cfs-cache mount-image: cannot attach %s to a loop device: %s\n",
		        name, strerror(-r));
		return r;
	}
	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: %s\n", strerror(-r));
		goto out;
	}
	r = set_string(fsfd, "source", dev);
	if (r < 0)
		goto out;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: %s is not an EROFS image: %s\n", name,
		        strerror(-r));
		drain_fs_messages(fsfd, true);
		goto out;
	}
created:
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	r = mfd < 0 ? -errno : mfd;
	if (r < 0)
		fprintf(stderr, "cfs-cache mount-image: cannot mount %s: %s\n", name, strerror(-r));
out:
	if (loopfd >= 0)
		close(loopfd); /* autoclear: the loop device goes with the mount */
	if (fsfd >= 0)
		close(fsfd);
	return r;
}

/* Appends @path to @buf with the escapes the legacy lowerdir= syntax needs. */
static int append_escaped(char *buf, size_t size, size_t *len, const char *path)
{
	for (const char *p = path; *p; p++) {
		bool esc = *p == ':' || *p == ',' || *p == '\\';

		if (*len + (esc ? 2 : 1) >= size)
			return -ENAMETOOLONG;
		if (esc)
			buf[(*len)++] = '\\';
		buf[(*len)++] = *p;
	}
	buf[*len] = '\0';
	return 0;
}

/* Sets the layers: lowerdir+/datadir+ (Linux 6.8+) where the kernel has them, else the older
 * "lowerdir=META::DATA1::DATA2" form of data-only layers (Linux 6.5+). */
static int set_layers(int fsfd, const char *lower, const char *const *basedirs, size_t n)
{
	char legacy[16384];
	size_t len = 0;
	int r;

	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", lower, 0) == 0) {
		r = 0;
		for (size_t i = 0; r == 0 && i < n; i++)
			r = set_string(fsfd, "datadir+", basedirs[i]);
		return r;
	}
	if (errno != EINVAL)
		return set_string(fsfd, "lowerdir+", lower);
	drain_fs_messages(fsfd, false);
	r = append_escaped(legacy, sizeof(legacy), &len, lower);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (len + 2 >= sizeof(legacy))
			return -ENAMETOOLONG;
		legacy[len++] = ':';
		legacy[len++] = ':';
		r = append_escaped(legacy, sizeof(legacy), &len, basedirs[i]);
	}
	if (r < 0)
		return r;
	r = fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", legacy, 0) < 0 ? -errno : 0;
	if (r < 0) {
		fprintf(stderr,
		        "cfs-cache mount-image: this kernel's overlayfs has no data-only "
		        "layers (Linux 6.5 or later is needed): %s\n",
		        strerror(-r));
		drain_fs_messages(fsfd, true);
	}
	return r;
}

static int mount_overlay(int erofs_mfd, const char *const *basedirs, size_t n,
                         const char *mountpoint, bool verity)
{
	char lower[64];
	int fsfd, mfd = -1, r;

	fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -errno;
	snprintf(lower, sizeof(lower), "/proc/self/fd/%d", erofs_mfd);
	r = set_string(fsfd, "source", "composefs");
	if (r == 0)
		r = set_layers(fsfd, lower, basedirs, n);
	if (r == 0)
		r = set_string(fsfd, "metacopy", "on");
	if (r == 0)
		r = set_string(fsfd, "redirect_dir", "on");
	/* As mount.composefs with a digest on a filesystem with fs-verity: every object's digest is
	 * checked against the one the image names. */
	if (r == 0 && verity)
		r = set_string(fsfd, "verity", "require");
	if (r < 0)
		goto out;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		r = -errno;
		fprintf(stderr, "cfs-cache mount-image: overlayfs refused the layers: %s\n",
		        strerror(-r));
		drain_fs_messages(fsfd, true);
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

/* Checks that @remote is a live cfs-cache mount and finds its hand-off directory. Returns 1
 * with the path in @buf, 0 when the daemon hands nothing off (--no-handoff), or -errno after
 * saying why. */
static int remote_handoff(const char *remote, char *buf, size_t size)
{
	char flag[8];
	ssize_t len;

	len = getxattr(remote, "user.cfs.handoff", flag, sizeof(flag) - 1);
	if (len < 0) {
		int r = -errno;

		if (r == -ENOTCONN)
			fprintf(stderr,
			        "cfs-cache mount-image: %s: its cfs-cache is gone (transport "
			        "endpoint not connected): unmount it and start cfs-cache again\n",
			        remote);
		else
			fprintf(stderr,
			        "cfs-cache mount-image: %s is not a live cfs-cache mount "
			        "(%s): start cfs-cache on it first, or give it as --basedir\n",
			        remote,
			        r == -ENODATA || r == -ENOTSUP ? "no cfs-cache counters"
			                                       : strerror(-r));
		return r;
	}
	flag[len] = '\0';
	if (strcmp(flag, "1") != 0)
		return 0;
	len = getxattr(remote, "user.cfs.handoff_dir", buf, size - 1);
	if (len <= 0) {
		fprintf(stderr,
		        "cfs-cache mount-image: %s: cannot read its hand-off directory: %s\n",
		        remote, len < 0 ? strerror(errno) : "empty");
		return -EIO;
	}
	buf[len] = '\0';
	return 1;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: cfs-cache mount-image IMAGE MOUNTPOINT --store DIR [--remote FUSE_MOUNT]\n"
	    "                             [--basedir DIR]... [--digest sha256:HEX]\n"
	    "       cfs-cache mount-image --digest sha256:HEX MOUNTPOINT --store DIR\n"
	    "                             [--remote FUSE_MOUNT]\n\n"
	    "Mounts a composefs image read-only: the EROFS metadata image under overlayfs\n"
	    "(metacopy=on, redirect_dir=on) with the local store as the first data-only layer,\n"
	    "the cfs-cache FUSE mount as the second and its hand-off directory as the third, so\n"
	    "objects present locally never reach FUSE and fetched ones are read from the local\n"
	    "filesystem. Equivalent to:\n"
	    "  mount -t composefs IMAGE -o basedir=STORE:FUSE_MOUNT:HANDOFF MOUNTPOINT\n"
	    "Unmount with umount MOUNTPOINT.\n\n"
	    "  --store DIR          local object store (first basedir)\n"
	    "  --remote DIR         cfs-cache FUSE mount (next basedir, then its hand-off\n"
	    "                       directory, read from the mount)\n"
	    "  --basedir DIR        further basedirs, tried in the order given\n"
	    "  --digest D           the image's fs-verity digest: refuse an image with another;\n"
	    "                       without IMAGE, the image object is taken from the store or\n"
	    "                       fetched through --remote; where the store has fs-verity the\n"
	    "                       overlay checks every object (verity=require)\n"
	    "  -h, --help           this help\n");
}

/* Opens the object @digest of a store directory (or a hand-off directory). -errno. */
static int open_object_in(const char *dir, const uint8_t digest[CFS_DIGEST_SIZE])
{
	char rel[CFS_NAME_PATH_LEN + 1];
	int dfd, fd;

	cfs_name_format_path(digest, rel);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = cfs_store_openat_beneath(dfd, rel, O_RDONLY);
	close(dfd);
	return fd;
}

/* Finds the image object @digest: in the store, else through the first --remote (a lookup there
 * fetches it; it is then in the store or the hand-off directory, or with --no-handoff it is the
 * FUSE file itself). Returns an open fd or -errno after saying why. */
static int open_image_object(const char *store, const char *remote, const char *handoff_dir,
                             const uint8_t digest[CFS_DIGEST_SIZE])
{
	char rel[CFS_NAME_PATH_LEN + 1], path[PATH_MAX];
	int fd = store ? open_object_in(store, digest) : -ENOENT;

	if (fd >= 0 || fd != -ENOENT || !remote)
		goto out;
	cfs_name_format_path(digest, rel);
	snprintf(path, sizeof(path), "%s/%s", remote, rel);
	fd = open(path, O_RDONLY | O_CLOEXEC); /* the lookup fetches it */
	if (fd >= 0)
		goto out;
	fd = handoff_dir[0] ? open_object_in(handoff_dir, digest) : -ENOENT;
	if (fd == -ENOENT && store)
		fd = open_object_in(store, digest);
out:
	if (fd < 0) {
		char hex[CFS_DIGEST_HEX_SIZE + 1];

		cfs_name_format_hex(digest, hex);
		fprintf(stderr, "cfs-cache mount-image: image sha256:%s: %s%s\n", hex,
		        fd == -ENOENT ? "not in the store" : strerror(-fd),
		        fd == -ENOENT
		            ? (remote ? " nor on the servers of the remote mount (see its log)"
		                      : " (give --remote to fetch it)")
		            : "");
	}
	return fd;
}

/* Checks that the image open at @fd has the fs-verity digest @want: measured by the kernel
 * where the file has fs-verity (then *verity_ret is set: the store's objects have it too),
 * else hashed here. 0, or -EBADMSG after saying so. */
static int check_image_digest(int fd, const char *what, const uint8_t want[CFS_DIGEST_SIZE],
                              bool *verity_ret)
{
	struct {
		struct fsverity_digest d;
		uint8_t buf[CFS_DIGEST_SIZE];
	} m = {.d.digest_size = CFS_DIGEST_SIZE};
	uint8_t got[CFS_DIGEST_SIZE];
	char hw[CFS_DIGEST_HEX_SIZE + 1], hg[CFS_DIGEST_HEX_SIZE + 1];
	int r;

	*verity_ret = false;
	if (ioctl(fd, FS_IOC_MEASURE_VERITY, &m) == 0 &&
	    m.d.digest_algorithm == FS_VERITY_HASH_ALG_SHA256) {
		memcpy(got, m.d.digest, CFS_DIGEST_SIZE);
		*verity_ret = true;
	} else {
		r = cfs_digest_fd(fd, 0, got, NULL);
		if (r < 0) {
			fprintf(stderr, "cfs-cache mount-image: %s: %s\n", what, strerror(-r));
			return r;
		}
	}
	if (memcmp(got, want, CFS_DIGEST_SIZE) == 0)
		return 0;
	cfs_name_format_hex(want, hw);
	cfs_name_format_hex(got, hg);
	fprintf(stderr,
	        "cfs-cache mount-image: %s has digest sha256:%s, not the sha256:%s asked "
	        "for: refused\n",
	        what, hg, hw);
	return -EBADMSG;
}

/* What `mount-image` was asked for, and the layers it found. */
struct mount_image_cmd {
	const char *store, *image, *mountpoint, *first_remote;
	const char *extra[MAX_BASEDIRS];
	bool is_remote[MAX_BASEDIRS];
	size_t nextra;
	const char *basedirs[MAX_BASEDIRS];
	size_t n;
	char handoff[MAX_BASEDIRS][PATH_MAX], first_handoff[PATH_MAX];
	uint8_t want[CFS_DIGEST_SIZE];
	bool have_digest, verity;
};

/* Reads the command line: -1 to go on, else the exit status. */
static int mount_image_parse(struct mount_image_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"store", required_argument, NULL, 's'},   {"remote", required_argument, NULL, 'r'},
	    {"basedir", required_argument, NULL, 'b'}, {"digest", required_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cmd->store = optarg;
			break;
		case 'r':
		case 'b':
			if (cmd->nextra >= MAX_BASEDIRS - 2) {
				fprintf(stderr, "cfs-cache mount-image: too many basedirs\n");
				return CFS_EXIT_MISUSE;
			}
			cmd->is_remote[cmd->nextra] = c == 'r';
			cmd->extra[cmd->nextra++] = optarg;
			break;
		case 'D':
			if (cfs_name_parse_any(optarg, strlen(optarg), cmd->want) < 0) {
				fprintf(stderr,
				        "cfs-cache mount-image: --digest %s: not a digest "
				        "(sha256:HEX or 64 hex digits)\n",
				        optarg);
				return CFS_EXIT_MISUSE;
			}
			cmd->have_digest = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return CFS_EXIT_MISUSE;
		}
	}
	if (argc - optind == 2) {
		cmd->image = argv[optind];
		cmd->mountpoint = argv[optind + 1];
	} else if (argc - optind == 1 && cmd->have_digest) {
		cmd->mountpoint = argv[optind];
	} else {
		usage(stderr);
		return CFS_EXIT_MISUSE;
	}
	if (!cmd->store && cmd->nextra == 0) {
		usage(stderr);
		return CFS_EXIT_MISUSE;
	}
	return -1;
}

/* The basedirs in order: the store, then each --remote (followed by its daemon's hand-off
 * directory, see cfs-cache(1)) or --basedir. 0, or -1 after saying why. */
static int mount_image_layers(struct mount_image_cmd *cmd)
{
	struct stat st;
	int r;

	if (cmd->store)
		cmd->basedirs[cmd->n++] = cmd->store;
	for (size_t i = 0; i < cmd->nextra; i++) {
		cmd->basedirs[cmd->n++] = cmd->extra[i];
		if (!cmd->is_remote[i])
			continue;
		r = remote_handoff(cmd->extra[i], cmd->handoff[i], sizeof(cmd->handoff[i]));
		if (r < 0)
			return -1;
		if (!cmd->first_remote) {
			cmd->first_remote = cmd->extra[i];
			if (r > 0)
				snprintf(cmd->first_handoff, sizeof(cmd->first_handoff), "%s",
				         cmd->handoff[i]);
		}
		if (r > 0 && cmd->n < MAX_BASEDIRS)
			cmd->basedirs[cmd->n++] = cmd->handoff[i];
	}
	for (size_t i = 0; i < cmd->n; i++) {
		if (stat(cmd->basedirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "cfs-cache mount-image: %s is not a directory\n",
			        cmd->basedirs[i]);
			return -1;
		}
	}
	return 0;
}

/* Opens the image (its file, or the object --digest names) and checks it: its digest, when
 * given, is the root of trust; what the kernel would accept but cannot serve (a truncated
 * image), or would resolve where it must not (a redirect that is not its file's own object),
 * is refused here. The descriptor, or -1 after saying why. */
static int mount_image_open(struct mount_image_cmd *cmd)
{
	char fdpath[64], msg[256] = "";
	struct stat st;
	int imgfd;

	if (cmd->image) {
		imgfd = open(cmd->image, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (imgfd < 0 || fstat(imgfd, &st) < 0 || !S_ISREG(st.st_mode)) {
			fprintf(stderr, "cfs-cache mount-image: %s: %s\n", cmd->image,
			        imgfd < 0 ? strerror(errno) : "not a regular file");
			if (imgfd >= 0)
				close(imgfd);
			return -1;
		}
	} else {
		imgfd =
		    open_image_object(cmd->store, cmd->first_remote, cmd->first_handoff, cmd->want);
		if (imgfd < 0)
			return -1;
		cmd->image = "the image object";
	}
	if (cmd->have_digest &&
	    check_image_digest(imgfd, cmd->image, cmd->want, &cmd->verity) < 0) {
		close(imgfd);
		return -1;
	}
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", imgfd);
	if (cfs_image_check(fdpath, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "cfs-cache mount-image: %s: %s\n", cmd->image,
		        msg[0] ? msg : "not a composefs image");
		close(imgfd);
		return -1;
	}
	return imgfd;
}

int cfs_cache_cmd_mount_image(int argc, char **argv)
{
	struct mount_image_cmd cmd = {.n = 0};
	char fdpath[64];
	int mfd, r, imgfd;

	r = mount_image_parse(&cmd, argc, argv);
	if (r >= 0)
		return r;
	if (mount_image_layers(&cmd) < 0)
		return 1;
	imgfd = mount_image_open(&cmd);
	if (imgfd < 0)
		return 1;
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", imgfd);
	mfd = mount_erofs(fdpath, cmd.image);
	if (mfd < 0) {
		close(imgfd);
		return 1;
	}
	r = mount_overlay(mfd, cmd.basedirs, cmd.n, cmd.mountpoint, cmd.verity);
	close(mfd); /* the overlay keeps the EROFS mount alive; nothing else refers to it */
	close(imgfd);
	return r < 0 ? 1 : 0;
}
