/* prompt.h: the text and the tokens a model is prompted with, one rule for
 * every program (train, evaluate, calibrate, generate).
 *
 * Text: a raw prompt is used as it is; a chat prompt is the user text
 * rendered with the model's chat template (tokenizer_config.json's
 * chat_template) as the messages [system (when given), user] with the
 * generation prompt on, as transformers' apply_chat_template(messages,
 * add_generation_prompt=True) renders it.
 *
 * Tokens (the one rule for special tokens): the text is encoded without the
 * tokenizer's post-processor (HF add_special_tokens=False, as
 * apply_chat_template tokenizes), then BOS is put first when add_bos is on
 * and the tokenizer has a BOS, unless the text already begins with it (a
 * chat template that writes bos_token): never two. The post-processor is
 * never used for prompts, so a tokenizer whose post-processor adds BOS and
 * one whose does not give the same prompt. */
#ifndef PROMPT_H
#define PROMPT_H

#include <stddef.h>

#include "chat_template.h"
#include "lc_err.h"
#include "tokenizer.h"

typedef enum { PROMPT_RAW = 0, PROMPT_CHAT = 1 } prompt_kind;

typedef struct {
    int kind;            /* prompt_kind */
    chat_template *tmpl; /* PROMPT_CHAT */
    char *system;        /* PROMPT_CHAT: the system message, or NULL for none */
    char *bos_text, *eos_text; /* the template's bos_token / eos_token, NULL when unset */
} prompt_format;

/* Config values of "prompt_format", by prompt_kind (NULL-terminated). */
extern const char *const PROMPT_FORMAT_NAMES[];

/* kind PROMPT_RAW, or PROMPT_CHAT with the tokenizer's chat template (an
 * error naming the tokenizer_config.json, or its absence, when there is
 * none or it does not parse). system may be NULL (and must be for raw). */
int prompt_format_init(prompt_format *pf, int kind, const tokenizer *tok, const char *system, lc_err *err);
/* The same from a template text (tests, or a template given elsewhere). */
int prompt_format_chat(prompt_format *pf, const char *tmpl_src, const char *src_name, const char *bos_text,
                       const char *eos_text, const char *system, lc_err *err);
void prompt_format_free(prompt_format *pf);

/* The prompt text for the user text (malloc'd). pf NULL or raw: a copy. */
int prompt_render(const prompt_format *pf, const char *user, char **out, lc_err *err);

/* The prompt's tokens by the rule above; *ids malloc'd (NULL when *n is 0). */
int prompt_encode(const tokenizer *tok, const char *text, size_t len, int add_bos, int **ids, int *n,
                  lc_err *err);

/* The left cut, the one rule for a prompt longer than its budget: a leading
 * BOS (ids[0] == bos, bos >= 0) stays first and the prompt's last tokens
 * fill the rest. Rewrites ids in place; returns the new length (n when the
 * prompt fits). budget >= 1 when the prompt leads with BOS. */
int prompt_cut_left(int *ids, int n, int bos, int budget);

#endif
