/* `export` and `generate --bundle` on a tiny self-made model (no ../shared):
 * `calibrate` runs LC++, learned coefficients, TIES and LC on three tasks
 * sharing two LoRAs; the bundle of its jobs must give the logits of the
 * model calibrate evaluated (exactly for f32 tensors; stated tolerances
 * for f16 and int8), `generate --bundle` must reproduce calibrate's
 * greedy predictions, f32 tensors must be used in place, and every kind of
 * bad bundle must be refused with a clear message. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "recipe.h"
#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"
#include <zlib.h>

static char dir[512];

static void write_text(const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

static void tiny_model(const char *file, uint64_t seed) {
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 48, c.vocab_size = 259, c.max_seq_len = 96;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 1, c.eos_id = 2;
    model m;
    lc_err err;
    char p[1024];
    cr_assert_eq(model_init(&m, &c, &err), LC_OK);
    model_init_random(&m, 0.1f, seed);
    snprintf(p, sizeof p, "%s/%s", dir, file);
    cr_assert_eq(model_save_llama2c(&m, p, &err), LC_OK, "%s", err.msg);
    model_free(&m);
}

/* Base, tokenizer, two LoRAs, data; then calibrate (run once per test
 * process: Criterion forks per test, so each test does it; it takes ~2 s). */
static void setup(void) {
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    tiny_model("model.bin", 1);
    tiny_model("other.bin", 2);
    char p[1024];
    snprintf(p, sizeof p, "%s/tok259.bin", dir);
    cr_assert_eq(tu_write_byte_tokenizer(p), 0);
    snprintf(p, sizeof p, "%s/model.bin", dir);
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, p, &err), LC_OK, "%s", err.msg);
    for (int k = 0; k < 2; k++) {
        lora l;
        cr_assert_eq(lora_init(&l, &m.cfg, 2 + k, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
        lora_init_random(&l, 0.1f, 20 + k);
        snprintf(p, sizeof p, "%s/lora%d", dir, k);
        cr_assert_eq(lc_make_dirs(p, &err), LC_OK);
        cr_assert_eq(lora_save_peft(&l, p, &err), LC_OK, "%s", err.msg);
        lora_free(&l);
    }
    model_free(&m);
    static char rows[8192];
    size_t o = 0;
    const char *w[] = {"red", "blue", "green", "cat", "dog", "sun", "moon", "tree"};
    for (int i = 0; i < 48; i++)
        o += snprintf(rows + o, sizeof rows - o, "{\"q\": \"say %s %s\", \"a\": \"%s and %s\"}\n", w[i % 8],
                      w[(i / 8) % 8], w[(i / 8) % 8], w[i % 8]);
    write_text("data.jsonl", rows);
    const char *task =
        "{\"name\": \"%s\", \"adapters\": [\"a\", \"b\"], \"data\": {\"train\": \"data.jsonl\", "
        "\"validation\": \"data.jsonl\", \"test\": \"data.jsonl\", \"prompt_template\": \"{q}:\", "
        "\"target_template\": \" {a}\", \"max_len\": 48, \"max_test_examples\": 3}}";
    char t1[512], t2[512], t3[512];
    snprintf(t1, sizeof t1, task, "t1");
    snprintf(t2, sizeof t2, task, "t2");
    snprintf(t3, sizeof t3, task, "t3");
    static char cfgtext[8192];
    snprintf(cfgtext, sizeof cfgtext,
             "{\"model\": \"model.bin\", \"output_dir\": \"cal\",\n"
             " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}],\n"
             " \"tasks\": [%s, %s, %s],\n"
             " \"methods\": [{\"name\": \"LC++\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", \"rank\": 2, \"per_layer\": true}},\n"
             "             {\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}},\n"
             "             {\"name\": \"learned\", \"type\": \"merge\", \"merge\": {\"method\": \"learned\"}},\n"
             "             {\"name\": \"TIES\", \"type\": \"merge\", \"merge\": {\"method\": \"ties\", \"density\": 0.5, \"weights\": [0.8, 1.2]}},\n"
             "             {\"name\": \"zero-shot\", \"type\": \"zero_shot\"}],\n"
             " \"training\": {\"batch_size\": 4, \"steps\": 4, \"eval_every\": 4, \"log_every\": 4, \"checkpoint_every\": 0},\n"
             " \"optimizer\": {\"lr\": 0.05},\n"
             " \"generation\": {\"max_new_tokens\": 8}}\n",
             t1, t2, t3);
    write_text("cal.json", cfgtext);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s --config cal.json --tasks t1,t2,t3 2>cal.log", dir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(cmd), 0, "calibrate failed: see %s/cal.log", dir);
}

/* export.json with t1 = LC++, t2 = learned, t3 = TIES (or methods given) */
static int run_export(const char *out, const char *adt, const char *cdt, const char *tasks, char **log) {
    char text[2048], cmd[2048];
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"%s\",\n"
             " \"adapter_dtype\": \"%s\", \"calibration_dtype\": \"%s\", \"tasks\": %s}\n",
             out, adt, cdt, tasks);
    write_text("export.json", text);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config export.json 2>&1", dir, tu_bin("export"));
    int st;
    char *o = tu_capture(cmd, &st);
    if (log) *log = o;
    else free(o);
    return st;
}

