/* The plan API (calibrate/lib/calib_plan.h) without the `calibrate` binary.
 *
 * calib_plan_open with load = 0 reads and checks a job config without the
 * model or any adapter file, and calib_plan_print lists, one JSON object per
 * line, the adapters the selection needs and the jobs in run order: their
 * number, task, family, method, type, Shared-LC flag and folder, and a
 * selected Shared LC pulls in the adapters of its whole family. Bad configs
 * (a missing key, a wrong type, an unknown method, a bad second-pass
 * template) fail with LC_FAIL and a message naming the key.
 *
 * One test runs a multi_step job on a tiny random model: the second pass's
 * prompt is rendered by the shared template renderer (template.h), so "{{"
 * and "}}" in multi_step.second_prompt_template are literal braces. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib_plan.h"
#include "loaders.h"
#include "model.h"
#include "template.h"
#include "testutil.h"
#include "tiny_model.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *write_cfg(const char *dir, const char *name, const char *text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0, "cannot write %s", path);
    return path;
}

static calib_plan *open_ok(const char *path, const char *only, const char *tasks) {
    calib_plan_opts o = {.only = only, .tasks = tasks, .load = 0};
    calib_plan *p = NULL;
    lc_err err = {{0}};
    int rc = calib_plan_open(&p, path, &o, &err);
    cr_assert_eq(rc, LC_OK, "calib_plan_open(%s, only=%s, tasks=%s): %s", path, only ? only : "-",
                 tasks ? tasks : "-", err.msg);
    cr_assert_not_null(p);
    return p;
}

/* calib_plan_print into memory: the plan's lines as a malloc'd string */
static char *plan_text(const calib_plan *p) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert_not_null(f);
    lc_err err = {{0}};
    int rc = calib_plan_print(p, f, &err);
    fclose(f);
    cr_assert_eq(rc, LC_OK, "calib_plan_print: %s", err.msg);
    cr_assert_not_null(buf);
    return buf;
}

/* The plan's lines parsed: the adapter names (in order, comma-joined) and
 * the job objects (a cJSON array). */
typedef struct {
    char adapters[1024];
    cJSON *jobs;
} plan_lines;

static plan_lines parse_plan(const char *text) {
    plan_lines pl = {"", cJSON_CreateArray()};
    int in_jobs = 0;
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        cr_assert_not_null(e, "the plan's last line has no newline:\n%s", text);
        char *line = strndup(l, (size_t)(e - l));
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j, "plan line is not JSON: '%s'", line);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "adapter");
        if (cJSON_IsString(a)) {
            cr_assert(!in_jobs, "adapter line after the jobs: '%s'", line);
            cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "path")), "'%s'", line);
            size_t n = strlen(pl.adapters);
            snprintf(pl.adapters + n, sizeof pl.adapters - n, "%s%s", n ? "," : "", a->valuestring);
            cJSON_Delete(j);
        } else {
            cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "job")), "neither adapter nor job: '%s'",
                      line);
            in_jobs = 1;
            cJSON_AddItemToArray(pl.jobs, j);
        }
        free(line);
        l = e + 1;
    }
    return pl;
}

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    cr_assert(cJSON_IsString(v), "key '%s' missing or not a string", k);
    return v->valuestring;
}

/* ---- a config that needs no files --------------------------------------------- */

/* Three tasks: two of family "tone" (Shared LC trains on both), one of its
 * own family; four methods. No file it names exists: load = 0 reads none. */
