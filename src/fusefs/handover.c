/* SPDX-License-Identifier: MIT */
/* cfscache: keeping a FUSE connection across daemon processes: systemd readiness and fd store,
 * adoption of an inherited connection, re-exec for upgrades, and a supervising parent. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "fusefs/handover.h"

#define FDNAME_FUSE "cfs-fuse"
#define FDNAME_INIT "cfs-init"
/* A supervised worker that keeps dying is restarted at most this often. */
#define RESTART_MIN_MS 200
#define RESTART_MAX_MS 5000

int cfs_handover_from_env(struct cfs_handover *h)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	h->fuse_fd = h->init_fd = -1;
	h->adopted = false;
	if (n <= 0) {
		if (n < 0)
			cfs_warn("LISTEN_FDS: %s", strerror(-n));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (names && names[i] && strcmp(names[i], FDNAME_FUSE) == 0 && h->fuse_fd < 0)
			h->fuse_fd = fd;
		else if (names && names[i] && strcmp(names[i], FDNAME_INIT) == 0 && h->init_fd < 0)
			h->init_fd = fd;
		else
			close(fd); /* not ours */
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
	if (h->fuse_fd < 0) {
		if (h->init_fd >= 0)
			close(h->init_fd);
		h->init_fd = -1;
		return 0;
	}
	fcntl(h->fuse_fd, F_SETFD, FD_CLOEXEC);
	if (h->init_fd < 0) {
		/* Without the kept INIT the connection cannot be served: libfuse needs one. */
		cfs_err("inherited a FUSE connection without its '" FDNAME_INIT "' state");
		close(h->fuse_fd);
		h->fuse_fd = -1;
		return -EBADMSG;
	}
	fcntl(h->init_fd, F_SETFD, FD_CLOEXEC);
	h->adopted = true;
	return 1;
}

/* Whether /proc/self/mountinfo has a cfs-cache mount at @path (canonical). */
static bool is_cfs_mount(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], type[256];
		const char *sep = strstr(line, " - ");

		/* id parent major:minor root mountpoint ... - fstype source options */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%255s", type) != 1)
			continue;
		found = strcmp(mnt, path) == 0 && strcmp(type, "fuse.cfs-cache") == 0;
	}
	fclose(f);
	return found;
}

/* A getxattr of the mount's root, bounded: a mount whose connection another process holds
 * without reading it would block it forever. */
struct probe {
	char path[PATH_MAX];
	int result; /* 1 answered, -errno, 0 still waiting */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	char v[8];
	int r = getxattr(p->path, "user.cfs.lookups", v, sizeof(v)) >= 0 || errno == ERANGE
			? 1
			: -errno;

	pthread_mutex_lock(&p->lock);
	p->result = r;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL; /* @p is not freed when nobody waited for it (a leak of one, on exit) */
}

static int probe_mount(const char *path)
{
	struct probe *p = calloc(1, sizeof(*p));
	struct timespec ts;
	pthread_t t;
	int r;

	if (!p)
		return -ENOMEM;
	snprintf(p->path, sizeof(p->path), "%s", path);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (pthread_create(&t, NULL, probe_main, p) != 0) {
		free(p);
		return -EAGAIN;
	}
	cfs_deadline_ms(&ts, 3000);
	pthread_mutex_lock(&p->lock);
	while (p->result == 0 && pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0)
		;
	r = p->result;
	pthread_mutex_unlock(&p->lock);
	if (r == 0) {
		pthread_detach(t);
		return -ETIMEDOUT;
	}
	pthread_join(t, NULL);
	free(p);
	return r;
}

int cfs_handover_check_mountpoint(const char *mountpoint)
{
	char real[PATH_MAX];
	bool dead;
	int r;

	if (!realpath(mountpoint, real)) {
		if (errno != ENOTCONN)
			return 0; /* libfuse says what is wrong with it */
		dead = true;
	} else {
		if (!is_cfs_mount(real))
			return 0;
		r = probe_mount(real);
		if (r == 1) {
			fprintf(stderr, "cfs-cache: %s is already served by a live cfs-cache: stop that "
					"one first (umount %s), or restart it through its service "
					"manager, which hands the connection over (cfs-cache(1), "
					"RESTARTS)\n",
				mountpoint, mountpoint);
			return -EBUSY;
		}
		if (r == -ETIMEDOUT) {
			fprintf(stderr, "cfs-cache: %s: a cfs-cache mount whose connection another "
					"process holds without serving it (a service manager's fd store, a "
					"supervisor): start cfs-cache with that connection (LISTEN_FDS), "
					"or unmount it (umount -l %s)\n",
				mountpoint, mountpoint);
			return -EBUSY;
		}
		dead = r == -ENOTCONN;
	}
	if (!dead)
		return 0;
	/* What a crashed daemon leaves when nothing kept its connection: nobody can serve it. */
	if (umount2(mountpoint, MNT_DETACH) < 0) {
		fprintf(stderr, "cfs-cache: %s: a dead cfs-cache mount is left there and cannot be "
				"removed (%s): run 'umount -l %s'\n",
			mountpoint, strerror(errno), mountpoint);
		return -EBUSY;
	}
	cfs_notice("removed the dead cfs-cache mount left on %s", mountpoint);
	return 0;
}

