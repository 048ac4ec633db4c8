/* The trainer's optimizer pieces (train/lib/trainer.h) against PyTorch
 * (scripts/optim_ref.py, Debian's torch 1.13, float32 like the C):
 *   AdamW      adamw_step vs torch.optim.AdamW (weight decay on some tensors
 *              only, bias correction, eps outside the square root, exact
 *              zero and eps-sized gradients) over 150-200 steps with the
 *              learning rate changing every step. After step 1 the moments
 *              must be bit-identical (each is one rounding of
 *              (1 - beta) * g or (1 - beta2) * g * g, so this pins the
 *              constants); after every step the parameters and moments
 *              within TOL_ADAM (normwise relative, below).
 *   schedules  lr_schedule vs torch.optim.lr_scheduler (LinearLR warmup,
 *              then CosineAnnealingLR / LinearLR / ConstantLR in a
 *              SequentialLR), every step, |diff| <= 1e-12 * lr.
 *   clipping   param_list_clip_grad_norm vs torch.nn.utils.clip_grad_norm_
 *              (norm above, below, and within torch's 1e-6 of max_norm; a
 *              100k-element tensor): returned norm within 1e-6, gradients
 *              within TOL_CLIP.
 *   accumulation  train_run with grad_accum = 3 over 4 steps equals, step for
 *              step, the mean of the three micro-batch gradients computed by
 *              separate forward/backward passes, then clipped, scheduled and
 *              stepped: the logged grad_norm and loss, the final gradients
 *              and parameters.
 * Normwise relative error: max|c - r| / max|r| over a tensor. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"
#include "trainer.h"

/* Two float32 implementations of the same formulas round differently: each
 * step's update differs by a few ulps and the differences add up over the
 * run. 2e-6 is ~16 ulps of the largest element; a wrong constant, a
 * different eps placement or a missing bias correction is 1e-5 or more. */
#define TOL_ADAM 2e-6
/* One rounding of the scale factor and one of the product. */
#define TOL_CLIP 2.5e-7
#define TOL_NORM 1e-6 /* torch forms the norm in float32 */
#define TOL_SCHED 1e-12
#define TOL_ACCUM 1e-5 /* float accumulation of grad/3 vs a double mean */

typedef struct {
    tensor_file *tf;
    cJSON *cases;
} fixture;

static fixture load_fixture(void) {
    char script[1024], helpers[1024], cmd[2048], path[4096];
    snprintf(script, sizeof script, "%s/scripts/optim_ref.py", tu_source_dir());
    snprintf(helpers, sizeof helpers, "%s/scripts/torch_ref.py", tu_source_dir());
    const char *inputs[] = {script, helpers, "/usr/lib/python3/dist-packages/torch/version.py",
                            NULL};
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s'", script);
    const char *dir = tu_cached_fixture("optim_ref", inputs, cmd,
                                        "Debian's python3-torch and python3-numpy (scripts/setup.sh)");
    fixture fx;
    lc_err err = {{0}};
    snprintf(path, sizeof path, "%s/optim.safetensors", dir);
    cr_assert_eq(tensor_file_open(&fx.tf, path, &err), LC_OK, "%s", err.msg);
    const char *meta = tensor_file_meta(fx.tf, "cases");
    cr_assert_not_null(meta, "%s has no \"cases\" metadata", path);
    fx.cases = cJSON_Parse(meta);
    cr_assert_not_null(fx.cases, "%s: \"cases\" is not JSON", path);
    return fx;
}

static void fixture_free(fixture *fx) {
    cJSON_Delete(fx->cases);
    tensor_file_free(fx->tf);
}

static cJSON *jget(const cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert_not_null(v, "optim_ref.py case lacks \"%s\"", k);
    return v;
}

static double jnum(const cJSON *o, const char *k) { return jget(o, k)->valuedouble; }
static const char *jstr(const cJSON *o, const char *k) { return jget(o, k)->valuestring; }

/* Reads "<case>.<what>" (any shape) as float32 / float64, malloc'd. */
static float *read_f32(fixture *fx, const char *cs, const char *what, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    const tensor_info *ti = tensor_file_find(fx->tf, name);
    cr_assert_not_null(ti, "reference has no tensor '%s'", name);
    float *p = malloc(sizeof(float) * (size_t)ti->numel);
    lc_err err = {{0}};
    cr_assert_eq(tensor_file_read_f32(fx->tf, name, 0, NULL, p, &err), LC_OK, "%s", err.msg);
    if (n) *n = (size_t)ti->numel;
    return p;
}