static const char *PLAN_CFG =
    "{\"model\": \"no-model.bin\", \"tokenizer\": \"no-tok.bin\", \"output_dir\": \"out\",\n"
    " \"adapters\": [{\"name\": \"summ\", \"path\": \"lora-summ\"}, {\"name\": \"formal\", \"path\": \"lora-formal\"},\n"
    "              {\"name\": \"casual\", \"path\": \"lora-casual\"}, {\"name\": \"es\", \"path\": \"lora-es\"}],\n"
    " \"tasks\": [\n"
    "  {\"name\": \"summary+formal\", \"family\": \"tone\", \"adapters\": [\"summ\", \"formal\"],\n"
    "   \"data\": {\"train\": \"tr.jsonl\", \"test\": \"te.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\"},\n"
    "   \"multi_step\": {\"first_prompt_template\": \"{q}\\nSummary:\", \"second_prompt_template\": \"{output}\\nFormal:\"}},\n"
    "  {\"name\": \"summary+casual\", \"family\": \"tone\", \"adapters\": [\"summ\", \"casual\"],\n"
    "   \"data\": {\"train\": \"tr.jsonl\", \"test\": \"te.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\"}},\n"
    "  {\"name\": \"summary+es\", \"adapters\": [\"summ\", \"es\"],\n"
    "   \"data\": {\"train\": \"tr.jsonl\", \"test\": \"te.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\"}}],\n"
    " \"methods\": [{\"name\": \"zero-shot\", \"type\": \"zero_shot\"},\n"
    "             {\"name\": \"linear\", \"type\": \"merge\", \"merge\": {\"method\": \"linear\"}},\n"
    "             {\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"bias\"}},\n"
    "             {\"name\": \"Shared LC\", \"type\": \"calibrate\", \"shared\": true, \"calibration\": {\"kind\": \"bias\"}}],\n"
    " \"training\": {\"steps\": 2, \"batch_size\": 2}}\n";

Test(calib_plan, lists_every_job_in_config_order) {
    const char *dir = tu_tmpdir();
    const char *path = write_cfg(dir, "plan.json", PLAN_CFG);
    calib_plan *p = open_ok(path, NULL, NULL);
    cr_assert_eq(calib_plan_n_jobs(p), 12, "3 tasks x 4 methods, found %d jobs", calib_plan_n_jobs(p));
    char *text = plan_text(p);
    plan_lines pl = parse_plan(text);
    cr_assert_str_eq(pl.adapters, "summ,formal,casual,es", "plan:\n%s", text);
    cr_assert_eq(cJSON_GetArraySize(pl.jobs), 12, "plan:\n%s", text);
    const char *tasks[3] = {"summary+formal", "summary+casual", "summary+es"};
    const char *families[3] = {"tone", "tone", "summary+es"}; /* no family: the task's name */
    const char *methods[4] = {"zero-shot", "linear", "LC", "Shared LC"};
    const char *slugs[4] = {"zero-shot", "linear", "LC", "Shared_LC"};
    const char *types[4] = {"zero_shot", "merge", "calibrate", "calibrate"};
    for (int k = 0; k < 12; k++) { /* task-major, in config order */
        const cJSON *j = cJSON_GetArrayItem(pl.jobs, k);
        int ti = k / 4, mi = k % 4;
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "job")->valueint, k + 1);
        cr_assert_str_eq(jstr(j, "task"), tasks[ti]);
        cr_assert_str_eq(jstr(j, "family"), families[ti]);
        cr_assert_str_eq(jstr(j, "method"), methods[mi]);
        cr_assert_str_eq(jstr(j, "type"), types[mi]);
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shared");
        cr_assert(cJSON_IsBool(sh) && !!cJSON_IsTrue(sh) == (mi == 3), "job %d: shared flag", k + 1);
        char want[2048];
        snprintf(want, sizeof want, "%s/out/%s/%s", dir, tasks[ti], slugs[mi]);
        cr_assert_str_eq(jstr(j, "dir"), want, "job %d's folder", k + 1);
    }
    cJSON_Delete(pl.jobs);
    free(text);
    calib_plan_free(p);
}

/* The adapters a selection needs: a selected Shared LC trains on every task
 * of the selected task's family, so their adapters too; others only their own. */
