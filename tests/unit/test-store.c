/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests for the object store: verified inserts, races, crashes, temp cleanup. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/digest.h"
#include "common/name.h"
#include "common/store.h"
#include "store-fixture.h"

static int setup(void **state)
{
	return store_fixture_setup(state, "store");
}

static int count_temp(struct fixture *f)
{
	char cmd[200];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s/" CFS_STORE_TMPDIR "' | wc -l", f->path);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

/* Waits for the child @pid to write its byte on @pipefd, kills it and closes the pipe. */
static void kill_when_ready(int pipefd[2], pid_t pid)
{
	int status;
	char c;

	assert_int_equal(read(pipefd[0], &c, 1), 1);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void insert_bytes(struct cfs_store *s, const void *data, size_t len, uint8_t d[32],
                         bool *existed)
{
	struct cfs_store_writer *w;

	assert_int_equal(cfs_store_writer_new(s, NULL, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, data, len), 0);
	assert_int_equal(cfs_store_writer_verify(w, d), 0);
	assert_int_equal(cfs_store_commit_one(w, existed), 0);
	cfs_store_writer_free(w);
}

/* Between verify and commit (a group commit's wait, a hand-off) the temp file stays locked, so
 * a cleaner (another process opening the store) never takes a verified object away. */
static void test_verified_stays_locked(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *w[2];
	struct cfs_store *other;
	uint8_t d[2][32];

	/* The first writer finds out whether fs-verity works; the second knows. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(cfs_store_writer_new(f->store, NULL, &w[i]), 0);
		assert_int_equal(cfs_store_writer_write(w[i], i ? "second" : "first", 5 + i), 0);
		assert_int_equal(cfs_store_writer_verify(w[i], d[i]), 0);
		assert_int_equal(cfs_store_open(f->path, 0, &other), 0);
		cfs_store_free(other);
		assert_int_equal(count_temp(f), 1);
		assert_int_equal(cfs_store_commit_one(w[i], NULL), 0);
		cfs_store_writer_free(w[i]);
		assert_int_equal(cfs_store_lookup(f->store, d[i], NULL), 0);
	}
}

/* Temp files made ahead: locked like a live writer's (a cleaner leaves them), taken by the next
 * writers, and the rest removed with the store handle. */
static void test_prepare(void **state)
{
	struct fixture *f = *state;
	struct cfs_store *other;
	uint8_t d[32];

	assert_int_equal(cfs_store_prepare(f->store, 4), 4);
	assert_int_equal(cfs_store_prepared(f->store), 4);
	assert_int_equal(count_temp(f), 4);
	/* Another process's start-up cleaning leaves them alone. */
	assert_int_equal(cfs_store_open(f->path, 0, &other), 0);
	cfs_store_free(other);
	assert_int_equal(count_temp(f), 4);
	insert_bytes(f->store, "made ahead", 10, d, NULL);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
	assert_int_equal(cfs_store_prepared(f->store), 3);
	assert_int_equal(count_temp(f), 3);
	assert_int_equal(cfs_store_prepare(f->store, 1000), 32); /* capped */
	cfs_store_free(f->store);
	f->store = NULL;
	assert_int_equal(count_temp(f), 0);
	assert_int_equal(cfs_store_open(f->path, 0, &f->store), 0);
}

static void test_insert_lookup_remove(void **state)
{
	struct fixture *f = *state;
	const char data[] = "hello composefs\n";
	uint8_t d[32], expect[32];
	char rel[66], full[200];
	struct stat st;
	bool existed = true;
	int fd;

	assert_int_equal(cfs_digest_buffer(data, sizeof(data) - 1, expect), 0);
	assert_int_equal(cfs_store_lookup(f->store, expect, NULL), -ENOENT);
	insert_bytes(f->store, data, sizeof(data) - 1, d, &existed);
	assert_false(existed);
	assert_memory_equal(d, expect, 32);
	assert_int_equal(cfs_store_lookup(f->store, d, &st), 0);
	assert_int_equal(st.st_size, sizeof(data) - 1);
	/* Same modes as mkcomposefs --digest-store, whatever the umask. */
	assert_int_equal(st.st_mode & 07777, 0644);
	cfs_name_format_path(d, rel);
	snprintf(full, sizeof(full), "%s/%.2s", f->path, rel);
	assert_int_equal(stat(full, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(cfs_store_open_object(f->store, d, &fd), 0);
	close(fd);
	assert_int_equal(count_temp(f), 0);
	/* What cfs-serve derived from the object goes with it; a neighbour's stays. */
	{
		char zdir[300], side[400], raw[400], other[400];

		snprintf(zdir, sizeof(zdir), "%s/" CFS_STORE_DERIVED_DIR, f->path);
		mkdir(zdir, 0755);
		snprintf(zdir, sizeof(zdir), "%s/" CFS_STORE_DERIVED_DIR "/%.2s", f->path, rel);
		assert_int_equal(mkdir(zdir, 0755), 0);
		snprintf(side, sizeof(side), "%s/%s.zst", zdir, rel + 3);
		snprintf(raw, sizeof(raw), "%s/%s.raw", zdir, rel + 3);
		snprintf(other, sizeof(other), "%s/%.61s%c.zst", zdir, rel + 3,
		         rel[64] == '0' ? '1' : '0');
		for (const char *p = side; p; p = p == side ? raw : p == raw ? other : NULL) {
			fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
			assert_true(fd >= 0);
			close(fd);
		}
		assert_int_equal(cfs_store_remove(f->store, d), 0);
		assert_int_equal(access(side, F_OK), -1);
		assert_int_equal(access(raw, F_OK), -1);
		assert_int_equal(access(other, F_OK), 0);
	}
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), -ENOENT);
	assert_int_equal(cfs_store_remove(f->store, d), -ENOENT);
	/* A prefix directory removed behind the store's back is made again. */
	assert_int_equal(rmdir(full), 0);
	insert_bytes(f->store, data, sizeof(data) - 1, d, &existed);
	assert_false(existed);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
}

static void test_mismatch_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *w;
	uint8_t want[32], got[32];
	struct cfs_store_usage u;

	assert_int_equal(cfs_digest_buffer("right", 5, want), 0);
	assert_int_equal(cfs_store_writer_new(f->store, want, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, "wrong", 5), 0);
	assert_int_equal(cfs_store_writer_verify(w, got), -EBADMSG);
	assert_memory_not_equal(want, got, 32);
	/* A writer that failed to verify cannot be committed. */
	assert_int_equal(cfs_store_commit_one(w, NULL), -EINVAL);
	assert_int_equal(cfs_store_writer_result(w, NULL), -EINPROGRESS);
	cfs_store_writer_free(w);
	assert_int_equal(cfs_store_lookup(f->store, want, NULL), -ENOENT);
	assert_int_equal(cfs_store_lookup(f->store, got, NULL), -ENOENT);
	assert_int_equal(count_temp(f), 0);
	assert_int_equal(cfs_store_usage(f->store, &u), 0);
	assert_int_equal(u.objects, 0);
}

static void test_reset_then_expected(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *w;
	uint8_t want[32];

	assert_int_equal(cfs_digest_buffer("right", 5, want), 0);
	assert_int_equal(cfs_store_writer_new(f->store, want, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, "garbage that was half sent", 26), 0);
	assert_int_equal(cfs_store_writer_reset(w), 0);
	assert_int_equal(cfs_store_writer_size(w), 0);
	assert_int_equal(cfs_store_writer_write(w, "ri", 2), 0);
	assert_int_equal(cfs_store_writer_write(w, "ght", 3), 0);
	assert_int_equal(cfs_store_writer_verify(w, NULL), 0);
	assert_int_equal(cfs_store_commit_one(w, NULL), 0);
	cfs_store_writer_free(w);
	assert_int_equal(cfs_store_lookup(f->store, want, NULL), 0);
}

/* Two writers of the same object in one transaction: both succeed, exactly one creates it. */
static void test_two_inserters_race(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *a, *b;
	struct cfs_store_txn *txn;
	bool ea = true, eb = false;
	uint8_t d[32];

	assert_int_equal(cfs_store_writer_new(f->store, NULL, &a), 0);
	assert_int_equal(cfs_store_writer_new(f->store, NULL, &b), 0);
	assert_int_equal(cfs_store_writer_write(a, "same", 4), 0);
	assert_int_equal(cfs_store_writer_write(b, "same", 4), 0);
	assert_int_equal(cfs_store_writer_verify(a, d), 0);
	assert_int_equal(cfs_store_writer_verify(b, NULL), 0);
	assert_int_equal(count_temp(f), 2);
	assert_int_equal(cfs_store_txn_new(f->store, &txn), 0);
	assert_int_equal(cfs_store_txn_add(txn, a, 0), 0);
	assert_int_equal(cfs_store_txn_add(txn, b, 0), 0);
	assert_int_equal(cfs_store_txn_commit(txn), 0);
	cfs_store_txn_free(txn);
	assert_int_equal(cfs_store_writer_result(a, &ea), 0);
	assert_int_equal(cfs_store_writer_result(b, &eb), 0);
	assert_false(ea);
	assert_true(eb);
	cfs_store_writer_free(a);
	cfs_store_writer_free(b);
	assert_int_equal(count_temp(f), 0);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
}

/* A writer killed mid-write leaves only a temp file, which the next open removes; a live
 * writer's temp file survives another process's cleanup. */
static void test_crash_and_cleanup(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *live;
	struct cfs_store *again;
	int pipefd[2];
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cfs_store_writer *w;
		static char big[1 << 16];

		if (cfs_store_writer_new(f->store, NULL, &w) < 0 ||
		    cfs_store_writer_write(w, big, sizeof(big)) < 0)
			_exit(1);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	kill_when_ready(pipefd, pid);
	assert_int_equal(count_temp(f), 1);

	assert_int_equal(cfs_store_writer_new(f->store, NULL, &live), 0);
	assert_int_equal(cfs_store_writer_write(live, "in flight", 9), 0);
	assert_int_equal(count_temp(f), 2);
	assert_int_equal(cfs_store_open(f->path, 0, &again), 0);
	assert_int_equal(count_temp(f), 1); /* the dead one went, the live one stayed */
	assert_int_equal(cfs_store_writer_verify(live, NULL), 0);
	assert_int_equal(cfs_store_commit_one(live, NULL), 0);
	cfs_store_writer_free(live);
	assert_int_equal(count_temp(f), 0);
	cfs_store_free(again);
}

static int collect(const struct cfs_store_entry *e, void *userdata)
{
	int *counts = userdata;

	counts[e->kind]++;
	return 0;
}

static void test_iter_and_hostile_entries(void **state)
{
	struct fixture *f = *state;
	uint8_t d[32], fake[32];
	char rel[66], full[300];
	int counts[3] = {0}, fd;
	struct cfs_store_usage u;

	insert_bytes(f->store, "one", 3, d, NULL);
	insert_bytes(f->store, "two!", 4, d, NULL);
	/* A symlink planted under an object name is never an object. */
	memset(fake, 0xab, sizeof(fake));
	cfs_name_format_path(fake, rel);
	snprintf(full, sizeof(full), "%s/ab", f->path);
	mkdir(full, 0755);
	snprintf(full, sizeof(full), "%s/%s", f->path, rel);
	assert_int_equal(symlink("/etc/passwd", full), 0);
	assert_int_equal(cfs_store_lookup(f->store, fake, NULL), -EUCLEAN);
	assert_int_equal(cfs_store_open_object(f->store, fake, &fd), -EUCLEAN);
	/* A symlinked prefix directory is not followed either. */
	{
		char target[200], link[200], obj[300];
		uint8_t via[32];
		int tfd;

		memset(via, 0xcd, sizeof(via));
		cfs_name_format_path(via, rel);
		snprintf(target, sizeof(target), "%s/elsewhere", f->dir);
		assert_int_equal(mkdir(target, 0755), 0);
		snprintf(obj, sizeof(obj), "%s/%s", target, rel + 3);
		tfd = open(obj, O_CREAT | O_WRONLY, 0644);
		assert_true(tfd >= 0);
		close(tfd);
		snprintf(link, sizeof(link), "%s/cd", f->path);
		assert_int_equal(symlink(target, link), 0);
		assert_int_equal(cfs_store_lookup(f->store, via, NULL), -EUCLEAN);
		assert_int_equal(cfs_store_open_object(f->store, via, &fd), -EUCLEAN);
		assert_int_equal(unlink(link), 0);
	}
	snprintf(full, sizeof(full), "%s/ab/NOTANOBJECT", f->path);
	fd = open(full, O_CREAT | O_WRONLY, 0644);
	close(fd);
	assert_int_equal(cfs_store_iter(f->store, true, collect, counts), 0);
	assert_int_equal(counts[CFS_STORE_ENTRY_OBJECT], 2);
	assert_int_equal(counts[CFS_STORE_ENTRY_STRAY], 2);
	assert_int_equal(cfs_store_usage(f->store, &u), 0);
	assert_int_equal(u.objects, 2);
	assert_int_equal(u.bytes, 7);
}

struct strays {
	int counts[3];
	char rel[8][80];
	int n;
};

static int collect_strays(const struct cfs_store_entry *e, void *userdata)
{
	struct strays *st = userdata;

	st->counts[e->kind]++;
	if (e->kind == CFS_STORE_ENTRY_STRAY && st->n < 8)
		snprintf(st->rel[st->n++], sizeof(st->rel[0]), "%s", e->relpath);
	return 0;
}

/* Files and symlinks under prefix names, other directories, and symlinks or directories inside
 * a prefix directory: the walk reports each as a stray and goes on; removing them never follows
 * a symlink. */
static void test_strays_walk_and_remove(void **state)
{
	struct fixture *f = *state;
	struct strays st = {{0}};
	struct cfs_store_usage u;
	char full[300], outside[200], pfx[3];
	uint8_t d[32];
	int fd;

	insert_bytes(f->store, "object", 6, d, NULL);
	snprintf(pfx, sizeof(pfx), "%02x", d[0]);
	snprintf(outside, sizeof(outside), "%s/outside", f->dir);
	assert_int_equal(mkdir(outside, 0755), 0);
	snprintf(full, sizeof(full), "%s/victim", outside);
	fd = open(full, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	snprintf(full, sizeof(full), "%s/%s", f->path, d[0] == 0xef ? "ee" : "ef");
	fd = open(full, O_CREAT | O_WRONLY, 0644); /* a file under a prefix name */
	close(fd);
	snprintf(full, sizeof(full), "%s/%s", f->path, d[0] == 0xcd ? "cc" : "cd");
	assert_int_equal(symlink(outside, full), 0); /* a symlinked prefix */
	snprintf(full, sizeof(full), "%s/zz", f->path);
	assert_int_equal(mkdir(full, 0755), 0);
	snprintf(full, sizeof(full), "%s/zz/inner", f->path);
	fd = open(full, O_CREAT | O_WRONLY, 0644);
	close(fd);
	snprintf(full, sizeof(full), "%s/%s/%062d", f->path, pfx, 0);
	assert_int_equal(symlink("../../outside/victim", full), 0);
	snprintf(full, sizeof(full), "%s/%s/sub", f->path, pfx);
	assert_int_equal(mkdir(full, 0755), 0);
	snprintf(full, sizeof(full), "%s/lost+found", f->path);
	assert_int_equal(mkdir(full, 0700), 0);

	assert_int_equal(cfs_store_iter(f->store, true, collect_strays, &st), 0);
	assert_int_equal(st.counts[CFS_STORE_ENTRY_OBJECT], 1);
	assert_int_equal(st.counts[CFS_STORE_ENTRY_STRAY], 5);
	assert_int_equal(cfs_store_usage(f->store, &u), 0);
	assert_int_equal(u.objects, 1);
	for (int i = 0; i < st.n; i++)
		assert_int_equal(cfs_store_remove_stray(f->store, st.rel[i]), 0);
	snprintf(full, sizeof(full), "%s/victim", outside);
	assert_int_equal(access(full, F_OK), 0);
	memset(&st, 0, sizeof(st));
	assert_int_equal(cfs_store_iter(f->store, true, collect_strays, &st), 0);
	assert_int_equal(st.counts[CFS_STORE_ENTRY_OBJECT], 1);
	assert_int_equal(st.counts[CFS_STORE_ENTRY_STRAY], 0);
	assert_int_equal(cfs_store_remove_stray(f->store, CFS_STORE_TMPDIR), -EPERM);
	assert_true(cfs_store_remove_stray(f->store, "../outside") < 0);
	assert_true(cfs_store_remove_stray(f->store, "") < 0);
	assert_int_equal(access(outside, F_OK), 0);
}

static struct cfs_store_writer *verified_writer(struct cfs_store *s, const char *text)
{
	struct cfs_store_writer *w;

	assert_int_equal(cfs_store_writer_new(s, NULL, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, text, strlen(text)), 0);
	assert_int_equal(cfs_store_writer_verify(w, NULL), 0);
	return w;
}

/* A transaction names its writers only when committed; it counts new and present objects; it
 * can be used again; what it still holds when discarded leaves no temp file and no object. */
static void test_txn(void **state)
{
	enum { N = 40 };
	struct fixture *f = *state;
	struct cfs_store_writer *kept;
	struct cfs_store_txn_stats ts;
	struct cfs_store_txn *txn;
	uint8_t d[32];
	char text[32];
	bool existed = true;

	assert_int_equal(cfs_store_txn_new(f->store, &txn), 0);
	/* An empty commit is fine. */
	assert_int_equal(cfs_store_txn_commit(txn), 0);
	insert_bytes(f->store, "object 0", 8, d, &existed);
	for (int i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "object %d", i);
		assert_int_equal(
		    cfs_store_txn_add(txn, verified_writer(f->store, text), CFS_STORE_TXN_FREE), 0);
	}
	/* One the caller keeps, to read its result. */
	kept = verified_writer(f->store, "kept by the caller");
	assert_int_equal(cfs_store_txn_add(txn, kept, 0), 0);
	assert_int_equal(cfs_store_writer_result(kept, NULL), -EINPROGRESS);
	/* Not committed yet: nothing is visible. */
	assert_int_equal(cfs_store_txn_count(txn), N + 1);
	assert_int_equal(cfs_digest_buffer("object 1", 8, d), 0);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), -ENOENT);
	assert_int_equal(count_temp(f), N + 1);
	assert_int_equal(cfs_store_txn_commit(txn), 0);
	assert_int_equal(cfs_store_txn_count(txn), 0);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
	assert_int_equal(cfs_store_writer_result(kept, &existed), 0);
	assert_false(existed);
	/* Committed: no longer a transaction's to take. */
	assert_int_equal(cfs_store_txn_add(txn, kept, 0), -EINVAL);
	cfs_store_writer_free(kept);
	cfs_store_txn_get_stats(txn, &ts);
	assert_int_equal(ts.added, N);
	assert_int_equal(ts.present, 1); /* "object 0" was stored before */
	assert_int_equal(ts.bytes_present, 8);
	assert_int_equal(count_temp(f), 0);
	/* Used again: a discarded writer leaves nothing. */
	assert_int_equal(
	    cfs_store_txn_add(txn, verified_writer(f->store, "never kept"), CFS_STORE_TXN_FREE), 0);
	assert_int_equal(count_temp(f), 1);
	cfs_store_txn_discard(txn);
	assert_int_equal(count_temp(f), 0);
	assert_int_equal(cfs_digest_buffer("never kept", 10, d), 0);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), -ENOENT);
	/* Freeing discards too. */
	assert_int_equal(
	    cfs_store_txn_add(txn, verified_writer(f->store, "freed"), CFS_STORE_TXN_FREE), 0);
	cfs_store_txn_free(txn);
	assert_int_equal(count_temp(f), 0);
}

