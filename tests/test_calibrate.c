/* `calibrate` end to end.
 *
 * With ../shared: single-task LoRAs (summarize; two rule-made tones) are
 * trained on the real stories260K base with DialogSum, then every kind of
 * job runs on two compositional tasks (summary + tone); the test asserts
 * that LC, LC++ and Shared LC lower the compositional validation loss
 * relative to the plain merge, that the dense linear merge and the concat
 * LoRA generate the same text, that results/recipes/calibrations are
 * written and load back, and that --resume skips finished jobs. Also the
 * --account numbers for Llama-3.2-1B.
 *
 * Without ../shared (a tiny self-made model and random LoRAs): bad configs
 * and mismatched adapters fail with a clear message and a non-zero exit. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "account.h"
#include "loaders.h"
#include "model.h"
#include "testutil.h"
#include "tiny_model.h"

static char *read_all(const char *path) {
    lc_err err;
    return lc_read_file(path, NULL, &err);
}

static cJSON *read_json(const char *path) {
    char *t = read_all(path);
    cr_assert_not_null(t, "missing %s", path);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cr_assert_not_null(j, "invalid JSON in %s", path);
    return j;
}

static double jnum(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    cr_assert(cJSON_IsNumber(v), "key '%s' missing or not a number", k);
    return v->valuedouble;
}

/* ---- with ../shared ------------------------------------------------------ */

Test(calibrate, account_llama_3_2_1b) {
    TU_REQUIRE_SHARED();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --account %s/hf-configs/llama-3.2-1b/config.json", tu_bin("calibrate"),
             tu_shared_assets());
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "| LC (bias) | 1 | 23,552 |") != NULL, "LC row not 23,552:\n%s", out);
    cr_assert(strstr(out, "| LC++ (k = 4) | 1 | 176,128 |") != NULL, "%s", out);
    free(out);
    /* the same number straight from the library */
    model_config c;
    lc_err err;
    snprintf(cmd, sizeof cmd, "%s/hf-configs/llama-3.2-1b/config.json", tu_shared_assets());
    cr_assert_eq(account_load_config(cmd, &c, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(account_lc_params(&c, MOD_MASK_ALL, 0), 23552);
}

static void train_lora(const char *dir, const char *name, const char *data, const char *ptpl,
                       const char *ttpl, int max_len) {
    const char *S = tu_shared_assets();
    char path[1024], text[4096];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"model\": \"%s/stories260K/stories260K.bin\", \"tokenizer\": \"%s/stories260K/tok512.bin\",\n"
             " \"output_dir\": \"lora-%s\", \"lora\": {\"rank\": 4, \"alpha\": 8},\n"
             " \"data\": {\"train\": \"data/%s\", \"prompt_template\": \"%s\", \"target_template\": \"%s\", "
             "\"max_len\": %d},\n"
             " \"training\": {\"batch_size\": 8, \"steps\": 20, \"log_every\": 20, \"checkpoint_every\": 0},\n"
             " \"optimizer\": {\"lr\": 0.004}}\n",
             S, S, name, data, ptpl, ttpl, max_len);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --config %s 2>%s/%s.log", tu_bin("train"), path, dir, name);
    cr_assert_eq(tu_system(cmd), 0, "train %s failed (see %s/%s.log)", name, dir, name);
}

/* "summary+formal" and "summary+casual": family "tone" for Shared LC. */
static void write_cal_config(const char *dir, const char *methods) {
    const char *S = tu_shared_assets();
    char path[1024];
    static char text[16384];
    const char *task =
        "{\"name\": \"summary+%s\", \"family\": \"tone\", \"adapters\": [\"summarize\", \"%s\"],\n"
        "  \"data\": {\"train\": \"data/comp_%s_train.jsonl\", \"validation\": \"data/comp_%s_dev.jsonl\",\n"
        "           \"test\": \"data/comp_%s_test.jsonl\", \"prompt_template\": \"{dialogue}\\n%s summary:\",\n"
        "           \"target_template\": \" {target}\", \"max_len\": 320, \"max_test_examples\": 3},\n"
        "  \"joint_expert\": \"lora-joint-%s/final\",\n"
        "  \"multi_step\": {\"first_prompt_template\": \"{dialogue}\\nSummary:\",\n"
        "                 \"second_prompt_template\": \"{output}\\n%s:\"}}";
    char t1[2048], t2[2048];
    snprintf(t1, sizeof t1, task, "formal", "formal", "formal", "formal", "formal", "Formal", "formal", "Formal");
    snprintf(t2, sizeof t2, task, "casual", "casual", "casual", "casual", "casual", "Casual", "casual", "Casual");
    snprintf(text, sizeof text,
             "{\"model\": \"%s/stories260K/stories260K.bin\", \"tokenizer\": \"%s/stories260K/tok512.bin\",\n"
             " \"output_dir\": \"cal\",\n"
             " \"adapters\": [{\"name\": \"summarize\", \"path\": \"lora-summarize/final\"},\n"
             "              {\"name\": \"formal\", \"path\": \"lora-formal/final\"},\n"
             "              {\"name\": \"casual\", \"path\": \"lora-casual/final\"}],\n"
             " \"tasks\": [%s,\n%s],\n"
             " \"methods\": [%s],\n"
             " \"training\": {\"batch_size\": 8, \"steps\": 16, \"eval_every\": 16, \"log_every\": 8,\n"
             "              \"checkpoint_every\": 8},\n"
             " \"optimizer\": {\"lr\": 0.01},\n"
             " \"generation\": {\"max_new_tokens\": 12, \"stop\": [\"\\n\"]}}\n",
             S, S, t1, t2, methods);
    snprintf(path, sizeof path, "%s/cal.json", dir);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
}

