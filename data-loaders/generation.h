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
    int n_steps;    /* decoder steps, prompt included */
    double t_first; /* CLOCK_MONOTONIC seconds when the first decoder step ended */
} gen_stream;

/* Continues prompt (n_prompt ids) with decoder d (made for m with max_seq
 * positions). *text is the new text (malloc'd; cut before the first stop
 * string, leading whitespace trimmed; NULL when tok is NULL), *n_new the
 * number of new tokens. The prompt is cut from the left (keeping its first
 * token) if prompt + max_new_tokens exceed max_seq. Without a tokenizer
 * (tok NULL) stop strings are not available and EOS/BOS are m's. s may be
 * NULL. */
int generate_text(model_decoder *d, int max_seq, const model *m, const tokenizer *tok,
                  const int *prompt, int n_prompt, const gen_opts *o, lc_rng *rng, gen_stream *s,
                  char **text, int *n_new, lc_err *err);

/* The first occurrence in text of any of o's stop strings, or NULL. */
const char *gen_find_stop(const char *text, const gen_opts *o);

#endif
