/* evaluate: generate over a JSONL/CSV test set with a base model plus
 * optional LoRAs and calibrations, and score the outputs (ROUGE-1/2/L,
 * weighted ROUGE, chrF). Schema: configs/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "eval_job.h"
#include "evaluation.h"
#include "job.h"
#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fputs("usage: evaluate --config FILE.json\n"
          "\n"
          "Generates a prediction for every example of a test set (one inference\n"
          "pass each, KV cache) and scores it against the reference. Writes\n"
          "<output_dir>/predictions.jsonl and <output_dir>/results.json and prints\n"
          "the scores on stderr. The adapters are LoRAs and calibrations, a merge\n"
          "recipe as calibrate records it (\"merge\", from a job's results.json) with\n"
          "calibrations, to score a calibrate job again (e.g. on another base_type),\n"
          "or one task of a bundle made by `export` (\"bundle\": {\"path\", \"task\"}),\n"
          "to score the bundle as shipped (f16 / int8 tensors included).\n"
          "Under `mpirun -np N` (an MPI build) the examples are split over the\n"
          "ranks and rank 0 writes the same files as one process (greedy only).\n"
          "Schema: configs/README.md.\n",
          f);
}


int main(int argc, char **argv) {
    const char *cfg_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else {
            fprintf(stderr, "evaluate: unknown or incomplete argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path) {
        fprintf(stderr, "evaluate: --config is required (see --help)\n");
        return 2;
    }
    lc_err err = {{0}};
    lc_dist dist;
    if (lc_dist_init(&dist, &argc, &argv, &err)) {
        fprintf(stderr, "evaluate: %s\n", err.msg);
        return 1;
    }
    const int talk = dist.rank == 0; /* rank 0 reports; every rank reports its own error */
    cfg *c = NULL;
    model m = {0};
    tokenizer *tok = NULL;
    dataset d = {0};
    prompt_format pfmt = {0};
    lora loras[ADAPTER_MAX];
    calib cals[ADAPTER_MAX];
    int n_l = 0, n_c = 0, rc = 1, have_d = 0;
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
    if (cfg_load(&c, cfg_path, &err) || eval_job_read(c, &j, &err) ||
        job_load_base(c, &m, &tok, &err))
        goto fail;
    const char *s_out = j.output_dir, *s_data = j.data_path, *label = j.label;
    const char *b_path = j.bundle_path, *b_task = j.bundle_task;
    int max_len = j.max_len;
    const int nl = j.n_loras, nc = j.n_calibs;
    const gen_opts g = j.gen;
    const rouge_opts ro = j.rouge;
    if (prompt_format_init(&pfmt, j.prompt_kind, tok, j.system, &err)) {
        lc_err_prefix(&err, "%s: key 'data.prompt_format': ", cfg_path);
        goto fail;
    }
    paths[1] = cfg_resolve_path(c, s_out);
    paths[2] = cfg_resolve_path(c, s_data);
    for (int i = 0; i < nl; i++) {
        char *p = cfg_resolve_path(c, j.lora_path[i]);
        int r = lora_load(&loras[i], &m.cfg, p, &err);
        free(p);
        if (r) goto fail;
        loras[i].weight = (float)j.lora_weight[i];
        ad.loras[ad.n_loras++] = &loras[i];
        n_l++;
    }
    if (j.merge) {
        /* the adapters a calibrate job merged, merged as it merged them */
        lora *ls[ADAPTER_MAX];
        for (int i = 0; i < j.n_merge; i++) {
            char *p = cfg_resolve_path(c, j.merge_path[i]);
            int r = lora_load(&loras[i], &m.cfg, p, &err);
            free(p);
            if (r) goto fail;
            n_l++;
            ls[i] = &loras[i];
        }
        if (merge_spec_validate(&j.merge_spec, ls, j.n_merge, &m.cfg, &err) ||
            merged_model_build(&j.merge_spec, ls, j.n_merge, &m, &mm, &err)) {
            lc_err_prefix(&err, "%s: key 'merge': ", cfg_path);
            goto fail;
        }
        have_mm = 1;
        ad = mm.ad;
        run_m = mm.m;
    }
    for (int i = 0; i < nc; i++) {
        char *p = cfg_resolve_path(c, j.calib_path[i]);
        int r = calib_load(&cals[i], &m.cfg, p, &err);
        free(p);
        if (r) goto fail;
        ad.cals[ad.n_cals++] = &cals[i];
        n_c++;
    }
    if (b_path) {
        paths[3] = cfg_resolve_path(c, b_path);
        if (bundle_open(&bnd, paths[3], &err) || bundle_task_load(bnd, &m, b_task, &bt, &err)) goto fail;
        have_bt = 1;
        ad = bt.ad;
        run_m = bt.m;
    }
    if (max_len <= 0) max_len = m.cfg.max_seq_len;
    dataset_spec spec = {paths[2], j.prompt_template, j.target_template, max_len, j.add_bos, 0,
                         j.bad_row, j.max_examples, &pfmt};
    if (dataset_load(&d, &spec, tok, &err)) goto fail;
    have_d = 1;
    if (talk && b_path)
        fprintf(stderr, "evaluate: %s: %d examples, bundle %s, task '%s'\n", paths[2], d.n, paths[3], b_task);
    else if (talk)
        fprintf(stderr, "evaluate: %s: %d examples, %d LoRA(s)%s%s, %d calibration(s)\n", paths[2], d.n, n_l,
                j.merge ? " merged by " : "", j.merge ? MERGE_NAMES[j.merge_spec.method] : "", n_c);
    if (talk && dist.size > 1)
        fprintf(stderr, "evaluate: %d ranks, %d examples each or one fewer\n", dist.size,
                (d.n + dist.size - 1) / dist.size);
    if (evaluate_dataset(run_m, &ad, tok, &d, &g, &ro, paths[1], label, &dist, &sum, &err)) goto fail;
    if (talk) fprintf(stderr,
            "evaluate: %s: n=%zu  ROUGE-1 %.4f  ROUGE-2 %.4f  ROUGE-L %.4f  weighted ROUGE %.4f  "
            "chrF %.2f  (%.1f s)\nevaluate: wrote %s/results.json and predictions.jsonl\n",
            label, sum.scores.n, sum.scores.r1.f, sum.scores.r2.f, sum.scores.rl.f,
            sum.scores.weighted, sum.scores.chrf_corpus, sum.seconds, paths[1]);
    rc = 0;
    goto done;
fail:
    if (dist.size > 1) {
        fprintf(stderr, "evaluate: rank %d: %s\n", dist.rank, err.msg);
        lc_dist_abort(&dist, 1); /* the other ranks may wait in a collective */
    }
    fprintf(stderr, "evaluate: %s\n", err.msg);
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
    lc_dist_finalize(&dist);
    return rc;
}
