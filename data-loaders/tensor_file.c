/* tensor_file.c: safetensors (single / sharded) and HDF5 tensor files.
 *
 * Reading: safetensors files are memory-mapped read-only; the JSON header is
 * copied out, parsed with cJSON and every field is validated against the
 * file size before the tensor table is built. The HDF5 back end is
 * tensor_file_h5.c (a build with LC_NO_HDF5 refuses HDF5 files there).
 *
 * Writing: tensors are collected in memory and written on close into
 * "<path>.tmp.<pid>", which is then renamed onto the target path.
 *
 * Byte order of safetensors data is little-endian; all loads and stores go
 * through explicit byte assembly, so the code is host-endian independent and
 * never makes unaligned accesses. */
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

#define ST_MAX_HEADER ((uint64_t)100 << 20)  /* 100 MiB, as the reference lib */
#define INDEX_MAX_BYTES ((size_t)256 << 20) /* model.safetensors.index.json */
#define JSON_MAX_EXACT 9007199254740992.0   /* 2^53: exact in a double */
#define SUPPORTED_DTYPES "F32 F16 BF16 F64 I32 I64 I8 U8"

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
static int dtype_from_name(const char *s, tensor_dtype *out) {
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = (tensor_dtype)i;
            return 0;
        }
    for (int i = 0; known_unsupported[i]; i++)
        if (strcmp(s, known_unsupported[i]) == 0) return 1;
    return 2;
}

static int dtype_is_float(tensor_dtype dt) {
    return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16 || dt == DT_F64;
}

/* ---- fp16 / bf16 ------------------------------------------------------ */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

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

/* ---- little-endian loads / stores -------------------------------------- */

static uint16_t ld16(const unsigned char *p) {
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}
static uint32_t ld32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t ld64(const unsigned char *p) {
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}
static void st16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void st32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void st64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static double ld_f64(const unsigned char *p) {
    uint64_t u = ld64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
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

static void tlist_free(tlist *l) {
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

static void mlist_free(mlist *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->key[i]);
        free(m->val[i]);
    }
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* ---- paths -------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a == 0 || dir[a - 1] != '/') p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

