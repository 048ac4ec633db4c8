/* The benchmark's helper scripts, run as a user runs them:
 *  - scripts/regen_benchmark_configs.sh reproduces every committed config
 *    folder in configs/benchmark/ byte for byte (the committed configs are
 *    the generator's output, not hand edits that drift from it);
 *  - scripts/check_bench_data.py names each missing data file and the
 *    config that needs it, exits 1, and exits 0 when everything is there;
 *  - scripts/bench_tables.py averages a task type's variants, follows the
 *    config's method order, counts a shared calibration once per family,
 *    and places the plot's labels without overlaps;
 *  - scripts/seed_study.py derives one calibrate config per seed;
 *  - scripts/benchmark.sh --shard I/N splits its adapters and calibrate
 *    stages into disjoint shards that cover every step and every job.
 * Needs /usr/bin/python3 and gnuplot (scripts/setup.sh). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void require_python(void) { tu_require_python("json", "Debian's python3"); }

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

/* One finished calibrate job as bench_tables.py reads it:
 * CALDIR/<task>/<slug>/results.json and predictions.jsonl. */
static void write_job(const char *caldir, const char *task, const char *method, const char *slug,
                      const char *type, double quality, long params, int shared, const char *family,
                      const char *prediction) {
    char p[1400], cmd[1600], js[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s/%s'", caldir, task, slug);
    cr_assert_eq(tu_system(cmd), 0);
    snprintf(js, sizeof js,
             "{\"task\": \"%s\", \"method\": \"%s\", \"type\": \"%s\", \"n\": 2, "
             "\"rougeL\": {\"f1\": %g}, \"weighted_rouge\": %g, \"chrf_corpus\": 10, "
             "\"inference_passes\": 1, \"extra_params\": %ld, \"extra_bytes_fp16\": %ld, "
             "\"family\": \"%s\", \"calibration\": {\"shared\": %s}}\n",
             task, method, type, quality, quality, params, 2 * params, family, shared ? "true" : "false");
    snprintf(p, sizeof p, "%s/%s/%s/results.json", caldir, task, slug);
    cr_assert_eq(tu_write_file(p, js, strlen(js)), 0);
    snprintf(js, sizeof js,
             "{\"line\": 1, \"prediction\": \"%s\", \"rougeL\": %g, \"weighted_rouge\": %g}\n"
             "{\"line\": 2, \"prediction\": \"%s\", \"rougeL\": %g, \"weighted_rouge\": %g}\n",
             prediction, quality, quality, prediction, quality, quality);
    snprintf(p, sizeof p, "%s/%s/%s/predictions.jsonl", caldir, task, slug);
    cr_assert_eq(tu_write_file(p, js, strlen(js)), 0);
}

/* Runs Python `code` in scripts/ (so it can import the scripts) and asserts
 * that it exits 0; its output is the failure message. */
static void python_check(const char *code) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s/scripts' && /usr/bin/python3 -c '%s' 2>&1", tu_source_dir(), code);
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
}

static int has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *s = text; (s = strstr(s, line)); s++)
        if ((s == text || s[-1] == '\n') && (s[n] == '\n' || s[n] == 0)) return 1;
    return 0;
}

/* Table 1 is the mean over a task type's variants, rows in the config's
 * method order; Table 2 counts a shared calibration once per family, not
 * once per task, and gives the size as a % of one LoRA (the joint expert);
 * the plot is drawn. */
