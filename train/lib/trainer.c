/* trainer.c: trainable-tensor lists, AdamW, schedules, checkpoints and the
 * training loop shared by `train` and `calibrate` (see trainer.h). */
#include "trainer.h"

#include "config.h"
#include "lc_time.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loaders.h"
#include "tensor_file.h"

const char *const SCHED_NAMES[] = {"constant", "linear", "cosine", NULL};

/* ---- parameter lists ------------------------------------------------------ */

int param_list_add(param_list *pl, const char *name, float *data, float *grad, size_t n,
                   int decay, lc_err *err) {
    if (!grad) return lc_errf(err, "tensor '%s' has no gradient buffer (not trainable)", name);
    if (pl->n == pl->cap) {
        int cap = pl->cap ? 2 * pl->cap : 64;
        param_ref *p = realloc(pl->p, sizeof *p * cap);
        if (!p) return lc_errf(err, "out of memory");
        pl->p = p;
        pl->cap = cap;
    }
    param_ref *r = &pl->p[pl->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->data = data, r->grad = grad, r->n = n, r->decay = decay;
    pl->total += n;
    return LC_OK;
}

int param_list_add_lora(param_list *pl, const lora *l, const model_config *c, lc_err *err) {
    char name[192];
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            int s = layer * MOD_COUNT + mo;
            if (!l->A[s]) continue;
            if (!l->gA) return lc_errf(err, "LoRA '%s' is not trainable", l->name);
            lora_tensor_name(name, sizeof name, layer, mo, 0);
            if (param_list_add(pl, name, l->A[s], l->gA[s], (size_t)l->rank * module_in_dim(c, mo), 1, err))
                return LC_FAIL;
            lora_tensor_name(name, sizeof name, layer, mo, 1);
            if (param_list_add(pl, name, l->B[s], l->gB[s], (size_t)l->rank * module_out_dim(c, mo), 1, err))
                return LC_FAIL;
        }
    return LC_OK;
}

int param_list_add_calib(param_list *pl, const calib *cb, const model_config *c, lc_err *err) {
    char name[192];
    if (!cb->grad) return lc_errf(err, "calibration '%s' is not trainable", cb->name);
    for (int mo = 0; mo < MOD_COUNT; mo++) {
        if (!(cb->module_mask >> mo & 1)) continue;
        size_t in = module_in_dim(c, mo), out = module_out_dim(c, mo), S = cb->n_slots;
        /* slot 0 starts the contiguous (n_slots, ...) block of each tensor */
        if (cb->kind == CALIB_BIAS) {
            calib_tensor_name(name, sizeof name, mo, "bias");
            if (param_list_add(pl, name, cb->p[mo], cb->gp[mo], S * out, 0, err)) return LC_FAIL;
        } else {
            calib_tensor_name(name, sizeof name, mo, "P1");
            if (param_list_add(pl, name, cb->P1[mo], cb->gP1[mo], S * cb->rank * in, 1, err)) return LC_FAIL;
            calib_tensor_name(name, sizeof name, mo, "P2");
            if (param_list_add(pl, name, cb->P2[mo], cb->gP2[mo], S * cb->rank * out, 1, err)) return LC_FAIL;
        }
    }
    return LC_OK;
}

int param_list_add_coef(param_list *pl, const lora *l, const char *prefix, lc_err *err) {
    char name[192];
    if (!l->gcoef) return lc_errf(err, "LoRA '%s' has no trainable coefficients", l->name);
    snprintf(name, sizeof name, "%s.coef", prefix);
    return param_list_add(pl, name, l->coef, l->gcoef, (size_t)l->n_layers * MOD_COUNT, 0, err);
}

typedef struct {
    param_list *pl;
    lc_err *err;
} model_add_ctx;

static int model_add_fn(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                        void *ctx) {
    model_add_ctx *a = ctx;
    size_t n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    return param_list_add(a->pl, name, data, grad, n, ndim == 2, a->err);
}

int param_list_add_model(param_list *pl, model *m, lc_err *err) {
    if (!m->grad) return lc_errf(err, "the base model is not trainable (model_enable_grad)");
    model_add_ctx a = {pl, err};
    return model_for_each_tensor(m, model_add_fn, &a) ? LC_FAIL : LC_OK;
}

void param_list_free(param_list *pl) {
    free(pl->p);
    memset(pl, 0, sizeof *pl);
}

void param_list_zero_grad(param_list *pl) {
    for (int i = 0; i < pl->n; i++) memset(pl->p[i].grad, 0, sizeof(float) * pl->p[i].n);
}

double param_list_grad_norm(const param_list *pl) {
    double s = 0;
    for (int i = 0; i < pl->n; i++) {
        const float *g = pl->p[i].grad;
        for (size_t k = 0; k < pl->p[i].n; k++) s += (double)g[k] * g[k];
    }
    return sqrt(s);
}

