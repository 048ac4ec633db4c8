/* `train` end to end on a tiny self-made model, tokenizer and dataset (no
 * ../shared needed): bit-exact resume after SIGKILL, NaN stop keeping the
 * last good checkpoint, strict configs, outputs loadable by `generate`. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loaders.h"
#include "tensor_file.h"
#include "model.h"
#include "testutil.h"


static char dir[512];

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
    for (int split = 0; split < 2; split++) {
        snprintf(p, sizeof p, "%s/%s.jsonl", dir, split ? "val" : "train");
        FILE *f = fopen(p, "w");
        for (int i = 0; i < (split ? 8 : 40); i++)
            fprintf(f, "{\"q\": \"say %s\", \"a\": \"%s %s\"}\n", words[i % 6], words[i % 6],
                    words[(i + split) % 6]);
        fclose(f);
    }
}

/* Writes a train config into dir/name.json; extra is spliced into
 * "training". */
static void write_config(const char *name, const char *out, int steps, const char *extra_training,
                         const char *extra_top) {
    char p[1024], text[4096];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"%s\", \"mode\": \"lora\",%s\n"
             " \"lora\": {\"rank\": 4, \"alpha\": 8, \"dropout\": 0.1},\n"
             " \"data\": {\"train\": \"train.jsonl\", \"validation\": \"val.jsonl\",\n"
             "   \"prompt_template\": \"Q: {q}\\nA:\", \"target_template\": \" {a}\", \"max_len\": 48},\n"
             " \"training\": {\"batch_size\": 4, \"steps\": %d, \"seed\": 3, \"eval_every\": 5,\n"
             "   \"checkpoint_every\": 1, \"log_every\": 1%s},\n"
             " \"optimizer\": {\"lr\": 0.01, \"warmup_steps\": 2, \"schedule\": \"cosine\"}}\n",
             out, extra_top ? extra_top : "", steps, extra_training ? extra_training : "");
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

static int run_train(const char *name, const char *flags, char **msg) {
    char cmd[4096];
    int st;
    snprintf(cmd, sizeof cmd, "cd %s && %s --config %s.json %s 2>&1", dir, tu_bin("train"), name,
             flags ? flags : "");
    char *out = tu_capture(cmd, &st);
    if (msg) *msg = out;
    else free(out);
    return st;
}

static char *read_bytes(const char *path, size_t *n) {
    lc_err err;
    char *p = lc_read_file(path, n, &err);
    cr_assert_not_null(p, "%s", err.msg);
    return p;
}

