/* train: single-task LoRA training (or full-parameter training) from a JSON
 * config. See configs/README.md for the schema; `train --help` for flags.
 * The work is train/lib/train_job.c; this file parses options and calls it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_job.h"

static void usage(FILE *f) {
    fputs("usage: train --config FILE.json [--resume] [--check]\n"
          "\n"
          "Trains a LoRA (mode \"lora\") on a frozen base model, or every weight of\n"
          "the model (mode \"full\"), on a JSONL/CSV dataset, as the config says\n"
          "(schema: configs/README.md). Progress goes to stderr; the run folder\n"
          "(output_dir) receives metrics.jsonl, checkpoint.h5, final/ and best/.\n"
          "\n"
          "  --config FILE   the job (required)\n"
          "  --resume        continue from output_dir/checkpoint.h5, bit-exactly\n"
          "  --check         read and check every key of the config; load, train\n"
          "                  and write nothing (exit 0 when the config is good)\n"
          "\n"
          "Under mpirun -np N (a build with MPI) the N ranks share every batch and\n"
          "rank 0 alone writes files; the result is the one-process result, bit for\n"
          "bit (README.md, \"Scale-out with MPI\"). training.micro_batch_size sets the work unit.\n"
          "  --help          this text\n",
          f);
}

int main(int argc, char **argv) {
    lc_err err = {{0}};
    lc_dist dist;
    if (lc_dist_init(&dist, &argc, &argv, &err)) {
        fprintf(stderr, "train: %s\n", err.msg);
        return 1;
    }
    const char *cfg_path = NULL;
    train_job_opts jo = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(argv[i], "--resume")) {
            jo.resume = 1;
        } else if (!strcmp(argv[i], "--check")) {
            jo.check_only = 1;
        } else if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) {
            jo.stop_after = strtol(argv[++i], NULL, 10); /* testing aid: simulate a crash */
        } else {
            fprintf(stderr, "train: unknown or incomplete argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path) {
        fprintf(stderr, "train: --config is required (see --help)\n");
        return 2;
    }

    jo.dist = &dist;
    if (train_job_run(cfg_path, &jo, &err)) {
        if (dist.size > 1) {
            /* the other ranks may wait in a collective: end them all */
            fprintf(stderr, "train: rank %d of %d: %s\n", dist.rank, dist.size, err.msg);
            lc_dist_abort(&dist, 1);
        }
        fprintf(stderr, "train: %s\n", err.msg);
        return 1;
    }
    if (jo.check_only && dist.rank == 0) fprintf(stderr, "train: %s: the config is good (nothing loaded)\n", cfg_path);
    lc_dist_finalize(&dist);
    return 0;
}