void param_list_scale_grad(param_list *pl, float sc) {
    for (int i = 0; i < pl->n; i++)
        for (size_t k = 0; k < pl->p[i].n; k++) pl->p[i].grad[k] *= sc;
}

double param_list_clip_grad_norm(param_list *pl, double max_norm) {
    double total = param_list_grad_norm(pl);
    double coef = max_norm / (total + 1e-6); /* torch's epsilon */
    if (max_norm > 0 && isfinite(total) && coef < 1) param_list_scale_grad(pl, (float)coef);
    return total;
}

/* ---- AdamW ---------------------------------------------------------------- */

int adamw_init(adamw *o, const param_list *pl, double beta1, double beta2, double eps,
               double weight_decay, lc_err *err) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->weight_decay = weight_decay;
    o->pl = pl;
    o->m = lc_calloc(pl->total, sizeof(float), err);
    o->v = lc_calloc(pl->total, sizeof(float), err);
    if (!o->m || !o->v) {
        adamw_free(o);
        return LC_FAIL;
    }
    return LC_OK;
}

void adamw_free(adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void adamw_step(adamw *o, double lr) {
    o->step++;
    /* as torch: the betas and 1 - beta each rounded once to float32 */
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    const float bc1 = (float)(1.0 - pow(o->beta1, (double)o->step));
    const float bc2 = (float)(1.0 - pow(o->beta2, (double)o->step));
    const float flr = (float)lr, decay = (float)(1.0 - lr * o->weight_decay);
    size_t off = 0;
    for (int i = 0; i < o->pl->n; i++) {
        const param_ref *r = &o->pl->p[i];
        float *p = r->data, *m = o->m + off, *v = o->v + off;
        const float *g = r->grad;
        const float dk = r->decay ? decay : 1.0f;
        for (size_t k = 0; k < r->n; k++) {
            m[k] = b1 * m[k] + c1 * g[k];
            v[k] = b2 * v[k] + c2 * g[k] * g[k];
            float mhat = m[k] / bc1, vhat = v[k] / bc2;
            p[k] = p[k] * dk - flr * mhat / (sqrtf(vhat) + eps);
        }
        off += r->n;
    }
}

/* ---- schedule ------------------------------------------------------------- */

double lr_schedule(sched_kind k, double base, long step, long total, long warmup,
                   double min_ratio) {
    if (warmup > 0 && step < warmup) return base * (double)(step + 1) / (double)warmup;
    if (k == SCHED_CONSTANT || total <= warmup) return base;
    double t = (double)(step - warmup) / (double)(total - warmup);
    if (t > 1) t = 1;
    double lo = base * min_ratio;
    if (k == SCHED_LINEAR) return lo + (base - lo) * (1.0 - t);
    return lo + (base - lo) * 0.5 * (1.0 + cos(M_PI * t));
}

/* ---- checkpoints ------------------------------------------------------------ */

#define SRC_MAX 32

typedef struct {
    long step;
    int epoch, pos;               /* source 0 */
    int n_src;
    int epochs[SRC_MAX], poss[SRC_MAX]; /* sources 1.. (multi-source runs) */
    double best_val;
    long tokens;
    double seconds;
} ckpt_state;

static int ckpt_save(const char *path, const param_list *pl, const adamw *o, const ckpt_state *s,
                     const char *what, lc_err *err) {
    tensor_writer *w;
    if (tensor_writer_open(&w, path, TW_HDF5, err)) return LC_FAIL;
    char buf[64], name[256];
    int rc = LC_OK;
#define META(k, fmt, v)                                                  \
    do {                                                                 \
        snprintf(buf, sizeof buf, fmt, v);                               \
        if (rc == LC_OK) rc = tensor_writer_meta(w, k, buf, err);       \
    } while (0)
    META("format", "%s", "lcmt-checkpoint");
    META("version", "%d", 1);
    META("program", "%s", what);
    META("step", "%ld", s->step);
    META("adam_step", "%ld", o->step);
    META("epoch", "%d", s->epoch);
    META("pos", "%d", s->pos);
    for (int k = 1; k < s->n_src; k++) {
        char key[32];
        snprintf(key, sizeof key, "epoch.%d", k);
        META(key, "%d", s->epochs[k]);
        snprintf(key, sizeof key, "pos.%d", k);
        META(key, "%d", s->poss[k]);
    }
    META("best_val", "%.17g", s->best_val);
    META("tokens", "%ld", s->tokens);
    META("seconds", "%.17g", s->seconds);
#undef META
    size_t off = 0;
    for (int i = 0; i < pl->n && rc == LC_OK; i++) {
        const param_ref *r = &pl->p[i];
        int64_t shape[1] = {(int64_t)r->n};
        snprintf(name, sizeof name, "param.%s", r->name);
        rc = tensor_writer_add_f32(w, name, 1, shape, r->data, DT_F32, err);
        snprintf(name, sizeof name, "adam_m.%s", r->name);
        if (rc == LC_OK) rc = tensor_writer_add_f32(w, name, 1, shape, o->m + off, DT_F32, err);
        snprintf(name, sizeof name, "adam_v.%s", r->name);
        if (rc == LC_OK) rc = tensor_writer_add_f32(w, name, 1, shape, o->v + off, DT_F32, err);
        off += r->n;
    }
    if (rc != LC_OK) {
        tensor_writer_abort(w);
        return LC_FAIL;
    }
    return tensor_writer_close(w, err);
}

static int meta_long(tensor_file *tf, const char *key, long *out, lc_err *err) {
    const char *v = tensor_file_meta(tf, key);
    char *end;
    if (!v) return lc_errf(err, "%s: attribute '%s': missing", tensor_file_path(tf), key);
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v)
        return lc_errf(err, "%s: attribute '%s': expected an integer, found '%s'", tensor_file_path(tf), key, v);
    *out = x;
    return LC_OK;
}

