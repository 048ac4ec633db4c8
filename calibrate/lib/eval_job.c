/* eval_job.c: the `evaluate` job config reader (eval_job.h). */
#include "eval_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "job.h"
#include "prompt.h"
#include "recipe.h"

int eval_job_read(cfg *c, eval_job *j, lc_err *err) {
    memset(j, 0, sizeof *j);
    const char *cp = cfg_path(c), *s_model, *s_tok;
    if (cfg_string(c, "model", 1, NULL, &s_model, err) ||
        cfg_string(c, "tokenizer", 0, NULL, &s_tok, err) || job_base_type_read(c, err) < 0 ||
        eval_opts_from_cfg(c, &j->gen, &j->rouge, err) ||
        cfg_string(c, "output_dir", 1, NULL, &j->output_dir, err) ||
        cfg_string(c, "label", 0, "evaluation", &j->label, err) ||
        cfg_string(c, "data.path", 1, NULL, &j->data_path, err) ||
        cfg_string(c, "data.prompt_template", 1, NULL, &j->prompt_template, err) ||
        cfg_string(c, "data.target_template", 1, NULL, &j->target_template, err) ||
        cfg_int(c, "data.max_len", 0, 0, &j->max_len, err) ||
        cfg_bool(c, "data.add_bos", 0, 1, &j->add_bos, err) ||
        cfg_enum(c, "data.on_bad_row", 0, 0, BAD_ROW_NAMES, &j->bad_row, err) ||
        cfg_int(c, "data.max_examples", 0, 0, &j->max_examples, err) ||
        cfg_enum(c, "data.prompt_format", 0, PROMPT_RAW, PROMPT_FORMAT_NAMES, &j->prompt_kind, err) ||
        cfg_string(c, "data.system", 0, NULL, &j->system, err))
        return LC_FAIL;
    int nl = cfg_array_len(c, "loras", err);
    if (nl < 0) return LC_FAIL;
    if (nl > ADAPTER_MAX)
        return lc_errf(err, "%s: key 'loras': at most %d LoRAs", cp, ADAPTER_MAX);
    char key[64];
    for (int i = 0; i < nl; i++) {
        snprintf(key, sizeof key, "loras[%d].path", i);
        if (cfg_string(c, key, 1, NULL, &j->lora_path[i], err)) return LC_FAIL;
        snprintf(key, sizeof key, "loras[%d].weight", i);
        if (cfg_float(c, key, 0, 1.0, &j->lora_weight[i], err)) return LC_FAIL;
    }
    j->n_loras = nl;
    const char **cpaths = NULL;
    int nc = 0;
    if (cfg_string_list(c, "calibs", 0, &cpaths, &nc, err)) return LC_FAIL;
    if (nc > ADAPTER_MAX) {
        free(cpaths);
        return lc_errf(err, "%s: key 'calibs': at most %d calibrations", cp, ADAPTER_MAX);
    }
    for (int i = 0; i < nc; i++) j->calib_path[i] = cpaths[i];
    j->n_calibs = nc;
    free(cpaths);
    if (cfg_has(c, "bundle") &&
        (cfg_string(c, "bundle.path", 1, NULL, &j->bundle_path, err) ||
         cfg_string(c, "bundle.task", 1, NULL, &j->bundle_task, err)))
        return LC_FAIL;
    if (cfg_object(c, "merge", 0, &j->merge, err)) return LC_FAIL;
    if (cfg_finish(c, err)) return LC_FAIL;
    if (j->bundle_path && (nl || nc || j->merge))
        return lc_errf(err, "%s: 'bundle' brings its own adapters; remove 'loras', 'calibs' and 'merge'", cp);
    if (j->merge) {
        if (nl)
            return lc_errf(err, "%s: 'merge' names its own adapters (merge.adapters[].path); remove 'loras'",
                           cp);
        if (merge_spec_from_json(j->merge, &j->merge_spec, j->merge_name, &j->n_merge, err)) {
            lc_err_prefix(err, "%s: key 'merge': ", cp);
            return LC_FAIL;
        }
        if (j->merge_spec.method == MERGE_LEARNED)
            return lc_errf(err, "%s: key 'merge': a learned merge needs its trained coefficients, which a "
                           "recipe does not hold; evaluate the exported bundle ('bundle') instead", cp);
        const cJSON *ads = cJSON_GetObjectItemCaseSensitive(j->merge, "adapters");
        int i = 0;
        for (const cJSON *a = ads->child; a; a = a->next, i++) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(a, "path");
            if (!cJSON_IsString(p) || !p->valuestring[0])
                return lc_errf(err, "%s: key 'merge.adapters[%d].path': %s (evaluate loads each adapter from "
                               "its path)", cp, i, p ? "expected a non-empty string" : "missing");
            j->merge_path[i] = p->valuestring;
        }
    }
    return LC_OK;
}
