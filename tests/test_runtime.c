/* The on-device runtime's contract (export/runtime/lcmt.h), linking only
 * lcmt_runtime and Criterion. The bundles are made the way a user makes
 * them: random PEFT LoRAs, `calibrate` (LC++ = concat merge + low-rank
 * calibration, learned coefficients, TIES) and `export`, over a tiny
 * self-made base and over stories260K (../shared; skipped visibly when
 * absent). Answers and greedy ids are compared with `generate --bundle`,
 * the reference runtime, run as a separate program. */
#include <ctype.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lcmt.h"
#include "loaders.h"
#include "bundle.h"
#include "model.h"
#include "model_map.h"
#include "qtype.h"
#include "tensor_file.h"
#include "testutil.h"

/* ---- fixtures: base + LoRAs + calibrate + export, made once per build ------------- */

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0, "cannot write %s", p);
}

static model_config tiny_config(void) {
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 48, c.vocab_size = 259, c.max_seq_len = 96;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 1, c.eos_id = 2;
    return c;
}

static void random_model(const char *path, const model_config *c, uint64_t seed) {
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, c, &err), LC_OK, "%s", err.msg);
    model_init_random(&m, 0.1f, seed);
    cr_assert_eq(model_save_llama2c(&m, path, &err), LC_OK, "%s", err.msg);
    model_free(&m);
}

/* A random PEFT LoRA folder (adapter_config.json + safetensors), written
 * with the runtime's own safetensors writer. */
static void random_lora(const char *dir, const model_config *c, int rank, uint64_t seed) {
    lora l;
    lc_err err;
    cr_assert_eq(lora_init(&l, c, rank, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(&l, 0.1f, seed);
    cr_assert_eq(lc_make_dirs(dir, &err), LC_OK, "%s", err.msg);
    char p[8192], name[256];
    snprintf(p, sizeof p, "%.4000s/adapter_model.safetensors", dir);
    tensor_writer *w;
    cr_assert_eq(tensor_writer_open(&w, p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    for (int li = 0; li < c->n_layers; li++)
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            const int s = li * MOD_COUNT + mo;
            int64_t sa[2] = {rank, module_in_dim(c, mo)}, sb[2] = {module_out_dim(c, mo), rank};
            lora_tensor_name(name, sizeof name, li, mo, 0);
            cr_assert_eq(tensor_writer_add_f32(w, name, 2, sa, l.A[s], DT_F32, &err), LC_OK, "%s", err.msg);
            lora_tensor_name(name, sizeof name, li, mo, 1);
            cr_assert_eq(tensor_writer_add_f32(w, name, 2, sb, l.B[s], DT_F32, &err), LC_OK, "%s", err.msg);
        }
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    char cfg[600];
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": 4.0, \"use_rslora\": false,\n"
             " \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", "
             "\"up_proj\", \"down_proj\"], \"layers_to_transform\": null}\n", rank);
    write_text(dir, "adapter_config.json", cfg);
    lora_free(&l);
}

static time_t mtime(const char *p) {
    struct stat st;
    return stat(p, &st) ? 0 : st.st_mtime;
}

/* <build>/test_runtime/<name>: model.bin (+ tokenizer), other.bin (another
 * base), b.lcb with t1 = LC++ (concat + LC++), t2 = learned, t3 = TIES
 * (dense). Rebuilt when calibrate or export is newer than it. */
static const char *fixture(const char *name, const char *base, const char *tok) {
    static char dir[1024];
    char p[8192], q[8192], ready[1100];
    snprintf(dir, sizeof dir, "%s/test_runtime/%s", LC_BINARY_DIR, name);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    time_t t = mtime(ready);
    if (t && t >= mtime(tu_bin("calibrate")) && t >= mtime(tu_bin("export"))) return dir;
    snprintf(p, sizeof p, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    cr_assert_eq(tu_system(p), 0);
    model_config c = tiny_config();
    snprintf(p, sizeof p, "%s/model.bin", dir);
    if (base) {
        snprintf(q, sizeof q, "cp '%s' '%s/model.bin' && cp '%s' '%s/'", base, dir, tok, dir);
        cr_assert_eq(tu_system(q), 0);
        model m;
        lc_err err;
        cr_assert_eq(model_load(&m, p, &err), LC_OK, "%s", err.msg);
        c = m.cfg;
        model_free(&m);
    } else {
        random_model(p, &c, 1);
        snprintf(q, sizeof q, "%s/tok259.bin", dir);
        cr_assert_eq(tu_write_byte_tokenizer(q), 0);
    }
    snprintf(p, sizeof p, "%s/other.bin", dir);
    random_model(p, &c, 2);
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/lora%d", dir, k);
        random_lora(p, &c, 2 + k, 20 + k);
    }
    static char rows[8192];
    size_t o = 0;
    const char *w[] = {"red", "blue", "green", "cat", "dog", "sun", "moon", "tree"};
    for (int i = 0; i < 48; i++)
        o += snprintf(rows + o, sizeof rows - o, "{\"q\": \"say %s %s\", \"a\": \"%s and %s\"}\n", w[i % 8],
                      w[(i / 8) % 8], w[(i / 8) % 8], w[i % 8]);
    write_text(dir, "data.jsonl", rows);
    const char *task =
        "{\"name\": \"%s\", \"adapters\": [\"a\", \"b\"], \"data\": {\"train\": \"data.jsonl\", "
        "\"validation\": \"data.jsonl\", \"test\": \"data.jsonl\", \"prompt_template\": \"{q}:\", "
        "\"target_template\": \" {a}\", \"max_len\": 48, \"max_test_examples\": 3}}";
    char t1[512], t2[512], t3[512];
    snprintf(t1, sizeof t1, task, "t1");
    snprintf(t2, sizeof t2, task, "t2");
    snprintf(t3, sizeof t3, task, "t3");
    static char cfg[8192];
    snprintf(cfg, sizeof cfg,
             "{\"model\": \"model.bin\", \"output_dir\": \"cal\",\n"
             " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}],\n"
             " \"tasks\": [%s, %s, %s],\n"
             " \"methods\": [{\"name\": \"LC++\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", "
             "\"rank\": 2, \"per_layer\": true}},\n"
             "             {\"name\": \"learned\", \"type\": \"merge\", \"merge\": {\"method\": \"learned\"}},\n"
             "             {\"name\": \"TIES\", \"type\": \"merge\", \"merge\": {\"method\": \"ties\", \"density\": 0.5}}],\n"
             " \"training\": {\"batch_size\": 4, \"steps\": 4, \"eval_every\": 4, \"log_every\": 4, "
             "\"checkpoint_every\": 0},\n"
             " \"optimizer\": {\"lr\": 0.05},\n"
             " \"generation\": {\"max_new_tokens\": 12}}\n",
             t1, t2, t3);
    write_text(dir, "cal.json", cfg);
    snprintf(p, sizeof p, "cd '%s' && %s --config cal.json --tasks t1,t2,t3 >cal.log 2>&1", dir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(p), 0, "calibrate failed: see %s/cal.log", dir);
    write_text(dir, "export.json",
               "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"b.lcb\",\n"
               " \"adapter_dtype\": \"f32\", \"calibration_dtype\": \"f32\", \"tasks\": "
               "[{\"task\": \"t1\", \"method\": \"LC++\"}, {\"task\": \"t2\", \"method\": \"learned\"}, "
               "{\"task\": \"t3\", \"method\": \"TIES\"}]}\n");
    snprintf(p, sizeof p, "cd '%s' && %s --config export.json >export.log 2>&1", dir, tu_bin("export"));
    cr_assert_eq(tu_system(p), 0, "export failed: see %s/export.log", dir);
    write_text(dir, "ready", "ok\n");
    return dir;
}

static const char *tiny(void) { return fixture("tiny", NULL, NULL); }

static const char *stories(void) {
    const char *a = tu_shared_assets();
    if (!a) return NULL;
    static char base[1024], tok[1024];
    snprintf(base, sizeof base, "%s/stories260K/stories260K.bin", a);
    snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", a);
    return fixture("stories260K", base, tok);
}

#define REQUIRE_STORIES(d)                                                                        \
    const char *d = stories();                                                                    \
    if (!d) cr_skip_test("SKIP: ../shared/assets not found next to the checkout; this test needs " \
                         "stories260K")

/* ---- helpers -------------------------------------------------------------------------- */

static char msg[1024];

static lcmt_model *open_model(const char *dir, const char *file) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    lcmt_model *m = NULL;
    cr_assert_eq(lcmt_model_open(p, NULL, &m, msg, sizeof msg), LCMT_OK, "%s", msg);
    return m;
}

static lcmt_bundle *open_bundle(const lcmt_model *m, const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/b.lcb", dir);
    lcmt_bundle *b = NULL;
    cr_assert_eq(lcmt_bundle_open(m, p, NULL, &b, msg, sizeof msg), LCMT_OK, "%s", msg);
    return b;
}

typedef struct {
    char ids[4096];
    size_t n;
    int count;
} idbuf;

static void put_id(void *user, int id) {
    idbuf *b = user;
    b->n += (size_t)snprintf(b->ids + b->n, sizeof b->ids - b->n, b->count++ ? " %d" : "%d", id);
}

/* answer text + ids */
static char *answer(lcmt_session *s, const char *input, idbuf *ids) {
    memset(ids, 0, sizeof *ids);
    lcmt_stream st = {NULL, put_id, ids};
    char *a = NULL;
    cr_assert_eq(lcmt_session_answer(s, input, &st, &a), LCMT_OK, "%s", lcmt_session_last_error(s));
    cr_assert_not_null(a);
    return a;
}

static char *run(const char *cmd) {
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "failed: %s", cmd);
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n') out[--n] = 0;
    return out;
}