/* A writer whose name is taken by something that is not an object fails on its own: the others
 * around it get their names; only writers that verified may join. */
static void test_txn_failing_writer(void **state)
{
	struct fixture *f = *state;
	struct cfs_store_writer *w[3], *bad;
	const char *texts[3] = {"first", "blocked", "third"};
	struct cfs_store_txn_stats ts;
	struct cfs_store_txn *txn;
	uint8_t d[3][32];
	char rel[CFS_NAME_PATH_LEN + 1], path[300];
	bool existed;

	for (int i = 0; i < 3; i++)
		assert_int_equal(cfs_digest_buffer(texts[i], strlen(texts[i]), d[i]), 0);
	cfs_name_format_path(d[1], rel);
	snprintf(path, sizeof(path), "%s/%.2s", f->path, rel);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s", f->path, rel);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(cfs_store_txn_new(f->store, &txn), 0);
	for (int i = 0; i < 3; i++) {
		w[i] = verified_writer(f->store, texts[i]);
		assert_int_equal(cfs_store_txn_add(txn, w[i], 0), 0);
	}
	assert_int_equal(cfs_store_writer_new(f->store, NULL, &bad), 0);
	assert_int_equal(cfs_store_txn_add(txn, bad, 0), -EINVAL); /* not verified */
	cfs_store_writer_free(bad);
	assert_int_equal(cfs_store_txn_commit(txn), -EUCLEAN);
	assert_int_equal(cfs_store_writer_result(w[0], &existed), 0);
	assert_false(existed);
	assert_int_equal(cfs_store_writer_result(w[1], NULL), -EUCLEAN);
	assert_int_equal(cfs_store_writer_result(w[2], &existed), 0);
	assert_false(existed);
	assert_int_equal(cfs_store_lookup(f->store, d[0], NULL), 0);
	assert_int_equal(cfs_store_lookup(f->store, d[1], NULL), -EUCLEAN);
	assert_int_equal(cfs_store_lookup(f->store, d[2], NULL), 0);
	cfs_store_txn_get_stats(txn, &ts);
	assert_int_equal(ts.added, 2);
	assert_int_equal(ts.present, 0);
	for (int i = 0; i < 3; i++)
		cfs_store_writer_free(w[i]);
	cfs_store_txn_free(txn);
	assert_int_equal(count_temp(f), 0);
}