static cJSON *job_results(const char *dir, const char *task, const char *method) {
    char path[1024];
    snprintf(path, sizeof path, "%s/cal/%s/%s/results.json", dir, task, method);
    return read_json(path);
}

Test(calibrate, calibration_lowers_compositional_loss, .timeout = 1800) {
    TU_REQUIRE_SHARED();
    const char *dir = tu_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/data/make_calib_fixture.py %s/dialogsum %s/data",
             tu_source_dir(), tu_shared_assets(), dir);
    cr_assert_eq(tu_system(cmd), 0, "fixture script failed");
    train_lora(dir, "summarize", "summarize.jsonl", "{dialogue}\\nSummary:", " {summary}", 320);
    train_lora(dir, "formal", "formal.jsonl", "{text}\\nFormal:", " {formal}", 160);
    train_lora(dir, "casual", "casual.jsonl", "{text}\\nCasual:", " {casual}", 160);
    /* joint experts: a LoRA per compositional task, trained on its data */
    train_lora(dir, "joint-formal", "comp_formal_train.jsonl", "{dialogue}\\nFormal summary:", " {target}", 320);
    train_lora(dir, "joint-casual", "comp_casual_train.jsonl", "{dialogue}\\nCasual summary:", " {target}", 320);
    write_cal_config(dir,
                     "{\"name\": \"zero-shot\", \"type\": \"zero_shot\"},\n"
                     "{\"name\": \"main\", \"type\": \"main_lora\"},\n"
                     "{\"name\": \"aux\", \"type\": \"aux_lora\"},\n"
                     "{\"name\": \"joint\", \"type\": \"joint_expert\"},\n"
                     "{\"name\": \"svd\", \"type\": \"merge\", \"merge\": {\"method\": \"svd\", \"svd_rank\": 4}},\n"
                     "{\"name\": \"DARE\", \"type\": \"merge\", \"merge\": {\"method\": \"dare_ties\", \"density\": 0.7, \"seed\": 5}},\n"
                     "{\"name\": \"slerp\", \"type\": \"merge\", \"merge\": {\"method\": \"slerp\"}},\n"
                     "{\"name\": \"LoraHub\", \"type\": \"merge\", \"merge\": {\"method\": \"lorahub\", \"budget\": 6}},\n"
                     "{\"name\": \"learned\", \"type\": \"merge\", \"merge\": {\"method\": \"learned\"}},\n"
                     "{\"name\": \"multi-step\", \"type\": \"multi_step\"},\n"
                     "{\"name\": \"linear\", \"type\": \"merge\", \"merge\": {\"method\": \"linear\"}},\n"
                     "{\"name\": \"concat\", \"type\": \"merge\", \"merge\": {\"method\": \"concat\"}},\n"
                     "{\"name\": \"TIES\", \"type\": \"merge\", \"merge\": {\"method\": \"ties\", \"density\": 0.5}},\n"
                     "{\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}},\n"
                     "{\"name\": \"LC++\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", \"rank\": 2}},\n"
                     "{\"name\": \"Shared LC\", \"type\": \"calibrate\", \"shared\": true, \"calibration\": {\"kind\": \"bias\"}}");
    snprintf(cmd, sizeof cmd, "cd %s && %s --config cal.json 2>cal.log", dir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(cmd), 0, "calibrate failed (see %s/cal.log)", dir);

    const char *tasks[2] = {"summary+formal", "summary+casual"};
    for (int t = 0; t < 2; t++) {
        const char *cal[3] = {"LC", "LC++", "Shared_LC"};
        for (int k = 0; k < 3; k++) {
            cJSON *r = job_results(dir, tasks[t], cal[k]);
            double before = jnum(r, "val_loss_merge"), after = jnum(r, "val_loss_calibrated");
            fprintf(stderr, "calibrate test: %s / %s: validation loss merge %.4f -> calibrated %.4f\n",
                    tasks[t], cal[k], before, after);
            cr_assert(after < before - 0.05, "%s / %s: calibration did not lower the validation loss "
                      "(%.4f -> %.4f)", tasks[t], cal[k], before, after);
            cr_assert_eq(jnum(r, "inference_passes"), 1);
            cJSON_Delete(r);
        }
        /* dense linear merge == concat LoRA: same predictions */
        char p1[1024], p2[1024];
        snprintf(p1, sizeof p1, "%s/cal/%s/linear/predictions.jsonl", dir, tasks[t]);
        snprintf(p2, sizeof p2, "%s/cal/%s/concat/predictions.jsonl", dir, tasks[t]);
        char *a = read_all(p1), *b = read_all(p2);
        cr_assert(a && b);
        cr_assert_str_eq(a, b, "linear (dense) and concat (LoRA) generated different text");
        free(a), free(b);
        cJSON *ms = job_results(dir, tasks[t], "multi-step");
        cr_assert_eq(jnum(ms, "inference_passes"), 2);
        cJSON_Delete(ms);
        /* extra parameters: LoraHub stores its 2 weights, the learned merge one
         * coefficient per adapter, layer and module (2 x 5 x 7), a joint
         * expert its whole LoRA (rank 4 on all modules of stories260K) */
        cJSON *hub = job_results(dir, tasks[t], "LoraHub");
        cr_assert_eq(jnum(hub, "extra_params"), 2);
        cJSON_Delete(hub);
        cJSON *le = job_results(dir, tasks[t], "learned");
        cr_assert_eq(jnum(le, "extra_params"), 70);
        cr_assert(jnum(le, "val_loss_calibrated") < jnum(le, "val_loss_merge"),
                  "learned coefficients did not lower the validation loss");
        cJSON_Delete(le);
        cJSON *jo = job_results(dir, tasks[t], "joint");
        cr_assert_eq(jnum(jo, "extra_params"), 23120);
        cJSON_Delete(jo);
    }
    /* the LC file loads back with the advertised size */
    model_config c;
    lc_err err;
    char path[1024];
    model m;
    snprintf(path, sizeof path, "%s/stories260K/stories260K.bin", tu_shared_assets());
    cr_assert_eq(model_load(&m, path, &err), LC_OK, "%s", err.msg);
    c = m.cfg;
    calib cb;
    snprintf(path, sizeof path, "%s/cal/summary+formal/LC/calibration.h5", dir);
    cr_assert_eq(calib_load(&cb, &c, path, &err), LC_OK, "%s", err.msg);
    cJSON *lc = job_results(dir, "summary+formal", "LC");
    cr_assert_eq((size_t)jnum(lc, "extra_params"), cb.n_params);
    cr_assert_eq((long long)cb.n_params, (long long)account_lc_params(&c, MOD_MASK_ALL, 0));
    cr_assert_eq(jnum(lc, "extra_bytes_fp16"), 2.0 * cb.n_params);
    cJSON_Delete(lc);
    calib_free(&cb);
    model_free(&m);
    /* one Shared LC for the family: the same file in both tasks */
    char s1[1024], s2[1024];
    snprintf(s1, sizeof s1, "%s/cal/summary+formal/Shared_LC/calibration.h5", dir);
    snprintf(s2, sizeof s2, "%s/cal/summary+casual/Shared_LC/calibration.h5", dir);
    size_t n1, n2;
    char *f1 = lc_read_file(s1, &n1, &err), *f2 = lc_read_file(s2, &n2, &err);
    cr_assert(f1 && f2);
    free(f1), free(f2);
    /* summary files */
    cJSON *all = read_json((snprintf(path, sizeof path, "%s/cal/results.json", dir), path));
    cr_assert_eq(cJSON_GetArraySize(all), 32);
    cJSON_Delete(all);
    char *table = read_all((snprintf(path, sizeof path, "%s/cal/table.md", dir), path));
    cr_assert(table && strstr(table, "| LC++ |"), "table.md lacks the LC++ row");
    free(table);
    /* batched evaluation: the predictions of 40 test examples are byte for
     * byte those of one at a time, whatever the batch size (sequences of
     * different lengths leave the batch and new ones join), with LoRAs and
     * LC++ and with the plain base */
    const char *adapters[2] = {
        "\"loras\": [{\"path\": \"lora-summarize/final\"}, {\"path\": \"lora-formal/final\"}],\n"
        " \"calibs\": [\"cal/summary+formal/LC++/calibration.h5\"],",
        ""};
    const int batches[6] = {1, 4, 5, 13, 32, 40};
    for (int a = 0; a < 2; a++) {
        char *first = NULL;
        for (int k = 0; k < 6; k++) {
            char text[4096];
            snprintf(text, sizeof text,
                     "{\"model\": \"%s/stories260K/stories260K.bin\", \"tokenizer\": \"%s/stories260K/tok512.bin\",\n"
                     " %s \"output_dir\": \"ev%d_%d\",\n"
                     " \"data\": {\"path\": \"data/comp_formal_test.jsonl\", \"prompt_template\": "
                     "\"{dialogue}\\nFormal summary:\", \"target_template\": \" {target}\", \"max_len\": 320},\n"
                     " \"generation\": {\"max_new_tokens\": 24, \"stop\": [\".\"], \"batch_size\": %d}}\n",
                     tu_shared_assets(), tu_shared_assets(), adapters[a], a, batches[k], batches[k]);
            snprintf(path, sizeof path, "%s/ev.json", dir);
            cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
            snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>ev.log", dir, tu_bin("evaluate"));
            cr_assert_eq(tu_system(cmd), 0, "evaluate at batch %d failed (see %s/ev.log)", batches[k], dir);
            snprintf(path, sizeof path, "%s/ev%d_%d/predictions.jsonl", dir, a, batches[k]);
            char *pr = read_all(path);
            cr_assert_not_null(pr);
            snprintf(path, sizeof path, "%s/ev%d_%d/results.json", dir, a, batches[k]);
            cJSON *r = read_json(path);
            cr_assert_eq(jnum(r, "n"), 40);
            cr_assert_eq(jnum(r, "batch_size"), batches[k]);
            cJSON_Delete(r);
            if (!first) {
                /* the answers end at different lengths, or the test shows nothing */
                int lens[64], nl = 0;
                for (const char *q = strstr(pr, "\"prediction\":\""); q && nl < 64;
                     q = strstr(q + 1, "\"prediction\":\"")) {
                    const char *e = strstr(q + 14, "\",\"rouge1\"");
                    lens[nl++] = e ? (int)(e - q) : -1;
                }
                int differ = 0;
                for (int i = 1; i < nl; i++) differ |= lens[i] != lens[0];
                cr_assert(nl == 40 && differ, "expected 40 predictions of different lengths");
                first = pr;
            } else {
                cr_assert_str_eq(pr, first, "batch %d predicted other text than batch 1 (%s)", batches[k],
                                 a ? "base" : "LoRAs + LC++");
                free(pr);
            }
        }
        free(first);
    }
    /* sampling runs one at a time whatever the batch size asked */
    {
        char text[4096];
        snprintf(text, sizeof text,
                 "{\"model\": \"%s/stories260K/stories260K.bin\", \"tokenizer\": \"%s/stories260K/tok512.bin\",\n"
                 " \"output_dir\": \"ev_sampled\",\n"
                 " \"data\": {\"path\": \"data/comp_formal_test.jsonl\", \"prompt_template\": \"{dialogue}\", "
                 "\"target_template\": \" {target}\", \"max_len\": 320, \"max_examples\": 4},\n"
                 " \"generation\": {\"max_new_tokens\": 4, \"temperature\": 0.8, \"batch_size\": 16}}\n",
                 tu_shared_assets(), tu_shared_assets());
        snprintf(path, sizeof path, "%s/ev.json", dir);
        cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>ev.log", dir, tu_bin("evaluate"));
        cr_assert_eq(tu_system(cmd), 0, "sampled evaluate failed (see %s/ev.log)", dir);
        snprintf(path, sizeof path, "%s/ev_sampled/results.json", dir);
        cJSON *r = read_json(path);
        cr_assert_eq(jnum(r, "batch_size"), 1);
        cJSON_Delete(r);
    }
    /* --resume: every job is done, nothing reruns */
    snprintf(cmd, sizeof cmd, "cd %s && %s --config cal.json --resume 2>&1", dir, tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "done already") && !strstr(out, "step 16/16") && !strstr(out, "LoraHub search"),
              "--resume reran jobs:\n%s", out);
    free(out);
}

