/* The benchmark's helper scripts, run as a user runs them:
 *  - scripts/regen_benchmark_configs.sh reproduces every committed config
 *    folder in configs/benchmark/ byte for byte (the committed configs are
 *    the generator's output, not hand edits that drift from it);
 *  - scripts/check_bench_data.py names each missing data file and the
 *    config that needs it, exits 1, and exits 0 when everything is there.
 * Needs /usr/bin/python3 (scripts/setup.sh). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void require_python(void) {
    cr_assert_eq(tu_system("/usr/bin/python3 -c 'import json' >/dev/null 2>&1"), 0,
                 "/usr/bin/python3 is missing: run scripts/setup.sh");
}

Test(bench_scripts, committed_configs_are_the_generators_output, .timeout = 120) {
    require_python();
    char cmd[4096];
    const char *out = tu_tmpdir();
    snprintf(cmd, sizeof cmd, "OUT='%s/gen' bash '%s/scripts/regen_benchmark_configs.sh' 2>&1", out,
             tu_source_dir());
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "scripts/regen_benchmark_configs.sh failed: %s", log ? log : "");
    free(log);
    const char *names[] = {"stories260k", "scratch3m", "llama-3.2-1b", "qwen2.5-1.5b"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(cmd, sizeof cmd, "diff -r '%s/configs/benchmark/%s' '%s/gen/%s' 2>&1", tu_source_dir(),
                 names[i], out, names[i]);
        log = tu_capture(cmd, &st);
        cr_assert_eq(st, 0, "configs/benchmark/%s differs from what scripts/gen_benchmark_configs.py "
                            "writes (rerun scripts/regen_benchmark_configs.sh):\n%.2000s",
                     names[i], log ? log : "");
        free(log);
    }
}

Test(bench_scripts, check_bench_data_names_missing_files) {
    require_python();
    const char *d = tu_tmpdir();
    char p[1200], cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/cfg' '%s/data'", d, d);
    cr_assert_eq(tu_system(cmd), 0);
    snprintf(p, sizeof p, "%s/cfg/lora-x.json", d);
    const char *lora = "{\"data\": {\"train\": \"../data/x_train.jsonl\", \"validation\": \"../data/x_val.jsonl\"}}";
    cr_assert_eq(tu_write_file(p, lora, strlen(lora)), 0);
    snprintf(p, sizeof p, "%s/cfg/calibrate.json", d);
    const char *cal = "{\"tasks\": [{\"name\": \"t\", \"data\": {\"train\": \"../data/x_train.jsonl\", "
                      "\"test\": \"../data/t_test.jsonl\"}}]}";
    cr_assert_eq(tu_write_file(p, cal, strlen(cal)), 0);
    snprintf(p, sizeof p, "%s/data/x_train.jsonl", d);
    cr_assert_eq(tu_write_file(p, "{}\n", 3), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/check_bench_data.py' '%s/cfg' 2>&1",
             tu_source_dir(), d);
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "missing files, yet exit 0: %s", log);
    cr_assert(strstr(log, "x_val.jsonl (needed by lora-x.json)"), "%s", log);
    cr_assert(strstr(log, "t_test.jsonl (needed by calibrate.json)"), "%s", log);
    cr_assert(strstr(log, "2 of the data files"), "%s", log);
    cr_assert_null(strstr(log, "x_train"), "a file that exists is reported: %s", log);
    free(log);
    snprintf(p, sizeof p, "%s/data/x_val.jsonl", d);
    cr_assert_eq(tu_write_file(p, "{}\n", 3), 0);
    snprintf(p, sizeof p, "%s/data/t_test.jsonl", d);
    cr_assert_eq(tu_write_file(p, "{}\n", 3), 0);
    log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "all files present, yet: %s", log);
    free(log);
}
