/* tensor_file_h5.c: the HDF5 back end of tensor_file.c (the project's
 * .h5 files: read through the HDF5 library with H5Dread's native type
 * conversion, written with creation order tracked).
 *
 * Built with LC_NO_HDF5 (the on-device runtime, which links no HDF5) the
 * same entry points refuse HDF5 files with a message saying so. */
#include "tensor_file_impl.h"
#include "loaders.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LC_NO_HDF5

#include <hdf5.h>

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "tensor_file keeps the HDF5 file id in an int64_t");
#define TF_NO_ID ((hid_t)-1)

int tf_h5_is_hdf5(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return H5Fis_hdf5(path) > 0;
}

void tf_h5_close(tensor_file *tf) {
    if (tf->h5 >= 0) H5Fclose((hid_t)tf->h5);
    tf->h5 = -1;
}

/* ---- reading --------------------------------------------------------- */

typedef struct {
    char desc[320];
} h5_detail;

typedef struct {
    char desc[300];
} h5_inner;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    h5_inner *d = data;
    if (e && e->desc && e->desc[0]) snprintf(d->desc, sizeof d->desc, "%s", e->desc);
    return 0;
}

/* The innermost message on HDF5's error stack, as " (HDF5: ...)". */
static const char *h5_why(h5_detail *d) {
    h5_inner inner = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_walk_cb, &inner);
    if (inner.desc[0])
        snprintf(d->desc, sizeof d->desc, " (HDF5: %s)", inner.desc);
    else
        d->desc[0] = 0;
    return d->desc;
}

typedef struct {
    tensor_file *tf;
    const char *fpath;
    lc_err *err;
    int failed;
} h5_ctx;

static int h5_classify(hid_t tid, tensor_dtype *dt) {
    H5T_class_t cls = H5Tget_class(tid);
    size_t sz = H5Tget_size(tid);
    if (cls == H5T_FLOAT) {
        if (sz == 4) *dt = DT_F32;
        else if (sz == 8) *dt = DT_F64;
        else if (sz == 2) {
            size_t spos, epos, esize, mpos, msize;
            if (H5Tget_fields(tid, &spos, &epos, &esize, &mpos, &msize) < 0)
                return -1;
            if (esize == 5 && msize == 10) *dt = DT_F16;
            else if (esize == 8 && msize == 7) *dt = DT_BF16;
            else return -1;
        } else
            return -1;
        return 0;
    }
    if (cls == H5T_INTEGER) {
        H5T_sign_t sg = H5Tget_sign(tid);
        if (sg == H5T_SGN_2 && sz == 4) *dt = DT_I32;
        else if (sg == H5T_SGN_2 && sz == 8) *dt = DT_I64;
        else if (sg == H5T_SGN_2 && sz == 1) *dt = DT_I8;
        else if (sg == H5T_SGN_NONE && sz == 1) *dt = DT_U8;
        else return -1;
        return 0;
    }
    return -1;
}

static const char *h5_class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    case H5T_TIME: return "time";
    default: return "unknown";
    }
}

static int h5_describe(h5_ctx *c, hid_t ds, const char *name) {
    lc_err *err = c->err;
    int rc = LC_FAIL;
    hid_t tid = H5Dget_type(ds), sid = TF_NO_ID;
    h5_detail why;
    if (tid < 0) {
        lc_errf(err, "%s: dataset '%s': cannot read its type%s", c->fpath, name,
                h5_why(&why));
        goto done;
    }
    tensor_dtype dt;
    if (h5_classify(tid, &dt) != 0) {
        lc_errf(err,
                "%s: dataset '%s': unsupported HDF5 type (%s, %zu bytes); "
                "supported: 32/64-bit float, 8/32/64-bit signed int, uint8",
                c->fpath, name, h5_class_name(H5Tget_class(tid)), H5Tget_size(tid));
        goto done;
    }
    sid = H5Dget_space(ds);
    if (sid < 0) {
        lc_errf(err, "%s: dataset '%s': cannot read its dataspace%s", c->fpath,
                name, h5_why(&why));
        goto done;
    }
    H5S_class_t scls = H5Sget_simple_extent_type(sid);
    int nd = 0;
    hsize_t dims[TENSOR_MAX_DIMS];
    if (scls == H5S_SIMPLE) {
        nd = H5Sget_simple_extent_ndims(sid);
        if (nd < 0 || nd > TENSOR_MAX_DIMS) {
            lc_errf(err, "%s: dataset '%s': has %d dims, at most %d are supported",
                    c->fpath, name, nd, TENSOR_MAX_DIMS);
            goto done;
        }
        if (H5Sget_simple_extent_dims(sid, dims, NULL) < 0) {
            lc_errf(err, "%s: dataset '%s': cannot read its dims%s", c->fpath,
                    name, h5_why(&why));
            goto done;
        }
    } else if (scls != H5S_SCALAR) {
        lc_errf(err, "%s: dataset '%s': has a null dataspace (no data)", c->fpath,
                name);
        goto done;
    }
    int64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        if (dims[i] > (hsize_t)INT64_MAX ||
            (dims[i] != 0 && numel > INT64_MAX / (int64_t)dims[i])) {
            lc_errf(err, "%s: dataset '%s': too many elements", c->fpath, name);
            goto done;
        }
        numel *= (int64_t)dims[i];
    }
    if ((uint64_t)numel > UINT64_MAX / tensor_dtype_size(dt)) {
        lc_errf(err, "%s: dataset '%s': too many elements", c->fpath, name);
        goto done;
    }
    tensor_info *t = tf_tlist_add(&c->tf->t, err);
    if (!t) {
        lc_err_prefix(err, "%s: ", c->fpath);
        goto done;
    }
    t->name = strdup(name);
    if (!t->name) {
        lc_errf(err, "%s: out of memory", c->fpath);
        goto done;
    }
    t->dtype = dt;
    t->ndim = nd;
    for (int i = 0; i < nd; i++) t->shape[i] = (int64_t)dims[i];
    t->numel = numel;
    t->file_index = 0;
    t->offset = 0;
    t->nbytes = (uint64_t)numel * tensor_dtype_size(dt);
    rc = LC_OK;
