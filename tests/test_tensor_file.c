/* Tests for data-loaders/tensor_file.c: safetensors (single and sharded),
 * HDF5, the writer, fp16/bf16 conversions and the validation of bad input. */
#include <criterion/criterion.h>

#include <hdf5.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "tensor_file.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

#define ASSERT_HAS(msg, sub)                                                 \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"",   \
              (msg), (sub))

typedef struct {
    char dir[256];
} tdir;

static tdir new_dir(void) {
    tdir d;
    snprintf(d.dir, sizeof d.dir, "%s", tu_tmpdir());
    return d;
}

static void in_dir(char *out, size_t n, const tdir *d, const char *name) {
    snprintf(out, n, "%s/%s", d->dir, name);
}

/* 8-byte LE length, header text, then data. */
static void write_st_raw(const char *path, const char *header, const void *data,
                         size_t n) {
    size_t h = strlen(header);
    size_t total = 8 + h + n;
    unsigned char *buf = malloc(total);
    cr_assert_not_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (n) memcpy(buf + 8 + h, data, n);
    cr_assert_eq(tu_write_file(path, buf, total), 0);
    free(buf);
}

/* Opens `path`, expects failure whose message names the file, the tensor
 * (if given, quoted) and contains `what`. */
static void expect_open_fail(const char *path, const char *tensor,
                             const char *what) {
    tensor_file *tf = (tensor_file *)0x1;
    lc_err err = {{0}};
    cr_assert_eq(tensor_file_open(&tf, path, &err), LC_FAIL,
                 "open of %s unexpectedly succeeded", path);
    cr_assert_null(tf);
    ASSERT_HAS(err.msg, path);
    if (tensor) {
        char q[256];
        snprintf(q, sizeof q, "'%s'", tensor);
        ASSERT_HAS(err.msg, q);
    }
    if (what) ASSERT_HAS(err.msg, what);
}

static void expect_bad_header(const char *header, size_t data_bytes,
                              const char *tensor, const char *what) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "bad.safetensors");
    unsigned char *data = calloc(data_bytes ? data_bytes : 1, 1);
    write_st_raw(path, header, data, data_bytes);
    free(data);
    expect_open_fail(path, tensor, what);
}

static tensor_file *open_ok(const char *path) {
    tensor_file *tf = NULL;
    lc_err err = {{0}};
    int rc = tensor_file_open(&tf, path, &err);
    cr_assert_eq(rc, LC_OK, "open %s failed: %s", path, err.msg);
    cr_assert_not_null(tf);
    return tf;
}