#define THREE_TASKS                                                                       \
    "[{\"task\": \"t1\", \"method\": \"LC++\"}, {\"task\": \"t2\", \"method\": \"learned\"}, " \
    "{\"task\": \"t3\", \"method\": \"TIES\"}]"

/* logits of the model calibrate built for (task, method), from its files */
static float *reference_logits(model *base, const char *task, const char *method, const int *tok, int T) {
    char p[1024];
    lc_err err;
    snprintf(p, sizeof p, "%s/cal/%s/%s/results.json", dir, task, method);
    char *text = lc_read_file(p, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cJSON *r = cJSON_Parse(text);
    free(text);
    merge_spec s;
    const char *names[ADAPTER_MAX];
    int n;
    cr_assert_eq(merge_spec_from_json(cJSON_GetObjectItemCaseSensitive(r, "merge"), &s, names, &n, &err), LC_OK);
    lora ls[2], *lp[2];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/lora%d", dir, i);
        cr_assert_eq(lora_load(&ls[i], &base->cfg, p, &err), LC_OK, "%s", err.msg);
        lp[i] = &ls[i];
    }
    float *coef[2] = {0};
    if (s.method == MERGE_LEARNED) {
        /* the coefficients calibrate trained (its final/coefficients.h5) */
        snprintf(p, sizeof p, "%s/cal/%s/%s/final/coefficients.h5", dir, task, method);
        tensor_file *tf;
        cr_assert_eq(tensor_file_open(&tf, p, &err), LC_OK, "%s", err.msg);
        for (int i = 0; i < n; i++) {
            int64_t sh[2] = {base->cfg.n_layers, MOD_COUNT};
            char tn[64];
            snprintf(tn, sizeof tn, "%s.coef", names[i]);
            coef[i] = malloc(sizeof(float) * base->cfg.n_layers * MOD_COUNT);
            cr_assert_eq(tensor_file_read_f32(tf, tn, 2, sh, coef[i], &err), LC_OK, "%s", err.msg);
        }
        tensor_file_free(tf);
        s.coef = (const float *const *)coef;
    }
    merged_model mm;
    cr_assert_eq(merged_model_build(&s, lp, n, base, &mm, &err), LC_OK, "%s", err.msg);
    calib cb;
    int have_cb = 0;
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "calibration"))) {
        snprintf(p, sizeof p, "%s/cal/%s/%s/calibration.h5", dir, task, method);
        cr_assert_eq(calib_load(&cb, &base->cfg, p, &err), LC_OK, "%s", err.msg);
        mm.ad.cals[mm.ad.n_cals++] = &cb;
        have_cb = 1;
    }
    model_acts *a;
    cr_assert_eq(model_acts_init(&a, mm.m, &mm.ad, 1, T, ACTS_KEEP_LOGITS, &err), LC_OK, "%s", err.msg);
    float loss;
    cr_assert_eq(model_forward(mm.m, a, tok, NULL, 1, T, &loss, &err), LC_OK, "%s", err.msg);
    size_t nl = (size_t)T * base->cfg.vocab_size;
    float *out = malloc(sizeof(float) * nl);
    memcpy(out, model_acts_logits(a), sizeof(float) * nl);
    model_acts_free(a);
    merged_model_free(&mm);
    if (have_cb) calib_free(&cb);
    for (int i = 0; i < n; i++) lora_free(&ls[i]), free(coef[i]);
    cJSON_Delete(r);
    return out;
}

static double bundle_vs_reference(const char *file, const char *task, const char *method,
                                  size_t *copied, size_t *mapped) {
    char p[1024];
    lc_err err;
    model base;
    snprintf(p, sizeof p, "%s/model.bin", dir);
    cr_assert_eq(model_load(&base, p, &err), LC_OK, "%s", err.msg);
    const int T = 12, tok[12] = {1, 70, 100, 104, 35, 120, 111, 35, 104, 101, 61, 35};
    float *ref = reference_logits(&base, task, method, tok, T);
    bundle *b;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    cr_assert_eq(bundle_open(&b, p, &err), LC_OK, "%s", err.msg);
    bundle_task bt;
    cr_assert_eq(bundle_task_load(b, &base, task, &bt, &err), LC_OK, "%s", err.msg);
    model_acts *a;
    cr_assert_eq(model_acts_init(&a, bt.m, &bt.ad, 1, T, ACTS_KEEP_LOGITS, &err), LC_OK, "%s", err.msg);
    float loss;
    cr_assert_eq(model_forward(bt.m, a, tok, NULL, 1, T, &loss, &err), LC_OK, "%s", err.msg);
    double e = tu_rel_err_f32(model_acts_logits(a), ref, (size_t)T * base.cfg.vocab_size);
    if (copied) bundle_stats(b, copied, mapped);
    model_acts_free(a);
    bundle_task_free(&bt);
    bundle_close(b);
    free(ref);
    model_free(&base);
    return e;
}

