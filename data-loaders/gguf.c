/* gguf.c: GGUF reader (mmap, everything validated at open) and writer
 * (gguf.h). Layout, ggml docs/gguf.md:
 *
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x  (string key | u32 value type | value)
 *   n_tensors x (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset)
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_offset + offset, offset a multiple of
 *   the alignment
 *
 * with string = u64 length | bytes (no NUL), array = u32 element type |
 * u64 count | elements. */
#include "gguf.h"
#include "loaders.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qtype.h"
#include "quant.h"

/* ---- type tables ------------------------------------------------------- */

const char *gguf_vtype_name(int t) {
    static const char *const names[] = {"uint8",  "int8",   "uint16", "int16",  "uint32",
                                        "int32",  "float32", "bool",  "string", "array",
                                        "uint64", "int64",  "float64"};
    return t >= 0 && t <= GGUF_T_FLOAT64 ? names[t] : "?";
}

static size_t vtype_size(int t) {
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default: return 0;
    }
}

/* ggml's type_traits (ggml.c): name, elements per block, bytes per block.
 * Ids 4, 5, 31-33 and 36-38 were removed from ggml and stay unknown. */
static const struct {
    int id;
    const char *name;
    int block;
    size_t bytes;
} GGML_TYPES[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

static int type_index(int id) {
    for (size_t i = 0; i < sizeof GGML_TYPES / sizeof *GGML_TYPES; i++)
        if (GGML_TYPES[i].id == id) return (int)i;
    return -1;
}

int gguf_type_block(int t) {
    int i = type_index(t);
    return i < 0 ? 0 : GGML_TYPES[i].block;
}
size_t gguf_type_block_bytes(int t) {
    int i = type_index(t);
    return i < 0 ? 0 : GGML_TYPES[i].bytes;
}
const char *gguf_type_name(int t) {
    int i = type_index(t);
    return i < 0 ? NULL : GGML_TYPES[i].name;
}

/* ---- reader ------------------------------------------------------------ */

struct gguf_file {
    char *path;
    const unsigned char *map;
    size_t size;
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;
    int n_kv;
    char **keys;
    gguf_value *vals;
    int n_tensors;
    gguf_tensor *tensors;
};

typedef struct {
    const unsigned char *p;
    size_t size, pos;
    const char *path;
    lc_err *err;
} rd;

static int rd_need(rd *r, size_t n, const char *what) {
    if (n > r->size - r->pos)
        return lc_errf(r->err, "%s: truncated: %s needs %zu bytes at offset %zu, the file has %zu",
                       r->path, what, n, r->pos, r->size - r->pos);
    return LC_OK;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    if (rd_need(r, 4, what)) return LC_FAIL;
    *v = get_u32(r->p + r->pos);
    r->pos += 4;
    return LC_OK;
}
static int rd_u64(rd *r, uint64_t *v, const char *what) {
    if (rd_need(r, 8, what)) return LC_FAIL;
    *v = get_u64(r->p + r->pos);
    r->pos += 8;
    return LC_OK;
}
static int rd_str(rd *r, gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(r, &n, what)) return LC_FAIL;
    if (n > r->size - r->pos)
        return lc_errf(r->err, "%s: truncated: %s has length %llu at offset %zu, only %zu bytes "
                       "are left", r->path, what, (unsigned long long)n, r->pos - 8,
                       r->size - r->pos);
    s->p = (const char *)r->p + r->pos;
    s->len = n;
    r->pos += (size_t)n;
    return LC_OK;
}

