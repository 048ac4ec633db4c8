/* generation.c: see generation.h. */
#include "generation.h"
#include "lc_time.h"

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
typedef struct {
    gen_stream *s;
    const tokenizer *tok;
    const gen_opts *o;
    char *ctx_text;
    size_t ctx_len, printed;
    int stopped, alone;
} streamer;

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

int generate_text(model_decoder *d, int max_seq, const model *m, const tokenizer *tok,
                  const int *prompt, int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s,
                  char **text, int *n_new, lc_err *err) {
    *text = NULL;
    *n_new = 0;
    const int V = m->cfg.vocab_size;
    const int eos = tok && tokenizer_eos(tok) >= 0 ? tokenizer_eos(tok) : m->cfg.eos_id;
    const int bos = tok && tokenizer_bos(tok) >= 0 ? tokenizer_bos(tok) : m->cfg.bos_id;
    if (n_prompt <= 0) return lc_errf(err, "empty prompt");
    if (max_seq < 2) return lc_errf(err, "the decoder has %d positions", max_seq);
    if (o->max_new_tokens < 0) return lc_errf(err, "max_new_tokens is %d", o->max_new_tokens);
    if (o->n_stop && !tok) return lc_errf(err, "stop strings need a tokenizer");
    int budget = o->max_new_tokens < max_seq - 1 ? o->max_new_tokens : max_seq - 1;
    int *ids = malloc(sizeof(int) * (size_t)(n_prompt + budget + 1));
    if (!ids) return lc_errf(err, "out of memory");
    /* keep the first token (BOS) and the end of the prompt */
    int keep = n_prompt;
    if (keep + budget > max_seq) keep = max_seq - budget;
    int n = 0;
    ids[n++] = prompt[0];
    for (int i = n_prompt - keep + 1; i < n_prompt; i++) ids[n++] = prompt[i];
    const int start = n;
    streamer st = {s, tok, o, NULL, 0, 0, 0, 0};
    const int streaming = s && s->on_text && tok;
    if (streaming) {
        st.ctx_text = tokenizer_decode(tok, ids + start - 1, 1, 1);
        if (!st.ctx_text) {
            free(ids);
            return lc_errf(err, "out of memory decoding");
        }
        st.ctx_len = strlen(st.ctx_text);
    }
    if (s) s->n_prompt = start, s->n_steps = 0, s->was_cancelled = 0;
#define CANCELLED() (s && s->cancelled && s->cancelled(s->ctx) && (s->was_cancelled = 1))
    float *logits = NULL;
    const char *failed = NULL; /* a step or the sampler failed: an error, never a short answer */
    for (int pos = 0; pos < n && !CANCELLED(); pos++) {
        logits = model_decoder_step(d, ids[pos], pos);
        if (!logits) {
            failed = "the decoder refused the prompt (a token id outside the vocabulary, or out of memory)";
            break;
        }
        if (s && s->n_steps++ == 0) s->t_first = lc_now_s();
    }
    char *out = NULL;
    if (s && s->was_cancelled) logits = NULL;
    for (int k = 0; k < budget && logits; k++) {
        int next = sample_token(logits, V, o->temperature, o->top_p, rng);
        if (next < 0) {
            failed = "out of memory while sampling";
            break;
        }
        if (next == eos || (o->stop_at_bos && next == bos)) break;
        ids[n++] = next;
        if (s && s->on_token) s->on_token(s->ctx, next);
        if (streaming) {
            if (stream_update(&st, ids + start - 1, n - start + 1, 0)) break;
        } else if (o->n_stop && (k % 4 == 3 || k == budget - 1 || (s && s->on_token))) {
            /* check the stop strings on the decoded text every few tokens (every
             * token when ids are being handed out) */
            free(out);
            out = tokenizer_decode(tok, ids + start, n - start, 1);
            if (out && gen_find_stop(out, o)) break;
        }
        if (n >= max_seq || k == budget - 1) break; /* no logits needed after the last */
        if (CANCELLED()) break;
        logits = model_decoder_step(d, next, n - 1);
        if (!logits) failed = "a decoder step failed (out of memory)";
        if (s) s->n_steps++;
    }
#undef CANCELLED
    if (failed) {
        free(st.ctx_text);
        free(out);
        free(ids);
        return lc_errf(err, "generation: %s", failed);
    }
    if (streaming) stream_update(&st, ids + start - 1, n - start + 1, 1);
    free(st.ctx_text);
    free(out);
    *n_new = n - start;
    if (!tok) {
        free(ids);
        return LC_OK;
    }
    out = tokenizer_decode(tok, ids + start, n - start, 1);
    free(ids);
    if (!out) return lc_errf(err, "out of memory decoding");
    char *cut = (char *)gen_find_stop(out, o);
    if (cut) *cut = 0;
    /* trim the whitespace a prompt ending in "Summary:" leaves in front */
    size_t lead = strspn(out, " \t\n");
    if (lead) memmove(out, out + lead, strlen(out + lead) + 1);
    *text = out;
    return LC_OK;
}
