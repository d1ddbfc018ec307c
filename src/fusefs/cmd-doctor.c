/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache doctor`: checks, by really trying them, what a node needs (kernel
 * features, store, hand-off directory, servers, a live mount) and says what to do about each
 * failure. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/fsverity.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/handoff.h"
#include "common/name.h"
#include "common/util.h"
#include "fetcher/fetch.h"
#include "fusefs/cmds.h"
#include "fusefs/fetch-cli.h"
#include "image/image.h"

/* The client options doctor takes: servers, TLS and token, connect timeout. */
#define DOCTOR_OPTS (CFS_FETCH_OPT(SERVER) | CFS_FETCH_OPT_TLS | CFS_FETCH_OPT(CONNECT_TIMEOUT))

enum verdict { V_OK, V_WARN, V_FAIL };

struct doctor {
	bool json, first;
	unsigned fails, warnings;
	int kmajor, kminor; /* running kernel */
	char tmp[PATH_MAX]; /* scratch directory for the probes, "" when none */
};

/* Reports one check: its verdict, what was found and, for a warning or failure, what to do. */
static void __attribute__((format(printf, 5, 6)))
report(struct doctor *d, enum verdict v, const char *check, const char *fix, const char *fmt, ...)
{
	static const char *const names[] = {"ok", "warn", "FAIL"};
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (v == V_FAIL)
		d->fails++;
	else if (v == V_WARN)
		d->warnings++;
	if (d->json) {
		printf("%s\n    {\"check\": ", d->first ? "" : ",");
		cfs_cache_print_json_string(check);
		printf(", \"verdict\": \"%s\", \"detail\": ", v == V_FAIL ? "fail" : names[v]);
		cfs_cache_print_json_string(detail);
		if (fix && v != V_OK) {
			printf(", \"fix\": ");
			cfs_cache_print_json_string(fix);
		}
		printf("}");
	} else {
		printf("%-4s  %-16s %s\n", names[v], check, detail);
		if (fix && v != V_OK)
			printf("      %-16s -> %s\n", "", fix);
	}
	d->first = false;
}

static bool kernel_at_least(const struct doctor *d, int major, int minor)
{
	return d->kmajor > major || (d->kmajor == major && d->kminor >= minor);
}

static bool in_proc_filesystems(const char *fs)
{
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/filesystems", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');

		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = '\0';
		found = strcmp(name, fs) == 0;
	}
	fclose(f);
	return found;
}

static int make_dir(const struct doctor *d, const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", d->tmp, name);
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static void check_kernel(struct doctor *d)
{
	struct utsname u;
	int fd;

	if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &d->kmajor, &d->kminor) == 2)
		report(d, V_OK, "kernel", NULL, "Linux %s", u.release);
	else
		report(d, V_WARN, "kernel", "check uname -r", "cannot read the kernel version");
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		report(d, V_OK, "fuse", NULL, "/dev/fuse opens read-write");
	} else if (errno == ENOENT || errno == ENODEV || errno == ENXIO) {
		report(d, V_FAIL, "fuse",
		       "modprobe fuse (CONFIG_FUSE_FS), or give the container "
		       "/dev/fuse",
		       "/dev/fuse: %s", strerror(errno));
	} else {
		report(d, V_FAIL, "fuse", "run cfs-cache as root (or with CAP_SYS_ADMIN)",
		       "/dev/fuse: %s", strerror(errno));
	}
	/* Only used with --no-handoff --passthrough: a warning at worst. */
	if (kernel_at_least(d, 6, 9))
		report(d, V_OK, "fuse-passthrough", NULL,
		       "kernel 6.9+ has it (used only with --no-handoff --passthrough)");
	else
		report(d, V_WARN, "fuse-passthrough", "Linux 6.9 or newer for --passthrough",
		       "kernel before 6.9: --passthrough reads go through the daemon");
}

/* Tries to create (not mount) an overlay with data-only layers, in the syntax given. */
static int try_overlay(const char *lower, const char *data, bool plus)
{
	char legacy[2 * PATH_MAX + 4];
	int fsfd = fsopen("overlay", FSOPEN_CLOEXEC), r = 0;

	if (fsfd < 0)
		return -errno;
	snprintf(legacy, sizeof(legacy), "%s::%s", lower, data);
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "metacopy", "on", 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "redirect_dir", "on", 0) < 0)
		r = -errno;
	else if (plus && (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", lower, 0) < 0 ||
	                  fsconfig(fsfd, FSCONFIG_SET_STRING, "datadir+", data, 0) < 0))
		r = -errno;
	else if (!plus && fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", legacy, 0) < 0)
		r = -errno;
	else if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		r = -errno;
	close(fsfd);
	return r;
}

static void check_overlay(struct doctor *d)
{
	char lower[PATH_MAX], data[PATH_MAX];
	int r;

	if (!d->tmp[0] || make_dir(d, "lower", lower, sizeof(lower)) < 0 ||
	    make_dir(d, "data", data, sizeof(data)) < 0) {
		report(d, V_WARN, "overlay", "run with a writable TMPDIR",
		       "unknown: no scratch "
		       "directory for the probe");
		return;
	}
	r = try_overlay(lower, data, true);
	if (r == 0) {
		report(d, V_OK, "overlay", NULL, "data-only layers with lowerdir+/datadir+ (6.8+)");
		return;
	}
	if (r == -EPERM) {
		report(d, V_WARN, "overlay", "run cfs-cache doctor as root",
		       "unknown: creating an "
		       "overlay needs root");
		return;
	}
	if (r == -ENODEV) {
		report(d, V_FAIL, "overlay", "modprobe overlay (CONFIG_OVERLAY_FS)",
		       "no overlay filesystem in this kernel");
		return;
	}
	r = try_overlay(lower, data, false);
	if (r == 0)
		report(d, V_OK, "overlay", NULL,
		       "data-only layers with lowerdir=A::B (6.5+; no "
		       "lowerdir+/datadir+)");
	else
		report(d, V_FAIL, "overlay", "Linux 6.5 or newer is needed for composefs",
		       "no data-only layers (lowerdir=A::B refused: %s)", strerror(-r));
}

/* Runs a command with its output dropped; true when it exited 0. */
static bool run_quietly(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return false;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void check_erofs(struct doctor *d)
{
	char src[PATH_MAX], image[PATH_MAX];
	int fsfd, r = 0;

	if (!in_proc_filesystems("erofs")) {
		fsfd = fsopen("erofs", FSOPEN_CLOEXEC); /* loads the module */
		if (fsfd < 0 && errno == ENODEV) {
			report(d, V_FAIL, "erofs", "modprobe erofs (CONFIG_EROFS_FS)",
			       "no EROFS filesystem in this kernel");
			return;
		}
		if (fsfd >= 0)
			close(fsfd);
	}
	snprintf(image, sizeof(image), "%s/probe.erofs", d->tmp);
	if (!d->tmp[0] || make_dir(d, "erofs-src", src, sizeof(src)) < 0 ||
	    !run_quietly((char *[]){"mkfs.erofs", "--quiet", image, src, NULL})) {
		report(d, V_WARN, "erofs", "install erofs-utils to let doctor make a test image",
		       "EROFS present; file-backed mounts unknown (no mkfs.erofs)");
		return;
	}
	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0 || fsconfig(fsfd, FSCONFIG_SET_STRING, "source", image, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		r = -errno;
	if (fsfd >= 0)
		close(fsfd);
	if (r == 0)
		report(d, V_OK, "erofs", NULL, "file-backed image mounts (6.12+)");
	else if (r == -EPERM)
		report(d, V_WARN, "erofs", "run cfs-cache doctor as root",
		       "unknown: mounting a test image needs root");
	else
		report(d, V_WARN, "erofs",
		       "Linux 6.12+ mounts image files directly; until then "
		       "mount-image needs /dev/loop-control",
		       "no file-backed mounts (%s): images go "
		       "through a loop device",
		       strerror(-r));
}

/* The store's scratch file: writable store, fs-verity on its filesystem, hard links to the
 * hand-off directory. Returns an open descriptor (its name in @path) or -errno. */
static int store_scratch(const char *store, char *path, size_t len)
{
	char block[4096] = {0};
	int fd;

	snprintf(path, len, "%s/.cfs-doctor.XXXXXX", store);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (cfs_write_full(fd, block, sizeof(block)) < 0 || fsync(fd) < 0) {
		int r = -errno;

		close(fd);
		unlink(path);
		return r;
	}
	return fd;
}

static void check_verity(struct doctor *d, int fd, const char *path)
{
	struct fsverity_enable_arg arg = {
	    .version = 1,
	    .hash_algorithm = FS_VERITY_HASH_ALG_SHA256,
	    .block_size = 4096,
	};
	int ro = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	close(fd); /* no writable descriptor may be open for ENABLE_VERITY */
	if (ro < 0 || ioctl(ro, FS_IOC_ENABLE_VERITY, &arg) < 0)
		r = -errno;
	if (ro >= 0)
		close(ro);
	if (r == 0)
		report(d, V_OK, "fs-verity", NULL, "enabled on a test file in the store");
	else if (r == -EOPNOTSUPP || r == -ENOTTY)
		report(d, V_WARN, "fs-verity",
		       "for verity=on/require mounts: ext4 or btrfs with "
		       "fs-verity (tune2fs -O verity)",
		       "not on the store's filesystem: objects "
		       "verified by hash only");
	else
		report(d, V_WARN, "fs-verity", "check the store's filesystem options",
		       "cannot enable it on a test file: %s", strerror(-r));
}

static void check_space(struct doctor *d, const char *store, uint64_t max_size)
{
	char a[32], b[32], c[32];
	struct statvfs sv;
	uint64_t total, avail;

	if (statvfs(store, &sv) < 0) {
		report(d, V_FAIL, "free space", "check the store path", "statvfs %s: %s", store,
		       strerror(errno));
		return;
	}
	total = (uint64_t)sv.f_blocks * sv.f_frsize;
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (avail < (1ULL << 30) || avail < total / 20)
		report(d, V_WARN, "free space",
		       "free space, or give --max-size so the mount evicts", "%s free of %s",
		       cfs_format_size(avail, a, sizeof(a)), cfs_format_size(total, b, sizeof(b)));
	else
		report(d, V_OK, "free space", NULL, "%s free of %s",
		       cfs_format_size(avail, a, sizeof(a)), cfs_format_size(total, b, sizeof(b)));
	if (!max_size)
		return;
	if (max_size > total)
		report(d, V_FAIL, "max-size", "a --max-size below the filesystem's size",
		       "--max-size %s is more than the whole filesystem (%s)",
		       cfs_format_size(max_size, c, sizeof(c)),
		       cfs_format_size(total, b, sizeof(b)));
	else
		report(d, V_OK, "max-size", NULL, "--max-size %s fits a %s filesystem",
		       cfs_format_size(max_size, c, sizeof(c)),
		       cfs_format_size(total, b, sizeof(b)));
}

static bool path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	return strncmp(inner, outer, n) == 0 &&
	       (inner[n] == '\0' || inner[n] == '/' || strcmp(outer, "/") == 0);
}

/* The hand-off directory: the store's filesystem, outside it, writable (a hard link of the
 * store's scratch file is made there). */
static void check_handoff(struct doctor *d, const char *store, const char *handoff,
                          const char *scratch)
{
	char real_s[PATH_MAX], real_h[PATH_MAX], parent[PATH_MAX], link_path[PATH_MAX + 64];
	const char *probe_dir = handoff;
	struct stat ss, hs;

	if (!realpath(store, real_s) || stat(real_s, &ss) < 0)
		return;
	if (stat(handoff, &hs) < 0) {
		char *slash;

		/* Not made yet: the mount creates it in its parent. */
		snprintf(parent, sizeof(parent), "%s", handoff);
		slash = strrchr(parent, '/');
		if (slash == parent)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			snprintf(parent, sizeof(parent), ".");
		if (stat(parent, &hs) < 0) {
			report(d, V_FAIL, "hand-off",
			       "create its parent directory, or give --handoff",
			       "%s: parent %s: %s", handoff, parent, strerror(errno));
			return;
		}
		probe_dir = parent;
	}
	if (!S_ISDIR(hs.st_mode)) {
		report(d, V_FAIL, "hand-off", "give --handoff a directory", "%s is not a directory",
		       handoff);
		return;
	}
	if (hs.st_dev != ss.st_dev) {
		report(d, V_FAIL, "hand-off",
		       "put it on the store's filesystem (default: "
		       "STORE.handoff beside the store)",
		       "%s is on another filesystem than the store "
		       "%s: objects cannot be hard-linked there",
		       handoff, store);
		return;
	}
	if (realpath(probe_dir, real_h) &&
	    (path_within(real_h, real_s) ||
	     (probe_dir == handoff && path_within(real_s, real_h)))) {
		report(d, V_FAIL, "hand-off",
		       "make it a sibling of the store (default: "
		       "STORE.handoff); overlayfs refuses nested layers",
		       "%s and the store %s are "
		       "nested",
		       handoff, store);
		return;
	}
	snprintf(link_path, sizeof(link_path), "%s/.cfs-doctor-link.%ld", probe_dir,
	         (long)getpid());
	if (scratch && link(scratch, link_path) < 0) {
		report(d, V_FAIL, "hand-off",
		       "check its permissions (and that the mount runs as "
		       "root)",
		       "cannot hard-link a store file into %s: %s", probe_dir, strerror(errno));
		return;
	}
	if (scratch)
		unlink(link_path);
	report(d, V_OK, "hand-off", NULL,
	       "%s%s: same filesystem as the store, not nested, "
	       "writable",
	       handoff, probe_dir == handoff ? "" : " (created at mount)");
}

static void check_store(struct doctor *d, const char *store, const char *handoff, uint64_t max_size)
{
	char scratch[PATH_MAX], *def = NULL;
	struct stat st;
	int fd;

	if (stat(store, &st) < 0) {
		report(d, errno == ENOENT ? V_WARN : V_FAIL, "store",
		       "mkdir -p the store (the mount creates it; then run doctor again)", "%s: %s",
		       store, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		report(d, V_FAIL, "store", "give --store a directory", "%s is not a directory",
		       store);
		return;
	}
	fd = store_scratch(store, scratch, sizeof(scratch));
	if (fd < 0) {
		report(d, V_FAIL, "store", "check its owner and mount options (read-only?)",
		       "%s is not writable: %s", store, strerror(-fd));
	} else {
		report(d, V_OK, "store", NULL, "%s is writable", store);
	}
	check_space(d, store, max_size);
	if (!handoff && cfs_handoff_default_path(store, &def) == 0)
		handoff = def;
	if (handoff)
		check_handoff(d, store, handoff, fd >= 0 ? scratch : NULL);
	if (fd >= 0) {
		check_verity(d, fd, scratch);
		unlink(scratch);
	}
	free(def);
}

static void check_server(struct doctor *d, const struct cfs_fetch_options *o, const char *url,
                         const char *object)
{
	static const char made_up[] =
	    "00/00000000000000000000000000000000000000000000000000000000000000";
	char full[4096], reason[512];
	size_t len = strlen(url);
	long status;
	int r;

	while (len > 1 && url[len - 1] == '/')
		len--;
	snprintf(full, sizeof(full), "%.*s/%s", (int)len, url, object ? object : made_up);
	r = cfs_fetch_probe(o, full, &status, reason, sizeof(reason));
	if (r < 0) {
		report(d, V_FAIL, "server",
		       r == -EPROTO
		           ? "check --ca-file and the certificate's "
		             "name"
		           : "check the URL, that the server runs and the network (firewall, "
		             "proxy)",
		       "%s: unreachable: %s", url, reason);
	} else if (status == 401 || status == 403) {
		report(d, V_FAIL, "server",
		       o->token_file ? "the token in --token-file is not "
		                       "accepted: get a valid one"
		                     : "the server wants a token: give --token-file",
		       "%s: HTTP %ld (token %s)", url, status,
		       o->token_file ? "refused" : "missing");
	} else if (object && status >= 200 && status < 300) {
		report(d, V_OK, "server", NULL, "%s: reachable%s, %s answers HTTP %ld", url,
		       o->token_file ? ", token accepted" : "", object, status);
	} else if (object && status == 404) {
		report(d, V_FAIL, "server",
		       "push the image's objects there (cfs-store push), or "
		       "check the base URL",
		       "%s: reachable, but %s is absent (HTTP 404)", url, object);
	} else if (!object && (status == 404 || (status >= 200 && status < 300))) {
		report(d, V_OK, "server", NULL,
		       "%s: reachable%s (HTTP %ld for a made-up name; give "
		       "--object to check a real one)",
		       url, o->token_file ? ", token accepted" : "", status);
	} else {
		report(d, V_FAIL, "server",
		       "check the server's logs and the base URL (it ends "
		       "where XX/ begins)",
		       "%s: HTTP %ld for %s", url, status, object ? object : "a made-up name");
	}
}

static int mount_attr(const char *mnt, const char *name, char *buf, size_t len)
{
	char full[128];
	ssize_t n;

	snprintf(full, sizeof(full), "user.cfs.%s", name);
	n = getxattr(mnt, full, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static void check_mount(struct doctor *d, const char *mnt, char *handoff, size_t handoff_len)
{
	char v[1024];

	if (mount_attr(mnt, "lookups", v, sizeof(v)) < 0) {
		report(d, V_FAIL, "mount",
		       "start cfs-cache on it (a dead mount left behind: "
		       "umount it first)",
		       "no cfs-cache daemon answers on %s: %s", mnt, strerror(errno));
		return;
	}
	report(d, V_OK, "mount", NULL, "the daemon on %s answers (%s lookups)", mnt, v);
	if (mount_attr(mnt, "handoff", v, sizeof(v)) == 0 && strcmp(v, "1") == 0) {
		if (mount_attr(mnt, "handoff_dir", v, sizeof(v)) == 0 && !handoff[0])
			snprintf(handoff, handoff_len, "%s", v);
		report(d, V_OK, "mount hand-off", NULL, "on, through %s", v);
	} else {
		report(d, V_WARN, "mount hand-off",
		       "mount without --no-handoff for composefs "
		       "(verity=on, stacked overlays)",
		       "off: objects are read through FUSE");
	}
	for (int i = 0; i < CFS_FETCH_OPTS_MAX_SERVERS; i++) {
		char name[32], *state;

		snprintf(name, sizeof(name), "server.%d", i);
		if (mount_attr(mnt, name, v, sizeof(v)) < 0)
			break;
		state = strstr(v, "state=");
		if (state && strncmp(state, "state=up", 8) == 0)
			report(d, V_OK, "mount server", NULL, "%s", v);
		else
			report(d, V_FAIL, "mount server",
			       "check that server (cfs-cache doctor "
			       "--server URL) and the daemon's log",
			       "%s", v);
	}
}

static void usage(const struct fetch_cli *cli, FILE *f)
{
	fprintf(f,
	        "Usage: cfs-cache doctor --store DIR [--server URL]... [OPTIONS]\n\n"
	        "Checks what a node needs, by trying it: FUSE, overlayfs data-only layers, EROFS\n"
	        "image files, fs-verity on the store's filesystem, the store and its hand-off\n"
	        "directory, each server, and a live mount. One line per check: ok, warn or FAIL,\n"
	        "with what to do about it. Exit 0 when nothing FAILs, 1 otherwise.\n\n"
	        "Options:\n"
	        "      --store DIR            the local object store\n");
	cfs_cli_print_help(cli, f);
	fprintf(f,
	        "      --object XX/<62hex>    an object each server must have (HEAD)\n"
	        "      --image FILE           a composefs image: its first object is checked so\n"
	        "      --handoff DIR          the hand-off directory (default: the mount's, else\n"
	        "                             STORE.handoff)\n"
	        "      --max-size SIZE        the --max-size the mount will get\n"
	        "      --mount DIR            a live cfs-cache mount: daemon, hand-off, servers'\n"
	        "                             state\n"
	        "      --json                 one JSON object instead of lines\n"
	        "  -h, --help                 this help\n");
}

enum { OPT_OBJECT = 0x300, OPT_IMAGE, OPT_HANDOFF, OPT_MAX_SIZE, OPT_MOUNT, OPT_JSON };

/* What the command line asked for. */
struct doctor_cmd {
	struct fetch_cli cli;
	const char *store, *object, *image, *mnt;
	char handoff[PATH_MAX], object_buf[CFS_NAME_PATH_LEN + 1];
	uint64_t max_size;
	struct doctor d;
};

/* The first object an image names, as XX/<62hex>. */
static int first_object_of(const char *image, char *name)
{
	char *paths[] = {(char *)image};
	uint8_t *digests = NULL;
	size_t count = 0;
	int r = cfs_image_objects_of_files(paths, 1, &digests, &count);

	if (r == 0 && count == 0)
		r = -ENOENT;
	if (r == 0)
		cfs_name_format_path(digests, name);
	free(digests);
	return r;
}

/* Reads the command line: -1 to go on, else the exit status. */
static int doctor_parse(struct doctor_cmd *cmd, int argc, char **argv)
{
	static const struct option own[] = {
	    {"store", required_argument, NULL, 's'},
	    {"object", required_argument, NULL, OPT_OBJECT},
	    {"image", required_argument, NULL, OPT_IMAGE},
	    {"handoff", required_argument, NULL, OPT_HANDOFF},
	    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
	    {"mount", required_argument, NULL, OPT_MOUNT},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	};
	const struct option *opts = cfs_cli_longopts(&cmd->cli, own, CFS_ARRAY_SIZE(own));
	uint8_t digest[CFS_DIGEST_SIZE];
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+hS:k", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cmd->store = optarg;
			break;
		case OPT_OBJECT:
			if (cfs_name_parse_path(optarg, strlen(optarg), digest) < 0)
				return cfs_cli_usage_error("doctor",
				                           "--object: not XX/<62hex>:", optarg);
			cmd->object = optarg;
			break;
		case OPT_IMAGE:
			cmd->image = optarg;
			break;
		case OPT_HANDOFF:
			snprintf(cmd->handoff, sizeof(cmd->handoff), "%s", optarg);
			break;
		case OPT_MAX_SIZE:
			if (cfs_parse_size(optarg, &cmd->max_size) < 0 || cmd->max_size == 0)
				return cfs_cli_usage_error("doctor", "bad --max-size", optarg);
			break;
		case OPT_MOUNT:
			cmd->mnt = optarg;
			break;
		case OPT_JSON:
			cmd->d.json = true;
			break;
		case 'h':
			usage(&cmd->cli, stdout);
			return 0;
		default:
			r = cfs_cli_option(&cmd->cli, c, optarg, "doctor");
			if (r == 1)
				break;
			if (r == 0)
				fprintf(stderr, "Try 'cfs-cache doctor --help'.\n");
			return r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
		}
	}
	if (optind < argc)
		return cfs_cli_usage_error("doctor", "unexpected argument", argv[optind]);
	if (!cmd->store)
		return cfs_cli_usage_error("doctor", "--store is required", NULL);
	if (cmd->image && !cmd->object) {
		r = first_object_of(cmd->image, cmd->object_buf);
		if (r < 0) {
			fprintf(stderr, "cfs-cache doctor: --image %s: %s\n", cmd->image,
			        r == -ENOENT ? "names no object" : strerror(-r));
			return 1;
		}
		cmd->object = cmd->object_buf;
	}
	return -1;
}

/* Runs every check: the exit status. */
static int doctor_run(struct doctor_cmd *cmd)
{
	struct doctor *d = &cmd->d;
	const struct cfs_fetch_opts *fo = &cmd->cli.fo;
	const char *tmpdir = getenv("TMPDIR");

	snprintf(d->tmp, sizeof(d->tmp), "%s/cfs-doctor.XXXXXX", tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(d->tmp))
		d->tmp[0] = '\0';
	if (d->json)
		printf("{\"checks\": [");
	check_kernel(d);
	check_overlay(d);
	check_erofs(d);
	if (cmd->mnt)
		check_mount(d, cmd->mnt, cmd->handoff, sizeof(cmd->handoff));
	check_store(d, cmd->store, cmd->handoff[0] ? cmd->handoff : NULL, cmd->max_size);
	if (fo->n_servers == 0)
		report(d, V_WARN, "server", "give --server URL (the mount's servers)",
		       "none given: only the local store would be served");
	for (size_t i = 0; i < fo->n_servers; i++)
		check_server(d, &fo->o, fo->servers[i], cmd->object);
	if (d->json)
		printf("\n  ],\n  \"failures\": %u, \"warnings\": %u, \"ok\": %s}\n", d->fails,
		       d->warnings, d->fails ? "false" : "true");
	else
		printf("%u failure(s), %u warning(s)\n", d->fails, d->warnings);
	if (d->tmp[0])
		run_quietly((char *[]){"rm", "-rf", "--", d->tmp, NULL});
	return d->fails ? 1 : 0;
}

int cfs_cache_cmd_doctor(int argc, char **argv)
{
	struct doctor_cmd cmd = {.d = {.first = true}};
	int r;

	cfs_cli_init(&cmd.cli, DOCTOR_OPTS);
	r = doctor_parse(&cmd, argc, argv);
	if (r < 0)
		r = doctor_run(&cmd);
	cfs_cli_free(&cmd.cli);
	return r;
}