static int ckpt_load(const char *path, param_list *pl, adamw *o, ckpt_state *s, lc_err *err) {
    tensor_file *tf;
    if (tensor_file_open(&tf, path, err)) return LC_FAIL;
    int rc = LC_FAIL;
    const char *fmt = tensor_file_meta(tf, "format");
    if (!fmt || strcmp(fmt, "lcmt-checkpoint")) {
        lc_errf(err, "%s: not a checkpoint (attribute 'format' is %s)", path, fmt ? fmt : "missing");
        goto done;
    }
    long v, epoch, pos, tokens;
    if (meta_long(tf, "version", &v, err) || meta_long(tf, "step", &s->step, err) ||
        meta_long(tf, "adam_step", &o->step, err) || meta_long(tf, "epoch", &epoch, err) ||
        meta_long(tf, "pos", &pos, err) || meta_long(tf, "tokens", &tokens, err))
        goto done;
    if (v != 1) {
        lc_errf(err, "%s: checkpoint version %ld, this build reads 1", path, v);
        goto done;
    }
    s->epoch = (int)epoch, s->pos = (int)pos, s->tokens = tokens;
    for (int k = 1; k < s->n_src; k++) {
        char key[32];
        long e, p;
        snprintf(key, sizeof key, "epoch.%d", k);
        if (meta_long(tf, key, &e, err)) goto done;
        snprintf(key, sizeof key, "pos.%d", k);
        if (meta_long(tf, key, &p, err)) goto done;
        s->epochs[k] = (int)e, s->poss[k] = (int)p;
    }
    const char *bv = tensor_file_meta(tf, "best_val"), *sec = tensor_file_meta(tf, "seconds");
    s->best_val = bv ? strtod(bv, NULL) : INFINITY;
    s->seconds = sec ? strtod(sec, NULL) : 0;
    char name[256];
    size_t off = 0;
    for (int i = 0; i < pl->n; i++) {
        param_ref *r = &pl->p[i];
        int64_t shape[1] = {(int64_t)r->n};
        snprintf(name, sizeof name, "param.%s", r->name);
        if (tensor_file_read_f32(tf, name, 1, shape, r->data, err)) goto done;
        snprintf(name, sizeof name, "adam_m.%s", r->name);
        if (tensor_file_read_f32(tf, name, 1, shape, o->m + off, err)) goto done;
        snprintf(name, sizeof name, "adam_v.%s", r->name);
        if (tensor_file_read_f32(tf, name, 1, shape, o->v + off, err)) goto done;
        off += r->n;
    }
    if (tensor_file_count(tf) != 3 * pl->n) {
        lc_errf(err, "%s: checkpoint has %d tensors, this run trains %d (different configuration?)",
                path, tensor_file_count(tf) / 3, pl->n);
        goto done;
    }
    rc = LC_OK;
done:
    tensor_file_free(tf);
    return rc;
}

/* ---- evaluation ------------------------------------------------------------- */

int eval_loss(model *m, const adapter_set *ad, const dataset *d, int B, int T, int pad_id,
              int max_batches, double *loss, lc_err *err) {
    return eval_loss_dist(m, ad, d, B, T, pad_id, max_batches, NULL, loss, err);
}

