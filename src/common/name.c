/* SPDX-License-Identifier: MIT */
/* cfscache: object name parsing and formatting; every name is checked here before any I/O. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/name.h"
#include "common/util.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is not an object name */
}

/* Decodes @nhex hex digits (even count) into bytes. */
static int decode_hex(const char *s, size_t nhex, uint8_t *out)
{
	for (size_t i = 0; i < nhex; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int cfs_name_parse_hex(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE])
{
	uint8_t d[CFS_DIGEST_SIZE];

	if (!s || len != CFS_DIGEST_HEX_SIZE || decode_hex(s, len, d) < 0)
		return -EINVAL;
	memcpy(digest, d, sizeof(d));
	return 0;
}

int cfs_name_parse_prefix(const char *s, size_t len, unsigned *prefix_ret)
{
	uint8_t b;

	if (!s || len != 2 || decode_hex(s, 2, &b) < 0)
		return -EINVAL;
	*prefix_ret = b;
	return 0;
}

int cfs_name_parse_rest(unsigned prefix, const char *s, size_t len,
			uint8_t digest[CFS_DIGEST_SIZE])
{
	uint8_t d[CFS_DIGEST_SIZE];

	if (!s || prefix > 0xff || len != CFS_NAME_REST_LEN || decode_hex(s, len, d + 1) < 0)
		return -EINVAL;
	d[0] = (uint8_t)prefix;
	memcpy(digest, d, sizeof(d));
	return 0;
}

int cfs_name_parse_path(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE])
{
	unsigned prefix;

	if (!s || len != CFS_NAME_PATH_LEN || s[2] != '/')
		return -EINVAL;
	if (cfs_name_parse_prefix(s, 2, &prefix) < 0)
		return -EINVAL;
	return cfs_name_parse_rest(prefix, s + 3, len - 3, digest);
}

int cfs_name_parse_any(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE])
{
	if (!s)
		return -EINVAL;
	if (len == CFS_NAME_PATH_LEN)
		return cfs_name_parse_path(s, len, digest);
	if (len == 7 + CFS_DIGEST_HEX_SIZE && memcmp(s, "sha256:", 7) == 0)
		return cfs_name_parse_hex(s + 7, len - 7, digest);
	return cfs_name_parse_hex(s, len, digest);
}

void cfs_name_format_hex(const uint8_t digest[CFS_DIGEST_SIZE], char out[CFS_DIGEST_HEX_SIZE + 1])
{
	cfs_hex_encode(digest, CFS_DIGEST_SIZE, out);
}

void cfs_name_format_path(const uint8_t digest[CFS_DIGEST_SIZE], char out[CFS_NAME_PATH_LEN + 1])
{
	char hex[CFS_DIGEST_HEX_SIZE + 1];

	cfs_hex_encode(digest, CFS_DIGEST_SIZE, hex);
	out[0] = hex[0];
	out[1] = hex[1];
	out[2] = '/';
	memcpy(out + 3, hex + 2, CFS_NAME_REST_LEN + 1);
}
