/* bundle.c: see bundle.h and export/BUNDLE.md. */
#include "bundle.h"
#include "lc_sha256.h"
#include "loaders.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lc_crc32.h"
#include "loaders.h"
#include "recipe.h"
#include "tensor_file.h"

const char *const BUNDLE_DTYPE_NAMES[] = {"f32", "f16", "i8", NULL};
static const char MAGIC[8] = {'L', 'C', 'M', 'T', 'B', 'N', 'D', 'L'};
#define HEADER_SIZE 64

static uint32_t crc(const void *p, size_t n) { return lc_crc32(0, p, n); }

static int host_is_le(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static size_t align_up(size_t x) { return (x + BUNDLE_ALIGN - 1) / BUNDLE_ALIGN * BUNDLE_ALIGN; }

/* ---- identity ------------------------------------------------------------------ */

typedef struct {
    uint32_t c;
    int sample; /* 0: every byte; 1: the blocks of BUNDLE.md's weights_sample_crc32 */
} crc_ctx;

static int crc_tensor(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                      void *p) {
    (void)name, (void)grad;
    crc_ctx *x = p;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    const unsigned char *b = (const unsigned char *)data;
    const size_t bytes = n * sizeof(float);
    if (!x->sample || bytes <= (size_t)BUNDLE_SAMPLE_BLOCKS * BUNDLE_SAMPLE_BYTES) {
        x->c = lc_crc32(x->c, b, bytes);
        return 0;
    }
    /* BUNDLE_SAMPLE_BLOCKS blocks evenly spaced from the first byte to the
     * last block, each starting at a multiple of 4 */
    const size_t span = bytes - BUNDLE_SAMPLE_BYTES;
    for (int k = 0; k < BUNDLE_SAMPLE_BLOCKS; k++) {
        size_t off = (size_t)((double)span * k / (BUNDLE_SAMPLE_BLOCKS - 1)) / 4 * 4;
        x->c = lc_crc32(x->c, b + off, BUNDLE_SAMPLE_BYTES);
    }
    return 0;
}

uint32_t model_weights_crc32(const model *m) {
    /* a base stored in another type keeps the identity of the float32
     * weights it was made from, so bundles name the base file they were
     * made for whatever type a job holds it in; a base read in its stored
     * type (a quantized GGUF) is named by its dequantized values */
    if (m->base_type != QT_F32 && m->f32_crc32_set) return m->f32_crc32;
    crc_ctx x = {0, 0};
    model_for_each_tensor((model *)m, crc_tensor, &x);
    return x.c;
}

/* The sampled CRC of a stored matrix without dequantizing all of it: only
 * the rows under each sampled block, which give the same float32 bytes. */
static int crc_stored(const char *name, int ndim, const int64_t *shape, const float *data, const qmat *q,
                      void *p) {
    crc_ctx *x = p;
    if (data) return crc_tensor(name, ndim, shape, (float *)data, NULL, p);
    const size_t cols = (size_t)q->cols, bytes = (size_t)q->rows * cols * sizeof(float);
    const size_t blk = BUNDLE_SAMPLE_BYTES / sizeof(float);
    const size_t nrows = bytes <= (size_t)BUNDLE_SAMPLE_BLOCKS * BUNDLE_SAMPLE_BYTES ? (size_t)q->rows
                         : (blk + cols - 1) / cols + 1;
    float *buf = malloc(sizeof(float) * nrows * cols);
    if (!buf) return LC_FAIL;
    int rc = 0;
    if (nrows == (size_t)q->rows) {
        rc = qmat_to_f32(q, buf, NULL);
        if (!rc) x->c = lc_crc32(x->c, buf, bytes);
        free(buf);
        return rc;
    }
    const size_t span = bytes - BUNDLE_SAMPLE_BYTES;
    for (int k = 0; k < BUNDLE_SAMPLE_BLOCKS && !rc; k++) {
        const size_t off = (size_t)((double)span * k / (BUNDLE_SAMPLE_BLOCKS - 1)) / 4 * 4;
        const size_t e0 = off / sizeof(float), r0 = e0 / cols;
        size_t r1 = (e0 + blk + cols - 1) / cols; /* one past the last row touched */
        if (r1 > (size_t)q->rows) r1 = (size_t)q->rows;
        qmat sub;
        rc = qmat_view(&sub, q->type, (int64_t)(r1 - r0), q->cols, (const unsigned char *)q->data + r0 * q->row_bytes,
                       NULL) ||
             qmat_to_f32(&sub, buf, NULL);
        if (!rc) x->c = lc_crc32(x->c, (const unsigned char *)buf + (off - r0 * cols * sizeof(float)),
                                 BUNDLE_SAMPLE_BYTES);
    }
    free(buf);
    return rc;
}

uint32_t model_weights_sample_crc32(const model *m) {
    crc_ctx x = {0, 1};
    model_for_each_stored(m, crc_stored, &x);
    return x.c;
}

/* The identity with the full CRC, the sampled one, or both. */
static cJSON *identity(const model *m, int full, int sample) {
    const model_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "arch", c->arch);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "hidden_dim", c->hidden_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_seq_len", c->max_seq_len);
    cJSON_AddBoolToObject(o, "tie_embeddings", c->tie_embeddings);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddNumberToObject(o, "n_params", (double)m->n_params);
    if (full) cJSON_AddNumberToObject(o, "weights_crc32", (double)model_weights_crc32(m));
    if (sample) cJSON_AddNumberToObject(o, "weights_sample_crc32", (double)model_weights_sample_crc32(m));
    return o;
}