static void write_simple(const char *path, tensor_writer_format fmt,
                         tensor_dtype dt) {
    tensor_writer *w = NULL;
    lc_err err = {{0}};
    cr_assert_eq(tensor_writer_open(&w, path, fmt, &err), LC_OK, "%s", err.msg);
    float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 5.5f};
    float b[4] = {0.5f, 0.25f, -0.125f, 8.0f};
    int64_t sa[2] = {2, 3}, sb[1] = {4};
    cr_assert_eq(tensor_writer_meta(w, "format", "pt", &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_meta(w, "note", "h\xc3\xa9llo \"quoted\"\n", &err),
                 LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_add_f32(w, "model.layers.0.self_attn.q_proj.weight",
                                       2, sa, a, dt, &err),
                 LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_add_f32(w, "model.norm.weight", 1, sb, b, dt, &err),
                 LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
}

static int count_entries(const char *dir) {
    DIR *dp = opendir(dir);
    cr_assert_not_null(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- fp16 / bf16 -------------------------------------------------------- */

Test(conv, f16_basic_values) {
    cr_assert_eq(lc_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(lc_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(lc_f32_to_f16(0.0f), 0x0000);
    cr_assert_eq(lc_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(lc_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(lc_f16_to_f32(0x3c00), 1.0f);
    cr_assert_eq(lc_f16_to_f32(0x7bff), 65504.0f);
    cr_assert(signbit(lc_f16_to_f32(0x8000)) && lc_f16_to_f32(0x8000) == 0.0f);
}

Test(conv, f16_subnormals) {
    float tiny = ldexpf(1.0f, -24); /* smallest f16 subnormal */
    cr_assert_eq(lc_f32_to_f16(tiny), 0x0001);
    cr_assert_eq(lc_f16_to_f32(0x0001), tiny);
    cr_assert_eq(lc_f16_to_f32(0x03ff), 1023.0f * tiny); /* largest subnormal */
    cr_assert_eq(lc_f32_to_f16(1023.0f * tiny), 0x03ff);
    cr_assert_eq(lc_f16_to_f32(0x8001), -tiny);
    /* Exactly half the smallest subnormal ties to even (zero). */
    cr_assert_eq(lc_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);
    /* Just above half rounds up. */
    cr_assert_eq(lc_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    /* 1.5 units ties to even: 2 units. 2.5 units ties to 2 units. */
    cr_assert_eq(lc_f32_to_f16(1.5f * tiny), 0x0002);
    cr_assert_eq(lc_f32_to_f16(2.5f * tiny), 0x0002);
    /* Rounding up from the largest subnormal reaches the smallest normal. */
    cr_assert_eq(lc_f32_to_f16(1023.75f * tiny), 0x0400);
    /* float32 subnormals underflow to (signed) zero. */
    cr_assert_eq(lc_f32_to_f16(f32_of_bits(0x00000001u)), 0x0000);
    cr_assert_eq(lc_f32_to_f16(f32_of_bits(0x80000001u)), 0x8000);
}

Test(conv, f16_inf_nan_overflow) {
    cr_assert_eq(lc_f32_to_f16(INFINITY), 0x7c00);
    cr_assert_eq(lc_f32_to_f16(-INFINITY), 0xfc00);
    cr_assert(isinf(lc_f16_to_f32(0x7c00)) && lc_f16_to_f32(0x7c00) > 0);
    cr_assert(isinf(lc_f16_to_f32(0xfc00)) && lc_f16_to_f32(0xfc00) < 0);
    uint16_t h = lc_f32_to_f16(NAN);
    cr_assert_eq(h & 0x7c00, 0x7c00);
    cr_assert_neq(h & 0x03ff, 0);
    cr_assert(isnan(lc_f16_to_f32(h)));
    /* A NaN whose payload sits only in the low bits must stay NaN. */
    uint16_t h2 = lc_f32_to_f16(f32_of_bits(0x7f800001u));
    cr_assert(isnan(lc_f16_to_f32(h2)));
    cr_assert(isnan(lc_f16_to_f32(0x7c01)));
    /* Overflow: 65519 rounds down to max, 65520 is a tie -> Inf (even). */
    cr_assert_eq(lc_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(lc_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(lc_f32_to_f16(1e10f), 0x7c00);
    cr_assert_eq(lc_f32_to_f16(-1e10f), 0xfc00);
}

Test(conv, f16_round_to_nearest_even) {
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1). */
    cr_assert_eq(lc_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 0x3c01 and 0x3c02: ties to 0x3c02. */
    cr_assert_eq(lc_f32_to_f16(1.0f + 3.0f * ldexpf(1.0f, -11)), 0x3c02);
    /* Slightly above the tie rounds up. */
    cr_assert_eq(lc_f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
    /* Mantissa carry into the exponent: 2 - 2^-12 rounds to 2. */
    cr_assert_eq(lc_f32_to_f16(2.0f - ldexpf(1.0f, -12)), 0x4000);
}

Test(conv, f16_exhaustive_round_trip) {
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = lc_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            cr_assert(isnan(f), "0x%04x should be NaN", h);
            continue;
        }
        cr_assert_eq(lc_f32_to_f16(f), h, "round trip of 0x%04x gave 0x%04x", h,
                     lc_f32_to_f16(f));
    }
}

Test(conv, bf16_values) {
    cr_assert_eq(lc_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(lc_bf16_to_f32(0x3f80), 1.0f);
    cr_assert_eq(lc_f32_to_bf16(-0.0f), 0x8000);
    /* Ties to even: 1 + 2^-8 -> 1; 1 + 3*2^-8 -> 1 + 2^-6 (0x3f82). */
    cr_assert_eq(lc_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    cr_assert_eq(lc_f32_to_bf16(1.0f + 3.0f * ldexpf(1.0f, -8)), 0x3f82);
    cr_assert_eq(lc_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(lc_f32_to_bf16(-INFINITY), 0xff80);
    cr_assert_eq(lc_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds past the max */
    uint16_t n = lc_f32_to_bf16(f32_of_bits(0x7f800001u)); /* low-payload NaN */
    cr_assert(isnan(lc_bf16_to_f32(n)));
    cr_assert(isnan(lc_bf16_to_f32(lc_f32_to_bf16(NAN))));
    /* bf16 keeps float32 subnormals. */
    cr_assert_eq(lc_f32_to_bf16(f32_of_bits(0x00010000u)), 0x0001);
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = lc_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        cr_assert_eq(lc_f32_to_bf16(f), h);
    }
}

Test(conv, dtype_names_sizes) {
    cr_assert_str_eq(tensor_dtype_name(DT_BF16), "BF16");
    cr_assert_eq(tensor_dtype_size(DT_F64), 8);
    cr_assert_eq(tensor_dtype_size(DT_U8), 1);
    cr_assert_eq(tensor_dtype_size(DT_COUNT), 0);
}

/* ---- safetensors round trips ------------------------------------------- */

static void check_simple(tensor_file *tf, float tol) {
    lc_err err = {{0}};
    cr_assert_eq(tensor_file_count(tf), 2);
    cr_assert_str_eq(tensor_file_at(tf, 0)->name,
                     "model.layers.0.self_attn.q_proj.weight");
    cr_assert_str_eq(tensor_file_at(tf, 1)->name, "model.norm.weight");
    float a[6], b[4];
    int64_t sa[2] = {2, 3}, sb[1] = {4};
    cr_assert_eq(tensor_file_read_f32(tf, "model.layers.0.self_attn.q_proj.weight",
                                      2, sa, a, &err),
                 LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_file_read_f32(tf, "model.norm.weight", 1, sb, b, &err), LC_OK,
                 "%s", err.msg);
    float ea[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 5.5f};
    float eb[4] = {0.5f, 0.25f, -0.125f, 8.0f};
    for (int i = 0; i < 6; i++)
        cr_assert(fabsf(a[i] - ea[i]) <= tol * fabsf(ea[i]), "a[%d]=%g", i, a[i]);
    for (int i = 0; i < 4; i++) cr_assert_eq(b[i], eb[i]);
    double bd[4];
    cr_assert_eq(tensor_file_read_f64(tf, "model.norm.weight", 1, sb, bd, &err), LC_OK,
                 "%s", err.msg);
    for (int i = 0; i < 4; i++) cr_assert_eq(bd[i], (double)eb[i]);
    cr_assert_str_eq(tensor_file_meta(tf, "format"), "pt");
    cr_assert_str_eq(tensor_file_meta(tf, "note"), "h\xc3\xa9llo \"quoted\"\n");
    cr_assert_null(tensor_file_meta(tf, "absent"));
}

Test(safetensors, round_trip_f32_and_alignment) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "m.safetensors");
    write_simple(path, TW_SAFETENSORS, DT_F32);
    cr_assert_eq(count_entries(d.dir), 1, "temporary file left behind");
    tensor_file *tf = open_ok(path);
    check_simple(tf, 0.0f);
    const tensor_info *ti = tensor_file_find(tf, "model.norm.weight");
    cr_assert_not_null(ti);
    cr_assert_eq(ti->dtype, DT_F32);
    cr_assert_eq(ti->ndim, 1);
    cr_assert_eq(ti->numel, 4);
    cr_assert_eq(ti->nbytes, 16);
    cr_assert_eq(ti->offset % 4, 0);
    cr_assert_str_eq(tensor_file_path(tf), path);
    cr_assert_str_eq(tensor_file_path_of(tf, ti), path);
    tensor_file_free(tf);

    /* Header padded with spaces so that the data starts 8-byte aligned. */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    unsigned char len8[8];
    cr_assert_eq(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)len8[i] << (8 * i);
    cr_assert_eq((8 + n) % 8, 0);
    char *hdr = calloc(n + 1, 1);
    cr_assert_eq(fread(hdr, 1, n, f), n);
    fclose(f);
    cr_assert_eq(hdr[0], '{');
    char *meta = strstr(hdr, "\"__metadata__\"");
    char *q = strstr(hdr, "model.layers.0.self_attn.q_proj.weight");
    char *nw = strstr(hdr, "model.norm.weight");
    cr_assert(meta && q && nw && q < nw, "tensors not in insertion order: %s", hdr);
    ASSERT_HAS(hdr, "\"data_offsets\":[0,24]");
    free(hdr);
}

Test(safetensors, round_trip_f16) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "h.safetensors");
    write_simple(path, TW_SAFETENSORS, DT_F16);
    tensor_file *tf = open_ok(path);
    const tensor_info *ti = tensor_file_find(tf, "model.layers.0.self_attn.q_proj.weight");
    cr_assert_eq(ti->dtype, DT_F16);
    cr_assert_eq(ti->nbytes, 12);
    check_simple(tf, 1e-3f);
    /* Exactly what the converter produces. */
    float a[6];
    lc_err err;
    cr_assert_eq(tensor_file_read_f32(tf, ti->name, 0, NULL, a, &err), LC_OK);
    cr_assert_eq(a[4], lc_f16_to_f32(lc_f32_to_f16(1e-3f)));
    tensor_file_free(tf);
}

Test(safetensors, round_trip_bf16) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "b.safetensors");
    write_simple(path, TW_SAFETENSORS, DT_BF16);
    tensor_file *tf = open_ok(path);
    const tensor_info *ti = tensor_file_find(tf, "model.norm.weight");
    cr_assert_eq(ti->dtype, DT_BF16);
    check_simple(tf, 8e-3f);
    float a[6];
    lc_err err;
    cr_assert_eq(tensor_file_read_f32(tf, "model.layers.0.self_attn.q_proj.weight", 0,
                                      NULL, a, &err),
                 LC_OK);
    cr_assert_eq(a[4], lc_bf16_to_f32(lc_f32_to_bf16(1e-3f)));
    tensor_file_free(tf);
}

Test(safetensors, mixed_storage_scalar_and_empty) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "mix.safetensors");
    tensor_writer *w = NULL;
    lc_err err;
    cr_assert_eq(tensor_writer_open(&w, path, TW_SAFETENSORS, &err), LC_OK);
    float s = 42.0f, v[3] = {1, 2, 3};
    int64_t s0[2] = {0, 5}, s3[1] = {3};
    cr_assert_eq(tensor_writer_add_f32(w, "h", 1, s3, v, DT_F16, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "scalar", 0, NULL, &s, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "empty", 2, s0, NULL, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "f", 1, s3, v, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 4);
    cr_assert_null(tensor_file_meta(tf, "format"));
    float out = 0, o3[3];
    cr_assert_eq(tensor_file_read_f32(tf, "scalar", 0, NULL, &out, &err), LC_OK);
    cr_assert_eq(out, 42.0f);
    cr_assert_eq(tensor_file_at(tf, 1)->ndim, 0);
    cr_assert_eq(tensor_file_read_f32(tf, "empty", 2, s0, NULL, &err), LC_OK, "%s",
                 err.msg);
    cr_assert_eq(tensor_file_read_f32(tf, "f", 1, s3, o3, &err), LC_OK);
    cr_assert_eq(o3[2], 3.0f);
    cr_assert_eq(tensor_file_read_f32(tf, "h", 1, s3, o3, &err), LC_OK);
    cr_assert_eq(o3[1], 2.0f);
    tensor_file_free(tf);
}

Test(safetensors, integer_and_f64_tensors) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "ints.safetensors");
    /* i32 [2] at 0..8, i64 [2] at 8..24, f64 [1] at 24..32, big i64 at 32..40,
     * i8 [2] at 40..42, u8 [2] at 42..44 */
    const char *hdr =
        "{\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]},"
        "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[24,32]},"
        "\"big\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[32,40]},"
        "\"s\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[40,42]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[42,44]}}";
    unsigned char data[44];
    int32_t a[2] = {-7, 123456};
    int64_t b[2] = {-5, 2000000000};
    double c = 0.1;
    int64_t big = (int64_t)1 << 40;
    memcpy(data, a, 8);
    memcpy(data + 8, b, 16);
    memcpy(data + 24, &c, 8);
    memcpy(data + 32, &big, 8);
    data[40] = 0xff; /* -1 */
    data[41] = 5;
    data[42] = 0xff; /* 255 */
    data[43] = 7;
    write_st_raw(path, hdr, data, sizeof data);
    tensor_file *tf = open_ok(path);
    lc_err err;
    int32_t o[2];
    int64_t s2[1] = {2};
    cr_assert_eq(tensor_file_read_i32(tf, "a", 1, s2, o, &err), LC_OK, "%s", err.msg);
    cr_assert(o[0] == -7 && o[1] == 123456);
    cr_assert_eq(tensor_file_read_i32(tf, "b", 1, s2, o, &err), LC_OK, "%s", err.msg);
    cr_assert(o[0] == -5 && o[1] == 2000000000);
    cr_assert_eq(tensor_file_read_i32(tf, "s", 1, s2, o, &err), LC_OK);
    cr_assert(o[0] == -1 && o[1] == 5);
    cr_assert_eq(tensor_file_read_i32(tf, "u", 1, s2, o, &err), LC_OK);
    cr_assert(o[0] == 255 && o[1] == 7);
    cr_assert_eq(tensor_file_read_i32(tf, "big", 0, NULL, o, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "'big'");
    ASSERT_HAS(err.msg, "int32");
    double dd;
    float ff;
    cr_assert_eq(tensor_file_read_f64(tf, "c", 0, NULL, &dd, &err), LC_OK);
    cr_assert_eq(dd, 0.1);
    cr_assert_eq(tensor_file_read_f32(tf, "c", 0, NULL, &ff, &err), LC_OK);
    cr_assert_eq(ff, 0.1f);
    /* Type mismatches are errors, not silent conversions. */
    cr_assert_eq(tensor_file_read_f32(tf, "a", 0, NULL, &ff, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'a'");
    cr_assert_eq(tensor_file_read_i32(tf, "c", 0, NULL, o, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'c'");
    tensor_file_free(tf);
}

Test(safetensors, shape_mismatch_and_missing_messages) {
    tdir d = new_dir();
    char path[512], want[1024];
    in_dir(path, sizeof path, &d, "m.safetensors");
    write_simple(path, TW_SAFETENSORS, DT_F32);
    tensor_file *tf = open_ok(path);
    lc_err err;
    float buf[64];
    int64_t s64[1] = {64};
    cr_assert_eq(tensor_file_read_f32(tf, "model.norm.weight", 1, s64, buf, &err),
                 LC_FAIL);
    snprintf(want, sizeof want,
             "%s: tensor 'model.norm.weight': expected shape [64], found [4]", path);
    cr_assert_str_eq(err.msg, want);
    int64_t s2[2] = {3, 2};
    cr_assert_eq(tensor_file_read_f32(tf, "model.layers.0.self_attn.q_proj.weight", 2,
                                      s2, buf, &err),
                 LC_FAIL);
    snprintf(want, sizeof want,
             "%s: tensor 'model.layers.0.self_attn.q_proj.weight': expected shape "
             "[3, 2], found [2, 3]",
             path);
    cr_assert_str_eq(err.msg, want);
    int64_t s3[3] = {2, 3, 1};
    cr_assert_eq(tensor_file_read_f64(tf, "model.layers.0.self_attn.q_proj.weight", 3,
                                      s3, (double *)buf, &err),
                 LC_FAIL);
    ASSERT_HAS(err.msg, "expected shape [2, 3, 1], found [2, 3]");
    cr_assert_eq(tensor_file_read_f32(tf, "x", 0, NULL, buf, &err), LC_FAIL);
    snprintf(want, sizeof want, "%s: tensor 'x' not found", path);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(tensor_file_read_i32(tf, "x", 0, NULL, (int32_t *)buf, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, want);
    cr_assert_null(tensor_file_find(tf, "x"));
    cr_assert_null(tensor_file_at(tf, 2));
    cr_assert_null(tensor_file_at(tf, -1));
    tensor_file_free(tf);
}

/* ---- safetensors: bad input -------------------------------------------- */

Test(bad_safetensors, file_shorter_than_8_bytes) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "short.safetensors");
    cr_assert_eq(tu_write_file(path, "\x05\0\0", 3), 0);
    expect_open_fail(path, NULL, "too short");
}

Test(bad_safetensors, empty_file) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "empty.safetensors");
    cr_assert_eq(tu_write_file(path, "", 0), 0);
    expect_open_fail(path, NULL, "too short");
}

Test(bad_safetensors, header_length_past_end) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "past.safetensors");
    unsigned char buf[8 + 10] = {0xe8, 0x03}; /* 1000 */
    memcpy(buf + 8, "{}        ", 10);
    cr_assert_eq(tu_write_file(path, buf, sizeof buf), 0);
    expect_open_fail(path, NULL, "past the end of the file");
}

Test(bad_safetensors, header_length_huge) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "huge.safetensors");
    unsigned char buf[16];
    memset(buf, 0xff, 8);
    memcpy(buf + 8, "{}      ", 8);
    cr_assert_eq(tu_write_file(path, buf, sizeof buf), 0);
    expect_open_fail(path, NULL, "header length 18446744073709551615");
}

Test(bad_safetensors, header_length_absurd_within_file) {
    /* A sparse file large enough to hold the claimed header. */
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "absurd.safetensors");
    uint64_t n = (uint64_t)200 << 20;
    unsigned char buf[8];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    cr_assert_eq(tu_write_file(path, buf, 8), 0);
    cr_assert_eq(truncate(path, (off_t)(n + 8)), 0);
    expect_open_fail(path, NULL, "absurd");
}