int eval_loss_dist(model *m, const adapter_set *ad, const dataset *d, int B, int T, int pad_id,
                   int max_batches, const lc_dist *dist, double *loss, lc_err *err) {
    const int N = lc_dist_size(dist), rank = lc_dist_rank(dist);
    model_acts *a = NULL;
    batch_iter it = {0};
    int nbt = (d->n + B - 1) / B;
    if (max_batches > 0 && nbt > max_batches) nbt = max_batches;
    int *tok = malloc(sizeof(int) * B * T), *tgt = malloc(sizeof(int) * B * T);
    double *part = calloc(2 * (size_t)(nbt ? nbt : 1), sizeof(double)); /* (loss * n, n) per batch */
    int rc = LC_FAIL;
    if (!tok || !tgt || !part) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (model_acts_init(&a, m, ad, B, T, 0, err) || batch_iter_init(&it, d->n, 0, 0, err)) goto done;
    for (int nb = 0; nb < nbt; nb++) {
        int start = nb * B, b = d->n - start < B ? d->n - start : B, n_loss, Tb;
        float l;
        /* every rank walks every batch (the iterator's state), computes its own */
        if (batch_next_fit(&it, d, b, T, pad_id, tok, tgt, &n_loss, &Tb, err)) goto done;
        if (n_loss == 0 || nb % N != rank) continue;
        if (model_forward(m, a, tok, tgt, b, Tb, &l, err)) goto done;
        part[2 * nb] = (double)l * n_loss;
        part[2 * nb + 1] = n_loss;
    }
    /* one rank holds each batch's figures, the others zeros: the sum is exact */
    if (lc_dist_allreduce_sum_f64(dist, part, 2 * (size_t)nbt, err)) goto done;
    double sum = 0;
    long count = 0;
    for (int nb = 0; nb < nbt; nb++) {
        if (part[2 * nb + 1] == 0) continue;
        sum += part[2 * nb];
        count += (long)part[2 * nb + 1];
    }
    *loss = count ? sum / count : NAN;
    rc = LC_OK;
done:
    free(tok);
    free(tgt);
    free(part);
    batch_iter_free(&it);
    model_acts_free(a);
    return rc;
}

/* ---- the loop --------------------------------------------------------------- */

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* On --resume: metrics.jsonl keeps only the lines up to the checkpoint's step, rewritten
 * atomically. A line is kept only when it is whole (ends in '\n') and parses as a JSON
 * object with a numeric "step" <= step, so a line torn by a kill never survives. */
static int truncate_log(const char *path, long step, lc_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return LC_OK;
    size_t n, o = 0;
    char *text = lc_read_file(path, &n, err);
    if (!text) return LC_FAIL;
    char *out = malloc(n + 2);
    if (!out) {
        free(text);
        return lc_errf(err, "%s: out of memory", path);
    }
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsObject(j) && cJSON_IsNumber(js) && js->valuedouble <= (double)step) {
            memcpy(out + o, line, (size_t)(nl - line));
            o += (size_t)(nl - line);
            out[o++] = '\n';
        }
        cJSON_Delete(j);
    }
    out[o ? o - 1 : 0] = 0; /* lc_write_text_atomic adds the final newline */
    int rc = LC_OK;
    if (o) rc = lc_write_text_atomic(path, out, err);
    else if (unlink(path) != 0) rc = lc_errf(err, "%s: cannot remove: %s", path, strerror(errno));
    free(out);
    free(text);
    return rc;
}

/* Appends one metrics line with write(2); a failed write is cut off
 * again (ftruncate to the previous size), so the log keeps only whole lines, and is an
 * error naming the file. */
static int log_line(int fd, const char *path, lc_err *err, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line) return lc_errf(err, "%s: metrics line too long", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) return lc_errf(err, "%s: cannot stat: %s", path, strerror(errno));
    ssize_t w = 0, k = 1;
    while (w < n && (k = write(fd, line + w, (size_t)(n - w))) > 0) w += k;
    if (w == n) return LC_OK;
    int e = k < 0 ? errno : 0;
    if (ftruncate(fd, sb.st_size) != 0) { /* the torn line is dropped on --resume anyway */
    }
    return lc_errf(err, "%s: write failed: %s (the log keeps its earlier lines)", path,
                   e ? strerror(e) : "short write");
}

/* The adapter's folder (best/, final/) written by save into a temporary
 * folder and put in place in one step: a kill or a failure leaves the
 * previous folder whole (a PEFT folder is two files that must match). */
static int save_dir(adapter_save_fn save, void *save_ctx, const char *dir, lc_err *err) {
    return lc_dir_write(dir, 0, save, save_ctx, err);
}

static uint64_t mix_seed(uint64_t seed, long step, int micro) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)step << 16) ^ (uint64_t)micro;
    x = (x ^ (x >> 31)) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x ? x : 1;
}

/* A unit's share of the step's loss: its mean token loss l over n_u of the
 * micro-batch's n_tot tokens, over grad_accum micro-batches (one unit per
 * micro-batch: l / grad_accum in float, as before sub-batches existed). */
static double unit_loss(float l, int n_u, int n_tot, int S, int grad_accum) {
    if (S == 1) return l / grad_accum;
    return (double)l * n_u / n_tot / grad_accum;
}

int train_run(model *m, const adapter_set *ad, param_list *pl, const dataset *train,
              const dataset *val, int pad_id, const train_opts *o, int resume,
              adapter_save_fn save, void *save_ctx, train_result *res, lc_err *err) {
    train_source src = {m, ad, train, val};
    return train_run_multi(&src, 1, pl, pad_id, o, resume, save, save_ctx, res, err);
}