cJSON *bundle_base_identity(const model *m) { return identity(m, 1, 1); }

/* ---- writer --------------------------------------------------------------------- */

typedef struct {
    char *name;
    bundle_dtype dt;
    int ndim;
    int64_t shape[4];
    void *bytes;
    size_t nbytes;
    float *scales;
    size_t nscales;
} wtensor;

struct bundle_writer {
    char *path;
    wtensor *t;
    int n, cap;
};

int bundle_writer_open(bundle_writer **out, const char *path, lc_err *err) {
    *out = NULL;
    if (!host_is_le()) return lc_errf(err, "%s: bundles are little-endian; this host is not", path);
    bundle_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return lc_errf(err, "out of memory");
    }
    *out = w;
    return LC_OK;
}

void bundle_writer_abort(bundle_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].bytes);
        free(w->t[i].scales);
    }
    free(w->t);
    free(w->path);
    free(w);
}

int bundle_writer_add(bundle_writer *w, const char *name, int ndim, const int64_t *shape,
                      const float *data, bundle_dtype dt, lc_err *err) {
    if (ndim < 1 || ndim > 4) return lc_errf(err, "%s: tensor '%s': 1 to 4 dimensions", w->path, name);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return lc_errf(err, "%s: tensor '%s' added twice", w->path, name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wtensor *nt = realloc(w->t, sizeof *nt * cap);
        if (!nt) return lc_errf(err, "out of memory");
        w->t = nt, w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return lc_errf(err, "%s: tensor '%s': non-positive dimension", w->path, name);
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    t->ndim = ndim, t->dt = dt;
    t->name = strdup(name);
    if (!t->name) return lc_errf(err, "out of memory");
    if (dt == BUNDLE_F32) {
        t->nbytes = n * 4;
        if ((t->bytes = malloc(t->nbytes))) memcpy(t->bytes, data, t->nbytes);
    } else if (dt == BUNDLE_F16) {
        t->nbytes = n * 2;
        uint16_t *h = malloc(t->nbytes);
        if (h)
            for (size_t k = 0; k < n; k++) h[k] = lc_f32_to_f16(data[k]);
        t->bytes = h;
    } else {
        const size_t cols = (size_t)shape[ndim - 1], rows = n / cols;
        t->nbytes = n;
        int8_t *q = malloc(n);
        t->scales = malloc(sizeof(float) * rows);
        t->nscales = rows;
        if (q && t->scales)
            for (size_t r = 0; r < rows; r++) {
                const float *x = data + r * cols;
                float mx = 0.0f;
                for (size_t k = 0; k < cols; k++) mx = fabsf(x[k]) > mx ? fabsf(x[k]) : mx;
                const float sc = mx / 127.0f;
                t->scales[r] = sc;
                for (size_t k = 0; k < cols; k++) {
                    float v = sc > 0 ? x[k] / sc : 0.0f;
                    long iv = lroundf(v); /* half away from zero */
                    q[r * cols + k] = (int8_t)(iv > 127 ? 127 : iv < -127 ? -127 : iv);
                }
            }
        t->bytes = q;
    }
    if (!t->bytes || (dt == BUNDLE_I8 && !t->scales)) {
        free(t->name), free(t->bytes), free(t->scales);
        return lc_errf(err, "out of memory");
    }
    w->n++;
    return LC_OK;
}

size_t bundle_writer_bytes(const bundle_writer *w, const char *prefix) {
    size_t s = 0, lp = strlen(prefix);
    for (int i = 0; i < w->n; i++)
        if (!strncmp(w->t[i].name, prefix, lp)) s += w->t[i].nbytes + w->t[i].nscales * sizeof(float);
    return s;
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* The bundle is whole in tmp (fsync'd): hash it, write "<hex>  <name>" to a
 * temporary sidecar, drop the old sidecar, rename the bundle into place, then
 * the sidecar. A sidecar present always matches the bundle beside it; a
 * failure (or a kill) between the renames leaves the bundle without one. */
static int write_sidecar(const char *tmp, const char *path, char *hex, lc_err *err) {
    char side[4200], stmp[4200], line[LC_SHA256_HEX + 4200];
    uint8_t d[LC_SHA256_BYTES];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (snprintf(side, sizeof side, "%s.sha256", path) >= (int)sizeof side) {
        unlink(tmp);
        return lc_errf(err, "%s: path too long", path);
    }
    if (lc_sha256_file(tmp, d, NULL, err)) {
        unlink(tmp);
        return lc_err_prefix(err, "%s: ", path);
    }
    lc_sha256_hex(d, hex);
    snprintf(line, sizeof line, "%s  %s\n", hex, base);
    FILE *f = lc_tmp_open(side, stmp, sizeof stmp, err);
    if (!f) {
        unlink(tmp);
        return LC_FAIL;
    }
    size_t n = strlen(line);
    int ok = fwrite(line, 1, n, f) == n;
    if (lc_tmp_finish(f, ok, ok ? 0 : errno, stmp, side, err)) {
        unlink(tmp);
        return LC_FAIL;
    }
    if (unlink(side) != 0 && errno != ENOENT) {
        int e = errno;
        unlink(tmp), unlink(stmp);
        return lc_errf(err, "%s: cannot remove the old digest: %s (the previous bundle is unchanged)", side,
                       strerror(e));
    }
    if (lc_rename_tmp(tmp, path, err)) {
        unlink(stmp);
        return LC_FAIL;
    }
    return lc_rename_tmp(stmp, side, err);
}

static int writer_close(bundle_writer *w, cJSON *manifest, char *hex, lc_err *err) {
    char tmp[4200];
    FILE *f = NULL;
    char *js = NULL;
    int rc = LC_FAIL;
    /* layout of the data section */
    cJSON *arr = cJSON_CreateArray();
    size_t off = 0;
    size_t *offs = calloc(w->n ? w->n : 1, sizeof(size_t)), *soffs = calloc(w->n ? w->n : 1, sizeof(size_t));
    if (!arr || !offs || !soffs) {
        cJSON_Delete(arr);
        lc_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < w->n; i++) {
        wtensor *t = &w->t[i];
        offs[i] = off;
        off = align_up(off + t->nbytes);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", BUNDLE_DTYPE_NAMES[t->dt]);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddNumberToObject(o, "offset", (double)offs[i]);
        cJSON_AddNumberToObject(o, "nbytes", (double)t->nbytes);
        cJSON_AddNumberToObject(o, "crc32", (double)crc(t->bytes, t->nbytes));
        if (t->dt == BUNDLE_I8) {
            soffs[i] = off;
            off = align_up(off + t->nscales * sizeof(float));
            cJSON_AddNumberToObject(o, "scale_offset", (double)soffs[i]);
            cJSON_AddNumberToObject(o, "scale_crc32", (double)crc(t->scales, t->nscales * sizeof(float)));
        }
        cJSON_AddItemToArray(arr, o);
    }
    const size_t data_size = off;
    cJSON_DeleteItemFromObject(manifest, "format");
    cJSON_DeleteItemFromObject(manifest, "version");
    cJSON_DeleteItemFromObject(manifest, "tensors");
    cJSON_AddStringToObject(manifest, "format", "lcmt-bundle");
    cJSON_AddNumberToObject(manifest, "version", BUNDLE_VERSION);
    cJSON_AddItemToObject(manifest, "tensors", arr);
    js = cJSON_Print(manifest);
    if (!js) {
        lc_errf(err, "out of memory");
        goto done;
    }
    const size_t msize = strlen(js), data_offset = align_up(HEADER_SIZE + msize);
    unsigned char hdr[HEADER_SIZE] = {0};
    memcpy(hdr, MAGIC, 8);
    put_u32(hdr + 8, BUNDLE_VERSION);
    put_u32(hdr + 12, HEADER_SIZE);
    put_u64(hdr + 16, HEADER_SIZE);
    put_u64(hdr + 24, msize);
    put_u64(hdr + 32, data_offset);
    put_u64(hdr + 40, data_size);
    put_u32(hdr + 48, crc(js, msize));
    put_u32(hdr + 60, crc(hdr, 60));
    f = lc_tmp_open(w->path, tmp, sizeof tmp, err);
    if (!f) goto done;
    static const unsigned char zeros[BUNDLE_ALIGN] = {0};
    int ok = fwrite(hdr, 1, HEADER_SIZE, f) == HEADER_SIZE && fwrite(js, 1, msize, f) == msize &&
             fwrite(zeros, 1, data_offset - HEADER_SIZE - msize, f) == data_offset - HEADER_SIZE - msize;
    size_t pos = 0;
    for (int i = 0; ok && i < w->n; i++) {
        wtensor *t = &w->t[i];
        ok = fwrite(zeros, 1, offs[i] - pos, f) == offs[i] - pos && fwrite(t->bytes, 1, t->nbytes, f) == t->nbytes;
        pos = offs[i] + t->nbytes;
        if (ok && t->dt == BUNDLE_I8) {
            size_t sb = t->nscales * sizeof(float);
            ok = fwrite(zeros, 1, soffs[i] - pos, f) == soffs[i] - pos && fwrite(t->scales, 1, sb, f) == sb;
            pos = soffs[i] + sb;
        }
    }
    ok = ok && fwrite(zeros, 1, data_size - pos, f) == data_size - pos;
    if (!hex) {
        if (lc_tmp_close(f, ok, ok ? 0 : errno, tmp, w->path, err)) goto done;
    } else {
        if (lc_tmp_finish(f, ok, ok ? 0 : errno, tmp, w->path, err)) goto done;
        if (write_sidecar(tmp, w->path, hex, err)) goto done;
    }
    rc = LC_OK;
done:
    free(js);
    free(offs);
    free(soffs);
    cJSON_Delete(manifest);
    bundle_writer_abort(w);
    return rc;
}

int bundle_writer_close(bundle_writer *w, cJSON *manifest, lc_err *err) {
    return writer_close(w, manifest, NULL, err);
}

int bundle_writer_close_pinned(bundle_writer *w, cJSON *manifest, char hex[LC_SHA256_HEX], lc_err *err) {
    return writer_close(w, manifest, hex, err);
}

/* ---- reader --------------------------------------------------------------------- */

typedef struct {
    const cJSON *j;
    int checked;
    float *conv; /* converted values (f16, i8) */
} rtensor;

struct bundle {
    char *path;
    unsigned char *map;
    size_t size;
    size_t data_offset, data_size;
    cJSON *manifest;
    rtensor *t;
    int n;
    size_t copied, mapped;
};

static uint32_t get_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void bundle_close(bundle *b) {
    if (!b) return;
    if (b->map) munmap(b->map, b->size);
    for (int i = 0; i < b->n; i++) free(b->t[i].conv);
    free(b->t);
    cJSON_Delete(b->manifest);
    free(b->path);
    free(b);
}

int bundle_open(bundle **out, const char *path, lc_err *err) {
    *out = NULL;
    if (!host_is_le()) return lc_errf(err, "%s: bundles are little-endian; this host is not", path);
    bundle *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        return lc_errf(err, "out of memory");
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        lc_errf(err, "%s: cannot open bundle: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lc_errf(err, "%s: not a regular file", path);
        goto fail;
    }
    b->size = (size_t)st.st_size;
    if (b->size < HEADER_SIZE) {
        close(fd);
        lc_errf(err, "%s: truncated bundle: %zu bytes, the header alone is %d", path, b->size, HEADER_SIZE);
        goto fail;
    }
    void *mp = mmap(NULL, b->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (mp == MAP_FAILED) {
        lc_errf(err, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    b->map = mp;
    const unsigned char *h = b->map;
    if (memcmp(h, MAGIC, 8) != 0) {
        lc_errf(err, "%s: not a bundle (magic is not LCMTBNDL)", path);
        goto fail;
    }
    if (crc(h, 60) != get_u32(h + 60)) {
        lc_errf(err, "%s: header checksum mismatch (corrupt or tampered header)", path);
        goto fail;
    }
    uint32_t version = get_u32(h + 8);
    if (version != BUNDLE_VERSION) {
        lc_errf(err, "%s: bundle version %u, this build reads version %d", path, version, BUNDLE_VERSION);
        goto fail;
    }
    uint64_t hs = get_u32(h + 12), mo = get_u64(h + 16), ms = get_u64(h + 24), dof = get_u64(h + 32),
             ds = get_u64(h + 40);
    if (hs != HEADER_SIZE || mo < HEADER_SIZE || mo > b->size || ms > b->size - mo ||
        dof % BUNDLE_ALIGN != 0 || dof < mo + ms || dof > b->size) {
        lc_errf(err, "%s: header ranges outside the file (manifest %llu+%llu, data at %llu, file %zu "
                "bytes)", path, (unsigned long long)mo, (unsigned long long)ms, (unsigned long long)dof,
                b->size);
        goto fail;
    }
    if (ds != b->size - dof) {
        lc_errf(err, "%s: truncated or extended bundle: the header promises %llu data bytes, the file "
                "has %zu", path, (unsigned long long)ds, b->size - (size_t)dof);
        goto fail;
    }
    b->data_offset = (size_t)dof, b->data_size = (size_t)ds;
    if (crc(h + mo, (size_t)ms) != get_u32(h + 48)) {
        lc_errf(err, "%s: manifest checksum mismatch (corrupt or tampered manifest)", path);
        goto fail;
    }
    b->manifest = cJSON_ParseWithLength((const char *)h + mo, (size_t)ms);
    if (!b->manifest || !cJSON_IsObject(b->manifest)) {
        lc_errf(err, "%s: the manifest is not a JSON object", path);
        goto fail;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(b->manifest, "format");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b->manifest, "tensors");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "lcmt-bundle") || !cJSON_IsArray(ts)) {
        lc_errf(err, "%s: manifest: 'format' must be \"lcmt-bundle\" and 'tensors' an array", path);
        goto fail;
    }
    b->n = cJSON_GetArraySize(ts);
    b->t = calloc(b->n ? b->n : 1, sizeof(rtensor));
    if (!b->t) {
        lc_errf(err, "out of memory");
        goto fail;
    }
    int i = 0;
    for (const cJSON *e = ts->child; e; e = e->next, i++) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(nm)) {
            lc_errf(err, "%s: manifest: tensors[%d] has no name", path, i);
            goto fail;
        }
        b->t[i].j = e;
    }
    *out = b;
    return LC_OK;
fail:
    bundle_close(b);
    return LC_FAIL;
}

const cJSON *bundle_manifest(const bundle *b) { return b->manifest; }
const char *bundle_path(const bundle *b) { return b->path; }
size_t bundle_size(const bundle *b) { return b->size; }
const unsigned char *bundle_bytes(const bundle *b) { return b->map; }

void bundle_stats(const bundle *b, size_t *copied, size_t *mapped) {
    *copied = b->copied;
    *mapped = b->mapped;
}

static int jnum(const cJSON *o, const char *k, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

/* a non-negative integer field that fits in size_t exactly */
static int jsize(const cJSON *o, const char *k, size_t *v) {
    double d;
    if (!jnum(o, k, &d) || !(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return 0;
    *v = (size_t)d;
    return 1;
}

int bundle_tensor(bundle *b, const char *name, int ndim, const int64_t *shape, const float **out,
                  lc_err *err) {
    rtensor *t = NULL;
    for (int i = 0; i < b->n; i++) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(b->t[i].j, "name");
        if (!strcmp(nm->valuestring, name)) {
            t = &b->t[i];
            break;
        }
    }
    if (!t) return lc_errf(err, "%s: tensor '%s' is missing", b->path, name);
    const cJSON *j = t->j;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    int kind = -1;
    for (int k = 0; cJSON_IsString(dt) && BUNDLE_DTYPE_NAMES[k]; k++)
        if (!strcmp(dt->valuestring, BUNDLE_DTYPE_NAMES[k])) kind = k;
    if (kind < 0) return lc_errf(err, "%s: tensor '%s': unknown dtype", b->path, name);
    size_t n = 1;
    int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
    char want[128] = "", found[128] = "";
    for (int d = 0; d < ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
    int same = nd == ndim, d = 0;
    for (const cJSON *e = nd > 0 ? sh->child : NULL; e; e = e->next, d++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        snprintf(found + strlen(found), sizeof found - strlen(found), "%s%.0f", d ? ", " : "", v);
        if (d >= ndim || v != (double)shape[d]) same = 0;
    }
    if (!same)
        return lc_errf(err, "%s: tensor '%s': expected shape [%s], found [%s]", b->path, name, want, found);
    for (int k = 0; k < ndim; k++) n *= (size_t)shape[k];
    const size_t es = kind == BUNDLE_F32 ? 4 : kind == BUNDLE_F16 ? 2 : 1;
    size_t off, nbytes, sc_off = 0;
    double c32, sc32 = 0;
    if (!jsize(j, "offset", &off) || !jsize(j, "nbytes", &nbytes) || !jnum(j, "crc32", &c32))
        return lc_errf(err, "%s: tensor '%s': offset, nbytes and crc32 are required", b->path, name);
    if (nbytes != n * es || off % BUNDLE_ALIGN != 0 || off > b->data_size || nbytes > b->data_size - off)
        return lc_errf(err, "%s: tensor '%s': %zu bytes at offset %zu do not fit the data section (%zu "
                       "bytes) or the shape", b->path, name, nbytes, off, b->data_size);
    const unsigned char *p = b->map + b->data_offset + off;
    const size_t cols = (size_t)shape[ndim - 1], rows = n / cols;
    if (kind == BUNDLE_I8) {
        if (!jsize(j, "scale_offset", &sc_off) || !jnum(j, "scale_crc32", &sc32) ||
            sc_off % BUNDLE_ALIGN != 0 || sc_off > b->data_size || rows * 4 > b->data_size - sc_off)
            return lc_errf(err, "%s: tensor '%s': its int8 scales are missing or outside the file",
                           b->path, name);
    }
    if (!t->checked) {
        if (crc(p, nbytes) != (uint32_t)c32)
            return lc_errf(err, "%s: tensor '%s': checksum mismatch (corrupt or tampered data)", b->path, name);
        if (kind == BUNDLE_I8 && crc(b->map + b->data_offset + sc_off, rows * 4) != (uint32_t)sc32)
            return lc_errf(err, "%s: tensor '%s': checksum mismatch in its scales", b->path, name);
        t->checked = 1;
    }
    if (kind == BUNDLE_F32) {
        *out = (const float *)p; /* aligned: data_offset and offset are multiples of 64 */
        b->mapped += nbytes;
        return LC_OK;
    }
    if (!t->conv) {
        t->conv = malloc(sizeof(float) * n);
        if (!t->conv) return lc_errf(err, "out of memory");
        if (kind == BUNDLE_F16) {
            for (size_t k = 0; k < n; k++) {
                uint16_t h;
                memcpy(&h, p + 2 * k, 2);
                t->conv[k] = lc_f16_to_f32(h);
            }
        } else {
            const unsigned char *sp = b->map + b->data_offset + sc_off;
            for (size_t r = 0; r < rows; r++) {
                float s;
                memcpy(&s, sp + 4 * r, 4);
                for (size_t k = 0; k < cols; k++) t->conv[r * cols + k] = (float)(int8_t)p[r * cols + k] * s;
            }
        }
        b->copied += n * sizeof(float);
    }
    *out = t->conv;
    return LC_OK;
}

static int check_base(const bundle *b, const model *m, int quick, lc_err *err) {
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(b->manifest, "base");
    if (!cJSON_IsObject(base)) return lc_errf(err, "%s: manifest: 'base' is missing", b->path);
    /* bundles written before weights_sample_crc32 existed are checked in full */
    const int has_sample = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(base, "weights_sample_crc32"));
    /* a base quantized from float32 (model_quantize) keeps the full CRC-32
     * of the float32 weights it was made from: compare that (it costs
     * nothing), not a sample of dequantized values; a base read in its
     * stored type (a quantized GGUF) is sampled like a float32 one, from
     * the rows under the sampled blocks */
    const int cached = m->base_type != QT_F32 && m->f32_crc32_set;
    cJSON *mine = identity(m, !quick || !has_sample || cached, has_sample && !cached);
    int rc = LC_OK;
    for (const cJSON *e = mine->child; e && rc == LC_OK; e = e->next) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(base, e->string);
        if (!v || !cJSON_Compare(v, e, 1)) {
            char *a = v ? cJSON_PrintUnformatted(v) : NULL, *bb = cJSON_PrintUnformatted(e);
            lc_errf(err, "%s: made for another base model: '%s' is %s in the bundle, %s in the model "
                    "given", b->path, e->string, a ? a : "missing", bb ? bb : "?");
            free(a), free(bb);
            rc = LC_FAIL;
        }
    }
    cJSON_Delete(mine);
    return rc;
}

int bundle_check_base(const bundle *b, const model *m, lc_err *err) { return check_base(b, m, 0, err); }

int bundle_check_base_quick(const bundle *b, const model *m, lc_err *err) {
    return check_base(b, m, 1, err);
}

/* ---- tasks --------------------------------------------------------------------- */

const char **bundle_task_names(const bundle *b, int *n) {
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b->manifest, "tasks");
    int k = cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : 0;
    const char **names = calloc((size_t)k + 1, sizeof *names);
    *n = 0;
    if (!names) return NULL;
    for (const cJSON *e = k ? ts->child : NULL; e; e = e->next) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(nm)) names[(*n)++] = nm->valuestring;
    }
    return names;
}

