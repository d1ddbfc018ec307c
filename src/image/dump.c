/* SPDX-License-Identifier: MIT */
/* cfscache: composefs-dump(5) text: read into a writer tree, and written from an image. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "image/image.h"
#include "image/writer-internal.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undoes the dump's escapes (\\ \n \r \t \xNN) of @s[0..len) into @out (at most len bytes);
 * returns the decoded length or -EINVAL. */
static ssize_t unescape(const char *s, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\\') {
			out[o++] = s[i];
			continue;
		}
		if (++i >= len)
			return -EINVAL;
		switch (s[i]) {
		case '\\':
			out[o++] = '\\';
			break;
		case 'n':
			out[o++] = '\n';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'x': {
			int hi, lo;

			if (i + 2 >= len)
				return -EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	return (ssize_t)o;
}

/* A field decoded to a NUL-terminated string; "-" alone is "none" (NULL). */
static int field_string(const char *f, bool dash_is_none, char **out_ret, size_t *len_ret)
{
	size_t len = strlen(f);
	char *out;
	ssize_t n;

	*out_ret = NULL;
	if (len_ret)
		*len_ret = 0;
	if (dash_is_none && strcmp(f, "-") == 0)
		return 0;
	out = malloc(len + 1);
	if (!out)
		return -ENOMEM;
	n = unescape(f, len, out);
	if (n < 0) {
		free(out);
		return (int)n;
	}
	out[n] = '\0';
	*out_ret = out;
	if (len_ret)
		*len_ret = (size_t)n;
	return 0;
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
	char *end;

	if (*s == '\0' || *s == '-')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, base);
	return errno || *end ? -EINVAL : 0;
}

static int parse_u32(const char *s, int base, uint32_t *v)
{
	uint64_t x;
	int r = parse_u64(s, base, &x);

	if (r < 0 || x > UINT32_MAX)
		return -EINVAL;
	*v = (uint32_t)x;
	return 0;
}

static int parse_mtime(const char *s, int64_t *sec, uint32_t *nsec)
{
	char buf[64], *dot;
	uint64_t a, b = 0;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	dot = strchr(buf, '.');
	if (dot)
		*dot++ = '\0';
	if (parse_u64(buf, 10, &a) < 0 || a > INT64_MAX || (dot && parse_u64(dot, 10, &b) < 0) ||
	    b >= 1000000000)
		return -EINVAL;
	*sec = (int64_t)a;
	*nsec = (uint32_t)b;
	return 0;
}

/* Finds the node of an absolute path; with @parent_ret, the parent and the last name. */
static int lookup_path(struct cfs_wnode *root, const char *path, struct cfs_wnode **node_ret,
                       struct cfs_wnode **parent_ret, const char **name_ret, char *scratch)
{
	struct cfs_wnode *cur = root, *prev = NULL;
	const char *last = NULL;
	char *save = NULL;

	if (path[0] != '/')
		return -EINVAL;
	strcpy(scratch, path);
	for (char *c = strtok_r(scratch, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!cur) /* a middle component was missing */
			return -ENOENT;
		if (!S_ISDIR(cur->mode) || cur->link_to)
			return -ENOTDIR;
		prev = cur;
		last = c;
		cur = cfs_wnode_lookup(cur, c);
	}
	if (parent_ret) {
		*parent_ret = prev;
		*name_ret = last;
	}
	*node_ret = cur;
	return 0;
}

static int parse_xattr(struct cfs_wnode *n, const char *f)
{
	const char *eq = strchr(f, '=');
	char *key = NULL, *value = NULL;
	size_t vlen = 0;
	int r;

	if (!eq || eq == f)
		return -EINVAL;
	key = strndup(f, (size_t)(eq - f));
	if (!key)
		return -ENOMEM;
	r = field_string(key, false, &value, NULL);
	free(key);
	if (r < 0)
		return r;
	key = value;
	r = field_string(eq + 1, false, &value, &vlen);
	if (r < 0)
		goto out;
	r = cfs_wnode_set_xattr(n, key, value, vlen);
out:
	free(key);
	free(value);
	return r;
}

