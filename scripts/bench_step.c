/* bench_step.c: times one LoRA training step of the C engine with random
 * weights, and measures this machine's sgemm peak.
 *
 *   bench_step --shape stories260k|stories15m|qwen2.5-0.5b|PATH/config.json
 *              [--batch 4] [--seq 256] [--rank 16] [--alpha 32] [--steps 3]
 *              [--warmup 1] [--peak GFLOPS] [--json]
 *   bench_step --sgemm-peak [--json]
 *
 * One step = zero the LoRA gradients, model_forward (loss over every
 * position, targets = next tokens), model_backward, and a plain SGD update
 * of the LoRA (A and B of all seven modules in every layer; B starts
 * non-zero so every backward product is real work). Reported: tokens/s
 * (B*T*steps / time), seconds per step split into forward / backward /
 * update, peak resident memory (VmHWM), the FLOPs of the step (formula in
 * step_flops below) and the GFLOP/s they run at. With --peak (the
 * --sgemm-peak result) the fraction of the machine's sgemm rate is printed.
 *
 * Threads: OpenBLAS follows OPENBLAS_NUM_THREADS, the engine's OpenMP
 * loops follow OMP_NUM_THREADS; both are printed.
 *
 * The qwen2.5-0.5b shape is read from ../shared/assets/hf-configs/
 * qwen2.5-0.5b/config.json (looked up from the working directory and from
 * the executable's location); without ../shared the same values are used
 * from a built-in copy and the output says so. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lc_time.h"
#include "loaders.h"
#include "model.h"


/* Peak resident set (VmHWM) in MiB, from /proc/self/status. */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double mb = -1.0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            mb = strtod(line + 6, NULL) / 1024.0; /* kB */
            break;
        }
    fclose(f);
    return mb;
}

/* CPU seconds (user + system) used by this process so far. */
static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return -1.0;
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---- shapes ----------------------------------------------------------- */

static void llama_defaults(model_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_type = ROPE_DEFAULT;
    c->tie_embeddings = 1;
    c->bos_id = 1, c->eos_id = 2;
}

/* Qwen2.5-0.5B's config.json values, used only when ../shared is absent. */
static void qwen05_builtin(model_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "qwen2");
    c->dim = 896, c->n_layers = 24, c->n_heads = 14, c->n_kv_heads = 2, c->head_dim = 64;
    c->hidden_dim = 4864, c->vocab_size = 151936, c->max_seq_len = 32768;
    c->norm_eps = 1e-6f, c->rope_theta = 1000000.0f, c->rope_type = ROPE_DEFAULT;
    c->tie_embeddings = 1, c->qkv_bias = 1;
    c->bos_id = 151643, c->eos_id = 151643;
}

static int config_from_file(const char *path, model_config *c, lc_err *err) {
    char *text = lc_read_file(path, NULL, err);
    if (!text) return LC_FAIL;
    int rc = hf_config_parse(text, path, c, err);
    free(text);
    return rc;
}

