/* evaluation.h: generation over a dataset and its scores.
 *
 * Each example's prompt (tokenised as the dataset did, BOS included) is
 * continued with the KV-cache decoder; generation stops at EOS, at
 * max_new_tokens, at the context length, or at the first stop string (the
 * text is cut before it). Predictions are scored against the rendered
 * target text with ROUGE-1/2/L, weighted ROUGE and chrF (metrics.h). */
#ifndef EVALUATION_H
#define EVALUATION_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "generation.h"
#include "lc_err.h"
#include "metrics.h"
#include "model.h"
#include "tokenizer.h"

#define EVAL_DEFAULT_BATCH 16 /* generation.batch_size */
#define EVAL_MAX_BATCH 256

typedef struct {
    metrics_corpus scores;
    double seconds;
    long new_tokens;
    char **predictions; /* (scores.n) the generated texts, in dataset order */
} eval_summary;

/* Generates for every example of d with (m, ad) and scores the outputs.
 * Greedy generation (temperature 0) runs g->batch_size examples at once:
 * each prompt is prefilled in one pass, then one batched decoder step per
 * token for all running sequences (each with its own KV cache); a finished
 * sequence leaves and the next example joins. The batched kernels compute
 * every row with the arithmetic of a single step, so the predictions are
 * byte for byte those of one example at a time, whatever the batch size
 * (there are no near-ties to handle). Sampling runs one at a time, so the
 * random draws follow the dataset order as they always have.
 * Under MPI (dist with several ranks; NULL = one process) each rank
 * generates a contiguous share of the examples; rank 0 gathers the
 * predictions in example order, scores them and writes both files, byte for
 * byte what one process writes (but for `seconds`); every rank's
 * out->predictions then holds every example's answer, but only rank 0's
 * out->scores are filled. Sampling under MPI is refused.
 * Writes <out_dir>/predictions.jsonl (one line per example: line, prompt,
 * reference, prediction, scores) and <out_dir>/results.json (means, n,
 * settings, `label`); both through a temporary file and rename(). */
int evaluate_dataset(const model *m, const adapter_set *ad, const tokenizer *tok,
                     const dataset *d, const gen_opts *g, const rouge_opts *ro,
                     const char *out_dir, const char *label, const lc_dist *dist, eval_summary *out,
                     lc_err *err);
void eval_summary_free(eval_summary *s);

/* Reads the shared `generation.*` and `metrics.*` keys (configs/README.md)
 * and checks their ranges. g->stop points at strings owned by c. */
int eval_opts_from_cfg(cfg *c, gen_opts *g, rouge_opts *ro, lc_err *err);

#endif