/* One dump line: path size mode nlink uid gid rdev mtime payload content digest xattrs... */
static int parse_line(struct cfs_tree *tree, char *line, char *scratch)
{
	char *f[11], *save = NULL, *x;
	char *path = NULL, *payload = NULL, *content = NULL;
	size_t content_len = 0;
	struct cfs_wnode *n = NULL, *existing, *parent = NULL;
	const char *name = NULL;
	const char *mode_s;
	bool hardlink;
	uint64_t size;
	int r = -EINVAL;

	for (int i = 0; i < 11; i++) {
		f[i] = strtok_r(i ? NULL : line, " ", &save);
		if (!f[i])
			return -EINVAL;
	}
	if ((r = field_string(f[0], false, &path, NULL)) < 0 ||
	    (r = field_string(f[8], true, &payload, NULL)) < 0 ||
	    (r = field_string(f[9], true, &content, &content_len)) < 0)
		goto out;
	r = -EINVAL;
	if (strlen(path) >= 8192)
		goto out;
	mode_s = f[2];
	hardlink = *mode_s == '@';
	if (hardlink)
		mode_s++;
	r = cfs_wnode_new(&n);
	if (r < 0)
		goto out;
	r = -EINVAL;
	if (parse_u64(f[1], 10, &size) < 0 || parse_u32(mode_s, 8, &n->mode) < 0)
		goto out;
	if (hardlink) {
		struct cfs_wnode *target;

		if (!payload)
			goto out;
		r = lookup_path(tree->root ? tree->root : n, payload, &target, NULL, NULL, scratch);
		if (r < 0 || !target || !tree->root) {
			r = -EINVAL;
			goto out;
		}
		target = cfs_wnode_follow(target);
		r = -EINVAL;
		if (S_ISDIR(target->mode))
			goto out;
		n->mode = 0;
		cfs_wnode_make_hardlink(n, target);
	} else {
		if (parse_u32(f[4], 10, &n->uid) < 0 || parse_u32(f[5], 10, &n->gid) < 0 ||
		    parse_u64(f[6], 10, &n->rdev) < 0 ||
		    parse_mtime(f[7], &n->mtime_sec, &n->mtime_nsec) < 0)
			goto out;
		switch (n->mode & S_IFMT) {
		case S_IFREG:
			if (content) {
				r = cfs_wnode_set_content(n, content, content_len);
				if (r < 0)
					goto out;
				r = -EINVAL;
			} else {
				n->size = size;
			}
			if (payload && cfs_wnode_set_payload(n, payload) < 0)
				goto out;
			if (strcmp(f[10], "-") != 0) {
				if (strlen(f[10]) != 2 * CFS_DIGEST_SIZE)
					goto out;
				for (int i = 0; i < CFS_DIGEST_SIZE; i++) {
					int hi = hexval(f[10][2 * i]),
					    lo = hexval(f[10][2 * i + 1]);

					if (hi < 0 || lo < 0)
						goto out;
					n->digest[i] = (uint8_t)(hi << 4 | lo);
				}
				n->has_digest = true;
			}
			break;
		case S_IFLNK:
			if (!payload || !*payload || cfs_wnode_set_payload(n, payload) < 0)
				goto out;
			n->size = strlen(payload);
			break;
		case S_IFDIR:
		case S_IFCHR:
		case S_IFBLK:
		case S_IFIFO:
		case S_IFSOCK:
			break;
		default:
			goto out;
		}
		while ((x = strtok_r(NULL, " ", &save))) {
			r = parse_xattr(n, x);
			if (r < 0)
				goto out;
		}
		r = -EINVAL;
	}
	if (strcmp(path, "/") == 0) {
		if (tree->root || !S_ISDIR(n->mode))
			goto out;
		tree->root = n;
		n = NULL;
		r = 0;
		goto out;
	}
	if (!tree->root)
		goto out;
	r = lookup_path(tree->root, path, &existing, &parent, &name, scratch);
	if (r < 0 || !parent || !name || existing) {
		r = -EINVAL;
		goto out;
	}
	r = cfs_wnode_add_child(parent, n, name);
	if (r < 0)
		goto out;
	n = NULL;
	r = 0;
out:
	cfs_wnode_free(n);
	free(path);
	free(payload);
	free(content);
	return r;
}

int cfs_tree_from_dump(FILE *f, struct cfs_tree **tree_ret, size_t *line_ret)
{
	struct cfs_tree *tree = calloc(1, sizeof(*tree));
	char *line = NULL, *scratch = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int r = -ENOMEM;

	if (!tree)
		goto out;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		free(scratch);
		scratch = malloc((size_t)len + 1);
		if (!scratch) {
			r = -ENOMEM;
			goto out;
		}
		r = parse_line(tree, line, scratch);
		if (r < 0) {
			if (line_ret)
				*line_ret = lineno;
			goto out;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		goto out;
	}
	if (!tree->root) {
		r = -EINVAL;
		if (line_ret)
			*line_ret = lineno;
		goto out;
	}
	*tree_ret = cfs_steal_pointer(&tree);
	r = 0;
out:
	free(line);
	free(scratch);
	cfs_tree_free(tree);
	return r;
}