/* A process killed with verified writers in a transaction (before or during its commit) leaves
 * whole objects under their names and temp files elsewhere, never part of an object under its
 * name; the next open removes the temp files. */
static void test_txn_crash(void **state)
{
	enum { N = 8 };
	struct fixture *f = *state;
	static char big[1 << 20];
	struct cfs_store_usage u;
	struct cfs_store *again;
	int pipefd[2];
	uint8_t d[32];
	pid_t pid;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cfs_store_txn *txn;
		struct cfs_store_writer *w;

		if (cfs_store_txn_new(f->store, &txn) < 0)
			_exit(1);
		for (int i = 0; i < N; i++) {
			big[0] = (char)i;
			if (cfs_store_writer_new(f->store, NULL, &w) < 0 ||
			    cfs_store_writer_write(w, big, sizeof(big)) < 0 ||
			    cfs_store_writer_verify(w, NULL) < 0 ||
			    cfs_store_txn_add(txn, w, CFS_STORE_TXN_FREE) < 0)
				_exit(1);
		}
		/* One more, half written, never verified. */
		if (cfs_store_writer_new(f->store, NULL, &w) < 0 ||
		    cfs_store_writer_write(w, big, sizeof(big) / 2) < 0)
			_exit(1);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(1);
		/* Killed somewhere in here. */
		cfs_store_txn_commit(txn);
		pause();
		_exit(0);
	}
	kill_when_ready(pipefd, pid);
	/* Whatever has a name is whole: N objects of the full size at most, each matching it. */
	assert_int_equal(cfs_store_usage(f->store, &u), 0);
	assert_true(u.objects <= N);
	assert_int_equal(u.bytes, u.objects * sizeof(big));
	for (int i = 0; i < N; i++) {
		struct stat st;
		int fd;

		big[0] = (char)i;
		assert_int_equal(cfs_digest_buffer(big, sizeof(big), d), 0);
		if (cfs_store_lookup(f->store, d, &st) != 0)
			continue;
		assert_int_equal(cfs_store_open_object(f->store, d, &fd), 0);
		{
			uint8_t got[32];

			assert_int_equal(cfs_digest_fd(fd, 0, got, NULL), 0);
			assert_memory_equal(got, d, 32);
		}
		close(fd);
	}
	/* Every writer that did not get its name left a temp file; the next open takes them. */
	assert_int_equal(count_temp(f), N + 1 - (int)u.objects);
	assert_int_equal(cfs_store_open(f->path, 0, &again), 0);
	assert_int_equal(count_temp(f), 0);
	cfs_store_free(again);
}

