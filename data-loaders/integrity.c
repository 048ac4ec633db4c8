/* integrity.c: see integrity.h. */
#include "integrity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loaders.h"

typedef struct {
    char *name;
    uint64_t bytes;
    char hex[LC_SHA256_HEX];
} file_digest;

static int by_name(const void *a, const void *b) {
    return strcmp(((const file_digest *)a)->name, ((const file_digest *)b)->name);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int add_name(file_digest **v, int *n, int *cap, const char *name, lc_err *err) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*v)[i].name, name)) return LC_OK;
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 8;
        file_digest *t = realloc(*v, (size_t)nc * sizeof *t);
        if (!t) return lc_errf(err, "out of memory");
        *v = t, *cap = nc;
    }
    memset(&(*v)[*n], 0, sizeof **v);
    if (!((*v)[*n].name = strdup(name))) return lc_errf(err, "out of memory");
    (*n)++;
    return LC_OK;
}

/* The files of a Hugging Face folder the loader reads. */
static int hf_files(const char *dir, file_digest **v, int *n, int *cap, lc_err *err) {
    char p[4200];
    if (add_name(v, n, cap, "config.json", err)) return LC_FAIL;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (!is_file(p)) return add_name(v, n, cap, "model.safetensors", err);
    if (add_name(v, n, cap, "model.safetensors.index.json", err)) return LC_FAIL;
    char *text = lc_read_file(p, NULL, err);
    if (!text) return LC_FAIL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    int rc = LC_OK;
    if (!cJSON_IsObject(wm)) rc = lc_errf(err, "%s: no 'weight_map' object", p);
    for (const cJSON *e = rc == LC_OK ? wm->child : NULL; e && rc == LC_OK; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') ||
            !strcmp(e->valuestring, "..") || !strcmp(e->valuestring, "."))
            rc = lc_errf(err, "%s: weight_map['%s']: a shard file name in the folder is expected", p,
                         e->string ? e->string : "?");
        else
            rc = add_name(v, n, cap, e->valuestring, err);
    }
    cJSON_Delete(j);
    return rc;
}

int base_sha256(const char *model_path, char hex[LC_SHA256_HEX], cJSON **files, lc_err *err) {
    if (files) *files = NULL;
    struct stat st;
    if (stat(model_path, &st) != 0) return lc_errf(err, "%s: cannot read the base for SHA-256", model_path);
    file_digest *v = NULL;
    int n = 0, cap = 0, rc = LC_FAIL, dir = S_ISDIR(st.st_mode);
    char *listing = NULL;
    if (dir) {
        if (hf_files(model_path, &v, &n, &cap, err)) goto done;
    } else {
        const char *base = strrchr(model_path, '/');
        if (add_name(&v, &n, &cap, base ? base + 1 : model_path, err)) goto done;
    }
    qsort(v, (size_t)n, sizeof *v, by_name);
    for (int i = 0; i < n; i++) {
        char p[4200];
        if (dir)
            snprintf(p, sizeof p, "%s/%s", model_path, v[i].name);
        else
            snprintf(p, sizeof p, "%s", model_path);
        uint8_t d[LC_SHA256_BYTES];
        if (lc_sha256_file(p, d, &v[i].bytes, err)) goto done;
        lc_sha256_hex(d, v[i].hex);
    }
    if (n == 1 && !dir) {
        memcpy(hex, v[0].hex, LC_SHA256_HEX);
    } else {
        size_t len = 0;
        for (int i = 0; i < n; i++) len += 64 + 2 + strlen(v[i].name) + 1;
        if (!(listing = malloc(len + 1))) {
            lc_errf(err, "out of memory");
            goto done;
        }
        size_t at = 0;
        for (int i = 0; i < n; i++) at += (size_t)sprintf(listing + at, "%s  %s\n", v[i].hex, v[i].name);
        uint8_t d[LC_SHA256_BYTES];
        if (lc_sha256_mem(listing, at, d, err)) goto done;
        lc_sha256_hex(d, hex);
    }
    if (files) {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; a && i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", v[i].name);
            cJSON_AddNumberToObject(o, "bytes", (double)v[i].bytes);
            cJSON_AddStringToObject(o, "sha256", v[i].hex);
            cJSON_AddItemToArray(a, o);
        }
        if (!a) {
            lc_errf(err, "out of memory");
            goto done;
        }
        *files = a;
    }
    rc = LC_OK;