Test(export, bundle_matches_what_calibrate_evaluated, .init = setup, .timeout = 600) {
    char *log;
    cr_assert_eq(run_export("b32.lcb", "f32", "f32", THREE_TASKS, &log), 0, "%s", log);
    cr_assert(strstr(log, "| single-task LoRA 'a' (f32) |") && strstr(log, "task 't1' (LC++)"),
              "size report missing:\n%s", log);
    free(log);
    cr_assert_eq(run_export("b16.lcb", "f16", "f16", THREE_TASKS, NULL), 0);
    cr_assert_eq(run_export("b8.lcb", "i8", "i8", THREE_TASKS, NULL), 0);
    const char *tasks[3] = {"t1", "t2", "t3"}, *methods[3] = {"LC++", "learned", "TIES"};
    for (int k = 0; k < 3; k++) {
        size_t copied, mapped;
        double e32 = bundle_vs_reference("b32.lcb", tasks[k], methods[k], &copied, &mapped);
        double e16 = bundle_vs_reference("b16.lcb", tasks[k], methods[k], NULL, NULL);
        double e8 = bundle_vs_reference("b8.lcb", tasks[k], methods[k], NULL, NULL);
        fprintf(stderr, "export test: %s (%s): logits vs calibrate's model: f32 %.2e, f16 %.2e, int8 %.2e "
                "(f32 bundle: %zu bytes in place, %zu converted)\n", tasks[k], methods[k], e32, e16, e8,
                mapped, copied);
        cr_assert_leq(e32, 1e-6, "f32 bundle differs: %g", e32);
        cr_assert_leq(e16, 2e-3, "f16 bundle beyond its tolerance: %g", e16);
        /* int8 (per-row scales): 1e-2 for LoRA-form merges; TIES re-selects its
         * top-k entries on the quantised task vectors, so 5e-2 there */
        cr_assert_leq(e8, k == 2 ? 5e-2 : 1e-2, "int8 bundle beyond its tolerance: %g", e8);
        cr_assert_gt(mapped, 0);
        /* learned coefficients are copied (owned); every f32 LoRA/calibration tensor is mapped */
        if (k != 1) cr_assert_eq(copied, 0, "f32 tensors were copied (%zu bytes)", copied);
    }
}

Test(export, generate_bundle_reproduces_calibrate_predictions, .init = setup, .timeout = 600) {
    cr_assert_eq(run_export("b32.lcb", "f32", "f32", THREE_TASKS, NULL), 0);
    const char *tasks[3] = {"t1", "t2", "t3"}, *methods[3] = {"LC++", "learned", "TIES"};
    for (int k = 0; k < 3; k++) {
        char p[1024], cmd[2048];
        snprintf(p, sizeof p, "%s/cal/%s/%s/predictions.jsonl", dir, tasks[k], methods[k]);
        lc_err err;
        char *text = lc_read_file(p, NULL, &err);
        cr_assert_not_null(text);
        char *nl = strchr(text, '\n');
        if (nl) *nl = 0;
        cJSON *r = cJSON_Parse(text);
        free(text);
        const char *q = "say red red"; /* first data row: prompt "{q}:" */
        snprintf(cmd, sizeof cmd,
                 "cd %s && %s --model model.bin --bundle b32.lcb --task %s --prompt '%s' --temperature 0 "
                 "--max-new-tokens 8 --quiet",
                 dir, tu_bin("generate"), tasks[k], q);
        int st;
        char *out = tu_capture(cmd, &st);
        cr_assert_eq(st, 0);
        const char *pred = cJSON_GetObjectItemCaseSensitive(r, "prediction")->valuestring;
        /* calibrate trims leading whitespace; generate prints the raw continuation */
        const char *o = out;
        while (*o == ' ' || *o == '\n') o++;
        size_t ol = strlen(o);
        while (ol && (o[ol - 1] == '\n' || o[ol - 1] == ' ')) ol--;
        size_t pl = strlen(pred);
        while (pl && pred[pl - 1] == ' ') pl--;
        cr_assert(ol == pl && !strncmp(o, pred, pl), "%s: generate --bundle gave '%.*s', calibrate predicted '%s'",
                  tasks[k], (int)ol, o, pred);
        free(out);
        cJSON_Delete(r);
    }
}

/* the first prediction of calibrate's job (task, method) */
static char *first_prediction(const char *task, const char *method) {
    char p[1024];
    lc_err err;
    snprintf(p, sizeof p, "%s/cal/%s/%s/predictions.jsonl", dir, task, method);
    char *text = lc_read_file(p, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    char *nl = strchr(text, '\n');
    if (nl) *nl = 0;
    cJSON *r = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(r);
    char *pred = strdup(cJSON_GetObjectItemCaseSensitive(r, "prediction")->valuestring);
    cJSON_Delete(r);
    return pred;
}

/* generate --bundle's answer (stdout without its final newline) */
static char *bundle_answer(const char *task, const char *flags) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s --model model.bin --bundle b32.lcb --task %s --prompt 'say red red' "
             "--quiet %s", dir, tu_bin("generate"), task, flags);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "generate failed: %s", cmd);
    size_t n = strlen(out);
    cr_assert(n > 0 && out[n - 1] == '\n', "no final newline: '%s'", out);
    out[n - 1] = 0;
    return out;
}