static unsigned modules_mask(const cJSON *arr) {
    unsigned mask = 0;
    for (const cJSON *e = cJSON_IsArray(arr) ? arr->child : NULL; e; e = e->next) {
        int mo = cJSON_IsString(e) ? module_parse(e->valuestring) : -1;
        if (mo < 0) return 0;
        mask |= 1u << mo;
    }
    return mask;
}

static int load_lora_view(bundle *b, const model_config *c, const char *name, lora *l, lc_err *err) {
    const cJSON *ads = cJSON_GetObjectItemCaseSensitive(b->manifest, "adapters"), *a = NULL;
    for (const cJSON *e = cJSON_IsArray(ads) ? ads->child : NULL; e; e = e->next) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, name)) a = e;
    }
    if (!a) return lc_errf(err, "%s: manifest: adapter '%s' is missing", b->path, name);
    double rank, alpha;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(a, "rslora");
    unsigned mask = modules_mask(cJSON_GetObjectItemCaseSensitive(a, "modules"));
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(a, "layers");
    if (!jnum(a, "rank", &rank) || !jnum(a, "alpha", &alpha) || !mask || !cJSON_IsArray(layers) ||
        rank < 1 || rank > 65536)
        return lc_errf(err, "%s: manifest: adapter '%s' needs rank, alpha, modules and layers", b->path, name);
    unsigned char *on = calloc(c->n_layers, 1);
    if (!on) return lc_errf(err, "out of memory");
    for (const cJSON *e = layers->child; e; e = e->next) {
        int li = cJSON_IsNumber(e) ? (int)e->valuedouble : -1;
        if (li < 0 || li >= c->n_layers) {
            free(on);
            return lc_errf(err, "%s: manifest: adapter '%s': layer outside the base's 0..%d", b->path,
                           name, c->n_layers - 1);
        }
        on[li] = 1;
    }
    int r = lora_init_view(l, c, (int)rank, (float)alpha, cJSON_IsTrue(rs), mask, on, err);
    free(on);
    if (r) return LC_FAIL;
    snprintf(l->name, sizeof l->name, "%s", name);
    char tn[320];
    for (int li = 0; li < c->n_layers; li++) {
        if (!l->layer_on[li]) continue;
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            if (!(mask >> mo & 1)) continue;
            const int s = li * MOD_COUNT + mo;
            const float *p;
            int64_t sa[2] = {l->rank, module_in_dim(c, mo)}, sb[2] = {module_out_dim(c, mo), l->rank};
            snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.A", name, li, module_short(mo));
            if (bundle_tensor(b, tn, 2, sa, &p, err)) goto fail;
            l->A[s] = (float *)p; /* read-only view: inference never writes adapters */
            snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.B", name, li, module_short(mo));
            if (bundle_tensor(b, tn, 2, sb, &p, err)) goto fail;
            l->B[s] = (float *)p;
        }
    }
    return LC_OK;
