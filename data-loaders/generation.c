/* generation.c: see generation.h. */
#include "generation.h"
#include "lc_time.h"
#include "prompt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


const char *gen_find_stop(const char *text, const gen_opts *o) {
    const char *first = NULL;
    for (int i = 0; i < o->n_stop; i++) {
        if (!o->stop[i] || !o->stop[i][0]) continue;
        const char *p = strstr(text, o->stop[i]);
        if (p && (!first || p < first)) first = p;
    }
    return first;
}

/* Streaming state: the new text is the decode of (last prompt token +
 * generated ids) past the decode of the last prompt token alone, so a
 * tokenizer's word-initial space comes out as it would after the prompt. */
typedef struct gen_streamer_state streamer; /* generation.h */

/* Emits what became final of the text of ids[0..n) (ids[0] is the context
 * token); at the end (last = 1) everything up to a stop string. Returns 1
 * when a stop string was found. */
static int stream_update(streamer *st, const int *ids, int n, int last) {
    if (st->stopped) return 1;
    char *full = tokenizer_decode(st->tok, ids, n, 1);
    if (!full) return 0;
    const char *gen = full;
    if (!st->alone && !strncmp(full, st->ctx_text, st->ctx_len)) gen += st->ctx_len;
    else { /* not a clean continuation (a character split between the prompt's last token
            * and the new ones): decode the new ids alone, from here on */
        st->alone = 1;
        free(full);
        full = tokenizer_decode(st->tok, ids + 1, n - 1, 1);
        if (!full) return 0;
        gen = full;
    }
    if (st->s->trim_leading) gen += strspn(gen, " \t\n");
    size_t len = strlen(gen);
    const char *cut = gen_find_stop(gen, st->o);
    if (cut) {
        len = (size_t)(cut - gen);
        st->stopped = 1;
    } else if (!last) {
        /* hold back an incomplete character (U+FFFD at the end) ... */
        while (len > st->printed + 2 && !memcmp(gen + len - 3, "\xEF\xBF\xBD", 3)) len -= 3;
        /* ... and the longest tail that may start a stop string */
        size_t hold = 0;
        for (int i = 0; i < st->o->n_stop; i++) {
            const char *sp = st->o->stop[i];
            if (!sp) continue;
            size_t sl = strlen(sp);
            for (size_t k = sl ? sl - 1 : 0; k > hold; k--)
                if (k <= len && !memcmp(gen + len - k, sp, k)) {
                    hold = k;
                    break;
                }
        }
        len -= hold;
    }
    if (len > st->printed) {
        st->s->on_text(st->s->ctx, gen + st->printed, len - st->printed);
        st->printed = len;
    }
    free(full);
    return st->stopped;
}

int gen_seq_init(gen_seq *q, int max_seq, const model *m, const tokenizer *tok, const int *prompt,
                 int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s, lc_err *err) {
    memset(q, 0, sizeof *q);
    if (n_prompt <= 0) return lc_errf(err, "empty prompt");
    if (max_seq < 2) return lc_errf(err, "the decoder has %d positions", max_seq);
    if (o->max_new_tokens < 0) return lc_errf(err, "max_new_tokens is %d", o->max_new_tokens);
    if (o->n_stop && !tok) return lc_errf(err, "stop strings need a tokenizer");
    q->m = m, q->tok = tok, q->o = o, q->rng = rng, q->s = s, q->max_seq = max_seq;
    q->eos = tok && tokenizer_eos(tok) >= 0 ? tokenizer_eos(tok) : m->cfg.eos_id;
    q->bos = tok && tokenizer_bos(tok) >= 0 ? tokenizer_bos(tok) : m->cfg.bos_id;
    q->budget = o->max_new_tokens < max_seq - 1 ? o->max_new_tokens : max_seq - 1;
    q->ids = malloc(sizeof(int) * (size_t)(n_prompt + q->budget + 1));
    if (!q->ids) return lc_errf(err, "out of memory");
    /* a prompt longer than the positions left by the answer: the one left
     * cut (a leading BOS and the prompt's end; prompt.h) */
    memcpy(q->ids, prompt, sizeof(int) * (size_t)n_prompt);
    const int n = prompt_cut_left(q->ids, n_prompt, q->bos, max_seq - q->budget);
    q->n = q->start = n;
    q->streaming = s && s->on_text && tok;
    if (q->streaming) {
        q->st = (streamer){s, tok, o, NULL, 0, 0, 0, 0};
        q->st.ctx_text = tokenizer_decode(tok, q->ids + q->start - 1, 1, 1);
        if (!q->st.ctx_text) {
            gen_seq_free(q);
            return lc_errf(err, "out of memory decoding");
        }
        q->st.ctx_len = strlen(q->st.ctx_text);
    }
    if (s) s->n_prompt = q->start, s->n_steps = 0, s->was_cancelled = 0;
    return LC_OK;
}

