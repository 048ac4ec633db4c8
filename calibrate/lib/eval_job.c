/* eval_job.c: the `evaluate` job (eval_job.h): the config reader, then the
 * run. */
#include "eval_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "dataset.h"
#include "job.h"
#include "loaders.h"
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

int eval_job_run(const char *cfg_path, const eval_job_opts *o, lc_err *err) {
    const lc_dist *dist = o->dist;
    const int talk = dist->rank == 0; /* rank 0 reports; every rank reports its own error */
    cfg *c = NULL;
    model m = {0};
    tokenizer *tok = NULL;
    dataset d = {0};
    prompt_format pfmt = {0};
    lora loras[ADAPTER_MAX];
    calib cals[ADAPTER_MAX];
    int n_l = 0, n_c = 0, rc = LC_FAIL, have_d = 0;
    char *paths[4] = {0};
    eval_summary sum = {0};
    adapter_set ad = {0};
    bundle *bnd = NULL;
    bundle_task bt = {0};
    int have_bt = 0;
    const model *run_m = &m;
    merged_model mm;
    int have_mm = 0;

    eval_job j;
    /* every key is read and checked before anything is loaded */
    if (cfg_load(&c, cfg_path, err) || eval_job_read(c, &j, err) ||
        job_load_base(c, &m, &tok, err))
        goto done;
    const char *s_out = j.output_dir, *s_data = j.data_path, *label = j.label;
    const char *b_path = j.bundle_path, *b_task = j.bundle_task;
    int max_len = j.max_len;
    const int nl = j.n_loras, nc = j.n_calibs;
    const gen_opts g = j.gen;
    const rouge_opts ro = j.rouge;
    if (prompt_format_init(&pfmt, j.prompt_kind, tok, j.system, err)) {
        lc_err_prefix(err, "%s: key 'data.prompt_format': ", cfg_path);
        goto done;
    }
    paths[1] = cfg_resolve_path(c, s_out);
    paths[2] = cfg_resolve_path(c, s_data);
    for (int i = 0; i < nl; i++) {
        char *p = cfg_resolve_path(c, j.lora_path[i]);
        int r = lora_load(&loras[i], &m.cfg, p, err);
        free(p);
        if (r) goto done;
        loras[i].weight = (float)j.lora_weight[i];
        ad.loras[ad.n_loras++] = &loras[i];
        n_l++;
    }
    if (j.merge) {
        /* the adapters a calibrate job merged, merged as it merged them */
        lora *ls[ADAPTER_MAX];
        for (int i = 0; i < j.n_merge; i++) {
            char *p = cfg_resolve_path(c, j.merge_path[i]);
            int r = lora_load(&loras[i], &m.cfg, p, err);
            free(p);
            if (r) goto done;
            n_l++;
            ls[i] = &loras[i];
        }
        if (merge_spec_validate(&j.merge_spec, ls, j.n_merge, &m.cfg, err) ||
            merged_model_build(&j.merge_spec, ls, j.n_merge, &m, &mm, err)) {
            lc_err_prefix(err, "%s: key 'merge': ", cfg_path);
            goto done;
        }
        have_mm = 1;
        ad = mm.ad;
        run_m = mm.m;
    }
    for (int i = 0; i < nc; i++) {
        char *p = cfg_resolve_path(c, j.calib_path[i]);
        int r = calib_load(&cals[i], &m.cfg, p, err);
        free(p);
        if (r) goto done;
        ad.cals[ad.n_cals++] = &cals[i];
        n_c++;
    }
    if (b_path) {
        paths[3] = cfg_resolve_path(c, b_path);
        if (bundle_open(&bnd, paths[3], err) || bundle_task_load(bnd, &m, b_task, &bt, err)) goto done;
        have_bt = 1;
        ad = bt.ad;
        run_m = bt.m;
    }
    if (max_len <= 0) max_len = m.cfg.max_seq_len;
    dataset_spec spec = {paths[2], j.prompt_template, j.target_template, max_len, j.add_bos, 0,
                         j.bad_row, j.max_examples, &pfmt};
    if (dataset_load(&d, &spec, tok, err)) goto done;
    have_d = 1;
    if (talk && b_path)
        fprintf(stderr, "evaluate: %s: %d examples, bundle %s, task '%s'\n", paths[2], d.n, paths[3], b_task);
    else if (talk)
        fprintf(stderr, "evaluate: %s: %d examples, %d LoRA(s)%s%s, %d calibration(s)\n", paths[2], d.n, n_l,
                j.merge ? " merged by " : "", j.merge ? MERGE_NAMES[j.merge_spec.method] : "", n_c);
    if (talk && dist->size > 1)
        fprintf(stderr, "evaluate: %d ranks, %d examples each or one fewer\n", dist->size,
                (d.n + dist->size - 1) / dist->size);
    if (evaluate_dataset(run_m, &ad, tok, &d, &g, &ro, paths[1], label, dist, &sum, err)) goto done;
    if (talk) fprintf(stderr,
            "evaluate: %s: n=%zu  ROUGE-1 %.4f  ROUGE-2 %.4f  ROUGE-L %.4f  weighted ROUGE %.4f  "
            "chrF %.2f  (%.1f s)\nevaluate: wrote %s/results.json and predictions.jsonl\n",
            label, sum.scores.n, sum.scores.r1.f, sum.scores.r2.f, sum.scores.rl.f,
            sum.scores.weighted, sum.scores.chrf_corpus, sum.seconds, paths[1]);
    rc = LC_OK;
done:
    eval_summary_free(&sum);
    if (have_d) dataset_free(&d);
    tokenizer_free(tok);
    prompt_format_free(&pfmt);
    if (have_bt) bundle_task_free(&bt);
    if (have_mm) merged_model_free(&mm);
    bundle_close(bnd);
    for (int i = 0; i < n_l; i++) lora_free(&loras[i]);
    for (int i = 0; i < n_c; i++) calib_free(&cals[i]);
    model_free(&m);
    for (int i = 0; i < 4; i++) free(paths[i]);
    cfg_free(c);
    return rc;
}
