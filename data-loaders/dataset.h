/* dataset.h: JSONL/CSV datasets -> tokenised examples with a loss mask,
 * deterministic shuffling and padded batches.
 *
 * An example is rendered from a record with two templates holding named
 * placeholders: prompt_template "Summarize:\n{dialogue}\nSummary:" and
 * target_template " {summary}". Loss is taken on the target tokens only
 * (and on EOS when add_eos). */
#ifndef DATASET_H
#define DATASET_H

#include <stdint.h>

#include "lc_err.h"
#include "prompt.h"
#include "tokenizer.h"

typedef enum { BAD_ROW_ERROR = 0, BAD_ROW_SKIP } bad_row_policy;
/* Config spellings of bad_row_policy, in enum order, NULL-terminated. */
extern const char *const BAD_ROW_NAMES[];

typedef struct {
    const char *path;            /* .jsonl or .csv (by extension) */
    const char *prompt_template; /* placeholders {field}; "{{" and "}}" are literal braces */
    const char *target_template;
    int max_len;          /* tokens per example, prompt + target (+BOS/EOS) */
    int add_bos, add_eos; /* BOS before the prompt; EOS after the target (in the loss) */
    bad_row_policy on_bad_row;
    int max_examples;     /* 0 = all */
    /* NULL or raw: the rendered prompt_template is the prompt; chat: it is
     * the user message, rendered with the model's chat template (prompt.h) */
    const prompt_format *format;
} dataset_spec;

typedef struct {
    int *ids;     /* (n_ids) prompt then target tokens */
    int n_ids;
    int n_prompt; /* loss is on ids[n_prompt..n_ids) */
    int line;     /* 1-based line (JSONL) or record (CSV) in the file */
    char *prompt; /* rendered prompt text */
    char *target; /* rendered target text (the reference) */
} ds_example;

typedef struct {
    ds_example *ex;
    int n;
    int n_rows;      /* rows read */
    int n_skipped;   /* bad rows skipped (on_bad_row = skip) */
    int n_truncated; /* prompts cut from the left to fit max_len */
    char path[1024];
} dataset;

/* Loads and tokenises. A bad row (invalid JSON, missing field, bad CSV
 * quoting, invalid UTF-8, a target alone longer than max_len) is an error
 * "<file>:<line>: <what>", or with BAD_ROW_SKIP is skipped and counted.
 * Prompt tokens follow prompt.h's rule (BOS once, first, when add_bos; a
 * chat template's own BOS counts). Truncation keeps the END of a long
 * prompt (the start is cut after a leading BOS); the target is never cut. */
int dataset_load(dataset *d, const dataset_spec *spec, const tokenizer *tok, lc_err *err);
void dataset_free(dataset *d);

/* Deterministic epoch-wise shuffling; the state (epoch, pos) is all a
 * checkpoint needs to resume at the same example. */
typedef struct {
    uint64_t seed;
    int n;
    int epoch;
    int pos;
    int *order; /* permutation of the current epoch */
    int shuffle;
} batch_iter;

int batch_iter_init(batch_iter *it, int n, uint64_t seed, int shuffle, lc_err *err);
/* Jumps to (epoch, pos) (resume). */
void batch_iter_seek(batch_iter *it, int epoch, int pos);
void batch_iter_free(batch_iter *it);

/* Fills a (B, T) batch with the next B examples (wrapping to a new,
 * reshuffled epoch). Shorter examples are right-padded with pad_id and
 * target -1. tokens[b,t] = ids[t], targets[b,t] = ids[t+1] where t+1 is in
 * the target span, else -1. Examples longer than T+1 are an error (load
 * with max_len <= T+1). Returns the number of loss tokens in *n_loss. */
int batch_next(batch_iter *it, const dataset *d, int B, int T, int pad_id, int *tokens,
               int *targets, int *n_loss, lc_err *err);
/* The same with a batch only as long as its longest example: *T_used =
 * max over the B examples of (length - 1), at most T, and the rows are laid
 * out with stride *T_used (tokens and targets need room for B x T). The
 * loss is the same as batch_next's: padding carries no loss and, with
 * causal attention, changes no earlier position. */
int batch_next_fit(batch_iter *it, const dataset *d, int B, int T, int pad_id, int *tokens,
                   int *targets, int *n_loss, int *T_used, lc_err *err);

#endif