/* ---- without ../shared: bad input ------------------------------------------ */

static char tdir[512];

/* A tiny llama2.c model (+ tokenizer) and three PEFT LoRAs: two that fit,
 * one made for a model with another width. */
static void tiny_setup(void) {
    snprintf(tdir, sizeof tdir, "%s", tu_tmpdir());
    const model_config c = tiny_config(2);
    char p[1024];
    tiny_write_model(tdir, &c);
    for (int k = 0; k < 3; k++) {
        model_config cc = c;
        if (k == 2) cc.dim = 40, cc.head_dim = 10; /* another base */
        snprintf(p, sizeof p, "lora%d", k);
        tiny_write_lora(tdir, p, &cc, 2 + k % 2, 10 + k);
    }
    snprintf(p, sizeof p, "%s/test.jsonl", tdir);
    const char *rows = "{\"q\": \"hello\", \"a\": \"world\"}\n{\"q\": \"good\", \"a\": \"day\"}\n";
    cr_assert_eq(tu_write_file(p, rows, strlen(rows)), 0);
}

/* Runs calibrate on a config whose adapters/tasks/methods parts are given;
 * expects failure with `needle` in stderr. */
static void expect_failure(const char *adapters, const char *tasks, const char *methods,
                           const char *extra, const char *needle) {
    char path[1024], text[8192], cmd[2048];
    snprintf(path, sizeof path, "%s/bad.json", tdir);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"out\",\n \"adapters\": %s,\n \"tasks\": %s,\n"
             " \"methods\": %s%s}\n",
             adapters, tasks, methods, extra);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    snprintf(cmd, sizeof cmd, "%s --config %s 2>&1", tu_bin("calibrate"), path);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "calibrate accepted a bad config (%s):\n%s", needle, out);
    cr_assert_lt(st, 128, "calibrate crashed (status %d):\n%s", st, out);
    cr_assert(strstr(out, needle) != NULL, "expected '%s' in the message, got:\n%s", needle, out);
    fprintf(stderr, "calibrate bad input: %s", out);
    free(out);
}

