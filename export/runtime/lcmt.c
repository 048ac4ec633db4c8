/* lcmt.c: the on-device runtime (lcmt.h) over the engine's kernels, the
 * base readers, the tokenizers, the bundle reader and the decode loop. */
#include "lcmt.h"
#include "integrity.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "recipe.h"
#include "generation.h"
#include "lc_time.h"
#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "model_map.h"
#include "prompt.h"
#include "template.h"
#include "tokenizer.h"

struct lcmt_model {
    model m;
    model_map *map;
    tokenizer *tok; /* NULL when the model has none */
    char *path;     /* as given to lcmt_model_open (the SHA-256 checks re-read it) */
};

typedef struct {
    lcmt_task_info info;
    char *results; /* printed results JSON */
    bundle_task bt;
    int loaded;
    /* generation settings the task was evaluated with (-1 / NULL: none) */
    int max_new;
    float temperature, top_p;
    const char *stop[GEN_MAX_STOP];
    int n_stop;
    /* how calibrate built the task's prompts (prompt.h) */
    int chat;           /* "prompt_format": "chat" */
    const char *system; /* "system", or NULL */
    int add_bos;        /* "add_bos" (default true) */
} rt_task;

struct lcmt_bundle {
    const lcmt_model *model;
    bundle *b;
    rt_task *t;
    int n;
};

struct lcmt_session {
    const lcmt_model *model;
    const lcmt_bundle *bundle;
    const rt_task *task; /* NULL: the base alone */
    lcmt_session_params p;
    const model *run_m;  /* what the decoder runs: the base, or a dense task's copy */
    model_decoder *dec;
    /* adapters from files (lcmt_session_new_with_adapters), owned */
    lora loras[ADAPTER_MAX];
    calib cals[ADAPTER_MAX];
    int n_loras, n_cals;
    adapter_set ad;
    lcmt_answer_stats stats;
    int n_ctx;
    atomic_int cancel;
    char err[1024];
};

const char *lcmt_status_str(lcmt_status s) {
    switch (s) {
    case LCMT_OK: return "ok";
    case LCMT_ERR_ARG: return "invalid argument";
    case LCMT_ERR_IO: return "cannot read the file";
    case LCMT_ERR_WRONG_BASE: return "bundle made for another base model";
    case LCMT_ERR_NO_TASK: return "no such task";
    case LCMT_ERR_UNSUPPORTED: return "unsupported";
    case LCMT_ERR_CANCELLED: return "cancelled";
    case LCMT_ERR_NOMEM: return "out of memory";
    case LCMT_ERR_INTEGRITY: return "SHA-256 mismatch";
    default: return "failed";
    }
}

static lcmt_status put_msg(char *msg, size_t cap, lcmt_status st, const char *text) {
    if (msg && cap) snprintf(msg, cap, "%s", text);
    return st;
}

void lcmt_free(void *p) { free(p); }

/* ---- model --------------------------------------------------------------------- */

lcmt_model_params lcmt_model_default_params(void) {
    lcmt_model_params p = {0};
    return p;
}

