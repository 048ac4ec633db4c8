/* Quantized weights (kernels/quant.h):
 *  - row conversion bit-exact against llama.cpp's own libggml-base.so
 *    (ggml_quantize_chunk without an importance matrix, type traits
 *    to_float), bytes and float bits compared, on random rows and edge
 *    cases, and to_float on random bytes;
 *  - the SIMD matvec (AVX2 here) equals the reference bit for bit, and a
 *    batch equals single products;
 *  - matvec against a double-precision dot product on the dequantized
 *    weights, within a bound derived from the activation quantization;
 *  - the tile GEMMs against sgemm on the fully dequantized matrix;
 *  - bad input gets an error, not a crash;
 *  - NEON == reference on aarch64 (cross-compiled, run under qemu), and
 *    the aarch64 bytes equal the x86 ones. */
#include <criterion/criterion.h>
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "ops.h"
#include "quant.h"
#include "testutil.h"

static const int ALL_TYPES[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
#define N_ALL ((int)(sizeof ALL_TYPES / sizeof *ALL_TYPES))

/* ---- llama.cpp ---------------------------------------------------------- */

/* ggml.h's struct ggml_type_traits (the headers of the exact source the
 * library was built from are in tests/llamacpp/include after setup.sh). */
struct ggml_type_traits_v {
    const char *type_name;
    int64_t blck_size, blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    void (*to_float)(const void *x, float *y, int64_t k);
    void (*from_float_ref)(const float *x, void *y, int64_t k);
};
typedef const struct ggml_type_traits_v *(*traits_fn)(int type);
typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);

static traits_fn g_traits;
static quantize_chunk_fn g_quantize;

static void load_ggml(void) {
    if (g_traits) return;
    char path[1024];
    snprintf(path, sizeof path,
             "%s/tests/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
             tu_source_dir());
#if !defined(__x86_64__)
    cr_skip_test("SKIP: llama.cpp's prebuilt libraries are the linux-x64 build; this host is not x86-64");
#endif
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert(h, "cannot load %s (%s): run scripts/setup.sh", path, dlerror());
    g_traits = (traits_fn)dlsym(h, "ggml_get_type_traits");
    g_quantize = (quantize_chunk_fn)dlsym(h, "ggml_quantize_chunk");
    cr_assert(g_traits && g_quantize, "libggml-base.so lacks ggml_get_type_traits/ggml_quantize_chunk");
}

/* ---- inputs -------------------------------------------------------------- */

static lc_rng g_rng;