Test(bench_scripts, bench_tables_means_and_storage, .timeout = 120) {
    require_python();
    tu_require("command -v gnuplot", "gnuplot", "Debian's gnuplot-nox");
    const char *d = tu_tmpdir();
    char cal[1200], cmd[4096], p[1300];
    snprintf(cal, sizeof cal, "%s/cal", d);
    const char *tasks[] = {"summary+casual", "summary+witty", "reply+casual"};
    const char *fams[] = {"summary+tone", "summary+tone", "reply+tone"};
    for (int t = 0; t < 3; t++) {
        /* casual outputs carry a casual opener: rate 1 on the casual tasks,
         * 0 on witty; so summary+tone's rate is the mean 0.5 */
        write_job(cal, tasks[t], "linear", "linear", "merge", 0.2 + 0.2 * t, 0, 0, fams[t], "Hey! They met.");
        write_job(cal, tasks[t], "LC++", "LC++", "calibrate", 0.5, 10000, 0, fams[t], "They met.");
        /* a folder name no rule derives from the method: the scripts must
         * find a job by the method its results.json names */
        write_job(cal, tasks[t], "Shared LC++", "job-7", "calibrate", 0.4, 16000, 1, fams[t], "They met.");
        write_job(cal, tasks[t], "joint expert", "joint_expert", "joint_expert", 0.6, 100000, 0, fams[t],
                  "They met.");
    }
    snprintf(p, sizeof p, "%s/calibrate.json", d);
    const char *cfg = "{\"methods\": [{\"name\": \"joint expert\"}, {\"name\": \"linear\"}, "
                      "{\"name\": \"Shared LC++\"}, {\"name\": \"LC++\"}]}";
    cr_assert_eq(tu_write_file(p, cfg, strlen(cfg)), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/bench_tables.py' '%s' '%s/out' --config '%s' 2>&1",
             tu_source_dir(), cal, d, p);
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "bench_tables.py failed: %s", log);
    free(log);
    snprintf(cmd, sizeof cmd, "cat '%s/out/table1.md'", d);
    char *t1 = tu_capture(cmd, &st);
    cr_assert(has_line(t1, "| linear | – | – | 0.3000 | 0.500 | – | – | 0.6000 | 1.000 |"), "%s", t1);
    cr_assert(has_line(t1, "| LC++ | – | – | 0.5000 | 0.000 | – | – | 0.5000 | 0.000 |"), "%s", t1);
    const char *a = strstr(t1, "| joint expert"), *b = strstr(t1, "| linear"), *c = strstr(t1, "| Shared LC++"),
               *e = strstr(t1, "| LC++");
    cr_assert(a && b && c && e && a < b && b < c && c < e, "rows not in the config's order:\n%s", t1);
    free(t1);
    snprintf(cmd, sizeof cmd, "cat '%s/out/table2.md'", d);
    char *t2 = tu_capture(cmd, &st);
    cr_assert(has_line(t2, "| LC++ | 1 | 10000 | 10.00 | 0.0200 | 0.0600 |"), "%s", t2);
    cr_assert(has_line(t2, "| Shared LC++ | 1 | 16000 | 16.00 | 0.0320 | 0.0640 |"),
              "a shared calibration must count once per family (2 x 32000 bytes):\n%s", t2);
    cr_assert(has_line(t2, "| joint expert | 1 | 100000 | 100.00 | 0.2000 | 0.6000 |"), "%s", t2);
    free(t2);
    /* LC++ minus linear: quality (0.5 - 0.2 + 0.5 - 0.4) / 2 = 0.2 on summary + tone, 0.5 - 0.6 on
     * reply + tone, mean 0.05; success 0 against 0.5 and 1, so -0.75; every example alike, so the
     * bootstrap interval is the point */
    snprintf(cmd, sizeof cmd, "cat '%s/out/comparisons.md'", d);
    char *cm = tu_capture(cmd, &st);
    cr_assert(has_line(cm, "| linear | +0.0500\\* | [+0.0500, +0.0500] | -0.7500\\* | [-0.7500, -0.7500] |"),
              "%s", cm);
    free(cm);
    snprintf(cmd, sizeof cmd, "test -s '%s/out/quality_vs_storage.png' && test -s '%s/out/results.csv'", d, d);
    cr_assert_eq(tu_system(cmd), 0, "plot or CSV not written");
}

/* The plot's label placement: eight methods at the same storage and nearly
 * the same quality get labels that do not overlap one another. */
