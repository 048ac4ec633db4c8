/* tensor_file.c: safetensors (single / sharded) and HDF5 tensor files: the
 * dtypes and their conversions, the tensor_file object, opening (which back
 * end a path is for) and reading tensors. The back ends: tensor_file_st.c
 * (safetensors: mapped, header checked against the file), tensor_file_h5.c
 * (HDF5; a build with LC_NO_HDF5 refuses HDF5 files there); the writer is
 * tensor_writer.c.
 *
 * Byte order of safetensors data is little-endian; all loads and stores go
 * through explicit byte assembly (tensor_file_impl.h), so the code is
 * host-endian independent and never makes unaligned accesses. */
#include "tensor_file.h"
#include "tensor_file_impl.h"
#include "loaders.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F',
                                                '\r', '\n', 0x1a, '\n'};

/* ---- dtypes ----------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtype_table[DT_COUNT] = {
    [DT_F32] = {"F32", 4}, [DT_F16] = {"F16", 2}, [DT_BF16] = {"BF16", 2},
    [DT_F64] = {"F64", 8}, [DT_I32] = {"I32", 4}, [DT_I64] = {"I64", 8},
    [DT_I8] = {"I8", 1},   [DT_U8] = {"U8", 1},
};

/* safetensors dtypes that exist but this project does not read. */
static const char *const known_unsupported[] = {
    "BOOL", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0",
    "F6_E2M3", "F6_E3M2", "F4", "C64", "C128", NULL};

size_t tensor_dtype_size(tensor_dtype dt) {
    if ((unsigned)dt >= DT_COUNT) return 0;
    return dtype_table[dt].size;
}

const char *tensor_dtype_name(tensor_dtype dt) {
    if ((unsigned)dt >= DT_COUNT) return "INVALID";
    return dtype_table[dt].name;
}

/* 0: supported, 1: known but unsupported, 2: unknown. */
int tf_dtype_from_name(const char *s, tensor_dtype *out) {
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = (tensor_dtype)i;
            return 0;
        }
    for (int i = 0; known_unsupported[i]; i++)
        if (strcmp(s, known_unsupported[i]) == 0) return 1;
    return 2;
}

int tf_dtype_is_float(tensor_dtype dt) {
    return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16 || dt == DT_F64;
}

/* ---- fp16 / bf16 ------------------------------------------------------ */

float lc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* Inf / NaN (payload kept, so NaN stays NaN) */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign); /* signed zero */
        /* Subnormal: normalise the mantissa into a float32 normal. */
        int e = -14;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        mant &= 0x3ffu;
        return bits_f32(sign | (uint32_t)(e + 127) << 23 | (mant << 13));
    }
    return bits_f32(sign | (exp - 15 + 127) << 23 | (mant << 13));
}

uint16_t lc_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) {
        if (mant) /* NaN: keep the top payload bits, force quiet */
            return (uint16_t)(sign | 0x7e00u | (mant >> 13));
        return (uint16_t)(sign | 0x7c00u);
    }
    int e = (int)exp - 127 + 15; /* biased half exponent */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e >= 1) {
        uint32_t hm = mant >> 13, rem = mant & 0x1fffu;
        uint32_t r = ((uint32_t)e << 10) + hm;
        if (rem > 0x1000u || (rem == 0x1000u && (hm & 1u))) r++; /* carries */
        return (uint16_t)(sign | r); /* 0x7c00 after carry is Inf: correct */
    }
    /* Result is subnormal or zero: units of 2^-24. */
    uint32_t shift = (uint32_t)(126 - (int)exp);
    if (shift > 24) return sign; /* below half the smallest subnormal */
    uint32_t full = mant | 0x800000u;
    uint32_t hm = full >> shift;
    uint32_t rem = full & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (hm & 1u))) hm++; /* may become normal */
    return (uint16_t)(sign | hm);
}

float lc_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t lc_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu))
        return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN, stays NaN */
    x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(x >> 16);
}

/* ---- small containers -------------------------------------------------- */


tensor_info *tf_tlist_add(tlist *l, lc_err *err) {
    if (l->n == l->cap) {
        if (l->cap > INT_MAX / 4) {
            lc_errf(err, "too many tensors");
            return NULL;
        }
        int cap = l->cap ? l->cap * 2 : 16;
        tensor_info *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            lc_errf(err, "out of memory growing the tensor table");
            return NULL;
        }
        l->v = v;
        l->cap = cap;
    }
    tensor_info *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    return t;
}

void tf_tlist_free(tlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}