/* ---- image to dump text ---------------------------------------------------------------- */

enum {
	ESC_EQUAL = 1 << 0,     /* '=' too (xattr fields) */
	ESC_LONE_DASH = 1 << 1, /* a field that is just "-" (which means "none") */
};

static void put_escaped(FILE *out, const void *data, size_t len, unsigned flags)
{
	const unsigned char *p = data;

	if ((flags & ESC_LONE_DASH) && len == 1 && p[0] == '-') {
		fputs("\\x2d", out);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c == '\\')
			fputs("\\\\", out);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\r')
			fputs("\\r", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if ((c == '=' && (flags & ESC_EQUAL)) || c <= 0x20 || c >= 0x7f)
			fprintf(out, "\\x%.2x", c);
		else
			putc(c, out);
	}
}

#define OVL "trusted.overlay."
#define OVL_ESC "trusted.overlay.overlay."

struct seen {
	uint64_t nid;
	char *path;
};

struct dump_ctx {
	struct cfs_image *img;
	FILE *out;
	void *seen;    /* tsearch tree of struct seen: non-directories by nid */
	FILE *xf;      /* " key=value" of the current inode */
	bool whiteout; /* ...which is an escaped whiteout */
	uint8_t *data; /* inline content buffer */
	size_t data_cap;
	size_t img_len;
	char *msg; /* for failures of the dump itself */
	size_t msglen;
};

static int cmp_seen(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return x->nid < y->nid ? -1 : x->nid > y->nid;
}

static void free_seen(void *p)
{
	struct seen *s = p;

	free(s->path);
	free(s);
}

/* One xattr as composefs reads it back: the image's own overlay xattrs are left out, the
 * escaped ones are shown under their real names. */
static int dump_xattr(const char *name, const uint8_t *value, size_t len, void *userdata)
{
	struct dump_ctx *ctx = userdata;
	const char *rest = NULL;

	if (strcmp(name, OVL_ESC "whiteout") == 0) {
		ctx->whiteout = true;
		return 0;
	}
	if (strcmp(name, OVL_ESC "whiteouts") == 0 || strcmp(name, "user.overlay.whiteout") == 0 ||
	    strcmp(name, "user.overlay.whiteouts") == 0)
		return 0;
	/* The marks of a directory holding escaped whiteouts (format version 1). */
	if ((strcmp(name, OVL_ESC "opaque") == 0 || strcmp(name, "user.overlay.opaque") == 0) &&
	    len == 1 && value[0] == 'x')
		return 0;
	if (strncmp(name, OVL_ESC, strlen(OVL_ESC)) == 0)
		rest = name + strlen(OVL_ESC);
	else if (strncmp(name, OVL, strlen(OVL)) == 0)
		return 0; /* metacopy, redirect, opaque */
	putc(' ', ctx->xf);
	if (rest) {
		fputs(OVL, ctx->xf);
		put_escaped(ctx->xf, rest, strlen(rest), ESC_EQUAL);
	} else {
		put_escaped(ctx->xf, name, strlen(name), ESC_EQUAL);
	}
	putc('=', ctx->xf);
	put_escaped(ctx->xf, value, len, ESC_EQUAL);
	return 0;
}

