/* lc_sha256.c: see lc_sha256.h. */
#include "lc_sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LC_HAVE_SHA256
#include <openssl/evp.h>

int lc_sha256_available(void) { return 1; }

typedef struct {
    EVP_MD_CTX *ctx;
} sha_ctx;

static int sha_begin(sha_ctx *s, lc_err *err) {
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(s->ctx);
        s->ctx = NULL;
        return lc_errf(err, "SHA-256: libcrypto could not start a digest");
    }
    return LC_OK;
}

static int sha_update(sha_ctx *s, const void *p, size_t n, lc_err *err) {
    if (n && EVP_DigestUpdate(s->ctx, p, n) != 1) return lc_errf(err, "SHA-256: libcrypto digest update failed");
    return LC_OK;
}

static int sha_end(sha_ctx *s, uint8_t out[LC_SHA256_BYTES], lc_err *err) {
    unsigned len = 0;
    int ok = s->ctx && EVP_DigestFinal_ex(s->ctx, out, &len) == 1 && len == LC_SHA256_BYTES;
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
    return ok ? LC_OK : lc_errf(err, "SHA-256: libcrypto digest final failed");
}

static void sha_abort(sha_ctx *s) {
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

int lc_sha256_mem(const void *data, size_t n, uint8_t out[LC_SHA256_BYTES], lc_err *err) {
    sha_ctx s;
    if (sha_begin(&s, err)) return LC_FAIL;
    if (sha_update(&s, data, n, err)) {
        sha_abort(&s);
        return LC_FAIL;
    }
    return sha_end(&s, out, err);
}

int lc_sha256_file(const char *path, uint8_t out[LC_SHA256_BYTES], uint64_t *bytes, lc_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lc_errf(err, "%s: cannot open for SHA-256: %s", path, strerror(errno));
    enum { BLOCK = 1 << 20 };
    unsigned char *buf = malloc(BLOCK);
    sha_ctx s = {0};
    uint64_t total = 0;
    int rc = LC_FAIL;
    if (!buf) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (sha_begin(&s, err)) goto done;
    for (;;) {
        size_t n = fread(buf, 1, BLOCK, f);
        if (n && sha_update(&s, buf, n, err)) goto done;
        total += n;
        if (n < BLOCK) break;
    }
    if (ferror(f)) {
        lc_errf(err, "%s: read error during SHA-256: %s", path, strerror(errno));
        goto done;
    }
    rc = sha_end(&s, out, err);
    if (rc == LC_OK && bytes) *bytes = total;
done:
    sha_abort(&s);
    free(buf);
    fclose(f);
    return rc;
}
#else
int lc_sha256_available(void) { return 0; }

static int unavailable(lc_err *err) {
    return lc_errf(err, "SHA-256 is not available: this build has no libcrypto (built with -DLCMT_SHA256=OFF)");
}

int lc_sha256_mem(const void *data, size_t n, uint8_t out[LC_SHA256_BYTES], lc_err *err) {
    (void)data, (void)n, (void)out;
    return unavailable(err);
}

int lc_sha256_file(const char *path, uint8_t out[LC_SHA256_BYTES], uint64_t *bytes, lc_err *err) {
    (void)out, (void)bytes;
    unavailable(err);
    return lc_err_prefix(err, "%s: ", path);
}
#endif

void lc_sha256_hex(const uint8_t d[LC_SHA256_BYTES], char hex[LC_SHA256_HEX]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < LC_SHA256_BYTES; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int lc_sha256_parse_hex(const char *s, uint8_t out[LC_SHA256_BYTES]) {
    if (!s || strlen(s) != 64) return LC_FAIL;
    for (int i = 0; i < LC_SHA256_BYTES; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return LC_FAIL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return LC_OK;
}
