/* evaluation.c: see evaluation.h. */
#include "evaluation.h"

#include "lc_time.h"
#include "qtype.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
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
    int n_stop = 0, max_new, stem, tokmode, batch;
    double temp, top_p;
    long long seed;
    memset(g, 0, sizeof *g);
    memset(ro, 0, sizeof *ro);
    if (cfg_int(c, "generation.max_new_tokens", 0, 64, &max_new, err) ||
        cfg_float(c, "generation.temperature", 0, 0.0, &temp, err) ||
        cfg_float(c, "generation.top_p", 0, 1.0, &top_p, err) ||
        cfg_i64(c, "generation.seed", 0, 1, &seed, err) ||
        cfg_string_list(c, "generation.stop", 0, &stops, &n_stop, err) ||
        cfg_int(c, "generation.batch_size", 0, EVAL_DEFAULT_BATCH, &batch, err) ||
        cfg_bool(c, "metrics.stem", 0, 0, &stem, err) ||
        cfg_enum(c, "metrics.tokenization", 0, 0, TOK_NAMES, &tokmode, err)) {
        free(stops); /* read before a later key failed */
        return LC_FAIL;
    }
    if (n_stop > GEN_MAX_STOP || max_new <= 0 || temp < 0 || !(top_p > 0 && top_p <= 1) ||
        batch < 1 || batch > EVAL_MAX_BATCH) {
        free(stops);
        return lc_errf(err, "%s: generation values out of range (max_new_tokens > 0, temperature "
                       ">= 0, 0 < top_p <= 1, at most %d stop strings, 1 <= batch_size <= %d)",
                       cfg_path(c), GEN_MAX_STOP, EVAL_MAX_BATCH);
    }
    g->max_new_tokens = max_new, g->temperature = (float)temp, g->top_p = (float)top_p;
    g->seed = (uint64_t)seed, g->n_stop = n_stop, g->batch_size = batch;
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

/* Decoder positions the evaluation needs: the longest prompt plus the new
 * tokens, at most the model's context. Sizing the KV caches so changes no
 * output: a prompt is cut only when it and the new tokens exceed the
 * model's context, and then this is the model's context. */
static int eval_positions(const model *m, const dataset *d, const gen_opts *g) {
    long need = 2;
    for (int i = 0; i < d->n; i++)
        if ((long)d->ex[i].n_prompt + g->max_new_tokens > need) need = (long)d->ex[i].n_prompt + g->max_new_tokens;
    return need < m->cfg.max_seq_len ? (int)need : m->cfg.max_seq_len;
}

/* One running generation of the batch: the example it answers and its state. */
typedef struct {
    int ex; /* example index, -1 when the slot is free */
    gen_seq q;
    int token, pos;
} eval_slot;

/* Under MPI: rank 0 receives every rank's predictions (its share of the
 * examples, in order) and new-token count, and sends them all to every
 * rank; preds / refs then cover the whole data set everywhere. Rank r's bytes: its token count (8 bytes), then its
 * predictions, each ended by a NUL. */