lcmt_status lcmt_model_open(const char *path, const lcmt_model_params *params, lcmt_model **out,
                            char *msg, size_t msg_cap) {
    if (!out) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_model_open: NULL output");
    *out = NULL;
    if (!path || !path[0]) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_model_open: empty path");
    lcmt_model_params p = params ? *params : lcmt_model_default_params();
    lcmt_model *m = calloc(1, sizeof *m);
    if (!m) return put_msg(msg, msg_cap, LCMT_ERR_NOMEM, "out of memory");
    lc_err err = {{0}};
    if (!(m->path = strdup(path))) {
        free(m);
        return put_msg(msg, msg_cap, LCMT_ERR_NOMEM, "out of memory");
    }
    if (model_map_open(&m->map, &m->m, path, p.copy_weights, &err)) {
        free(m->path);
        free(m);
        return put_msg(msg, msg_cap, LCMT_ERR_IO, err.msg);
    }
    char found[4096];
    const char *tp = p.tokenizer_path;
    if (!tp && model_tokenizer_path(path, m->m.cfg.vocab_size, found, sizeof found, &err) == LC_OK) tp = found;
    if (tp && tokenizer_load(&m->tok, tp, m->m.cfg.vocab_size, &err)) {
        lcmt_model_free(m);
        return put_msg(msg, msg_cap, LCMT_ERR_IO, err.msg);
    }
    if (!tp && !p.tokenizer_optional) {
        char t[1200];
        snprintf(t, sizeof t, "%s: no tokenizer found beside the model (%s); give tokenizer_path", path,
                 err.msg);
        lcmt_model_free(m);
        return put_msg(msg, msg_cap, LCMT_ERR_IO, t);
    }
    if (p.base_type) {
        const int t = model_base_type_parse(p.base_type);
        if (t < 0) {
            lcmt_model_free(m);
            return put_msg(msg, msg_cap, LCMT_ERR_ARG,
                           "base_type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k");
        }
        if (t != m->m.base_type) {
            if (model_quantize(&m->m, t, &err)) {
                lcmt_model_free(m);
                return put_msg(msg, msg_cap, LCMT_ERR_NOMEM, err.msg);
            }
            /* every weight is in the model's own memory now: the float32
             * mapping would only stay resident beside it */
            model_map_detach(m->map, &m->m);
        }
    }
    *out = m;
    return LCMT_OK;
}

void lcmt_model_free(lcmt_model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    model_map_close(m->map, &m->m);
    free(m->path);
    free(m);
}

void lcmt_model_get_info(const lcmt_model *m, lcmt_model_info *info) {
    memset(info, 0, sizeof *info);
    if (!m) return;
    const model_config *c = &m->m.cfg;
    info->n_layers = c->n_layers, info->dim = c->dim, info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads, info->hidden_dim = c->hidden_dim;
    info->vocab_size = c->vocab_size, info->max_seq_len = c->max_seq_len;
    info->n_params = m->m.n_params;
    model_map_stats(m->map, &info->mapped_bytes, &info->owned_bytes);
    info->has_tokenizer = m->tok != NULL;
}

/* ---- bundle -------------------------------------------------------------------- */