#define CANCELLED(s) ((s) && (s)->cancelled && (s)->cancelled((s)->ctx) && ((s)->was_cancelled = 1))

int gen_seq_next(gen_seq *q, float *logits, int *token, int *pos) {
    const gen_opts *o = q->o;
    gen_stream *s = q->s;
    if (q->done || !logits || q->k >= q->budget) {
        q->done = 1;
        return 0;
    }
    const int k = q->k++;
    q->done = 1; /* until a token is handed out below */
    int next = sample_token(logits, q->m->cfg.vocab_size, o->temperature, o->top_p, q->rng);
    if (next < 0) { /* an error for gen_seq_finish, not a short answer */
        q->failed = "out of memory while sampling";
        return 0;
    }
    if (next == q->eos || (o->stop_at_bos && next == q->bos)) return 0;
    q->ids[q->n++] = next;
    if (s && s->on_token) s->on_token(s->ctx, next);
    if (q->streaming) {
        if (stream_update(&q->st, q->ids + q->start - 1, q->n - q->start + 1, 0)) return 0;
    } else if (o->n_stop && (k % 4 == 3 || k == q->budget - 1 || (s && s->on_token))) {
        /* check the stop strings on the decoded text every few tokens (every
         * token when ids are being handed out) */
        free(q->out);
        q->out = tokenizer_decode(q->tok, q->ids + q->start, q->n - q->start, 1);
        if (q->out && gen_find_stop(q->out, o)) return 0;
    }
    if (q->n >= q->max_seq || k == q->budget - 1) return 0; /* no logits needed after the last */
    if (CANCELLED(s)) return 0;
    q->done = 0;
    *token = next;
    *pos = q->n - 1;
    return 1;
}

int gen_seq_finish(gen_seq *q, char **text, int *n_new, lc_err *err) {
    *text = NULL;
    *n_new = 0;
    if (q->failed) return lc_errf(err, "generation: %s", q->failed);
    if (q->streaming) stream_update(&q->st, q->ids + q->start - 1, q->n - q->start + 1, 1);
    *n_new = q->n - q->start;
    if (!q->tok) return LC_OK;
    char *out = tokenizer_decode(q->tok, q->ids + q->start, q->n - q->start, 1);
    if (!out) return lc_errf(err, "out of memory decoding");
    char *cut = (char *)gen_find_stop(out, q->o);
    if (cut) *cut = 0;
    /* trim the whitespace a prompt ending in "Summary:" leaves in front */
    size_t lead = strspn(out, " \t\n");
    if (lead) memmove(out, out + lead, strlen(out + lead) + 1);
    *text = out;
    return LC_OK;
}

void gen_seq_free(gen_seq *q) {
    free(q->ids);
    free(q->st.ctx_text);
    free(q->out);
    q->ids = NULL, q->st.ctx_text = NULL, q->out = NULL;
}

/* Prompt rows per prefill call: cancellation is polled between them. */
#define GEN_PREFILL_SLICE 256

int gen_seq_prefill(gen_seq *q, model_decoder *d, float **logits, lc_err *err) {
    gen_stream *s = q->s;
    *logits = NULL;
    for (int p0 = 0; p0 < q->n; p0 += GEN_PREFILL_SLICE) {
        if (CANCELLED(s)) return LC_OK; /* *logits NULL: no first token */
        const int k = q->n - p0 < GEN_PREFILL_SLICE ? q->n - p0 : GEN_PREFILL_SLICE;
        if (!(*logits = model_decoder_prefill(d, q->ids + p0, k, p0, err))) return LC_FAIL;
        if (s) s->n_steps += k;
    }
    if (s) s->t_first = lc_now_s();
    return LC_OK;
}

int generate_text(model_decoder *d, int max_seq, const model *m, const tokenizer *tok,
                  const int *prompt, int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s,
                  char **text, int *n_new, lc_err *err) {
    *text = NULL;
    *n_new = 0;
    gen_seq q;
    if (gen_seq_init(&q, max_seq, m, tok, prompt, n_prompt, o, rng, s, err)) return LC_FAIL;
    int rc = LC_OK;
    float *logits;
    if (gen_seq_prefill(&q, d, &logits, err)) {
        rc = LC_FAIL;
        goto done;
    }
    int token, pos;
    while (gen_seq_next(&q, logits, &token, &pos)) {
        logits = model_decoder_step(d, token, pos);
        if (!logits) {
            rc = lc_errf(err, "decoder step at position %d failed (out of memory in a stored matrix's product)", pos);
            goto done;
        }
        if (s) s->n_steps++;
    }
    rc = gen_seq_finish(&q, text, n_new, err);
done:
    gen_seq_free(&q);
    return rc;
}
