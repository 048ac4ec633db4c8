/* integrity.h: SHA-256 pins for bundles and the bases they belong to
 * (export/BUNDLE.md, "Integrity"). The CRC-32s of the bundle format guard
 * against accidents; these let a device pin the exact files it was given.
 *
 * The base digest is over the files the loader reads:
 *  - a single-file base (GGUF, llama2.c checkpoint, .h5): that file's SHA-256;
 *  - a Hugging Face folder: config.json plus model.safetensors, or
 *    model.safetensors.index.json plus every shard its weight_map names;
 *    the digest is the SHA-256 of the listing `sha256sum` prints for those
 *    files ("<hex>  <name>\n" per file, names in byte order), i.e.
 *    (cd DIR && sha256sum FILES | LC_ALL=C sort -k2 | sha256sum). */
#ifndef INTEGRITY_H
#define INTEGRITY_H

#include <cjson/cJSON.h>

#include "bundle.h"
#include "lc_err.h"
#include "lc_sha256.h"

/* Returned (besides LC_FAIL for unreadable files or a malformed pin) when
 * a digest differs from the one expected. */
#define LC_SHA256_MISMATCH (-2)

/* The base's digest (hex) and, if files is non-NULL, a JSON array of
 * {"name", "bytes", "sha256"} per file. */
int base_sha256(const char *model_path, char hex[LC_SHA256_HEX], cJSON **files, lc_err *err);

/* The SHA-256 of the whole bundle file (its mapping). */
int bundle_sha256(const bundle *b, char hex[LC_SHA256_HEX], lc_err *err);

/* Checks the bundle file against an expected digest: 64 hex digits, or the
 * path of a sha256sum-style file ("<hex>  <name>", the first line's digest).
 * A mismatch names both digests. */
int bundle_check_sha256(const bundle *b, const char *expect, lc_err *err);

/* Checks the base files at model_path against the digest the bundle's
 * manifest records (base.sha256); refuses a bundle without one. */
int bundle_check_base_sha256(const bundle *b, const char *model_path, lc_err *err);

/* Checks the base files at model_path against an expected digest (hex). */
int base_check_sha256(const char *model_path, const char *expect, lc_err *err);

#endif
