/* tensor_writer.c: the tensor_file writer. Tensors are collected in memory
 * and written on close, as safetensors (here) or HDF5 (tensor_file_h5.c),
 * through the safe-write helpers (a temporary file renamed over the target;
 * data-loaders/fsutil.c). */
#include "tensor_file.h"
#include "tensor_file_impl.h"
#include "loaders.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tensor_writer_abort(tensor_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    tf_mlist_free(&w->meta);
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
    char *dir = tf_path_dirname(path);
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