static void expect_selection(const char *path, const char *only, const char *tasks, int n_jobs,
                             const char *adapters, const char *first_job_method) {
    calib_plan *p = open_ok(path, only, tasks);
    cr_assert_eq(calib_plan_n_jobs(p), n_jobs, "only=%s tasks=%s", only, tasks);
    char *text = plan_text(p);
    plan_lines pl = parse_plan(text);
    cr_assert_str_eq(pl.adapters, adapters, "only=%s tasks=%s: plan:\n%s", only, tasks, text);
    cr_assert_eq(cJSON_GetArraySize(pl.jobs), n_jobs, "plan:\n%s", text);
    for (int k = 0; k < n_jobs; k++) {
        const cJSON *j = cJSON_GetArrayItem(pl.jobs, k);
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "job")->valueint, k + 1, "jobs are numbered 1..n");
    }
    cr_assert_str_eq(jstr(cJSON_GetArrayItem(pl.jobs, 0), "method"), first_job_method);
    cJSON_Delete(pl.jobs);
    free(text);
    calib_plan_free(p);
}

Test(calib_plan, shared_lc_selects_the_family_units) {
    const char *path = write_cfg(tu_tmpdir(), "plan.json", PLAN_CFG);
    /* Shared LC on one task of "tone": the casual task's adapter is needed too */
    expect_selection(path, "Shared LC", "summary+formal", 1, "summ,formal,casual", "Shared LC");
    /* the per-task LC: only the task's own adapters */
    expect_selection(path, "LC", "summary+formal", 1, "summ,formal", "LC");
    /* a family of one */
    expect_selection(path, "Shared LC", "summary+es", 1, "summ,es", "Shared LC");
    /* two tasks, two methods, one of them shared: the union, 4 jobs */
    expect_selection(path, "zero-shot,Shared LC", "summary+formal,summary+es", 4, "summ,formal,casual,es",
                     "zero-shot");
    /* all methods on the other task of "tone": Shared LC among them, so the whole family */
    expect_selection(path, NULL, "summary+casual", 4, "summ,formal,casual", "zero-shot");
}

Test(calib_plan, a_selection_of_no_job_fails) {
    const char *path = write_cfg(tu_tmpdir(), "plan.json", PLAN_CFG);
    const char *sel[3][2] = {{NULL, "no-such-task"}, {"no-such-method", NULL}, {"LC", ""}};
    for (int k = 0; k < 3; k++) {
        calib_plan_opts o = {.only = sel[k][0], .tasks = sel[k][1]};
        calib_plan *p = (calib_plan *)1;
        lc_err err = {{0}};
        cr_assert_eq(calib_plan_open(&p, path, &o, &err), LC_FAIL, "selection %d accepted", k);
        cr_assert_null(p);
        cr_assert(strstr(err.msg, "select no job"), "selection %d: %s", k, err.msg);
    }
}

/* The committed benchmark config, as scripts/benchmark.sh reads it with
 * `calibrate --plan`: every task x method once, with no file read. */
Test(calib_plan, benchmark_config_lists_every_unit_once) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/benchmark/stories260k/calibrate.json", tu_source_dir());
    lc_err err;
    char *raw = lc_read_file(path, NULL, &err);
    cr_assert_not_null(raw, "%s", err.msg);
    cJSON *cfgj = cJSON_Parse(raw);
    free(raw);
    cr_assert_not_null(cfgj);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(cfgj, "tasks");
    const cJSON *methods = cJSON_GetObjectItemCaseSensitive(cfgj, "methods");
    int nt = cJSON_GetArraySize(tasks), nm = cJSON_GetArraySize(methods);
    cr_assert(nt > 1 && nm > 1);
    calib_plan *p = open_ok(path, NULL, NULL);
    cr_assert_eq(calib_plan_n_jobs(p), nt * nm);
    char *text = plan_text(p);
    plan_lines pl = parse_plan(text);
    cr_assert_eq(cJSON_GetArraySize(pl.jobs), nt * nm);
    for (int k = 0; k < nt * nm; k++) { /* every (task, method) once, in config order */
        const cJSON *j = cJSON_GetArrayItem(pl.jobs, k);
        const cJSON *t = cJSON_GetArrayItem(tasks, k / nm), *m = cJSON_GetArrayItem(methods, k % nm);
        cr_assert_str_eq(jstr(j, "task"), jstr(t, "name"));
        cr_assert_str_eq(jstr(j, "method"), jstr(m, "name"));
        cr_assert_str_eq(jstr(j, "family"), jstr(t, "family"));
    }
    cJSON_Delete(pl.jobs);
    free(text);
    calib_plan_free(p);
    /* Shared LC on one task of summary+translate: its family's translation LoRAs */
    p = open_ok(path, "Shared LC", "summary+es");
    text = plan_text(p);
    pl = parse_plan(text);
    cr_assert_str_eq(pl.adapters, "summarize,translate-es,translate-ca,translate-fr", "%s", text);
    cr_assert_eq(cJSON_GetArraySize(pl.jobs), 1);
    const cJSON *j = cJSON_GetArrayItem(pl.jobs, 0);
    cr_assert_str_eq(jstr(j, "family"), "summary+translate");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "shared")));
    cJSON_Delete(pl.jobs);
    free(text);
    calib_plan_free(p);
    cJSON_Delete(cfgj);
}