/* Makes the file @name in @dir (mtime @age seconds ago). */
static void make_file_aged(const char *dir, const char *name, int age)
{
	struct timeval tv[2];
	char path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "derived", 7), 7);
	close(fd);
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= age;
	tv[1] = tv[0];
	assert_int_equal(utimes(path, tv), 0);
}

static bool file_exists(const char *dir, const char *name)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* The generic rule for derived files, whatever their suffix: a present object's stay, an
 * absent one's go, unfinished ones ('.' names) go when old, other names are left alone. */
static void test_sweep_derived(void **state)
{
	struct fixture *f = *state;
	char rel[CFS_NAME_PATH_LEN + 1], gone_rel[CFS_NAME_PATH_LEN + 1], zdir[300], name[100];
	uint8_t d[32], gone[32];
	uint64_t bytes = 1;

	assert_int_equal(cfs_store_sweep_derived(f->store, 60, &bytes), 0); /* no directory */
	assert_int_equal(bytes, 0);
	insert_bytes(f->store, "kept", 4, d, NULL);
	memcpy(gone, d, sizeof(gone));
	gone[31] ^= 1;
	cfs_name_format_path(d, rel);
	cfs_name_format_path(gone, gone_rel);
	snprintf(zdir, sizeof(zdir), "%s/" CFS_STORE_DERIVED_DIR, f->path);
	assert_int_equal(mkdir(zdir, 0755), 0);
	snprintf(zdir, sizeof(zdir), "%s/" CFS_STORE_DERIVED_DIR "/%.2s", f->path, rel);
	assert_int_equal(mkdir(zdir, 0755), 0);
	snprintf(name, sizeof(name), "%s.zst", rel + 3);
	make_file_aged(zdir, name, 0);
	snprintf(name, sizeof(name), "%s.anything", rel + 3);
	make_file_aged(zdir, name, 0);
	snprintf(name, sizeof(name), "%s.zst", gone_rel + 3);
	make_file_aged(zdir, name, 0);
	snprintf(name, sizeof(name), "%s.other", gone_rel + 3);
	make_file_aged(zdir, name, 0);
	make_file_aged(zdir, ".tmp-old", 7200);
	make_file_aged(zdir, ".tmp-new", 0);
	make_file_aged(zdir, "not-derived", 7200);
	assert_int_equal(cfs_store_sweep_derived(f->store, 3600, &bytes), 3);
	assert_int_equal(bytes, 3 * 7);
	snprintf(name, sizeof(name), "%s.zst", rel + 3);
	assert_true(file_exists(zdir, name));
	snprintf(name, sizeof(name), "%s.anything", rel + 3);
	assert_true(file_exists(zdir, name));
	snprintf(name, sizeof(name), "%s.zst", gone_rel + 3);
	assert_false(file_exists(zdir, name));
	assert_false(file_exists(zdir, ".tmp-old"));
	assert_true(file_exists(zdir, ".tmp-new"));
	assert_true(file_exists(zdir, "not-derived"));
	/* Removing the object takes every derived file of it, none of the others. */
	assert_int_equal(cfs_store_remove(f->store, d), 0);
	snprintf(name, sizeof(name), "%s.anything", rel + 3);
	assert_false(file_exists(zdir, name));
	assert_true(file_exists(zdir, ".tmp-new"));
	assert_true(file_exists(zdir, "not-derived"));
}

static void test_insert_fd(void **state)
{
	struct fixture *f = *state;
	char path[] = "/tmp/cfs-test-src-XXXXXX";
	uint8_t d[32], want[32], other[32];
	int fd = mkstemp(path);
	bool existed;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "from a file", 11), 11);
	assert_int_equal(cfs_digest_buffer("from a file", 11, want), 0);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(cfs_store_insert_fd(f->store, fd, want, d, &existed), 0);
	assert_memory_equal(d, want, 32);
	assert_false(existed);
	lseek(fd, 0, SEEK_SET);
	memset(other, 1, sizeof(other));
	assert_int_equal(cfs_store_insert_fd(f->store, fd, other, NULL, NULL), -EBADMSG);
	assert_int_equal(cfs_store_lookup(f->store, other, NULL), -ENOENT);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_insert_lookup_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mismatch_leaves_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_then_expected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_inserters_race, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_and_cleanup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_iter_and_hostile_entries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_strays_walk_and_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_insert_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sweep_derived, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_failing_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_crash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prepare, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verified_stays_locked, setup, teardown),
	};

	umask(077);
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