static void scalar_fill(gguf_value *v, const unsigned char *p) {
    switch (v->type) {
    case GGUF_T_UINT8: v->u64 = p[0]; break;
    case GGUF_T_INT8: v->i64 = (int8_t)p[0]; break;
    case GGUF_T_BOOL: v->u64 = p[0]; break;
    case GGUF_T_UINT16: v->u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_T_INT16: v->i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_T_UINT32: v->u64 = get_u32(p); break;
    case GGUF_T_INT32: v->i64 = (int32_t)get_u32(p); break;
    case GGUF_T_UINT64: v->u64 = get_u64(p); break;
    case GGUF_T_INT64: v->i64 = (int64_t)get_u64(p); break;
    case GGUF_T_FLOAT32: {
        uint32_t b = get_u32(p);
        float f;
        memcpy(&f, &b, 4);
        v->f64 = f;
        return;
    }
    case GGUF_T_FLOAT64: {
        uint64_t b = get_u64(p);
        memcpy(&v->f64, &b, 8);
        return;
    }
    }
    switch (v->type) { /* integers: fill the other views */
    case GGUF_T_INT8: case GGUF_T_INT16: case GGUF_T_INT32: case GGUF_T_INT64:
        v->u64 = v->i64 < 0 ? 0 : (uint64_t)v->i64;
        v->f64 = (double)v->i64;
        break;
    default:
        v->i64 = v->u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v->u64;
        v->f64 = (double)v->u64;
    }
}

static void value_free(gguf_value *v) {
    if (v->items)
        for (uint64_t i = 0; i < v->n; i++) value_free(&v->items[i]);
    free(v->items);
    free(v->strs);
    v->items = NULL;
    v->strs = NULL;
}