int train_sources_val_loss(const train_source *src, int n_src, const train_opts *o, int pad_id,
                           double *out, lc_err *err) {
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n_src; i++) {
        if (!src[i].val) continue;
        double l;
        if (eval_loss_dist(src[i].m, src[i].ad, src[i].val, o->batch_size, o->seq_len, pad_id,
                           o->eval_batches, o->dist, &l, err))
            return LC_FAIL;
        sum += l, k++;
    }
    *out = k ? sum / k : NAN;
    return LC_OK;
}

int train_run_multi(const train_source *src, int n_src, param_list *pl, int pad_id,
                    const train_opts *o, int resume, adapter_save_fn save, void *save_ctx,
                    train_result *res, lc_err *err) {
    const int B = o->batch_size, T = o->seq_len;
    const char *what = o->what ? o->what : "train";
    char ckpt[4096], logp[4096], dir[4096];
    if (n_src < 1 || n_src > SRC_MAX) return lc_errf(err, "%s: 1 to %d data sources, found %d", what, SRC_MAX, n_src);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", o->out_dir);
    snprintf(logp, sizeof logp, "%s/metrics.jsonl", o->out_dir);
    const lc_dist *dist = o->dist;
    const int N = lc_dist_size(dist), rank = lc_dist_rank(dist), writer = rank == 0;
    if (writer && lc_make_dirs(o->out_dir, err)) return LC_FAIL;
    int have_val = 0;
    for (int k = 0; k < n_src; k++) {
        if (src[k].train->n == 0) return lc_errf(err, "%s: the training set is empty", src[k].train->path);
        have_val |= src[k].val != NULL;
    }
    int lock = -1; /* a second run on this folder is refused (released at done) */
    if (writer && lc_dir_lock(o->out_dir, &lock, err)) return LC_FAIL;

    adamw opt = {0};
    model_acts *acts[SRC_MAX] = {0};
    batch_iter its[SRC_MAX] = {{0}};
    int log = -1;
    int *tok = malloc(sizeof(int) * B * T), *tgt = malloc(sizeof(int) * B * T);
    /* work units: grad_accum micro-batches x S sub-batches of mb rows */
    const int mb = o->micro_batch > 0 && o->micro_batch < B ? o->micro_batch : B;
    const int S = (B + mb - 1) / mb, U = o->grad_accum * S, per = (U + N - 1) / N;
    const size_t P = pl->total, slot = P + 2; /* a unit's gradient, its loss, its token count */
    float *acc = NULL, *mine = NULL, *all = NULL;
    int rc = LC_FAIL;
    if (!tok || !tgt) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (N == 1 && U > 1 && !(acc = lc_malloc(sizeof(float) * P, err))) goto done;
    if (N > 1 && (!(mine = lc_malloc(sizeof(float) * slot * per, err)) ||
                  !(all = lc_malloc(sizeof(float) * slot * per * N, err))))
        goto done;
    if (adamw_init(&opt, pl, o->beta1, o->beta2, o->eps, o->weight_decay, err)) goto done;
    for (int k = 0; k < n_src; k++) {
        /* source 0 keeps the single-source seed (and checkpoint layout) */
        if (model_acts_init(&acts[k], src[k].m, src[k].ad, B, T, ACTS_BACKWARD, err) ||
            batch_iter_init(&its[k], src[k].train->n, o->seed + (uint64_t)k * 0x9E3779B9ull,
                            o->shuffle, err))
            goto done;
    }

    ckpt_state st = {0};
    st.n_src = n_src;
    st.best_val = INFINITY;
    struct stat sb;
    /* rank 0 reads the checkpoint and sends it to the others (no shared
     * file system needed for it) */
    int found = writer && resume && stat(ckpt, &sb) == 0;
    if (found && ckpt_load(ckpt, pl, &opt, &st, err)) goto done;
    if (lc_dist_bcast(dist, &found, sizeof found, 0, err)) goto done;
    if (found && N > 1) {
        if (lc_dist_bcast(dist, &st, sizeof st, 0, err) ||
            lc_dist_bcast(dist, &opt.step, sizeof opt.step, 0, err) ||
            lc_dist_bcast(dist, opt.m, sizeof(float) * P, 0, err) ||
            lc_dist_bcast(dist, opt.v, sizeof(float) * P, 0, err))
            goto done;
        for (int i = 0; i < pl->n; i++)
            if (lc_dist_bcast(dist, pl->p[i].data, sizeof(float) * pl->p[i].n, 0, err)) goto done;
    }
    if (found) {
        batch_iter_seek(&its[0], st.epoch, st.pos);
        for (int k = 1; k < n_src; k++) batch_iter_seek(&its[k], st.epochs[k], st.poss[k]);
        if (writer) {
            if (truncate_log(logp, st.step, err)) goto done;
            fprintf(stderr, "%s: resumed from %s at step %ld\n", what, ckpt, st.step);
        }
    } else if (resume && writer) {
        fprintf(stderr, "%s: --resume: no checkpoint at %s, starting from step 0\n", what, ckpt);
    } else if (writer) {
        unlink(logp);
    }
    if (writer && (log = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        lc_errf(err, "%s: cannot open for writing: %s", logp, strerror(errno));
        goto done;
    }
    if (writer && N > 1)
        fprintf(stderr, "%s: %d ranks, %d work unit%s per step (%d x %d rows)\n", what, N, U,
                U == 1 ? "" : "s", o->grad_accum, mb);

    const int tty = writer && isatty(2);
    const double t_start = lc_now_s() - st.seconds;
    double t_last = lc_now_s();
    long tok_last = st.tokens;
    double loss_acc = 0, last_val = NAN, last_loss = NAN;
    int loss_n = 0;
    /* testing aid (tests/test_mpi.c): LC_TEST_KILL_RANK="R:S" has rank R
     * kill itself with SIGKILL at step S, as a crashed machine would */
    long kill_step = -1;
    const char *kr = getenv("LC_TEST_KILL_RANK");
    if (kr && atoi(kr) == rank && strchr(kr, ':')) kill_step = strtol(strchr(kr, ':') + 1, NULL, 10);
    for (long step = st.step; step < o->steps; step++) {
        if (step == kill_step) kill(getpid(), SIGKILL);
        param_list_zero_grad(pl);
        double step_loss = 0;
        long step_tokens = 0;
        int summed = 0; /* units added so far (N == 1, U > 1) */
        for (int micro = 0; micro < o->grad_accum; micro++) {
            int n_loss, Tb;
            /* sources take turns, one micro-batch each */
            const int k = (int)((step * o->grad_accum + micro) % n_src);
            /* every rank reads every micro-batch: the iterators stay in step */
            if (batch_next_fit(&its[k], src[k].train, B, T, pad_id, tok, tgt, &n_loss, &Tb, err))
                goto done;
            step_tokens += (long)B * Tb;
            int n_tot = 0; /* the batch's loss tokens (its mean's denominator) */
            for (int i = 0; i < B * Tb; i++) n_tot += tgt[i] != -1;
            for (int s = 0; s < S; s++) {
                const int u = micro * S + s, r0 = s * mb, bs = B - r0 < mb ? B - r0 : mb;
                if (u % N != rank) continue;
                int n_u = 0;
                for (int i = r0 * Tb; i < (r0 + bs) * Tb; i++) n_u += tgt[i] != -1;
                float l = 0;
                float *sl = N > 1 ? mine + (size_t)(u / N) * slot : NULL;
                if (n_u > 0) {
                    if (U > 1) param_list_zero_grad(pl);
                    model_acts_set_dropout(acts[k], mix_seed(o->seed, step, u));
                    if (model_forward(src[k].m, acts[k], tok + (size_t)r0 * Tb, tgt + (size_t)r0 * Tb, bs,
                                      Tb, &l, err)) {
                        lc_err_prefix(err, "%s: step %ld: ", what, step + 1);
                        goto done;
                    }
                    /* the batch's mean token loss: this unit's share n_u / n_loss */
                    float gs = S == 1 ? 1.0f / o->grad_accum
                                      : (float)((double)n_u / ((double)n_tot * o->grad_accum));
                    model_backward(src[k].m, acts[k], gs);
                }
                if (sl) { /* to be gathered */
                    size_t off = 0;
                    for (int i = 0; i < pl->n; i++) {
                        memcpy(sl + off, pl->p[i].grad, sizeof(float) * pl->p[i].n);
                        off += pl->p[i].n;
                    }
                    sl[P] = l, sl[P + 1] = (float)n_u;
                    continue;
                }
                if (n_u == 0) continue;
                step_loss += unit_loss(l, n_u, n_tot, S, o->grad_accum);
                if (U > 1) { /* acc (+)= this unit, in unit order */
                    size_t off = 0;
                    for (int i = 0; i < pl->n; i++) {
                        const float *g = pl->p[i].grad;
                        float *a = acc + off;
                        if (!summed) memcpy(a, g, sizeof(float) * pl->p[i].n);
                        else
                            for (size_t j = 0; j < pl->p[i].n; j++) a[j] += g[j];
                        off += pl->p[i].n;
                    }
                    summed++;
                }
            }
        }
        if (N > 1) {
            /* units of rank r sit at slots r*per .. r*per+per-1; pad the unused */
            for (int i = (U - rank + N - 1) / N; i < per; i++) mine[(size_t)i * slot + P + 1] = 0;
            if (lc_dist_allgather_f32(dist, mine, slot * per, all, err)) {
                lc_err_prefix(err, "%s: step %ld: ", what, step + 1);
                goto done;
            }
            /* the micro-batch of each unit gives its n_loss: recount from the units */
            for (int micro = 0; micro < o->grad_accum; micro++) {
                double n_mb = 0;
                for (int s = 0; s < S; s++) {
                    int u = micro * S + s;
                    n_mb += all[((size_t)(u % N) * per + u / N) * slot + P + 1];
                }
                for (int s = 0; s < S; s++) {
                    int u = micro * S + s;
                    const float *g = all + ((size_t)(u % N) * per + u / N) * slot;
                    if (g[P + 1] == 0) continue;
                    step_loss += unit_loss(g[P], (int)g[P + 1], (int)n_mb, S, o->grad_accum);
                    size_t off = 0;
                    for (int i = 0; i < pl->n; i++) {
                        float *d = pl->p[i].grad;
                        if (!summed) memcpy(d, g + off, sizeof(float) * pl->p[i].n);
                        else
                            for (size_t j = 0; j < pl->p[i].n; j++) d[j] += g[off + j];
                        off += pl->p[i].n;
                    }
                    summed++;
                }
            }
            if (!summed) param_list_zero_grad(pl);
        } else if (U > 1) {
            size_t off = 0;
            for (int i = 0; i < pl->n; i++) {
                if (summed) memcpy(pl->p[i].grad, acc + off, sizeof(float) * pl->p[i].n);
                else memset(pl->p[i].grad, 0, sizeof(float) * pl->p[i].n);
                off += pl->p[i].n;
            }
        }
        double gnorm = param_list_clip_grad_norm(pl, o->grad_clip);
        if (!isfinite(gnorm)) {
            lc_errf(err, "%s: step %ld: non-finite gradient norm (%g); stopped, the last good "
                    "checkpoint is %s", what, step + 1, gnorm, ckpt);
            goto done;
        }
        double lr = lr_schedule(o->schedule, o->lr, step, o->steps, o->warmup, o->min_lr_ratio);
        adamw_step(&opt, lr);
        st.step = step + 1;
        st.tokens += step_tokens;
        st.epoch = its[0].epoch, st.pos = its[0].pos;
        for (int k = 1; k < n_src; k++) st.epochs[k] = its[k].epoch, st.poss[k] = its[k].pos;
        loss_acc += step_loss;
        last_loss = step_loss;
        loss_n++;
        int last = st.step == o->steps;
        if (writer && (st.step % o->log_every == 0 || last || tty)) {
            double now = lc_now_s(), dt = now - t_last;
            double tps = dt > 0 ? (st.tokens - tok_last) / dt : 0;
            double elapsed = now - t_start;
            double eta = elapsed / (st.step) * (o->steps - st.step);
            char eta_s[32];
            fmt_time(eta_s, sizeof eta_s, eta);
            if (tty) {
                char bar[25];
                int fill = (int)(24 * st.step / o->steps);
                for (int i = 0; i < 24; i++) bar[i] = i < fill ? '#' : '.';
                bar[24] = 0;
                fprintf(stderr, "\r%s [%s] step %ld/%ld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s\033[K",
                        what, bar, st.step, o->steps, step_loss, lr, tps, eta_s);
            }
            if (st.step % o->log_every == 0 || last) {
                if (!tty)
                    fprintf(stderr, "%s: step %ld/%ld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s\n",
                            what, st.step, o->steps, loss_acc / loss_n, lr, tps, eta_s);
                if (log_line(log, logp, err,
                             "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, "
                             "\"tokens\": %ld, \"tok_per_s\": %.1f, \"seconds\": %.3f}\n",
                             st.step, loss_acc / loss_n, lr, gnorm, st.tokens, tps, elapsed))
                    goto done;
                loss_acc = 0, loss_n = 0;
                t_last = now, tok_last = st.tokens;
            }
        }
        if (have_val && o->eval_every > 0 && (st.step % o->eval_every == 0 || last)) {
            if (train_sources_val_loss(src, n_src, o, pad_id, &last_val, err)) goto done;
            int better = last_val < st.best_val;
            if (better) st.best_val = last_val;
            if (writer) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "%s: step %ld: validation loss %.4f%s\n", what, st.step, last_val,
                        better ? " (best)" : "");
                if (log_line(log, logp, err, "{\"step\": %ld, \"val_loss\": %.6f, \"best_val\": %.6f}\n",
                             st.step, last_val, st.best_val))
                    goto done;
            }
            if (writer && better && o->keep_best && save) {
                snprintf(dir, sizeof dir, "%s/best", o->out_dir);
                if (save_dir(save, save_ctx, dir, err)) goto done;
            }
        }
        if ((o->checkpoint_every > 0 && st.step % o->checkpoint_every == 0) || last) {
            st.seconds = lc_now_s() - t_start;
            if (writer && ckpt_save(ckpt, pl, &opt, &st, what, err)) goto done;
            /* the file is whole before any rank may stop (stop_after, errors) */
            if (lc_dist_barrier(dist, err)) goto done;
        }
        if (o->stop_after > 0 && st.step >= o->stop_after && !last) {
            lc_errf(err, "%s: stopped after step %ld as asked (stop_after)", what, st.step);
            goto done;
        }
    }
    if (tty) fputc('\n', stderr);
    if (writer && save) {
        snprintf(dir, sizeof dir, "%s/final", o->out_dir);
        if (save_dir(save, save_ctx, dir, err)) goto done;
    }
    if (lc_dist_barrier(dist, err)) goto done;
    if (res) {
        res->steps_done = st.step;
        res->last_loss = last_loss;
        res->best_val = st.best_val;
        res->last_val = last_val;
        res->seconds = lc_now_s() - t_start;
        res->tokens = st.tokens;
    }
    rc = LC_OK;