/* Without flags, generate --bundle answers with the settings the task was
 * evaluated with (max_new_tokens, temperature, stop strings, from the
 * results.json the bundle carries) and so reproduces calibrate's prediction
 * exactly; a stop string recorded there (added to the job's results.json
 * before export, as if calibrate had used it) ends the answer before it;
 * --no-stop and --stop override it. */
Test(export, generate_bundle_uses_the_tasks_generation_settings, .init = setup, .timeout = 600) {
    char *pred = first_prediction("t1", "LC++");
    /* a stop string: a visible ASCII character of the prediction that first occurs after its start */
    char stop[2] = {0};
    for (const char *c = pred + 1; *c && !stop[0]; c++)
        if (*c > ' ' && *c < 127 && *c != '\'' && strchr(pred, *c) == c) stop[0] = *c;
    cr_assert(stop[0], "the prediction '%s' has no character to stop at", pred);
    size_t cut = (size_t)(strchr(pred, stop[0]) - pred);
    char p[1024];
    lc_err err;
    snprintf(p, sizeof p, "%s/cal/t1/LC++/results.json", dir);
    char *text = lc_read_file(p, NULL, &err);
    cr_assert_not_null(text);
    cJSON *r = cJSON_Parse(text);
    free(text);
    cJSON *g = cJSON_GetObjectItemCaseSensitive(r, "generation");
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateString(stop));
    cJSON_ReplaceItemInObjectCaseSensitive(g, "stop", arr);
    text = cJSON_Print(r);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
    free(text);
    cJSON_Delete(r);
    cr_assert_eq(run_export("b32.lcb", "f32", "f32", THREE_TASKS, NULL), 0);

    char *out = bundle_answer("t1", "");
    cr_assert(strlen(out) == cut && !strncmp(out, pred, cut),
              "with the task's stop string '%s': '%s', expected the prediction '%s' cut to '%.*s'", stop, out,
              pred, (int)cut, pred);
    free(out);
    out = bundle_answer("t1", "--no-stop");
    cr_assert_str_eq(out, pred, "--no-stop must give the whole prediction");
    free(out);
    /* --stop replaces the task's stop strings; a string that never occurs changes nothing */
    out = bundle_answer("t1", "--stop '@@'");
    cr_assert_str_eq(out, pred);
    free(out);
    /* a two-character stop string whose first character occurs earlier alone: the
     * streamed text holds a possible start back, and then lets it out */
    char two[3] = {pred[cut - 1], pred[cut], 0}, flag[64];
    if (two[0] > ' ' && two[0] < 127 && two[0] != '\'') {
        size_t cut2 = (size_t)(strstr(pred, two) - pred);
        snprintf(flag, sizeof flag, "--stop '%s'", two);
        out = bundle_answer("t1", flag);
        cr_assert(strlen(out) == cut2 && !strncmp(out, pred, cut2), "--stop '%s': '%s' (prediction '%s')", two,
                  out, pred);
        free(out);
    }
    /* the other tasks keep calibrate's settings: their predictions exactly */
    char *pred2 = first_prediction("t2", "learned");
    out = bundle_answer("t2", "");
    cr_assert_str_eq(out, pred2, "t2 without flags");
    free(out);
    free(pred2);
    free(pred);
}

/* `evaluate` scores a bundle task as shipped: from the f32 bundle the
 * predictions are calibrate's, byte for byte; an int8 bundle is scored too;
 * a bundle with LoRAs beside it, and an unknown task, are refused. */