static char *path_dirname(const char *path) {
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
    tlist_free(&tf->t);
    free(tf->sorted);
    mlist_free(&tf->meta);
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
static tensor_info **sort_by_name(tlist *l, lc_err *err) {
    tensor_info **s = lc_malloc((size_t)l->n * sizeof *s, err);
    if (!s) return NULL;
    for (int i = 0; i < l->n; i++) s[i] = &l->v[i];
    if (l->n > 1) qsort(s, (size_t)l->n, sizeof *s, cmp_info_name);
    return s;
}

static const tensor_info *find_sorted(tensor_info **s, int n, const char *name) {
    if (n <= 0) return NULL;
    tensor_info **hit = bsearch(name, s, (size_t)n, sizeof *s, cmp_key_info);
    return hit ? *hit : NULL;
}

const tensor_info *tensor_file_find(const tensor_file *tf, const char *name) {
    if (!tf || !name || !tf->sorted) return NULL;
    return find_sorted(tf->sorted, tf->t.n, name);
}

const char *tensor_file_meta(const tensor_file *tf, const char *key) {
    if (!tf || !key) return NULL;
    return mlist_get(&tf->meta, key);
}

/* ---- safetensors parsing ------------------------------------------------ */

static int shard_map(tf_shard *s, lc_err *err) {
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lc_errf(err, "%s: cannot open: %s", s->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lc_errf(err, "%s: cannot stat: %s", s->path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lc_errf(err, "%s: not a regular file", s->path);
    }
    if (st.st_size < 8) {
        close(fd);
        return lc_errf(err,
                       "%s: file is %lld bytes, too short for a safetensors "
                       "header (needs at least 8)",
                       s->path, (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return lc_errf(err, "%s: file too large to map", s->path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return lc_errf(err, "%s: cannot mmap: %s", s->path, strerror(e));
    s->map = m;
    s->size = (size_t)st.st_size;
    return LC_OK;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > JSON_MAX_EXACT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int st_parse_meta(const char *fpath, const cJSON *m, mlist *meta,
                         lc_err *err) {
    if (cJSON_IsNull(m)) return LC_OK;
    if (!cJSON_IsObject(m))
        return lc_errf(err, "%s: __metadata__ is not a JSON object", fpath);
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        const char *k = e->string ? e->string : "";
        if (!cJSON_IsString(e))
            return lc_errf(err,
                           "%s: __metadata__ entry '%s' is not a string "
                           "(safetensors metadata values must be strings)",
                           fpath, k);
        if (tf_mlist_put(meta, k, e->valuestring, 0, err))
            return lc_err_prefix(err, "%s: ", fpath);
    }
    return LC_OK;
}

static int st_parse_entry(const char *fpath, const char *name, const cJSON *e,
                          uint64_t data_start, uint64_t data_size,
                          int file_index, tlist *out, lc_err *err) {
    if (!cJSON_IsObject(e))
        return lc_errf(err, "%s: tensor '%s': entry is not a JSON object",
                       fpath, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!jd) return lc_errf(err, "%s: tensor '%s': missing 'dtype'", fpath, name);
    if (!js) return lc_errf(err, "%s: tensor '%s': missing 'shape'", fpath, name);
    if (!jo)
        return lc_errf(err, "%s: tensor '%s': missing 'data_offsets'", fpath,
                       name);
    if (!cJSON_IsString(jd))
        return lc_errf(err, "%s: tensor '%s': 'dtype' is not a string", fpath,
                       name);

    tensor_dtype dt = DT_F32;
    int k = dtype_from_name(jd->valuestring, &dt);
    if (k == 1)
        return lc_errf(err,
                       "%s: tensor '%s': unsupported dtype '%s' (supported: "
                       SUPPORTED_DTYPES ")",
                       fpath, name, jd->valuestring);
    if (k == 2)
        return lc_errf(err,
                       "%s: tensor '%s': unknown dtype '%s' (supported: "
                       SUPPORTED_DTYPES ")",
                       fpath, name, jd->valuestring);

    if (!cJSON_IsArray(js))
        return lc_errf(err, "%s: tensor '%s': 'shape' is not an array", fpath,
                       name);
    int nd = cJSON_GetArraySize(js);
    if (nd > TENSOR_MAX_DIMS)
        return lc_errf(err,
                       "%s: tensor '%s': shape has %d dims, at most %d are "
                       "supported",
                       fpath, name, nd, TENSOR_MAX_DIMS);
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        if (!cJSON_IsNumber(d))
            return lc_errf(err, "%s: tensor '%s': shape entry %d is not a number",
                           fpath, name, i);
        if (d->valuedouble < 0)
            return lc_errf(err, "%s: tensor '%s': negative shape entry %g at dim %d",
                           fpath, name, d->valuedouble, i);
        uint64_t u;
        if (!json_uint(d, &u))
            return lc_errf(err,
                           "%s: tensor '%s': shape entry %d (%g) is not an "
                           "integer in range",
                           fpath, name, i, d->valuedouble);
        shape[i] = (int64_t)u;
        if (shape[i] != 0 && numel > INT64_MAX / shape[i])
            return lc_errf(err, "%s: tensor '%s': shape has too many elements",
                           fpath, name);
        numel *= shape[i];
        i++;
    }

    uint64_t begin = 0, end = 0;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        !json_uint(cJSON_GetArrayItem(jo, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &end))
        return lc_errf(err,
                       "%s: tensor '%s': 'data_offsets' must be two "
                       "non-negative integers [begin, end]",
                       fpath, name);
    if (begin > end)
        return lc_errf(err,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "]: begin is after end",
                       fpath, name, begin, end);
    if (end > data_size)
        return lc_errf(err,
                       "%s: tensor '%s': data_offsets end %" PRIu64
                       " is past the end of the data region (%" PRIu64
                       " bytes)",
                       fpath, name, end, data_size);
    size_t es = tensor_dtype_size(dt);
    char sh[256];
    tensor_shape_str(sh, sizeof sh, nd, shape);
    if ((uint64_t)numel > UINT64_MAX / es || (uint64_t)numel * es != end - begin)
        return lc_errf(err,
                       "%s: tensor '%s': data_offsets span %" PRIu64
                       " bytes but shape %s of %s needs %" PRIu64
                       " (%" PRId64 " elements x %zu bytes)",
                       fpath, name, end - begin, sh, dtype_table[dt].name,
                       (uint64_t)numel * es, numel, es);

    tensor_info *t = tf_tlist_add(out, err);
    if (!t) return lc_err_prefix(err, "%s: ", fpath);
    t->name = strdup(name);
    if (!t->name) return lc_errf(err, "%s: out of memory", fpath);
    t->dtype = dt;
    t->ndim = nd;
    memcpy(t->shape, shape, (size_t)nd * sizeof shape[0]);
    t->numel = numel;
    t->file_index = file_index;
    t->offset = data_start + begin;
    t->nbytes = end - begin;
    return LC_OK;
}

static int cmp_info_offset(const void *a, const void *b) {
    const tensor_info *x = *(tensor_info *const *)a;
    const tensor_info *y = *(tensor_info *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int st_check_overlap(const char *fpath, tensor_info *v, int n,
                            lc_err *err) {
    if (n < 2) return LC_OK;
    tensor_info **s = lc_malloc((size_t)n * sizeof *s, err);
    if (!s) return lc_err_prefix(err, "%s: ", fpath);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (v[i].nbytes > 0) s[m++] = &v[i]; /* empty ranges overlap nothing */
    qsort(s, (size_t)m, sizeof *s, cmp_info_offset);
    int rc = LC_OK;
    const tensor_info *reach = NULL; /* the tensor ending furthest so far */
    for (int i = 0; i < m; i++) {
        if (reach && s[i]->offset < reach->offset + reach->nbytes) {
            rc = lc_errf(err, "%s: tensor '%s' overlaps tensor '%s' in the data region",
                         fpath, s[i]->name, reach->name);
            break;
        }
        if (!reach || s[i]->offset + s[i]->nbytes > reach->offset + reach->nbytes)
            reach = s[i];
    }
    free(s);
    return rc;
}

/* Parses the header of one mapped safetensors file, appending its tensors
 * to `out` and its metadata (first value wins) to `meta`. */
static int st_parse(const char *fpath, const unsigned char *map, size_t size,
                    int file_index, tlist *out, mlist *meta, lc_err *err) {
    if (size < 8)
        return lc_errf(err,
                       "%s: file is %zu bytes, too short for a safetensors "
                       "header (needs at least 8)",
                       fpath, size);
    uint64_t hlen = ld64(map);
    uint64_t avail = (uint64_t)size - 8;
    if (hlen > avail)
        return lc_errf(err,
                       "%s: header length %" PRIu64
                       " runs past the end of the file (%zu bytes)",
                       fpath, hlen, size);
    if (hlen > ST_MAX_HEADER)
        return lc_errf(err,
                       "%s: header length %" PRIu64 " is absurd (limit %" PRIu64
                       " bytes)",
                       fpath, hlen, ST_MAX_HEADER);
    char *hdr = lc_malloc((size_t)hlen + 1, err);
    if (!hdr) return lc_err_prefix(err, "%s: ", fpath);
    memcpy(hdr, map + 8, (size_t)hlen);
    hdr[hlen] = 0;

    int rc = LC_FAIL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        size_t pos = (end && end >= hdr && end <= hdr + hlen) ? (size_t)(end - hdr) : 0;
        lc_errf(err,
                "%s: header is not valid JSON (parse error near byte %zu of "
                "%" PRIu64 ")",
                fpath, pos, hlen);
        goto done;
    }
    for (const char *p = end; p && p < hdr + hlen; p++)
        if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == 0)) {
            lc_errf(err, "%s: header has unexpected bytes after the JSON at byte %td",
                    fpath, p - hdr);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: header is not a JSON object", fpath);
        goto done;
    }
    uint64_t data_start = 8 + hlen, data_size = avail - hlen;
    int first = out->n;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string ? e->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (st_parse_meta(fpath, e, meta, err)) goto done;
            continue;
        }
        if (st_parse_entry(fpath, name, e, data_start, data_size, file_index,
                           out, err))
            goto done;
    }
    if (st_check_overlap(fpath, out->v + first, out->n - first, err)) goto done;
    rc = LC_OK;
done:
    cJSON_Delete(root);
    free(hdr);
    return rc;
}

static int open_single(tensor_file *tf, const char *fpath, lc_err *err) {
    tf->shards = lc_calloc(1, sizeof *tf->shards, err);
    if (!tf->shards) return LC_FAIL;
    tf->nshards = 1;
    tf->shards[0].path = strdup(fpath);
    if (!tf->shards[0].path) return lc_errf(err, "out of memory");
    if (shard_map(&tf->shards[0], err)) return LC_FAIL;
    return st_parse(fpath, tf->shards[0].map, tf->shards[0].size, 0, &tf->t,
                    &tf->meta, err);
}

/* Reads a whole (small) file, NUL-terminated. */
static char *slurp(const char *path, size_t cap, size_t *len, lc_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lc_errf(err, "%s: not a readable regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > cap) {
        close(fd);
        lc_errf(err, "%s: file is %lld bytes, larger than the %zu byte limit",
                path, (long long)st.st_size, cap);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        lc_errf(err, "%s: out of memory", path);
        return NULL;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            free(buf);
            lc_errf(err, "%s: read failed: %s", path, r < 0 ? strerror(e) : "short read");
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    return buf;
}

typedef struct {
    const char *name;
    int shard;
} index_entry;

static int open_index(tensor_file *tf, const char *ipath, lc_err *err) {
    int rc = LC_FAIL;
    size_t len = 0;
    char *text = NULL, *dir = NULL;
    cJSON *root = NULL;
    index_entry *ents = NULL;
    const char **snames = NULL;
    tlist *tmp = NULL;
    tensor_info ***sorted = NULL;
    int nents = 0, ns = 0;

    text = slurp(ipath, INDEX_MAX_BYTES, &len, err);
    if (!text) goto done;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = (end && end >= text && end <= text + len) ? (size_t)(end - text) : 0;
        lc_errf(err, "%s: not valid JSON (parse error near byte %zu)", ipath, pos);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: not a JSON object", ipath);
        goto done;
    }

    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (md && !cJSON_IsNull(md)) {
        if (!cJSON_IsObject(md)) {
            lc_errf(err, "%s: 'metadata' is not a JSON object", ipath);
            goto done;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, md) {
            const char *k = e->string ? e->string : "";
            char num[64];
            const char *v;
            if (cJSON_IsString(e)) {
                v = e->valuestring;
            } else if (cJSON_IsNumber(e)) { /* e.g. "total_size": 12345 */
                if (e->valuedouble == floor(e->valuedouble) &&
                    fabs(e->valuedouble) <= JSON_MAX_EXACT)
                    snprintf(num, sizeof num, "%.0f", e->valuedouble);
                else
                    snprintf(num, sizeof num, "%.17g", e->valuedouble);
                v = num;
            } else {
                lc_errf(err, "%s: metadata entry '%s' is not a string or number",
                        ipath, k);
                goto done;
            }
            if (tf_mlist_put(&tf->meta, k, v, 0, err)) {
                lc_err_prefix(err, "%s: ", ipath);
                goto done;
            }
        }
    }

    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        lc_errf(err, "%s: missing or non-object 'weight_map'", ipath);
        goto done;
    }
    int count = cJSON_GetArraySize(wm);
    ents = lc_calloc((size_t)count, sizeof *ents, err);
    snames = lc_calloc((size_t)count, sizeof *snames, err);
    if (!ents || !snames) goto done;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        const char *tname = e->string ? e->string : "";
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            lc_errf(err, "%s: weight_map entry for tensor '%s' is not a shard file name",
                    ipath, tname);
            goto done;
        }
        int k = 0;
        while (k < ns && strcmp(snames[k], e->valuestring) != 0) k++;
        if (k == ns) snames[ns++] = e->valuestring;
        ents[nents].name = tname;
        ents[nents].shard = k;
        nents++;
    }

    dir = path_dirname(ipath);
    tf->shards = lc_calloc((size_t)ns, sizeof *tf->shards, err);
    tmp = lc_calloc((size_t)ns, sizeof *tmp, err);
    sorted = lc_calloc((size_t)ns, sizeof *sorted, err);
    if (!dir || !tf->shards || !tmp || !sorted) {
        lc_errf(err, "%s: out of memory", ipath);
        goto done;
    }
    for (int k = 0; k < ns; k++) {
        tf_shard *s = &tf->shards[k];
        tf->nshards = k + 1;
        s->path = path_join(dir, snames[k]);
        if (!s->path) {
            lc_errf(err, "%s: out of memory", ipath);
            goto done;
        }
        if (shard_map(s, err)) {
            lc_err_prefix(err, "%s: shard '%s': ", ipath, snames[k]);
            goto done;
        }
        if (st_parse(s->path, s->map, s->size, k, &tmp[k], &tf->meta, err))
            goto done;
        sorted[k] = sort_by_name(&tmp[k], err);
        if (!sorted[k]) goto done;
    }
    for (int i = 0; i < nents; i++) {
        int k = ents[i].shard;
        const tensor_info *src = find_sorted(sorted[k], tmp[k].n, ents[i].name);
        if (!src) {
            lc_errf(err, "%s: tensor '%s' is mapped to shard '%s' but that shard "
                    "does not contain it",
                    ipath, ents[i].name, snames[k]);
            goto done;
        }
        tensor_info *t = tf_tlist_add(&tf->t, err);
        if (!t) goto done;
        *t = *src;
        t->name = strdup(src->name);
        if (!t->name) {
            lc_errf(err, "%s: out of memory", ipath);
            goto done;
        }
    }
    rc = LC_OK;