static int gather_predictions(const lc_dist *dist, const dataset *d, int lo, int hi, char **preds,
                              const char **refs, eval_summary *out, lc_err *err) {
    const int N = lc_dist_size(dist), rank = lc_dist_rank(dist);
    size_t n = 8;
    for (int i = lo; i < hi; i++) n += strlen(preds[i]) + 1;
    char *buf = malloc(n), *all = NULL;
    if (!buf) return lc_errf(err, "out of memory");
    int64_t nt = out->new_tokens;
    memcpy(buf, &nt, 8);
    size_t k = 8;
    for (int i = lo; i < hi; i++) {
        size_t l = strlen(preds[i]) + 1;
        memcpy(buf + k, preds[i], l);
        k += l;
    }
    size_t all_n;
    int rc = lc_dist_gather_bytes(dist, buf, n, 0, &all, &all_n, err);
    free(buf);
    if (rc) return rc;
    /* then every rank gets them (a multi-step job's second pass needs its share) */
    uint64_t an = all_n;
    if (lc_dist_bcast(dist, &an, sizeof an, 0, err)) goto fail;
    if (rank != 0 && !(all = malloc(an ? an : 1))) {
        lc_errf(err, "out of memory");
        goto fail;
    }
    all_n = an;
    if (lc_dist_bcast(dist, all, all_n, 0, err)) goto fail;
    out->new_tokens = 0;
    k = 0;
    for (int r = 0; r < N && rc == LC_OK; r++) {
        const int rlo = (int)((long)d->n * r / N), rhi = (int)((long)d->n * (r + 1) / N);
        if (k + 8 > all_n) {
            rc = lc_errf(err, "MPI: rank %d sent too few bytes", r);
            break;
        }
        memcpy(&nt, all + k, 8);
        k += 8;
        out->new_tokens += (long)nt;
        for (int i = rlo; i < rhi; i++) {
            const char *e = k < all_n ? memchr(all + k, 0, all_n - k) : NULL;
            if (!e) {
                rc = lc_errf(err, "MPI: rank %d sent a cut prediction", r);
                break;
            }
            if (r != rank) {
                preds[i] = strdup(all + k);
                if (!preds[i]) {
                    rc = lc_errf(err, "out of memory");
                    break;
                }
                refs[i] = d->ex[i].target;
            }
            k = (size_t)(e - all) + 1;
        }
    }
    free(all);
    return rc;
fail:
    free(all);
    return LC_FAIL;
}

/* Takes slot x's answer into preds / refs and frees the slot. */
static int slot_finish(eval_slot *x, const dataset *d, char **preds, const char **refs, eval_summary *out,
                       lc_err *err) {
    int i = x->ex, n_new;
    int rc = gen_seq_finish(&x->q, &preds[i], &n_new, err);
    if (rc) lc_err_prefix(err, "%s:%d: ", d->path, d->ex[i].line);
    gen_seq_free(&x->q);
    x->ex = -1;
    refs[i] = d->ex[i].target;
    out->new_tokens += n_new;
    return rc;
}

