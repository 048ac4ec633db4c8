/* lc_sha256.h: SHA-256 (FIPS 180-4) through OpenSSL's libcrypto, for the
 * integrity pins of bundles and bases (export/BUNDLE.md, "Integrity").
 * Not hand-written: the digest is libcrypto's EVP SHA-256. A build without
 * libcrypto (the runtime with -DLCMT_SHA256=OFF) keeps the API; every call
 * then fails with a message saying so, and lc_sha256_available() is 0.
 * No global state; contexts are per call, safe from any thread. */
#ifndef LC_SHA256_H
#define LC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"

#define LC_SHA256_BYTES 32
#define LC_SHA256_HEX 65 /* 64 hex digits and the terminator */

int lc_sha256_available(void);
/* The digest of n bytes. */
int lc_sha256_mem(const void *data, size_t n, uint8_t out[LC_SHA256_BYTES], lc_err *err);
/* The digest of a whole file, read in 1 MiB blocks; *bytes (may be NULL)
 * gets its size. Errors name the file. */
int lc_sha256_file(const char *path, uint8_t out[LC_SHA256_BYTES], uint64_t *bytes, lc_err *err);
/* Lower-case hex, as sha256sum prints it. */
void lc_sha256_hex(const uint8_t d[LC_SHA256_BYTES], char hex[LC_SHA256_HEX]);
/* Parses 64 hex digits (either case; nothing else, no spaces): LC_OK or LC_FAIL. */
int lc_sha256_parse_hex(const char *s, uint8_t out[LC_SHA256_BYTES]);

#endif