done:
    if (log >= 0 && close(log) != 0 && rc == LC_OK)
        rc = lc_errf(err, "%s: write failed (close): %s", logp, strerror(errno));
    lc_dir_unlock(lock);
    free(tok);
    free(tgt);
    free(acc);
    free(mine);
    free(all);
    for (int k = 0; k < n_src; k++) {
        batch_iter_free(&its[k]);
        model_acts_free(acts[k]);
    }
    adamw_free(&opt);
    return rc;
}

/* ---- config ------------------------------------------------------------------ */

int train_opts_from_cfg(cfg *c, int max_len, int keep_best_default, train_opts *o, lc_err *err) {
    const char *src = cfg_path(c);
    int sched, steps;
    long long seed, warmup;
    memset(o, 0, sizeof *o);
    if (cfg_int(c, "training.batch_size", 0, 8, &o->batch_size, err) ||
        cfg_int(c, "training.seq_len", 0, max_len - 1, &o->seq_len, err) ||
        cfg_int(c, "training.grad_accum", 0, 1, &o->grad_accum, err) ||
        cfg_int(c, "training.micro_batch_size", 0, 0, &o->micro_batch, err) ||
        cfg_int(c, "training.steps", 1, 0, &steps, err) ||
        cfg_i64(c, "training.seed", 0, 1, &seed, err) ||
        cfg_bool(c, "training.shuffle", 0, 1, &o->shuffle, err) ||
        cfg_int(c, "training.eval_every", 0, 100, &o->eval_every, err) ||
        cfg_int(c, "training.eval_batches", 0, 0, &o->eval_batches, err) ||
        cfg_int(c, "training.checkpoint_every", 0, 100, &o->checkpoint_every, err) ||
        cfg_int(c, "training.log_every", 0, 10, &o->log_every, err) ||
        cfg_bool(c, "training.keep_best", 0, keep_best_default, &o->keep_best, err) ||
        cfg_float(c, "optimizer.lr", 0, 1e-3, &o->lr, err) ||
        cfg_float(c, "optimizer.beta1", 0, 0.9, &o->beta1, err) ||
        cfg_float(c, "optimizer.beta2", 0, 0.999, &o->beta2, err) ||
        cfg_float(c, "optimizer.eps", 0, 1e-8, &o->eps, err) ||
        cfg_float(c, "optimizer.weight_decay", 0, 0.0, &o->weight_decay, err) ||
        cfg_float(c, "optimizer.grad_clip", 0, 1.0, &o->grad_clip, err) ||
        cfg_enum(c, "optimizer.schedule", 0, SCHED_COSINE, SCHED_NAMES, &sched, err) ||
        cfg_i64(c, "optimizer.warmup_steps", 0, 0, &warmup, err) ||
        cfg_float(c, "optimizer.min_lr_ratio", 0, 0.0, &o->min_lr_ratio, err))
        return LC_FAIL;
    o->steps = steps, o->seed = (uint64_t)seed, o->schedule = sched, o->warmup = (long)warmup;
    if (o->micro_batch < 0)
        return lc_errf(err, "%s: training.micro_batch_size must be >= 0 (0 = the whole batch), found %d",
                       src, o->micro_batch);
    if (o->batch_size <= 0 || o->seq_len <= 0 || o->grad_accum <= 0 || steps <= 0 ||
        max_len < 2 || o->log_every <= 0 || warmup < 0)
        return lc_errf(err, "%s: training.batch_size, seq_len, grad_accum, steps, log_every must be "
                       "positive, warmup_steps >= 0 and data.max_len >= 2", src);
    if (max_len > o->seq_len + 1)
        return lc_errf(err, "%s: data.max_len (%d) must be <= training.seq_len + 1 (%d)", src,
                       max_len, o->seq_len + 1);
    if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
        !(o->eps > 0) || o->weight_decay < 0 || o->min_lr_ratio < 0 || o->min_lr_ratio > 1)
        return lc_errf(err, "%s: optimizer values out of range (lr > 0, 0 <= betas < 1, eps > 0, "
                       "weight_decay >= 0, 0 <= min_lr_ratio <= 1)", src);
    return LC_OK;
}