done:
    for (int i = 0; i < n; i++) free(v[i].name);
    free(v);
    free(listing);
    return rc;
}

/* 64 hex digits given directly, or read from the first line of a
 * sha256sum-style file. */
static int expected_digest(const char *expect, char out[LC_SHA256_HEX], lc_err *err) {
    uint8_t d[LC_SHA256_BYTES];
    if (lc_sha256_parse_hex(expect, d) == LC_OK) {
        lc_sha256_hex(d, out);
        return LC_OK;
    }
    if (!is_file(expect))
        return lc_errf(err, "expected SHA-256 '%s': neither 64 hex digits nor a readable file", expect);
    char *text = lc_read_file(expect, NULL, err);
    if (!text) return LC_FAIL;
    char first[65] = "";
    int ok = strlen(text) >= 64 && (memcpy(first, text, 64), first[64] = 0, 1) &&
             (text[64] == 0 || text[64] == ' ' || text[64] == '\n' || text[64] == '\t') &&
             lc_sha256_parse_hex(first, d) == LC_OK;
    free(text);
    if (!ok) return lc_errf(err, "%s: no SHA-256 (64 hex digits) at the start of the file", expect);
    lc_sha256_hex(d, out);
    return LC_OK;
}

int bundle_sha256(const bundle *b, char hex[LC_SHA256_HEX], lc_err *err) {
    uint8_t d[LC_SHA256_BYTES];
    if (lc_sha256_mem(bundle_bytes(b), bundle_size(b), d, err)) return lc_err_prefix(err, "%s: ", bundle_path(b));
    lc_sha256_hex(d, hex);
    return LC_OK;
}

int bundle_check_sha256(const bundle *b, const char *expect, lc_err *err) {
    char want[LC_SHA256_HEX], got[LC_SHA256_HEX];
    if (expected_digest(expect, want, err)) return lc_err_prefix(err, "%s: ", bundle_path(b));
    if (bundle_sha256(b, got, err)) return LC_FAIL;
    if (strcmp(want, got))
        return lc_errf(err, "%s: SHA-256 mismatch: the file is %s, the pin expects %s (not the bundle you "
                       "were given)", bundle_path(b), got, want), LC_SHA256_MISMATCH;
    return LC_OK;
}

int base_check_sha256(const char *model_path, const char *expect, lc_err *err) {
    char want[LC_SHA256_HEX], got[LC_SHA256_HEX];
    if (expected_digest(expect, want, err)) return lc_err_prefix(err, "%s: ", model_path);
    if (base_sha256(model_path, got, NULL, err)) return LC_FAIL;
    if (strcmp(want, got))
        return lc_errf(err, "%s: base SHA-256 mismatch: the files are %s, the pin expects %s", model_path, got,
                       want), LC_SHA256_MISMATCH;
    return LC_OK;
}

int bundle_check_base_sha256(const bundle *b, const char *model_path, lc_err *err) {
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(bundle_manifest(b), "base");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(base, "sha256");
    uint8_t d[LC_SHA256_BYTES];
    if (!cJSON_IsString(h) || lc_sha256_parse_hex(h->valuestring, d))
        return lc_errf(err, "%s: the manifest records no base SHA-256 (base.sha256; bundles exported before "
                       "it existed): re-export to pin the base", bundle_path(b)), LC_SHA256_MISMATCH;
    char got[LC_SHA256_HEX], want[LC_SHA256_HEX];
    lc_sha256_hex(d, want);
    if (base_sha256(model_path, got, NULL, err)) return LC_FAIL;
    if (strcmp(want, got))
        return lc_errf(err, "%s: made for other base files: base.sha256 is %s in the bundle, %s for %s",
                       bundle_path(b), want, got, model_path), LC_SHA256_MISMATCH;
    return LC_OK;
}
