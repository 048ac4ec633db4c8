/* fuzz_job_config.c: a JSON job config read by the three job readers as
 * their programs read it, without loading anything: train's
 * (train_job_run with check_only), calibrate's (calib_plan_open without
 * load: adapters, tasks, methods, Shared LC families), export's
 * (export_job_read) and evaluate's (eval_job_read). */
#include <string.h>

#include "calib_plan.h"
#include "config.h"
#include "eval_job.h"
#include "export_job.h"
#include "fuzz.h"
#include "train_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "job.json", data, size);
    lc_err err;
    train_job_opts to;
    memset(&to, 0, sizeof to);
    to.check_only = 1;
    (void)train_job_run(path, &to, &err);
    calib_plan_opts co;
    memset(&co, 0, sizeof co);
    calib_plan *p = NULL;
    if (calib_plan_open(&p, path, &co, &err) == 0) calib_plan_free(p);
    export_job ej;
    if (export_job_read(&ej, path, &err) == 0) export_job_free(&ej);
    cfg *c = NULL;
    if (cfg_load(&c, path, &err) == 0) {
        eval_job ej2;
        (void)eval_job_read(c, &ej2, &err);
        cfg_free(c);
    }
    return 0;
}