/* ---- contract ------------------------------------------------------------------------- */

Test(runtime, wrong_base_is_refused) {
    const char *d = tiny();
    lcmt_model *other = open_model(d, "other.bin");
    char p[1200];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    for (int v = 0; v < 2; v++) {
        lcmt_bundle_params bp = lcmt_bundle_default_params();
        bp.verify = v ? LCMT_VERIFY_FULL : LCMT_VERIFY_SAMPLE;
        lcmt_bundle *b = (lcmt_bundle *)1;
        cr_assert_eq(lcmt_bundle_open(other, p, &bp, &b, msg, sizeof msg), LCMT_ERR_WRONG_BASE, "%s", msg);
        cr_assert_null(b);
        cr_assert(strstr(msg, "made for another base model") && strstr(msg, "b.lcb"), "%s", msg);
    }
    lcmt_model_free(other);
}

/* the sampled check sees a change inside a sampled block (each tensor's
 * first bytes are sampled), as the full check does */
Test(runtime, sampled_base_check_sees_a_changed_weight) {
    const char *d = tiny();
    char p[1200], b[1200];
    lc_err err;
    model mm;
    snprintf(p, sizeof p, "%s/model.bin", d);
    cr_assert_eq(model_load(&mm, p, &err), LC_OK, "%s", err.msg);
    mm.w.tok_emb[1] += 0.5f;
    snprintf(p, sizeof p, "%s/edited.bin", d);
    cr_assert_eq(model_save_llama2c(&mm, p, &err), LC_OK, "%s", err.msg);
    model_free(&mm);
    lcmt_model *m = open_model(d, "edited.bin");
    snprintf(b, sizeof b, "%s/b.lcb", d);
    lcmt_bundle *bd = NULL;
    cr_assert_eq(lcmt_bundle_open(m, b, NULL, &bd, msg, sizeof msg), LCMT_ERR_WRONG_BASE, "%s", msg);
    cr_assert(strstr(msg, "weights_sample_crc32"), "%s", msg);
    lcmt_model_free(m);
}

