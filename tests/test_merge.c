/* The LoRA merge methods (kernels/merge.c) against an independent
 * float64 PyTorch implementation of calibrate/MERGING.md
 * (scripts/merge_ref.py, written from the spec, not from the C).
 *
 * The script writes a tiny random Llama (module shapes all different), three
 * PEFT LoRAs (ranks 2/4/2, one rsLoRA, one on a subset of modules and
 * layers, one without `down`, so "a missing adapter counts as zero" is
 * exercised), cases.json and, per case, the expected delta of every adapted
 * (layer, module). We load the same files with the project's loaders and
 * compare:
 *   merge_module_delta   every case, every (layer, module):
 *                        max|c - r| <= 1e-9 (1 + max|r|); with svd_rank
 *                        (svd, ties/dare_* -> rank-R products) 1e-6 max|r|,
 *                        and ties/dare_* again without svd_rank at 1e-9
 *   merge_to_lora        LoRA-form cases: scale * weight * B A vs the
 *                        expected product, <= 1e-5 max|r| (float32 factors)
 *   merge_into_model     every case: W' - W of a model_clone equals the delta
 *                        up to float32 rounding of W + delta; nothing else moves
 *   forward              base + concat LoRA == base + the three LoRAs at run
 *                        time == merged `linear` copy (logits 1e-4 rel)
 *   merge_spec_validate  bad density, svd_rank, slerp arity, lorahub ranks:
 *                        LC_FAIL with a message naming the key.
 * Without Debian's python3-torch the tests fail, naming the package. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"

#define TOL_EXACT 1e-9 /* float64 arithmetic on the same float32 inputs */
#define TOL_SVD 1e-6   /* LAPACK vs torch SVD, relative */
#define TOL_F32 1e-5   /* factors stored as float32 */
#define TOL_LOGITS 1e-4

#define N_LORAS 3

typedef struct {
    char dir[512];
    model_config cfg;
    lora loras[N_LORAS];
    cJSON *root, *cases;
} fixture;

static void fixture_load(fixture *fx) {
    lc_err err = {{0}};
    /* made once into the build folder's test cache, shared by the tests
     * (one process each) and later runs; remade when merge_ref.py,
     * torch_ref.py or torch changes */
    char script[1024], helpers[1024], cmd[2048], path[1024];
    snprintf(script, sizeof script, "%s/scripts/merge_ref.py", tu_source_dir());
    snprintf(helpers, sizeof helpers, "%s/scripts/torch_ref.py", tu_source_dir());
    const char *inputs[] = {script, helpers, "/usr/lib/python3/dist-packages/torch/version.py",
                            NULL};
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s'", script);
    snprintf(fx->dir, sizeof fx->dir, "%s",
             tu_cached_fixture("merge_ref", inputs, cmd,
                               "Debian's python3-torch and python3-numpy (scripts/setup.sh)"));

    snprintf(path, sizeof path, "%s/model/config.json", fx->dir);
    char *text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cr_assert_eq(hf_config_parse(text, path, &fx->cfg, &err), LC_OK, "%s", err.msg);
    free(text);
    for (int i = 0; i < N_LORAS; i++) {
        snprintf(path, sizeof path, "%s/lora%d", fx->dir, i);
        cr_assert_eq(lora_load(&fx->loras[i], &fx->cfg, path, &err), LC_OK, "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/cases.json", fx->dir);
    text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    fx->root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(fx->root, "%s: not JSON", path);
    fx->cases = cJSON_GetObjectItem(fx->root, "cases");
    cr_assert(cJSON_IsArray(fx->cases) && cJSON_GetArraySize(fx->cases) >= 10);
    cr_assert_eq(cJSON_GetObjectItem(fx->root, "n_layers")->valueint, fx->cfg.n_layers);
}

static void fixture_free(fixture *fx) {
    for (int i = 0; i < N_LORAS; i++) lora_free(&fx->loras[i]);
    cJSON_Delete(fx->root);
}

/* One case of cases.json as a merge_spec plus its adapters. */
typedef struct {
    const char *name;
    merge_spec spec;
    lora *ls[ADAPTER_MAX];
    int n;
    float *coef[ADAPTER_MAX];
    tensor_file *exp;
} mcase;

static const char *jstr(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsString(v), "cases.json: '%s' is not a string", k);
    return v->valuestring;
}