done:
    if (tmp)
        for (int k = 0; k < ns; k++) tlist_free(&tmp[k]);
    if (sorted)
        for (int k = 0; k < ns; k++) free(sorted[k]);
    free(tmp);
    free(sorted);
    free(snames);
    free(ents);
    free(dir);
    cJSON_Delete(root);
    free(text);
    return rc;
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
            char *p = path_join(path, names[i]);
            if (!p) return lc_errf(err, "out of memory");
            if (is_regular_file(p)) {
                /* messages name the file actually read, not the folder */
                free(tf->path);
                tf->path = p;
                return i == 0 ? open_index(tf, p, err) : open_single(tf, p, err);
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
    if (ends_with(path, ".json")) return open_index(tf, path, err);
    return open_single(tf, path, err);
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
    tf->sorted = sort_by_name(&tf->t, err);
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
    if (!dtype_is_float(ti->dtype))
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

/* ---- writer ------------------------------------------------------------ */


void tensor_writer_abort(tensor_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    mlist_free(&w->meta);
    free(w->path);
    free(w);
}

int tensor_writer_open(tensor_writer **out, const char *path,
                       tensor_writer_format fmt, lc_err *err) {
    if (!out) return lc_errf(err, "tensor_writer_open: NULL output pointer");
    *out = NULL;
    if (!path || !path[0]) return lc_errf(err, "tensor_writer_open: empty path");
    if (fmt != TW_SAFETENSORS && fmt != TW_HDF5)
        return lc_errf(err, "%s: unknown tensor file format %d", path, (int)fmt);
    char *dir = path_dirname(path);
    if (!dir) return lc_errf(err, "out of memory");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        lc_errf(err, "%s: cannot write: directory '%s' does not exist", path, dir);
        free(dir);
        return LC_FAIL;
    }
    free(dir);
    tensor_writer *w = lc_calloc(1, sizeof *w, err);
    if (!w) return LC_FAIL;
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return lc_errf(err, "out of memory");
    }
    w->fmt = fmt;
    *out = w;
    return LC_OK;
}

