/* The engine against an independent float64 PyTorch reference
 * (scripts/torch_ref.py, written by hand from the architecture definition).
 *
 * The script writes tiny random models in the Hugging Face layout (config.json
 * + safetensors, F32 / BF16 / F16, single or sharded), PEFT LoRAs and
 * calibration files, and a float64 dump of logits, loss and gradients. We load
 * those files with the project's own loaders and compare:
 *   logits           normwise relative error <= 1e-4
 *   loss             relative error          <= 1e-5
 *   every gradient   normwise relative error <= 1e-3
 * (normwise: max|c - r| / max|r| over the tensor).
 * Cases: Llama with GQA and two weighted LoRAs on all seven modules (the second
 * with learned-merge coefficients per (layer, module), lora.coef, whose
 * gradient gcoef is compared too) + LC + LC++ shared; Qwen2 with q/k/v
 * biases, tied classifier, LoRA with coefficients on a layer and module
 * subset (gcoef 0 where not adapted), LC and LC++ per layer, and every
 * base-weight gradient (full training); Llama-3
 * rope scaling with explicit head_dim, BF16 sharded weights, negative LoRA
 * weight; Mistral-like multi-query with F16 weights. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loaders.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"

#define TOL_LOGITS 1e-4
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-3

/* The cases, written once into the build folder's test cache and shared by
 * the four tests (each runs in its own process) and by later runs; a new
 * torch_ref.py or torch install makes them again. */
static const char *cases_dir(void) {
    char script[1024], cmd[2048];
    snprintf(script, sizeof script, "%s/scripts/torch_ref.py", tu_source_dir());
    const char *inputs[] = {script, "/usr/lib/python3/dist-packages/torch/version.py", NULL};
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' cases", script);
    return tu_cached_fixture("torch_ref_cases", inputs, cmd,
                             "Debian's python3-torch and python3-numpy (scripts/setup.sh)");
}

typedef struct {
    tensor_file *ref;
    int n_checked;
    double worst;
} cmp_ctx;

static void compare_grad(cmp_ctx *cx, const char *name, const float *grad, size_t n) {
    const tensor_info *ti = tensor_file_find(cx->ref, name);
    cr_assert_not_null(ti, "reference has no tensor '%s'", name);
    cr_assert_eq((size_t)ti->numel, n, "%s: %lld reference values, %zu in C", name,
                 (long long)ti->numel, n);
    double *r = malloc(sizeof(double) * n);
    lc_err err;
    cr_assert_eq(tensor_file_read_f64(cx->ref, name, 0, NULL, r, &err), LC_OK, "%s", err.msg);
    double e = tu_rel_err_f32_f64(grad, r, n);
    cr_assert_lt(e, TOL_GRAD, "%s: relative error %.3g > %g", name, e, TOL_GRAD);
    free(r);
    if (e > cx->worst) cx->worst = e;
    cx->n_checked++;
}

static int model_grad_fn(const char *name, int ndim, const int64_t *shape, float *data,
                         float *grad, void *ctx) {
    char full[300];
    snprintf(full, sizeof full, "grad.model.%s", name);
    compare_grad(ctx, full, grad, (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1));
    return 0;
}