#define ADS2 "[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}]"
#define TASK1 "[{\"name\": \"t\", \"adapters\": [\"a\", \"b\"], \"data\": {\"test\": \"test.jsonl\", " \
              "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\", \"max_len\": 32}}]"

/* Names from a config become folder names only through lc_slugify: a
 * hostile task or method name cannot reach outside output_dir, and names
 * that collide once cut to 63 bytes are refused. */
Test(calibrate_bad_input, hostile_names_stay_inside_output_dir, .init = tiny_setup) {
    char path[1024], text[8192], cmd[2048];
    char slug[64];
    lc_slugify(slug, sizeof slug, "../../evil");
    cr_assert_str_eq(slug, "_._.._evil");
    lc_slugify(slug, sizeof slug, "..");
    cr_assert_str_eq(slug, "_.");
    lc_slugify(slug, sizeof slug, "");
    cr_assert_str_eq(slug, "_");
    lc_slugify(slug, sizeof slug, "/etc/passwd\n\x01");
    cr_assert_str_eq(slug, "_etc_passwd__");
    const char *names[] = {"../../evil", "/tmp/abs", "a/b\\\\c", "..", ".hidden", "tab\\tand\\u0001ctl"};
    size_t o = 0;
    o += (size_t)snprintf(text + o, sizeof text - o, "{\"model\": \"model.bin\", \"output_dir\": \"out/deep\",\n"
                          " \"adapters\": " ADS2 ",\n \"tasks\": [");
    for (int i = 0; i < 6; i++)
        o += (size_t)snprintf(text + o, sizeof text - o,
                              "%s{\"name\": \"%s\", \"adapters\": [\"a\", \"b\"], \"data\": {\"test\": \"test.jsonl\", "
                              "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\", \"max_len\": 32}}",
                              i ? ", " : "", names[i]);
    snprintf(text + o, sizeof text - o,
             "],\n \"methods\": [{\"name\": \"../../m\", \"type\": \"zero_shot\"}], \"generation\": {\"max_new_tokens\": 1}}\n");
    snprintf(path, sizeof path, "%s/hostile.json", tdir);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config hostile.json 2>&1", tdir, tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    /* every file written is under out/deep (nothing in out/ itself, nothing beside tdir's inputs) */
    snprintf(cmd, sizeof cmd, "cd %s && find . -newer hostile.json -type f ! -path './out/deep/*' | grep -v '^./out/deep/'",
             tdir);
    out = tu_capture(cmd, &st);
    cr_assert_str_eq(out, "", "files written outside output_dir:\n%s", out);
    free(out);
    snprintf(path, sizeof path, "%s/out/deep/_._.._evil/_._.._m/results.json", tdir);
    cr_assert_eq(access(path, F_OK), 0, "%s missing", path);
    /* a name longer than a folder name may be is refused (not cut into a clash) */
    char a[80];
    memset(a, 'x', 70);
    a[70] = 0;
    snprintf(text, sizeof text, "[{\"name\": \"zs\", \"type\": \"zero_shot\"}, {\"name\": \"%s\", \"type\": \"zero_shot\"}]", a);
    expect_failure(ADS2, TASK1, text, "", "at most 63 bytes");
    /* names that differ, with the same folder name */
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"m one\", \"type\": \"zero_shot\"}, {\"name\": \"m/one\", \"type\": \"zero_shot\"}]", "",
                   "have the same folder name 'm_one'");
}