/* Resolves --shape; *src says where the numbers came from. */
static int shape_config(const char *shape, model_config *c, char *src, size_t nsrc, lc_err *err) {
    if (!strcmp(shape, "stories260k") || !strcmp(shape, "stories260K")) {
        llama_defaults(c);
        c->dim = 64, c->n_layers = 5, c->n_heads = 8, c->n_kv_heads = 4, c->head_dim = 8;
        c->hidden_dim = 172, c->vocab_size = 512, c->max_seq_len = 512;
        snprintf(src, nsrc, "built-in (llama2.c stories260K)");
        return model_config_validate(c, shape, err);
    }
    if (!strcmp(shape, "stories15m") || !strcmp(shape, "stories15M")) {
        llama_defaults(c);
        c->dim = 288, c->n_layers = 6, c->n_heads = 6, c->n_kv_heads = 6, c->head_dim = 48;
        c->hidden_dim = 768, c->vocab_size = 32000, c->max_seq_len = 256;
        snprintf(src, nsrc, "built-in (llama2.c stories15M)");
        return model_config_validate(c, shape, err);
    }
    if (!strcmp(shape, "qwen2.5-0.5b")) {
        const char *rel = "shared/assets/hf-configs/qwen2.5-0.5b/config.json";
        char cand[2][2048];
        int nc = 0;
        snprintf(cand[nc++], sizeof cand[0], "../%s", rel);
        char exe[1900];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            /* <repo>/<build>/bin/bench_step -> <repo>/../shared */
            for (int up = 0; up < 3; up++) {
                char *s = strrchr(exe, '/');
                if (s) *s = 0;
            }
            snprintf(cand[nc++], sizeof cand[0], "%.1900s/../%s", exe, rel);
        }
        for (int i = 0; i < nc; i++)
            if (access(cand[i], R_OK) == 0) {
                snprintf(src, nsrc, "%s", cand[i]);
                return config_from_file(cand[i], c, err);
            }
        qwen05_builtin(c);
        snprintf(src, nsrc, "built-in copy (../shared absent)");
        return model_config_validate(c, shape, err);
    }
    if (strstr(shape, ".json")) {
        snprintf(src, nsrc, "%s", shape);
        return config_from_file(shape, c, err);
    }
    return lc_errf(err, "--shape: unknown '%s' (expected stories260k, stories15m, qwen2.5-0.5b "
                   "or a path to a config.json)", shape);
}

/* ---- FLOPs of one step -------------------------------------------------- */

/* Multiply-add = 2 FLOPs; N = B*T rows; r = LoRA rank; for each of the seven
 * modules m with W (out_m, in_m), summed over the L layers:
 *   forward   base  2 N in out        LoRA  2 N r (in + out)   (x A^T, then B)
 *   backward  base  2 N in out (dx only: the base is frozen)
 *             LoRA  4 N r (in + out)  (dy B, dB = dy^T xA, dA = dlow^T x, dlow A)
 *   attention over the causal triangle, P = T (T + 1) / 2 (query, key)
 *             pairs per (batch, head): forward 4 B H P hd (Q K^T and P V),
 *             backward 8 B H P hd (dO V^T, dS K, dS^T Q, P^T dO). Work spent
 *             on masked pairs is not credited (ops.c skips the masked
 *             triangle beyond each 64-row block; a full-square kernel would
 *             do 2T/(T+1) times these FLOPs).
 *   classifier forward 2 N D V, backward 2 N D V (dx only).
 * Element-wise work (norms, RoPE, softmax, SwiGLU, biases) is not counted. */
typedef struct {
    double base_fwd, lora_fwd, attn_fwd, cls_fwd;
    double base_bwd, lora_bwd, attn_bwd, cls_bwd;
    double total;
} step_flops;

static step_flops count_flops(const model_config *c, int B, int T, int r) {
    step_flops f;
    memset(&f, 0, sizeof f);
    const double N = (double)B * T;
    for (int m = 0; m < MOD_COUNT; m++) {
        double in = module_in_dim(c, m), out = module_out_dim(c, m);
        f.base_fwd += 2 * N * in * out;
        f.lora_fwd += 2 * N * r * (in + out);
        f.base_bwd += 2 * N * in * out;
        f.lora_bwd += 4 * N * r * (in + out);
    }
    const double L = c->n_layers;
    const double sq = (double)B * c->n_heads * (T * (T + 1.0) / 2.0) * c->head_dim;
    f.base_fwd *= L, f.lora_fwd *= L, f.base_bwd *= L, f.lora_bwd *= L;
    f.attn_fwd = 4 * sq * L;
    f.attn_bwd = 8 * sq * L;
    f.cls_fwd = 2 * N * c->dim * (double)c->vocab_size;
    f.cls_bwd = f.cls_fwd;
    f.total = f.base_fwd + f.lora_fwd + f.attn_fwd + f.cls_fwd + f.base_bwd + f.lora_bwd +
              f.attn_bwd + f.cls_bwd;
    return f;
}

/* ---- sgemm peak --------------------------------------------------------- */

static void fill_rand(float *x, size_t n, lc_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = lc_rng_uniform(r) - 0.5f;
}