static float f32_of(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Edge-case rows of n values (n a multiple of 256), case k. */
static void edge_row(float *x, int n, int k) {
    for (int i = 0; i < n; i++) x[i] = lc_rng_normal(&g_rng);
    switch (k) {
    case 0: break;                                               /* N(0, 1) */
    case 1: memset(x, 0, sizeof(float) * n); break;              /* all zeros */
    case 2: for (int i = 0; i < n; i++) x[i] = -0.0f; break;     /* negative zeros */
    case 3: for (int i = 0; i < n; i++) x[i] *= 1e30f; break;    /* huge: scales overflow f16 */
    case 4: for (int i = 0; i < n; i++) x[i] *= 7e4f; break;     /* just above f16's max */
    case 5: for (int i = 0; i < n; i++) x[i] *= 1e-38f; break;   /* tiny: 1/d is infinite */
    case 6: for (int i = 0; i < n; i++) x[i] *= 1e-42f; break;   /* subnormal */
    case 7: for (int i = 0; i < n; i++) x[i] *= 1e-6f; break;    /* small: f16 subnormal scales */
    case 8: /* ties: in each block of 32 the largest is 127 and the rest k + 1/2 */
        for (int i = 0; i < n; i++) x[i] = (i % 32 == 0) ? 127.0f : (float)((i * 7) % 253 - 126) + 0.5f;
        break;
    case 9: /* ties for Q4_0 (x / d = k + 1/2 with d = -max/8) */
        for (int i = 0; i < n; i++) x[i] = (i % 32 == 0) ? -8.0f : (float)((i * 5) % 16 - 8) + 0.5f;
        break;
    case 10: /* constant blocks, one-sided blocks */
        for (int i = 0; i < n; i++) x[i] = (i / 64) % 2 ? 3.0f : fabsf(x[i]) + 1.0f;
        break;
    case 11: /* a single non-zero per super-block */
        memset(x, 0, sizeof(float) * n);
        for (int i = 0; i < n; i += 256) x[i + 17] = -2.5f;
        break;
    case 12: /* NaN and infinities in some blocks (ggml's behaviour reproduced) */
        x[3] = NAN, x[40] = INFINITY, x[300] = -INFINITY, x[301] = NAN;
        break;
    case 13: /* f16 boundary values */
        for (int i = 0; i < n; i++) x[i] = f32_of(0x477FE000u + (uint32_t)(i % 8192) * 2u) * (i & 1 ? 1 : -1);
        break;
    default: /* random bit patterns (any float, NaN payloads included) */
        for (int i = 0; i < n; i++) x[i] = f32_of(lc_rng_u32(&g_rng));
        break;
    }
}
#define N_EDGE 15

static const int CONV_TYPES[] = {QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};

Test(quant, conversion_bit_exact_vs_ggml) {
    load_ggml();
    lc_rng_seed(&g_rng, 7);
    const int n = 1024, rows = 2;
    float *x = malloc(sizeof(float) * n * rows), *a = malloc(sizeof(float) * n * rows),
          *b = malloc(sizeof(float) * n * rows);
    uint8_t *qa = malloc(4 * n * rows), *qb = malloc(4 * n * rows);
    for (size_t t = 0; t < sizeof CONV_TYPES / sizeof *CONV_TYPES; t++) {
        const int type = CONV_TYPES[t];
        const struct ggml_type_traits_v *tr = g_traits(type);
        cr_assert(tr->to_float, "ggml has no to_float for %s", qtype_name(type));
        const size_t rb = qtype_row_bytes(type, n);
        cr_assert_eq(rb, tr->type_size * (size_t)(n / tr->blck_size), "row bytes of %s", qtype_name(type));
        for (int k = 0; k < N_EDGE + 3; k++) {
            /* cases 14 and up are random bit patterns. For the K-quants
             * their NaNs are made the default quiet NaN: where two NaNs
             * meet in ggml's C (x + dm with both NaN) C does not say whose
             * payload survives (the compiler may swap the operands), and
             * ggml's nearest_int turns the payload into a quant */
            for (int r = 0; r < rows; r++) edge_row(x + r * n, n, k);
            if (k >= 14 && qtype_block(type) == 256)
                for (int i = 0; i < n * rows; i++)
                    if (isnan(x[i])) x[i] = f32_of(0x7fc00000u);
            memset(qa, 0xAB, rb * rows);
            memset(qb, 0xCD, rb * rows);
            size_t got = g_quantize(type, x, qb, 0, rows, n, NULL);
            cr_assert_eq(got, rb * rows);
            lc_err err;
            cr_assert_eq(qrow_from_f32(type, x, qa, (int64_t)n * rows, &err), LC_OK, "%s", err.msg);
            for (size_t i = 0; i < rb * rows; i++)
                cr_assert_eq(qa[i], qb[i], "%s case %d: byte %zu is %02x, ggml %02x", qtype_name(type), k, i,
                             qa[i], qb[i]);
            tr->to_float(qb, b, (int64_t)n * rows);
            cr_assert_eq(qrow_to_f32(type, qb, a, (int64_t)n * rows, &err), LC_OK, "%s", err.msg);
            cr_assert(!memcmp(a, b, sizeof(float) * n * rows), "%s case %d: dequantized floats differ",
                      qtype_name(type), k);
        }
        /* to_float on random bytes: any scale, any quant, NaN and inf scales */
        for (int rep = 0; rep < 8; rep++) {
            for (size_t i = 0; i < rb * rows; i++) qa[i] = (uint8_t)lc_rng_u32(&g_rng);
            tr->to_float(qa, b, (int64_t)n * rows);
            lc_err err;
            cr_assert_eq(qrow_to_f32(type, qa, a, (int64_t)n * rows, &err), LC_OK);
            cr_assert(!memcmp(a, b, sizeof(float) * n * rows), "%s random bytes: floats differ", qtype_name(type));
        }
    }
    /* every binary16 value, and f32 -> f16 / bf16 around every exponent */
    uint16_t h[65536];
    float f[65536], g[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    g_traits(QT_F16)->to_float(h, g, 65536);
    qrow_to_f32(QT_F16, h, f, 65536, NULL);
    cr_assert(!memcmp(f, g, sizeof f), "f16 -> f32 differs");
    for (int i = 0; i < 65536; i++) f[i] = f32_of((uint32_t)i << 16 | (lc_rng_u32(&g_rng) & 0xFFFF));
    uint16_t h2[65536];
    g_quantize(QT_F16, f, h, 0, 1, 65536, NULL);
    qrow_from_f32(QT_F16, f, h2, 65536, NULL);
    cr_assert(!memcmp(h, h2, sizeof h), "f32 -> f16 differs");
    g_quantize(QT_BF16, f, h, 0, 1, 65536, NULL);
    qrow_from_f32(QT_BF16, f, h2, 65536, NULL);
    cr_assert(!memcmp(h, h2, sizeof h), "f32 -> bf16 differs");
    free(x), free(a), free(b), free(qa), free(qb);
}

/* ---- matvec --------------------------------------------------------------- */

static void fill_normal(float *p, size_t n, float std) {
    for (size_t i = 0; i < n; i++) p[i] = std * lc_rng_normal(&g_rng);
}

/* column counts used for a type: two block multiples; float types also
 * get lengths that leave a tail after the last 32 lanes */
static int test_cols(int type, int k) {
    const int b = qtype_block(type);
    if (b == 256) return k ? 768 : 256;
    if (b == 32) return k ? 544 : 64;
    return k ? 291 : 512;
}

Test(quant, simd_matvec_equals_reference) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        cr_assert_str_eq(quant_path(), "avx2", "this CPU has AVX2 but the %s path is taken", quant_path());
    else
        cr_log_warn("no AVX2 on this CPU: the reference is compared with itself");
#endif
    lc_rng_seed(&g_rng, 11);
    for (int t = 0; t < N_ALL; t++)
        for (int k = 0; k < 2; k++) {
            const int type = ALL_TYPES[t], rows = 67, cols = test_cols(type, k), nb = 6; /* 4 at once, then 2 */
            float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * nb * cols);
            float *yr = malloc(sizeof(float) * nb * rows), *ys = malloc(sizeof(float) * nb * rows);
            float *y1 = malloc(sizeof(float) * rows), *bias = malloc(sizeof(float) * rows);
            fill_normal(w, (size_t)rows * cols, 0.05f);
            fill_normal(x, (size_t)nb * cols, 1.0f);
            fill_normal(bias, rows, 1.0f);
            for (int i = 0; i < cols; i++) x[i] *= (i % 97 == 0) ? 50.0f : 1.0f; /* outliers */
            memset(w + 3 * cols, 0, sizeof(float) * cols);                     /* a zero row */
            qmat m;
            lc_err err;
            cr_assert_eq(qmat_from_f32(&m, type, w, rows, cols, &err), LC_OK, "%s", err.msg);
            quant_force_ref(1);
            cr_assert_str_eq(quant_path(), "ref");
            cr_assert_eq(qmat_matvec_batch(&m, x, nb, bias, yr, 0, &err), LC_OK);
            quant_force_ref(0);
            cr_assert_eq(qmat_matvec_batch(&m, x, nb, bias, ys, 0, &err), LC_OK);
            for (int i = 0; i < nb * rows; i++)
                cr_assert(!memcmp(&yr[i], &ys[i], 4), "%s cols %d: y[%d] %.9g (ref) vs %.9g (%s)",
                          qtype_name(type), cols, i, yr[i], ys[i], quant_path());
            for (int b = 0; b < nb; b++) {
                for (int r = 0; r < rows; r++) y1[r] = 1.0f;
                cr_assert_eq(qmat_matvec(&m, x + (size_t)b * cols, bias, y1, 1, &err), LC_OK);
                for (int r = 0; r < rows; r++)
                    cr_assert_eq(y1[r], 1.0f + ys[(size_t)b * rows + r], "%s: accumulate", qtype_name(type));
            }
            /* a non-finite activation gives NaN outputs, never finite garbage */
            x[5] = INFINITY;
            cr_assert_eq(qmat_matvec(&m, x, NULL, y1, 0, &err), LC_OK);
            if (qtype_block(type) == 1) /* float rows: inf * w */
                cr_assert(!isfinite(y1[0]) && !isfinite(y1[rows - 1]), "%s: inf in x gave %g", qtype_name(type), y1[0]);
            else /* the block's scale is NaN */
                cr_assert(isnan(y1[0]) && isnan(y1[rows - 1]), "%s: inf in x gave %g", qtype_name(type), y1[0]);
            qmat_free(&m);
            free(w), free(x), free(yr), free(ys), free(y1), free(bias);
        }
}

