/* evaluation.c: see evaluation.h. */
#include "evaluation.h"
#include "lc_time.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loaders.h"


void eval_summary_free(eval_summary *s) {
    if (s->predictions)
        for (size_t i = 0; i < s->scores.n; i++) free(s->predictions[i]);
    free(s->predictions);
    s->predictions = NULL;
    metrics_corpus_free(&s->scores);
}

static const char *const TOK_NAMES[] = {"rouge-score", "latin", NULL};

int eval_opts_from_cfg(cfg *c, gen_opts *g, rouge_opts *ro, lc_err *err) {
    const char **stops = NULL;
    int n_stop = 0, max_new, stem, tokmode;
    double temp, top_p;
    long long seed;
    memset(g, 0, sizeof *g);
    memset(ro, 0, sizeof *ro);
    if (cfg_int(c, "generation.max_new_tokens", 0, 64, &max_new, err) ||
        cfg_float(c, "generation.temperature", 0, 0.0, &temp, err) ||
        cfg_float(c, "generation.top_p", 0, 1.0, &top_p, err) ||
        cfg_i64(c, "generation.seed", 0, 1, &seed, err) ||
        cfg_string_list(c, "generation.stop", 0, &stops, &n_stop, err) ||
        cfg_bool(c, "metrics.stem", 0, 0, &stem, err) ||
        cfg_enum(c, "metrics.tokenization", 0, 0, TOK_NAMES, &tokmode, err))
        return LC_FAIL;
    if (n_stop > GEN_MAX_STOP || max_new <= 0 || temp < 0 || !(top_p > 0 && top_p <= 1)) {
        free(stops);
        return lc_errf(err, "%s: generation values out of range (max_new_tokens > 0, temperature "
                       ">= 0, 0 < top_p <= 1, at most %d stop strings)", cfg_path(c), GEN_MAX_STOP);
    }
    g->max_new_tokens = max_new, g->temperature = (float)temp, g->top_p = (float)top_p;
    g->seed = (uint64_t)seed, g->n_stop = n_stop;
    for (int i = 0; i < n_stop; i++) g->stop[i] = stops[i];
    free(stops);
    ro->stem = stem;
    ro->tok = tokmode == 1 ? ROUGE_TOK_LATIN : ROUGE_TOK_ROUGE_SCORE;
    return LC_OK;
}

static cJSON *prf_json(prf x) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "precision", x.p);
    cJSON_AddNumberToObject(o, "recall", x.r);
    cJSON_AddNumberToObject(o, "f1", x.f);
    return o;
}

