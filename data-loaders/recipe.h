/* recipe.h: the merge recipe as JSON, the one reader and the one writer.
 * A recipe says how a compositional task's single-task LoRAs are merged
 * (calibrate/MERGING.md): {"method", "adapters": [{"name", "path"?,
 * "weight"}], method parameters ("density", "lambda", "ties_mean", "seed",
 * "svd_rank", "t", "coefficients"; LoraHub's "examples", "budget", "l1"),
 * "result": "lora" | "dense"}. `calibrate` writes it into each job's
 * results.json ("merge"); `export` copies it into the bundle, whose reader
 * (and the device runtime) rebuild the merge from it, and `evaluate`
 * rebuilds it from its config's "merge" key. */
#ifndef RECIPE_H
#define RECIPE_H

#include <cjson/cJSON.h>

#include "lc_err.h"
#include "merge.h"

/* "count", "weight", NULL: spellings of ties_mean, in enum order. */
extern const char *const TIES_MEAN_NAMES[];

typedef struct {
    int examples, budget; /* LoraHub search: examples scored, evaluations */
    double l1;            /* LoraHub: L1 penalty on the weights */
} recipe_lorahub;

/* The recipe of spec over adapters names[0..n) (paths[i] may be NULL: no
 * "path"); hub only for MERGE_LORAHUB (may be NULL otherwise). NULL when
 * out of memory. */
cJSON *merge_spec_to_json(const merge_spec *s, const char *const *names, const char *const *paths,
                          int n, const recipe_lorahub *hub);

/* Parses a recipe into a spec, adapter names in order into names[] (at
 * most ADAPTER_MAX; pointers into j). Strict: an unknown method or
 * ties_mean, a parameter of the wrong type or out of range, or a missing
 * adapter name is an error naming the key. */
int merge_spec_from_json(const cJSON *j, merge_spec *s, const char **names, int *n, lc_err *err);

#endif