int cfs_handover_start(struct cfs_handover *h, int fuse_fd)
{
	h->fuse_fd = fuse_fd;
	h->adopted = false;
	h->init_fd = memfd_create(FDNAME_INIT, MFD_CLOEXEC);
	if (h->init_fd < 0)
		return -errno;
	return 0;
}

void cfs_handover_notify(const struct cfs_handover *h, const char *mountpoint)
{
	char status[PATH_MAX + 64];
	int r;

	if (!getenv("NOTIFY_SOCKET"))
		return;
	/* The connection and its INIT go to the fd store first: a crash right after READY must
	 * find them there. An adopting daemon's are there already. */
	if (!h->adopted) {
		r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" FDNAME_FUSE, &h->fuse_fd, 1);
		if (r > 0)
			r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" FDNAME_INIT, &h->init_fd,
						   1);
		if (r <= 0)
			cfs_warn("cannot hand the FUSE connection to the service manager (%s): a "
				 "restart will need a remount",
				 r < 0 ? strerror(-r) : "no NOTIFY_SOCKET");
	}
	snprintf(status, sizeof(status), "READY=1\nSTATUS=%s %s", h->adopted ? "serving again" :
				 "serving", mountpoint);
	r = sd_notify(0, status);
	if (r < 0)
		cfs_warn("sd_notify READY=1: %s", strerror(-r));
}

/* Puts the connection at fds 3 and 4 with the LISTEN_* variables naming them, as systemd does
 * for a restarted service. For the process about to exec (in a fork child, or itself). */
static int pass_fds(const struct cfs_handover *h)
{
	char pid[32];
	int fuse_fd = h->fuse_fd, init_fd = h->init_fd;

	/* Out of the way of 3 and 4 first, so neither dup2 overwrites the other. */
	if (fuse_fd < 5)
		fuse_fd = fcntl(fuse_fd, F_DUPFD, 5);
	if (init_fd < 5)
		init_fd = fcntl(init_fd, F_DUPFD, 5);
	if (fuse_fd < 0 || init_fd < 0 || dup2(fuse_fd, SD_LISTEN_FDS_START) < 0 ||
	    dup2(init_fd, SD_LISTEN_FDS_START + 1) < 0)
		return -errno;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (setenv("LISTEN_FDS", "2", 1) < 0 || setenv("LISTEN_PID", pid, 1) < 0 ||
	    setenv("LISTEN_FDNAMES", FDNAME_FUSE ":" FDNAME_INIT, 1) < 0)
		return -errno;
	return 0;
}

int cfs_handover_exec(const struct cfs_handover *h, const char *exe, char **argv)
{
	int r;

	r = pass_fds(h);
	if (r < 0)
		return r;
	/* The fds at 3 and 4 must survive the exec; everything else is close-on-exec. */
	fcntl(SD_LISTEN_FDS_START, F_SETFD, 0);
	fcntl(SD_LISTEN_FDS_START + 1, F_SETFD, 0);
	cfs_notice("re-executing %s with the FUSE connection", exe);
	execv(exe, argv);
	r = -errno;
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

int cfs_handover_supervise(const struct cfs_handover *h, const char *exe, char **argv)
{
	struct sigaction sa = { .sa_handler = on_stop };
	unsigned delay = RESTART_MIN_MS;
	unsigned restarts = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (;;) {
		uint64_t started = cfs_now_ns();
		pid_t pid = fork();
		int status;

		if (pid < 0)
			return -errno;
		if (pid == 0) {
			struct sigaction dfl = { .sa_handler = SIG_DFL };

			sigaction(SIGTERM, &dfl, NULL);
			sigaction(SIGINT, &dfl, NULL);
			sigaction(SIGHUP, &dfl, NULL);
			setenv("CFS_CACHE_SUPERVISED", "1", 1);
			if (pass_fds(h) == 0) {
				fcntl(SD_LISTEN_FDS_START, F_SETFD, 0);
				fcntl(SD_LISTEN_FDS_START + 1, F_SETFD, 0);
				execv(exe, argv);
			}
			_exit(127);
		}
		cfs_notice("supervisor: worker %d serves the mount%s", (int)pid,
			   restarts ? " again" : "");
		while (waitpid(pid, &status, 0) < 0) {
			if (errno != EINTR)
				return -errno;
			if (stop_signal) {
				/* Forwarded: the worker unmounts and exits 0. */
				kill(pid, stop_signal == SIGHUP ? SIGHUP : SIGTERM);
				if (stop_signal == SIGHUP)
					stop_signal = 0; /* the worker re-executes itself: same pid */
			}
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			return 0; /* a clean unmount */
		if (stop_signal)
			return 1;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			return 1; /* could not start the binary at all */
		if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
			return 2; /* misuse: another try would say the same */
		cfs_warn("supervisor: worker %d %s %d; starting another on the same connection",
			 (int)pid, WIFSIGNALED(status) ? "died of signal" : "exited with",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		restarts++;
		/* A worker that ran a while got a quick restart; one that keeps dying, a slower one. */
		if (cfs_now_ns() - started > 10ULL * 1000000000ULL)
			delay = RESTART_MIN_MS;
		else if (restarts > 1)
			delay = CFS_MIN(delay * 2, RESTART_MAX_MS);
		struct timespec ts = { .tv_sec = delay / 1000,
				       .tv_nsec = (long)(delay % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_signal)
			;
		if (stop_signal)
			return 1;
	}
}