static const char *mlist_get(const mlist *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0) return m->val[i];
    return NULL;
}

/* Adds key=value (copies). If the key exists, keeps the first value unless
 * `dup_is_error`, in which case reports it. */
int tf_mlist_put(mlist *m, const char *key, const char *val,
                     int dup_is_error, lc_err *err) {
    if (mlist_get(m, key)) {
        if (dup_is_error)
            return lc_errf(err, "metadata key '%s' given twice", key);
        return LC_OK;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        char **k = realloc(m->key, (size_t)cap * sizeof *k);
        if (!k) return lc_errf(err, "out of memory growing metadata");
        m->key = k;
        char **v = realloc(m->val, (size_t)cap * sizeof *v);
        if (!v) return lc_errf(err, "out of memory growing metadata");
        m->val = v;
        m->cap = cap;
    }
    char *kk = strdup(key), *vv = strdup(val);
    if (!kk || !vv) {
        free(kk);
        free(vv);
        return lc_errf(err, "out of memory copying metadata");
    }
    m->key[m->n] = kk;
    m->val[m->n] = vv;
    m->n++;
    return LC_OK;
}

void tf_mlist_free(mlist *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->key[i]);
        free(m->val[i]);
    }
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* ---- paths -------------------------------------------------------------- */

char *tf_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a == 0 || dir[a - 1] != '/') p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

char *tf_path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void tensor_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = 0;
    int w = snprintf(buf, n, "[");
    at = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && at < n; i++) {
        w = snprintf(buf + at, n - at, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* ---- the tensor_file object ------------------------------------------- */


void tensor_file_free(tensor_file *tf) {
    if (!tf) return;
    if (tf->h5 >= 0) tf_h5_close(tf);
    for (int i = 0; i < tf->nshards; i++) {
        if (tf->shards[i].map) munmap(tf->shards[i].map, tf->shards[i].size);
        free(tf->shards[i].path);
    }
    free(tf->shards);
    tf_tlist_free(&tf->t);
    free(tf->sorted);
    tf_mlist_free(&tf->meta);
    free(tf->path);
    free(tf);
}

const char *tensor_file_path(const tensor_file *tf) {
    return tf ? tf->path : "(null)";
}

const char *tensor_file_path_of(const tensor_file *tf, const tensor_info *ti) {
    if (!tf) return "(null)";
    if (ti && ti->file_index >= 0 && ti->file_index < tf->nshards)
        return tf->shards[ti->file_index].path;
    return tf->path;
}

int tensor_file_count(const tensor_file *tf) { return tf ? tf->t.n : 0; }

const tensor_info *tensor_file_at(const tensor_file *tf, int i) {
    if (!tf || i < 0 || i >= tf->t.n) return NULL;
    return &tf->t.v[i];
}

static int cmp_info_name(const void *a, const void *b) {
    const tensor_info *x = *(tensor_info *const *)a;
    const tensor_info *y = *(tensor_info *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_key_info(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(tensor_info *const *)elem)->name);
}

/* Sorted pointer view of a list, for lookups by name. */
tensor_info **tf_sort_by_name(tlist *l, lc_err *err) {
    tensor_info **s = lc_malloc((size_t)l->n * sizeof *s, err);
    if (!s) return NULL;
    for (int i = 0; i < l->n; i++) s[i] = &l->v[i];
    if (l->n > 1) qsort(s, (size_t)l->n, sizeof *s, cmp_info_name);
    return s;
}

const tensor_info *tf_find_sorted(tensor_info **s, int n, const char *name) {
    if (n <= 0) return NULL;
    tensor_info **hit = bsearch(name, s, (size_t)n, sizeof *s, cmp_key_info);
    return hit ? *hit : NULL;
}

const tensor_info *tensor_file_find(const tensor_file *tf, const char *name) {
    if (!tf || !name || !tf->sorted) return NULL;
    return tf_find_sorted(tf->sorted, tf->t.n, name);
}

const char *tensor_file_meta(const tensor_file *tf, const char *key) {
    if (!tf || !key) return NULL;
    return mlist_get(&tf->meta, key);
}

/* ---- open -------------------------------------------------------------- */

static int open_dispatch(tensor_file *tf, const char *path, lc_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        static const char *const names[] = {"model.safetensors.index.json",
                                            "model.safetensors",
                                            "adapter_model.safetensors"};
        for (int i = 0; i < 3; i++) {
            char *p = tf_path_join(path, names[i]);
            if (!p) return lc_errf(err, "out of memory");
            if (is_regular_file(p)) {
                /* messages name the file actually read, not the folder */
                free(tf->path);
                tf->path = p;
                return i == 0 ? tf_st_open_index(tf, p, err) : tf_st_open_single(tf, p, err);
            }
            free(p);
        }
        return lc_errf(err,
                       "%s: directory has no model.safetensors.index.json, "
                       "model.safetensors or adapter_model.safetensors",
                       path);
    }
    unsigned char sig[8] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
    ssize_t got = read(fd, sig, sizeof sig);
    close(fd);
    if (got == (ssize_t)sizeof sig && memcmp(sig, HDF5_SIGNATURE, 8) == 0)
        return tf_h5_open(tf, path, err);
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) {
        /* The signature may also follow a user block (offset 512, 1024...). */
        if (tf_h5_is_hdf5(path)) return tf_h5_open(tf, path, err);
        return lc_errf(err, "%s: not an HDF5 file (no HDF5 signature)", path);
    }
    if (ends_with(path, ".json")) return tf_st_open_index(tf, path, err);
    return tf_st_open_single(tf, path, err);
}