static double *read_f64(fixture *fx, const char *cs, const char *what, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    const tensor_info *ti = tensor_file_find(fx->tf, name);
    cr_assert_not_null(ti, "reference has no tensor '%s'", name);
    double *p = malloc(sizeof(double) * (size_t)ti->numel);
    lc_err err = {{0}};
    cr_assert_eq(tensor_file_read_f64(fx->tf, name, 0, NULL, p, &err), LC_OK, "%s", err.msg);
    if (n) *n = (size_t)ti->numel;
    return p;
}

static size_t count_diff_bits(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

/* ---- AdamW ---------------------------------------------------------------- */

enum { Q_PARAM, Q_M, Q_V, Q_COUNT };
static const char *const Q_NAME[Q_COUNT] = {"param", "exp_avg", "exp_avg_sq"};

Test(optim, adamw_matches_torch, .timeout = 120) {
    fixture fx = load_fixture();
    cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, jget(fx.cases, "adamw")) {
        const char *cs = jstr(c, "name");
        const int S = (int)jnum(c, "steps");
        cJSON *jp = jget(c, "params");
        const int np = cJSON_GetArraySize(jp);
        cr_assert(np > 0 && np <= 8);
        float *data[8], *grad[8], *g_all[8], *ref[8][Q_COUNT];
        param_list pl = {0};
        lc_err err = {{0}};
        char name[64];
        for (int i = 0; i < np; i++) {
            cJSON *p = cJSON_GetArrayItem(jp, i);
            size_t n = (size_t)jnum(p, "n"), nr;
            snprintf(name, sizeof name, "%d.init", i);
            data[i] = read_f32(&fx, cs, name, &nr);
            cr_assert_eq(nr, n);
            grad[i] = malloc(sizeof(float) * n);
            snprintf(name, sizeof name, "%d.grad", i);
            g_all[i] = read_f32(&fx, cs, name, &nr);
            cr_assert_eq(nr, n * S);
            for (int q = 0; q < Q_COUNT; q++) {
                snprintf(name, sizeof name, "%d.%s", i, Q_NAME[q]);
                ref[i][q] = read_f32(&fx, cs, name, &nr);
                cr_assert_eq(nr, n * S);
            }
            snprintf(name, sizeof name, "%s.%d", cs, i);
            cr_assert_eq(param_list_add(&pl, name, data[i], grad[i], n, (int)jnum(p, "decay"), &err),
                         LC_OK, "%s", err.msg);
        }
        size_t n_lr;
        double *lr = read_f64(&fx, cs, "lr", &n_lr);
        cr_assert_eq(n_lr, (size_t)S);
        adamw o;
        cr_assert_eq(adamw_init(&o, &pl, jnum(c, "beta1"), jnum(c, "beta2"), jnum(c, "eps"),
                                jnum(c, "weight_decay"), &err),
                     LC_OK, "%s", err.msg);
        double worst[Q_COUNT] = {0};
        for (int s = 0; s < S; s++) {
            for (int i = 0; i < np; i++)
                memcpy(grad[i], g_all[i] + (size_t)s * pl.p[i].n, sizeof(float) * pl.p[i].n);
            adamw_step(&o, lr[s]);
            size_t off = 0;
            for (int i = 0; i < np; i++) {
                const size_t n = pl.p[i].n;
                const float *mine[Q_COUNT] = {data[i], o.m + off, o.v + off};
                for (int q = 0; q < Q_COUNT; q++) {
                    const float *r = ref[i][q] + (size_t)s * n;
                    if (s == 0 && q != Q_PARAM) {
                        size_t d = count_diff_bits(mine[q], r, n);
                        cr_assert_eq(d, 0, "%s tensor %d: %s after step 1 differs from torch's in "
                                     "%zu of %zu elements (rel err %.3g): (1 - beta) is not the "
                                     "float32 constant torch uses",
                                     cs, i, Q_NAME[q], d, n, tu_rel_err_f32(mine[q], r, n));
                    }
                    double e = tu_rel_err_f32(mine[q], r, n);
                    cr_assert_leq(e, TOL_ADAM, "%s tensor %d: %s after step %d: rel err %.3g > %g",
                                  cs, i, Q_NAME[q], s + 1, e, TOL_ADAM);
                    if (e > worst[q]) worst[q] = e;
                }
                off += n;
            }
        }
        fprintf(stderr, "adamw %s: %d steps, worst rel err param %.2g, exp_avg %.2g, exp_avg_sq %.2g\n",
                cs, S, worst[Q_PARAM], worst[Q_M], worst[Q_V]);
        adamw_free(&o);
        for (int i = 0; i < np; i++) {
            free(data[i]);
            free(grad[i]);
            free(g_all[i]);
            for (int q = 0; q < Q_COUNT; q++) free(ref[i][q]);
        }
        free(lr);
        param_list_free(&pl);
        n_cases++;
    }
    cr_assert_eq(n_cases, 2);
    fixture_free(&fx);
}