Test(bad_safetensors, header_not_json) {
    expect_bad_header("{\"a\": {\"dtype\": ", 0, NULL, "not valid JSON");
}

Test(bad_safetensors, header_trailing_garbage) {
    expect_bad_header("{} xyz", 0, NULL, "unexpected bytes");
}

Test(bad_safetensors, header_not_object) {
    expect_bad_header("[1, 2, 3]", 0, NULL, "not a JSON object");
}

Test(bad_safetensors, entry_not_object) {
    expect_bad_header("{\"w\": 5}", 0, "w", "not a JSON object");
}

Test(bad_safetensors, missing_dtype) {
    expect_bad_header("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "w",
                      "missing 'dtype'");
}

Test(bad_safetensors, missing_shape) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "w",
                      "missing 'shape'");
}

Test(bad_safetensors, missing_data_offsets) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "w",
                      "missing 'data_offsets'");
}

Test(bad_safetensors, unknown_dtype) {
    expect_bad_header("{\"w\": {\"dtype\": \"Q4_K\", \"shape\": [1], "
                      "\"data_offsets\": [0, 4]}}",
                      4, "w", "unknown dtype 'Q4_K'");
}

Test(bad_safetensors, unsupported_dtype) {
    expect_bad_header("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], "
                      "\"data_offsets\": [0, 1]}}",
                      4, "w", "unsupported dtype 'F8_E4M3'");
}