done:
    if (sid >= 0) H5Sclose(sid);
    if (tid >= 0) H5Tclose(tid);
    return rc;
}

static herr_t h5_link_cb(hid_t g, const char *name, const H5L_info_t *info,
                         void *data) {
    h5_ctx *c = data;
    if (info->type != H5L_TYPE_HARD) return 0; /* soft/external: skip */
    hid_t oid = H5Oopen(g, name, H5P_DEFAULT);
    if (oid < 0) {
        h5_detail why;
        lc_errf(c->err, "%s: cannot open object '%s'%s", c->fpath, name,
                h5_why(&why));
        c->failed = 1;
        return -1;
    }
    int rc = LC_OK;
    if (H5Iget_type(oid) == H5I_DATASET) rc = h5_describe(c, oid, name);
    H5Oclose(oid);
    if (rc != LC_OK) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

/* Reads one string attribute into a malloc'd string; *skip set for
 * attributes that are not single strings. */
static char *h5_read_str_attr(hid_t aid, int *skip) {
    char *out = NULL;
    hid_t tid = H5Aget_type(aid), sid = TF_NO_ID, mt = TF_NO_ID;
    *skip = 1;
    if (tid < 0 || H5Tget_class(tid) != H5T_STRING) goto done;
    sid = H5Aget_space(aid);
    if (sid < 0 || H5Sget_simple_extent_npoints(sid) != 1) goto done;
    *skip = 0;
    H5T_cset_t cset = H5Tget_cset(tid);
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, cset) < 0) goto done;
    htri_t var = H5Tis_variable_str(tid);
    if (var > 0) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(aid, mt, &s) < 0) goto done;
        out = strdup(s ? s : "");
        if (s) H5free_memory(s);
    } else if (var == 0) {
        size_t sz = H5Tget_size(tid);
        if (sz == 0 || sz > ((size_t)1 << 30)) goto done;
        char *buf = calloc(sz + 2, 1);
        if (!buf) goto done;
        if (H5Tset_size(mt, sz + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
            H5Aread(aid, mt, buf) < 0) {
            free(buf);
            goto done;
        }
        buf[sz + 1] = 0;
        out = buf;
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (sid >= 0) H5Sclose(sid);
    if (tid >= 0) H5Tclose(tid);
    return out;
}

static herr_t h5_attr_cb(hid_t loc, const char *name, const H5A_info_t *ainfo,
                         void *data) {
    (void)ainfo;
    h5_ctx *c = data;
    h5_detail why;
    hid_t aid = H5Aopen(loc, name, H5P_DEFAULT);
    if (aid < 0) {
        lc_errf(c->err, "%s: cannot open attribute '%s'%s", c->fpath, name,
                h5_why(&why));
        c->failed = 1;
        return -1;
    }
    int skip = 0;
    char *v = h5_read_str_attr(aid, &skip);
    if (!v && !skip) h5_why(&why);
    H5Aclose(aid);
    if (skip) return 0; /* non-string attributes are not metadata */
    if (!v) {
        lc_errf(c->err, "%s: cannot read string attribute '%s'%s", c->fpath, name,
                why.desc);
        c->failed = 1;
        return -1;
    }
    int rc = tf_mlist_put(&c->tf->meta, name, v, 0, c->err);
    free(v);
    if (rc) {
        lc_err_prefix(c->err, "%s: ", c->fpath);
        c->failed = 1;
        return -1;
    }
    return 0;
}

int tf_h5_open(tensor_file *tf, const char *fpath, lc_err *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5_detail why;
    tf->is_hdf5 = 1;
    tf->shards = lc_calloc(1, sizeof *tf->shards, err);
    if (!tf->shards) return LC_FAIL;
    tf->nshards = 1;
    tf->shards[0].path = strdup(fpath);
    if (!tf->shards[0].path) return lc_errf(err, "out of memory");

    tf->h5 = H5Fopen(fpath, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (tf->h5 < 0)
        return lc_errf(err, "%s: cannot open as HDF5%s", fpath, h5_why(&why));
    hid_t root = H5Gopen2(tf->h5, "/", H5P_DEFAULT);
    if (root < 0)
        return lc_errf(err, "%s: cannot open the root group%s", fpath,
                       h5_why(&why));
    H5_index_t order = H5_INDEX_NAME;
    hid_t gcpl = H5Gget_create_plist(root);
    if (gcpl >= 0) {
        unsigned flags = 0;
        if (H5Pget_link_creation_order(gcpl, &flags) >= 0 &&
            (flags & H5P_CRT_ORDER_TRACKED))
            order = H5_INDEX_CRT_ORDER; /* tensors in the order written */
        H5Pclose(gcpl);
    }
    h5_ctx c = {tf, fpath, err, 0};
    herr_t r = H5Literate(root, order, H5_ITER_INC, NULL, h5_link_cb, &c);
    if (r < 0 && !c.failed)
        lc_errf(err, "%s: cannot list the root group%s", fpath, h5_why(&why));
    if (r >= 0) {
        r = H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, NULL, h5_attr_cb, &c);
        if (r < 0 && !c.failed)
            lc_errf(err, "%s: cannot list root attributes%s", fpath,
                    h5_why(&why));
    }
    H5Gclose(root);
    return r < 0 ? LC_FAIL : LC_OK;
}


static int h5_read(tensor_file *tf, const tensor_info *ti, hid_t memtype,
                   void *dst, lc_err *err) {
    if (ti->numel == 0) return LC_OK;
    h5_detail why;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t ds = H5Dopen2(tf->h5, ti->name, H5P_DEFAULT);
    if (ds < 0)
        return lc_errf(err, "%s: tensor '%s': cannot open dataset%s", tf->path,
                       ti->name, h5_why(&why));
    herr_t r = H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    if (r < 0) h5_why(&why);
    H5Dclose(ds);
    if (r < 0)
        return lc_errf(err, "%s: tensor '%s': HDF5 read failed%s", tf->path,
                       ti->name, why.desc);
    return LC_OK;
}

int tf_h5_write(const tensor_writer *w, const char *tmp, lc_err *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5_detail why;
    int rc = LC_FAIL;
    hid_t fcpl = TF_NO_ID, fid = TF_NO_ID, root = TF_NO_ID, strt = TF_NO_ID;
    hid_t scalar = TF_NO_ID, lcpl = TF_NO_ID, acpl = TF_NO_ID, fapl = TF_NO_ID;
    void *image = NULL;
    ssize_t image_n = -1;

    /* The file is built in memory (core driver, no backing store) and written by
     * lc_write_bytes_atomic: libhdf5 1.10 crashes at exit after a file it wrote
     * failed to close (disk full), and this way it never writes to disk. */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    fcpl = H5Pcreate(H5P_FILE_CREATE);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    acpl = H5Pcreate(H5P_ATTRIBUTE_CREATE);
    if (fapl < 0 || fcpl < 0 || lcpl < 0 || acpl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ||
        H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED |
                                             H5P_CRT_ORDER_INDEXED) < 0 ||
        H5Pset_char_encoding(lcpl, H5T_CSET_UTF8) < 0 ||
        H5Pset_char_encoding(acpl, H5T_CSET_UTF8) < 0) {
        lc_errf(err, "%s: cannot set up HDF5 properties%s", w->path, h5_why(&why));
        goto done;
    }
    fid = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (fid < 0) {
        lc_errf(err, "%s: cannot create the temporary HDF5 file %s%s", w->path, tmp, h5_why(&why));
        goto done;
    }
    root = H5Gopen2(fid, "/", H5P_DEFAULT);
    strt = H5Tcopy(H5T_C_S1);
    scalar = H5Screate(H5S_SCALAR);
    if (root < 0 || strt < 0 || scalar < 0 || H5Tset_size(strt, H5T_VARIABLE) < 0 ||
        H5Tset_cset(strt, H5T_CSET_UTF8) < 0) {
        lc_errf(err, "%s: HDF5 setup failed%s", w->path, h5_why(&why));
        goto done;
    }
    for (int i = 0; i < w->meta.n; i++) {
        hid_t a = H5Acreate2(root, w->meta.key[i], strt, scalar, acpl, H5P_DEFAULT);
        const char *v = w->meta.val[i];
        herr_t r = a < 0 ? -1 : H5Awrite(a, strt, &v);
        if (r < 0) h5_why(&why);
        if (a >= 0) H5Aclose(a);
        if (r < 0) {
            lc_errf(err, "%s: cannot write attribute '%s'%s", w->path,
                    w->meta.key[i], why.desc);
            goto done;
        }
    }
    for (int i = 0; i < w->n; i++) {
        const tw_tensor *t = &w->t[i];
        hsize_t dims[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        hid_t sid = t->ndim ? H5Screate_simple(t->ndim, dims, NULL)
                            : H5Screate(H5S_SCALAR);
        hid_t ds = sid < 0 ? TF_NO_ID
                           : H5Dcreate2(root, t->name, H5T_IEEE_F32LE, sid, lcpl,
                                        H5P_DEFAULT, H5P_DEFAULT);
        herr_t r = ds < 0 ? -1 : 0;
        if (r >= 0 && t->numel > 0)
            r = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         t->data);
        if (r < 0) h5_why(&why);
        if (ds >= 0) H5Dclose(ds);
        if (sid >= 0) H5Sclose(sid);
        if (r < 0) {
            lc_errf(err, "%s: tensor '%s': cannot write dataset%s", w->path,
                    t->name, why.desc);
            goto done;
        }
    }
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0 || (image_n = H5Fget_file_image(fid, NULL, 0)) < 0) {
        lc_errf(err, "%s: cannot finish the HDF5 image%s", w->path, h5_why(&why));
        goto done;
    }
    if (!(image = malloc(image_n ? (size_t)image_n : 1)) || H5Fget_file_image(fid, image, (size_t)image_n) != image_n) {
        lc_errf(err, "%s: %s", w->path, image ? "cannot read the HDF5 image" : "out of memory for the HDF5 image");
        goto done;
    }
    rc = LC_OK;