fail:
    lora_free(l);
    return LC_FAIL;
}

static int load_calib_view(bundle *b, const model_config *c, const char *task, const cJSON *cj,
                           calib *cb, lc_err *err) {
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(cj, "kind");
    double rank = 0;
    jnum(cj, "rank", &rank);
    int per_layer = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "per_layer"));
    unsigned mask = modules_mask(cJSON_GetObjectItemCaseSensitive(cj, "modules"));
    if (!cJSON_IsString(kind) || !mask)
        return lc_errf(err, "%s: manifest: task '%s': calibration needs kind and modules", b->path, task);
    calib_kind k = !strcmp(kind->valuestring, "bias") ? CALIB_BIAS : CALIB_LOWRANK;
    if (calib_init_view(cb, c, k, (int)rank, per_layer, mask, err)) return LC_FAIL;
    const int S = cb->n_slots;
    char tn[320];
    for (int mo = 0; mo < MOD_COUNT; mo++) {
        if (!(mask >> mo & 1)) continue;
        const int64_t in = module_in_dim(c, mo), out = module_out_dim(c, mo), kk = cb->rank;
        const float *p;
        if (k == CALIB_BIAS) {
            int64_t sh[2] = {S, out};
            snprintf(tn, sizeof tn, "task.%s.calib.%s.bias", task, module_short(mo));
            if (bundle_tensor(b, tn, per_layer ? 2 : 1, per_layer ? sh : sh + 1, &p, err)) goto fail;
            for (int s = 0; s < S; s++) cb->p[s * MOD_COUNT + mo] = (float *)p + (size_t)s * out;
        } else {
            int64_t s1[3] = {S, kk, in}, s2[3] = {S, out, kk};
            snprintf(tn, sizeof tn, "task.%s.calib.%s.P1", task, module_short(mo));
            if (bundle_tensor(b, tn, per_layer ? 3 : 2, per_layer ? s1 : s1 + 1, &p, err)) goto fail;
            for (int s = 0; s < S; s++) cb->P1[s * MOD_COUNT + mo] = (float *)p + (size_t)s * kk * in;
            snprintf(tn, sizeof tn, "task.%s.calib.%s.P2", task, module_short(mo));
            if (bundle_tensor(b, tn, per_layer ? 3 : 2, per_layer ? s2 : s2 + 1, &p, err)) goto fail;
            for (int s = 0; s < S; s++) cb->P2[s * MOD_COUNT + mo] = (float *)p + (size_t)s * out * kk;
        }
    }
    return LC_OK;