int tensor_writer_meta(tensor_writer *w, const char *key, const char *value,
                       lc_err *err) {
    if (!w || !key || !value) return lc_errf(err, "tensor_writer_meta: NULL argument");
    if (!key[0]) return lc_errf(err, "%s: empty metadata key", w->path);
    if (tf_mlist_put(&w->meta, key, value, 1, err))
        return lc_err_prefix(err, "%s: ", w->path);
    return LC_OK;
}

int tensor_writer_add_f32(tensor_writer *w, const char *name, int ndim,
                          const int64_t *shape, const float *data,
                          tensor_dtype dtype, lc_err *err) {
    if (!w || !name) return lc_errf(err, "tensor_writer_add_f32: NULL argument");
    const char *p = w->path;
    if (!name[0]) return lc_errf(err, "%s: empty tensor name", p);
    if (w->fmt == TW_SAFETENSORS) {
        if (strcmp(name, "__metadata__") == 0)
            return lc_errf(err, "%s: tensor name '__metadata__' is reserved", p);
        if (dtype != DT_F32 && dtype != DT_F16 && dtype != DT_BF16)
            return lc_errf(err,
                           "%s: tensor '%s': cannot store as %s (F32, F16 or "
                           "BF16 only)",
                           p, name, tensor_dtype_name(dtype));
    } else {
        if (strchr(name, '/') || strcmp(name, ".") == 0)
            return lc_errf(err,
                           "%s: tensor '%s': HDF5 dataset names cannot contain "
                           "'/' or be '.'",
                           p, name);
        if (dtype != DT_F32)
            return lc_errf(err, "%s: tensor '%s': cannot store as %s in HDF5 (F32 only)",
                           p, name, tensor_dtype_name(dtype));
    }
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return lc_errf(err, "%s: tensor '%s': ndim %d out of range 0..%d", p, name,
                       ndim, TENSOR_MAX_DIMS);
    if (ndim > 0 && !shape)
        return lc_errf(err, "%s: tensor '%s': NULL shape", p, name);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lc_errf(err, "%s: tensor '%s': negative shape entry %" PRId64
                           " at dim %d", p, name, shape[i], i);
        if (shape[i] != 0 && numel > (INT64_MAX / 8) / shape[i])
            return lc_errf(err, "%s: tensor '%s': too many elements", p, name);
        numel *= shape[i];
    }
    if ((uint64_t)numel > SIZE_MAX / sizeof(float))
        return lc_errf(err, "%s: tensor '%s': too many elements", p, name);
    if (numel > 0 && !data)
        return lc_errf(err, "%s: tensor '%s': NULL data", p, name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return lc_errf(err, "%s: tensor '%s' added twice", p, name);
    if (w->n == w->cap) {
        if (w->cap > INT_MAX / 4) return lc_errf(err, "%s: too many tensors", p);
        int cap = w->cap ? w->cap * 2 : 16;
        tw_tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return lc_errf(err, "%s: out of memory", p);
        w->t = t;
        w->cap = cap;
    }
    tw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(numel ? (size_t)numel * sizeof(float) : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return lc_errf(err, "%s: tensor '%s': out of memory copying %" PRId64
                       " floats", p, name, numel);
    }
    if (numel) memcpy(t->data, data, (size_t)numel * sizeof(float));
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->dtype = dtype;
    w->n++;
    return LC_OK;
}