done:
    if (scalar >= 0) H5Sclose(scalar);
    if (strt >= 0) H5Tclose(strt);
    if (root >= 0) H5Gclose(root);
    if (fid >= 0 && H5Fclose(fid) < 0 && rc == LC_OK)
        rc = lc_errf(err, "%s: closing the HDF5 file failed%s", w->path, h5_why(&why));
    if (acpl >= 0) H5Pclose(acpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (fapl >= 0) H5Pclose(fapl);
    if (rc == LC_OK) rc = lc_write_bytes_atomic(w->path, image, (size_t)image_n, err);
    free(image);
    return rc;
}

int tf_h5_read(tensor_file *tf, const tensor_info *ti, tf_h5_type t, void *dst, lc_err *err) {
    hid_t mt = t == TF_H5_F32 ? H5T_NATIVE_FLOAT : t == TF_H5_F64 ? H5T_NATIVE_DOUBLE
             : t == TF_H5_I32 ? H5T_NATIVE_INT32 : H5T_NATIVE_INT64;
    return h5_read(tf, ti, mt, dst, err);
}

#else /* LC_NO_HDF5 */

#define NO_HDF5 "this build has no HDF5 support (the on-device runtime is built without HDF5: " \
                "convert the file to safetensors, e.g. with `convert`)"

int tf_h5_is_hdf5(const char *path) {
    /* the signature at offset 0; the HDF5 library would also find it after a user block */
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    return n == (ssize_t)sizeof b && !memcmp(b, sig, sizeof b);
}

void tf_h5_close(tensor_file *tf) { tf->h5 = -1; }

int tf_h5_open(tensor_file *tf, const char *fpath, lc_err *err) {
    (void)tf;
    return lc_errf(err, "%s: HDF5 file, but %s", fpath, NO_HDF5);
}

int tf_h5_read(tensor_file *tf, const tensor_info *ti, tf_h5_type t, void *dst, lc_err *err) {
    (void)t, (void)dst;
    return lc_errf(err, "%s: tensor '%s': %s", tf->path, ti->name, NO_HDF5);
}

int tf_h5_write(const tensor_writer *w, const char *tmp, lc_err *err) {
    (void)tmp;
    return lc_errf(err, "%s: cannot write HDF5: %s", w->path, NO_HDF5);
}

#endif