fail:
    calib_free(cb);
    return LC_FAIL;
}

void bundle_task_free(bundle_task *t) {
    merged_model_free(&t->mm);
    for (int i = 0; i < t->n_loras; i++) lora_free(&t->loras[i]);
    for (int i = 0; i < ADAPTER_MAX; i++) free(t->coef[i]);
    if (t->have_calib) calib_free(&t->cb);
    memset(t, 0, sizeof *t);
}

int bundle_task_load(bundle *b, model *base, const char *task, bundle_task *out, lc_err *err) {
    memset(out, 0, sizeof *out);
    if (bundle_check_base(b, base, err)) return LC_FAIL;
    return bundle_task_load_checked(b, base, task, out, err);
}

int bundle_task_load_checked(bundle *b, model *base, const char *task, bundle_task *out, lc_err *err) {
    memset(out, 0, sizeof *out);
    const model_config *c = &base->cfg;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b->manifest, "tasks"), *tj = NULL;
    for (const cJSON *e = cJSON_IsArray(ts) ? ts->child : NULL; e; e = e->next) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, task)) tj = e;
    }
    if (!tj) {
        int n;
        const char **names = bundle_task_names(b, &n);
        char list[1024] = "";
        for (int i = 0; names && i < n; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "", names[i]);
        free(names);
        return lc_errf(err, "%s: no task '%s' in the bundle (it has %s)", b->path, task, n ? list : "none");
    }
    out->task = tj;
    const char *names[ADAPTER_MAX];
    int n;
    if (merge_spec_from_json(cJSON_GetObjectItemCaseSensitive(tj, "merge"), &out->spec, names, &n, err)) {
        lc_err_prefix(err, "%s: task '%s': ", b->path, task);
        return LC_FAIL;
    }
    lora *ls[ADAPTER_MAX];
    for (int i = 0; i < n; i++) {
        if (load_lora_view(b, c, names[i], &out->loras[i], err)) goto fail;
        out->n_loras++;
        ls[i] = &out->loras[i];
    }
    if (out->spec.method == MERGE_LEARNED) {
        for (int i = 0; i < n; i++) {
            char tn[320];
            const float *p;
            int64_t sh[2] = {c->n_layers, MOD_COUNT};
            snprintf(tn, sizeof tn, "task.%s.coef.%s", task, names[i]);
            if (bundle_tensor(b, tn, 2, sh, &p, err)) goto fail;
            if (!(out->coef[i] = malloc(sizeof(float) * c->n_layers * MOD_COUNT))) {
                lc_errf(err, "out of memory");
                goto fail;
            }
            memcpy(out->coef[i], p, sizeof(float) * c->n_layers * MOD_COUNT);
        }
        out->spec.coef = (const float *const *)out->coef;
    }
    if (merge_spec_validate(&out->spec, ls, n, c, err) ||
        merged_model_build(&out->spec, ls, n, base, &out->mm, err)) {
        lc_err_prefix(err, "%s: task '%s': ", b->path, task);
        goto fail;
    }
    out->ad = out->mm.ad;
    out->m = out->mm.m;
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(tj, "calibration");
    if (cJSON_IsObject(cj)) {
        if (load_calib_view(b, c, task, cj, &out->cb, err)) goto fail;
        out->have_calib = 1;
        out->ad.cals[out->ad.n_cals++] = &out->cb;
    }
    return LC_OK;
fail:
    bundle_task_free(out);
    return LC_FAIL;
}