Test(bad_safetensors, dtype_not_string) {
    expect_bad_header("{\"w\": {\"dtype\": 3, \"shape\": [1], "
                      "\"data_offsets\": [0, 4]}}",
                      4, "w", "'dtype' is not a string");
}

Test(bad_safetensors, negative_shape) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], "
                      "\"data_offsets\": [0, 4]}}",
                      4, "w", "negative shape entry");
}

Test(bad_safetensors, shape_not_integer) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], "
                      "\"data_offsets\": [0, 4]}}",
                      4, "w", "not an integer");
}

Test(bad_safetensors, too_many_dims) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                      "\"data_offsets\": [0, 4]}}",
                      4, "w", "9 dims");
}

Test(bad_safetensors, data_offsets_three_entries) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                      "\"data_offsets\": [0, 4, 8]}}",
                      8, "w", "two non-negative integers");
}

Test(bad_safetensors, data_offsets_negative) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                      "\"data_offsets\": [-4, 0]}}",
                      8, "w", "two non-negative integers");
}

Test(bad_safetensors, data_offsets_not_numbers) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                      "\"data_offsets\": [\"0\", 4]}}",
                      8, "w", "two non-negative integers");
}

Test(bad_safetensors, data_offsets_begin_after_end) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], "
                      "\"data_offsets\": [8, 4]}}",
                      8, "w", "begin is after end");
}