lcmt_bundle_params lcmt_bundle_default_params(void) {
    lcmt_bundle_params p = {LCMT_VERIFY_SAMPLE, 0, NULL, NULL, NULL};
    return p;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

#ifdef LC_NO_LAPACK
/* 1 if the merge needs an SVD at load (no LAPACK in the runtime) */
static int needs_svd(const merge_spec *s) {
    return s->method == MERGE_SVD ||
           ((s->method == MERGE_TIES || s->method == MERGE_DARE_LINEAR || s->method == MERGE_DARE_TIES) &&
            s->svd_rank > 0);
}
#endif

/* floats of the task's prepared adapters (a view's n_params counts the
 * tensors it points at) */
static size_t adapter_bytes(const adapter_set *ad) {
    size_t n = 0;
    for (int i = 0; i < ad->n_loras; i++) n += ad->loras[i]->n_params;
    for (int i = 0; i < ad->n_cals; i++) n += ad->cals[i]->n_params;
    return n * sizeof(float);
}

/* Reads the task's settings and prepares it (or records why it cannot run). */
static int prepare_task(lcmt_bundle *rb, const cJSON *tj, const lcmt_bundle_params *p, rt_task *t,
                        lc_err *err) {
    t->info.name = jstr(tj, "name");
    t->info.method = jstr(tj, "method");
    t->info.prompt_template = jstr(tj, "prompt_template");
    const char *pf = jstr(tj, "prompt_format");
    t->chat = pf && !strcmp(pf, "chat");
    t->system = jstr(tj, "system");
    t->add_bos = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(tj, "add_bos"));
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(tj, "merge");
    t->info.merge = jstr(mj, "method");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(tj, "results");
    t->results = res ? cJSON_PrintUnformatted(res) : strdup("{}");
    t->info.results_json = t->results;
    t->max_new = -1, t->temperature = -1, t->top_p = -1;
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(res, "generation"), *x;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "max_new_tokens")) && x->valuedouble >= 0 &&
        x->valuedouble < 1e9)
        t->max_new = (int)x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "temperature")) && x->valuedouble >= 0)
        t->temperature = (float)x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "top_p")) && x->valuedouble > 0 &&
        x->valuedouble <= 1)
        t->top_p = (float)x->valuedouble;
    const cJSON *sj = cJSON_GetObjectItemCaseSensitive(gj, "stop"), *e;
    if (cJSON_IsArray(sj))
        cJSON_ArrayForEach(e, sj) if (cJSON_IsString(e) && e->valuestring[0] && t->n_stop < GEN_MAX_STOP)
            t->stop[t->n_stop++] = e->valuestring;
    t->info.max_new_tokens = t->max_new, t->info.temperature = t->temperature, t->info.top_p = t->top_p;
    t->info.n_stop = t->n_stop;
    if (!t->info.name) return lc_errf(err, "%s: manifest: a task has no name", bundle_path(rb->b));
    if (!t->results) return lc_errf(err, "out of memory");

    merge_spec spec;
    const char *names[ADAPTER_MAX];
    int n;
    if (merge_spec_from_json(mj, &spec, names, &n, err))
        return lc_err_prefix(err, "%s: task '%s': ", bundle_path(rb->b), t->info.name);
    if (p->only_task && strcmp(p->only_task, t->info.name)) {
        t->info.unsupported_why = "not prepared: the bundle was opened for another task only (only_task)";
        return LC_OK;
    }
    if (!merge_gives_lora(&spec) && !p->allow_dense_copy) {
        t->info.unsupported_why = "its merge is dense (it folds into a copy of the base weights, which "
                                  "the runtime makes only with allow_dense_copy); export it with a "
                                  "LoRA-form merge";
        return LC_OK;
    }
#ifdef LC_NO_LAPACK
    if (needs_svd(&spec)) {
        t->info.unsupported_why = "its merge needs an SVD at load, and the runtime has no LAPACK";
        return LC_OK;
    }
#endif
    /* LoRA-form merges never write the base (merged_model keeps m = base);
     * dense ones write their own copy */
    if (bundle_task_load_checked(rb->b, (model *)&rb->model->m, t->info.name, &t->bt, err)) return LC_FAIL;
    t->loaded = 1;
    t->info.supported = 1;
    t->info.adapter_bytes = adapter_bytes(&t->bt.ad);
    return LC_OK;
}