/* A second run on the same output folder is refused while the first holds
 * its lock; the lock goes with the process. */
Test(calibrate_bad_input, second_run_on_the_same_folder_is_refused, .init = tiny_setup) {
    char path[1024], text[4096], cmd[2048];
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"out\",\n \"adapters\": %s,\n \"tasks\": %s,\n"
             " \"methods\": [{\"name\": \"zs\", \"type\": \"zero_shot\"}], \"generation\": {\"max_new_tokens\": 1}}\n",
             ADS2, TASK1);
    snprintf(path, sizeof path, "%s/lock.json", tdir);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    /* hold the lock as a running calibrate would: flock from another process */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/out && cd %s && { flock -o out/.lock sleep 30 >/dev/null 2>&1 & p=$!; }; sleep 0.5; "
             "cd %s && %s --config lock.json 2>&1; echo \"rc=$?\"; kill $p", tdir, tdir, tdir,
             tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(strstr(out, "another run is writing to this output folder") && strstr(out, "out/.lock") &&
                  !strstr(out, "rc=0"), "the second run was not refused:\n%s", out);
    free(out);
    /* a stale .lock file (its holder gone) does not block */
    snprintf(cmd, sizeof cmd, "cd %s && %s --config lock.json 2>&1", tdir, tu_bin("calibrate"));
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "a stale lock file blocked the run:\n%s", out);
    free(out);
}