Test(bad_safetensors, data_offsets_past_data) {
    expect_bad_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], "
                      "\"data_offsets\": [0, 16]}}",
                      12, "w", "past the end of the data region");
}

Test(bad_safetensors, size_mismatch) {
    expect_bad_header("{\"w\": {\"dtype\": \"F16\", \"shape\": [2, 3], "
                      "\"data_offsets\": [0, 24]}}",
                      24, "w", "needs 12 (6 elements x 2 bytes)");
}

Test(bad_safetensors, overlapping_tensors) {
    expect_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], "
                      "\"data_offsets\": [0, 16]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], "
                      "\"data_offsets\": [8, 16]}}",
                      16, "b", "overlaps tensor 'a'");
}

Test(bad_safetensors, overlap_found_after_sorting) {
    /* Listed out of order; c sits inside a, which is not adjacent to it. */
    expect_bad_header("{\"c\": {\"dtype\": \"U8\", \"shape\": [1], "
                      "\"data_offsets\": [30, 31]},"
                      " \"b\": {\"dtype\": \"U8\", \"shape\": [8], "
                      "\"data_offsets\": [32, 40]},"
                      " \"a\": {\"dtype\": \"U8\", \"shape\": [32], "
                      "\"data_offsets\": [0, 32]}}",
                      40, "c", "overlaps tensor 'a'");
}

Test(bad_safetensors, duplicate_tensor_name) {
    expect_bad_header("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], "
                      "\"data_offsets\": [0, 1]},"
                      " \"a\": {\"dtype\": \"U8\", \"shape\": [1], "
                      "\"data_offsets\": [1, 2]}}",
                      2, "a", "more than once");
}

Test(bad_safetensors, metadata_value_not_string) {
    expect_bad_header("{\"__metadata__\": {\"format\": \"pt\", \"epoch\": 3}}", 0,
                      "epoch", "not a string");
}

Test(bad_safetensors, metadata_not_object) {
    expect_bad_header("{\"__metadata__\": [\"pt\"]}", 0, NULL,
                      "__metadata__ is not a JSON object");
}

Test(bad_safetensors, missing_file) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "nope.safetensors");
    expect_open_fail(path, NULL, "No such file");
}

Test(bad_safetensors, holes_are_tolerated) {
    /* Unused bytes between tensors are not an error (only overlaps are). */
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "holes.safetensors");
    unsigned char data[12] = {0};
    write_st_raw(path,
                 "{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]},"
                 " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [8, 10]},"
                 " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [1, 1]}}",
                 data, sizeof data);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 3);
    tensor_file_free(tf);
}

/* ---- sharded / directories --------------------------------------------- */

static void write_shard(const char *path, const char *n1, float v1, const char *n2,
                        float v2, const char *fmt_meta) {
    tensor_writer *w = NULL;
    lc_err err;
    cr_assert_eq(tensor_writer_open(&w, path, TW_SAFETENSORS, &err), LC_OK, "%s",
                 err.msg);
    float a[2] = {v1, v1 + 1}, b[3] = {v2, v2 + 1, v2 + 2};
    int64_t s2[1] = {2}, s3[1] = {3};
    if (fmt_meta) cr_assert_eq(tensor_writer_meta(w, "format", fmt_meta, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, n1, 1, s2, a, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, n2, 1, s3, b, DT_BF16, &err), LC_OK);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
}

static void make_sharded(const tdir *d, int write_second, const char *extra_map) {
    char p[512], idx[2048];
    in_dir(p, sizeof p, d, "model-00001-of-00002.safetensors");
    write_shard(p, "model.embed_tokens.weight", 1.0f, "model.layers.0.mlp.up_proj.weight",
                10.0f, "pt");
    if (write_second) {
        in_dir(p, sizeof p, d, "model-00002-of-00002.safetensors");
        write_shard(p, "model.layers.1.mlp.up_proj.weight", 20.0f, "model.norm.weight",
                    30.0f, NULL);
    }
    snprintf(idx, sizeof idx,
             "{\"metadata\": {\"total_size\": 40},\n"
             " \"weight_map\": {\n"
             "  \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
             "  \"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\",\n"
             "  \"model.layers.1.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\",\n"
             "  \"model.norm.weight\": \"model-00002-of-00002.safetensors\"%s}}\n",
             extra_map ? extra_map : "");
    in_dir(p, sizeof p, d, "model.safetensors.index.json");
    cr_assert_eq(tu_write_file(p, idx, strlen(idx)), 0);
}

static void check_sharded(tensor_file *tf, const tdir *d) {
    lc_err err;
    cr_assert_eq(tensor_file_count(tf), 4);
    float a[3];
    int64_t s2[1] = {2}, s3[1] = {3};
    cr_assert_eq(tensor_file_read_f32(tf, "model.embed_tokens.weight", 1, s2, a, &err),
                 LC_OK, "%s", err.msg);
    cr_assert(a[0] == 1.0f && a[1] == 2.0f);
    cr_assert_eq(tensor_file_read_f32(tf, "model.norm.weight", 1, s3, a, &err), LC_OK,
                 "%s", err.msg);
    cr_assert(a[0] == 30.0f && a[2] == 32.0f);
    cr_assert_eq(tensor_file_read_f32(tf, "model.layers.1.mlp.up_proj.weight", 1, s2,
                                      a, &err),
                 LC_OK);
    cr_assert(a[0] == 20.0f && a[1] == 21.0f);
    char want[512];
    in_dir(want, sizeof want, d, "model-00002-of-00002.safetensors");
    cr_assert_str_eq(tensor_file_path_of(tf, tensor_file_find(tf, "model.norm.weight")),
                     want);
    in_dir(want, sizeof want, d, "model-00001-of-00002.safetensors");
    cr_assert_str_eq(
        tensor_file_path_of(tf, tensor_file_find(tf, "model.embed_tokens.weight")), want);
    cr_assert_str_eq(tensor_file_meta(tf, "total_size"), "40");
    cr_assert_str_eq(tensor_file_meta(tf, "format"), "pt"); /* from the shard */
}