Test(runtime, bad_files_are_refused) {
    const char *d = tiny();
    lcmt_model *m = NULL;
    cr_assert_eq(lcmt_model_open("/nonexistent/model.bin", NULL, &m, msg, sizeof msg), LCMT_ERR_IO);
    cr_assert(strstr(msg, "/nonexistent/model.bin"), "%s", msg);
    /* the runtime has no HDF5: a .h5 base is refused, saying so */
    char p[1200];
    snprintf(p, sizeof p, "%s/x.h5", d);
    const unsigned char sig[16] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    cr_assert_eq(tu_write_file(p, sig, sizeof sig), 0);
    cr_assert_eq(lcmt_model_open(p, NULL, &m, msg, sizeof msg), LCMT_ERR_IO);
    cr_assert(strstr(msg, "x.h5") && strstr(msg, "without HDF5"), "%s", msg);
    m = open_model(d, "model.bin");
    lcmt_bundle *b = NULL;
    snprintf(p, sizeof p, "%s/cal.json", d);
    cr_assert_eq(lcmt_bundle_open(m, p, NULL, &b, msg, sizeof msg), LCMT_ERR_IO);
    cr_assert(strstr(msg, "cal.json"), "%s", msg);
    lcmt_model_free(m);
}

Test(runtime, tasks_are_listed_with_results) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_bundle *b = open_bundle(m, d);
    cr_assert_eq(lcmt_bundle_n_tasks(b), 3);
    const char *method[3] = {"LC++", "learned", "TIES"}, *merge[3] = {"concat", "learned", "ties"};
    for (int i = 0; i < 3; i++) {
        lcmt_task_info t;
        cr_assert_eq(lcmt_bundle_task(b, i, &t), LCMT_OK);
        char want[16];
        snprintf(want, sizeof want, "t%d", i + 1);
        cr_assert_str_eq(t.name, want);
        cr_assert_str_eq(t.method, method[i]);
        cr_assert_str_eq(t.merge, merge[i]);
        cr_assert_str_eq(t.prompt_template, "{q}:");
        cr_assert(strstr(t.results_json, "\"generation\""), "%s", t.results_json);
        cr_assert_eq(t.supported, i < 2, "%s", t.name);
        cr_assert_eq(lcmt_bundle_find_task(b, want), i);
    }
    cr_assert_eq(lcmt_bundle_task(b, 3, &(lcmt_task_info){0}), LCMT_ERR_ARG);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

