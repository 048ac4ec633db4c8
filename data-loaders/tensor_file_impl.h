/* tensor_file_impl.h: what tensor_file.c shares with its safetensors reader
 * (tensor_file_st.c), its HDF5 back end (tensor_file_h5.c) and the writer
 * (tensor_writer.c). Private to data-loaders. */
#ifndef TENSOR_FILE_IMPL_H
#define TENSOR_FILE_IMPL_H

#include <stdint.h>
#include <string.h>

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
void tf_tlist_free(tlist *l);
/* Sorted pointer view of a list, for lookups by name; NULL on failure. */
tensor_info **tf_sort_by_name(tlist *l, lc_err *err);
const tensor_info *tf_find_sorted(tensor_info **s, int n, const char *name);
/* Adds key=value (copies); an existing key keeps its first value unless
 * dup_is_error. */
int tf_mlist_put(mlist *m, const char *key, const char *val, int dup_is_error, lc_err *err);
void tf_mlist_free(mlist *m);
/* dir/name and the folder of path (malloc'd; NULL when out of memory). */
char *tf_path_join(const char *dir, const char *name);
char *tf_path_dirname(const char *path);
/* 0: a dtype we read (in *out), 1: a safetensors dtype we do not, 2: unknown. */
int tf_dtype_from_name(const char *s, tensor_dtype *out);
int tf_dtype_is_float(tensor_dtype dt);

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Little-endian loads and stores, byte by byte (host-endian independent,
 * never unaligned). */
static inline uint16_t ld16(const unsigned char *p) {
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}
static inline uint32_t ld32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t ld64(const unsigned char *p) {
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}
static inline void st16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void st32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void st64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static inline double ld_f64(const unsigned char *p) {
    uint64_t u = ld64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- the safetensors reader (tensor_file_st.c) ------------------------- */

/* Maps and parses one safetensors file into tf (one shard). */
int tf_st_open_single(tensor_file *tf, const char *fpath, lc_err *err);
/* Reads a model.safetensors.index.json and maps and parses its shards. */
int tf_st_open_index(tensor_file *tf, const char *ipath, lc_err *err);

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