/* Disjoint selections with --no-summary share one output folder at the same
 * time (how the benchmark's calibrate stage runs on several machines), and a
 * last --resume run writes the summary: the files equal one run's. */
Test(calibrate_bad_input, disjoint_runs_share_the_folder_with_no_summary, .init = tiny_setup) {
    char path[1024], text[4096], cmd[4096];
    const char *methods = "[{\"name\": \"zs\", \"type\": \"zero_shot\"}, {\"name\": \"lin\", \"type\": \"merge\", "
                          "\"merge\": {\"method\": \"linear\"}}, {\"name\": \"main\", \"type\": \"main_lora\"}]";
    for (int k = 0; k < 2; k++) {
        snprintf(text, sizeof text,
                 "{\"model\": \"model.bin\", \"output_dir\": \"%s\",\n \"adapters\": %s,\n \"tasks\": %s,\n"
                 " \"methods\": %s, \"generation\": {\"max_new_tokens\": 4}}\n",
                 k ? "split" : "whole", ADS2, TASK1, methods);
        snprintf(path, sizeof path, "%s/%s.json", tdir, k ? "split" : "whole");
        cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    }
    const char *cal = tu_bin("calibrate");
    snprintf(cmd, sizeof cmd,
             "cd %s && %s --config whole.json 2>&1 && "
             "{ %s --config split.json --no-summary --only zs,main > a.log 2>&1 & a=$!; "
             "  %s --config split.json --no-summary --only lin > b.log 2>&1; b=$?; wait $a && [ $b = 0 ]; } && "
             "[ ! -e split/results.json ] && %s --config split.json --resume 2>&1", tdir, cal, cal, cal, cal);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "split runs failed:\n%s", out);
    free(out);
    const char *files[] = {"table.md", "t/zs/predictions.jsonl", "t/lin/predictions.jsonl",
                           "t/main/predictions.jsonl", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(cmd, sizeof cmd, "cd %s && cmp whole/%s split/%s 2>&1", tdir, files[i], files[i]);
        out = tu_capture(cmd, &st);
        cr_assert_eq(st, 0, "%s differs: %s", files[i], out);
        free(out);
    }
    /* the run summary lists the same jobs with the same scores (wall times aside) */
    snprintf(cmd, sizeof cmd, "cd %s && for d in whole split; do grep -v seconds $d/results.json | sed \"s/$d/X/g\" > $d.sum; done; "
             "cmp whole.sum split.sum 2>&1 && grep -c '\"method\"' split.sum", tdir);
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "run summaries differ: %s", out);
    cr_assert_geq(atoi(out), 3, "expected the 3 jobs in the summary, found %s \"method\" keys", out);
    free(out);
}

/* The run summary does not drop a job whose results.json cannot be read. */
Test(calibrate_bad_input, unreadable_job_results_fail_the_summary, .init = tiny_setup) {
    char path[1024], text[4096], cmd[2048];
    snprintf(path, sizeof path, "%s/ok.json", tdir);
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"output_dir\": \"out\",\n \"adapters\": %s,\n \"tasks\": %s,\n"
             " \"methods\": [{\"name\": \"lin\", \"type\": \"merge\", \"merge\": {\"method\": \"linear\"}},\n"
             "             {\"name\": \"zs\", \"type\": \"zero_shot\"}],\n"
             " \"generation\": {\"max_new_tokens\": 2}}\n",
             ADS2, TASK1);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config ok.json 2>&1", tdir, tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    snprintf(path, sizeof path, "%s/out/t/lin/results.json", tdir);
    cr_assert_eq(tu_write_file(path, "{\"trunc", 7), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config ok.json --resume 2>&1", tdir, tu_bin("calibrate"));
    out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "the summary skipped a corrupt results.json:\n%s", out);
    cr_assert_lt(st, 128, "calibrate crashed:\n%s", out);
    cr_assert(strstr(out, "out/t/lin/results.json") && strstr(out, "not valid JSON"), "%s", out);
    free(out);
}