static double jnum(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "cases.json: '%s' is not a number", k);
    return v->valuedouble;
}

static void case_load(fixture *fx, cJSON *jc, mcase *mc) {
    memset(mc, 0, sizeof *mc);
    mc->name = jstr(jc, "name");
    const char *meth = jstr(jc, "method");
    int mi = -1;
    for (int k = 0; MERGE_NAMES[k]; k++)
        if (!strcmp(MERGE_NAMES[k], meth)) mi = k;
    cr_assert_geq(mi, 0, "%s: unknown method '%s'", mc->name, meth);
    merge_spec_default(&mc->spec, (merge_method)mi);
    cJSON *ad = cJSON_GetObjectItem(jc, "adapters"), *w = cJSON_GetObjectItem(jc, "weights");
    mc->n = cJSON_GetArraySize(ad);
    cr_assert_eq(cJSON_GetArraySize(w), mc->n);
    for (int i = 0; i < mc->n; i++) {
        int idx = cJSON_GetArrayItem(ad, i)->valueint;
        cr_assert(idx >= 0 && idx < N_LORAS);
        mc->ls[i] = &fx->loras[idx];
        mc->spec.weights[i] = cJSON_GetArrayItem(w, i)->valuedouble;
    }
    mc->spec.density = jnum(jc, "density");
    mc->spec.lambda = jnum(jc, "lambda");
    mc->spec.mean = strcmp(jstr(jc, "ties_mean"), "weight") ? TIES_MEAN_COUNT : TIES_MEAN_WEIGHT;
    mc->spec.seed = strtoull(jstr(jc, "seed_str"), NULL, 10); /* exact beyond 2^53 */
    mc->spec.svd_rank = (int)jnum(jc, "svd_rank");
    mc->spec.t = jnum(jc, "t");
    cJSON *co = cJSON_GetObjectItem(jc, "coef");
    if (cJSON_IsArray(co)) {
        int slots = fx->cfg.n_layers * MOD_COUNT;
        cr_assert_eq(cJSON_GetArraySize(co), mc->n);
        for (int i = 0; i < mc->n; i++) {
            cJSON *row = cJSON_GetArrayItem(co, i);
            cr_assert_eq(cJSON_GetArraySize(row), slots);
            mc->coef[i] = malloc(sizeof(float) * slots);
            for (int s = 0; s < slots; s++)
                mc->coef[i][s] = (float)cJSON_GetArrayItem(row, s)->valuedouble;
        }
        mc->spec.coef = (const float *const *)mc->coef;
    }
    char path[1024];
    lc_err err = {{0}};
    snprintf(path, sizeof path, "%s/expected/%s.safetensors", fx->dir, mc->name);
    cr_assert_eq(tensor_file_open(&mc->exp, path, &err), LC_OK, "%s", err.msg);
}

static void case_free(mcase *mc) {
    for (int i = 0; i < mc->n; i++) free(mc->coef[i]);
    tensor_file_free(mc->exp);
}

/* Reads expected tensor <prefix>layers.<l>.<short> into a malloc'd buffer,
 * or returns NULL when the reference has none (no adapter adapts it). */
static double *expected(mcase *mc, const char *prefix, const model_config *c, int l, int m) {
    char name[128];
    snprintf(name, sizeof name, "%slayers.%d.%s", prefix, l, module_short(m));
    if (!tensor_file_find(mc->exp, name)) return NULL;
    int64_t shape[2] = {module_out_dim(c, m), module_in_dim(c, m)};
    double *r = malloc(sizeof(double) * shape[0] * shape[1]);
    lc_err err = {{0}};
    cr_assert_eq(tensor_file_read_f64(mc->exp, name, 2, shape, r, &err), LC_OK, "%s", err.msg);
    return r;
}

static double max_abs(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* Expected tensor count of a case (every tensor must be matched). */
static int n_expected(mcase *mc, const char *prefix) {
    int k = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < tensor_file_count(mc->exp); i++) {
        const char *nm = tensor_file_at(mc->exp, i)->name;
        if (!strncmp(nm, prefix, pl) && !strncmp(nm + pl, "layers.", 7)) k++;
    }
    return k;
}