/* ---- bad configs --------------------------------------------------------------- */

/* One task, one method; the parts are substituted. */
static void cfg_text(char *out, size_t cap, const char *top, const char *task_data, const char *multi,
                     const char *methods) {
    snprintf(out, cap,
             "{\"model\": \"m.bin\", %s\n"
             " \"adapters\": [{\"name\": \"a\", \"path\": \"la\"}, {\"name\": \"b\", \"path\": \"lb\"}],\n"
             " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"b\"], \"data\": {%s}%s}],\n"
             " \"methods\": %s}\n",
             top, task_data, multi, methods);
}

#define TOP "\"output_dir\": \"out\","
#define DATA "\"test\": \"te.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\""
#define ZS "[{\"name\": \"z\", \"type\": \"zero_shot\"}]"
#define MS(tpl) ", \"multi_step\": {\"first_prompt_template\": \"{q}\", \"second_prompt_template\": \"" tpl "\"}"

static void expect_bad(const char *text, const char *needle) {
    const char *dir = tu_tmpdir();
    const char *path = write_cfg(dir, "bad.json", text);
    calib_plan_opts o = {.load = 0};
    calib_plan *p = (calib_plan *)1;
    lc_err err = {{0}};
    int rc = calib_plan_open(&p, path, &o, &err);
    cr_assert_eq(rc, LC_FAIL, "a bad config was accepted (expected '%s'):\n%s", needle, text);
    cr_assert_null(p, "a failed open left a plan");
    cr_assert(strstr(err.msg, needle), "expected '%s' in the message, got: %s", needle, err.msg);
    cr_assert(strstr(err.msg, path), "the message does not name the config file: %s", err.msg);
    fprintf(stderr, "calib_plan bad config: %s\n", err.msg);
}

static void expect_good(const char *text) {
    const char *path = write_cfg(tu_tmpdir(), "good.json", text);
    calib_plan_free(open_ok(path, NULL, NULL));
}

Test(calib_plan_bad, missing_key) {
    char t[4096];
    cfg_text(t, sizeof t, TOP, "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\"", "", ZS);
    expect_bad(t, "key 'tasks[0].data.test': missing");
    cfg_text(t, sizeof t, "", DATA, "", ZS);
    expect_bad(t, "key 'output_dir': missing");
    cfg_text(t, sizeof t, TOP, DATA, "", "[{\"name\": \"z\"}]");
    expect_bad(t, "key 'methods[0].type': missing");
    cfg_text(t, sizeof t, TOP, DATA, "", "[{\"name\": \"c\", \"type\": \"calibrate\"}]");
    expect_bad(t, "key 'methods[0].calibration.kind': missing");
}

Test(calib_plan_bad, wrong_type) {
    char t[4096];
    cfg_text(t, sizeof t, TOP, DATA ", \"max_len\": \"32\"", "", ZS);
    expect_bad(t, "key 'tasks[0].data.max_len': expected");
    cfg_text(t, sizeof t, "\"output_dir\": 7,", DATA, "", ZS);
    expect_bad(t, "key 'output_dir': expected");
    cfg_text(t, sizeof t, TOP, DATA, "", "{\"name\": \"z\", \"type\": \"zero_shot\"}");
    expect_bad(t, "key 'methods'");
    cfg_text(t, sizeof t, TOP, DATA, "",
             "[{\"name\": \"c\", \"type\": \"calibrate\", \"shared\": \"yes\", \"calibration\": {\"kind\": \"bias\"}}]");
    expect_bad(t, "key 'methods[0].shared': expected");
}