/* Reads a value of type `type` (already read) for key `key`. */
static int rd_value(rd *r, gguf_value *v, int type, const char *key, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    char what[300];
    snprintf(what, sizeof what, "key '%.200s'", key);
    size_t sz = vtype_size(type);
    if (sz) {
        if (rd_need(r, sz, what)) return LC_FAIL;
        scalar_fill(v, r->p + r->pos);
        r->pos += sz;
        return LC_OK;
    }
    if (type == GGUF_T_STRING) return rd_str(r, &v->str, what);
    if (type != GGUF_T_ARRAY)
        return lc_errf(r->err, "%s: key '%s': unknown value type %d (at offset %zu)", r->path, key,
                       type, r->pos - 4);
    if (depth >= GGUF_MAX_DEPTH)
        return lc_errf(r->err, "%s: key '%s': arrays nested deeper than %d", r->path, key,
                       GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    if (rd_u32(r, &et, what) || rd_u64(r, &n, what)) return LC_FAIL;
    v->elem_type = (int)et;
    size_t left = r->size - r->pos;
    size_t esz = vtype_size((int)et);
    if (esz) {
        if (n > left / esz)
            return lc_errf(r->err, "%s: key '%s': truncated: array of %llu %s needs %llu bytes, "
                           "%zu are left", r->path, key, (unsigned long long)n,
                           gguf_vtype_name((int)et), (unsigned long long)n * esz, left);
        v->n = n;
        v->raw = r->p + r->pos;
        r->pos += (size_t)n * esz;
        return LC_OK;
    }
    if (et == GGUF_T_STRING) {
        if (n > left / 8)
            return lc_errf(r->err, "%s: key '%s': truncated: array of %llu strings cannot fit "
                           "in the %zu bytes left", r->path, key, (unsigned long long)n, left);
        v->strs = calloc(n ? (size_t)n : 1, sizeof *v->strs);
        if (!v->strs) return lc_errf(r->err, "%s: key '%s': out of memory", r->path, key);
        v->n = n;
        for (uint64_t i = 0; i < n; i++) {
            snprintf(what, sizeof what, "key '%.200s' element %llu", key, (unsigned long long)i);
            if (rd_str(r, &v->strs[i], what)) return LC_FAIL;
        }
        return LC_OK;
    }
    if (et == GGUF_T_ARRAY) {
        if (n > left / 12)
            return lc_errf(r->err, "%s: key '%s': truncated: array of %llu arrays cannot fit in "
                           "the %zu bytes left", r->path, key, (unsigned long long)n, left);
        v->items = calloc(n ? (size_t)n : 1, sizeof *v->items);
        if (!v->items) return lc_errf(r->err, "%s: key '%s': out of memory", r->path, key);
        v->n = n;
        for (uint64_t i = 0; i < n; i++)
            if (rd_value(r, &v->items[i], GGUF_T_ARRAY, key, depth + 1)) return LC_FAIL;
        return LC_OK;
    }
    return lc_errf(r->err, "%s: key '%s': array of unknown element type %u", r->path, key, et);
}

static char *dup_str(gguf_str s) {
    char *c = malloc((size_t)s.len + 1);
    if (!c) return NULL;
    memcpy(c, s.p, (size_t)s.len);
    c[s.len] = 0;
    return c;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_kv; i++) {
        free(f->keys[i]);
        value_free(&f->vals[i]);
    }
    free(f->keys);
    free(f->vals);
    for (int i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap((void *)f->map, f->size);
    free(f->path);
    free(f);
}

/* Parses everything after the mapping is in place. */
static int parse(gguf_file *f, lc_err *err) {
    rd r = {f->map, f->size, 0, f->path, err};
    if (rd_need(&r, 4, "the magic \"GGUF\"")) return LC_FAIL;
    if (memcmp(f->map, "GGUF", 4))
        return lc_errf(err, "%s: not a GGUF file (the first 4 bytes are not \"GGUF\")", f->path);
    r.pos = 4;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (rd_u32(&r, &version, "the version")) return LC_FAIL;
    if (version == 1)
        return lc_errf(err, "%s: GGUF version 1 is not supported (2 and 3 are)", f->path);
    if (version != 2 && version != 3) {
        if ((version & 0xFFFF) == 0)
            return lc_errf(err, "%s: version field 0x%08X: a big-endian GGUF file (only "
                           "little-endian is supported)", f->path, version);
        return lc_errf(err, "%s: unknown GGUF version %u (2 and 3 are supported)", f->path,
                       version);
    }
    f->version = version;
    if (rd_u64(&r, &n_tensors, "the tensor count") || rd_u64(&r, &n_kv, "the metadata count"))
        return LC_FAIL;
    /* a key-value pair takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8 */
    size_t left = r.size - r.pos;
    if (n_kv > left / 13 || n_kv > INT32_MAX)
        return lc_errf(err, "%s: truncated or corrupt: %llu metadata entries cannot fit in the "
                       "%zu bytes of the file after the header", f->path,
                       (unsigned long long)n_kv, left);
    if (n_tensors > left / 32 || n_tensors > INT32_MAX)
        return lc_errf(err, "%s: truncated or corrupt: %llu tensor infos cannot fit in the %zu "
                       "bytes of the file after the header", f->path,
                       (unsigned long long)n_tensors, left);
    f->keys = calloc((size_t)n_kv + 1, sizeof *f->keys);
    f->vals = calloc((size_t)n_kv + 1, sizeof *f->vals);
    f->tensors = calloc((size_t)n_tensors + 1, sizeof *f->tensors);
    if (!f->keys || !f->vals || !f->tensors) return lc_errf(err, "%s: out of memory", f->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        char what[64];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        gguf_str k;
        uint32_t type;
        if (rd_str(&r, &k, what)) return LC_FAIL;
        if (!(f->keys[i] = dup_str(k))) return lc_errf(err, "%s: out of memory", f->path);
        f->n_kv = (int)i + 1;
        if (strlen(f->keys[i]) != k.len || k.len == 0)
            return lc_errf(err, "%s: metadata key %llu: empty or holds a NUL byte", f->path,
                           (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->keys[j], f->keys[i]))
                return lc_errf(err, "%s: key '%s': appears twice", f->path, f->keys[i]);
        snprintf(what, sizeof what, "the type of key %llu", (unsigned long long)i);
        if (rd_u32(&r, &type, what) || rd_value(&r, &f->vals[i], (int)type, f->keys[i], 0))
            return LC_FAIL;
    }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *al = gguf_find(f, "general.alignment");
    if (al) {
        if (al->type != GGUF_T_UINT32)
            return lc_errf(err, "%s: key 'general.alignment': expected uint32, found %s", f->path,
                           gguf_vtype_name(al->type));
        if (al->u64 == 0 || (al->u64 & (al->u64 - 1)))
            return lc_errf(err, "%s: key 'general.alignment': %llu is not a power of two",
                           f->path, (unsigned long long)al->u64);
        f->alignment = (size_t)al->u64;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[300];
        snprintf(what, sizeof what, "the name of tensor %llu", (unsigned long long)i);
        gguf_str nm;
        if (rd_str(&r, &nm, what)) return LC_FAIL;
        if (!(t->name = dup_str(nm))) return lc_errf(err, "%s: out of memory", f->path);
        f->n_tensors = (int)i + 1;
        if (strlen(t->name) != nm.len || nm.len == 0)
            return lc_errf(err, "%s: tensor %llu: name empty or holds a NUL byte", f->path,
                           (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->tensors[j].name, t->name))
                return lc_errf(err, "%s: tensor '%s': appears twice", f->path, t->name);
        snprintf(what, sizeof what, "tensor '%.200s'", t->name);
        uint32_t nd, type;
        if (rd_u32(&r, &nd, what)) return LC_FAIL;
        if (nd < 1 || nd > GGUF_MAX_DIMS)
            return lc_errf(err, "%s: tensor '%s': %u dimensions (1 to %d are allowed)", f->path,
                           t->name, nd, GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        uint64_t count = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne;
            if (rd_u64(&r, &ne, what)) return LC_FAIL;
            if (ne == 0 || ne > (uint64_t)INT64_MAX || count > (uint64_t)INT64_MAX / ne)
                return lc_errf(err, "%s: tensor '%s': dimension %u is %llu (must be >= 1 with "
                               "at most 2^63-1 elements in all)", f->path, t->name, d,
                               (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            count *= ne;
        }
        if (rd_u32(&r, &type, what) || rd_u64(&r, &t->offset, what)) return LC_FAIL;
        t->type = (int)type;
        int blk = gguf_type_block((int)type);
        if (!blk)
            return lc_errf(err, "%s: tensor '%s': unknown ggml type %u", f->path, t->name, type);
        if (t->ne[0] % blk)
            return lc_errf(err, "%s: tensor '%s': type %s needs ne[0] a multiple of %d, found "
                           "%lld", f->path, t->name, gguf_type_name((int)type), blk,
                           (long long)t->ne[0]);
        uint64_t blocks = count / (uint64_t)blk, bb = gguf_type_block_bytes((int)type);
        if (blocks > SIZE_MAX / bb)
            return lc_errf(err, "%s: tensor '%s': byte size overflows", f->path, t->name);
        t->nbytes = (size_t)(blocks * bb);
        if (t->offset % f->alignment)
            return lc_errf(err, "%s: tensor '%s': offset %llu is not a multiple of the "
                           "alignment %zu", f->path, t->name, (unsigned long long)t->offset,
                           f->alignment);
    }
    size_t pad = (f->alignment - r.pos % f->alignment) % f->alignment;
    f->data_offset = r.pos + pad;
    if (f->n_tensors && f->data_offset > f->size)
        return lc_errf(err, "%s: truncated: the tensor data would start at offset %llu, past "
                       "the end of the file (%zu bytes)", f->path,
                       (unsigned long long)f->data_offset, f->size);
    size_t data_size = f->size - (size_t)(f->data_offset <= f->size ? f->data_offset : f->size);
    for (int i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return lc_errf(err, "%s: tensor '%s': data [%llu, +%zu) lies outside the %zu bytes "
                           "of tensor data in the file (truncated or corrupt offset)", f->path,
                           t->name, (unsigned long long)t->offset, t->nbytes, data_size);
        t->data = f->map + f->data_offset + t->offset;
    }
    return LC_OK;
}

int gguf_open(gguf_file **out, const char *path, lc_err *err) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return lc_errf(err, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        gguf_close(f);
        return LC_FAIL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        lc_errf(err, "%s: not a regular file", path);
        close(fd);
        gguf_close(f);
        return LC_FAIL;
    }
    if (st.st_size == 0) {
        lc_errf(err, "%s: truncated: the file is empty", path);
        close(fd);
        gguf_close(f);
        return LC_FAIL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        lc_errf(err, "%s: mmap failed: %s", path, strerror(errno));
        gguf_close(f);
        return LC_FAIL;
    }
    f->map = m;
    f->size = (size_t)st.st_size;
    if (parse(f, err)) {
        gguf_close(f);
        return LC_FAIL;
    }
    *out = f;
    return LC_OK;
}

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
const void *gguf_mapping(const gguf_file *f, size_t *size) {
    if (size) *size = f->size;
    return f->map;
}
int gguf_n_kv(const gguf_file *f) { return f->n_kv; }
const char *gguf_key_at(const gguf_file *f, int i) {
    return i >= 0 && i < f->n_kv ? f->keys[i] : NULL;
}
const gguf_value *gguf_value_at(const gguf_file *f, int i) {
    return i >= 0 && i < f->n_kv ? &f->vals[i] : NULL;
}
const gguf_value *gguf_find(const gguf_file *f, const char *key) {
    for (int i = 0; i < f->n_kv; i++)
        if (!strcmp(f->keys[i], key)) return &f->vals[i];
    return NULL;
}
int gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* ---- typed getters ----------------------------------------------------- */

static int is_int_type(int t) {
    return t == GGUF_T_UINT8 || t == GGUF_T_INT8 || t == GGUF_T_UINT16 || t == GGUF_T_INT16 ||
           t == GGUF_T_UINT32 || t == GGUF_T_INT32 || t == GGUF_T_UINT64 || t == GGUF_T_INT64;
}
static int is_signed(int t) {
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

static const gguf_value *lookup(const gguf_file *f, const char *key, int required, lc_err *err,
                                int *rc) {
    const gguf_value *v = gguf_find(f, key);
    *rc = LC_OK;
    if (!v && required) *rc = lc_errf(err, "%s: key '%s': missing", f->path, key);
    return v;
}

static int wrong_type(const gguf_file *f, const char *key, const char *want, const gguf_value *v,
                      lc_err *err) {
    if (v->type == GGUF_T_ARRAY)
        return lc_errf(err, "%s: key '%s': expected %s, found an array of %s", f->path, key, want,
                       gguf_vtype_name(v->elem_type));
    return lc_errf(err, "%s: key '%s': expected %s, found %s", f->path, key, want,
                   gguf_vtype_name(v->type));
}

int gguf_get_int(const gguf_file *f, const char *key, int required, int64_t lo, int64_t hi,
                 int64_t *out, lc_err *err) {
    int rc;
    const gguf_value *v = lookup(f, key, required, err, &rc);
    if (!v) return rc;
    if (!is_int_type(v->type)) return wrong_type(f, key, "an integer", v, err);
    int neg = is_signed(v->type) && v->i64 < 0;
    if ((!neg && v->u64 > (uint64_t)INT64_MAX) || v->i64 < lo || v->i64 > hi) {
        if (is_signed(v->type))
            return lc_errf(err, "%s: key '%s': %lld is out of range [%lld, %lld]", f->path, key,
                           (long long)v->i64, (long long)lo, (long long)hi);
        return lc_errf(err, "%s: key '%s': %llu is out of range [%lld, %lld]", f->path, key,
                       (unsigned long long)v->u64, (long long)lo, (long long)hi);
    }
    *out = v->i64;
    return LC_OK;
}

int gguf_get_float(const gguf_file *f, const char *key, int required, double *out, lc_err *err) {
    int rc;
    const gguf_value *v = lookup(f, key, required, err, &rc);
    if (!v) return rc;
    if (v->type != GGUF_T_FLOAT32 && v->type != GGUF_T_FLOAT64)
        return wrong_type(f, key, "float32", v, err);
    *out = v->f64;
    return LC_OK;
}

int gguf_get_bool(const gguf_file *f, const char *key, int required, int *out, lc_err *err) {
    int rc;
    const gguf_value *v = lookup(f, key, required, err, &rc);
    if (!v) return rc;
    if (v->type != GGUF_T_BOOL) return wrong_type(f, key, "bool", v, err);
    *out = v->u64 != 0;
    return LC_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, int required, char **out, lc_err *err) {
    int rc;
    *out = NULL;
    const gguf_value *v = lookup(f, key, required, err, &rc);
    if (!v) return rc;
    if (v->type != GGUF_T_STRING) return wrong_type(f, key, "a string", v, err);
    if (memchr(v->str.p, 0, (size_t)v->str.len))
        return lc_errf(err, "%s: key '%s': the string holds a NUL byte", f->path, key);
    if (!(*out = dup_str(v->str))) return lc_errf(err, "%s: out of memory", f->path);
    return LC_OK;
}

int gguf_get_arr(const gguf_file *f, const char *key, int required, int elem_type,
                 const gguf_value **out, lc_err *err) {
    int rc;
    const gguf_value *v = lookup(f, key, required, err, &rc);
    *out = NULL;
    if (!v) return rc;
    if (v->type != GGUF_T_ARRAY)
        return lc_errf(err, "%s: key '%s': expected an array%s%s, found %s", f->path, key,
                       elem_type >= 0 ? " of " : "", elem_type >= 0 ? gguf_vtype_name(elem_type) : "",
                       gguf_vtype_name(v->type));
    if (elem_type >= 0 && v->elem_type != elem_type)
        return lc_errf(err, "%s: key '%s': expected an array of %s, found an array of %s",
                       f->path, key, gguf_vtype_name(elem_type), gguf_vtype_name(v->elem_type));
    *out = v;
    return LC_OK;
}

double gguf_arr_f64(const gguf_value *a, uint64_t i) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = a->elem_type;
    size_t sz = vtype_size(a->elem_type);
    if (!sz || i >= a->n) return 0;
    scalar_fill(&v, a->raw + i * sz);
    return v.f64;
}

int64_t gguf_arr_i64(const gguf_value *a, uint64_t i) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = a->elem_type;
    size_t sz = vtype_size(a->elem_type);
    if (!sz || i >= a->n) return 0;
    scalar_fill(&v, a->raw + i * sz);
    if (v.type == GGUF_T_FLOAT32 || v.type == GGUF_T_FLOAT64) return (int64_t)v.f64;
    return v.i64;
}

/* ---- tensor data -> f32 ------------------------------------------------ */

int gguf_tensor_read_f32(const gguf_file *f, const gguf_tensor *t, float *out, lc_err *err) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->ne[d];
    if (!qtype_name(t->type))
        return lc_errf(err, "%s: tensor '%s': type %s cannot be converted to F32 (supported: "
                       "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)", f->path, t->name,
                       gguf_type_name(t->type));
    if (qrow_to_f32(t->type, t->data, out, n, err))
        return lc_err_prefix(err, "%s: tensor '%s': ", f->path, t->name);
    return LC_OK;
}

