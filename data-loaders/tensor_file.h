/* tensor_file.h: read named tensors from safetensors files (single, or sharded
 * through model.safetensors.index.json) and from the project's HDF5 files,
 * behind one interface, and write them back.
 *
 * Readers never trust a length or offset from a file: every header length,
 * data offset and shape is checked against the file size and the dtype before
 * any byte is read. Errors name the file and the tensor. */
#ifndef TENSOR_FILE_H
#define TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"

typedef enum {
    DT_F32 = 0,
    DT_F16,
    DT_BF16,
    DT_F64,
    DT_I32,
    DT_I64,
    DT_I8,
    DT_U8,
    DT_COUNT
} tensor_dtype;

#define TENSOR_MAX_DIMS 8

typedef struct {
    char *name;
    tensor_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    int file_index; /* which shard (index into the file list) */
    uint64_t offset; /* absolute byte offset in that file (safetensors) */
    uint64_t nbytes;
} tensor_info;

typedef struct tensor_file tensor_file; /* opaque */

/* Writes a shape as "[2, 3]" (for messages). */
void tensor_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* Bytes per element; 0 for an invalid dtype. */
size_t tensor_dtype_size(tensor_dtype dt);
/* "F32", "BF16", ... (safetensors spelling). */
const char *tensor_dtype_name(tensor_dtype dt);

/* Opens `path`, which may be:
 *   - a .safetensors file,
 *   - a model.safetensors.index.json (sharded safetensors),
 *   - an HDF5 file (.h5 / .hdf5; detected by its signature),
 *   - a directory holding model.safetensors or model.safetensors.index.json
 *     or adapter_model.safetensors.
 * On failure returns LC_FAIL with err naming the file and what is wrong. */
int tensor_file_open(tensor_file **out, const char *path, lc_err *err);
void tensor_file_free(tensor_file *tf);

/* The file read (for messages): the path given, or for a directory the
 * index or safetensors file found in it. */
const char *tensor_file_path(const tensor_file *tf);
/* The actual file holding a tensor (the shard for sharded files). */
const char *tensor_file_path_of(const tensor_file *tf, const tensor_info *ti);

int tensor_file_count(const tensor_file *tf);
const tensor_info *tensor_file_at(const tensor_file *tf, int i);
/* NULL when absent. */
const tensor_info *tensor_file_find(const tensor_file *tf, const char *name);

/* A string attribute: safetensors "__metadata__" entry, or an HDF5 root
 * attribute. NULL when absent. The pointer lives as long as tf. */
const char *tensor_file_meta(const tensor_file *tf, const char *key);

/* Reads tensor `name` converted to float32 (from F32, F16, BF16, F64) into
 * dst. If expect_ndim > 0 the stored shape must equal expect_shape exactly,
 * else the error says "<file>: tensor <name>: expected shape [a, b], found
 * [c, d]". A missing tensor is an error naming it. */
int tensor_file_read_f32(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, float *dst, lc_err *err);
/* Same, converted to float64. */
int tensor_file_read_f64(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, double *dst, lc_err *err);
/* Reads an integer tensor (I32 or I64) into int32 dst (values must fit). */
int tensor_file_read_i32(tensor_file *tf, const char *name, int expect_ndim,
                         const int64_t *expect_shape, int32_t *dst, lc_err *err);

/* The stored bytes of a tensor (little-endian, ti->dtype) inside the
 * read-only mapping of a safetensors file, valid while tf is open; NULL
 * for HDF5 files. */
const void *tensor_file_data(const tensor_file *tf, const tensor_info *ti);

/* ---- writing ---------------------------------------------------------- */

typedef struct tensor_writer tensor_writer; /* opaque */

typedef enum { TW_SAFETENSORS, TW_HDF5 } tensor_writer_format;

/* Collects tensors in memory order, then writes them on close to a
 * temporary file that is renamed onto `path` (no half-written outputs). */
int tensor_writer_open(tensor_writer **out, const char *path,
                       tensor_writer_format fmt, lc_err *err);
/* Adds a string metadata entry (safetensors __metadata__ / HDF5 root attr). */
int tensor_writer_meta(tensor_writer *w, const char *key, const char *value,
                       lc_err *err);
/* Adds a float32 tensor, stored as `dtype` (DT_F32, DT_F16, DT_BF16 for
 * safetensors; DT_F32 for HDF5). The data is copied. */
int tensor_writer_add_f32(tensor_writer *w, const char *name, int ndim,
                          const int64_t *shape, const float *data,
                          tensor_dtype dtype, lc_err *err);
/* Writes and renames; frees w in all cases. */
int tensor_writer_close(tensor_writer *w, lc_err *err);
/* Frees without writing anything (error paths). */
void tensor_writer_abort(tensor_writer *w);

/* fp16 / bf16 conversions (round to nearest even). */
float lc_f16_to_f32(uint16_t h);
uint16_t lc_f32_to_f16(float f);
float lc_bf16_to_f32(uint16_t h);
uint16_t lc_f32_to_bf16(float f);

#endif