Test(runtime, unknown_and_dense_tasks) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_bundle *b = open_bundle(m, d);
    lcmt_session *s = NULL;
    cr_assert_eq(lcmt_session_new(m, b, "nope", NULL, &s, msg, sizeof msg), LCMT_ERR_NO_TASK);
    cr_assert(strstr(msg, "no task 'nope'") && strstr(msg, "'t1', 't2', 't3'"), "%s", msg);
    cr_assert_eq(lcmt_session_new(m, b, NULL, NULL, &s, msg, sizeof msg), LCMT_ERR_NO_TASK);
    cr_assert(strstr(msg, "3 tasks"), "%s", msg);
    cr_assert_eq(lcmt_session_new(m, b, "t3", NULL, &s, msg, sizeof msg), LCMT_ERR_UNSUPPORTED);
    cr_assert(strstr(msg, "'t3'") && strstr(msg, "dense"), "%s", msg);
    cr_assert_eq(lcmt_session_new(m, b, "t1", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    cr_assert_eq(lcmt_session_set_task(s, "nope"), LCMT_ERR_NO_TASK);
    cr_assert(strstr(lcmt_session_last_error(s), "no task 'nope'"));
    cr_assert_eq(lcmt_session_set_task(s, "t3"), LCMT_ERR_UNSUPPORTED);
    cr_assert_str_eq(lcmt_session_task(s), "t1"); /* kept */
    lcmt_session_free(s);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

/* the reference: `generate --bundle` (ids, then text) */
static void check_against_generate(const char *d, const char *task, const char *input) {
    lcmt_model *m = open_model(d, "model.bin");
    char p[1200];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    lcmt_bundle_params bp = lcmt_bundle_default_params();
    bp.allow_dense_copy = 1; /* t3 (TIES) */
    lcmt_bundle *b = NULL;
    cr_assert_eq(lcmt_bundle_open(m, p, &bp, &b, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_session *s = NULL;
    cr_assert_eq(lcmt_session_new(m, b, task, NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    idbuf ids;
    char *a = answer(s, input, &ids);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --model '%s/model.bin' --bundle '%s/b.lcb' --task %s --prompt '%s' --seed 0 "
             "--quiet --print-ids", tu_bin("generate"), d, d, task, input);
    char *want_ids = run(cmd);
    snprintf(cmd, sizeof cmd, "%s --model '%s/model.bin' --bundle '%s/b.lcb' --task %s --prompt '%s' --seed 0 "
             "--quiet", tu_bin("generate"), d, d, task, input);
    char *want_text = run(cmd);
    cr_assert(ids.count > 0, "no tokens generated");
    cr_assert_str_eq(ids.ids, want_ids, "task %s: ids differ from generate --bundle", task);
    cr_assert_str_eq(a, want_text, "task %s: text differs from generate --bundle", task);
    free(a), free(want_ids), free(want_text);
    lcmt_session_free(s);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

Test(runtime, answers_equal_generate_bundle_tiny) {
    const char *d = tiny();
    check_against_generate(d, "t1", "say red blue");
    check_against_generate(d, "t2", "say cat moon");
    check_against_generate(d, "t3", "say sun dog");
}

/* allow_dense_copy: the dense task runs on its own copy; switching to and
 * from it answers as fresh sessions do */
Test(runtime, dense_task_with_a_copy_and_switches) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    char p[1200];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    lcmt_bundle_params bp = lcmt_bundle_default_params();
    bp.allow_dense_copy = 1;
    lcmt_bundle *b = NULL;
    cr_assert_eq(lcmt_bundle_open(m, p, &bp, &b, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_task_info t;
    cr_assert_eq(lcmt_bundle_task(b, 2, &t), LCMT_OK);
    cr_assert(t.supported);
    const char *tasks[3] = {"t3", "t1", "t3"};
    idbuf fresh[3], ids;
    for (int k = 0; k < 3; k++) {
        lcmt_session *s;
        cr_assert_eq(lcmt_session_new(m, b, tasks[k], NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
        free(answer(s, "say tree red", &fresh[k]));
        lcmt_session_free(s);
    }
    lcmt_session *s;
    cr_assert_eq(lcmt_session_new(m, b, "t1", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(lcmt_session_set_task(s, tasks[k]), LCMT_OK, "%s", lcmt_session_last_error(s));
        free(answer(s, "say tree red", &ids));
        cr_assert_str_eq(ids.ids, fresh[k].ids, "switch %d to %s", k, tasks[k]);
    }
    lcmt_session_free(s);
    /* only_task: the others are listed but not prepared */
    bp.only_task = "t2";
    lcmt_bundle *b2 = NULL;
    cr_assert_eq(lcmt_bundle_open(m, p, &bp, &b2, msg, sizeof msg), LCMT_OK, "%s", msg);
    cr_assert_eq(lcmt_session_new(m, b2, "t1", NULL, &s, msg, sizeof msg), LCMT_ERR_UNSUPPORTED);
    cr_assert(strstr(msg, "only_task"), "%s", msg);
    cr_assert_eq(lcmt_session_new(m, b2, "t2", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_session_free(s);
    lcmt_bundle_free(b2);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

Test(runtime, answers_equal_generate_bundle_stories260K) {
    REQUIRE_STORIES(d);
    check_against_generate(d, "t1", "say red blue");
    check_against_generate(d, "t2", "say cat moon");
    /* the base alone, against generate without a bundle (greedy, 40 tokens) */
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_session_params p = lcmt_session_default_params();
    p.max_new_tokens = 40, p.temperature = 0;
    lcmt_session *s = NULL;
    cr_assert_eq(lcmt_session_new(m, NULL, NULL, &p, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    idbuf ids;
    char *a = answer(s, "Once upon a time", &ids);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --model '%s/model.bin' --prompt 'Once upon a time' --max-new-tokens 40 "
             "--temperature 0 --quiet --print-ids", tu_bin("generate"), d);
    char *want = run(cmd);
    cr_assert_str_eq(ids.ids, want);
    free(a), free(want);
    lcmt_session_free(s);
    lcmt_model_free(m);
}

Test(runtime, set_task_equals_a_fresh_session) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_bundle *b = open_bundle(m, d);
    const char *in = "say green dog";
    char *fresh[2];
    idbuf fids[2], ids;
    for (int k = 0; k < 2; k++) {
        lcmt_session *s = NULL;
        cr_assert_eq(lcmt_session_new(m, b, k ? "t2" : "t1", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
        fresh[k] = answer(s, in, &fids[k]);
        lcmt_session_free(s);
    }
    cr_assert(strcmp(fids[0].ids, fids[1].ids), "the two tasks answer alike: the test cannot tell them apart");
    lcmt_session *s = NULL;
    cr_assert_eq(lcmt_session_new(m, b, "t1", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
    for (int round = 0; round < 3; round++) {
        int k = round % 2;
        if (round) cr_assert_eq(lcmt_session_set_task(s, k ? "t2" : "t1"), LCMT_OK, "%s", lcmt_session_last_error(s));
        char *a = answer(s, in, &ids);
        cr_assert_str_eq(ids.ids, fids[k].ids, "round %d", round);
        cr_assert_str_eq(a, fresh[k]);
        free(a);
    }
    lcmt_session_free(s);
    free(fresh[0]), free(fresh[1]);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

/* ---- cancel from another thread ------------------------------------------------------ */

typedef struct {
    lcmt_session *s;
    atomic_int tokens;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int cancelled;
} cancel_ctx;

static void count_and_wait(void *user, int id) {
    (void)id;
    cancel_ctx *c = user;
    if (atomic_fetch_add(&c->tokens, 1) + 1 == 3) { /* hold the answer until the other thread cancelled */
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        while (!c->cancelled) pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
}

static void *canceller(void *p) {
    cancel_ctx *c = p;
    pthread_mutex_lock(&c->mu);
    while (atomic_load(&c->tokens) < 3) pthread_cond_wait(&c->cv, &c->mu);
    lcmt_session_cancel(c->s);
    c->cancelled = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

Test(runtime, cancel_mid_answer) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_session_params p = lcmt_session_default_params();
    p.max_new_tokens = 60, p.temperature = 1.0f, p.top_p = 1.0f; /* sampling: no early EOS in 3 tokens */
    p.seed = 7;
    cancel_ctx c = {.tokens = 0, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cr_assert_eq(lcmt_session_new(m, NULL, NULL, &p, &c.s, msg, sizeof msg), LCMT_OK, "%s", msg);
    /* uncancelled, the answer is longer than 3 tokens */
    idbuf full;
    char *a = answer(c.s, "say", &full);
    free(a);
    cr_assert(full.count > 4, "the uncancelled answer has %d tokens", full.count);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, canceller, &c), 0);
    lcmt_stream st = {NULL, count_and_wait, &c};
    char *part = NULL;
    cr_assert_eq(lcmt_session_answer(c.s, "say", &st, &part), LCMT_ERR_CANCELLED);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&c.tokens), 3, "the answer went on after the cancel");
    cr_assert_not_null(part);
    cr_assert(strstr(lcmt_session_last_error(c.s), "cancelled after 3"), "%s", lcmt_session_last_error(c.s));
    free(part);
    /* the flag is cleared: the next answer runs in full, identical to the first */
    idbuf again;
    a = answer(c.s, "say", &again);
    cr_assert_str_eq(again.ids, full.ids);
    free(a);
    lcmt_session_free(c.s);
    lcmt_model_free(m);
}

/* ---- sessions on threads over one model and one bundle -------------------------------- */

static const char *const INPUTS[3] = {"say red blue", "say moon tree", "say sun cat"};

typedef struct {
    lcmt_session *s;
    char ids[3][4096];
} thread_job;

static void *answer_all(void *p) {
    thread_job *j = p;
    for (int i = 0; i < 3; i++) {
        idbuf b = {{0}, 0, 0};
        lcmt_stream st = {NULL, put_id, &b};
        char *a = NULL;
        if (lcmt_session_answer(j->s, INPUTS[i], &st, &a) != LCMT_OK) snprintf(b.ids, sizeof b.ids, "error");
        free(a);
        memcpy(j->ids[i], b.ids, sizeof b.ids);
    }
    return NULL;
}

Test(runtime, two_threads_answer_as_one_at_a_time) {
    const char *d = tiny();
    lcmt_model *m = open_model(d, "model.bin");
    lcmt_bundle *b = open_bundle(m, d);
    thread_job seq[2], par[2];
    const char *task[2] = {"t1", "t2"};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lcmt_session_new(m, b, task[k], NULL, &seq[k].s, msg, sizeof msg), LCMT_OK, "%s", msg);
        answer_all(&seq[k]);
        lcmt_session_free(seq[k].s);
    }
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lcmt_session_new(m, b, task[k], NULL, &par[k].s, msg, sizeof msg), LCMT_OK, "%s", msg);
        cr_assert_eq(pthread_create(&th[k], NULL, answer_all, &par[k]), 0);
    }
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) {
            cr_assert_neq(strcmp(seq[k].ids[i], "error"), 0);
            cr_assert_str_eq(par[k].ids[i], seq[k].ids[i], "task %s input %d", task[k], i);
        }
        lcmt_session_free(par[k].s);
    }
    lcmt_bundle_free(b);
    lcmt_model_free(m);
}

/* the example app: loads once, lists the tasks, answers as t1, t2, t1 */
Test(runtime, example_program_runs) {
    const char *d = tiny();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s/model.bin' '%s/b.lcb' t1 t2 'say red blue' 2>&1", tu_bin("lcmt_example"), d, d);
    char *out = run(cmd);
    cr_assert(strstr(out, "task t3") && strstr(out, "dense"), "%s", out);
    const char *a = strstr(out, "[t1]"), *b = a ? strstr(a, "[t2]") : NULL, *c = b ? strstr(b, "[t1]") : NULL;
    cr_assert(a && b && c && strstr(out, "switched in"), "%s", out);
    free(out);
}

/* ---- memory ------------------------------------------------------------------------------ */

Test(runtime, mapped_safetensors_base_answers_alike) {
    const char *d = tiny();
    char p[1200];
    snprintf(p, sizeof p, "%s/hf", d);
    model mm;
    lc_err err;
    char src[1200];
    snprintf(src, sizeof src, "%s/model.bin", d);
    cr_assert_eq(model_load(&mm, src, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_save_hf(&mm, p, &err), LC_OK, "%s", err.msg);
    model_free(&mm);
    snprintf(src, sizeof src, "cp '%s/tok259.bin' '%s/hf/tok.bin'", d, d);
    cr_assert_eq(tu_system(src), 0);
    snprintf(src, sizeof src, "%s/hf/tok.bin", d);
    lcmt_model_params mp = lcmt_model_default_params();
    mp.tokenizer_path = src;
    lcmt_model *hf = NULL;
    cr_assert_eq(lcmt_model_open(p, &mp, &hf, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_model_info info;
    lcmt_model_get_info(hf, &info);
    cr_assert_eq(info.mapped_bytes, info.n_params * sizeof(float), "F32 safetensors must be used in place");
    cr_assert_eq(info.owned_bytes, 0);
    lcmt_model *l2c = open_model(d, "model.bin");
    lcmt_bundle *bh = open_bundle(hf, d), *bl = open_bundle(l2c, d);
    lcmt_session *sh, *sl;
    cr_assert_eq(lcmt_session_new(hf, bh, "t1", NULL, &sh, msg, sizeof msg), LCMT_OK, "%s", msg);
    cr_assert_eq(lcmt_session_new(l2c, bl, "t1", NULL, &sl, msg, sizeof msg), LCMT_OK, "%s", msg);
    idbuf a, b;
    char *x = answer(sh, "say dog sun", &a), *y = answer(sl, "say dog sun", &b);
    cr_assert_str_eq(a.ids, b.ids);
    free(x), free(y);
    lcmt_session_free(sh), lcmt_session_free(sl);
    lcmt_bundle_free(bh), lcmt_bundle_free(bl);
    lcmt_model_free(hf), lcmt_model_free(l2c);
}

/* A GGUF base whose matrices are all Q8_0 is used in place: its matrices
 * are views of the file's mapping (llama's q/k rows copied back into HF
 * order), nothing is dequantized; it answers as the float32 base quantized
 * to Q8_0 at open (the same bytes: convert writes our quantizer's), with a
 * bundle exported for the GGUF; and its identity (full and sampled CRC) is
 * that of the same file read as float32, so bundles do not depend on how
 * the base was opened. */
Test(runtime, mapped_gguf_base_answers_alike) {
    const char *d = tiny();
    const char *t = tu_tmpdir();
    char src[1200], gg[1200], tok[1200], p[4096];
    lc_err err;
    snprintf(src, sizeof src, "%s/model.bin", d);
    snprintf(gg, sizeof gg, "%s/q8.gguf", t);
    snprintf(tok, sizeof tok, "%s/tok259.bin", d);
    model mf;
    cr_assert_eq(model_load(&mf, src, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_save_gguf(&mf, NULL, QT_Q8_0, gg, &err), LC_OK, "%s", err.msg);
    model_free(&mf);
    /* the stored form, as model_map_open holds it */
    model mv;
    model_map *mm;
    cr_assert_eq(model_map_open(&mm, &mv, gg, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(mv.base_type, QT_Q8_0);
    size_t want_mapped = qmat_bytes(&mv.w.q_tok_emb), want_owned = sizeof(float) * mv.n_data;
    for (int l = 0; l < mv.cfg.n_layers; l++)
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            const qmat *q = &mv.w.layers[l].q[mo];
            /* rows that are not whole Q8_0 blocks (48 wide) are F16, as llama.cpp writes them */
            cr_assert_eq(q->type, module_in_dim(&mv.cfg, mo) % 32 ? QT_F16 : QT_Q8_0);
            /* copies live in the model's one block of copies */
            const uintptr_t a = (uintptr_t)q->data, c0 = (uintptr_t)mv.copies;
            const int copied = c0 && a >= c0 && a < c0 + mv.copies_bytes;
            cr_assert_null(q->owned);
            cr_assert_eq(copied, mo == MOD_Q || mo == MOD_K, "layer %d module %d: %s", l, mo,
                         copied ? "copied" : "a view");
            if (copied) want_owned += qmat_bytes(q);
            else want_mapped += qmat_bytes(q);
        }
    size_t mapped, owned;
    model_map_stats(mm, &mapped, &owned);
    cr_assert_eq(mapped, want_mapped);
    cr_assert_eq(owned, want_owned);
    /* identity: as read in float32 (the dequantized values), and as copied */
    setenv("LC_GGUF_F32", "1", 1);
    cr_assert_eq(model_load(&mf, gg, &err), LC_OK, "%s", err.msg);
    unsetenv("LC_GGUF_F32");
    cr_assert_eq(mf.base_type, QT_F32);
    model mc;
    cr_assert_eq(model_load(&mc, gg, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(mc.base_type, QT_Q8_0);
    cr_assert_eq(model_owned_bytes(&mc), want_mapped + want_owned, "model_load copies every stored byte");
    cr_assert_eq(model_weights_crc32(&mv), model_weights_crc32(&mf));
    cr_assert_eq(model_weights_crc32(&mc), model_weights_crc32(&mf));
    cr_assert_eq(model_weights_sample_crc32(&mv), model_weights_sample_crc32(&mf));
    cr_assert_eq(model_weights_sample_crc32(&mc), model_weights_sample_crc32(&mf));
    model_free(&mf), model_free(&mc);
    model_map_close(mm, &mv);
    /* a bundle for the GGUF; the runtime's view of it answers as the float32 base held as Q8_0 */
    snprintf(p, sizeof p,
             "{\"model\": \"%s\", \"calibrate_dir\": \"%s/cal\", \"output\": \"%s/bq8.lcb\",\n"
             " \"adapter_dtype\": \"f32\", \"calibration_dtype\": \"f32\", \"tasks\": "
             "[{\"task\": \"t1\", \"method\": \"LC++\"}, {\"task\": \"t3\", \"method\": \"TIES\"}]}\n",
             gg, d, t);
    write_text(t, "export.json", p);
    snprintf(p, sizeof p, "%s --config '%s/export.json' >'%s/export.log' 2>&1", tu_bin("export"), t, t);
    cr_assert_eq(tu_system(p), 0, "export for the GGUF base failed: see %s/export.log", t);
    lcmt_model_params mp = lcmt_model_default_params();
    mp.tokenizer_path = tok;
    lcmt_model *mg = NULL, *mq = NULL;
    cr_assert_eq(lcmt_model_open(gg, &mp, &mg, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_model_info info;
    lcmt_model_get_info(mg, &info);
    cr_assert_eq(info.mapped_bytes, want_mapped);
    cr_assert_eq(info.owned_bytes, want_owned);
    mp.base_type = "q8_0";
    cr_assert_eq(lcmt_model_open(src, &mp, &mq, msg, sizeof msg), LCMT_OK, "%s", msg);
    lcmt_model_get_info(mq, &info);
    cr_assert_eq(info.mapped_bytes, 0, "quantized at open: nothing is used from the file");
    cr_assert_eq(info.owned_bytes, want_mapped + want_owned, "quantized at open: the stored bytes are owned");
    lcmt_bundle_params bp = lcmt_bundle_default_params();
    bp.allow_dense_copy = 1; /* t3 (TIES): a copy of the base, held as Q8_0 as well */
    lcmt_bundle *bg = NULL, *bq = NULL;
    snprintf(p, sizeof p, "%s/bq8.lcb", t);
    cr_assert_eq(lcmt_bundle_open(mg, p, &bp, &bg, msg, sizeof msg), LCMT_OK, "%s", msg);
    snprintf(p, sizeof p, "%s/b.lcb", d);
    cr_assert_eq(lcmt_bundle_open(mq, p, &bp, &bq, msg, sizeof msg), LCMT_OK, "%s", msg);
    const char *tasks[2] = {"t1", "t3"};
    for (int k = 0; k < 2; k++) {
        lcmt_session *sg, *sq;
        cr_assert_eq(lcmt_session_new(mg, bg, tasks[k], NULL, &sg, msg, sizeof msg), LCMT_OK, "%s", msg);
        cr_assert_eq(lcmt_session_new(mq, bq, tasks[k], NULL, &sq, msg, sizeof msg), LCMT_OK, "%s", msg);
        idbuf a, b;
        char *x = answer(sg, "say dog sun", &a), *y = answer(sq, "say dog sun", &b);
        cr_assert_gt(a.count, 0);
        cr_assert_str_eq(a.ids, b.ids, "%s: the mapped Q8_0 GGUF answers otherwise than the base quantized at open",
                         tasks[k]);
        free(x), free(y);
        lcmt_session_free(sg), lcmt_session_free(sq);
    }
    lcmt_bundle_free(bg), lcmt_bundle_free(bq);
    lcmt_model_free(mg), lcmt_model_free(mq);
}

/* ---- integrity: SHA-256 pins (BUNDLE.md, Integrity) ------------------------------------ */

static lcmt_status open_pinned(const lcmt_model *m, const char *bundle, lcmt_verify v, const char *bpin,
                               const char *basepin) {
    lcmt_bundle_params bp = lcmt_bundle_default_params();
    bp.verify = v;
    bp.bundle_sha256 = bpin;
    bp.base_sha256 = basepin;
    lcmt_bundle *b = (lcmt_bundle *)1;
    lcmt_status st = lcmt_bundle_open(m, bundle, &bp, &b, msg, sizeof msg);
    if (st == LCMT_OK) lcmt_bundle_free(b);
    else cr_assert_null(b);
    return st;
}

/* The digests export writes are those of coreutils' sha256sum (independent of libcrypto's use here). */
Test(runtime, export_writes_sha256_as_sha256sum_computes) {
    const char *d = tiny();
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cd '%s' && sha256sum -c --status b.lcb.sha256", d);
    cr_assert_eq(tu_system(cmd), 0, "sha256sum -c %s/b.lcb.sha256 failed", d);
    snprintf(cmd, sizeof cmd, "cd '%s' && sha256sum model.bin | cut -c1-64", d);
    char *want = run(cmd);
    char p[1200];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    for (size_t i = 0; i < n; i++) /* the manifest is the first text in the file */
        if (!buf[i]) buf[i] = ' ';
    char *at = strstr(buf, "\"base\"");
    cr_assert_not_null(at, "no base in the manifest");
    char *h = strstr(at, want), *k = strstr(at, "\"sha256\"");
    cr_assert(h && k && k < h && h - k < 16, "manifest lacks base.sha256 = %s", want);
    free(want);
}

Test(runtime, bundle_pin_accepts_the_file_and_refuses_another) {
    const char *d = tiny();
    char p[1200], cmd[4800], side[1300];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    snprintf(side, sizeof side, "%s/b.lcb.sha256", d);
    snprintf(cmd, sizeof cmd, "cut -c1-64 '%s'", side);
    char *hex = run(cmd);
    lcmt_model *m = open_model(d, "model.bin");
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, hex, NULL), LCMT_OK, "%s", msg);
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, side, NULL), LCMT_OK, "%s", msg);
    for (char *c = hex; *c; c++) *c = (char)toupper((unsigned char)*c); /* either case */
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, hex, NULL), LCMT_OK, "%s", msg);
    hex[10] = hex[10] == '0' ? '1' : '0';
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, hex, NULL), LCMT_ERR_INTEGRITY, "%s", msg);
    cr_assert(strstr(msg, "SHA-256 mismatch") && strstr(msg, "b.lcb"), "%s", msg);
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, "abc", NULL), LCMT_ERR_ARG, "%s", msg);
    cr_assert(strstr(msg, "64 hex digits"), "%s", msg);
    /* another bundle, valid in every CRC (the same tasks but one), is refused by the pin */
    write_text(d, "export1.json",
               "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"b1.lcb\",\n"
               " \"adapter_dtype\": \"f32\", \"calibration_dtype\": \"f32\", \"tasks\": "
               "[{\"task\": \"t1\", \"method\": \"LC++\"}]}\n");
    snprintf(cmd, sizeof cmd, "cd '%s' && %s --config export1.json >export1.log 2>&1", d, tu_bin("export"));
    cr_assert_eq(tu_system(cmd), 0, "export failed: see %s/export1.log", d);
    snprintf(p, sizeof p, "%s/b1.lcb", d);
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, NULL, NULL), LCMT_OK, "%s", msg);
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, side, NULL), LCMT_ERR_INTEGRITY, "%s", msg);
    /* generate: checks FILE.sha256 when it exists, and --bundle-sha256 */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/b1.lcb.sha256' && %s --model '%s/model.bin' --bundle '%s' --task t1 "
             "--prompt 'say red' --max-new-tokens 2 2>&1", side, d, tu_bin("generate"), d, p);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "generate used a bundle whose .sha256 does not match: %s", out);
    cr_assert(strstr(out, "SHA-256 mismatch"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --model '%s/model.bin' --bundle '%s/b.lcb' --bundle-sha256 '%s' --task t1 "
             "--prompt 'say red' --max-new-tokens 2 2>&1", tu_bin("generate"), d, d, hex);
    out = tu_capture(cmd, &st);
    cr_assert_neq(st, 0, "generate --bundle-sha256 accepted a wrong pin: %s", out);
    free(out);
    lcmt_model_free(m);
    free(hex);
}

/* A base with the very same weights in other files passes the CRC identity,
 * and is refused by the SHA-256 of its files. */
Test(runtime, base_pin_and_verify_sha256) {
    const char *d = tiny();
    char p[1200], src[1200], cmd[1400];
    snprintf(p, sizeof p, "%s/b.lcb", d);
    lcmt_model *m = open_model(d, "model.bin");
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SHA256, NULL, NULL), LCMT_OK, "%s", msg);
    snprintf(cmd, sizeof cmd, "cd '%s' && sha256sum model.bin | cut -c1-64", d);
    char *hex = run(cmd);
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, NULL, hex), LCMT_OK, "%s", msg);
    hex[0] = hex[0] == 'a' ? 'b' : 'a';
    cr_assert_eq(open_pinned(m, p, LCMT_VERIFY_SAMPLE, NULL, hex), LCMT_ERR_INTEGRITY, "%s", msg);
    cr_assert(strstr(msg, "base SHA-256 mismatch"), "%s", msg);
    lcmt_model_free(m);
    free(hex);
    /* the same weights as a Hugging Face folder */
    snprintf(p, sizeof p, "%s/hf-sha", d);
    model mm;
    lc_err err;
    snprintf(src, sizeof src, "%s/model.bin", d);
    cr_assert_eq(model_load(&mm, src, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_save_hf(&mm, p, &err), LC_OK, "%s", err.msg);
    model_free(&mm);
    snprintf(src, sizeof src, "%s/tok259.bin", d);
    lcmt_model_params mp = lcmt_model_default_params();
    mp.tokenizer_path = src;
    lcmt_model *hf = NULL;
    cr_assert_eq(lcmt_model_open(p, &mp, &hf, msg, sizeof msg), LCMT_OK, "%s", msg);
    snprintf(p, sizeof p, "%s/b.lcb", d);
    cr_assert_eq(open_pinned(hf, p, LCMT_VERIFY_FULL, NULL, NULL), LCMT_OK, "%s", msg);
    cr_assert_eq(open_pinned(hf, p, LCMT_VERIFY_SHA256, NULL, NULL), LCMT_ERR_WRONG_BASE, "%s", msg);
    cr_assert(strstr(msg, "made for other base files") && strstr(msg, "base.sha256"), "%s", msg);
    /* a folder's digest is the sha256sum listing of its files, hashed */
    snprintf(cmd, sizeof cmd, "cd '%s/hf-sha' && sha256sum config.json model.safetensors | LC_ALL=C sort -k2 | "
             "sha256sum | cut -c1-64", d);
    hex = run(cmd);
    cr_assert_eq(open_pinned(hf, p, LCMT_VERIFY_SAMPLE, NULL, hex), LCMT_OK, "%s", msg);
    free(hex);
    lcmt_model_free(hf);
}

/* Under ASan (LC_SANITIZE) LeakSanitizer fails the test on any leak. */
Test(runtime, repeated_open_close) {
    const char *d = tiny();
    for (int i = 0; i < 10; i++) {
        lcmt_model *m = open_model(d, "model.bin");
        lcmt_bundle *b = open_bundle(m, d);
        lcmt_session *s = NULL;
        cr_assert_eq(lcmt_session_new(m, b, i % 2 ? "t2" : "t1", NULL, &s, msg, sizeof msg), LCMT_OK, "%s", msg);
        idbuf ids;
        char *a = answer(s, "say red cat", &ids);
        free(a);
        cr_assert_eq(lcmt_session_set_task(s, i % 2 ? "t1" : "t2"), LCMT_OK);
        lcmt_session_free(s);
        lcmt_bundle_free(b);
        lcmt_model_free(m);
    }
    lcmt_session_free(NULL), lcmt_bundle_free(NULL), lcmt_model_free(NULL);
}

/* ---- the link line ----------------------------------------------------------------------- */

Test(runtime, shared_library_needs_only_libc_libm_pthread_cjson_libcrypto) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "readelf -d '%s/liblcmt_runtime.so' 2>&1", LC_BINARY_DIR);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "readelf failed (binutils missing?): %s", out);
    int n = 0, libc = 0;
    for (char *p = strstr(out, "(NEEDED)"); p; p = strstr(p + 1, "(NEEDED)")) {
        char lib[256] = "";
        char *l = strchr(p, '[');
        cr_assert_not_null(l);
        sscanf(l + 1, "%255[^]]", lib);
        n++;
        libc |= !strncmp(lib, "libc.so", 7);
        int ok = !strncmp(lib, "libc.so", 7) || !strncmp(lib, "libm.so", 7) || !strncmp(lib, "libpthread.so", 13) ||
                 !strncmp(lib, "libcjson.so", 11) || !strncmp(lib, "ld-linux", 8) ||
                 !strncmp(lib, "libcrypto.so", 12); /* the SHA-256 pins (LCMT_SHA256) */
#ifdef LC_SANITIZED /* the -DLC_SANITIZE=ON build links the sanitizers' runtimes into everything */
        ok |= !strncmp(lib, "libasan.so", 10) || !strncmp(lib, "libubsan.so", 11);
#endif
        cr_assert(ok, "liblcmt_runtime.so needs %s", lib);
    }
    cr_assert(n > 0 && libc, "no NEEDED entries read: %s", out);
    free(out);
}