static cJSON *json_raw_u64(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* Builds the safetensors header JSON (unpadded). Caller frees. */
static char *st_header(const tensor_writer *w) {
    cJSON *root = cJSON_CreateObject();
    char *out = NULL;
    if (!root) return NULL;
    if (w->meta.n) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto done;
        for (int i = 0; i < w->meta.n; i++)
            if (!cJSON_AddStringToObject(m, w->meta.key[i], w->meta.val[i]))
                goto done;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const tw_tensor *t = &w->t[i];
        uint64_t nb = (uint64_t)t->numel * tensor_dtype_size(t->dtype);
        cJSON *e = cJSON_CreateObject();
        if (!e) goto done;
        if (!cJSON_AddItemToObject(root, t->name, e)) {
            cJSON_Delete(e);
            goto done;
        }
        if (!cJSON_AddStringToObject(e, "dtype", tensor_dtype_name(t->dtype)))
            goto done;
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        if (!sh || !of) goto done;
        for (int d = 0; d < t->ndim; d++) {
            cJSON *x = json_raw_u64((uint64_t)t->shape[d]);
            if (!x || !cJSON_AddItemToArray(sh, x)) {
                cJSON_Delete(x);
                goto done;
            }
        }
        uint64_t be[2] = {off, off + nb};
        for (int d = 0; d < 2; d++) {
            cJSON *x = json_raw_u64(be[d]);
            if (!x || !cJSON_AddItemToArray(of, x)) {
                cJSON_Delete(x);
                goto done;
            }
        }
        off += nb;
    }
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return out;
}