/* ---- writer ------------------------------------------------------------ */

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
    int own;
} wtensor;

struct gguf_writer {
    unsigned char *kv; /* serialized key-value pairs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    int n_t, cap_t;
    int failed;
};

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].own) free((void *)w->t[i].data);
    }
    free(w->t);
    free(w->kv);
    free(w);
}

static int kv_put(gguf_writer *w, const void *d, size_t n) {
    if (n > SIZE_MAX - w->kv_len) return LC_FAIL;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        unsigned char *p = realloc(w->kv, cap);
        if (!p) return LC_FAIL;
        w->kv = p;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, d, n);
    w->kv_len += n;
    return LC_OK;
}
static int kv_u32(gguf_writer *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return kv_put(w, b, 4);
}
static int kv_u64(gguf_writer *w, uint64_t v) {
    return kv_u32(w, (uint32_t)v) || kv_u32(w, (uint32_t)(v >> 32)) ? LC_FAIL : LC_OK;
}
static int kv_strn(gguf_writer *w, const char *s, size_t n) {
    return kv_u64(w, n) || kv_put(w, s, n) ? LC_FAIL : LC_OK;
}

/* Starts a pair: checks the key is new, writes key and type. */
static int kv_begin(gguf_writer *w, const char *key, int type, lc_err *err) {
    if (!key || !*key) {
        w->failed = 1;
        return lc_errf(err, "gguf writer: empty key");
    }
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) {
            w->failed = 1;
            return lc_errf(err, "gguf writer: key '%s' set twice", key);
        }
    char **k = realloc(w->keys, sizeof *k * (size_t)(w->n_kv + 1));
    if (!k) goto oom;
    w->keys = k;
    if (!(w->keys[w->n_kv] = strdup(key))) goto oom;
    w->n_kv++;
    if (kv_strn(w, key, strlen(key)) || kv_u32(w, (uint32_t)type)) goto oom;
    return LC_OK;
oom:
    w->failed = 1;
    return lc_errf(err, "gguf writer: out of memory at key '%s'", key);
}

