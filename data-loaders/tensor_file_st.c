/* tensor_file_st.c: the safetensors reader of tensor_file.c: a single file
 * (memory-mapped read-only; the JSON header copied out, parsed with cJSON,
 * and every field checked against the file's size before the tensor table is
 * built) and a sharded model (model.safetensors.index.json and its shards). */
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
    int k = tf_dtype_from_name(jd->valuestring, &dt);
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
                       fpath, name, end - begin, sh, tensor_dtype_name(dt),
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
    /* (no tensor at all leaves out->v NULL: no pointer arithmetic on it) */
    if (out->n > first && st_check_overlap(fpath, out->v + first, out->n - first, err)) goto done;
    rc = LC_OK;
done:
    cJSON_Delete(root);
    free(hdr);
    return rc;
}

int tf_st_open_single(tensor_file *tf, const char *fpath, lc_err *err) {
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

int tf_st_open_index(tensor_file *tf, const char *ipath, lc_err *err) {
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

    dir = tf_path_dirname(ipath);
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
        s->path = tf_path_join(dir, snames[k]);
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
        sorted[k] = tf_sort_by_name(&tmp[k], err);
        if (!sorted[k]) goto done;
    }
    for (int i = 0; i < nents; i++) {
        int k = ents[i].shard;
        const tensor_info *src = tf_find_sorted(sorted[k], tmp[k].n, ents[i].name);
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
        for (int k = 0; k < ns; k++) tf_tlist_free(&tmp[k]);
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