static void run_case(const char *name) {
    const char *dir = cases_dir();
    char path[1024];
    lc_err err = {{0}};

    snprintf(path, sizeof path, "%s/%s/case.json", dir, name);
    char *text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cJSON *cj = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(cj);
    int B = cJSON_GetObjectItem(cj, "B")->valueint, T = cJSON_GetObjectItem(cj, "T")->valueint;
    int full = cJSON_IsTrue(cJSON_GetObjectItem(cj, "full_grad"));

    model m;
    snprintf(path, sizeof path, "%s/%s/model", dir, name);
    cr_assert_eq(model_load(&m, path, &err), LC_OK, "%s", err.msg);
    if (full) cr_assert_eq(model_enable_grad(&m, &err), LC_OK);

    adapter_set ad = {0};
    lora loras[4];
    calib cals[4];
    cJSON *jl = cJSON_GetObjectItem(cj, "loras"), *jc = cJSON_GetObjectItem(cj, "calibs");
    for (int i = 0; i < cJSON_GetArraySize(jl); i++) {
        cJSON *e = cJSON_GetArrayItem(jl, i);
        snprintf(path, sizeof path, "%s/%s/%s", dir, name, cJSON_GetObjectItem(e, "path")->valuestring);
        cr_assert_eq(lora_load(&loras[i], &m.cfg, path, &err), LC_OK, "%s", err.msg);
        loras[i].weight = (float)cJSON_GetObjectItem(e, "weight")->valuedouble;
        cr_assert_eq(lora_enable_grad(&loras[i], &err), LC_OK);
        /* learned-merge coefficients c (L, 7), trainable */
        char cpath[1100];
        snprintf(cpath, sizeof cpath, "%s/coef.safetensors", path);
        if (access(cpath, F_OK) == 0) {
            tensor_file *tc;
            int64_t shape[2] = {loras[i].n_layers, MOD_COUNT};
            cr_assert_eq(tensor_file_open(&tc, cpath, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(lora_enable_coef(&loras[i], 1.0f, 1, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(tensor_file_read_f32(tc, "coef", 2, shape, loras[i].coef, &err), LC_OK, "%s",
                         err.msg);
            cr_assert_not_null(loras[i].gcoef);
            tensor_file_free(tc);
        }
        ad.loras[ad.n_loras++] = &loras[i];
    }
    for (int i = 0; i < cJSON_GetArraySize(jc); i++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, name, cJSON_GetArrayItem(jc, i)->valuestring);
        cr_assert_eq(calib_load(&cals[i], &m.cfg, path, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(calib_enable_grad(&cals[i], &err), LC_OK);
        ad.cals[ad.n_cals++] = &cals[i];
    }

    cmp_ctx cx = {0};
    snprintf(path, sizeof path, "%s/%s/ref.safetensors", dir, name);
    cr_assert_eq(tensor_file_open(&cx.ref, path, &err), LC_OK, "%s", err.msg);
    int64_t bt[2] = {B, T};
    int *tokens = malloc(sizeof(int) * B * T), *targets = malloc(sizeof(int) * B * T);
    cr_assert_eq(tensor_file_read_i32(cx.ref, "tokens", 2, bt, tokens, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_file_read_i32(cx.ref, "targets", 2, bt, targets, &err), LC_OK, "%s", err.msg);

    model_acts *a;
    cr_assert_eq(model_acts_init(&a, &m, &ad, B, T, ACTS_BACKWARD | ACTS_KEEP_LOGITS, &err), LC_OK,
                 "%s", err.msg);
    float loss;
    cr_assert_eq(model_forward(&m, a, tokens, targets, B, T, &loss, &err), LC_OK, "%s", err.msg);
    model_backward(&m, a, 1.0f);

    size_t nl = (size_t)B * T * m.cfg.vocab_size;
    double *rl = malloc(sizeof(double) * nl), rloss;
    cr_assert_eq(tensor_file_read_f64(cx.ref, "logits", 0, NULL, rl, &err), LC_OK, "%s", err.msg);
    double el = tu_rel_err_f32_f64(model_acts_logits(a), rl, nl);
    cr_assert_lt(el, TOL_LOGITS, "%s: logits relative error %.3g", name, el);
    cr_assert_eq(tensor_file_read_f64(cx.ref, "loss", 0, NULL, &rloss, &err), LC_OK, "%s", err.msg);
    cr_assert_lt(fabs(loss - rloss) / rloss, TOL_LOSS, "%s: loss %.8f vs %.8f", name, loss, rloss);

    compare_grad(&cx, "grad.input_embeddings", model_acts_demb(a), (size_t)B * T * m.cfg.dim);
    char tn[256], full_name[300];
    int n_coef = 0;
    for (int i = 0; i < ad.n_loras; i++) {
        lora *l = &loras[i];
        for (int layer = 0; layer < l->n_layers; layer++)
            for (int mo = 0; mo < MOD_COUNT; mo++) {
                int s = layer * MOD_COUNT + mo;
                if (!l->A[s]) continue;
                for (int isb = 0; isb < 2; isb++) {
                    lora_tensor_name(tn, sizeof tn, layer, mo, isb);
                    snprintf(full_name, sizeof full_name, "grad.lora%d.%s", i, tn);
                    size_t n = (size_t)l->rank * (isb ? module_out_dim(&m.cfg, mo) : module_in_dim(&m.cfg, mo));
                    compare_grad(&cx, full_name, isb ? l->gB[s] : l->gA[s], n);
                }
            }
        snprintf(full_name, sizeof full_name, "grad.lora%d.coef", i);
        cr_assert_eq(tensor_file_find(cx.ref, full_name) != NULL, l->gcoef != NULL,
                     "%s: reference %s '%s' but the LoRA %s coefficients", name,
                     l->gcoef ? "lacks" : "has", full_name, l->gcoef ? "has" : "has no");
        if (l->gcoef) {
            compare_grad(&cx, full_name, l->gcoef, (size_t)l->n_layers * MOD_COUNT);
            n_coef++;
        }
    }
    for (int i = 0; i < ad.n_cals; i++) {
        calib *cb = &cals[i];
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            if (!(cb->module_mask >> mo & 1)) continue;
            size_t in = module_in_dim(&m.cfg, mo), out = module_out_dim(&m.cfg, mo);
            /* per-layer tensors are contiguous (L, ...) starting at slot 0 */
            if (cb->kind == CALIB_BIAS) {
                calib_tensor_name(tn, sizeof tn, mo, "bias");
                snprintf(full_name, sizeof full_name, "grad.calib%d.%s", i, tn);
                compare_grad(&cx, full_name, cb->gp[mo], cb->n_slots * out);
            } else {
                calib_tensor_name(tn, sizeof tn, mo, "P1");
                snprintf(full_name, sizeof full_name, "grad.calib%d.%s", i, tn);
                compare_grad(&cx, full_name, cb->gP1[mo], cb->n_slots * cb->rank * in);
                calib_tensor_name(tn, sizeof tn, mo, "P2");
                snprintf(full_name, sizeof full_name, "grad.calib%d.%s", i, tn);
                compare_grad(&cx, full_name, cb->gP2[mo], cb->n_slots * cb->rank * out);
            }
        }
    }
    if (full) model_for_each_tensor(&m, model_grad_fn, &cx);
    fprintf(stderr, "reference %s: logits rel err %.2g, loss %.8f vs %.8f, %d gradient tensors (%d LoRA coefficient sets), worst rel err %.2g\n", name, el, loss, rloss, cx.n_checked, n_coef, cx.worst);
    cr_assert_gt(cx.n_checked, 5);

    free(rl);
    free(tokens);
    free(targets);
    model_acts_free(a);
    tensor_file_free(cx.ref);
    for (int i = 0; i < ad.n_loras; i++) lora_free(&loras[i]);
    for (int i = 0; i < ad.n_cals; i++) calib_free(&cals[i]);
    model_free(&m);
    cJSON_Delete(cj);
}

Test(reference, llama_gqa_two_loras_lc_lcpp_shared, .timeout = 300) { run_case("llama_gqa"); }
Test(reference, qwen2_tied_bias_per_layer_full_grad, .timeout = 300) { run_case("qwen2_tied"); }
Test(reference, llama3_rope_bf16_sharded, .timeout = 300) { run_case("llama3_rope"); }
Test(reference, mistral_mqa_f16, .timeout = 300) { run_case("mistral_f16"); }