lcmt_status lcmt_bundle_open(const lcmt_model *model, const char *path, const lcmt_bundle_params *params,
                             lcmt_bundle **out, char *msg, size_t msg_cap) {
    if (!out) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_bundle_open: NULL output");
    *out = NULL;
    if (!model || !path) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_bundle_open: NULL model or path");
    lcmt_bundle_params p = params ? *params : lcmt_bundle_default_params();
    lcmt_bundle *rb = calloc(1, sizeof *rb);
    if (!rb) return put_msg(msg, msg_cap, LCMT_ERR_NOMEM, "out of memory");
    rb->model = model;
    lc_err err = {{0}};
    lcmt_status st = LCMT_ERR_IO;
    if (bundle_open(&rb->b, path, &err)) goto fail;
    if ((p.bundle_sha256 || p.base_sha256 || p.verify == LCMT_VERIFY_SHA256) && !lc_sha256_available()) {
        st = LCMT_ERR_UNSUPPORTED;
        snprintf(err.msg, sizeof err.msg, "%s: a SHA-256 check was asked for, but this runtime was built "
                 "without libcrypto (-DLCMT_SHA256=OFF)", path);
        goto fail;
    }
    int r;
    if (p.bundle_sha256 && (r = bundle_check_sha256(rb->b, p.bundle_sha256, &err))) {
        st = r == LC_SHA256_MISMATCH ? LCMT_ERR_INTEGRITY : LCMT_ERR_ARG;
        goto fail;
    }
    if ((p.verify != LCMT_VERIFY_SAMPLE ? bundle_check_base(rb->b, &model->m, &err)
                                        : bundle_check_base_quick(rb->b, &model->m, &err))) {
        st = LCMT_ERR_WRONG_BASE;
        goto fail;
    }
    if (p.verify == LCMT_VERIFY_SHA256 && (r = bundle_check_base_sha256(rb->b, model->path, &err))) {
        st = r == LC_SHA256_MISMATCH ? LCMT_ERR_WRONG_BASE : LCMT_ERR_IO;
        goto fail;
    }
    if (p.base_sha256 && (r = base_check_sha256(model->path, p.base_sha256, &err))) {
        st = r == LC_SHA256_MISMATCH ? LCMT_ERR_INTEGRITY : LCMT_ERR_ARG;
        goto fail;
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(bundle_manifest(rb->b), "tasks");
    int k = cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : 0;
    rb->t = calloc((size_t)(k ? k : 1), sizeof *rb->t);
    if (!rb->t) {
        st = LCMT_ERR_NOMEM;
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    for (const cJSON *tj = k ? ts->child : NULL; tj; tj = tj->next) {
        rt_task *t = &rb->t[rb->n++];
        if (prepare_task(rb, tj, &p, t, &err)) goto fail;
    }
    *out = rb;
    return LCMT_OK;
fail:
    lcmt_bundle_free(rb);
    return put_msg(msg, msg_cap, st, err.msg);
}

void lcmt_bundle_free(lcmt_bundle *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        if (b->t[i].loaded) bundle_task_free(&b->t[i].bt);
        free(b->t[i].results);
    }
    free(b->t);
    bundle_close(b->b);
    free(b);
}

int lcmt_bundle_n_tasks(const lcmt_bundle *b) { return b ? b->n : 0; }

void lcmt_bundle_get_info(const lcmt_bundle *b, lcmt_bundle_info *info) {
    memset(info, 0, sizeof *info);
    if (!b) return;
    info->file_bytes = bundle_size(b->b);
    bundle_stats(b->b, &info->converted_bytes, &info->mapped_bytes);
}

lcmt_status lcmt_bundle_task(const lcmt_bundle *b, int i, lcmt_task_info *info) {
    if (!b || !info || i < 0 || i >= b->n) return LCMT_ERR_ARG;
    *info = b->t[i].info;
    return LCMT_OK;
}

int lcmt_bundle_find_task(const lcmt_bundle *b, const char *name) {
    for (int i = 0; b && name && i < b->n; i++)
        if (!strcmp(b->t[i].info.name, name)) return i;
    return -1;
}

/* ---- session ------------------------------------------------------------------- */

lcmt_session_params lcmt_session_default_params(void) {
    lcmt_session_params p = {.max_new_tokens = -1, .temperature = -1.0f, .top_p = -1.0f};
    return p;
}

/* Records the session's error message (cut at sizeof s->err) and returns st. */
static lcmt_status sess_err(lcmt_session *s, lcmt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lcmt_status sess_err(lcmt_session *s, lcmt_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return st;
}

/* The task named (or the bundle's only task), checked runnable. */
static lcmt_status find_task(lcmt_session *s, const lcmt_bundle *b, const char *task, const rt_task **out) {
    const char *path = bundle_path(b->b);
    if (!task) {
        if (b->n != 1) {
            snprintf(s->err, sizeof s->err, "%s holds %d tasks: name one", path, b->n);
            return LCMT_ERR_NO_TASK;
        }
        task = b->t[0].info.name;
    }
    int i = lcmt_bundle_find_task(b, task);
    if (i < 0) {
        char list[600] = "";
        for (int k = 0; k < b->n; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", k ? ", " : "", b->t[k].info.name);
        snprintf(s->err, sizeof s->err, "%s: no task '%s' in the bundle (it has %s)", path, task,
                 b->n ? list : "none");
        return LCMT_ERR_NO_TASK;
    }
    if (!b->t[i].info.supported) {
        snprintf(s->err, sizeof s->err, "%s: task '%s' is not supported by the runtime: %s", path, task,
                 b->t[i].info.unsupported_why);
        return LCMT_ERR_UNSUPPORTED;
    }
    *out = &b->t[i];
    return LCMT_OK;
}

lcmt_status lcmt_session_new(const lcmt_model *model, const lcmt_bundle *bundle, const char *task,
                             const lcmt_session_params *params, lcmt_session **out, char *msg,
                             size_t msg_cap) {
    if (!out) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new: NULL output");
    *out = NULL;
    if (!model) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new: NULL model");
    if (bundle && bundle->model != model)
        return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new: the bundle was opened for another model");
    if (task && !bundle) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new: a task needs a bundle");
    lcmt_session *s = calloc(1, sizeof *s);
    if (!s) return put_msg(msg, msg_cap, LCMT_ERR_NOMEM, "out of memory");
    s->model = model;
    s->bundle = bundle;
    s->p = params ? *params : lcmt_session_default_params();
    atomic_init(&s->cancel, 0);
    const int max_seq = model->m.cfg.max_seq_len;
    s->n_ctx = s->p.n_ctx > 0 && s->p.n_ctx < max_seq ? s->p.n_ctx : max_seq;
    if (s->n_ctx < 2) s->n_ctx = 2;
    lcmt_status st = LCMT_OK;
    if (bundle) st = find_task(s, bundle, task, &s->task);
    lc_err err = {{0}};
    s->run_m = s->task ? s->task->bt.m : &model->m;
    if (st == LCMT_OK && model_decoder_init(&s->dec, s->run_m, s->task ? &s->task->bt.ad : NULL, s->n_ctx, &err)) {
        st = LCMT_ERR_NOMEM;
        snprintf(s->err, sizeof s->err, "%s", err.msg);
    }
    if (st != LCMT_OK) {
        put_msg(msg, msg_cap, st, s->err);
        lcmt_session_free(s);
        return st;
    }
    *out = s;
    return LCMT_OK;
}

void lcmt_session_free(lcmt_session *s) {
    if (!s) return;
    model_decoder_free(s->dec);
    for (int i = 0; i < s->n_loras; i++) lora_free(&s->loras[i]);
    for (int i = 0; i < s->n_cals; i++) calib_free(&s->cals[i]);
    free(s);
}

lcmt_status lcmt_session_new_with_adapters(const lcmt_model *model, const lcmt_adapter_spec *specs, int n_specs,
                                           const lcmt_session_params *params, lcmt_session **out, char *msg,
                                           size_t msg_cap) {
    if (!out) return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new_with_adapters: NULL output");
    *out = NULL;
    if (!model || n_specs < 0 || (n_specs && !specs))
        return put_msg(msg, msg_cap, LCMT_ERR_ARG, "lcmt_session_new_with_adapters: NULL model or adapters");
    lcmt_session *s = NULL;
    lcmt_status st = lcmt_session_new(model, NULL, NULL, params, &s, msg, msg_cap);
    if (st != LCMT_OK) return st;
    lc_err err = {{0}};
    for (int i = 0; i < n_specs; i++) {
        const model_config *c = &model->m.cfg;
        int full = specs[i].is_calibration ? s->n_cals == ADAPTER_MAX : s->n_loras == ADAPTER_MAX;
        if (full) {
            snprintf(err.msg, sizeof err.msg, "at most %d LoRAs and %d calibrations", ADAPTER_MAX, ADAPTER_MAX);
            st = LCMT_ERR_ARG;
        } else if (specs[i].is_calibration ? calib_load(&s->cals[s->n_cals], c, specs[i].path, &err)
                                           : lora_load(&s->loras[s->n_loras], c, specs[i].path, &err)) {
            st = LCMT_ERR_IO;
        }
        if (st != LCMT_OK) break;
        if (specs[i].is_calibration) {
            s->ad.cals[s->ad.n_cals++] = &s->cals[s->n_cals++];
        } else {
            s->loras[s->n_loras].weight = specs[i].weight;
            s->ad.loras[s->ad.n_loras++] = &s->loras[s->n_loras++];
        }
    }
    if (st == LCMT_OK && model_decoder_set_adapters(s->dec, &s->ad, &err)) st = LCMT_ERR_ARG;
    if (st != LCMT_OK) {
        put_msg(msg, msg_cap, st, err.msg);
        lcmt_session_free(s);
        return st;
    }
    *out = s;
    return LCMT_OK;
}

lcmt_status lcmt_session_set_task(lcmt_session *s, const char *task) {
    if (!s) return LCMT_ERR_ARG;
    if (!s->bundle || !task) return sess_err(s, LCMT_ERR_ARG, "lcmt_session_set_task: %s",
                                             s->bundle ? "NULL task" : "the session has no bundle");
    const rt_task *t;
    lcmt_status st = find_task(s, s->bundle, task, &t);
    if (st != LCMT_OK) return st;
    lc_err err = {{0}};
    if (t->bt.m != s->run_m) { /* to or from a dense task: a decoder over that task's weights */
        model_decoder *d;
        if (model_decoder_init(&d, t->bt.m, &t->bt.ad, s->n_ctx, &err))
            return sess_err(s, LCMT_ERR_NOMEM, "%s", err.msg);
        model_decoder_free(s->dec);
        s->dec = d;
        s->run_m = t->bt.m;
    } else if (model_decoder_set_adapters(s->dec, &t->bt.ad, &err)) {
        return sess_err(s, LCMT_ERR_NOMEM, "%s", err.msg);
    }
    s->task = t;
    s->err[0] = 0;
    return LCMT_OK;
}

const char *lcmt_session_task(const lcmt_session *s) { return s && s->task ? s->task->info.name : NULL; }

void lcmt_session_cancel(lcmt_session *s) {
    if (s) atomic_store(&s->cancel, 1);
}

const char *lcmt_session_last_error(const lcmt_session *s) { return s ? s->err : ""; }

/* The prompt ids for input, malloc'd: the task's template, then the chat
 * template when the task was calibrated with it (or params.chat), then
 * prompt.h's one rule for BOS. */
static lcmt_status make_prompt(lcmt_session *s, const char *input, int **ids, int *n) {
    const model *m = &s->model->m;
    const tokenizer *tok = s->model->tok;
    if (!tok) return sess_err(s, LCMT_ERR_ARG, "the model was opened without a tokenizer: answer from ids");
    char *rendered = NULL, *chat_text = NULL;
    const char *prompt = input ? input : "";
    lc_err err = {{0}};
    if (s->task && !s->p.raw_prompt && s->task->info.prompt_template && input) {
        char which[300];
        snprintf(which, sizeof which, "task '%s': prompt template", s->task->info.name);
        if (tmpl_fill_one(s->task->info.prompt_template, input, which, &rendered, &err))
            return sess_err(s, LCMT_ERR_UNSUPPORTED, "%s; answer with raw_prompt", err.msg);
        prompt = rendered;
    }
    const int chat = input && (s->p.chat || (s->task && s->task->chat && !s->p.raw_prompt));
    const int add_bos = !s->p.no_bos && (!s->task || s->task->add_bos);
    if (chat) {
        const char *system = s->p.system ? s->p.system : s->task ? s->task->system : NULL;
        prompt_format pf = {0};
        int r = prompt_format_init(&pf, PROMPT_CHAT, tok, system, &err) ||
                prompt_render(&pf, prompt, &chat_text, &err);
        prompt_format_free(&pf);
        if (r) {
            free(rendered);
            return sess_err(s, LCMT_ERR_UNSUPPORTED, "chat template: %s", err.msg);
        }
        prompt = chat_text;
    }
    *ids = NULL, *n = 0;
    if (prompt[0] && prompt_encode(tok, prompt, strlen(prompt), add_bos, ids, n, &err)) {
        free(rendered), free(chat_text);
        return sess_err(s, LCMT_ERR_ARG, "input: %s", err.msg);
    }
    free(rendered), free(chat_text);
    if (*n == 0) { /* start from BOS alone, as generate does */
        free(*ids);
        *ids = malloc(sizeof(int));
        if (!*ids) return sess_err(s, LCMT_ERR_NOMEM, "out of memory");
        (*ids)[0] = tokenizer_bos(tok) >= 0 ? tokenizer_bos(tok) : m->cfg.bos_id >= 0 ? m->cfg.bos_id : 1;
        *n = 1;
    }
    if (*n > s->n_ctx) {
        const int n_tok = *n;
        free(*ids);
        *ids = NULL;
        return sess_err(s, LCMT_ERR_ARG, "the prompt has %d tokens, the model's context is %d", n_tok, s->n_ctx);
    }
    return LCMT_OK;
}

static int poll_cancel(void *ctx) { return atomic_load(&((lcmt_session *)ctx)->cancel); }

typedef struct {
    lcmt_session *s;
    const lcmt_stream *user;
} stream_ctx;

static void fwd_text(void *ctx, const char *t, size_t n) {
    stream_ctx *c = ctx;
    c->user->on_text(c->user->user, t, n);
}

static void fwd_token(void *ctx, int id) {
    stream_ctx *c = ctx;
    c->user->on_token(c->user->user, id);
}

static int poll_cancel_fwd(void *ctx) { return poll_cancel(((stream_ctx *)ctx)->s); }

/* Generates from prompt ids (taken over) as the session's task. */
static lcmt_status answer_core(lcmt_session *s, int *ids, int n_prompt, const lcmt_stream *stream, char **answer,
                               double t0) {
    const rt_task *t = s->task;
    lcmt_status st = LCMT_OK;
    int max_new = s->p.max_new_tokens >= 0 ? s->p.max_new_tokens : t && t->max_new >= 0 ? t->max_new : 256;
    gen_opts g = {0};
    g.temperature = s->p.temperature >= 0 ? s->p.temperature : t && t->temperature >= 0 ? t->temperature : 0.0f;
    g.top_p = s->p.top_p > 0 && s->p.top_p <= 1 ? s->p.top_p : t && t->top_p > 0 ? t->top_p : 0.9f;
    g.stop_at_bos = 1;
    if (s->p.n_stop > 0) {
        for (int i = 0; i < s->p.n_stop && i < GEN_MAX_STOP; i++)
            if (s->p.stop[i] && s->p.stop[i][0]) g.stop[g.n_stop++] = s->p.stop[i];
    } else if (t && !s->p.no_stop) {
        for (int i = 0; i < t->n_stop; i++) g.stop[g.n_stop++] = t->stop[i];
    }
    if (g.n_stop && !s->model->tok) {
        free(ids);
        atomic_store(&s->cancel, 0);
        return sess_err(s, LCMT_ERR_ARG, "stop strings need a tokenizer");
    }
    /* as generate: run to max_new or to the end of the context */
    int max_seq = n_prompt + max_new;
    if (max_seq > s->n_ctx) max_seq = s->n_ctx;
    if (max_seq < 2) max_seq = 2;
    g.max_new_tokens = max_seq - n_prompt < max_new ? max_seq - n_prompt : max_new;
    lc_rng rng;
    lc_rng_seed(&rng, s->p.seed);
    stream_ctx sc = {s, stream};
    gen_stream gs = {0};
    gs.ctx = &sc;
    if (stream && stream->on_text) gs.on_text = fwd_text;
    if (stream && stream->on_token) gs.on_token = fwd_token;
    gs.cancelled = poll_cancel_fwd;
    gs.trim_leading = t && !s->p.raw_prompt;
    lc_err err = {{0}};
    char *text = NULL;
    int n_new = 0;
    if (generate_text(s->dec, max_seq, s->run_m, s->model->tok, ids, n_prompt, &g, &rng, &gs, &text, &n_new,
                      &err)) {
        st = sess_err(s, LCMT_ERR_FAIL, "%s", err.msg);
    } else if (gs.was_cancelled) {
        st = LCMT_ERR_CANCELLED;
        snprintf(s->err, sizeof s->err, "cancelled after %d new tokens", n_new);
    }
    const double t1 = lc_now_s();
    s->stats = (lcmt_answer_stats){gs.n_prompt, n_new, gs.n_steps, t1 - t0, gs.n_steps ? gs.t_first - t0 : 0};
    free(ids);
    atomic_store(&s->cancel, 0);
    if (answer && st != LCMT_ERR_FAIL) *answer = text;
    else free(text);
    return st;
}

lcmt_status lcmt_session_answer(lcmt_session *s, const char *input, const lcmt_stream *stream, char **answer) {
    if (answer) *answer = NULL;
    if (!s) return LCMT_ERR_ARG;
    const double t0 = lc_now_s();
    s->err[0] = 0;
    int *ids = NULL, n_prompt = 0;
    lcmt_status st = make_prompt(s, input, &ids, &n_prompt);
    if (st != LCMT_OK) {
        atomic_store(&s->cancel, 0);
        return st;
    }
    return answer_core(s, ids, n_prompt, stream, answer, t0);
}

lcmt_status lcmt_session_answer_ids(lcmt_session *s, const int *prompt_ids, int n_ids, const lcmt_stream *stream,
                                    char **answer) {
    if (answer) *answer = NULL;
    if (!s) return LCMT_ERR_ARG;
    const double t0 = lc_now_s();
    s->err[0] = 0;
    const int V = s->model->m.cfg.vocab_size;
    if (!prompt_ids || n_ids < 1) return sess_err(s, LCMT_ERR_ARG, "the prompt is empty");
    if (n_ids > s->n_ctx)
        return sess_err(s, LCMT_ERR_ARG, "the prompt has %d tokens, the model's context is %d", n_ids, s->n_ctx);
    for (int i = 0; i < n_ids; i++)
        if (prompt_ids[i] < 0 || prompt_ids[i] >= V)
            return sess_err(s, LCMT_ERR_ARG, "prompt id %d at %d is not a token id in [0, %d)", prompt_ids[i], i, V);
    int *ids = malloc(sizeof(int) * (size_t)n_ids);
    if (!ids) return sess_err(s, LCMT_ERR_NOMEM, "out of memory");
    memcpy(ids, prompt_ids, sizeof(int) * (size_t)n_ids);
    return answer_core(s, ids, n_ids, stream, answer, t0);
}

void lcmt_session_last_stats(const lcmt_session *s, lcmt_answer_stats *stats) {
    if (s) *stats = s->stats;
    else memset(stats, 0, sizeof *stats);
}

lcmt_status lcmt_session_prompt_logits(lcmt_session *s, const char *input, float *out, int n_out) {
    if (!s) return LCMT_ERR_ARG;
    const int V = s->model->m.cfg.vocab_size;
    if (!out || n_out < V) {
        return sess_err(s, LCMT_ERR_ARG, "lcmt_session_prompt_logits: out needs %d floats", V);
    }
    int *ids = NULL, n = 0;
    lcmt_status st = make_prompt(s, input, &ids, &n);
    if (st != LCMT_OK) return st;
    lc_err err = {{0}};
    const float *lg = model_decoder_prefill(s->dec, ids, n, 0, &err);
    free(ids);
    if (!lg) return sess_err(s, LCMT_ERR_FAIL, "%s", err.msg);
    memcpy(out, lg, sizeof(float) * (size_t)V);
    return LCMT_OK;
}