Test(calibrate_bad_input, unknown_merge_method, .init = tiny_setup) {
    expect_failure(ADS2, TASK1, "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"average\"}}]",
                   "", "methods[0].merge.method");
}

Test(calibrate_bad_input, unknown_method_type, .init = tiny_setup) {
    expect_failure(ADS2, TASK1, "[{\"name\": \"m\", \"type\": \"magic\"}]", "", "methods[0].type");
}

Test(calibrate_bad_input, density_out_of_range, .init = tiny_setup) {
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"ties\", \"density\": 0}}]",
                   "", "merge.density");
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"dare_linear\", \"density\": 1.5}}]",
                   "", "merge.density");
}

Test(calibrate_bad_input, svd_rank_larger_than_module, .init = tiny_setup) {
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"svd\", \"svd_rank\": 40}}]",
                   "", "larger than module");
}

Test(calibrate_bad_input, slerp_needs_two_adapters, .init = tiny_setup) {
    expect_failure("[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}, "
                   "{\"name\": \"c\", \"path\": \"lora0\"}]",
                   "[{\"name\": \"t\", \"adapters\": [\"a\", \"b\", \"c\"], \"data\": {\"test\": \"test.jsonl\", "
                   "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\"}}]",
                   "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"slerp\"}}]", "",
                   "exactly 2 adapters");
}

Test(calibrate_bad_input, missing_adapter_folder, .init = tiny_setup) {
    expect_failure("[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"no-such-lora\"}]",
                   TASK1, "[{\"name\": \"z\", \"type\": \"zero_shot\"}]", "", "adapter 'b'");
}

/* --tasks with a Shared LC: the Shared LC trains on every task of the
 * family, so a missing adapter of an unselected family member is reported
 * before any job runs (naming the task and the adapter); without a shared
 * method that adapter is not needed and the run goes ahead. */
Test(calibrate_bad_input, shared_calibration_needs_the_whole_family, .init = tiny_setup) {
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s/fam.json", tdir);
    const char *cfgtxt =
        "{\"model\": \"model.bin\", \"output_dir\": \"famout\",\n"
        " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"},"
        " {\"name\": \"c\", \"path\": \"no-such-lora\"}],\n"
        " \"tasks\": [{\"name\": \"t1\", \"family\": \"f\", \"adapters\": [\"a\", \"b\"], \"data\": {\"train\": "
        "\"test.jsonl\", \"test\": \"test.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\", "
        "\"max_len\": 32}},\n"
        "  {\"name\": \"t2\", \"family\": \"f\", \"adapters\": [\"a\", \"c\"], \"data\": {\"train\": "
        "\"test.jsonl\", \"test\": \"test.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\", "
        "\"max_len\": 32}}],\n"
        " \"methods\": [{\"name\": \"z\", \"type\": \"zero_shot\"}, {\"name\": \"S\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}, "
        "\"shared\": true}],\n"
        " \"training\": {\"steps\": 2, \"batch_size\": 2}, \"generation\": {\"max_new_tokens\": 2}}\n";
    cr_assert_eq(tu_write_file(path, cfgtxt, strlen(cfgtxt)), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config fam.json --tasks t1 --only S 2>&1", tdir, tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "a Shared LC ran without its family's adapters:\n%s", out);
    cr_assert_lt(st, 128, "calibrate crashed (status %d):\n%s", st, out);
    cr_assert(strstr(out, "task 't2'") && strstr(out, "adapter 'c'"), "message lacks the task/adapter:\n%s", out);
    cr_assert_null(strstr(out, "[job 1/"), "the error came after a job started:\n%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config fam.json --tasks t1 --only z 2>&1", tdir, tu_bin("calibrate"));
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "zero-shot on t1 does not need t2's adapters, yet:\n%s", out);
    free(out);
}

Test(calibrate_bad_input, adapter_for_another_base, .init = tiny_setup) {
    /* lora2 was made for a 40-wide model: the message names the adapter and the tensor */
    expect_failure("[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora2\"}]",
                   TASK1, "[{\"name\": \"z\", \"type\": \"zero_shot\"}]", "", "adapter 'b'");
    expect_failure("[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora2\"}]",
                   TASK1, "[{\"name\": \"z\", \"type\": \"zero_shot\"}]", "", "lora_A");
}