Test(bench_scripts, plot_labels_do_not_overlap) {
    require_python();
    python_check("import math, bench_tables as b\n"
                 "pts = [(1e-4, 0.06 + 0.0005 * i, \"method %d\" % i) for i in range(8)] + [(0.1, 0.09, \"LC++\")]\n"
                 "xr, yr = (1e-4 / 1.4, 3.0), (0.0, 0.1)\n"
                 "at = b.place_labels(pts, xr, yr)\n"
                 "cw = 6.2 * (math.log10(xr[1]) - math.log10(xr[0])) / 770\n"
                 "lh = 11.5 * (yr[1] - yr[0]) / 440\n"
                 "box = {n: (math.log10(x), math.log10(x) + cw * (len(n) + 2), y) for n, (x, y) in at.items()}\n"
                 "bad = [(m, n) for m in box for n in box if m < n and box[m][0] < box[n][1] and box[n][0] < box[m][1]"
                 " and abs(box[m][2] - box[n][2]) < lh * 0.999]\n"
                 "assert not bad, bad\n"
                 "assert at[\"LC++\"] == (0.1, 0.09), \"a free label moved\"\n");
}

/* scripts/seed_study.py's config for one seed: training.seed and the
 * methods' init_seed set, only the asked methods, every path absolute (the
 * config is written elsewhere), the output moved. */
Test(bench_scripts, seed_study_derives_seed_configs) {
    require_python();
    python_check("import seed_study as s\n"
                 "cfg = {\"model\": \"../m.bin\", \"output_dir\": \"out\", \"training\": {\"seed\": 1, \"steps\": 5},\n"
                 "       \"adapters\": [{\"name\": \"a\", \"path\": \"l/a\"}],\n"
                 "       \"tasks\": [{\"name\": \"x+es\", \"joint_expert\": \"j\", \"data\": {\"train\": \"d/t.jsonl\", \"test\": \"/abs/t.jsonl\"}}],\n"
                 "       \"methods\": [{\"name\": \"linear\", \"type\": \"merge\"}, {\"name\": \"LC++\", \"type\": \"calibrate\",\n"
                 "                    \"calibration\": {\"kind\": \"lowrank\", \"rank\": 4}}]}\n"
                 "c = s.derive(s.absolutize(cfg, \"/cfg/dir\"), 7, [\"LC++\"], \"/runs/seed7\")\n"
                 "assert c[\"training\"] == {\"seed\": 7, \"steps\": 5}, c[\"training\"]\n"
                 "assert [m[\"name\"] for m in c[\"methods\"]] == [\"LC++\"]\n"
                 "assert c[\"methods\"][0][\"calibration\"][\"init_seed\"] == 7\n"
                 "assert c[\"model\"] == \"/cfg/m.bin\" and c[\"adapters\"][0][\"path\"] == \"/cfg/dir/l/a\"\n"
                 "assert c[\"tasks\"][0][\"data\"] == {\"train\": \"/cfg/dir/d/t.jsonl\", \"test\": \"/abs/t.jsonl\"}\n"
                 "assert c[\"tasks\"][0][\"joint_expert\"] == \"/cfg/dir/j\" and c[\"output_dir\"] == \"/runs/seed7\"\n"
                 "assert cfg[\"training\"][\"seed\"] == 1, \"the original config changed\"\n");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/seed_study.py' no-such-benchmark 2>&1", tu_source_dir());
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_neq(st, 0);
    cr_assert(strstr(log, "no-such-benchmark"), "%s", log);
    free(log);
}

/* scripts/quant_study.py: the evaluate config that scores a float32
 * calibration on a quantized base carries the job's recipe, calibration,
 * the task's test settings under evaluate's names, and base_type only when
 * quantized; Table-1 means and the paired bootstrap on known data; bad
 * arguments are refused with the reason. */