/* y = W x against a double dot on the dequantized W and the exact x.
 * Bound per row: the activation quantization error (|x - dq(x)| <= d/2
 * per element, d = amax_block/127) times |w|, plus float accumulation
 * 2^-21 * sum |w x| (more than n * eps for n <= 32 lane sums of any
 * length used here). */
Test(quant, matvec_vs_double_on_dequantized) {
    lc_rng_seed(&g_rng, 12);
    for (int t = 0; t < N_ALL; t++) {
        const int type = ALL_TYPES[t], rows = 50, cols = test_cols(type, 1);
        const int bs = qtype_block(type) == 1 ? 0 : qtype_block(type) == 32 ? 32 : 256;
        float *w = malloc(sizeof(float) * rows * cols), *dq = malloc(sizeof(float) * rows * cols);
        float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
        fill_normal(w, (size_t)rows * cols, 0.05f);
        fill_normal(x, cols, 1.0f);
        qmat m;
        lc_err err;
        cr_assert_eq(qmat_from_f32(&m, type, w, rows, cols, &err), LC_OK);
        cr_assert_eq(qmat_to_f32(&m, dq, &err), LC_OK);
        cr_assert_eq(qmat_matvec(&m, x, NULL, y, 0, &err), LC_OK);
        double worst = 0;
        for (int r = 0; r < rows; r++) {
            double exact = 0, absum = 0, qerr = 0;
            for (int c = 0; c < cols; c++) {
                const double wv = dq[(size_t)r * cols + c];
                exact += wv * x[c];
                absum += fabs(wv * x[c]);
                if (bs) {
                    double amax = 0;
                    for (int i = c / bs * bs; i < c / bs * bs + bs; i++) amax = fmax(amax, fabs(x[i]));
                    qerr += fabs(wv) * amax / 254.0 * 1.0001;
                }
            }
            const double bound = qerr + absum * 0x1p-21;
            const double e = fabs(y[r] - exact);
            cr_assert(e <= bound, "%s row %d: |y - exact| = %g > bound %g", qtype_name(type), r, e, bound);
            worst = fmax(worst, e / bound);
        }
        cr_log_info("%s: worst |y - exact| / bound = %.3f", qtype_name(type), worst);
        qmat_free(&m);
        free(w), free(dq), free(x), free(y);
    }
}