/* Best GFLOP/s of C = A B (n x n, row-major) over `reps` runs after one
 * warm-up run. */
static double sgemm_rate(int n, int reps) {
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)),
          *c = malloc(nn * sizeof(float));
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    lc_rng r;
    lc_rng_seed(&r, 1234);
    fill_rand(a, nn, &r);
    fill_rand(b, nn, &r);
    memset(c, 0, nn * sizeof(float));
    double best = 0.0;
    for (int i = 0; i <= reps; i++) {
        double t0 = lc_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double dt = lc_now_s() - t0, g = 2.0 * n * n * (double)n / dt * 1e-9;
        if (i > 0 && g > best) best = g;
    }
    free(a), free(b), free(c);
    return best;
}

static int run_sgemm_peak(int json) {
    const int sizes[] = {1024, 2048, 4096};
    const int reps[] = {10, 6, 3};
    double rate[3], best = 0.0;
    for (int i = 0; i < 3; i++) {
        rate[i] = sgemm_rate(sizes[i], reps[i]);
        if (rate[i] > best) best = rate[i];
    }
    if (json) {
        printf("{\"impl\": \"sgemm\", \"sgemm_peak_gflops\": %.2f, \"gflops_1024\": %.2f, \"gflops_2048\": %.2f, "
               "\"gflops_4096\": %.2f, \"openblas_threads\": %d, \"openblas_core\": \"%s\", "
               "\"cpu_s\": %.3f}\n",
               best, rate[0], rate[1], rate[2], openblas_get_num_threads(),
               openblas_get_corename(), cpu_seconds());
    } else {
        printf("sgemm (OpenBLAS %s, %d threads): 1024: %.1f  2048: %.1f  4096: %.1f GFLOP/s\n",
               openblas_get_corename(), openblas_get_num_threads(), rate[0], rate[1], rate[2]);
        printf("sgemm peak: %.1f GFLOP/s\n", best);
    }
    return 0;
}