/* ---- schedules ------------------------------------------------------------ */

Test(optim, schedules_match_torch_lr_scheduler, .timeout = 60) {
    fixture fx = load_fixture();
    cJSON *c;
    int n_cases = 0, seen[3] = {0};
    cJSON_ArrayForEach(c, jget(fx.cases, "schedule")) {
        const char *cs = jstr(c, "name"), *kind = jstr(c, "kind");
        int k = -1;
        for (int i = 0; SCHED_NAMES[i]; i++)
            if (!strcmp(SCHED_NAMES[i], kind)) k = i;
        cr_assert_geq(k, 0, "%s: unknown schedule '%s'", cs, kind);
        seen[k]++;
        const double base = jnum(c, "lr"), mr = jnum(c, "min_ratio");
        const long total = (long)jnum(c, "total"), warmup = (long)jnum(c, "warmup");
        size_t n;
        double *ref = read_f64(&fx, cs, "lr", &n);
        cr_assert_eq(n, (size_t)total);
        double worst = 0;
        for (long s = 0; s < total; s++) {
            double mine = lr_schedule((sched_kind)k, base, s, total, warmup, mr);
            double e = fabs(mine - ref[s]) / base;
            cr_assert_leq(e, TOL_SCHED, "%s: step %ld (0-based): lr %.17g, torch %.17g", cs, s,
                          mine, ref[s]);
            if (e > worst) worst = e;
        }
        fprintf(stderr, "schedule %s: %ld steps, worst |diff|/lr %.2g\n", cs, total, worst);
        free(ref);
        n_cases++;
    }
    cr_assert(n_cases >= 6 && seen[SCHED_CONSTANT] && seen[SCHED_LINEAR] && seen[SCHED_COSINE]);
    fixture_free(&fx);
}

/* ---- clipping ------------------------------------------------------------- */

Test(optim, clip_matches_torch_clip_grad_norm, .timeout = 60) {
    fixture fx = load_fixture();
    cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, jget(fx.cases, "clip")) {
        const char *cs = jstr(c, "name");
        cJSON *sizes = jget(c, "sizes");
        const int nt = cJSON_GetArraySize(sizes);
        cr_assert(nt > 0 && nt <= 8);
        float *g[8], *ref[8];
        size_t n[8];
        param_list pl = {0};
        lc_err err = {{0}};
        char name[64];
        for (int i = 0; i < nt; i++) {
            size_t nr;
            snprintf(name, sizeof name, "%d.grad", i);
            g[i] = read_f32(&fx, cs, name, &n[i]);
            snprintf(name, sizeof name, "%d.clipped", i);
            ref[i] = read_f32(&fx, cs, name, &nr);
            cr_assert_eq(nr, n[i]);
            /* clipping reads and writes only the gradients */
            cr_assert_eq(param_list_add(&pl, name, g[i], g[i], n[i], 1, &err), LC_OK, "%s", err.msg);
        }
        double *rnorm = read_f64(&fx, cs, "norm", NULL);
        double total = param_list_clip_grad_norm(&pl, jnum(c, "max_norm"));
        cr_assert_leq(fabs(total - rnorm[0]) / rnorm[0], TOL_NORM, "%s: norm %.9g, torch %.9g", cs,
                      total, rnorm[0]);
        double worst = 0;
        for (int i = 0; i < nt; i++) {
            double e = tu_rel_err_f32(g[i], ref[i], n[i]);
            cr_assert_leq(e, TOL_CLIP, "%s tensor %d: clipped gradient rel err %.3g > %g (norm "
                          "%.9g, max_norm %.9g)", cs, i, e, TOL_CLIP, total, jnum(c, "max_norm"));
            if (e > worst) worst = e;
            free(g[i]);
            free(ref[i]);
        }
        fprintf(stderr, "clip %s: norm %.6g max_norm %.6g, worst rel err %.2g\n", cs, total,
                jnum(c, "max_norm"), worst);
        free(rnorm);
        param_list_free(&pl);
        n_cases++;
    }
    cr_assert_geq(n_cases, 4);
    fixture_free(&fx);
}