Test(calib_plan_bad, unknown_method) {
    char t[4096];
    cfg_text(t, sizeof t, TOP, DATA, "", "[{\"name\": \"m\", \"type\": \"magic\"}]");
    expect_bad(t, "key 'methods[0].type': expected one of");
    cfg_text(t, sizeof t, TOP, DATA, "", "[{\"name\": \"m\", \"type\": \"merge\", \"merge\": {\"method\": \"average\"}}]");
    expect_bad(t, "key 'methods[0].merge.method'");
    cfg_text(t, sizeof t, TOP, DATA, "", "[{\"name\": \"m\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"huge\"}}]");
    expect_bad(t, "key 'methods[0].calibration.kind'");
}

Test(calib_plan_bad, unknown_key_and_unknown_adapter) {
    char t[4096];
    cfg_text(t, sizeof t, TOP " \"generaton\": {},", DATA, "", ZS);
    expect_bad(t, "unknown key 'generaton'");
    snprintf(t, sizeof t,
             "{\"model\": \"m.bin\", \"output_dir\": \"out\", \"adapters\": [{\"name\": \"a\", \"path\": \"la\"}],\n"
             " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"zz\"], \"data\": {" DATA "}}], \"methods\": " ZS "}");
    expect_bad(t, "key 'tasks[0].adapters[1]': no adapter named 'zz'");
    expect_bad("{\"model\": \"m.bin\", \"output_dir\": ", "invalid JSON");
}

/* multi_step.second_prompt_template follows the shared template rule with
 * {output} as its only placeholder; the errors name the key. */
Test(calib_plan_bad, second_prompt_template) {
    char t[4096];
    const char *K = "key 'tasks[0].multi_step.second_prompt_template'";
    char want[256];
    cfg_text(t, sizeof t, TOP, DATA, MS("Formal:"), ZS);
    expect_bad(t, K);
    expect_bad(t, "must contain {output}");
    cfg_text(t, sizeof t, TOP, DATA, MS("{{output}}"), ZS); /* literal braces: no placeholder */
    expect_bad(t, "must contain {output}");
    cfg_text(t, sizeof t, TOP, DATA, MS("{output} {answer}"), ZS);
    snprintf(want, sizeof want, "%s: unknown placeholder '{answer}'", K);
    expect_bad(t, want);
    cfg_text(t, sizeof t, TOP, DATA, MS("{output} }"), ZS);
    expect_bad(t, "unmatched '}'");
    expect_bad(t, K);
    cfg_text(t, sizeof t, TOP, DATA, MS("{output} {x"), ZS);
    expect_bad(t, "unclosed '{'");
    /* accepted: {output} with literal braces, twice */
    cfg_text(t, sizeof t, TOP, DATA, MS("{output} {{x}} }}"), ZS);
    expect_good(t);
    cfg_text(t, sizeof t, TOP, DATA, MS("{output}\\n{output}\\nFormal:"), ZS);
    expect_good(t);
}

/* ---- a multi-step job on a tiny model -------------------------------------------- */

/* A tiny random llama2.c model, a byte tokenizer, two PEFT LoRAs and a test set. */
static void tiny_files(const char *dir) {
    const model_config c = tiny_config(2);
    char p[1024];
    tiny_write_model(dir, &c);
    tiny_write_lora(dir, "lora0", &c, 2, 10);
    tiny_write_lora(dir, "lora1", &c, 2, 11);
    snprintf(p, sizeof p, "%s/test.jsonl", dir);
    const char *rows = "{\"q\": \"hello\", \"a\": \"world\"}\n{\"q\": \"good\", \"a\": \"day\"}\n"
                       "{\"q\": \"{{x}}\", \"a\": \"}\"}\n";
    cr_assert_eq(tu_write_file(p, rows, strlen(rows)), 0);
}