int evaluate_dataset(const model *m, const adapter_set *ad, const tokenizer *tok,
                     const dataset *d, const gen_opts *g, const rouge_opts *ro,
                     const char *out_dir, const char *label, const lc_dist *dist, eval_summary *out,
                     lc_err *err) {
    memset(out, 0, sizeof *out);
    if (d->n == 0) return lc_errf(err, "%s: no examples to evaluate", d->path);
    const int N = lc_dist_size(dist), rank = lc_dist_rank(dist);
    if (N > 1 && g->temperature > 0)
        return lc_errf(err, "%s: sampling (temperature > 0) under MPI is not supported: the random draws "
                       "follow the data set's order in one process; run it without mpirun", d->path);
    /* this rank's examples: a contiguous share, so rank order is example order */
    const int lo = (int)((long)d->n * rank / N), hi = (int)((long)d->n * (rank + 1) / N), mine = hi - lo;
    const int max_seq = eval_positions(m, d, g);
    /* sampling draws from one generator in dataset order: one at a time */
    int B = g->temperature > 0 || g->batch_size < 1 ? 1 : g->batch_size;
    if (B > mine) B = mine > 0 ? mine : 1;
    model_decoder **dec = calloc((size_t)B, sizeof *dec), **run = calloc((size_t)B, sizeof *run);
    eval_slot *sl = calloc((size_t)B, sizeof *sl);
    int *toks = calloc((size_t)B, sizeof(int)), *poss = calloc((size_t)B, sizeof(int)),
        *who = calloc((size_t)B, sizeof(int));
    char **preds = calloc(d->n, sizeof(char *));
    const char **refs = calloc(d->n, sizeof(char *));
    int rc = LC_FAIL;
    char *lines = NULL;
    if (!preds || !refs || !dec || !run || !sl || !toks || !poss || !who) {
        lc_errf(err, "out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) sl[b].ex = -1;
    if (lc_make_dirs(out_dir, err)) goto done;
    for (int b = 0; b < B; b++)
        if (model_decoder_init(&dec[b], m, ad, max_seq, err)) goto done;
    lc_rng rng;
    lc_rng_seed(&rng, g->seed);
    double t0 = lc_now_s();
    const int tty = isatty(2) && rank == 0, talk = rank == 0; /* rank 0 shows its share's progress */
    int next = lo, n_done = 0, shown = 0;
    while (n_done < mine) {
        /* free slots take the next examples: init, prefill, first decision;
         * an answer that ends at once frees its slot again */
        for (int b = 0; b < B && next < hi; b++) {
            if (sl[b].ex >= 0) continue;
            const ds_example *e = &d->ex[next];
            float *logits;
            if (gen_seq_init(&sl[b].q, max_seq, m, tok, e->ids, e->n_prompt, g, &rng, NULL, err)) {
                lc_err_prefix(err, "%s:%d: ", d->path, e->line);
                goto done;
            }
            sl[b].ex = next++;
            if (gen_seq_prefill(&sl[b].q, dec[b], &logits, err)) {
                lc_err_prefix(err, "%s:%d: ", d->path, e->line);
                goto done;
            }
            if (gen_seq_next(&sl[b].q, logits, &sl[b].token, &sl[b].pos)) continue;
            /* ended at its first token: finish it, then refill this slot */
            if (slot_finish(&sl[b], d, preds, refs, out, err)) goto done;
            n_done++;
            b--;
        }
        if (n_done == mine) break;
        /* one batched step for every running sequence */
        int na = 0;
        for (int b = 0; b < B; b++)
            if (sl[b].ex >= 0) run[na] = dec[b], toks[na] = sl[b].token, poss[na] = sl[b].pos, who[na++] = b;
        if (model_decoder_step_batch(run, toks, poss, na, err)) { /* one sequence: a single step's bits */
            lc_err_prefix(err, "%s:%d: ", d->path, d->ex[sl[who[0]].ex].line);
            goto done;
        }
        int finished = 0;
        for (int j = 0; j < na; j++) {
            eval_slot *x = &sl[who[j]];
            if (gen_seq_next(&x->q, model_decoder_logits(run[j]), &x->token, &x->pos)) continue;
            if (slot_finish(x, d, preds, refs, out, err)) goto done;
            n_done++, finished++;
        }
        if (!finished || !talk) continue;
        shown = n_done;
        double el = lc_now_s() - t0;
        /* redrawn on a terminal; plain lines every 10% otherwise */
        const int every = mine / 10 > 0 ? mine / 10 : 1;
        if (tty || n_done / every != (n_done - finished) / every || n_done == mine)
            fprintf(stderr, "%sevaluate %s: %d/%d examples%s | %.1f tok/s | ETA %.0fs%s", tty ? "\r" : "",
                    label, n_done, mine, N > 1 ? " (rank 0's share)" : "", el > 0 ? out->new_tokens / el : 0.0,
                    el / n_done * (mine - n_done), tty ? "\033[K" : "\n");
    }
    if (talk && shown < mine) /* the last answers ended at their prefill */
        fprintf(stderr, "%sevaluate %s: %d/%d examples | %.1f tok/s%s", tty ? "\r" : "", label, mine, mine,
                lc_now_s() > t0 ? out->new_tokens / (lc_now_s() - t0) : 0.0, tty ? "\033[K" : "\n");
    if (tty) fputc('\n', stderr);
    if (N > 1 && gather_predictions(dist, d, lo, hi, preds, refs, out, err)) goto done;
    if (rank != 0) { /* rank 0 scores and writes */
        rc = LC_OK;
        goto done;
    }
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
    cJSON_AddNumberToObject(r, "batch_size", B);
    {
        /* the type the base's matrices were held in ("f32", "q8_0", ...), as
         * a config's base_type spells it */
        const char *qn = qtype_name(m->base_type);
        char bt[8] = "?";
        for (size_t i = 0; qn && qn[i] && i + 1 < sizeof bt; i++) bt[i] = (char)tolower((unsigned char)qn[i]), bt[i + 1] = 0;
        cJSON_AddStringToObject(r, "base_type", bt);
    }
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
    for (int b = 0; sl && b < B; b++)
        if (sl[b].ex >= 0) gen_seq_free(&sl[b].q);
    for (int b = 0; dec && b < B; b++) model_decoder_free(dec[b]);
    free(dec), free(run), free(sl), free(toks), free(poss), free(who);
    return rc;
}
