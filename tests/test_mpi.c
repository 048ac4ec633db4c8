/* Data-parallel `train` and `calibrate` under `mpirun -np 2` on loopback,
 * compared with the one-process run: the adapters (final/, best/) byte for
 * byte, metrics.jsonl byte for byte once its two wall-time fields
 * (tok_per_s, seconds) are cut, checkpoint.h5 tensor by tensor, bit for bit,
 * and every attribute but `seconds` (wall time). A rank that dies mid-run
 * fails the job with a message, within a timeout. Skipped, saying so, in a
 * build without MPI or without mpirun. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "loaders.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"

static char dir[512];

static void need_mpi(void) {
#ifndef LC_TEST_MPI
    cr_skip_test("skipped: this build has no MPI (install openmpi-bin libopenmpi-dev, -DLC_MPI=ON)");
#endif
    if (tu_system("command -v mpirun >/dev/null 2>&1") != 0)
        cr_skip_test("skipped: mpirun not found (apt-get install openmpi-bin)");
}

static void setup(void) {
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 48, c.vocab_size = 267, c.max_seq_len = 128;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 1, c.eos_id = 2;
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK);
    model_init_random(&m, 0.1f, 1);
    char p[1024];
    snprintf(p, sizeof p, "%s/model.bin", dir);
    cr_assert_eq(model_save_llama2c(&m, p, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    snprintf(p, sizeof p, "%s/tok267.bin", dir);
    cr_assert_eq(tu_write_merge_tokenizer(p, 267), 0);
    const char *words[] = {"the cat", "a dog", "and then", "is red", "in the house", "the sun"};
    for (int k = 0; k < 2; k++) { /* two single-task LoRAs for calibrate */
        lora l;
        cr_assert_eq(lora_init(&l, &c, 2, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
        lora_init_random(&l, 0.05f, 20 + k);
        snprintf(p, sizeof p, "%s/lora%d", dir, k);
        cr_assert_eq(lc_make_dirs(p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(lora_save_peft(&l, p, &err), LC_OK, "%s", err.msg);
        lora_free(&l);
    }
    for (int split = 0; split < 2; split++) {
        snprintf(p, sizeof p, "%s/%s.jsonl", dir, split ? "val" : "train");
        FILE *f = fopen(p, "w");
        for (int i = 0; i < (split ? 10 : 40); i++)
            fprintf(f, "{\"q\": \"say %s\", \"a\": \"%s %s\"}\n", words[i % 6], words[i % 6],
                    words[(i + split) % 6]);
        fclose(f);
    }
}

static void write_train_config(const char *name, const char *out, const char *training) {
    char p[1024], text[4096];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"%s\", \"mode\": \"lora\",\n"
             " \"lora\": {\"rank\": 4, \"alpha\": 8, \"dropout\": 0.1},\n"
             " \"data\": {\"train\": \"train.jsonl\", \"validation\": \"val.jsonl\",\n"
             "   \"prompt_template\": \"Q: {q}\\nA:\", \"target_template\": \" {a}\", \"max_len\": 48},\n"
             " \"training\": {\"steps\": 12, \"seed\": 3, \"eval_every\": 5, \"eval_batches\": 0,\n"
             "   \"checkpoint_every\": 4, \"log_every\": 1, %s},\n"
             " \"optimizer\": {\"lr\": 0.01, \"warmup_steps\": 2, \"schedule\": \"cosine\"}}\n",
             out, training);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

/* Runs `[mpirun -np n] prog args` in dir under a timeout; returns the exit
 * status, *msg the output. */
static int run(int np, const char *env, const char *prog, const char *args, char **msg) {
    char cmd[4096], mpi[512] = "";
    if (np > 0)
        snprintf(mpi, sizeof mpi, "mpirun --allow-run-as-root --oversubscribe -np %d "
                 "--bind-to none --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo ", np);
    /* the same threads in every process: the kernels' sums may depend on them */
    /* Under AddressSanitizer, leak checking is off for processes mpirun starts:
     * OpenMPI leaves allocations in MCA components it has already unloaded
     * (no symbols to suppress them by). The same programs are leak-checked
     * without mpirun by test_train, test_calibrate and test_evaluate. */
    char asan[600] = "";
    if (np > 0 && getenv("ASAN_OPTIONS"))
        snprintf(asan, sizeof asan, "ASAN_OPTIONS='%s:detect_leaks=0' ", getenv("ASAN_OPTIONS"));
    snprintf(cmd, sizeof cmd, "cd %s && OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=1 %s%s timeout -k 5 120 "
             "%s%s %s 2>&1", dir, getenv("LC_TEST_MPI_THREADS") ? getenv("LC_TEST_MPI_THREADS") : "1",
             asan, env ? env : "", mpi,
             tu_bin(prog), args);
    int st;
    char *out = tu_capture(cmd, &st);
    if (msg) *msg = out;
    else free(out);
    return st;
}

static char *slurp(const char *path, size_t *n) {
    lc_err err;
    char *p = lc_read_file(path, n, &err);
    cr_assert_not_null(p, "%s", err.msg);
    return p;
}

static void same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    cr_assert(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* metrics.jsonl without its wall-time fields ("tok_per_s": ..., "seconds": ...) */
static char *metrics_no_time(const char *path) {
    size_t n;
    char *t = slurp(path, &n), *o = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (!strncmp(t + i, ", \"tok_per_s\": ", 15) || !strncmp(t + i, ", \"seconds\": ", 13)) {
            i += 2;
            while (i < n && t[i] != ',' && t[i] != '}') i++;
            continue;
        }
        o[k++] = t[i++];
    }
    o[k] = 0;
    free(t);
    return o;
}

static void same_metrics(const char *a, const char *b) {
    char *x = metrics_no_time(a), *y = metrics_no_time(b);
    cr_assert_str_eq(x, y, "%s and %s differ beyond wall time", a, b);
    free(x);
    free(y);
}

/* Every tensor bit for bit, the attributes in keys equal (HDF5 files are
 * not compared as bytes: HDF5 stores object times). */
static void same_tensors(const char *a, const char *b, const char *const *keys) {
    tensor_file *x, *y;
    lc_err err;
    cr_assert_eq(tensor_file_open(&x, a, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_file_open(&y, b, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_file_count(x), tensor_file_count(y));
    for (int i = 0; i < tensor_file_count(x); i++) {
        const tensor_info *ti = tensor_file_at(x, i), *tj = tensor_file_find(y, ti->name);
        cr_assert_not_null(tj, "%s: no tensor %s", b, ti->name);
        cr_assert_eq(ti->numel, tj->numel);
        float *p = malloc(sizeof(float) * ti->numel), *q = malloc(sizeof(float) * ti->numel);
        cr_assert_eq(tensor_file_read_f32(x, ti->name, 0, NULL, p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(tensor_file_read_f32(y, ti->name, 0, NULL, q, &err), LC_OK, "%s", err.msg);
        cr_assert(memcmp(p, q, sizeof(float) * ti->numel) == 0, "%s vs %s: tensor %s differs", a, b,
                  ti->name);
        free(p);
        free(q);
    }
    for (int k = 0; keys[k]; k++) {
        const char *u = tensor_file_meta(x, keys[k]), *v = tensor_file_meta(y, keys[k]);
        cr_assert(u && v && !strcmp(u, v), "%s vs %s: attribute %s: %s vs %s", a, b, keys[k],
                  u ? u : "-", v ? v : "-");
    }
    tensor_file_free(x);
    tensor_file_free(y);
}

static void same_train_run(const char *one, const char *two) {
    const char *files[] = {"final/adapter_model.safetensors", "final/adapter_config.json",
                           "best/adapter_model.safetensors", "best/adapter_config.json", NULL};
    const char *ck_keys[] = {"format", "version", "program", "step", "adam_step", "epoch", "pos",
                             "best_val", "tokens", NULL}; /* all but "seconds" */
    const char *h5_keys[] = {"format", "version", "adapter_config", NULL};
    char a[1024], b[1024];
    struct stat sb;
    for (int i = 0; files[i]; i++) {
        snprintf(a, sizeof a, "%s/%s/%s", dir, one, files[i]);
        snprintf(b, sizeof b, "%s/%s/%s", dir, two, files[i]);
        if (stat(a, &sb) != 0) continue; /* not written by this configuration */
        same_bytes(a, b);
    }
    snprintf(a, sizeof a, "%s/%s/metrics.jsonl", dir, one);
    snprintf(b, sizeof b, "%s/%s/metrics.jsonl", dir, two);
    same_metrics(a, b);
    snprintf(a, sizeof a, "%s/%s/checkpoint.h5", dir, one);
    snprintf(b, sizeof b, "%s/%s/checkpoint.h5", dir, two);
    same_tensors(a, b, ck_keys);
    for (int best = 0; best < 2; best++) {
        snprintf(a, sizeof a, "%s/%s/%s/adapter.h5", dir, one, best ? "best" : "final");
        snprintf(b, sizeof b, "%s/%s/%s/adapter.h5", dir, two, best ? "best" : "final");
        if (stat(a, &sb) == 0) same_tensors(a, b, h5_keys);
    }
}

TestSuite(mpi, .init = setup, .timeout = 600);

/* 2 ranks, each batch of 4 split in units of 2 rows (one per rank), then 3
 * micro-batches of 4 rows (3 units over 2 ranks: uneven). */
Test(mpi, train_two_ranks_is_bit_exact) {
    need_mpi();
    const char *variants[] = {"\"batch_size\": 4, \"micro_batch_size\": 2",
                              "\"batch_size\": 4, \"grad_accum\": 3",
                              "\"batch_size\": 4, \"grad_accum\": 2, \"micro_batch_size\": 3"};
    for (int v = 0; v < 3; v++) {
        char *msg, args[256];
        write_train_config("one", "run_one", variants[v]);
        write_train_config("two", "run_two", variants[v]);
        cr_assert_eq(run(0, NULL, "train", "--config one.json", &msg), 0, "%s", msg);
        free(msg);
        snprintf(args, sizeof args, "--config two.json");
        cr_assert_eq(run(2, NULL, "train", args, &msg), 0, "%s", msg);
        cr_assert_not_null(strstr(msg, "2 ranks"), "%s", msg);
        free(msg);
        same_train_run("run_one", "run_two");
    }
}

Test(mpi, train_resume_under_mpi) {
    need_mpi();
    char *msg;
    const char *tr = "\"batch_size\": 4, \"micro_batch_size\": 2";
    write_train_config("one", "run_one", tr);
    write_train_config("two", "run_two", tr);
    cr_assert_eq(run(0, NULL, "train", "--config one.json", &msg), 0, "%s", msg);
    free(msg);
    cr_assert_neq(run(2, NULL, "train", "--config two.json --stop-after 6", &msg), 0, "%s", msg);
    free(msg);
    cr_assert_eq(run(2, NULL, "train", "--config two.json --resume", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "resumed from"), "%s", msg);
    free(msg);
    same_train_run("run_one", "run_two");
}

Test(mpi, dead_rank_fails_the_job) {
    need_mpi();
    char *msg;
    write_train_config("two", "run_two", "\"batch_size\": 4, \"micro_batch_size\": 2");
    time_t t0 = time(NULL);
    int st = run(2, "LC_TEST_KILL_RANK=1:5", "train", "--config two.json", &msg);
    /* timeout(1) would stop a hung job after 120 s (status 124, or 137) */
    cr_assert(st != 0 && time(NULL) - t0 < 100, "a dead rank must fail the job, not hang (status %d, "
              "%ld s): %s", st, (long)(time(NULL) - t0), msg);
    cr_assert_not_null(strstr(msg, "rank 1"), "mpirun's message names the dead rank: %s", msg);
    cr_assert_not_null(strstr(msg, "signal 9"), "mpirun's message says how it died: %s", msg);
    char fin[1024];
    struct stat sb;
    snprintf(fin, sizeof fin, "%s/run_two/final", dir);
    cr_assert_neq(stat(fin, &sb), 0, "a failed job must not write final/");
    free(msg);
}

Test(mpi, without_launcher_is_one_process) {
    /* a build with MPI run plainly is the one-process program (no MPI_Init) */
    char *msg;
    write_train_config("one", "run_one", "\"batch_size\": 4");
    cr_assert_eq(run(0, NULL, "train", "--config one.json", &msg), 0, "%s", msg);
    cr_assert_null(strstr(msg, "ranks"), "%s", msg);
    free(msg);
}

static void write_eval_config(const char *name, const char *out, const char *gen) {
    char p[1024], text[2048];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"%s\",\n"
             " \"data\": {\"path\": \"train.jsonl\", \"prompt_template\": \"Q: {q}\\nA:\", "
             "\"target_template\": \" {a}\"},\n"
             " \"generation\": {%s}}\n",
             out, gen);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

/* results.json without its wall time ("seconds") */
static char *results_no_time(const char *path) {
    size_t n;
    char *t = slurp(path, &n), *s = strstr(t, "\"seconds\":");
    cr_assert_not_null(s, "%s has no seconds", path);
    char *e = s;
    while (*e && *e != ',' && *e != '\n' && *e != '}') e++;
    memmove(s, e, strlen(e) + 1);
    return t;
}

/* Sharded evaluation (the random base model: its answers are not empty):
 * 2 and 3 ranks (40 examples: even and uneven shares)
 * write the one-process predictions byte for byte and the same results but
 * for the wall time; sampling under MPI is refused. */
Test(mpi, evaluate_sharded_is_byte_identical) {
    need_mpi();
    char *msg;
    const char *gen = "\"max_new_tokens\": 8, \"batch_size\": 3";
    write_eval_config("ev1", "ev_one", gen);
    cr_assert_eq(run(0, NULL, "evaluate", "--config ev1.json", &msg), 0, "%s", msg);
    free(msg);
    {   /* something to compare: non-empty answers */
        char p[1024];
        size_t n;
        snprintf(p, sizeof p, "%s/ev_one/predictions.jsonl", dir);
        char *t = slurp(p, &n);
        int nonempty = 0;
        for (const char *q = strstr(t, "\"prediction\":\""); q; q = strstr(q + 1, "\"prediction\":\""))
            nonempty += q[14] != '"';
        cr_assert_gt(nonempty, 20, "too few non-empty predictions to compare:\n%s", t);
        free(t);
    }
    for (int np = 2; np <= 3; np++) {
        char out[64], name[64], args[128], a[1024], b[1024];
        snprintf(out, sizeof out, "ev_np%d", np);
        snprintf(name, sizeof name, "ev%d", np);
        write_eval_config(name, out, gen);
        snprintf(args, sizeof args, "--config %s.json", name);
        cr_assert_eq(run(np, NULL, "evaluate", args, &msg), 0, "%s", msg);
        cr_assert_not_null(strstr(msg, "ranks"), "%s", msg);
        free(msg);
        snprintf(a, sizeof a, "%s/ev_one/predictions.jsonl", dir);
        snprintf(b, sizeof b, "%s/%s/predictions.jsonl", dir, out);
        same_bytes(a, b);
        snprintf(a, sizeof a, "%s/ev_one/results.json", dir);
        snprintf(b, sizeof b, "%s/%s/results.json", dir, out);
        char *x = results_no_time(a), *y = results_no_time(b);
        cr_assert_str_eq(x, y, "results.json of %d ranks differs from one process beyond wall time", np);
        free(x), free(y);
    }
    write_eval_config("evs", "ev_s", "\"max_new_tokens\": 8, \"temperature\": 0.7");
    cr_assert_neq(run(2, NULL, "evaluate", "--config evs.json", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "sampling (temperature > 0) under MPI is not supported"), "%s", msg);
    free(msg);
}

/* calibrate: two tasks of one family over two random LoRAs; LC, LC++,
 * Shared LC, a learned and a LoraHub merge and multi-step (every kind of
 * job that trains, searches or feeds one evaluation into another). */
static void write_cal_config(const char *name, const char *out) {
    char p[1024], text[8192];
    const char *task =
        "{\"name\": \"%s\", \"family\": \"f\", \"adapters\": [\"a\", \"b\"],\n"
        "  \"data\": {\"train\": \"train.jsonl\", \"validation\": \"val.jsonl\", \"test\": \"val.jsonl\",\n"
        "           \"prompt_template\": \"%s {q}\\nA:\", \"target_template\": \" {a}\", \"max_len\": 40},\n"
        "  \"multi_step\": {\"first_prompt_template\": \"Q: {q}\\nA:\",\n"
        "                 \"second_prompt_template\": \"{output} then\"}}";
    char t1[1024], t2[1024];
    snprintf(t1, sizeof t1, task, "t1", "Q:");
    snprintf(t2, sizeof t2, task, "t2", "Say:");
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"%s\",\n"
             " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}],\n"
             " \"tasks\": [%s,\n%s],\n"
             " \"methods\": [{\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}},\n"
             "   {\"name\": \"LC++\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", \"rank\": 2}},\n"
             "   {\"name\": \"Shared LC\", \"type\": \"calibrate\", \"shared\": true, \"calibration\": {\"kind\": \"bias\"}},\n"
             "   {\"name\": \"learned\", \"type\": \"merge\", \"merge\": {\"method\": \"learned\"}},\n"
             "   {\"name\": \"LoraHub\", \"type\": \"merge\", \"merge\": {\"method\": \"lorahub\", \"budget\": 4, \"examples\": 8}},\n"
             "   {\"name\": \"multi-step\", \"type\": \"multi_step\"}],\n"
             " \"training\": {\"batch_size\": 4, \"micro_batch_size\": 2, \"steps\": 8, \"seed\": 5,\n"
             "              \"eval_every\": 4, \"log_every\": 1, \"checkpoint_every\": 2},\n"
             " \"optimizer\": {\"lr\": 0.01},\n"
             " \"generation\": {\"max_new_tokens\": 6, \"batch_size\": 3}}\n",
             out, t1, t2);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

/* text without any "key": value whose key is in keys (wall times) */
static char *without_keys(const char *path, const char *const *keys) {
    size_t n;
    char *t = slurp(path, &n);
    for (int k = 0; keys[k]; k++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\"%s\":", keys[k]);
        for (char *s = strstr(t, pat); s; s = strstr(s, pat)) {
            char *e = s;
            while (*e && *e != ',' && *e != '\n' && *e != '}') e++;
            if (*e == ',') e++;
            memmove(s, e, strlen(e) + 1);
        }
    }
    return t;
}

static void same_calibrate_run(const char *one, const char *two) {
    const char *time_keys[] = {"seconds", "train_seconds", NULL};
    const char *jobs[] = {"LC", "LC++", "Shared_LC", "learned", "LoraHub", "multi-step", NULL};
    const char *cal_keys[] = {"format", "version", "kind", "rank", "per_layer", "modules", NULL};
    const char *ck_keys[] = {"format", "version", "step", "adam_step", "epoch", "pos", "best_val", "tokens", NULL};
    char a[1024], b[1024];
    struct stat sb;
    int compared = 0;
    for (int t = 1; t <= 2; t++)
        for (int j = 0; jobs[j]; j++) {
            char sub[128];
            snprintf(sub, sizeof sub, "t%d/%s", t, jobs[j]);
            snprintf(a, sizeof a, "%s/%s/%s/predictions.jsonl", dir, one, sub);
            snprintf(b, sizeof b, "%s/%s/%s/predictions.jsonl", dir, two, sub);
            cr_assert_eq(stat(a, &sb), 0, "%s missing", a);
            same_bytes(a, b);
            snprintf(a, sizeof a, "%s/%s/%s/results.json", dir, one, sub);
            snprintf(b, sizeof b, "%s/%s/%s/results.json", dir, two, sub);
            char *x = without_keys(a, time_keys), *y = without_keys(b, time_keys);
            cr_assert_str_eq(x, y, "%s: %d ranks differ from one process beyond wall time", sub, 2);
            free(x), free(y);
            snprintf(a, sizeof a, "%s/%s/%s/calibration.h5", dir, one, sub);
            snprintf(b, sizeof b, "%s/%s/%s/calibration.h5", dir, two, sub);
            if (stat(a, &sb) == 0) {
                same_tensors(a, b, cal_keys);
                compared++;
            }
            snprintf(a, sizeof a, "%s/%s/%s/metrics.jsonl", dir, one, sub);
            snprintf(b, sizeof b, "%s/%s/%s/metrics.jsonl", dir, two, sub);
            if (stat(a, &sb) == 0) same_metrics(a, b);
            snprintf(a, sizeof a, "%s/%s/%s/checkpoint.h5", dir, one, sub);
            snprintf(b, sizeof b, "%s/%s/%s/checkpoint.h5", dir, two, sub);
            if (stat(a, &sb) == 0) same_tensors(a, b, ck_keys);
        }
    cr_assert_eq(compared, 6, "expected LC, LC++ and Shared LC calibrations for both tasks");
    snprintf(a, sizeof a, "%s/%s/shared-f/Shared_LC/calibration.h5", dir, one);
    snprintf(b, sizeof b, "%s/%s/shared-f/Shared_LC/calibration.h5", dir, two);
    same_tensors(a, b, cal_keys);
    snprintf(a, sizeof a, "%s/%s/table.md", dir, one);
    snprintf(b, sizeof b, "%s/%s/table.md", dir, two);
    same_bytes(a, b);
    snprintf(a, sizeof a, "%s/%s/results.json", dir, one);
    snprintf(b, sizeof b, "%s/%s/results.json", dir, two);
    char *x = without_keys(a, time_keys), *y = without_keys(b, time_keys);
    cr_assert_str_eq(x, y, "run summary: 2 ranks differ from one process beyond wall time");
    free(x), free(y);
}

/* Data-parallel calibrate: the same files as one process (wall times
 * aside), and --resume under MPI after a stop mid-training. */
Test(mpi, calibrate_two_ranks_is_bit_exact) {
    need_mpi();
    char *msg;
    write_cal_config("cal1", "cal_one");
    write_cal_config("cal2", "cal_two");
    cr_assert_eq(run(0, NULL, "calibrate", "--config cal1.json", &msg), 0, "%s", msg);
    free(msg);
    cr_assert_eq(run(2, NULL, "calibrate", "--config cal2.json", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "data-parallel over MPI ranks"), "%s", msg);
    /* the work is shared: each step's units over the ranks, the test set in shares */
    cr_assert_not_null(strstr(msg, "calibrate: 2 ranks, 2 work units per step"), "%s", msg);
    cr_assert_not_null(strstr(msg, "(rank 0's share)"), "%s", msg);
    cr_assert_null(strstr(msg, "rank 1"), "only rank 0 reports: %s", msg);
    free(msg);
    same_calibrate_run("cal_one", "cal_two");
    /* stopped mid-way through a training, then resumed, still under MPI */
    write_cal_config("cal3", "cal_three");
    cr_assert_neq(run(2, NULL, "calibrate", "--config cal3.json --stop-after 3", &msg), 0, "%s", msg);
    free(msg);
    cr_assert_eq(run(2, NULL, "calibrate", "--config cal3.json --resume", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "resumed from"), "%s", msg);
    free(msg);
    same_calibrate_run("cal_one", "cal_three");
}

Test(mpi, dead_rank_fails_calibrate) {
    need_mpi();
    char *msg;
    write_cal_config("cal4", "cal_four");
    time_t t0 = time(NULL);
    /* rank 1 dies at step 5 of the first calibration training (LC on t1) */
    int st = run(2, "LC_TEST_KILL_RANK=1:5", "calibrate", "--config cal4.json", &msg);
    cr_assert(st != 0 && time(NULL) - t0 < 100, "a dead rank must fail calibrate, not hang (status %d, "
              "%ld s): %s", st, (long)(time(NULL) - t0), msg);
    cr_assert_not_null(strstr(msg, "rank 1"), "mpirun's message names the dead rank: %s", msg);
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/cal_four/results.json", dir);
    cr_assert_neq(stat(p, &sb), 0, "a failed calibrate must not write results.json");
    free(msg);
}
