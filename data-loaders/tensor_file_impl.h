/* tensor_file_impl.h: what tensor_file.c shares with its HDF5 back end
 * (tensor_file_h5.c). Private to data-loaders. */
#ifndef TENSOR_FILE_IMPL_H
#define TENSOR_FILE_IMPL_H

#include <stdint.h>

#include "tensor_file.h"

typedef struct {
    tensor_info *v;
    int n, cap;
} tlist;

typedef struct {
    char **key, **val;
    int n, cap;
} mlist;

typedef struct {
    char *path;
    unsigned char *map; /* NULL for HDF5 */
    size_t size;
} tf_shard;

struct tensor_file {
    char *path; /* as given to tensor_file_open */
    int is_hdf5;
    int64_t h5; /* hid_t of the open HDF5 file, -1 when none */
    int nshards;
    tf_shard *shards;
    tlist t;
    tensor_info **sorted; /* by name, for tensor_file_find */
    mlist meta;
};

typedef struct {
    char *name;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    tensor_dtype dtype;
    float *data;
} tw_tensor;

struct tensor_writer {
    char *path;
    tensor_writer_format fmt;
    tw_tensor *t;
    int n, cap;
    mlist meta;
};

tensor_info *tf_tlist_add(tlist *l, lc_err *err);
/* Adds key=value (copies); an existing key keeps its first value unless
 * dup_is_error. */
int tf_mlist_put(mlist *m, const char *key, const char *val, int dup_is_error, lc_err *err);

/* ---- the HDF5 back end (tensor_file_h5.c) ----------------------------- */

typedef enum { TF_H5_F32, TF_H5_F64, TF_H5_I32, TF_H5_I64 } tf_h5_type;

/* 1 if path is an HDF5 file (the signature may follow a user block). */
int tf_h5_is_hdf5(const char *path);
/* Opens fpath into tf (sets is_hdf5, h5, the tensor table and metadata). */
int tf_h5_open(tensor_file *tf, const char *fpath, lc_err *err);
void tf_h5_close(tensor_file *tf);
/* Reads ti converted to t into dst. */
int tf_h5_read(tensor_file *tf, const tensor_info *ti, tf_h5_type t, void *dst, lc_err *err);
/* Writes w's tensors and metadata as an HDF5 file at tmp. */
/* Builds the HDF5 file in memory (tmp: its name there, never created) and
 * writes it to w->path with lc_write_bytes_atomic. */
int tf_h5_write(const tensor_writer *w, const char *tmp, lc_err *err);

#endif