/* ---- aarch64: the cross-built runtime under qemu-user computes what x86-64 does ------- */

/* Bound on the logits: max |aarch64 - x86| <= LOGIT_BOUND * max(1, max |x86|).
 * The two builds vectorise and contract (FMA) differently, so float32 sums
 * differ in their last bits; measured on stories260K: 4.9e-6 absolute for
 * logits up to 17.8 (2.7e-7 relative). Greedy ids must be identical. */
#define LOGIT_BOUND 1e-4

static void compare_arch(const char *aarch64_dir, const char *model, const char *bundle, const char *task,
                         const char *input) {
    char args[4096], cmd[8192];
    snprintf(args, sizeof args, "'%s' '%s' '%s' '%s' 24", model, bundle, task, input);
    snprintf(cmd, sizeof cmd, "%s %s", tu_bin("lcmt_check"), args);
    char *x86 = run(cmd);
    snprintf(cmd, sizeof cmd, "qemu-aarch64 -L /usr/aarch64-linux-gnu '%s/bin/lcmt_check' %s", aarch64_dir, args);
    char *arm = run(cmd);
    char *xl = strchr(x86, '\n'), *al = strchr(arm, '\n');
    cr_assert(xl && al, "lcmt_check printed no logits");
    *xl++ = 0, *al++ = 0;
    cr_assert(x86[0], "no ids generated for %s", args);
    cr_assert_str_eq(arm, x86, "%s: greedy ids differ between aarch64 and x86-64", args);
    double maxd = 0, maxv = 1;
    int n = 0;
    char *px = xl, *pa = al, *e;
    for (;;) {
        double a = strtod(px, &e);
        if (e == px) break;
        px = e;
        double b = strtod(pa, &e);
        cr_assert_neq(e, pa, "the aarch64 build printed fewer logits");
        pa = e;
        if (fabs(a - b) > maxd) maxd = fabs(a - b);
        if (fabs(a) > maxv) maxv = fabs(a);
        n++;
    }
    cr_assert(n > 100, "only %d logits", n);
    cr_assert(maxd <= LOGIT_BOUND * maxv, "%s: logits differ by %g (bound %g)", args, maxd, LOGIT_BOUND * maxv);
    cr_log_info("%s: %d logits, max |diff| %g, max |logit| %g", args, n, maxd, maxv);
    free(x86), free(arm);
}