Test(export, evaluate_scores_a_bundle_task, .init = setup, .timeout = 600) {
    cr_assert_eq(run_export("b32.lcb", "f32", "f32", THREE_TASKS, NULL), 0);
    cr_assert_eq(run_export("b8.lcb", "i8", "i8", THREE_TASKS, NULL), 0);
    const char *ev =
        "{\"model\": \"model.bin\", \"tokenizer\": \"tok259.bin\", \"output_dir\": \"%s\", %s\n"
        " \"data\": {\"path\": \"data.jsonl\", \"prompt_template\": \"{q}:\", \"target_template\": \" {a}\",\n"
        "          \"max_len\": 48, \"max_examples\": 3},\n"
        " \"generation\": {\"max_new_tokens\": 8}}\n";
    char text[2048], cmd[2048];
    const char *tasks[2] = {"t1", "t2"}, *methods[2] = {"LC++", "learned"};
    for (int k = 0; k < 2; k++) {
        char bspec[256], out[64];
        snprintf(bspec, sizeof bspec, "\"bundle\": {\"path\": \"b32.lcb\", \"task\": \"%s\"},", tasks[k]);
        snprintf(out, sizeof out, "ev32-%s", tasks[k]);
        snprintf(text, sizeof text, ev, out, bspec);
        write_text("ev.json", text);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>ev.log", dir, tu_bin("evaluate"));
        cr_assert_eq(tu_system(cmd), 0, "evaluate --config with a bundle failed: see %s/ev.log", dir);
        snprintf(cmd, sizeof cmd, "cd %s && cmp %s/predictions.jsonl cal/%s/%s/predictions.jsonl", dir, out, tasks[k],
                 methods[k]);
        cr_assert_eq(tu_system(cmd), 0, "%s: the f32 bundle's predictions differ from calibrate's", tasks[k]);
    }
    snprintf(text, sizeof text, ev, "ev8", "\"bundle\": {\"path\": \"b8.lcb\", \"task\": \"t1\"},");
    write_text("ev.json", text);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>ev.log && test -s ev8/results.json", dir,
             tu_bin("evaluate"));
    cr_assert_eq(tu_system(cmd), 0, "evaluate on the int8 bundle failed: see %s/ev.log", dir);
    /* scripts/bundle_check.py does the same for every task of the export config */
    cr_assert_eq(run_export("b32.lcb", "f32", "f32", THREE_TASKS, NULL), 0);
    snprintf(cmd, sizeof cmd,
             "cd %s && /usr/bin/python3 '%s/scripts/bundle_check.py' cal.json export.json bchk bchk.md --bin '%s' "
             ">/dev/null 2>bchk.log",
             dir, tu_source_dir(), tu_bin(""));
    cr_assert_eq(tu_system(cmd), 0, "bundle_check.py failed: see %s/bchk.log", dir);
    char p[1024];
    lc_err err;
    snprintf(p, sizeof p, "%s/bchk.md", dir);
    char *md = lc_read_file(p, NULL, &err);
    cr_assert_not_null(md);
    cr_assert(strstr(md, "| t1 | LC++ |") && strstr(md, "| t3 | TIES |"), "%s", md);
    cr_assert(strstr(md, "9 of 9 predictions identical"), "the f32 bundle must reproduce calibrate:\n%s", md);
    free(md);
    /* refused */
    const char *bad[2][2] = {
        {"\"bundle\": {\"path\": \"b32.lcb\", \"task\": \"t1\"}, \"calibs\": [\"x.h5\"],", "brings its own adapters"},
        {"\"bundle\": {\"path\": \"b32.lcb\", \"task\": \"nope\"},", "nope"}};
    for (int k = 0; k < 2; k++) {
        snprintf(text, sizeof text, ev, "evbad", bad[k][0]);
        write_text("ev.json", text);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>&1", dir, tu_bin("evaluate"));
        int st;
        char *o = tu_capture(cmd, &st);
        cr_assert_neq(st, 0, "accepted: %s", bad[k][0]);
        cr_assert(strstr(o, bad[k][1]), "message does not say '%s': %s", bad[k][1], o);
        free(o);
    }
}

/* `evaluate` with "merge" (the recipe calibrate recorded in a job's
 * results.json) and "calibs" rebuilds that job: the predictions are
 * calibrate's, byte for byte, for a LoRA-result merge with LC++ and LC and
 * for a dense one (TIES); the same job runs on the base held as Q8_0; a
 * recipe beside "loras", a learned merge (its coefficients are not in the
 * recipe) and an adapter without a path are refused. */
static cJSON *read_json_file(const char *path) {
    lc_err err;
    char *text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cJSON *r = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(r, "%s: not JSON", path);
    return r;
}