/* ---- GEMMs ------------------------------------------------------------------ */

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Both GEMMs against cblas_sgemm on the fully dequantized matrix. With
 * more rows than one tile holds (QMAT_TILE_FLOATS / cols), the tiles
 * split Y's columns (xwt: the same dot products, but sgemm's kernel choice depends on the
 * shape)
 * and dX's sum over rows (dyw: summed tile by tile). Bound, both: the
 * difference is at most 2^-20 * max over outputs of sum |a b| of that
 * output's dot product (a few float roundings of the largest term). */
Test(quant, tile_gemms_vs_dequantized_sgemm) {
    lc_rng_seed(&g_rng, 13);
    for (int t = 0; t < N_ALL; t++) {
        const int type = ALL_TYPES[t], cols = test_cols(type, 0) == 64 ? 320 : 512;
        const int rows = (int)(QMAT_TILE_FLOATS / cols) * 2 + 37, N = 45;
        float *w = malloc(sizeof(float) * rows * cols), *dq = malloc(sizeof(float) * rows * cols);
        float *X = malloc(sizeof(float) * N * cols), *dY = malloc(sizeof(float) * N * rows);
        float *Y1 = malloc(sizeof(float) * N * rows), *Y2 = malloc(sizeof(float) * N * rows);
        float *dX1 = malloc(sizeof(float) * N * cols), *dX2 = malloc(sizeof(float) * N * cols);
        float *bias = malloc(sizeof(float) * rows);
        fill_normal(w, (size_t)rows * cols, 0.05f);
        fill_normal(X, (size_t)N * cols, 1.0f);
        fill_normal(dY, (size_t)N * rows, 1.0f);
        fill_normal(bias, rows, 1.0f);
        qmat m;
        lc_err err;
        cr_assert_eq(qmat_from_f32(&m, type, w, rows, cols, &err), LC_OK);
        cr_assert_eq(qmat_to_f32(&m, dq, &err), LC_OK);
        cr_assert_eq(qmat_gemm_xwt(&m, X, N, bias, Y1, 0, &err), LC_OK);
        matmul_forward(Y2, X, dq, bias, N, cols, rows, 0);
        double sx = 0, sw = 0;
        for (int i = 0; i < N * cols; i++) sx = fmax(sx, fabs(X[i]));
        for (int i = 0; i < rows * cols; i++) sw = fmax(sw, fabs(dq[i]));
        const double bx = 0x1p-20 * cols * sx * sw;
        const double ex = max_abs_diff(Y1, Y2, (size_t)N * rows);
        cr_assert(ex <= bx, "%s xwt: max diff %g > %g", qtype_name(type), ex, bx);
        for (int i = 0; i < N * cols; i++) dX1[i] = dX2[i] = 0.25f;
        cr_assert_eq(qmat_gemm_dyw(&m, dY, N, dX1, &err), LC_OK);
        matmul_backward_input(dX2, dY, dq, N, cols, rows);
        double sy = 0;
        for (int i = 0; i < N * rows; i++) sy = fmax(sy, fabs(dY[i]));
        const double bd = 0x1p-20 * rows * sy * sw;
        const double ed = max_abs_diff(dX1, dX2, (size_t)N * cols);
        cr_assert(ed <= bd, "%s dyw: max diff %g > %g", qtype_name(type), ed, bd);
        cr_log_info("%s: xwt max diff %g (bound %g), dyw %g (bound %g)", qtype_name(type), ex, bx, ed, bd);
        qmat_free(&m);
        free(w), free(dq), free(X), free(dY), free(Y1), free(Y2), free(dX1), free(dX2), free(bias);
    }
}