static void assert_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
    cr_assert_eq(na, nb, "%s and %s differ in size", a, b);
    cr_assert(memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

TestSuite(train, .init = setup, .timeout = 300);

Test(train, resume_after_sigkill_is_bit_exact) {
    const int steps = 300;
    write_config("full", "run_full", steps, NULL, NULL);
    char *msg;
    cr_assert_eq(run_train("full", NULL, &msg), 0, "%s", msg);
    free(msg);

    write_config("kill", "run_kill", steps, NULL, NULL);
    char logp[1024], cfgp[1024];
    snprintf(logp, sizeof logp, "%s/run_kill/metrics.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/kill.json", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(127);
        freopen("/dev/null", "w", stderr);
        execl(tu_bin("train"), "train", "--config", cfgp, (char *)NULL);
        _exit(127);
    }
    /* kill it once the log shows a step past 60 */
    int killed = 0;
    for (int i = 0; i < 20000 && !killed; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        size_t n;
        lc_err err;
        char *t = lc_read_file(logp, &n, &err);
        if (t) {
            char *last = strrchr(t, '{');
            long step = last ? strtol(strstr(last, "\"step\":") + 7, NULL, 10) : 0;
            free(t);
            if (step > 60) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        }
        int st;
        if (!killed && waitpid(pid, &st, WNOHANG) == pid) break;
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "the run was not killed mid-way (it finished first?)");
    char fin[1024];
    snprintf(fin, sizeof fin, "%s/run_kill/final", dir);
    struct stat sb;
    cr_assert_neq(stat(fin, &sb), 0, "a killed run must not have written final/");

    cr_assert_eq(run_train("kill", "--resume", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "resumed from"), "%s", msg);
    free(msg);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/run_full/final/adapter_model.safetensors", dir);
    snprintf(b, sizeof b, "%s/run_kill/final/adapter_model.safetensors", dir);
    assert_same_file(a, b);
    snprintf(a, sizeof a, "%s/run_full/metrics.jsonl", dir);
    snprintf(b, sizeof b, "%s/run_kill/metrics.jsonl", dir);
    /* the resumed log has every step once (timings differ, so count lines) */
    size_t na, nb;
    char *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
    int la = 0, lb = 0;
    for (size_t i = 0; i < na; i++) la += x[i] == '\n';
    for (size_t i = 0; i < nb; i++) lb += y[i] == '\n';
    cr_assert_eq(la, lb, "metrics.jsonl: %d lines uninterrupted, %d after resume", la, lb);
    free(x);
    free(y);
}

Test(train, outputs_load_in_generate) {
    write_config("gen", "run_gen", 10, NULL, NULL);
    char *msg;
    cr_assert_eq(run_train("gen", NULL, &msg), 0, "%s", msg);
    free(msg);
    char cmd[4096];
    int st;
    for (int h5 = 0; h5 < 2; h5++) {
        snprintf(cmd, sizeof cmd, "cd %s && %s --model model.bin --lora run_gen/final%s:0.5 "
                 "--prompt 'Q: say the cat' --max-new-tokens 8 --temperature 0 2>&1 >/dev/null",
                 dir, tu_bin("generate"), h5 ? "/adapter.h5" : "");
        char *o = tu_capture(cmd, &st);
        cr_assert_eq(st, 0, "%s", o);
        free(o);
    }
}

Test(train, nan_loss_stops_and_keeps_last_checkpoint) {
    write_config("nan", "run_nan", 50, NULL, NULL);
    char p[1024];
    snprintf(p, sizeof p, "%s/nan.json", dir);
    /* an absurd learning rate blows the weights up within a few steps */
    char *t = read_bytes(p, &(size_t){0});
    char *lr = strstr(t, "0.01");
    cr_assert_not_null(lr);
    char fixed[4096];
    snprintf(fixed, sizeof fixed, "%.*s1e30%s", (int)(lr - t), t, lr + 4);
    free(t);
    tu_write_file(p, fixed, strlen(fixed));
    char *msg;
    int st = run_train("nan", NULL, &msg);
    cr_assert_neq(st, 0, "a NaN run must fail: %s", msg);
    cr_assert_not_null(strstr(msg, "non-finite"), "%s", msg);
    free(msg);
    snprintf(p, sizeof p, "%s/run_nan/checkpoint.h5", dir);
    struct stat sb;
    if (stat(p, &sb) == 0) { /* the kept checkpoint is a good one */
        tensor_file *tf;
        lc_err err;
        cr_assert_eq(tensor_file_open(&tf, p, &err), LC_OK, "%s", err.msg);
        tensor_file_free(tf);
    }
}

Test(train, config_errors_name_the_key) {
    char *msg;
    write_config("typo", "run_typo", 5, ", \"lerning_rate\": 1", NULL);
    cr_assert_neq(run_train("typo", NULL, &msg), 0);
    cr_assert_not_null(strstr(msg, "training.lerning_rate"), "%s", msg);
    free(msg);
    write_config("type", "run_type", 5, ", \"batch_size\": \"four\"", NULL);
    cr_assert_neq(run_train("type", NULL, &msg), 0);
    cr_assert_not_null(strstr(msg, "training.batch_size"), "%s", msg);
    free(msg);
    write_config("mod", "run_mod", 5, NULL, " \"tokenizer\": \"nope.bin\",");
    cr_assert_neq(run_train("mod", NULL, &msg), 0);
    cr_assert_not_null(strstr(msg, "nope.bin"), "%s", msg);
    free(msg);
    /* --check: the same errors without loading; a good config passes and
     * nothing is written */
    cr_assert_neq(run_train("typo", "--check", &msg), 0);
    cr_assert_not_null(strstr(msg, "training.lerning_rate"), "%s", msg);
    free(msg);
    write_config("good", "run_good", 5, NULL, NULL);
    cr_assert_eq(run_train("good", "--check", &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "the config is good"), "%s", msg);
    free(msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/run_good", dir);
    cr_assert_neq(access(p, F_OK), 0, "train --check created %s", p);
}

/* base_type (configs/README.md): a LoRA trained against the base held in
 * Q8_0 runs (train used to refuse the key as unknown), and it is not the
 * float32 run's adapter; with mode "full" the key is refused by name. */
Test(train, lora_against_a_q8_0_base) {
    write_config("q8", "run_q8", 4, NULL, " \"base_type\": \"q8_0\",");
    write_config("f32", "run_f32", 4, NULL, NULL);
    char *msg;
    cr_assert_eq(run_train("q8", NULL, &msg), 0, "%s", msg);
    free(msg);
    cr_assert_eq(run_train("f32", NULL, &msg), 0, "%s", msg);
    free(msg);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/run_q8/final/adapter_model.safetensors", dir);
    snprintf(b, sizeof b, "%s/run_f32/final/adapter_model.safetensors", dir);
    size_t na, nb;
    char *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
    cr_assert(na == nb && memcmp(x, y, na) != 0, "the Q8_0 base must change the adapter (same bytes?)");
    free(x), free(y);
    write_config("q8full", "run_q8full", 2, NULL, " \"base_type\": \"q8_0\",");
    char p[1024];
    snprintf(p, sizeof p, "sed -i 's/\"mode\": \"lora\"/\"mode\": \"full\"/' %s/q8full.json", dir);
    cr_assert_eq(tu_system(p), 0);
    cr_assert_neq(run_train("q8full", NULL, &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "base_type"), "%s", msg);
    free(msg);
    write_config("badtype", "run_bad", 2, NULL, " \"base_type\": \"q3_x\",");
    cr_assert_neq(run_train("badtype", NULL, &msg), 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "q3_x"), "%s", msg);
    free(msg);
}

/* A second train on an output folder another run holds is refused by name;
 * the lock file left behind by a finished run does not block. */
Test(train, second_run_on_the_same_folder_is_refused) {
    write_config("lk", "run_lock", 2, NULL, NULL);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/run_lock && cd %s && { flock -o run_lock/.lock sleep 30 >/dev/null 2>&1 & p=$!; }; "
             "sleep 0.5; %s --config lk.json 2>&1; echo \"rc=$?\"; kill $p", dir, dir,
             tu_bin("train"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(strstr(out, "another run is writing to this output folder") && !strstr(out, "rc=0"),
              "the second run was not refused:\n%s", out);
    free(out);
    cr_assert_eq(run_train("lk", NULL, &out), 0, "a stale lock file blocked the run:\n%s", out);
    free(out);
}