Test(export, evaluate_rebuilds_a_job_from_its_recipe, .init = setup, .timeout = 600) {
    const char *jobs[3][3] = {{"t1", "LC++", "cal/t1/LC++/calibration.h5"},
                              {"t2", "LC", "cal/t2/LC/calibration.h5"},
                              {"t3", "TIES", NULL}};
    char p[1024], cmd[2048];
    lc_err err;
    for (int k = 0; k < 4; k++) {
        const char **jb = jobs[k < 3 ? k : 0];
        snprintf(p, sizeof p, "%s/cal/%s/%s/results.json", dir, jb[0], jb[1]);
        char *text = lc_read_file(p, NULL, &err);
        cr_assert_not_null(text, "%s", err.msg);
        cJSON *r = cJSON_Parse(text);
        free(text);
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "model", "model.bin");
        cJSON_AddStringToObject(ev, "tokenizer", "tok259.bin");
        if (k == 3) cJSON_AddStringToObject(ev, "base_type", "q8_0");
        char out[64];
        snprintf(out, sizeof out, "evm%d", k);
        cJSON_AddStringToObject(ev, "output_dir", out);
        cJSON_AddItemToObject(ev, "merge", cJSON_DetachItemFromObject(r, "merge"));
        if (jb[2]) {
            cJSON *cs = cJSON_AddArrayToObject(ev, "calibs");
            cJSON_AddItemToArray(cs, cJSON_CreateString(jb[2]));
        }
        cJSON_AddItemToObject(ev, "data", cJSON_Parse("{\"path\": \"data.jsonl\", \"prompt_template\": \"{q}:\", "
                                                      "\"target_template\": \" {a}\", \"max_len\": 48, "
                                                      "\"max_examples\": 3}"));
        cJSON_AddItemToObject(ev, "generation", cJSON_Parse("{\"max_new_tokens\": 8}"));
        char *js = cJSON_Print(ev);
        write_text("ev.json", js);
        free(js);
        cJSON_Delete(ev);
        cJSON_Delete(r);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>ev.log", dir, tu_bin("evaluate"));
        cr_assert_eq(tu_system(cmd), 0, "evaluate with %s's recipe failed: see %s/ev.log", jb[1], dir);
        if (k < 3) {
            snprintf(cmd, sizeof cmd, "cd %s && cmp %s/predictions.jsonl cal/%s/%s/predictions.jsonl", dir, out,
                     jb[0], jb[1]);
            cr_assert_eq(tu_system(cmd), 0, "%s / %s rebuilt from its recipe predicted other text than calibrate",
                         jb[0], jb[1]);
        } else {
            snprintf(p, sizeof p, "%s/%s/results.json", dir, out);
            cJSON *rr = read_json_file(p);
            const cJSON *bt = cJSON_GetObjectItemCaseSensitive(rr, "base_type");
            cr_assert(cJSON_IsString(bt) && !strcmp(bt->valuestring, "q8_0"),
                      "results.json of the job on the Q8_0 base does not say base_type q8_0");
            cJSON_Delete(rr);
            snprintf(p, sizeof p, "%s/cal/%s/%s/results.json", dir, jb[0], jb[1]);
            rr = read_json_file(p);
            bt = cJSON_GetObjectItemCaseSensitive(rr, "base_type");
            cr_assert(cJSON_IsString(bt) && !strcmp(bt->valuestring, "f32"), "calibrate's job does not say base_type f32");
            cJSON_Delete(rr);
        }
    }
    /* refused, with a message naming the key */
    snprintf(p, sizeof p, "%s/cal/t2/learned/results.json", dir);
    char *text = lc_read_file(p, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cJSON *lr = cJSON_Parse(text);
    free(text);
    char *learned = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(lr, "merge"));
    cJSON_Delete(lr);
    char bad[3][1024], cfgtext[4096];
    snprintf(bad[0], sizeof bad[0], "\"merge\": {\"method\": \"linear\", \"adapters\": [{\"name\": \"a\", "
             "\"path\": \"lora0\"}]}, \"loras\": [{\"path\": \"lora1\"}],");
    snprintf(bad[1], sizeof bad[1], "\"merge\": %s,", learned);
    snprintf(bad[2], sizeof bad[2], "\"merge\": {\"method\": \"linear\", \"adapters\": [{\"name\": \"a\"}]},");
    free(learned);
    const char *needle[3] = {"remove 'loras'", "learned merge needs its trained coefficients",
                             "'merge.adapters[0].path': missing"};
    for (int k = 0; k < 3; k++) {
        snprintf(cfgtext, sizeof cfgtext,
                 "{\"model\": \"model.bin\", \"tokenizer\": \"tok259.bin\", \"output_dir\": \"evbad\", %s\n"
                 " \"data\": {\"path\": \"data.jsonl\", \"prompt_template\": \"{q}:\", \"target_template\": \" {a}\"}}\n",
                 bad[k]);
        write_text("ev.json", cfgtext);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config ev.json 2>&1", dir, tu_bin("evaluate"));
        int st;
        char *o = tu_capture(cmd, &st);
        cr_assert_neq(st, 0, "accepted: %s", bad[k]);
        cr_assert(strstr(o, needle[k]) && strstr(o, "ev.json"), "message does not say '%s': %s", needle[k], o);
        free(o);
    }
}

/* ---- refusing bad bundles -------------------------------------------------------- */

static char *load_file(const char *name, size_t *n) {
    char p[1024];
    lc_err err;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *d = lc_read_file(p, n, &err);
    cr_assert_not_null(d);
    return d;
}

static void save_file(const char *name, const void *d, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(tu_write_file(p, d, n), 0);
}

/* generate --bundle on file must fail with needle in its message */
static void expect_refused(const char *file, const char *model, const char *task, const char *needle) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s --model %s --bundle %s --task %s --prompt hi --max-new-tokens 2 2>&1",
             dir, tu_bin("generate"), model, file, task);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "accepted %s:\n%s", file, out);
    cr_assert_lt(st, 128, "crashed on %s (status %d):\n%s", file, st, out);
    cr_assert(strstr(out, needle), "expected '%s' for %s, got:\n%s", needle, file, out);
    fprintf(stderr, "export test: refused %s: %s", file, out);
    free(out);
}

static uint64_t u64_at(const char *d, size_t off) {
    uint64_t v;
    memcpy(&v, d + off, 8);
    return v;
}

