/* qtype.h: the storage types of weight matrices, with GGML's numeric ids
 * (the `type` field of a GGUF tensor info), so a GGUF tensor's type maps
 * onto this enum without a table. Block layouts (llama.cpp's
 * ggml-common.h; kernels/quant.h has the code):
 *
 *   type   block   bytes  layout of one block
 *   F32        1       4  IEEE binary32
 *   F16        1       2  IEEE binary16
 *   BF16       1       2  bfloat16 (top half of a binary32)
 *   Q8_0      32      34  f16 d; int8 q[32]            x = d * q
 *   Q4_0      32      18  f16 d; u8 qs[16]             x = d * (nibble - 8),
 *                         low nibbles are elements 0..15, high ones 16..31
 *   Q4_K     256     144  f16 d, dmin; u8 scales[12] (8 sub-blocks of 32,
 *                         6-bit scale and min each); u8 qs[128]
 *   Q6_K     256     210  u8 ql[128], qh[64]; int8 scales[16]; f16 d
 *
 * A row of a quantized matrix is whole blocks: its length must be a
 * multiple of the block size. */
#ifndef QTYPE_H
#define QTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q8_0 = 8,
    QT_Q4_K = 12,
    QT_Q6_K = 14,
    QT_BF16 = 30
} qtype;

/* Elements per block (1 for F32/F16/BF16); 0 for an id that is not one of
 * the types above. */
static inline int qtype_block(int t) {
    switch (t) {
    case QT_F32: case QT_F16: case QT_BF16: return 1;
    case QT_Q8_0: case QT_Q4_0: return 32;
    case QT_Q4_K: case QT_Q6_K: return 256;
    default: return 0;
    }
}

/* Bytes per block; 0 for an unknown id. */
static inline size_t qtype_block_bytes(int t) {
    switch (t) {
    case QT_F32: return 4;
    case QT_F16: case QT_BF16: return 2;
    case QT_Q8_0: return 34;
    case QT_Q4_0: return 18;
    case QT_Q4_K: return 144;
    case QT_Q6_K: return 210;
    default: return 0;
    }
}

/* "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K" (GGML's spelling);
 * NULL for an unknown id. */
static inline const char *qtype_name(int t) {
    switch (t) {
    case QT_F32: return "F32";
    case QT_F16: return "F16";
    case QT_BF16: return "BF16";
    case QT_Q8_0: return "Q8_0";
    case QT_Q4_0: return "Q4_0";
    case QT_Q4_K: return "Q4_K";
    case QT_Q6_K: return "Q6_K";
    default: return NULL;
    }
}

/* Bytes of a row of n elements; 0 when t is unknown or n is not a
 * multiple of the block size. */
static inline size_t qtype_row_bytes(int t, int64_t n) {
    int b = qtype_block(t);
    if (b == 0 || n < 0 || n % b) return 0;
    return (size_t)(n / b) * qtype_block_bytes(t);
}

#endif
