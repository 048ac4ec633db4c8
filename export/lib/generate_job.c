/* generate_job.c: the work of `generate` (see generate_job.h). */
#include "generate_job.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lc_time.h"
#include "lcmt.h"

generate_opts generate_opts_default(void) {
    generate_opts o;
    memset(&o, 0, sizeof o);
    o.max_new = 256;
    o.temperature = 1.0f;
    o.top_p = 0.9f;
    return o;
}

/* streaming to `out`: text as it becomes final, or ids */
typedef struct {
    FILE *out;
    int n_ids;
} out_state;

static void put_text(void *ctx, const char *s, size_t n) {
    out_state *o = ctx;
    fwrite(s, 1, n, o->out);
    fflush(o->out);
}

static void put_id(void *ctx, int id) {
    out_state *o = ctx;
    fprintf(o->out, o->n_ids++ ? " %d" : "%d", id);
    fflush(o->out);
}

/* --prompt-ids "1,2,3" (commas or spaces) into ids[] (room for strlen + 1) */
static int parse_ids(const char *p, int vocab, int *ids, int *n, lc_err *err) {
    *n = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= vocab)
            return lc_errf(err, "--prompt-ids: '%s' is not a token id in [0, %d)", p, vocab);
        ids[(*n)++] = (int)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (*n == 0) return lc_errf(err, "--prompt-ids is empty");
    return LC_OK;
}

/* --bundle: opens it, picks the task, fills the settings the command line
 * left to the task; *task_out is the task's name */
static int open_bundle(const generate_opts *o, lcmt_model *m, lcmt_bundle **bnd, const char **task_out,
                       int *max_new, float *temperature, float *top_p, FILE *log, lc_err *err) {
    char msg[1024];
    double tb = lc_now_s();
    lcmt_bundle_params bp = lcmt_bundle_default_params();
    bp.verify = o->verify_sha ? LCMT_VERIFY_SHA256 : LCMT_VERIFY_FULL; /* the reference tool checks every weight */
    char sidecar[4200];
    snprintf(sidecar, sizeof sidecar, "%s.sha256", o->bundle);
    bp.bundle_sha256 = o->bundle_pin ? o->bundle_pin : access(sidecar, R_OK) == 0 ? sidecar : NULL;
    bp.base_sha256 = o->base_pin;
    bp.allow_dense_copy = 1;
    bp.only_task = o->task;
    if (lcmt_bundle_open(m, o->bundle, &bp, bnd, msg, sizeof msg)) return lc_errf(err, "%s", msg);
    const int nt = lcmt_bundle_n_tasks(*bnd);
    const char *task = o->task;
    lcmt_task_info ti;
    if (!task && nt == 1 && lcmt_bundle_task(*bnd, 0, &ti) == LCMT_OK) task = ti.name;
    if (!task) return lc_errf(err, "%s holds %d tasks: name one with --task", o->bundle, nt);
    /* the settings the task was evaluated with, where the command line is silent */
    int k = lcmt_bundle_find_task(*bnd, task);
    if (k >= 0 && lcmt_bundle_task(*bnd, k, &ti) == LCMT_OK) {
        if (!o->set_max_new && ti.max_new_tokens >= 0) *max_new = ti.max_new_tokens;
        if (!o->set_temperature && ti.temperature >= 0) *temperature = ti.temperature;
        if (!o->set_top_p && ti.top_p > 0) *top_p = ti.top_p;
    }
    lcmt_bundle_info bi;
    lcmt_bundle_get_info(*bnd, &bi);
    if (!o->quiet) {
        fprintf(log, "generate: bundle %s, task '%s': %zu bytes, loaded in %.3f s (%zu bytes used "
                "in place from the mapping, %zu converted)\n", o->bundle, task,
                bi.file_bytes, lc_now_s() - tb, bi.mapped_bytes, bi.converted_bytes);
        fprintf(log, "generate: task '%s' answers with max %d new tokens, temperature %g, top-p %g, "
                "%d stop string(s)\n", task, *max_new, *temperature, *top_p,
                o->n_stops ? o->n_stops : o->no_stop ? 0 : ti.n_stop);
    }
    *task_out = task;
    return LC_OK;
}

/* --lora PATH[:WEIGHT] and --calib PATH: a session over them */
static lcmt_status session_with_adapters(const generate_opts *o, lcmt_model *m, const lcmt_session_params *sp,
                                         lcmt_session **s, char *msg, size_t cap) {
    lcmt_adapter_spec specs[2 * GENERATE_MAX_ADAPTERS];
    char paths[GENERATE_MAX_ADAPTERS][4096];
    int n = 0;
    for (int i = 0; i < o->n_lora; i++) {
        float w = 1.0f;
        snprintf(paths[i], sizeof paths[i], "%s", o->lora_specs[i]);
        char *colon = strrchr(paths[i], ':');
        if (colon && colon[1] && !strchr(colon, '/')) {
            char *end;
            float wv = strtof(colon + 1, &end);
            if (*end == 0) {
                *colon = 0;
                w = wv;
            }
        }
        specs[n++] = (lcmt_adapter_spec){paths[i], w, 0};
    }
    for (int i = 0; i < o->n_calib; i++) specs[n++] = (lcmt_adapter_spec){o->calib_paths[i], 1.0f, 1};
    return lcmt_session_new_with_adapters(m, specs, n, sp, s, msg, cap);
}