/* Fails (not skips) when the cross tools are missing: the device build is
 * part of the contract. */
Test(runtime_aarch64, greedy_ids_and_logits_equal_x86, .timeout = 600) {
    const char *d = tiny();
    char cmd[4096], out[1200], p[1200], b[1200];
    snprintf(out, sizeof out, "%s/aarch64", LC_BINARY_DIR);
    snprintf(cmd, sizeof cmd, "'%s/scripts/build_aarch64.sh' '%s' >/dev/null", LC_SOURCE_DIR, out);
    cr_assert_eq(tu_system(cmd), 0, "scripts/build_aarch64.sh failed (see its message above; %s.log)", out);
    snprintf(p, sizeof p, "%s/model.bin", d);
    snprintf(b, sizeof b, "%s/b.lcb", d);
    compare_arch(out, p, b, "t1", "say red blue");
    compare_arch(out, p, b, "t2", "say cat moon");
    const char *s = stories();
    if (!s) {
        cr_log_warn("SKIP (stories260K part): ../shared/assets not found next to the checkout");
        return;
    }
    snprintf(p, sizeof p, "%s/model.bin", s);
    snprintf(b, sizeof b, "%s/b.lcb", s);
    compare_arch(out, p, "-", "-", "Once upon a time");
    compare_arch(out, p, b, "t1", "say red blue");
}