static int dump_entry(const struct cfs_image_entry *e, void *userdata)
{
	struct dump_ctx *ctx = userdata;
	struct seen key = {.nid = e->nid}, **found = NULL;
	char *xbuf = NULL;
	size_t xlen = 0;
	uint32_t mode = e->mode;
	uint64_t size = e->size, rdev = e->rdev;
	const char *link_target = NULL;
	ssize_t clen = 0;
	int r;

	/* Real whiteouts (the root's 00..ff) are not part of the tree. */
	if (S_ISCHR(e->mode) && e->rdev == 0)
		return 0;
	if (!S_ISDIR(e->mode)) {
		found = tfind(&key, &ctx->seen, cmp_seen);
		if (found) {
			link_target = (*found)->path;
		} else {
			struct seen *s = calloc(1, sizeof(*s));

			if (!s || !(s->path = strndup(e->path, e->path_len))) {
				free(s);
				return -ENOMEM;
			}
			s->nid = e->nid;
			if (!tsearch(s, &ctx->seen, cmp_seen)) {
				free_seen(s);
				return -ENOMEM;
			}
		}
	}
	ctx->whiteout = false;
	ctx->xf = open_memstream(&xbuf, &xlen);
	if (!ctx->xf)
		return -ENOMEM;
	r = cfs_image_xattrs(ctx->img, e->nid, dump_xattr, ctx);
	if (fclose(ctx->xf) != 0 && r == 0)
		r = -ENOMEM;
	ctx->xf = NULL;
	if (r < 0)
		goto out;
	if (S_ISREG(mode) && ctx->whiteout) {
		mode = S_IFCHR | (mode & ~S_IFMT);
		size = 0;
		rdev = 0;
	} else if (S_ISREG(mode) && e->flat && size > 0) {
		/* Data stored in the image cannot be larger than the image. */
		if (size > ctx->img_len) {
			if (ctx->msg && ctx->msglen)
				snprintf(ctx->msg, ctx->msglen,
				         "inode %llu: %llu bytes of data in a %zu-byte image",
				         (unsigned long long)e->nid, (unsigned long long)size,
				         ctx->img_len);
			r = -EUCLEAN;
			goto out;
		}
		if (size > ctx->data_cap) {
			uint8_t *d = realloc(ctx->data, size);

			if (!d) {
				r = -ENOMEM;
				goto out;
			}
			ctx->data = d;
			ctx->data_cap = size;
		}
		clen = cfs_image_read_data(ctx->img, e->nid, ctx->data, size);
		if (clen < 0) {
			r = (int)clen;
			goto out;
		}
	}
	put_escaped(ctx->out, e->path, e->path_len, 0);
	fprintf(ctx->out, " %" PRIu64 " %s%o %u %u %u %u %" PRIu64 ".%u ", size,
	        link_target ? "@" : "", mode, e->nlink, e->uid, e->gid, (unsigned)rdev, e->mtime,
	        e->mtime_nsec);
	if (link_target) {
		put_escaped(ctx->out, link_target, strlen(link_target), ESC_LONE_DASH);
	} else if (S_ISLNK(mode) && e->symlink) {
		put_escaped(ctx->out, e->symlink, strlen(e->symlink), ESC_LONE_DASH);
	} else if (S_ISREG(mode) && e->redirect && e->redirect_len > 1) {
		const char *p = e->redirect;
		size_t l = e->redirect_len;

		if (p[0] == '/') {
			p++;
			l--;
		}
		put_escaped(ctx->out, p, l, ESC_LONE_DASH);
	} else {
		putc('-', ctx->out);
	}
	putc(' ', ctx->out);
	if (clen > 0)
		put_escaped(ctx->out, ctx->data, (size_t)clen, ESC_LONE_DASH);
	else
		putc('-', ctx->out);
	putc(' ', ctx->out);
	if (S_ISREG(mode) && e->has_digest) {
		char hex[2 * CFS_DIGEST_SIZE + 1];

		cfs_hex_encode(e->digest, CFS_DIGEST_SIZE, hex);
		fputs(hex, ctx->out);
	} else {
		putc('-', ctx->out);
	}
	fwrite(xbuf, 1, xlen, ctx->out);
	putc('\n', ctx->out);
	r = ferror(ctx->out) ? -EIO : 0;
out:
	free(xbuf);
	return r;
}

int cfs_image_dump(const uint8_t *img_data, size_t img_len, FILE *out, char *msg, size_t msglen)
{
	struct dump_ctx ctx = {.out = out, .img_len = img_len, .msg = msg, .msglen = msglen};
	int r;

	if (msg && msglen)
		msg[0] = '\0';
	r = cfs_image_open_buffer_msg(img_data, img_len, &ctx.img, msg, msglen);
	if (r < 0)
		return r;
	r = cfs_image_walk(ctx.img, CFS_IMAGE_WALK_ROOT, dump_entry, &ctx);
	if (r < 0 && msg && msglen && !msg[0])
		snprintf(msg, msglen, "%s",
		         cfs_image_error(ctx.img)[0] ? cfs_image_error(ctx.img) : strerror(-r));
	tdestroy(ctx.seen, free_seen);
	free(ctx.data);
	cfs_image_free(ctx.img);
	return r;
}
