/* gguf.h: the GGUF container (ggml docs/gguf.md, versions 2 and 3,
 * little-endian): a memory-mapped reader and a writer.
 *
 * Reader: gguf_open maps the file and checks all of it before returning:
 * the header, every metadata value (all 13 value types, arrays nested to
 * any depth up to GGUF_MAX_DEPTH), general.alignment, every tensor info
 * (dims, ggml type, offset) and that each tensor's bytes lie inside the
 * file. Every count, length, size and offset is checked against the bytes
 * left before it is used, with overflow-safe arithmetic, so a truncated or
 * corrupt file is an error ("<file>: key '<k>': ...", "<file>: tensor
 * '<t>': ..."), never a read past the mapping. Strings and tensor data
 * point into the mapping: they stay valid until gguf_close.
 *
 * Writer: metadata in the order it is set, tensor infos, then the tensor
 * data, each tensor aligned to 32 bytes; written to "<path>.tmp.<pid>@<host>" and
 * renamed onto path, so a reader never sees half a file. */
#ifndef GGUF_H
#define GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"

/* gguf_metadata_value_type */
typedef enum {
    GGUF_T_UINT8 = 0,
    GGUF_T_INT8 = 1,
    GGUF_T_UINT16 = 2,
    GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4,
    GGUF_T_INT32 = 5,
    GGUF_T_FLOAT32 = 6,
    GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8,
    GGUF_T_ARRAY = 9,
    GGUF_T_UINT64 = 10,
    GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12
} gguf_vtype;

#define GGUF_MAX_DEPTH 8    /* nesting of arrays inside arrays */
#define GGUF_MAX_DIMS 4     /* GGML_MAX_DIMS */
#define GGUF_DEFAULT_ALIGNMENT 32

/* "uint8", ..., "float64"; "?" for an unknown id. */
const char *gguf_vtype_name(int t);

/* ggml type ids the container knows the block layout of (every ggml type
 * with a fixed block size: F32 ... MXFP4); 0 for an unknown or removed
 * id. Whether a type can be converted to F32 is a separate question
 * (gguf_tensor_read_f32). */
int gguf_type_block(int ggml_type);
size_t gguf_type_block_bytes(int ggml_type);
const char *gguf_type_name(int ggml_type); /* "Q5_K"...; NULL if unknown */

typedef struct {
    const char *p; /* into the mapping, NOT NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    int type; /* gguf_vtype */
    /* scalars: the value as read; integers also in the other two fields
     * when they fit (u64 of a negative int is 0), floats in f64 */
    uint64_t u64;
    int64_t i64;
    double f64;
    gguf_str str;
    /* arrays */
    int elem_type;
    uint64_t n;
    const unsigned char *raw;  /* fixed-size elements, packed little-endian */
    gguf_str *strs;            /* n strings, when elem_type is STRING */
    struct gguf_value *items;  /* n arrays, when elem_type is ARRAY */
} gguf_value;

typedef struct {
    const char *name; /* NUL-terminated copy */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ggml order: ne[0] is the contiguous dim; unused = 1 */
    int type;                  /* ggml type id */
    uint64_t offset;           /* from the start of the data section */
    size_t nbytes;
    const void *data;          /* into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file; /* opaque */

int gguf_open(gguf_file **out, const char *path, lc_err *err);
void gguf_close(gguf_file *f);
const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f);
/* The whole mapping (for zero-copy users) and its size. */
const void *gguf_mapping(const gguf_file *f, size_t *size);

/* ---- metadata ---------------------------------------------------------- */

int gguf_n_kv(const gguf_file *f);
const char *gguf_key_at(const gguf_file *f, int i);
const gguf_value *gguf_value_at(const gguf_file *f, int i);
const gguf_value *gguf_find(const gguf_file *f, const char *key); /* NULL if absent */

/* Typed getters. required = 1: an absent key is an error ("<file>: key
 * '<k>': missing"); required = 0: *out keeps its value (the default) and
 * LC_OK is returned. A present key of the wrong type is always an error
 * naming the key and both types. */
/* Any integer type, and in [lo, hi]. */
int gguf_get_int(const gguf_file *f, const char *key, int required, int64_t lo, int64_t hi,
                 int64_t *out, lc_err *err);
/* float32 or float64. */
int gguf_get_float(const gguf_file *f, const char *key, int required, double *out, lc_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, int required, int *out, lc_err *err);
/* A malloc'd NUL-terminated copy (caller frees); a string holding a NUL
 * byte is an error. With required = 0 and the key absent *out = NULL. */
int gguf_get_str(const gguf_file *f, const char *key, int required, char **out, lc_err *err);
/* An array whose elements are elem_type (-1: any); *out = NULL when absent
 * and not required. */
int gguf_get_arr(const gguf_file *f, const char *key, int required, int elem_type,
                 const gguf_value **out, lc_err *err);
/* Element i of an array of numbers (any integer or float type), as double
 * / int64 (floats truncated); i < a->n. */
double gguf_arr_f64(const gguf_value *a, uint64_t i);
int64_t gguf_arr_i64(const gguf_value *a, uint64_t i);

/* ---- tensors ----------------------------------------------------------- */

int gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */
/* Converts a whole tensor to float32 (n = product of ne): F32, F16, BF16
 * here; Q8_0, Q4_0, Q4_K, Q6_K through kernels/quant.h. Another type is an
 * error naming the file, the tensor and the type. */
int gguf_tensor_read_f32(const gguf_file *f, const gguf_tensor *t, float *out, lc_err *err);

/* ---- writer ------------------------------------------------------------ */

typedef struct gguf_writer gguf_writer; /* opaque */

gguf_writer *gguf_writer_new(void); /* NULL on out-of-memory */
void gguf_writer_free(gguf_writer *w);

/* Metadata, written in call order. A key set twice is an error (LC_FAIL;
 * the writer then refuses to write). */
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, lc_err *err);
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v, lc_err *err);
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v, lc_err *err);
int gguf_set_f32(gguf_writer *w, const char *key, float v, lc_err *err);
int gguf_set_bool(gguf_writer *w, const char *key, int v, lc_err *err);
int gguf_set_str(gguf_writer *w, const char *key, const char *v, lc_err *err);
/* n strings; lens NULL = NUL-terminated. */
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, const int *lens,
                     uint64_t n, lc_err *err);
/* n fixed-size elements of elem_type (not STRING/ARRAY), packed. */
int gguf_set_arr(gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n,
                 lc_err *err);

/* A tensor of ggml type `type` and ggml dims ne[0..n_dims); data holds
 * exactly its bytes (checked against the type's row size). The writer
 * keeps the pointer until gguf_writer_write; own = 1 hands the buffer
 * (malloc'd) to the writer, which frees it. */
int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                    const void *data, size_t nbytes, int own, lc_err *err);
/* Writes version 3 with alignment 32. Errors name path. */
int gguf_writer_write(gguf_writer *w, const char *path, lc_err *err);

#endif