Test(calibrate_bad_input, task_names_unknown_adapter, .init = tiny_setup) {
    expect_failure(ADS2,
                   "[{\"name\": \"t\", \"adapters\": [\"a\", \"x\"], \"data\": {\"test\": \"test.jsonl\", "
                   "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\"}}]",
                   "[{\"name\": \"z\", \"type\": \"zero_shot\"}]", "", "no adapter named 'x'");
}

Test(calibrate_bad_input, typo_in_key, .init = tiny_setup) {
    expect_failure(ADS2, TASK1, "[{\"name\": \"z\", \"type\": \"zero_shot\"}]",
                   ", \"generaton\": {\"max_new_tokens\": 4}", "unknown key 'generaton'");
}

Test(calibrate_bad_input, calibration_without_training_data, .init = tiny_setup) {
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}}]",
                   ", \"training\": {\"steps\": 2, \"batch_size\": 2}", "needs data.train");
}

Test(calibrate_bad_input, bad_calibration_module, .init = tiny_setup) {
    expect_failure(ADS2, TASK1,
                   "[{\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\", "
                   "\"modules\": [\"q\", \"qq\"]}}]",
                   ", \"training\": {\"steps\": 2}", "calibration.modules[1]");
}

Test(calibrate_bad_input, bad_cli) {
    int st;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --lora-rank 0 --account x 2>&1", tu_bin("calibrate"));
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0);
    cr_assert(strstr(out, "positive integer"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --account /nonexistent/config.json 2>&1", tu_bin("calibrate"));
    out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0);
    cr_assert(strstr(out, "/nonexistent/config.json"), "%s", out);
    free(out);
}

/* Killed mid-calibration (simulated with --stop-after), resumed with
 * --resume: the calibration equals an uninterrupted run's bit for bit. */
Test(calibrate_resume, interrupted_calibration_resumes_bit_exactly, .init = tiny_setup, .timeout = 600) {
    char p[1024], text[4096], cmd[2048];
    static char rows[8192];
    size_t o = 0;
    const char *w[] = {"red", "blue", "green", "cat", "dog", "sun"};
    for (int i = 0; i < 36; i++)
        o += snprintf(rows + o, sizeof rows - o, "{\"q\": \"%s %s\", \"a\": \"%s\"}\n", w[i % 6],
                      w[(i / 6) % 6], w[(i + 1) % 6]);
    snprintf(p, sizeof p, "%s/train.jsonl", tdir);
    cr_assert_eq(tu_write_file(p, rows, strlen(rows)), 0);
    for (int run = 0; run < 2; run++) {
        snprintf(text, sizeof text,
                 "{\"model\": \"model.bin\", \"output_dir\": \"out%d\",\n \"adapters\": " ADS2 ",\n"
                 " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"b\"], \"data\": {\"train\": \"train.jsonl\", "
                 "\"test\": \"test.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\", \"max_len\": 32}}],\n"
                 " \"methods\": [{\"name\": \"LC++\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", \"rank\": 2}}],\n"
                 " \"training\": {\"batch_size\": 4, \"steps\": 10, \"checkpoint_every\": 3, \"log_every\": 5},\n"
                 " \"optimizer\": {\"lr\": 0.02}, \"generation\": {\"max_new_tokens\": 4}}\n",
                 run);
        snprintf(p, sizeof p, "%s/run%d.json", tdir, run);
        cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
    }
    snprintf(cmd, sizeof cmd, "cd %s && %s --config run0.json 2>/dev/null", tdir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(cmd), 0, "the uninterrupted run failed");
    snprintf(cmd, sizeof cmd, "cd %s && %s --config run1.json --stop-after 7 2>&1", tdir, tu_bin("calibrate"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "--stop-after did not stop:\n%s", out);
    cr_assert(strstr(out, "stopped after step 7"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config run1.json --resume 2>&1", tdir, tu_bin("calibrate"));
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "resumed from") && strstr(out, "at step 6"), "did not resume from step 6:\n%s", out);
    free(out);
    model m;
    lc_err err;
    snprintf(p, sizeof p, "%s/model.bin", tdir);
    cr_assert_eq(model_load(&m, p, &err), LC_OK, "%s", err.msg);
    calib a, b;
    snprintf(p, sizeof p, "%s/out0/t/LC++/calibration.h5", tdir);
    cr_assert_eq(calib_load(&a, &m.cfg, p, &err), LC_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/out1/t/LC++/calibration.h5", tdir);
    cr_assert_eq(calib_load(&b, &m.cfg, p, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(a.n_params, b.n_params);
    cr_assert_eq(memcmp(a.data, b.data, sizeof(float) * a.n_params), 0,
                 "the resumed calibration differs from the uninterrupted one");
    calib_free(&a), calib_free(&b);
    model_free(&m);
}