static int kv_end(gguf_writer *w, int rc, const char *key, lc_err *err) {
    if (rc) {
        w->failed = 1;
        return lc_errf(err, "gguf writer: out of memory at key '%s'", key);
    }
    return LC_OK;
}

int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, lc_err *err) {
    if (kv_begin(w, key, GGUF_T_UINT32, err)) return LC_FAIL;
    return kv_end(w, kv_u32(w, v), key, err);
}
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v, lc_err *err) {
    if (kv_begin(w, key, GGUF_T_INT32, err)) return LC_FAIL;
    return kv_end(w, kv_u32(w, (uint32_t)v), key, err);
}
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v, lc_err *err) {
    if (kv_begin(w, key, GGUF_T_UINT64, err)) return LC_FAIL;
    return kv_end(w, kv_u64(w, v), key, err);
}
int gguf_set_f32(gguf_writer *w, const char *key, float v, lc_err *err) {
    uint32_t b;
    memcpy(&b, &v, 4);
    if (kv_begin(w, key, GGUF_T_FLOAT32, err)) return LC_FAIL;
    return kv_end(w, kv_u32(w, b), key, err);
}
int gguf_set_bool(gguf_writer *w, const char *key, int v, lc_err *err) {
    unsigned char b = v ? 1 : 0;
    if (kv_begin(w, key, GGUF_T_BOOL, err)) return LC_FAIL;
    return kv_end(w, kv_put(w, &b, 1), key, err);
}
int gguf_set_str(gguf_writer *w, const char *key, const char *v, lc_err *err) {
    if (kv_begin(w, key, GGUF_T_STRING, err)) return LC_FAIL;
    return kv_end(w, kv_strn(w, v, strlen(v)), key, err);
}
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, const int *lens,
                     uint64_t n, lc_err *err) {
    if (kv_begin(w, key, GGUF_T_ARRAY, err)) return LC_FAIL;
    int rc = kv_u32(w, GGUF_T_STRING) || kv_u64(w, n);
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = kv_strn(w, v[i], lens ? (size_t)lens[i] : strlen(v[i]));
    return kv_end(w, rc, key, err);
}
int gguf_set_arr(gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n,
                 lc_err *err) {
    size_t sz = vtype_size(elem_type);
    if (!sz) {
        w->failed = 1;
        return lc_errf(err, "gguf writer: key '%s': gguf_set_arr takes fixed-size elements, not "
                       "%s", key, gguf_vtype_name(elem_type));
    }
    if (kv_begin(w, key, GGUF_T_ARRAY, err)) return LC_FAIL;
    /* the host is little-endian (the project builds for x86-64 and arm64) */
    int rc = kv_u32(w, (uint32_t)elem_type) || kv_u64(w, n) || kv_put(w, data, (size_t)n * sz);
    return kv_end(w, rc, key, err);
}