/* ---- the step ----------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_step --shape stories260k|stories15m|qwen2.5-0.5b|PATH/config.json\n"
            "                  [--batch 4] [--seq 256] [--rank 16] [--alpha 32] [--steps 3]\n"
            "                  [--warmup 1] [--peak GFLOPS] [--json]\n"
            "       bench_step --sgemm-peak [--json]\n");
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > 1 << 20) {
        fprintf(stderr, "bench_step: %s needs an integer >= %d, found '%s'\n", flag, lo,
                v ? v : "(nothing)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv) {
    const char *shape = NULL;
    int B = 4, T = 256, rank = 16, steps = 3, warmup = 1, json = 0, peak_mode = 0;
    double alpha = 32.0, peak = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--shape") && v) shape = v, i++;
        else if (!strcmp(a, "--batch")) bad = parse_int(a, v, 1, &B), i++;
        else if (!strcmp(a, "--seq")) bad = parse_int(a, v, 1, &T), i++;
        else if (!strcmp(a, "--rank")) bad = parse_int(a, v, 1, &rank), i++;
        else if (!strcmp(a, "--steps")) bad = parse_int(a, v, 1, &steps), i++;
        else if (!strcmp(a, "--warmup")) bad = parse_int(a, v, 0, &warmup), i++;
        else if (!strcmp(a, "--alpha") && v) alpha = atof(v), i++;
        else if (!strcmp(a, "--peak") && v) peak = atof(v), i++;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--sgemm-peak")) peak_mode = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_step: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (peak_mode) return run_sgemm_peak(json);
    if (!shape) {
        usage(stderr);
        return 2;
    }

    lc_err err = {{0}};
    model_config cfg;
    char src[4096];
    if (shape_config(shape, &cfg, src, sizeof src, &err)) {
        fprintf(stderr, "bench_step: %s\n", err.msg);
        return 1;
    }
    if (cfg.max_seq_len < T) cfg.max_seq_len = T; /* random weights: any length is fine */

    model m;
    lora lr;
    model_acts *acts = NULL;
    if (model_init(&m, &cfg, &err)) goto fail_model;
    model_init_random(&m, 0.02f, 1);
    if (lora_init(&lr, &cfg, rank, (float)alpha, 0, MOD_MASK_ALL, NULL, &err)) goto fail_lora;
    lora_init_peft(&lr, &cfg, 2);
    {   /* non-zero B, so the step is a mid-training one */
        lc_rng r;
        lc_rng_seed(&r, 3);
        for (int s = 0; s < cfg.n_layers * MOD_COUNT; s++)
            if (lr.B[s])
                for (size_t i = 0; i < (size_t)rank * module_out_dim(&cfg, s % MOD_COUNT); i++)
                    lr.B[s][i] = 0.01f * lc_rng_normal(&r);
    }
    if (lora_enable_grad(&lr, &err)) goto fail_acts;
    adapter_set ad;
    memset(&ad, 0, sizeof ad);
    ad.loras[0] = &lr;
    ad.n_loras = 1;
    if (model_acts_init(&acts, &m, &ad, B, T, ACTS_BACKWARD, &err)) goto fail_acts;

    const int N = B * T;
    int *tokens = malloc(sizeof(int) * N), *targets = malloc(sizeof(int) * N);
    if (!tokens || !targets) {
        fprintf(stderr, "bench_step: out of memory\n");
        return 1;
    }
    {   /* random sequences of T+1 tokens: inputs = first T, targets = last T */
        lc_rng r;
        lc_rng_seed(&r, 4);
        for (int b = 0; b < B; b++) {
            int prev = (int)(lc_rng_u32(&r) % (uint32_t)cfg.vocab_size);
            for (int t = 0; t < T; t++) {
                int next = (int)(lc_rng_u32(&r) % (uint32_t)cfg.vocab_size);
                tokens[b * T + t] = prev;
                targets[b * T + t] = next;
                prev = next;
            }
        }
    }

    const float lr_sgd = 1e-4f;
    double t_fwd = 0, t_bwd = 0, t_upd = 0, t_all = 0, t_first = 0, t_best = 1e30;
    float loss = 0.0f;
    for (int it = 0; it < warmup + steps; it++) {
        double t0 = lc_now_s();
        memset(lr.grad, 0, sizeof(float) * lr.n_params);
        if (model_forward(&m, acts, tokens, targets, B, T, &loss, &err)) {
            fprintf(stderr, "bench_step: forward: %s\n", err.msg);
            return 1;
        }
        double t1 = lc_now_s();
        model_backward(&m, acts, 1.0f);
        double t2 = lc_now_s();
        for (size_t i = 0; i < lr.n_params; i++) lr.data[i] -= lr_sgd * lr.grad[i];
        double t3 = lc_now_s();
        if (it == 0) t_first = t3 - t0;
        if (it < warmup) continue;
        t_fwd += t1 - t0, t_bwd += t2 - t1, t_upd += t3 - t2, t_all += t3 - t0;
        if (t3 - t0 < t_best) t_best = t3 - t0;
    }

    const step_flops f = count_flops(&cfg, B, T, rank);
    const double sps = t_all / steps, toks = (double)N * steps / t_all;
    const double gflops = f.total / sps * 1e-9, rss = peak_rss_mb();
    /* model_forward also does the classifier's backward (the softmax
     * gradient and dx through the frozen head, chunk by chunk, so that the
     * (B*T, V) logits are never held): its FLOPs go with that call's time.
     * At the stories15M shape this is why the forward call takes about 3x
     * the backward one: 52 of the step's 68 GFLOP are in it. */
    const double fwd_flops = f.base_fwd + f.lora_fwd + f.attn_fwd + f.cls_fwd + f.cls_bwd;
    const double bwd_flops = f.total - fwd_flops;
    const double param_mb = m.n_params * 4.0 / 1048576.0;
    const double acts_mb = model_acts_bytes(acts) / 1048576.0;
    if (json) {
        printf("{\"impl\": \"c\", \"shape\": \"%s\", \"config_source\": \"%s\", \"batch\": %d, "
               "\"seq\": %d, \"rank\": %d, \"alpha\": %g, \"steps\": %d, \"warmup\": %d, "
               "\"omp_threads\": %d, \"openblas_threads\": %d, \"openblas_core\": \"%s\", "
               "\"n_params\": %zu, \"lora_params\": %zu, \"tok_s\": %.2f, \"s_per_step\": %.5f, "
               "\"fwd_s\": %.5f, \"bwd_s\": %.5f, \"update_s\": %.5f, \"first_step_s\": %.5f, "
               "\"best_step_s\": %.5f, "
               "\"flops_per_step\": %.6e, \"fwd_flops\": %.6e, \"bwd_flops\": %.6e, "
               "\"gflops\": %.2f, \"fwd_gflops\": %.2f, \"bwd_gflops\": %.2f, "
               "\"peak_rss_mb\": %.1f, \"param_mb\": %.1f, \"acts_mb\": %.1f, \"loss\": %.5f",
               shape, src, B, T, rank, alpha, steps, warmup, omp_get_max_threads(),
               openblas_get_num_threads(), openblas_get_corename(), m.n_params, lr.n_params, toks,
               sps, t_fwd / steps, t_bwd / steps, t_upd / steps, t_first, t_best, f.total, fwd_flops,
               bwd_flops, gflops, fwd_flops / (t_fwd / steps) * 1e-9,
               bwd_flops / (t_bwd / steps) * 1e-9, rss, param_mb, acts_mb, loss);
        if (peak > 0) printf(", \"sgemm_peak_gflops\": %.2f, \"frac_of_peak\": %.4f", peak,
                             gflops / peak);
        printf(", \"cpu_s\": %.3f}\n", cpu_seconds());
    } else {
        printf("shape %s (%s): dim %d, %d layers, %d/%d heads (hd %d), hidden %d, vocab %d%s%s\n",
               shape, src, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
               cfg.hidden_dim, cfg.vocab_size, cfg.tie_embeddings ? ", tied" : "",
               cfg.qkv_bias ? ", qkv bias" : "");
        printf("step: batch %d x %d, LoRA rank %d alpha %g on all 7 modules (%zu params); "
               "%d steps after %d warm-up; threads: OpenMP %d, OpenBLAS %d (%s)\n",
               B, T, rank, alpha, lr.n_params, steps, warmup, omp_get_max_threads(),
               openblas_get_num_threads(), openblas_get_corename());
        printf("  tokens/s        %10.1f\n", toks);
        printf("  s/step          %10.4f  (forward incl. classifier backward %.4f, backward %.4f, update %.4f; best %.4f; "
               "first %.4f)\n",
               sps, t_fwd / steps, t_bwd / steps, t_upd / steps, t_best, t_first);
        printf("  GFLOP/step      %10.2f  (base %.2f+%.2f, LoRA %.2f+%.2f, attention %.2f+%.2f, "
               "classifier %.2f+%.2f  fwd+bwd)\n",
               f.total * 1e-9, f.base_fwd * 1e-9, f.base_bwd * 1e-9, f.lora_fwd * 1e-9,
               f.lora_bwd * 1e-9, f.attn_fwd * 1e-9, f.attn_bwd * 1e-9, f.cls_fwd * 1e-9,
               f.cls_bwd * 1e-9);
        printf("  GFLOP/s         %10.2f  (forward incl. classifier backward %.2f, backward %.2f)\n", gflops,
               fwd_flops / (t_fwd / steps) * 1e-9, bwd_flops / (t_bwd / steps) * 1e-9);
        if (peak > 0) printf("  of sgemm peak   %9.1f %%  (peak %.1f GFLOP/s)\n", 100 * gflops / peak, peak);
        printf("  peak RSS        %10.1f MiB  (weights %.1f, activations %.1f)\n", rss, param_mb,
               acts_mb);
        printf("  loss            %10.4f\n", loss);
    }
    free(tokens);
    free(targets);
    model_acts_free(acts);
    lora_free(&lr);
    model_free(&m);
    return 0;

fail_acts:
    lora_free(&lr);
fail_lora:
    model_free(&m);
fail_model:
    fprintf(stderr, "bench_step: %s\n", err.msg);
    return 1;
}