int generate_job_run(const generate_opts *o, FILE *out, FILE *log, lc_err *err) {
    int rc = LC_FAIL;
    char msg[1024];
    lcmt_model *m = NULL;
    lcmt_bundle *bnd = NULL;
    lcmt_session *s = NULL;
    int *ids = NULL;
    const char *task = NULL;
    int max_new = o->max_new, seed = o->seed;
    float temperature = o->temperature, top_p = o->top_p;
    double t0 = lc_now_s();

    lcmt_model_params mp = lcmt_model_default_params();
    mp.tokenizer_path = o->tok_path;
    mp.tokenizer_optional = !o->tok_path;
    mp.base_type = o->base_type;
    if (lcmt_model_open(o->model_path, &mp, &m, msg, sizeof msg)) {
        lc_errf(err, "%s", msg);
        goto done;
    }
    lcmt_model_info mi;
    lcmt_model_get_info(m, &mi);
    if (!mi.has_tokenizer && (!o->print_ids || o->prompt)) {
        lc_errf(err, "no tokenizer found for %s; give --tokenizer, or use --prompt-ids with --print-ids",
                o->model_path);
        goto done;
    }
    if (o->n_stops && !mi.has_tokenizer) {
        lc_errf(err, "stop strings need a tokenizer (give --tokenizer, or --no-stop)");
        goto done;
    }

    lcmt_session_params sp = lcmt_session_default_params();
    sp.raw_prompt = o->raw_prompt;
    sp.chat = o->chat;
    sp.system = o->system_msg;
    sp.no_bos = o->no_bos;
    sp.no_stop = o->no_stop;
    for (int i = 0; i < o->n_stops; i++) sp.stop[i] = o->stops[i];
    sp.n_stop = o->n_stops;
    if (!o->have_seed) seed = (int)(time(NULL) & 0x7fffffff);
    sp.seed = (uint64_t)seed;
    if (o->bundle && open_bundle(o, m, &bnd, &task, &max_new, &temperature, &top_p, log, err)) goto done;
    sp.max_new_tokens = max_new, sp.temperature = temperature, sp.top_p = top_p;
    lcmt_status st = bnd ? lcmt_session_new(m, bnd, task, &sp, &s, msg, sizeof msg)
                         : session_with_adapters(o, m, &sp, &s, msg, sizeof msg);
    if (st != LCMT_OK) {
        lc_errf(err, "%s", msg);
        goto done;
    }
    double t_load = lc_now_s() - t0;
    if (!o->quiet)
        fprintf(log, "generate: %s: %d layers, dim %d, vocab %d; %d LoRA(s), %d calibration(s)%s%s; "
                     "loaded in %.3f s; seed %d\n",
                o->model_path, mi.n_layers, mi.dim, mi.vocab_size, o->n_lora, o->n_calib, bnd ? " + task " : "",
                bnd ? task : "", t_load, seed);

    out_state os = {out, 0};
    lcmt_stream stream = {o->print_ids ? NULL : put_text, o->print_ids ? put_id : NULL, &os};
    if (o->prompt_ids) {
        int n_prompt = 0;
        ids = lc_malloc(sizeof(int) * (strlen(o->prompt_ids) + 1), err);
        if (!ids || parse_ids(o->prompt_ids, mi.vocab_size, ids, &n_prompt, err)) goto done;
        st = lcmt_session_answer_ids(s, ids, n_prompt, &stream, NULL);
    } else {
        st = lcmt_session_answer(s, o->prompt, &stream, NULL);
    }
    if (st != LCMT_OK) {
        lc_errf(err, "%s", lcmt_session_last_error(s));
        goto done;
    }
    fprintf(out, "\n");
    fflush(out);
    lcmt_answer_stats as;
    lcmt_session_last_stats(s, &as);
    const double dt = as.seconds, dt_rest = as.seconds - as.first_seconds;
    const int n_dec = as.n_steps - as.n_prompt; /* decoder steps after the prefill */
    /* The decoding rate leaves out the prompt's prefill (time to first token). */
    if (!o->quiet)
        fprintf(log, "generate: %d prompt + %d new tokens in %.3f s (prompt prefill %.3f s = time to "
                     "first token; %d decoding steps, %.1f tok/s)\n",
                as.n_prompt, as.n_new, dt, as.first_seconds, n_dec,
                n_dec > 0 && dt_rest > 0 ? n_dec / dt_rest : 0.0);
    rc = LC_OK;
done:
    free(ids);
    lcmt_session_free(s);
    lcmt_bundle_free(bnd);
    lcmt_model_free(m);
    return rc;
}