int tensor_file_open(tensor_file **out, const char *path, lc_err *err) {
    if (!out) return lc_errf(err, "tensor_file_open: NULL output pointer");
    *out = NULL;
    if (!path || !path[0]) return lc_errf(err, "tensor_file_open: empty path");
    tensor_file *tf = lc_calloc(1, sizeof *tf, err);
    if (!tf) return LC_FAIL;
    tf->h5 = -1;
    tf->path = strdup(path);
    if (!tf->path) {
        free(tf);
        return lc_errf(err, "out of memory");
    }
    if (open_dispatch(tf, path, err)) goto fail;
    tf->sorted = tf_sort_by_name(&tf->t, err);
    if (!tf->sorted) goto fail;
    for (int i = 1; i < tf->t.n; i++)
        if (strcmp(tf->sorted[i - 1]->name, tf->sorted[i]->name) == 0) {
            lc_errf(err, "%s: tensor '%s' appears more than once",
                    tensor_file_path_of(tf, tf->sorted[i]), tf->sorted[i]->name);
            goto fail;
        }
    *out = tf;
    return LC_OK;
fail:
    tensor_file_free(tf);
    return LC_FAIL;
}

/* ---- reading tensors ------------------------------------------------------ */

static int read_prepare(tensor_file *tf, const char *name, int expect_ndim,
                        const int64_t *expect_shape, const void *dst,
                        const tensor_info **out, lc_err *err) {
    if (!tf || !name) return lc_errf(err, "tensor read: NULL file or name");
    const tensor_info *ti = tensor_file_find(tf, name);
    if (!ti) return lc_errf(err, "%s: tensor '%s' not found", tf->path, name);
    const char *fp = tensor_file_path_of(tf, ti);
    if (expect_ndim > 0) {
        int same = expect_shape && expect_ndim == ti->ndim;
        for (int i = 0; same && i < expect_ndim; i++)
            same = expect_shape[i] == ti->shape[i];
        if (!same) {
            char want[256] = "[?]", have[256];
            if (expect_shape)
                tensor_shape_str(want, sizeof want,
                             expect_ndim > TENSOR_MAX_DIMS ? TENSOR_MAX_DIMS : expect_ndim,
                             expect_shape);
            tensor_shape_str(have, sizeof have, ti->ndim, ti->shape);
            return lc_errf(err, "%s: tensor '%s': expected shape %s, found %s", fp,
                           name, want, have);
        }
    }
    if (!dst && ti->numel > 0)
        return lc_errf(err, "%s: tensor '%s': NULL destination", fp, name);
    *out = ti;
    return LC_OK;
}

static const unsigned char *st_data(const tensor_file *tf, const tensor_info *ti) {
    return tf->shards[ti->file_index].map + ti->offset;
}

const void *tensor_file_data(const tensor_file *tf, const tensor_info *ti) {
    return tf && ti && !tf->is_hdf5 ? st_data(tf, ti) : NULL;
}