/* ---- bad input ------------------------------------------------------------------ */

Test(quant, bad_input_is_an_error) {
    lc_err err;
    float x[64] = {0}, y[4];
    uint8_t buf[256];
    cr_assert_eq(qrow_from_f32(QT_Q8_0, x, buf, 33, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "Q8_0") && strstr(err.msg, "33"), "%s", err.msg);
    cr_assert_eq(qrow_to_f32(QT_Q4_K, buf, x, 64, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "Q4_K") && strstr(err.msg, "256"), "%s", err.msg);
    cr_assert_eq(qrow_to_f32(QT_Q4_0, buf, x, 0, &err), LC_FAIL);
    cr_assert_eq(qrow_to_f32(3, buf, x, 32, &err), LC_FAIL); /* GGML's Q4_1: not supported */
    cr_assert(strstr(err.msg, "unknown weight type id 3"), "%s", err.msg);
    cr_assert_eq(qrow_from_f32(99, x, buf, 32, &err), LC_FAIL);
    cr_assert_eq(qrow_from_f32(-1, x, buf, 32, &err), LC_FAIL);
    qmat m;
    cr_assert_eq(qmat_view(&m, QT_Q6_K, 4, 100, buf, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "Q6_K"), "%s", err.msg);
    cr_assert_eq(qmat_view(&m, QT_Q8_0, 0, 32, buf, &err), LC_FAIL);
    cr_assert_eq(qmat_view(&m, QT_Q8_0, 2, 32, NULL, &err), LC_FAIL);
    cr_assert_eq(qmat_from_f32(&m, 7, x, 2, 32, &err), LC_FAIL);
    qmat bad = {.type = 42, .rows = 1, .cols = 32, .row_bytes = 34, .data = buf};
    cr_assert_eq(qmat_matvec(&bad, x, NULL, y, 0, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "unknown weight type id 42"), "%s", err.msg);
    cr_assert_eq(qmat_gemm_xwt(&bad, x, 1, NULL, y, 0, &err), LC_FAIL);
    cr_assert_eq(qmat_gemm_dyw(&bad, x, 1, y, &err), LC_FAIL);
    cr_assert_eq(qmat_to_f32(&bad, x, &err), LC_FAIL);
    qmat wrong_stride = {.type = QT_Q8_0, .rows = 1, .cols = 32, .row_bytes = 32, .data = buf};
    cr_assert_eq(qmat_matvec(&wrong_stride, x, NULL, y, 0, &err), LC_FAIL);
    cr_assert_eq(qmat_matvec(NULL, x, NULL, y, 0, &err), LC_FAIL);
}