int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                    const void *data, size_t nbytes, int own, lc_err *err) {
    int rc = LC_FAIL;
    if (!name || !*name) {
        lc_errf(err, "gguf writer: tensor with an empty name");
        goto out;
    }
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) {
            lc_errf(err, "gguf writer: tensor '%s' added twice", name);
            goto out;
        }
    int blk = gguf_type_block(type);
    if (!blk || n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        lc_errf(err, "gguf writer: tensor '%s': type %d / %d dims not writable", name, type,
                n_dims);
        goto out;
    }
    uint64_t count = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || count > (uint64_t)INT64_MAX / (uint64_t)ne[d]) {
            lc_errf(err, "gguf writer: tensor '%s': bad dimension %d", name, d);
            goto out;
        }
        count *= (uint64_t)ne[d];
    }
    if (ne[0] % blk || count / (uint64_t)blk * gguf_type_block_bytes(type) != nbytes) {
        lc_errf(err, "gguf writer: tensor '%s': %zu bytes do not match type %s and its dims",
                name, nbytes, gguf_type_name(type));
        goto out;
    }
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) {
            lc_errf(err, "gguf writer: out of memory");
            goto out;
        }
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        lc_errf(err, "gguf writer: out of memory");
        goto out;
    }
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    t->own = own;
    w->n_t++;
    return LC_OK;