/* Reads a float tensor into float (f64 = 0) or double (f64 = 1) elements. */
#define TF_CONVERT(T, p, dtype, n, dst)                                                    \
    do {                                                                                   \
        T *d_ = (T *)(dst);                                                                \
        switch (dtype) {                                                                   \
        case DT_F32:                                                                       \
            for (size_t i = 0; i < (n); i++) d_[i] = (T)bits_f32(ld32((p) + 4 * i));       \
            break;                                                                         \
        case DT_F16:                                                                       \
            for (size_t i = 0; i < (n); i++) d_[i] = (T)lc_f16_to_f32(ld16((p) + 2 * i));  \
            break;                                                                         \
        case DT_BF16:                                                                      \
            for (size_t i = 0; i < (n); i++) d_[i] = (T)lc_bf16_to_f32(ld16((p) + 2 * i)); \
            break;                                                                         \
        default: /* DT_F64 */                                                              \
            for (size_t i = 0; i < (n); i++) d_[i] = (T)ld_f64((p) + 8 * i);               \
            break;                                                                         \
        }                                                                                  \
    } while (0)

static int read_float_tensor(tensor_file *tf, const char *name, int expect_ndim,
                             const int64_t *expect_shape, void *dst, int f64, lc_err *err) {
    const tensor_info *ti;
    if (read_prepare(tf, name, expect_ndim, expect_shape, dst, &ti, err))
        return LC_FAIL;
    if (!tf_dtype_is_float(ti->dtype))
        return lc_errf(err, "%s: tensor '%s': dtype %s is not a float type",
                       tensor_file_path_of(tf, ti), name,
                       tensor_dtype_name(ti->dtype));
    if (tf->is_hdf5) return tf_h5_read(tf, ti, f64 ? TF_H5_F64 : TF_H5_F32, dst, err);
    const unsigned char *p = st_data(tf, ti);
    size_t n = (size_t)ti->numel;
    if (f64) TF_CONVERT(double, p, ti->dtype, n, dst);
    else TF_CONVERT(float, p, ti->dtype, n, dst);
    return LC_OK;
}
#undef TF_CONVERT

int tensor_file_read_f32(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, float *dst, lc_err *err) {
    return read_float_tensor(tf, name, expect_ndim, expect_shape, dst, 0, err);
}

int tensor_file_read_f64(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, double *dst, lc_err *err) {
    return read_float_tensor(tf, name, expect_ndim, expect_shape, dst, 1, err);
}

static int i32_range_err(const tensor_file *tf, const tensor_info *ti,
                         size_t at, int64_t v, lc_err *err) {
    return lc_errf(err,
                   "%s: tensor '%s': element %zu = %" PRId64
                   " does not fit in int32",
                   tensor_file_path_of(tf, ti), ti->name, at, v);
}

int tensor_file_read_i32(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, int32_t *dst, lc_err *err) {
    const tensor_info *ti;
    if (read_prepare(tf, name, expect_ndim, expect_shape, dst, &ti, err))
        return LC_FAIL;
    tensor_dtype dt = ti->dtype;
    if (dt != DT_I32 && dt != DT_I64 && dt != DT_I8 && dt != DT_U8)
        return lc_errf(err,
                       "%s: tensor '%s': dtype %s is not an integer type "
                       "(I32, I64, I8, U8)",
                       tensor_file_path_of(tf, ti), name, tensor_dtype_name(dt));
    size_t n = (size_t)ti->numel;
    if (tf->is_hdf5) {
        if (dt != DT_I64) return tf_h5_read(tf, ti, TF_H5_I32, dst, err);
        /* Read as int64 so that out-of-range values are seen, not clamped. */
        int64_t *tmp = lc_malloc(n * sizeof *tmp, err);
        if (!tmp) return lc_err_prefix(err, "%s: tensor '%s': ", tf->path, name);
        int rc = tf_h5_read(tf, ti, TF_H5_I64, tmp, err);
        for (size_t i = 0; rc == LC_OK && i < n; i++) {
            if (tmp[i] < INT32_MIN || tmp[i] > INT32_MAX)
                rc = i32_range_err(tf, ti, i, tmp[i], err);
            else
                dst[i] = (int32_t)tmp[i];
        }
        free(tmp);
        return rc;
    }
    const unsigned char *p = st_data(tf, ti);
    switch (dt) {
    case DT_I32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = ld32(p + 4 * i);
            memcpy(&dst[i], &u, sizeof u);
        }
        break;
    case DT_I64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = ld64(p + 8 * i);
            int64_t v;
            memcpy(&v, &u, sizeof v);
            if (v < INT32_MIN || v > INT32_MAX) return i32_range_err(tf, ti, i, v, err);
            dst[i] = (int32_t)v;
        }
        break;
    case DT_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (int8_t)p[i];
        break;
    default: /* DT_U8 */
        for (size_t i = 0; i < n; i++) dst[i] = p[i];
        break;
    }
    return LC_OK;
}