Test(sharded, index_file_two_shards) {
    tdir d = new_dir();
    make_sharded(&d, 1, NULL);
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    tensor_file *tf = open_ok(p);
    check_sharded(tf, &d);
    cr_assert_str_eq(tensor_file_path(tf), p);
    tensor_file_free(tf);
}

Test(sharded, directory_prefers_index) {
    tdir d = new_dir();
    make_sharded(&d, 1, NULL);
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors"); /* must be ignored */
    write_simple(p, TW_SAFETENSORS, DT_F32);
    tensor_file *tf = open_ok(d.dir);
    check_sharded(tf, &d);
    char idx[512];
    in_dir(idx, sizeof idx, &d, "model.safetensors.index.json");
    cr_assert_str_eq(tensor_file_path(tf), idx, "messages name the file read, not the folder");
    tensor_file_free(tf);
}

Test(sharded, missing_shard_file) {
    tdir d = new_dir();
    make_sharded(&d, 0, NULL);
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    expect_open_fail(p, NULL, "model-00002-of-00002.safetensors");
    lc_err err;
    tensor_file *tf;
    cr_assert_eq(tensor_file_open(&tf, p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "No such file");
}

Test(sharded, tensor_not_in_named_shard) {
    tdir d = new_dir();
    make_sharded(&d, 1,
                 ",\n  \"lm_head.weight\": \"model-00002-of-00002.safetensors\"\n");
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    expect_open_fail(p, "lm_head.weight", "model-00002-of-00002.safetensors");
}

Test(sharded, tensor_in_other_shard_than_named) {
    tdir d = new_dir();
    char p[512], idx[1024];
    make_sharded(&d, 1, NULL);
    snprintf(idx, sizeof idx,
             "{\"weight_map\": {\"model.norm.weight\": "
             "\"model-00001-of-00002.safetensors\"}}");
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    cr_assert_eq(tu_write_file(p, idx, strlen(idx)), 0);
    expect_open_fail(p, "model.norm.weight", "does not contain it");
}

Test(sharded, bad_index_json) {
    tdir d = new_dir();
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    cr_assert_eq(tu_write_file(p, "{\"weight_map\": ", 15), 0);
    expect_open_fail(p, NULL, "not valid JSON");
    cr_assert_eq(tu_write_file(p, "{\"metadata\": {}}", 16), 0);
    expect_open_fail(p, NULL, "weight_map");
    const char *bad = "{\"weight_map\": {\"x\": 3}}";
    cr_assert_eq(tu_write_file(p, bad, strlen(bad)), 0);
    expect_open_fail(p, "x", "not a shard file name");
}

Test(sharded, bad_shard_names_the_shard) {
    tdir d = new_dir();
    make_sharded(&d, 1, NULL);
    char p[512];
    in_dir(p, sizeof p, &d, "model-00002-of-00002.safetensors");
    cr_assert_eq(tu_write_file(p, "abc", 3), 0);
    in_dir(p, sizeof p, &d, "model.safetensors.index.json");
    tensor_file *tf;
    lc_err err;
    cr_assert_eq(tensor_file_open(&tf, p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "model-00002-of-00002.safetensors");
    ASSERT_HAS(err.msg, "too short");
}

Test(directory, model_safetensors) {
    tdir d = new_dir();
    char p[512];
    in_dir(p, sizeof p, &d, "model.safetensors");
    write_simple(p, TW_SAFETENSORS, DT_F32);
    in_dir(p, sizeof p, &d, "adapter_model.safetensors"); /* lower priority */
    write_shard(p, "x", 1, "y", 2, NULL);
    tensor_file *tf = open_ok(d.dir);
    check_simple(tf, 0.0f);
    in_dir(p, sizeof p, &d, "model.safetensors");
    cr_assert_str_eq(tensor_file_path_of(tf, tensor_file_at(tf, 0)), p);
    tensor_file_free(tf);
}

Test(directory, adapter_model_safetensors) {
    tdir d = new_dir();
    char p[512];
    in_dir(p, sizeof p, &d, "adapter_model.safetensors");
    write_shard(p, "base_model.model.lora_A.weight", 1, "base_model.model.lora_B.weight",
                2, NULL);
    tensor_file *tf = open_ok(d.dir);
    cr_assert_eq(tensor_file_count(tf), 2);
    cr_assert_not_null(tensor_file_find(tf, "base_model.model.lora_B.weight"));
    tensor_file_free(tf);
}

Test(directory, empty_directory) {
    tdir d = new_dir();
    expect_open_fail(d.dir, NULL, "model.safetensors");
}

/* ---- HDF5 -------------------------------------------------------------- */

Test(hdf5, round_trip_data_and_metadata) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "m.h5");
    write_simple(path, TW_HDF5, DT_F32);
    cr_assert_eq(count_entries(d.dir), 1, "temporary file left behind");
    tensor_file *tf = open_ok(path);
    check_simple(tf, 0.0f); /* also checks insertion order is kept */
    const tensor_info *ti = tensor_file_find(tf, "model.layers.0.self_attn.q_proj.weight");
    cr_assert_eq(ti->dtype, DT_F32);
    cr_assert_eq(ti->ndim, 2);
    cr_assert(ti->shape[0] == 2 && ti->shape[1] == 3);
    cr_assert_str_eq(tensor_file_path_of(tf, ti), path);
    lc_err err;
    float buf[8];
    int64_t s64[1] = {64};
    cr_assert_eq(tensor_file_read_f32(tf, "model.norm.weight", 1, s64, buf, &err),
                 LC_FAIL);
    char want[1024];
    snprintf(want, sizeof want,
             "%s: tensor 'model.norm.weight': expected shape [64], found [4]", path);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(tensor_file_read_f32(tf, "nope", 0, NULL, buf, &err), LC_FAIL);
    snprintf(want, sizeof want, "%s: tensor 'nope' not found", path);
    cr_assert_str_eq(err.msg, want);
    tensor_file_free(tf);
}

