/* config.h: strict JSON job configs. Every key a program reads is declared
 * by reading it; after reading, cfg_finish reports the first key that was
 * never read (a typo) by its full key path, e.g.
 *   "train.json: unknown key 'optimizer.lerning_rate'".
 * Wrong types name the key path and the expected and found types. */
#ifndef CONFIG_H
#define CONFIG_H

#include <cjson/cJSON.h>

#include "lc_err.h"

typedef struct cfg cfg; /* opaque; one parsed JSON file */

int cfg_load(cfg **out, const char *path, lc_err *err);
/* From text (for tests and embedded defaults); src names it in messages. */
int cfg_parse(cfg **out, const char *text, const char *src, lc_err *err);
void cfg_free(cfg *c);
const char *cfg_path(const cfg *c); /* file path as given */

/* Key paths use dots for objects: "optimizer.lr". A missing key leaves
 * *out at the default given and returns LC_OK unless required = 1. */
int cfg_int(cfg *c, const char *key, int required, int def, int *out, lc_err *err);
int cfg_i64(cfg *c, const char *key, int required, long long def, long long *out, lc_err *err);
int cfg_float(cfg *c, const char *key, int required, double def, double *out, lc_err *err);
int cfg_bool(cfg *c, const char *key, int required, int def, int *out, lc_err *err);
/* The string is owned by c. */
int cfg_string(cfg *c, const char *key, int required, const char *def, const char **out,
               lc_err *err);
/* One of choices (NULL-terminated); *out = its index. */
int cfg_enum(cfg *c, const char *key, int required, int def, const char *const *choices,
             int *out, lc_err *err);
/* Arrays: *n elements; strings owned by c, *out array malloc'd by callee. */
int cfg_string_list(cfg *c, const char *key, int required, const char ***out, int *n,
                    lc_err *err);
int cfg_int_list(cfg *c, const char *key, int required, int **out, int *n, lc_err *err);
int cfg_float_list(cfg *c, const char *key, int required, double **out, int *n, lc_err *err);
/* An object value as parsed (owned by c), the whole subtree marked read:
 * for a value another strict reader checks (e.g. a merge recipe). */
int cfg_object(cfg *c, const char *key, int required, const cJSON **out, lc_err *err);
/* 1 if the key exists (marks nothing as read). */
int cfg_has(const cfg *c, const char *key);
/* Array of objects: number of elements (0 if absent); elements are then
 * addressed as "key[i].field". */
int cfg_array_len(cfg *c, const char *key, lc_err *err);
/* Resolves a path value relative to the config file's folder (absolute
 * paths and paths starting with "./" from the cwd stay as they are).
 * Returns malloc'd. */
char *cfg_resolve_path(const cfg *c, const char *value);
/* Error on the first key never read. */
int cfg_finish(cfg *c, lc_err *err);


/* The JSON type of j as error messages spell it ("number", "string",
 * "boolean", "null", "array", "object"; "nothing" for NULL). */
const char *cfg_json_type(const cJSON *j);

/* The number j holds, into *out, for the strict readers of JSON that is not
 * a job config (HF config.json, merge recipes), which check its range
 * themselves. If j is not a number (or NULL): LC_FAIL and the error
 * "<src>: <pre>'<key>': expected a number, found <type>", pre e.g. "key "
 * or "adapters[0].". */
int cfg_json_number(const cJSON *j, const char *src, const char *pre, const char *key, double *out,
                    lc_err *err);

#endif
