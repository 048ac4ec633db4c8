/* calibrate: merges single-task LoRAs for compositional tasks and learns
 * Learnable Calibration (LC, LC++) on top, with every baseline of the paper
 * beside it, from one JSON config (schema: configs/README.md); or, with
 * --account, prints the parameter/storage accounting of a config.json.
 *
 * Jobs are (task, method) pairs run in config order; each writes
 * <output_dir>/<task>/<method>/results.json (+ predictions.jsonl, and for
 * trained methods calibration.h5 / coefficients.h5, metrics.jsonl,
 * checkpoint.h5; a merge's recipe is results.json's "merge"). The run ends with
 * <output_dir>/results.{json,csv} and table.md over all jobs. The work is
 * calibrate/lib/calib_plan.c; this file parses options and calls it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "calib_plan.h"

static void usage(FILE *f) {
    fputs("usage: calibrate --config FILE.json [--resume] [--only M1,M2] [--tasks T1,T2] [--no-summary] [--plan]\n"
          "       calibrate --account PATH/config.json [--account ...] [--lora-rank R] [--lc-rank K]\n"
          "\n"
          "Runs every (task, method) job of the config: baselines (zero-shot, main- and\n"
          "auxiliary-task LoRA, multi-step, joint expert), LoRA merges (linear, concat,\n"
          "svd, ties, dare_linear, dare_ties, slerp, lorahub, learned) and Learnable\n"
          "Calibration (LC, LC++, per layer, Shared LC) on merged LoRAs, then evaluates\n"
          "each on the task's test set. Results go to output_dir (results.json,\n"
          "results.csv, table.md, one folder per job). Schema: configs/README.md;\n"
          "merge formulas: calibrate/MERGING.md.\n"
          "\n"
          "  --config FILE     the job (required unless --account)\n"
          "  --resume          skip jobs whose results.json exists; continue\n"
          "                    calibration training from its checkpoint\n"
          "  --only LIST       run only these methods (comma-separated names)\n"
          "  --tasks LIST      run only these tasks\n"
          "  --no-summary      run the selected jobs only: write no run summary and\n"
          "                    take no lock on output_dir, so runs with disjoint\n"
          "                    --tasks/--only selections can share it (a last run\n"
          "                    without the flag, with --resume, writes the summary)\n"
          "  --plan            check the config and print, one JSON object per line,\n"
          "                    the adapters the selected jobs need and the jobs in\n"
          "                    run order (task, method, type, folder); runs nothing\n"
          "  --account CONFIG  print extra parameters and storage of LC, LC++ and a\n"
          "                    joint-expert LoRA for a Hugging Face config.json (or\n"
          "                    its folder); repeat for a table over several models\n"
          "  --lora-rank R     LoRA rank for --account (default 8)\n"
          "  --lc-rank K       LC++ rank for --account (default 4)\n"
          "  --help            this text\n",
          f);
}

/* --account: one table over every config given (labelled by folder). */
static int account_main(const char *const *paths, int n, int lora_rank, int lc_rank) {
    lc_err err = {{0}};
    model_config cfgs[16];
    char names[16][128];
    const char *np[16];
    for (int i = 0; i < n; i++) {
        if (account_load_config(paths[i], &cfgs[i], &err)) {
            fprintf(stderr, "calibrate: %s\n", err.msg);
            return 1;
        }
        /* label: the folder holding config.json (or the folder given) */
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", paths[i]);
        size_t l = strlen(buf);
        while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
        if (l >= 11 && !strcmp(buf + l - 11, "config.json")) {
            buf[l - 11] = 0;
            l = strlen(buf);
            while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
        }
        const char *slash = strrchr(buf, '/');
        snprintf(names[i], sizeof names[i], "%.127s", slash ? slash + 1 : buf);
        np[i] = names[i];
    }
    account_opts o;
    account_opts_default(&o);
    o.lora_rank = lora_rank;
    o.lc_rank = lc_rank;
    if (account_print_table(stdout, np, cfgs, n, &o, &err)) {
        fprintf(stderr, "calibrate: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *cfg_file = NULL, *account[16];
    int lora_rank = 8, lc_rank = 4, n_account = 0, plan_only = 0;
    calib_plan_opts o = {.load = 1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cfg_file = argv[++i];
        } else if (!strcmp(argv[i], "--resume")) {
            o.resume = 1;
        } else if (!strcmp(argv[i], "--no-summary")) {
            o.no_summary = 1;
        } else if (!strcmp(argv[i], "--plan")) {
            plan_only = 1;
        } else if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) {
            o.stop_after = strtol(argv[++i], NULL, 10); /* testing aid: simulate a crash */
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            o.only = argv[++i];
        } else if (!strcmp(argv[i], "--tasks") && i + 1 < argc) {
            o.tasks = argv[++i];
        } else if (!strcmp(argv[i], "--account") && i + 1 < argc) {
            if (n_account == 16) {
                fprintf(stderr, "calibrate: at most 16 --account configs\n");
                return 2;
            }
            account[n_account++] = argv[++i];
        } else if ((!strcmp(argv[i], "--lora-rank") || !strcmp(argv[i], "--lc-rank")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v <= 0 || v > 1 << 20) {
                fprintf(stderr, "calibrate: %s needs a positive integer, found '%s'\n", argv[i], argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--lora-rank")) lora_rank = (int)v;
            else lc_rank = (int)v;
            i++;
        } else {
            fprintf(stderr, "calibrate: unknown or incomplete argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (n_account) return account_main(account, n_account, lora_rank, lc_rank);
    if (!cfg_file) {
        fprintf(stderr, "calibrate: --config (or --account) is required (see --help)\n");
        return 2;
    }
    lc_err err = {{0}};
    calib_plan *p = NULL;
    o.load = !plan_only;
    /* under mpirun / srun: data-parallel, every rank runs every job (calib_plan.h) */
    lc_dist dist = {0, 1, 0};
    if (!plan_only && lc_dist_init(&dist, &argc, &argv, &err)) {
        fprintf(stderr, "calibrate: %s\n", err.msg);
        return 1;
    }
    o.dist = &dist;
    int rc = calib_plan_open(&p, cfg_file, &o, &err) ||
             (plan_only ? calib_plan_print(p, stdout, &err) : calib_plan_run(p, &err));
    if (rc) {
        if (dist.size > 1) {
            fprintf(stderr, "calibrate: rank %d of %d: %s\n", dist.rank, dist.size, err.msg);
            lc_dist_abort(&dist, 1); /* the other ranks may wait in a collective */
        }
        fprintf(stderr, "calibrate: %s\n", err.msg);
    }
    calib_plan_free(p);
    lc_dist_finalize(&dist);
    return rc ? 1 : 0;
}