/* ---- aarch64 ---------------------------------------------------------------------- */

static char *run(const char *cmd, int *st) {
    char *out = tu_capture(cmd, st);
    cr_assert(out, "cannot run %s", cmd);
    return out;
}

/* Everything but the last line ("path ...: ..."). */
static void strip_path_line(char *s) {
    char *p = strstr(s, "path ");
    if (p) *p = 0;
}

Test(quant, neon_equals_reference_under_qemu, .timeout = 600) {
#if !defined(__x86_64__)
    cr_skip_test("SKIP: the aarch64 cross check runs from an x86-64 host");
#endif
    const char *src = tu_source_dir(), *dir = tu_tmpdir();
    int st;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null");
    cr_assert_eq(tu_system(cmd), 0,
                 "aarch64-linux-gnu-gcc or qemu-aarch64 missing (scripts/setup.sh installs "
                 "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)");
    const char *srcs = "kernels/quant.c kernels/quant_avx2.c kernels/quant_neon.c kernels/base/lc_err.c "
                       "tests/quant_check.c";
    snprintf(cmd, sizeof cmd,
             "cd %s && aarch64-linux-gnu-gcc -std=gnu11 -O2 -fopenmp -Wall -Ikernels -Ikernels/base %s -o %s/qc_arm -lm 2>&1",
             src, srcs, dir);
    char *out = run(cmd, &st);
    cr_assert_eq(st, 0, "cross compile failed: %s", out);
    free(out);
    /* native, without -march: the AVX2 path is still taken (run-time dispatch) */
    snprintf(cmd, sizeof cmd, "cd %s && cc -std=gnu11 -O2 -fopenmp -Wall -Ikernels -Ikernels/base %s -o %s/qc_x86 -lm 2>&1",
             src, srcs, dir);
    out = run(cmd, &st);
    cr_assert_eq(st, 0, "native compile failed: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 qemu-aarch64 -L /usr/aarch64-linux-gnu %s/qc_arm 2>&1", dir);
    char *arm = run(cmd, &st);
    cr_assert_eq(st, 0, "aarch64 check failed:\n%s", arm);
    cr_assert(strstr(arm, "path neon: simd == reference"), "%s", arm);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s/qc_x86 2>&1", dir);
    char *x86 = run(cmd, &st);
    cr_assert_eq(st, 0, "x86 check failed:\n%s", x86);
    cr_log_info("aarch64:\n%s", arm);
    strip_path_line(arm);
    strip_path_line(x86);
    cr_assert_str_eq(arm, x86, "aarch64 and x86 disagree:\n%s\nvs\n%s", arm, x86);
    free(arm), free(x86);
}