int evaluate_dataset(const model *m, const adapter_set *ad, const tokenizer *tok,
                     const dataset *d, const gen_opts *g, const rouge_opts *ro,
                     const char *out_dir, const char *label, eval_summary *out, lc_err *err) {
    memset(out, 0, sizeof *out);
    if (d->n == 0) return lc_errf(err, "%s: no examples to evaluate", d->path);
    int max_seq = m->cfg.max_seq_len;
    model_decoder *dec = NULL;
    char **preds = calloc(d->n, sizeof(char *));
    const char **refs = calloc(d->n, sizeof(char *));
    int rc = LC_FAIL;
    char *lines = NULL;
    if (!preds || !refs) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (lc_make_dirs(out_dir, err) || model_decoder_init(&dec, m, ad, max_seq, err)) goto done;
    lc_rng rng;
    lc_rng_seed(&rng, g->seed);
    double t0 = lc_now_s();
    const int tty = isatty(2);
    for (int i = 0; i < d->n; i++) {
        const ds_example *e = &d->ex[i];
        int n_new;
        if (generate_text(dec, max_seq, m, tok, e->ids, e->n_prompt, g, &rng, NULL, &preds[i], &n_new, err)) {
            lc_err_prefix(err, "%s:%d: ", d->path, e->line);
            goto done;
        }
        refs[i] = e->target;
        out->new_tokens += n_new;
        double el = lc_now_s() - t0;
        /* redrawn on a terminal; plain lines every 10% otherwise */
        if (tty || (i + 1) % (d->n / 10 > 0 ? d->n / 10 : 1) == 0 || i + 1 == d->n)
            fprintf(stderr, "%sevaluate %s: %d/%d examples | %.1f tok/s | ETA %.0fs%s", tty ? "\r" : "",
                    label, i + 1, d->n, el > 0 ? out->new_tokens / el : 0.0,
                    el / (i + 1) * (d->n - i - 1), tty ? "\033[K" : "\n");
    }
    if (tty) fputc('\n', stderr);
    out->seconds = lc_now_s() - t0;
    if (metrics_corpus_eval((const char *const *)preds, refs, d->n, ro, NULL, &out->scores, err))
        goto done;

    /* predictions.jsonl */
    size_t cap = 1 << 16, len = 0;
    lines = malloc(cap);
    if (!lines) {
        lc_errf(err, "out of memory");
        goto done;
    }
    lines[0] = 0;
    for (int i = 0; i < d->n; i++) {
        const metrics_example *s = &out->scores.examples[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "line", d->ex[i].line);
        cJSON_AddStringToObject(o, "prompt", d->ex[i].prompt);
        cJSON_AddStringToObject(o, "reference", d->ex[i].target);
        cJSON_AddStringToObject(o, "prediction", preds[i]);
        cJSON_AddNumberToObject(o, "rouge1", s->rouge.r1.f);
        cJSON_AddNumberToObject(o, "rouge2", s->rouge.r2.f);
        cJSON_AddNumberToObject(o, "rougeL", s->rouge.rl.f);
        cJSON_AddNumberToObject(o, "weighted_rouge", s->rouge.weighted);
        cJSON_AddNumberToObject(o, "chrf", s->chrf);
        char *t = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!t) {
            lc_errf(err, "out of memory");
            goto done;
        }
        size_t tl = strlen(t);
        if (len + tl + 2 > cap) {
            while (len + tl + 2 > cap) cap *= 2;
            char *nl = realloc(lines, cap);
            if (!nl) {
                free(t);
                lc_errf(err, "out of memory");
                goto done;
            }
            lines = nl;
        }
        memcpy(lines + len, t, tl);
        len += tl;
        if (i + 1 < d->n) lines[len++] = '\n';
        lines[len] = 0;
        free(t);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/predictions.jsonl", out_dir);
    if (lc_write_text_atomic(path, lines, err)) goto done;

    /* results.json */
    const metrics_corpus *c = &out->scores;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "label", label);
    cJSON_AddStringToObject(r, "dataset", d->path);
    cJSON_AddNumberToObject(r, "n", (double)c->n);
    cJSON_AddNumberToObject(r, "inference_passes", 1);
    cJSON_AddItemToObject(r, "rouge1", prf_json(c->r1));
    cJSON_AddItemToObject(r, "rouge2", prf_json(c->r2));
    cJSON_AddItemToObject(r, "rougeL", prf_json(c->rl));
    cJSON_AddNumberToObject(r, "weighted_rouge", c->weighted);
    cJSON_AddNumberToObject(r, "chrf_mean", c->chrf_mean);
    cJSON_AddNumberToObject(r, "chrf_corpus", c->chrf_corpus);
    cJSON_AddStringToObject(r, "rouge_tokenization",
                            ro && ro->tok == ROUGE_TOK_LATIN ? "latin" : "rouge-score");
    cJSON_AddBoolToObject(r, "rouge_stemming", ro && ro->stem);
    cJSON *gj = cJSON_AddObjectToObject(r, "generation");
    cJSON_AddNumberToObject(gj, "max_new_tokens", g->max_new_tokens);
    cJSON_AddNumberToObject(gj, "temperature", g->temperature);
    cJSON_AddNumberToObject(gj, "top_p", g->top_p);
    cJSON_AddNumberToObject(gj, "seed", (double)g->seed);
    cJSON *st = cJSON_AddArrayToObject(gj, "stop");
    for (int i = 0; i < g->n_stop; i++) cJSON_AddItemToArray(st, cJSON_CreateString(g->stop[i]));
    cJSON_AddNumberToObject(r, "new_tokens", (double)out->new_tokens);
    cJSON_AddNumberToObject(r, "seconds", out->seconds);
    cJSON_AddStringToObject(r, "predictions", "predictions.jsonl");
    char *txt = cJSON_Print(r);
    cJSON_Delete(r);
    snprintf(path, sizeof path, "%s/results.json", out_dir);
    int w = txt ? lc_write_text_atomic(path, txt, err) : lc_errf(err, "out of memory");
    free(txt);
    if (w) goto done;
    rc = LC_OK;
done:
    if (rc == LC_OK) {
        out->predictions = preds;
        preds = NULL;
    } else {
        eval_summary_free(out);
    }
    free(lines);
    if (preds)
        for (int i = 0; i < d->n; i++) free(preds[i]);
    free(preds);
    free(refs);
    model_decoder_free(dec);
    return rc;
}