static int st_write(const tensor_writer *w, lc_err *err) {
    char *hdr = st_header(w);
    if (!hdr) return lc_errf(err, "%s: out of memory building the header", w->path);
    size_t L = strlen(hdr);
    size_t pad = (8 - (8 + L) % 8) % 8;
    enum { CHUNK = 16384 };
    unsigned char *buf = malloc(CHUNK * 4);
    if (!buf) {
        free(hdr);
        return lc_errf(err, "%s: out of memory", w->path);
    }
    char tmp[4200];
    FILE *f = lc_tmp_open(w->path, tmp, sizeof tmp, err);
    if (!f) {
        free(buf);
        free(hdr);
        return LC_FAIL;
    }
    unsigned char len8[8];
    st64(len8, (uint64_t)(L + pad));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, L, f) == L && fwrite("        ", 1, pad, f) == pad;
    for (int i = 0; ok && i < w->n; i++) {
        const tw_tensor *t = &w->t[i];
        size_t es = tensor_dtype_size(t->dtype);
        for (size_t at = 0; ok && at < (size_t)t->numel; at += CHUNK) {
            size_t m = (size_t)t->numel - at;
            if (m > CHUNK) m = CHUNK;
            const float *src = t->data + at;
            for (size_t j = 0; j < m; j++) {
                if (t->dtype == DT_F32) st32(buf + 4 * j, f32_bits(src[j]));
                else if (t->dtype == DT_F16) st16(buf + 2 * j, lc_f32_to_f16(src[j]));
                else st16(buf + 2 * j, lc_f32_to_bf16(src[j]));
            }
            ok = fwrite(buf, 1, m * es, f) == m * es;
        }
    }
    int e = ok ? 0 : errno;
    free(buf);
    free(hdr);
    return lc_tmp_close(f, ok, e, tmp, w->path, err);
}

int tensor_writer_close(tensor_writer *w, lc_err *err) {
    if (!w) return lc_errf(err, "tensor_writer_close: NULL writer");
    int rc;
    if (w->fmt == TW_HDF5) { /* built in memory, then written like the others */
        char tmp[4200];
        rc = lc_tmp_path(tmp, sizeof tmp, w->path, err);
        if (rc == LC_OK) rc = tf_h5_write(w, tmp, err);
    } else {
        rc = st_write(w, err);
    }
    tensor_writer_abort(w);
    return rc;
}