/* ---- merge_module_delta ------------------------------------------------- */

/* merge_module_delta with spec s for every (layer, module) against the
 * expected <prefix>layers.* (svd: truncated products, TOL_SVD). Returns the
 * worst error as a fraction of the tolerance; *n_mods = modules compared. */
static double check_deltas(mcase *mc, const merge_spec *s, const model_config *c,
                           const char *prefix, const char *label, int *n_mods) {
    lc_err err = {{0}};
    const int is_svd = s->svd_rank > 0;
    double worst = 0; /* error / allowed */
    int matched = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int m = 0; m < MOD_COUNT; m++) {
            size_t len = (size_t)module_out_dim(c, m) * module_in_dim(c, m);
            double *got = malloc(sizeof(double) * len);
            int adapted = -1;
            cr_assert_eq(merge_module_delta(s, mc->ls, mc->n, c, l, m, got, &adapted, &err), LC_OK,
                         "%s layer %d %s: %s", label, l, module_short(m), err.msg);
            double *r = expected(mc, prefix, c, l, m);
            if (!r) {
                cr_assert_eq(adapted, 0, "%s layer %d %s: no adapter adapts it, adapted=%d", label,
                             l, module_short(m), adapted);
                cr_assert_eq(max_abs(got, len), 0.0, "%s layer %d %s: not zeroed", label, l,
                             module_short(m));
                free(got);
                continue;
            }
            cr_assert_eq(adapted, 1, "%s layer %d %s: adapted=%d", label, l, module_short(m), adapted);
            double mr = max_abs(r, len), tol = is_svd ? TOL_SVD * mr : TOL_EXACT * (1 + mr);
            size_t at = 0;
            double e = 0;
            for (size_t k = 0; k < len; k++)
                if (fabs(got[k] - r[k]) > e) e = fabs(got[k] - r[k]), at = k;
            cr_assert_leq(e, tol,
                          "%s layer %d %s: element %zu (row %zu, col %zu): C %.17g, reference %.17g "
                          "(|err| %.3g > %.3g; max|ref| %.3g)",
                          label, l, module_short(m), at, at / module_in_dim(c, m),
                          at % module_in_dim(c, m), got[at], r[at], e, tol, mr);
            worst = fmax(worst, e / tol);
            matched++;
            free(got);
            free(r);
        }
    cr_assert_eq(matched, n_expected(mc, prefix), "%s: %d modules checked, reference has %d", label,
                 matched, n_expected(mc, prefix));
    *n_mods = matched;
    return worst;
}

Test(merge, module_delta_matches_reference, .timeout = 300) {
    fixture fx;
    fixture_load(&fx);
    const model_config *c = &fx.cfg;
    lc_err err = {{0}};
    int n_cases = 0, n_mods = 0, n_full = 0;
    for (int ci = 0; ci < cJSON_GetArraySize(fx.cases); ci++) {
        mcase mc;
        case_load(&fx, cJSON_GetArrayItem(fx.cases, ci), &mc);
        cr_assert_eq(merge_spec_validate(&mc.spec, mc.ls, mc.n, c, &err), LC_OK,
                     "%s: valid spec rejected: %s", mc.name, err.msg);
        int k;
        double worst = check_deltas(&mc, &mc.spec, c, "", mc.name, &k);
        fprintf(stderr, "merge %-20s %2d modules, worst error %.2g of the tolerance\n", mc.name, k,
                worst);
        n_mods += k;
        if (mc.spec.svd_rank > 0 && mc.spec.method != MERGE_SVD) {
            /* ties/dare_* with svd_rank: the same merge without the SVD is
             * the exact (float64) delta before truncation */
            merge_spec full = mc.spec;
            full.svd_rank = 0;
            char label[160];
            snprintf(label, sizeof label, "%s without svd_rank", mc.name);
            worst = check_deltas(&mc, &full, c, "full.", label, &k);
            fprintf(stderr, "merge %-20s %2d modules before truncation, worst error %.2g of the "
                    "tolerance\n", mc.name, k, worst);
            cr_assert_gt(k, 0);
            n_full++;
        }
        n_cases++;
        case_free(&mc);
    }
    cr_assert_geq(n_cases, 10);
    cr_assert_gt(n_mods, 100);
    cr_assert_geq(n_full, 2); /* ties_svd, dare_linear_svd */
    fixture_free(&fx);
}

