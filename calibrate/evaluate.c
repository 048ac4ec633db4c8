/* evaluate: generate over a JSONL/CSV test set with a base model plus
 * optional LoRAs and calibrations, and score the outputs (ROUGE-1/2/L,
 * weighted ROUGE, chrF). Schema: configs/README.md. The work is
 * calibrate/lib/eval_job.c; this file parses options and calls it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "eval_job.h"

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
    eval_job_opts jo = {&dist};
    int rc = 0;
    if (eval_job_run(cfg_path, &jo, &err)) {
        if (dist.size > 1) {
            fprintf(stderr, "evaluate: rank %d: %s\n", dist.rank, err.msg);
            lc_dist_abort(&dist, 1); /* the other ranks may wait in a collective */
        }
        fprintf(stderr, "evaluate: %s\n", err.msg);
        rc = 1;
    }
    lc_dist_finalize(&dist);
    return rc;
}