Test(export, bad_bundles_are_refused, .init = setup, .timeout = 600) {
    cr_assert_eq(run_export("good.lcb", "f32", "f32", THREE_TASKS, NULL), 0);
    size_t n;
    char *d = load_file("good.lcb", &n);
    const size_t data_off = (size_t)u64_at(d, 32), mofs = (size_t)u64_at(d, 16);
    /* truncated: at several lengths */
    save_file("trunc0.lcb", d, 10);
    expect_refused("trunc0.lcb", "model.bin", "t1", "truncated bundle");
    save_file("trunc1.lcb", d, n - 100);
    expect_refused("trunc1.lcb", "model.bin", "t1", "truncated or extended");
    save_file("trunc2.lcb", d, data_off - 5);
    expect_refused("trunc2.lcb", "model.bin", "t1", "outside the file");
    /* one flipped byte in the tensor data */
    char *t = malloc(n);
    memcpy(t, d, n);
    /* find a byte inside a real tensor: the first tensor starts at data_off */
    t[data_off + 3] ^= 0x01;
    save_file("flip2.lcb", t, n);
    expect_refused("flip2.lcb", "model.bin", "t1", "checksum mismatch");
    /* tampered manifest */
    memcpy(t, d, n);
    t[mofs + 20] ^= 0x20;
    save_file("manifest.lcb", t, n);
    expect_refused("manifest.lcb", "model.bin", "t1", "manifest checksum mismatch");
    /* tampered header */
    memcpy(t, d, n);
    t[40] ^= 0x01;
    save_file("header.lcb", t, n);
    expect_refused("header.lcb", "model.bin", "t1", "header checksum mismatch");
    /* another version (with a valid header CRC) */
    memcpy(t, d, n);
    uint32_t v = 2;
    memcpy(t + 8, &v, 4);
    uint32_t c = (uint32_t)crc32(0L, (const unsigned char *)t, 60);
    memcpy(t + 60, &c, 4);
    save_file("v2.lcb", t, n);
    expect_refused("v2.lcb", "model.bin", "t1", "version 2");
    /* not a bundle */
    const char *junk = "hello, this is not a bundle at all; it is long enough to have a header........";
    save_file("junk.lcb", junk, strlen(junk));
    expect_refused("junk.lcb", "model.bin", "t1", "not a bundle");
    /* another base (same shapes, other weights) */
    expect_refused("good.lcb", "other.bin", "t1", "another base model");
    /* a task that is not in it */
    expect_refused("good.lcb", "model.bin", "nope", "no task 'nope'");
    free(t);
    free(d);
}

Test(export, export_refuses_what_cannot_ship, .init = setup, .timeout = 600) {
    char *log;
    cr_assert_neq(run_export("z.lcb", "f32", "f32", "[{\"task\": \"t1\", \"method\": \"zero-shot\"}]", &log), 0);
    cr_assert(strstr(log, "type 'zero_shot'"), "%s", log);
    free(log);
    cr_assert_neq(run_export("z.lcb", "f32", "f32", "[{\"task\": \"t1\", \"method\": \"nope\"}]", &log), 0);
    cr_assert(strstr(log, "results.json"), "%s", log);
    free(log);
    cr_assert_neq(run_export("z.lcb", "f99", "f32", THREE_TASKS, &log), 0);
    cr_assert(strstr(log, "adapter_dtype"), "%s", log);
    free(log);
    /* interop: a bias calibration cannot be a LoRA */
    char text[1024], cmd[2048];
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"x.lcb\",\n"
             " \"tasks\": [{\"task\": \"t1\", \"method\": \"LC\"}],\n"
             " \"interop\": [{\"task\": \"t1\", \"method\": \"LC\", \"peft_dir\": \"peft\"}]}\n");
    write_text("export.json", text);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config export.json 2>&1", dir, tu_bin("export"));
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "%s", out);
    cr_assert(strstr(out, "bias"), "%s", out);
    free(out);
    /* LC++ goes to PEFT and GGUF */
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"x.lcb\",\n"
             " \"tasks\": [{\"task\": \"t1\", \"method\": \"LC++\"}],\n"
             " \"interop\": [{\"task\": \"t1\", \"method\": \"LC++\", \"peft_dir\": \"peft\", \"gguf\": \"x.gguf\"}]}\n");
    write_text("export.json", text);
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
}

/* Single flipped bytes anywhere (header, manifest, tensors, padding) and
 * cuts at any length: the reader either refuses with a message or, for a
 * byte in padding, loads; it never crashes (the sanitizer pass checks
 * reads) and never accepts a changed tensor or manifest byte. */
