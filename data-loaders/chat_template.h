/* chat_template.h: renders Hugging Face chat templates (the Jinja subset
 * real templates use) in C, as transformers renders them: Jinja2's
 * ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
 * loopcontrols extension (break/continue), transformers' `tojson` filter
 * (json.dumps with ensure_ascii=False) and its globals `raise_exception`
 * and `strftime_now`.
 *
 * The subset: {{ }}, {% %}, {# #} with `-`/`+` whitespace control; `set`
 * (names, tuples, namespace attributes), `for` (tuple targets, `if`
 * filter, `else`, the `loop` object), `if`/`elif`/`else`, `break`,
 * `continue`; literals (strings with Python escapes, ints, floats, lists,
 * tuples, dicts, true/false/none); `.attr`, `[key]`, slices `[a:b:c]`;
 * arithmetic, `~`, comparisons, `in`, `not in`, `and`/`or`/`not`,
 * `x if c else y`; tests (`is defined`, `none`, `string`, ...); filters and
 * string/dict methods listed in FORMATS.md. Anything else (macros, raw
 * blocks, an unknown filter or method) is an error naming the construct
 * and its line, never a guess.
 *
 * Limits against hostile templates: source size, nesting depth, loop
 * iterations, output size and memory; going past one is an error. */
#ifndef CHAT_TEMPLATE_H
#define CHAT_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "lc_err.h"

typedef struct chat_template chat_template; /* opaque, immutable once parsed */

/* Parses src; `name` (e.g. "model/tokenizer_config.json") starts every
 * error message: "<name>: line N: <what>". */
int chat_template_parse(chat_template **out, const char *src, const char *name, lc_err *err);
void chat_template_free(chat_template *t);

/* Renders with the members of the JSON object `vars` as the template's
 * variables (messages, add_generation_prompt, bos_token, ...). JSON null is
 * Python's None; a member that is absent is undefined. *out is malloc'd,
 * NUL-terminated; *len (may be NULL) its length. */
int chat_template_render(const chat_template *t, const cJSON *vars, char **out, size_t *len,
                         lc_err *err);

#endif