Test(bench_scripts, quant_study_configs_and_statistics) {
    require_python();
    python_check("import quant_study as q\n"
                 "cfg = {\"model\": \"/m\", \"tokenizer\": \"/t.json\", \"generation\": {\"max_new_tokens\": 9},\n"
                 "       \"metrics\": {\"tokenization\": \"latin\"}}\n"
                 "task = {\"data\": {\"test\": \"/d/test.jsonl\", \"prompt_template\": \"{x}:\", \"target_template\": \" {y}\",\n"
                 "        \"max_len\": 300, \"max_test_examples\": 7, \"on_bad_row\": \"skip\", \"train\": \"/d/tr.jsonl\"}}\n"
                 "res = {\"method\": \"LC++\", \"merge\": {\"method\": \"concat\", \"adapters\": [{\"name\": \"a\", \"path\": \"/a\"}]}}\n"
                 "e = q.eval_config(cfg, task, res, \"/j\", \"q4_0\", \"/o\")\n"
                 "assert e[\"base_type\"] == \"q4_0\" and e[\"merge\"] == res[\"merge\"] and e[\"calibs\"] == [\"/j/calibration.h5\"]\n"
                 "assert e[\"data\"] == {\"path\": \"/d/test.jsonl\", \"prompt_template\": \"{x}:\", \"target_template\": \" {y}\",\n"
                 "                      \"max_len\": 300, \"max_examples\": 7, \"on_bad_row\": \"skip\"}, e[\"data\"]\n"
                 "assert e[\"generation\"] == {\"max_new_tokens\": 9} and e[\"metrics\"] == {\"tokenization\": \"latin\"}\n"
                 "assert \"base_type\" not in q.eval_config(cfg, task, res, \"/j\", \"f32\", \"/o\")\n"
                 "tasks = [\"summary+es\", \"summary+fr\", \"reply+casual\"]\n"
                 "a = {\"summary+es\": ([0.2, 0.4], [1, 1]), \"summary+fr\": ([0.6, 0.6], [0, 1]), \"reply+casual\": ([0.1, 0.3], [1, 0])}\n"
                 "qm, rm, per = q.means(a, tasks)\n"
                 "assert abs(per[0][0] - 0.45) < 1e-12 and abs(per[0][1] - 0.75) < 1e-12 and per[1] is None and per[2] is None\n"
                 "assert abs(qm - (0.45 + 0.2) / 2) < 1e-12 and abs(rm - (0.75 + 0.5) / 2) < 1e-12\n"
                 "b = {t: ([x - 0.1 for x in v[0]], v[1]) for t, v in a.items()}\n"
                 "(dq, lo, hi), (dr, rlo, rhi) = q.paired(a, b, tasks, 200, 1)\n"
                 "assert abs(dq - 0.1) < 1e-12 and abs(lo - 0.1) < 1e-9 and abs(hi - 0.1) < 1e-9, (dq, lo, hi)\n"
                 "assert dr == 0 and rlo == 0 and rhi == 0\n");
    const char *bad[2][2] = {{"no-such-benchmark", "no-such-benchmark"},
                             {"scratch3m --types f32", "not a quantized base type"}};
    for (int k = 0; k < 2; k++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/quant_study.py' %s 2>&1", tu_source_dir(), bad[k][0]);
        int st;
        char *log = tu_capture(cmd, &st);
        cr_assert_neq(st, 0, "quant_study.py %s was accepted", bad[k][0]);
        cr_assert(strstr(log, bad[k][1]), "%s", log);
        free(log);
    }
}

/* scripts/bench_decode.sh end to end at its smallest (one shape, one run,
 * a few tokens): every row of the table has positive speeds for both
 * runtimes, without and with adapters (our bundle task, llama.cpp's GGUF
 * LoRA). Catches a benchmark that rots (the figures come from runs on a
 * quiet machine, see the README). */