/* ---- gradient accumulation in train_run ----------------------------------- */

#define ACC_B 2
#define ACC_T 39
#define ACC_K 3
#define ACC_STEPS 4

static void tiny_model(model *m, lora *l, adapter_set *ad, param_list *pl) {
    model_config c = {0};
    lc_err err = {{0}};
    strcpy(c.arch, "llama");
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 48, c.vocab_size = 259, c.max_seq_len = 64;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.bos_id = 1, c.eos_id = 2;
    cr_assert_eq(model_init(m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(m, 0.1f, 7);
    cr_assert_eq(lora_init(l, &m->cfg, 4, 8.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(l, 0.05f, 11);
    l->dropout = 0;
    cr_assert_eq(lora_enable_grad(l, &err), LC_OK, "%s", err.msg);
    memset(ad, 0, sizeof *ad);
    ad->loras[ad->n_loras++] = l;
    memset(pl, 0, sizeof *pl);
    cr_assert_eq(param_list_add_lora(pl, l, &m->cfg, &err), LC_OK, "%s", err.msg);
}

Test(optim, grad_accum_is_the_mean_of_micro_batch_gradients, .timeout = 120) {
    const char *dir = tu_tmpdir();
    char tokp[1024], datap[1024], logp[1024];
    lc_err err = {{0}};
    snprintf(tokp, sizeof tokp, "%s/tok.bin", dir);
    cr_assert_eq(tu_write_byte_tokenizer(tokp), 0);
    snprintf(datap, sizeof datap, "%s/train.jsonl", dir);
    FILE *f = fopen(datap, "w");
    cr_assert_not_null(f);
    const char *words[] = {"the cat", "a dog sat", "and then", "is red", "in the house", "sun"};
    for (int i = 0; i < 11; i++) /* 11 rows: micro-batches straddle epochs */
        fprintf(f, "{\"q\": \"say %s\", \"a\": \"%s %s\"}\n", words[i % 6], words[(i * 5) % 6],
                words[i % 4]);
    fclose(f);
    tokenizer *tok;
    cr_assert_eq(tokenizer_load(&tok, tokp, 259, &err), LC_OK, "%s", err.msg);
    dataset_spec spec = {datap, "Q: {q}\nA:", " {a}", ACC_T + 1, 1, 1, BAD_ROW_ERROR, 0, NULL};
    dataset d;
    cr_assert_eq(dataset_load(&d, &spec, tok, &err), LC_OK, "%s", err.msg);

    train_opts o = {0};
    o.batch_size = ACC_B, o.seq_len = ACC_T, o.grad_accum = ACC_K, o.steps = ACC_STEPS;
    o.seed = 5, o.shuffle = 1, o.log_every = 1;
    o.lr = 5e-3, o.beta1 = 0.9, o.beta2 = 0.999, o.eps = 1e-8, o.weight_decay = 0.01;
    o.grad_clip = 1.35, o.min_lr_ratio = 0.1, o.warmup = 1, o.schedule = SCHED_COSINE;
    o.out_dir = dir, o.what = "test";

    /* train_run */
    model m;
    lora l;
    adapter_set ad;
    param_list pl;
    tiny_model(&m, &l, &ad, &pl);
    train_result res;
    cr_assert_eq(train_run(&m, &ad, &pl, &d, NULL, 0, &o, 0, NULL, NULL, &res, &err), LC_OK, "%s",
                 err.msg);
    cr_assert_eq(res.steps_done, ACC_STEPS);

    /* by hand: each micro-batch's gradient alone, their mean, then the
     * trainer's clipping, schedule and AdamW */
    model m2;
    lora l2;
    adapter_set ad2;
    param_list pl2;
    tiny_model(&m2, &l2, &ad2, &pl2);
    model_acts *a;
    cr_assert_eq(model_acts_init(&a, &m2, &ad2, ACC_B, ACC_T, ACTS_BACKWARD, &err), LC_OK, "%s",
                 err.msg);
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, o.seed, o.shuffle, &err), LC_OK);
    adamw opt;
    cr_assert_eq(adamw_init(&opt, &pl2, o.beta1, o.beta2, o.eps, o.weight_decay, &err), LC_OK);
    double *mean = malloc(sizeof(double) * pl2.total);
    int tokens[ACC_B * ACC_T], targets[ACC_B * ACC_T];
    double gnorm[ACC_STEPS], loss[ACC_STEPS];
    int n_clipped = 0;
    for (int s = 0; s < ACC_STEPS; s++) {
        memset(mean, 0, sizeof(double) * pl2.total);
        loss[s] = 0;
        for (int k = 0; k < ACC_K; k++) {
            int n_loss, Tb;
            float lk;
            param_list_zero_grad(&pl2);
            cr_assert_eq(batch_next_fit(&it, &d, ACC_B, ACC_T, 0, tokens, targets, &n_loss, &Tb, &err),
                         LC_OK, "%s", err.msg);
            cr_assert_eq(model_forward(&m2, a, tokens, targets, ACC_B, Tb, &lk, &err), LC_OK, "%s",
                         err.msg);
            model_backward(&m2, a, 1.0f);
            loss[s] += (double)lk / ACC_K;
            size_t off = 0;
            for (int i = 0; i < pl2.n; i++)
                for (size_t j = 0; j < pl2.p[i].n; j++) mean[off++] += pl2.p[i].grad[j] / (double)ACC_K;
        }
        size_t off = 0;
        for (int i = 0; i < pl2.n; i++)
            for (size_t j = 0; j < pl2.p[i].n; j++) pl2.p[i].grad[j] = (float)mean[off++];
        gnorm[s] = param_list_clip_grad_norm(&pl2, o.grad_clip);
        n_clipped += gnorm[s] > o.grad_clip;
        adamw_step(&opt, lr_schedule(o.schedule, o.lr, s, o.steps, o.warmup, o.min_lr_ratio));
    }
    cr_assert(n_clipped > 0 && n_clipped < ACC_STEPS,
              "the test wants some steps clipped and some not (%d of %d clipped; norms %g %g %g %g)",
              n_clipped, ACC_STEPS, gnorm[0], gnorm[1], gnorm[2], gnorm[3]);

    /* metrics.jsonl: one row per step with the pre-clip norm and the loss */
    snprintf(logp, sizeof logp, "%s/metrics.jsonl", dir);
    char *text = lc_read_file(logp, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    int rows = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j, "%s: not JSON: %s", logp, line);
        int s = (int)jnum(j, "step") - 1;
        cr_assert(s >= 0 && s < ACC_STEPS);
        double gn = jnum(j, "grad_norm"), lo = jnum(j, "loss");
        cr_assert_leq(fabs(gn - gnorm[s]) / gnorm[s], TOL_ACCUM,
                      "step %d: train_run's gradient norm %.6g, mean of the micro-batches' %.6g", s + 1,
                      gn, gnorm[s]);
        cr_assert_leq(fabs(lo - loss[s]), 2e-6, "step %d: train_run's loss %.6f, mean %.6f", s + 1,
                      lo, loss[s]);
        fprintf(stderr, "accum step %d: grad_norm %.6g (by hand %.6g), loss %.6f (%.6f)\n", s + 1, gn,
                gnorm[s], lo, loss[s]);
        cJSON_Delete(j);
        rows++;
    }
    cr_assert_eq(rows, ACC_STEPS);
    free(text);

    /* the gradients of the last step (clipped) and the parameters */
    double worst_g = 0, worst_p = 0;
    for (int i = 0; i < pl.n; i++) {
        double eg = tu_rel_err_f32(pl.p[i].grad, pl2.p[i].grad, pl.p[i].n);
        double ep = tu_rel_err_f32(pl.p[i].data, pl2.p[i].data, pl.p[i].n);
        cr_assert_leq(eg, TOL_ACCUM, "%s: last step's gradient rel err %.3g", pl.p[i].name, eg);
        cr_assert_leq(ep, TOL_ACCUM, "%s: parameters after %d steps rel err %.3g", pl.p[i].name,
                      ACC_STEPS, ep);
        if (eg > worst_g) worst_g = eg;
        if (ep > worst_p) worst_p = ep;
    }
    fprintf(stderr, "accum: %d tensors, worst rel err gradient %.2g, parameters %.2g\n", pl.n,
            worst_g, worst_p);

    free(mean);
    adamw_free(&opt);
    batch_iter_free(&it);
    model_acts_free(a);
    param_list_free(&pl);
    param_list_free(&pl2);
    lora_free(&l);
    lora_free(&l2);
    model_free(&m);
    model_free(&m2);
    dataset_free(&d);
    tokenizer_free(tok);
}