Test(export, corrupted_bundles_never_crash, .init = setup, .timeout = 900) {
    cr_assert_eq(run_export("good.lcb", "f16", "i8", THREE_TASKS, NULL), 0);
    size_t n;
    char *d = load_file("good.lcb", &n);
    char p[1024];
    lc_err err;
    model base;
    snprintf(p, sizeof p, "%s/model.bin", dir);
    cr_assert_eq(model_load(&base, p, &err), LC_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/bad.lcb", dir);
    char *t = malloc(n);
    uint64_t x = 12345;
    int refused = 0, loaded = 0;
    const size_t data_off = (size_t)u64_at(d, 32);
    for (int it = 0; it < 300; it++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t pos = (size_t)(x >> 33) % n, len = n;
        memcpy(t, d, n);
        if (it % 4 == 3) len = pos; /* a cut */
        else t[pos] ^= (char)(1u << ((x >> 20) % 8));
        cr_assert_eq(tu_write_file(p, t, len), 0);
        bundle *b = NULL;
        int ok = bundle_open(&b, p, &err) == LC_OK;
        for (int k = 0; ok && k < 3; k++) {
            const char *tasks[3] = {"t1", "t2", "t3"};
            bundle_task bt;
            if (bundle_task_load(b, &base, tasks[k], &bt, &err) == LC_OK) bundle_task_free(&bt);
            else ok = 0;
        }
        bundle_close(b); /* NULL when bundle_open refused the file */
        if (ok) {
            loaded++;
            /* only padding may change unnoticed: a byte past the header and manifest */
            cr_assert(it % 4 != 3 && pos >= data_off, "a change at byte %zu (cut: %d) was accepted", pos, it % 4 == 3);
        } else {
            refused++;
        }
    }
    fprintf(stderr, "export test: 300 corrupted bundles: %d refused, %d loaded (changes in padding)\n", refused, loaded);
    free(t);
    free(d);
    model_free(&base);
}

/* The merge recipe reader is strict (data-loaders/recipe.c): what the
 * writer never produces is an error naming the key, not a default. */
static void recipe_error(const char *json, const char *needle) {
    cJSON *j = cJSON_Parse(json);
    cr_assert(j, "test JSON does not parse: %s", json);
    merge_spec s;
    const char *names[ADAPTER_MAX];
    int n;
    lc_err err = {{0}};
    cr_expect_eq(merge_spec_from_json(j, &s, names, &n, &err), LC_FAIL, "accepted: %s", json);
    cr_expect(strstr(err.msg, needle), "error '%s' lacks '%s'", err.msg, needle);
    cJSON_Delete(j);
}

Test(export, merge_recipe_reader_is_strict_and_round_trips) {
    recipe_error("{\"method\":\"ties\",\"adapters\":[{\"name\":\"a\"}],\"ties_mean\":\"median\"}", "'ties_mean'");
    recipe_error("{\"method\":\"ties\",\"adapters\":[{\"name\":\"a\"}],\"density\":\"0.5\"}", "'density': expected a number, found string");
    recipe_error("{\"method\":\"ties\",\"adapters\":[{\"name\":\"a\"}],\"density\":1.5}", "'density': 1.5 is outside");
    recipe_error("{\"method\":\"slerp\",\"adapters\":[{\"name\":\"a\"},{\"name\":\"b\"}],\"t\":-1}", "'t'");
    recipe_error("{\"method\":\"linear\",\"adapters\":[{\"name\":\"a\",\"weight\":true}]}", "adapters[0].'weight'");
    recipe_error("{\"method\":\"linear\",\"adapters\":[{\"weight\":1}]}", "adapters[0] has no name");
    recipe_error("{\"method\":\"blend\",\"adapters\":[{\"name\":\"a\"}]}", "blend is not a merge method");
    recipe_error("{\"adapters\":[{\"name\":\"a\"}]}", "'method': missing");
    recipe_error("[1]", "expected an object, found array");
    /* every method the writer writes reads back to the same spec */
    for (int m = 0; m < MERGE_COUNT; m++) {
        merge_spec s, r;
        merge_spec_default(&s, (merge_method)m);
        s.weights[0] = 0.25, s.weights[1] = 1.5, s.density = 0.3, s.lambda = 1.2, s.seed = 7;
        s.mean = TIES_MEAN_WEIGHT, s.t = 0.4, s.svd_rank = 3;
        const char *nm[2] = {"first", "second"}, *got[ADAPTER_MAX];
        recipe_lorahub hub = {5, 40, 0.05};
        cJSON *j = merge_spec_to_json(&s, nm, NULL, 2, &hub);
        cr_assert(j);
        int n;
        lc_err err = {{0}};
        cr_assert_eq(merge_spec_from_json(j, &r, got, &n, &err), LC_OK, "%s: %s", MERGE_NAMES[m], err.msg);
        cr_expect_eq(n, 2);
        cr_expect_str_eq(got[1], "second");
        cr_expect_eq(r.method, s.method);
        cr_expect_eq(r.weights[0], 0.25);
        cr_expect_eq(r.weights[1], 1.5);
        if (m == MERGE_TIES || m == MERGE_DARE_TIES) cr_expect_eq(r.mean, TIES_MEAN_WEIGHT, "%s", MERGE_NAMES[m]);
        if (m == MERGE_SLERP) cr_expect_eq(r.t, 0.4);
        if (m == MERGE_SVD) cr_expect_eq(r.svd_rank, 3);
        cJSON_Delete(j);
    }
}