/* ---- merge_to_lora -------------------------------------------------------- */

Test(merge, to_lora_product_matches_reference, .timeout = 300) {
    fixture fx;
    fixture_load(&fx);
    const model_config *c = &fx.cfg;
    lc_err err = {{0}};
    int n_lora_cases = 0;
    for (int ci = 0; ci < cJSON_GetArraySize(fx.cases); ci++) {
        mcase mc;
        case_load(&fx, cJSON_GetArrayItem(fx.cases, ci), &mc);
        lora out;
        if (!merge_gives_lora(&mc.spec)) {
            cr_assert_eq(merge_to_lora(&mc.spec, mc.ls, mc.n, c, &out, &err), LC_FAIL,
                         "%s: a dense method gave a LoRA", mc.name);
            case_free(&mc);
            continue;
        }
        cr_assert_eq(merge_to_lora(&mc.spec, mc.ls, mc.n, c, &out, &err), LC_OK, "%s: %s", mc.name,
                     err.msg);
        int want_rank = 0;
        for (int i = 0; i < mc.n; i++) want_rank += mc.ls[i]->rank;
        if (mc.spec.method == MERGE_LORAHUB) want_rank = mc.ls[0]->rank;
        if (mc.spec.svd_rank > 0) want_rank = mc.spec.svd_rank;
        cr_assert_eq(out.rank, want_rank, "%s: rank %d, expected %d", mc.name, out.rank, want_rank);
        cr_assert_eq(out.weight, 1.0f, "%s: weight %g", mc.name, out.weight);
        if (mc.spec.method == MERGE_LORAHUB)
            cr_assert_eq(out.scale, mc.ls[0]->scale, "%s: scale %g, adapters' %g", mc.name,
                         out.scale, mc.ls[0]->scale);
        else
            cr_assert_eq(out.scale, 1.0f, "%s: scale %g, expected 1", mc.name, out.scale);
        const char *prefix = "";
        int matched = 0;
        double worst = 0;
        for (int l = 0; l < c->n_layers; l++)
            for (int m = 0; m < MOD_COUNT; m++) {
                const int s = l * MOD_COUNT + m, in = module_in_dim(c, m), o = module_out_dim(c, m);
                const int r = out.rank;
                double *ref = expected(&mc, prefix, c, l, m);
                if (!out.A[s]) {
                    cr_assert_null(ref, "%s: layer %d %s adapted but missing from the LoRA", mc.name,
                                   l, module_short(m));
                    continue;
                }
                /* P = weight * scale * B A */
                double mr = ref ? max_abs(ref, (size_t)o * in) : 0, e = 0;
                const double f = (double)out.weight * out.scale;
                for (int i = 0; i < o; i++)
                    for (int j = 0; j < in; j++) {
                        double p = 0;
                        for (int k = 0; k < r; k++)
                            p += (double)out.B[s][(size_t)i * r + k] * out.A[s][(size_t)k * in + j];
                        p *= f;
                        e = fmax(e, fabs(p - (ref ? ref[(size_t)i * in + j] : 0.0)));
                    }
                if (!ref) { /* in the union of layers and modules, not adapted: zero */
                    cr_assert_leq(e, 0.0, "%s: layer %d %s not adapted but B A != 0 (max %.3g)",
                                  mc.name, l, module_short(m), e);
                    continue;
                }
                cr_assert_leq(e, TOL_F32 * mr, "%s: layer %d %s: max|B A s - ref| %.3g > %.3g",
                              mc.name, l, module_short(m), e, TOL_F32 * mr);
                worst = fmax(worst, e / (TOL_F32 * mr));
                matched++;
                free(ref);
            }
        cr_assert_eq(matched, n_expected(&mc, prefix), "%s: %d modules in the LoRA, reference %d",
                     mc.name, matched, n_expected(&mc, prefix));
        fprintf(stderr, "merge_to_lora %-12s rank %d, %2d modules, worst error %.2g of the tolerance\n",
                mc.name, out.rank, matched, worst);
        n_lora_cases++;
        lora_free(&out);
        case_free(&mc);
    }
    cr_assert_geq(n_lora_cases, 6); /* concat, svd, lorahub, ties_svd, dare_linear_svd, learned */
    fixture_free(&fx);
}