Test(hdf5, scalar_and_empty) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "s.h5");
    tensor_writer *w = NULL;
    lc_err err;
    cr_assert_eq(tensor_writer_open(&w, path, TW_HDF5, &err), LC_OK);
    float s = -3.0f;
    int64_t s0[2] = {3, 0};
    cr_assert_eq(tensor_writer_add_f32(w, "scalar", 0, NULL, &s, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "empty", 2, s0, NULL, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 2);
    float out = 0;
    cr_assert_eq(tensor_file_read_f32(tf, "scalar", 0, NULL, &out, &err), LC_OK, "%s",
                 err.msg);
    cr_assert_eq(out, -3.0f);
    const tensor_info *ti = tensor_file_find(tf, "empty");
    cr_assert(ti && ti->ndim == 2 && ti->numel == 0 && ti->shape[0] == 3);
    cr_assert_eq(tensor_file_read_f32(tf, "empty", 2, s0, NULL, &err), LC_OK);
    tensor_file_free(tf);
}

/* An HDF5 file written with the C API the way other tools do: name-ordered
 * links, int32/int64/f64 datasets, fixed-length and variable-length string
 * attributes, a numeric attribute and a subgroup. */
static void make_foreign_h5(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hsize_t dims[1] = {3};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    int32_t i32[3] = {1, -2, 3};
    int64_t i64[3] = {5, (int64_t)1 << 33, -6};
    double f64[3] = {0.5, -1.25, 1e-8};
    hid_t ds = H5Dcreate2(f, "ids.i32", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, i32);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "ids.i64", H5T_STD_I64BE, sp, H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, i64);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "a.f64", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, f64);
    H5Dclose(ds);
    hid_t g = H5Gcreate2(f, "group", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Sclose(sp);

    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t fixed = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 5);
    H5Tset_strpad(fixed, H5T_STR_NULLPAD);
    hid_t a = H5Acreate2(f, "fixed", fixed, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed, "llama"); /* exactly 5 bytes, no terminator */
    H5Aclose(a);
    hid_t fixed2 = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed2, 16);
    H5Tset_strpad(fixed2, H5T_STR_NULLTERM);
    char buf16[16] = "short";
    a = H5Acreate2(f, "fixed_short", fixed2, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed2, buf16);
    H5Aclose(a);
    hid_t vl = H5Tcopy(H5T_C_S1);
    H5Tset_size(vl, H5T_VARIABLE);
    const char *v = "{\"hidden_size\": 64}";
    a = H5Acreate2(f, "config", vl, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, vl, &v);
    H5Aclose(a);
    int num = 7;
    a = H5Acreate2(f, "epoch", H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &num);
    H5Aclose(a);
    H5Tclose(vl);
    H5Tclose(fixed);
    H5Tclose(fixed2);
    H5Sclose(scalar);
    H5Fclose(f);
}

Test(hdf5, foreign_file_types_and_attributes) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "foreign.hdf5");
    make_foreign_h5(path);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 3); /* the subgroup is not a tensor */
    cr_assert_str_eq(tensor_file_at(tf, 0)->name, "a.f64"); /* name order */
    cr_assert_eq(tensor_file_find(tf, "ids.i64")->dtype, DT_I64);
    cr_assert_eq(tensor_file_find(tf, "ids.i32")->dtype, DT_I32);
    cr_assert_eq(tensor_file_find(tf, "a.f64")->dtype, DT_F64);
    cr_assert_str_eq(tensor_file_meta(tf, "fixed"), "llama");
    cr_assert_str_eq(tensor_file_meta(tf, "fixed_short"), "short");
    cr_assert_str_eq(tensor_file_meta(tf, "config"), "{\"hidden_size\": 64}");
    cr_assert_null(tensor_file_meta(tf, "epoch")); /* not a string */
    lc_err err;
    int32_t o[3];
    int64_t s3[1] = {3};
    cr_assert_eq(tensor_file_read_i32(tf, "ids.i32", 1, s3, o, &err), LC_OK, "%s",
                 err.msg);
    cr_assert(o[0] == 1 && o[1] == -2 && o[2] == 3);
    cr_assert_eq(tensor_file_read_i32(tf, "ids.i64", 1, s3, o, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "'ids.i64'");
    ASSERT_HAS(err.msg, "8589934592");
    double dd[3];
    float ff[3];
    cr_assert_eq(tensor_file_read_f64(tf, "a.f64", 1, s3, dd, &err), LC_OK, "%s",
                 err.msg);
    cr_assert(dd[0] == 0.5 && dd[1] == -1.25 && dd[2] == 1e-8);
    cr_assert_eq(tensor_file_read_f32(tf, "a.f64", 1, s3, ff, &err), LC_OK);
    cr_assert(ff[2] == 1e-8f);
    cr_assert_eq(tensor_file_read_f32(tf, "ids.i32", 1, s3, ff, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "not a float type");
    tensor_file_free(tf);
}

Test(hdf5, unsupported_dataset_type) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "u16.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {2};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, "weird", H5T_STD_U16LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    expect_open_fail(path, "weird", "unsupported HDF5 type");
}

Test(hdf5, corrupt_file) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "corrupt.h5");
    unsigned char buf[64] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n', 0xff, 0xff};
    cr_assert_eq(tu_write_file(path, buf, sizeof buf), 0);
    expect_open_fail(path, NULL, "cannot open as HDF5");
}

Test(hdf5, h5_name_without_signature) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "plain.h5");
    cr_assert_eq(tu_write_file(path, "not hdf5 at all", 15), 0);
    expect_open_fail(path, NULL, "not an HDF5 file");
}

Test(hdf5, h5dump_reads_written_file) {
    tu_require("test -x /usr/bin/h5dump", "/usr/bin/h5dump", "Debian's hdf5-tools");
    tdir d = new_dir();
    char path[512], cmd[1024];
    in_dir(path, sizeof path, &d, "dump.h5");
    write_simple(path, TW_HDF5, DT_F32);
    snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -H '%s' 2>&1", path);
    int st = -1;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "h5dump failed: %s", out ? out : "");
    ASSERT_HAS(out, "model.layers.0.self_attn.q_proj.weight");
    ASSERT_HAS(out, "H5T_IEEE_F32LE");
    ASSERT_HAS(out, "ATTRIBUTE \"format\"");
    free(out);
}

static void need_h5py(void) { tu_require_python("h5py, numpy", "Debian's python3-h5py"); }