Test(bench_scripts, bench_decode_smoke, .timeout = 300) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "test -x '%s/bin/llama_run'", LC_BINARY_DIR);
    if (tu_system(cmd) != 0)
        cr_assert_fail("%s/bin/llama_run missing: scripts/setup.sh installs llama.cpp's libraries "
                       "(node-llama-cpp) and the build makes it", LC_BINARY_DIR);
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/bench_decode.sh' --build '%s' --work '%s/dec' --runs 1 --tokens 8 "
             "--shapes 15m 2>&1", tu_source_dir(), LC_BINARY_DIR, tu_tmpdir());
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "bench_decode.sh failed:\n%s", log);
    int rows = 0;
    for (char *l = strstr(log, "\n| 15m |"); l; l = strstr(l + 1, "\n| 15m |")) {
        char ty[16];
        int t;
        double mb, o, lc, ratio, bo, bl, op, lp, bratio;
        cr_assert_eq(sscanf(l, "\n| 15m | %15s | %d | %lf | %lf | %lf | %lf | %lf %% | %lf %% | %lf | %lf | %lf |", ty, &t,
                            &mb, &o, &lc, &ratio, &op, &lp, &bo, &bl, &bratio),
                     11, "row: %.300s", l + 1);
        /* the bandwidth shares are printed rounded: on a loaded machine 0 % is a share */
        cr_assert(mb > 1 && o > 0 && lc > 0 && op >= 0 && lp >= 0, "row without speeds: %.300s", l + 1);
        cr_assert(bo > 0 && bl > 0 && bratio > 0, "row without the adapter speeds (ours + t1, llama.cpp + LoRA): %.300s",
                  l + 1);
        rows++;
    }
    cr_assert_eq(rows, 6, "expected 3 types x 2 thread counts:\n%s", log);
    free(log);
}

/* The steps of `benchmark.sh --list --stage S --shard I/N` for I < N: their
 * union is the unsharded stage, no step is in two shards, and the calibrate
 * units cover every job of `calibrate --plan` exactly once. */
Test(bench_scripts, benchmark_shards_cover_every_job_once, .timeout = 300) {
    require_python();
    char cmd[8192];
    int st;
    snprintf(cmd, sizeof cmd,
             "cd '%s' && set -e; for stage in adapters calibrate; do "
             "  bash scripts/benchmark.sh stories260k --list --stage $stage | sort > /tmp/bs-all.$$; "
             "  for n in 3 7; do : > /tmp/bs-sh.$$; i=0; while [ $i -lt $n ]; do "
             "    bash scripts/benchmark.sh stories260k --list --stage $stage --shard $i/$n >> /tmp/bs-sh.$$; i=$((i+1)); done; "
             "    sort /tmp/bs-sh.$$ > /tmp/bs-shs.$$; "
             "    [ -z \"$(uniq -d /tmp/bs-shs.$$)\" ] || { echo \"$stage $n: a step in two shards\"; exit 1; }; "
             "    cmp /tmp/bs-all.$$ /tmp/bs-shs.$$ || { echo \"$stage $n: shards do not cover the stage\"; exit 1; }; "
             "  done; "
             "  [ -s /tmp/bs-all.$$ ] || { echo \"$stage: no steps\"; exit 1; }; "
             "done; "
             "jobs=$(build/bin/calibrate --config configs/benchmark/stories260k/calibrate.json --plan | grep -c '\"job\"'); "
             "units=$(bash scripts/benchmark.sh stories260k --list --stage calibrate | "
             "  awk -F'\\t' '{print split($2, t, \",\")}' | paste -sd+ | bc); "
             "echo \"jobs=$jobs units=$units\"; [ \"$jobs\" = \"$units\" ] && [ $jobs -gt 100 ]; "
             "bash scripts/benchmark.sh stories260k --list --shard 3/3 2>&1 | grep -q 'not I/N' ; "
             "rm -f /tmp/bs-*.$$",
             tu_source_dir());
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "benchmark.sh --shard: %s", out);
    fprintf(stderr, "benchmark shards: %s", out);
    free(out);
}