static cJSON *read_jsonl(const char *path) {
    lc_err err;
    char *text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cJSON *arr = cJSON_CreateArray();
    for (char *l = text; *l;) {
        char *e = strchr(l, '\n');
        if (e) *e = 0;
        cJSON *j = cJSON_Parse(l);
        cr_assert_not_null(j, "%s: not JSON lines", path);
        cJSON_AddItemToArray(arr, j);
        if (!e) break;
        l = e + 1;
    }
    free(text);
    return arr;
}

/* The second pass's prompt is the shared renderer's (tmpl_fill_one) of the
 * template with pass 1's answer: "{{" and "}}" become "{" and "}", every
 * {output} the answer, the answer itself taken verbatim. */
Test(calib_plan_run, multi_step_second_prompt_uses_the_shared_renderer, .timeout = 60) {
    const char *dir = tu_tmpdir();
    tiny_files(dir);
    /* the shared renderer makes "{x} A }{output} A" of it, A being pass 1's answer */
    const char *tpl_json = "{{x}} {output} }}{{output}} {output}";
    char text[4096];
    snprintf(text, sizeof text,
             "{\"model\": \"model.bin\", \"tokenizer\": \"tok259.bin\", \"output_dir\": \"out\",\n"
             " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}],\n"
             " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"b\"],\n"
             "   \"data\": {\"test\": \"test.jsonl\", \"prompt_template\": \"{q}\", \"target_template\": \" {a}\", \"max_len\": 32},\n"
             "   \"multi_step\": {\"first_prompt_template\": \"Q {q}:\", \"second_prompt_template\": \"%s\"}}],\n"
             " \"methods\": [{\"name\": \"ms\", \"type\": \"multi_step\"}],\n"
             " \"generation\": {\"max_new_tokens\": 4}}\n",
             tpl_json);
    const char *path = write_cfg(dir, "ms.json", text);
    calib_plan_opts o = {.load = 1, .no_summary = 1};
    calib_plan *p = NULL;
    lc_err err = {{0}};
    cr_assert_eq(calib_plan_open(&p, path, &o, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(calib_plan_n_jobs(p), 1);
    cr_assert_eq(calib_plan_run(p, &err), LC_OK, "%s", err.msg);
    calib_plan_free(p);
    char p1[1024], p2[1024];
    snprintf(p1, sizeof p1, "%s/out/t/ms/first-pass/predictions.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/out/t/ms/predictions.jsonl", dir);
    cJSON *first = read_jsonl(p1), *second = read_jsonl(p2);
    cr_assert_eq(cJSON_GetArraySize(first), 3);
    cr_assert_eq(cJSON_GetArraySize(second), 3);
    for (int i = 0; i < 3; i++) {
        const cJSON *f = cJSON_GetArrayItem(first, i), *s = cJSON_GetArrayItem(second, i);
        const char *answer = jstr(f, "prediction"), *prompt = jstr(s, "prompt");
        /* the first pass used the data set's renderer: "{{x}}" in the row is data, kept */
        if (i == 2) cr_assert_str_eq(jstr(f, "prompt"), "Q {{x}}:");
        char *want = NULL;
        cr_assert_eq(tmpl_fill_one(tpl_json, answer, "second", &want, &err), LC_OK, "%s", err.msg);
        char spelled[1024];
        snprintf(spelled, sizeof spelled, "{x} %s }{output} %s", answer, answer);
        cr_assert_str_eq(want, spelled, "tmpl_fill_one itself");
        cr_assert_str_eq(prompt, want, "row %d: second-pass prompt '%s', the shared renderer gives '%s'", i,
                         prompt, want);
        cr_assert_null(strstr(prompt, "{{"), "row %d: '{{' left in the second-pass prompt: '%s'", i, prompt);
        free(want);
    }
    cJSON_Delete(first);
    cJSON_Delete(second);
}