Test(hdf5, h5py_reads_written_file) {
    need_h5py();
    tdir d = new_dir();
    char path[512], cmd[2048];
    in_dir(path, sizeof path, &d, "py.h5");
    write_simple(path, TW_HDF5, DT_F32);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py, sys\n"
             "f = h5py.File(sys.argv[1], 'r')\n"
             "d = f['model.layers.0.self_attn.q_proj.weight']\n"
             "assert d.shape == (2, 3), d.shape\n"
             "assert d.dtype == 'float32', d.dtype\n"
             "x = d[...]\n"
             "assert x[0, 1] == -2.5 and x[1, 2] == 5.5, x\n"
             "assert list(f.keys()) == sorted(f.keys())\n"
             "fmt = f.attrs['format']\n"
             "fmt = fmt.decode() if isinstance(fmt, bytes) else fmt\n"
             "assert fmt == 'pt', fmt\n"
             "print('ok')\n\" '%s' 2>&1",
             path);
    int st = -1;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "python failed: %s", out ? out : "");
    ASSERT_HAS(out, "ok");
    free(out);
}

Test(hdf5, reads_h5py_written_file) {
    need_h5py();
    tdir d = new_dir();
    char path[512], cmd[2048];
    in_dir(path, sizeof path, &d, "from_py.h5");
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py, numpy as np, sys\n"
             "f = h5py.File(sys.argv[1], 'w')\n"
             "f['model.norm.weight'] = np.arange(4, dtype=np.float32)\n"
             "f['half'] = np.array([1.5, -2.0, 65504.0], dtype=np.float16)\n"
             "f['ids'] = np.array([[1, 2], [3, 4]], dtype=np.int64)\n"
             "f.attrs['config'] = '{}'\n"
             "f.attrs['tag'] = np.bytes_(b'abc')\n"
             "f.attrs['lr'] = 0.5\n"
             "f.close()\n\" '%s' 2>&1",
             path);
    int st = -1;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "python failed: %s", out ? out : "");
    free(out);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 3);
    cr_assert_str_eq(tensor_file_meta(tf, "config"), "{}");
    cr_assert_str_eq(tensor_file_meta(tf, "tag"), "abc");
    cr_assert_null(tensor_file_meta(tf, "lr"));
    lc_err err;
    float v[4];
    int64_t s4[1] = {4}, s3[1] = {3}, s22[2] = {2, 2};
    cr_assert_eq(tensor_file_read_f32(tf, "model.norm.weight", 1, s4, v, &err), LC_OK,
                 "%s", err.msg);
    cr_assert(v[3] == 3.0f);
    cr_assert_eq(tensor_file_find(tf, "half")->dtype, DT_F16);
    cr_assert_eq(tensor_file_read_f32(tf, "half", 1, s3, v, &err), LC_OK, "%s", err.msg);
    cr_assert(v[0] == 1.5f && v[1] == -2.0f && v[2] == 65504.0f);
    int32_t ids[4];
    cr_assert_eq(tensor_file_read_i32(tf, "ids", 2, s22, ids, &err), LC_OK, "%s",
                 err.msg);
    cr_assert(ids[0] == 1 && ids[3] == 4);
    tensor_file_free(tf);
}

/* ---- writer errors ---------------------------------------------------- */

Test(writer, rejects_bad_requests) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "w.h5");
    tensor_writer *w = NULL;
    lc_err err;
    float v[2] = {1, 2};
    int64_t s2[1] = {2}, neg[1] = {-1};
    cr_assert_eq(tensor_writer_open(&w, path, TW_HDF5, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "a", 1, s2, v, DT_F16, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'a'");
    ASSERT_HAS(err.msg, path);
    cr_assert_eq(tensor_writer_add_f32(w, "x/y", 1, s2, v, DT_F32, &err), LC_FAIL);
    cr_assert_eq(tensor_writer_add_f32(w, "n", 1, neg, v, DT_F32, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "negative");
    cr_assert_eq(tensor_writer_add_f32(w, "n", 9, s2, v, DT_F32, &err), LC_FAIL);
    cr_assert_eq(tensor_writer_add_f32(w, "a", 1, s2, v, DT_F32, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "a", 1, s2, v, DT_F32, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "twice");
    cr_assert_eq(tensor_writer_meta(w, "k", "v", &err), LC_OK);
    cr_assert_eq(tensor_writer_meta(w, "k", "v2", &err), LC_FAIL);
    tensor_writer_abort(w);
    cr_assert_eq(count_entries(d.dir), 0, "abort must not write anything");

    in_dir(path, sizeof path, &d, "w.safetensors");
    cr_assert_eq(tensor_writer_open(&w, path, TW_SAFETENSORS, &err), LC_OK);
    cr_assert_eq(tensor_writer_add_f32(w, "__metadata__", 1, s2, v, DT_F32, &err),
                 LC_FAIL);
    cr_assert_eq(tensor_writer_add_f32(w, "i", 1, s2, v, DT_I32, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "I32");
    tensor_writer_abort(w);

    cr_assert_eq(tensor_writer_open(&w, "/nonexistent-dir-xyz/a.safetensors",
                                    TW_SAFETENSORS, &err),
                 LC_FAIL);
    cr_assert_null(w);
    ASSERT_HAS(err.msg, "/nonexistent-dir-xyz/a.safetensors");
}

Test(writer, replaces_existing_file_atomically) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "m.safetensors");
    cr_assert_eq(tu_write_file(path, "old", 3), 0);
    write_simple(path, TW_SAFETENSORS, DT_F32);
    cr_assert_eq(count_entries(d.dir), 1);
    tensor_file *tf = open_ok(path);
    check_simple(tf, 0.0f);
    tensor_file_free(tf);
    /* HDF5 over the same name (a different format) works too. */
    write_simple(path, TW_HDF5, DT_F32);
    tf = open_ok(path);
    check_simple(tf, 0.0f);
    tensor_file_free(tf);
    cr_assert_eq(count_entries(d.dir), 1);
}

Test(writer, empty_file_is_valid) {
    tdir d = new_dir();
    char path[512];
    in_dir(path, sizeof path, &d, "e.safetensors");
    tensor_writer *w = NULL;
    lc_err err;
    cr_assert_eq(tensor_writer_open(&w, path, TW_SAFETENSORS, &err), LC_OK);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    tensor_file *tf = open_ok(path);
    cr_assert_eq(tensor_file_count(tf), 0);
    tensor_file_free(tf);
}
