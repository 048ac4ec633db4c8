/* generation.h: the one decode loop, shared by the evaluation (`calibrate`,
 * `evaluate`) and the reference runtime (`generate`).
 *
 * The prompt is prefilled into a KV-cache decoder, then tokens are sampled
 * until EOS (or BOS, if asked), max_new_tokens, the decoder's last position,
 * or the first stop string; the text is cut before the stop string. The new
 * text can be streamed as it becomes final. */
#ifndef GENERATION_H
#define GENERATION_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"
#include "model.h"
#include "tokenizer.h"

#define GEN_MAX_STOP 8

typedef struct {
    int max_new_tokens;
    float temperature; /* 0 = greedy */
    float top_p;
    uint64_t seed;
    const char *stop[GEN_MAX_STOP];
    int n_stop;
    int stop_at_bos; /* also end at the BOS token (llama2.c models emit it after a story) */
    int batch_size;  /* evaluate_dataset only: examples generated at once (0 or 1: one at a
                      * time); sampling (temperature > 0) always runs one at a time */
} gen_opts;

/* Optional streaming and statistics for generate_text. */
typedef struct {
    /* in (all optional) */
    void (*on_text)(void *ctx, const char *s, size_t n); /* text that became final: never a stop
                                                          * string or what follows it; a possible
                                                          * start of a stop string and an incomplete
                                                          * UTF-8 character wait until resolved */
    void (*on_token)(void *ctx, int id);                 /* each generated id (not EOS/BOS) */
    void *ctx;
    int trim_leading; /* on_text: leave out whitespace before the first visible character */
    int (*cancelled)(void *ctx); /* polled before every decoder step: non-zero ends the answer
                                  * there (what was generated is kept; was_cancelled = 1) */
    /* out */
    int was_cancelled;
    int n_prompt;   /* prompt tokens used (after a cut from the left) */
    int n_steps;    /* decoder positions run, prompt included (the prompt as one prefill) */
    double t_first; /* CLOCK_MONOTONIC seconds when the prompt's prefill ended: the first
                     * new token's logits were ready (time to first token) */
} gen_stream;

/* Continues prompt (n_prompt ids) with decoder d (made for m with max_seq
 * positions). *text is the new text (malloc'd; cut before the first stop
 * string, leading whitespace trimmed; NULL when tok is NULL), *n_new the
 * number of new tokens. The prompt is cut from the left (prompt_cut_left:
 * a leading BOS stays, the prompt's end fills the rest) if prompt +
 * max_new_tokens exceed max_seq. Without a tokenizer
 * (tok NULL) stop strings are not available and EOS/BOS are m's. s may be
 * NULL. */
int generate_text(model_decoder *d, int max_seq, const model *m, const tokenizer *tok,
                  const int *prompt, int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s,
                  char **text, int *n_new, lc_err *err);

/* One generation as a state machine, for driving several at once
 * (batched evaluation, calibrate/lib/evaluation.c); generate_text is
 * gen_seq_init, a prefill of ids[0..n), then gen_seq_next / step until it
 * returns 0, then gen_seq_finish. The decisions (sampling, EOS, stop
 * strings, the budget) are the same whoever runs the decoder. */
typedef struct {
    const model *m;
    const tokenizer *tok;
    const gen_opts *o;
    lc_rng *rng;
    gen_stream *s;
    int max_seq, eos, bos, budget, k, done, streaming;
    int *ids;  /* the prompt as kept (ids[0..start)), then the new tokens */
    int n;     /* ids so far: prefill ids[0..start) at positions 0..start-1 */
    int start; /* prompt tokens kept */
    char *out; /* scratch for the stop-string check */
    const char *failed; /* set when the sampler failed: gen_seq_finish reports it */
    struct gen_streamer_state {
        gen_stream *s;
        const tokenizer *tok;
        const gen_opts *o;
        char *ctx_text;
        size_t ctx_len, printed;
        int stopped, alone;
    } st;
} gen_seq;

/* Prepares the prompt (cut as generate_text says; max_seq as there) and
 * the decisions; q->ids[0..q->n) is what to prefill. */
int gen_seq_init(gen_seq *q, int max_seq, const model *m, const tokenizer *tok, const int *prompt,
                 int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s, lc_err *err);
/* Runs the prompt q->ids[0..q->n) through d (in slices, polling q->s's
 * cancel flag between them); *logits are those of its last token (NULL when
 * cancelled). LC_FAIL with err on a bad token or out of memory. */
int gen_seq_prefill(gen_seq *q, model_decoder *d, float **logits, lc_err *err);
/* Given the logits after the last token run (the prefill's, then each
 * step's): samples the next token and decides. Returns 1 with the token to
 * run at *pos next, 0 when the generation is over (logits NULL also ends
 * it). */
int gen_seq_next(gen_seq *q, float *logits, int *token, int *pos);
/* The text (malloc'd, cut before a stop string, leading whitespace trimmed;
 * NULL without a tokenizer) and the number of new tokens. */
int gen_seq_finish(gen_seq *q, char **text, int *n_new, lc_err *err);
void gen_seq_free(gen_seq *q);

/* The first occurrence in text of any of o's stop strings, or NULL. */
const char *gen_find_stop(const char *text, const gen_opts *o);

#endif