/* ---- merge_into_model ----------------------------------------------------- */

static int vec_equal(const float *a, const float *b, size_t n) {
    return memcmp(a, b, sizeof(float) * n) == 0;
}

Test(merge, into_model_adds_exactly_the_delta, .timeout = 300) {
    fixture fx;
    fixture_load(&fx);
    lc_err err = {{0}};
    model base;
    char path[1024];
    snprintf(path, sizeof path, "%s/model", fx.dir);
    cr_assert_eq(model_load(&base, path, &err), LC_OK, "%s", err.msg);
    const model_config *c = &base.cfg;
    cr_assert_eq(c->dim, fx.cfg.dim);
    const int D = c->dim, V = c->vocab_size;
    for (int ci = 0; ci < cJSON_GetArraySize(fx.cases); ci++) {
        mcase mc;
        case_load(&fx, cJSON_GetArrayItem(fx.cases, ci), &mc);
        model dst;
        cr_assert_eq(model_clone(&dst, &base, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(merge_into_model(&mc.spec, mc.ls, mc.n, &dst, &err), LC_OK, "%s: %s", mc.name,
                     err.msg);
        double worst = 0;
        for (int l = 0; l < c->n_layers; l++) {
            cr_assert(vec_equal(dst.w.layers[l].attn_norm, base.w.layers[l].attn_norm, D) &&
                      vec_equal(dst.w.layers[l].ffn_norm, base.w.layers[l].ffn_norm, D),
                      "%s: layer %d norms changed", mc.name, l);
            for (int m = 0; m < MOD_COUNT; m++) {
                size_t len = (size_t)module_out_dim(c, m) * module_in_dim(c, m);
                const float *w0 = base.w.layers[l].w[m], *w1 = dst.w.layers[l].w[m];
                double *r = expected(&mc, "", c, l, m);
                if (!r) {
                    cr_assert(vec_equal(w0, w1, len), "%s: layer %d %s not adapted but changed",
                              mc.name, l, module_short(m));
                    continue;
                }
                /* W' = float32(W + delta): W' - W equals delta up to half an
                 * ulp of W + delta (2^-24 relative; 1e-7 allowed) plus the
                 * reference's own error. */
                double mr = max_abs(r, len), e = 0, tol_w = 0;
                size_t at = 0;
                for (size_t k = 0; k < len; k++) {
                    double want = (double)w0[k] + r[k];
                    double d = fabs((double)w1[k] - want);
                    double tol = 1e-7 * fabs(want) + TOL_EXACT * (1 + mr) +
                                 (mc.spec.svd_rank > 0 ? TOL_SVD * mr : 0);
                    if (d / tol > e) e = d / tol, at = k, tol_w = tol;
                }
                cr_assert_leq(e, 1.0, "%s: layer %d %s element %zu: W'-W %.9g, delta %.9g (tol %.3g)",
                              mc.name, l, module_short(m), at, (double)w1[at] - w0[at], r[at], tol_w);
                /* and it really moved */
                cr_assert(!vec_equal(w0, w1, len) || mr == 0, "%s: layer %d %s unchanged", mc.name,
                          l, module_short(m));
                worst = fmax(worst, e);
                free(r);
            }
        }
        cr_assert(vec_equal(dst.w.tok_emb, base.w.tok_emb, (size_t)V * D) &&
                  vec_equal(dst.w.final_norm, base.w.final_norm, D) &&
                  vec_equal(dst.w.lm_head, base.w.lm_head, (size_t)V * D),
                  "%s: embeddings / final norm / classifier changed", mc.name);
        fprintf(stderr, "merge_into_model %-20s worst error %.2g of the tolerance\n", mc.name, worst);
        model_free(&dst);
        case_free(&mc);
    }
    model_free(&base);
    fixture_free(&fx);
}

/* ---- concat == linear through a forward pass ------------------------------ */

static float *run_logits(const model *m, lora **ls, int n, const int *tok, const int *tgt, int B,
                         int T, float *loss) {
    adapter_set ad = {0};
    for (int i = 0; i < n; i++) ad.loras[ad.n_loras++] = ls[i];
    model_acts *a;
    lc_err err = {{0}};
    cr_assert_eq(model_acts_init(&a, m, &ad, B, T, ACTS_KEEP_LOGITS, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_forward(m, a, tok, tgt, B, T, loss, &err), LC_OK, "%s", err.msg);
    size_t nl = (size_t)B * T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * nl);
    memcpy(out, model_acts_logits(a), sizeof(float) * nl);
    model_acts_free(a);
    return out;
}

Test(merge, concat_and_linear_give_the_same_logits, .timeout = 300) {
    fixture fx;
    fixture_load(&fx);
    lc_err err = {{0}};
    model base, merged;
    char path[1024];
    snprintf(path, sizeof path, "%s/model", fx.dir);
    cr_assert_eq(model_load(&base, path, &err), LC_OK, "%s", err.msg);
    mcase lin, cat;
    int found = 0;
    for (int ci = 0; ci < cJSON_GetArraySize(fx.cases); ci++) {
        cJSON *jc = cJSON_GetArrayItem(fx.cases, ci);
        const char *nm = jstr(jc, "name");
        if (!strcmp(nm, "linear")) case_load(&fx, jc, &lin), found |= 1;
        if (!strcmp(nm, "concat")) case_load(&fx, jc, &cat), found |= 2;
    }
    cr_assert_eq(found, 3, "cases.json lacks 'linear' or 'concat'");
    cr_assert_eq(lin.n, cat.n);
    for (int i = 0; i < lin.n; i++) {
        cr_assert_eq(lin.ls[i], cat.ls[i]);
        cr_assert_eq(lin.spec.weights[i], cat.spec.weights[i]);
    }

    lora cl;
    cr_assert_eq(merge_to_lora(&cat.spec, cat.ls, cat.n, &base.cfg, &cl, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_clone(&merged, &base, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(merge_into_model(&lin.spec, lin.ls, lin.n, &merged, &err), LC_OK, "%s", err.msg);

    const int B = 2, T = 10, V = base.cfg.vocab_size;
    int tok[20], tgt[20];
    uint64_t x = 12345;
    for (int i = 0; i < B * T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int)((x >> 33) % (uint64_t)V);
        tgt[i] = i % T < 2 ? -1 : (int)((x >> 13) % (uint64_t)V);
    }
    float l_cat, l_lin, l_run, l_base;
    lora *pc = &cl;
    float *z_cat = run_logits(&base, &pc, 1, tok, tgt, B, T, &l_cat);
    float *z_lin = run_logits(&merged, NULL, 0, tok, tgt, B, T, &l_lin);
    float *z_base = run_logits(&base, NULL, 0, tok, tgt, B, T, &l_base);
    /* the engine's own multi-LoRA sum with run-time weights w_i */
    for (int i = 0; i < lin.n; i++) lin.ls[i]->weight = (float)lin.spec.weights[i];
    float *z_run = run_logits(&base, lin.ls, lin.n, tok, tgt, B, T, &l_run);
    for (int i = 0; i < lin.n; i++) lin.ls[i]->weight = 1.0f;

    size_t nl = (size_t)B * T * V;
    double e1 = tu_rel_err_f32(z_cat, z_lin, nl), e2 = tu_rel_err_f32(z_run, z_lin, nl);
    double moved = tu_rel_err_f32(z_base, z_lin, nl);
    fprintf(stderr,
            "merge forward: concat LoRA vs merged linear rel err %.2g, run-time LoRAs vs merged %.2g "
            "(the merge moves logits by %.2g rel); loss %.6f / %.6f / %.6f (base %.6f)\n",
            e1, e2, moved, l_cat, l_lin, l_run, l_base);
    cr_assert_lt(e1, TOL_LOGITS, "concat LoRA vs merged linear: logits rel err %.3g", e1);
    cr_assert_lt(e2, TOL_LOGITS, "run-time LoRAs vs merged linear: logits rel err %.3g", e2);
    cr_assert_gt(moved, 100 * TOL_LOGITS, "the merge hardly changes the logits (%.3g): test is weak",
                 moved);
    cr_assert_lt(fabsf(l_cat - l_lin), 1e-4f * fabsf(l_lin));

    free(z_cat), free(z_lin), free(z_run), free(z_base);
    lora_free(&cl);
    model_free(&merged);
    model_free(&base);
    case_free(&lin);
    case_free(&cat);
    fixture_free(&fx);
}

/* ---- merge_spec_validate -------------------------------------------------- */

static void expect_invalid(const merge_spec *s, lora **ls, int n, const model_config *c,
                           const char *what, const char *key1, const char *key2) {
    lc_err err = {{0}};
    int rc = merge_spec_validate(s, ls, n, c, &err);
    cr_assert_eq(rc, LC_FAIL, "%s: accepted", what);
    cr_assert(strstr(err.msg, key1) && (!key2 || strstr(err.msg, key2)),
              "%s: message does not name '%s'%s%s: \"%s\"", what, key1, key2 ? " / " : "",
              key2 ? key2 : "", err.msg);
    fprintf(stderr, "merge_spec_validate %-28s -> %s\n", what, err.msg);
}

Test(merge, validate_rejects_bad_specs_naming_the_key, .timeout = 300) {
    fixture fx;
    fixture_load(&fx);
    const model_config *c = &fx.cfg;
    lora *l01[2] = {&fx.loras[0], &fx.loras[1]}, *l012[3] = {&fx.loras[0], &fx.loras[1], &fx.loras[2]};
    lora *l02[2] = {&fx.loras[0], &fx.loras[2]};
    merge_spec s;
    lc_err err = {{0}};

    merge_spec_default(&s, MERGE_TIES);
    s.density = 0.0;
    expect_invalid(&s, l01, 2, c, "ties density 0", "density", NULL);
    s.density = 1.5;
    expect_invalid(&s, l01, 2, c, "ties density 1.5", "density", NULL);
    merge_spec_default(&s, MERGE_DARE_LINEAR);
    s.density = 0.0;
    expect_invalid(&s, l01, 2, c, "dare_linear density 0", "density", NULL);
    merge_spec_default(&s, MERGE_DARE_TIES);
    s.density = 1.5;
    expect_invalid(&s, l01, 2, c, "dare_ties density 1.5", "density", NULL);

    /* smallest adapted module: k/v (Hkv*hd x D) */
    int mn = 1 << 30;
    for (int m = 0; m < MOD_COUNT; m++) {
        int a = module_in_dim(c, m), b = module_out_dim(c, m);
        mn = a < mn ? a : mn;
        mn = b < mn ? b : mn;
    }
    merge_spec_default(&s, MERGE_SVD);
    s.svd_rank = mn;
    cr_assert_eq(merge_spec_validate(&s, l01, 2, c, &err), LC_OK, "svd_rank %d (= min dim): %s", mn,
                 err.msg);
    s.svd_rank = mn + 1;
    expect_invalid(&s, l01, 2, c, "svd svd_rank > module", "svd_rank", NULL);
    merge_spec_default(&s, MERGE_TIES);
    s.density = 0.5;
    s.svd_rank = mn + 1;
    expect_invalid(&s, l01, 2, c, "ties svd_rank > module", "svd_rank", NULL);

    merge_spec_default(&s, MERGE_SLERP);
    cr_assert_eq(merge_spec_validate(&s, l01, 2, c, &err), LC_OK, "slerp, 2 adapters: %s", err.msg);
    expect_invalid(&s, l012, 3, c, "slerp with 3 adapters", "slerp", "adapters");

    merge_spec_default(&s, MERGE_LORAHUB);
    cr_assert_eq(merge_spec_validate(&s, l02, 2, c, &err), LC_OK, "lorahub, equal ranks: %s", err.msg);
    cr_assert_neq(fx.loras[0].rank, fx.loras[1].rank);
    expect_invalid(&s, l01, 2, c, "lorahub with unequal ranks", "lorahub", "rank");
    fixture_free(&fx);
}