out:
    if (own) free((void *)data);
    w->failed = 1;
    return rc;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

int gguf_writer_write(gguf_writer *w, const char *path, lc_err *err) {
    if (w->failed)
        return lc_errf(err, "%s: not written: an earlier call on the GGUF writer failed", path);
    const size_t A = GGUF_DEFAULT_ALIGNMENT;
    /* header + metadata + tensor infos in one buffer */
    gguf_writer h;
    memset(&h, 0, sizeof h);
    int rc = kv_put(&h, "GGUF", 4) || kv_u32(&h, 3) || kv_u64(&h, (uint64_t)w->n_t) ||
             kv_u64(&h, w->n_kv) || kv_put(&h, w->kv, w->kv_len);
    size_t off = 0;
    for (int i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        rc = kv_strn(&h, t->name, strlen(t->name)) || kv_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims && !rc; d++) rc = kv_u64(&h, (uint64_t)t->ne[d]);
        rc = rc || kv_u32(&h, (uint32_t)t->type) || kv_u64(&h, off);
        off = align_up(off + t->nbytes, A);
    }
    static const unsigned char zeros[GGUF_DEFAULT_ALIGNMENT];
    if (!rc) rc = kv_put(&h, zeros, align_up(h.kv_len, A) - h.kv_len);
    if (rc) {
        free(h.kv);
        return lc_errf(err, "%s: out of memory", path);
    }
    char tmp[4200];
    FILE *fp = lc_tmp_open(path, tmp, sizeof tmp, err);
    if (!fp) {
        free(h.kv);
        return LC_FAIL;
    }
    int ok = fwrite(h.kv, 1, h.kv_len, fp) == h.kv_len;
    free(h.kv);
    for (int i = 0; i < w->n_t && ok; i++) {
        const wtensor *t = &w->t[i];
        ok = fwrite(t->data, 1, t->nbytes, fp) == t->nbytes;
        size_t pad = align_up(t->nbytes, A) - t->nbytes;
        if (ok && pad) ok = fwrite(zeros, 1, pad, fp) == pad;
    }
    return lc_tmp_close(fp, ok, ok ? 0 : errno, tmp, path, err);
}
