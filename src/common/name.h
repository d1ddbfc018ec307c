/* SPDX-License-Identifier: MIT */
/* cfscache: object names: "XX/<62 hex>" paths and 64-hex digests, strictly lower case. */
#ifndef CFS_NAME_H
#define CFS_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

#define CFS_NAME_PATH_LEN 65 /* "XX/" + 62 hex */
#define CFS_NAME_REST_LEN 62

/* Each parser accepts exactly its form (lower-case hex, exact length, no trailing bytes)
 * and returns 0 or -EINVAL; the digest is written only on success. */
int cfs_name_parse_path(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE]);
int cfs_name_parse_hex(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE]);
/* Two hex digits naming a prefix directory ("00".."ff"). */
int cfs_name_parse_prefix(const char *s, size_t len, unsigned *prefix_ret);
/* The 62-hex file name inside prefix directory @prefix. */
int cfs_name_parse_rest(unsigned prefix, const char *s, size_t len,
			uint8_t digest[CFS_DIGEST_SIZE]);
/* Accepts "XX/<62hex>", "<64hex>" or "sha256:<64hex>" (the forms users paste). */
int cfs_name_parse_any(const char *s, size_t len, uint8_t digest[CFS_DIGEST_SIZE]);

/* "XX/<62hex>" plus NUL: 66 bytes. */
void cfs_name_format_path(const uint8_t digest[CFS_DIGEST_SIZE], char out[CFS_NAME_PATH_LEN + 1]);
/* 64 hex plus NUL. */
void cfs_name_format_hex(const uint8_t digest[CFS_DIGEST_SIZE], char out[CFS_DIGEST_HEX_SIZE + 1]);

#endif
