/* calib_plan.c: see calib_plan.h. A plan is the parsed job config: the
 * adapters, the tasks and the methods; running it runs every selected
 * (task, method) job in config order and writes the run summary. */
#include "calib_plan.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmaes.h"
#include "config.h"
#include "dataset.h"
#include "evaluation.h"
#include "job.h"
#include "loaders.h"
#include "merge.h"
#include "recipe.h"
#include "model.h"
#include "template.h"
#include "tokenizer.h"
#include "trainer.h"

#include "lc_time.h"

#define MAX_ADAPTERS 64
#define MAX_TASKS 64
#define MAX_METHODS 64

/* ---- config model ---------------------------------------------------------- */

typedef struct {
    char name[64];
    char *path;
    lora l;
} adapter_entry;

typedef struct {
    char name[64], family[64];
    char slug[64], family_slug[64]; /* their folder names (lc_slugify) */
    int ad[ADAPTER_MAX]; /* indices into the adapter table */
    int n_ad;
    int main_i, aux_i; /* indices into the adapter table */
    const char *metric; /* table metric: rougeL | weighted_rouge | chrf */
    dataset train, val, test;
    int have_train, have_val;
    char *test_path, *train_path, *val_path;
    const char *ptpl, *ttpl, *first_tpl, *second_tpl;
    int max_len, bad_row, max_test, max_train, max_val, add_bos;
    int pkind, have_pfmt;  /* data.prompt_format */
    const char *system;    /* data.system */
    prompt_format pfmt;
    char *joint_path;
} task_entry;

typedef enum {
    M_ZERO_SHOT = 0, M_MAIN_LORA, M_AUX_LORA, M_MULTI_STEP, M_JOINT, M_MERGE, M_CALIBRATE
} method_type;
static const char *const TYPE_NAMES[] = {"zero_shot", "main_lora", "aux_lora", "multi_step",
                                         "joint_expert", "merge", "calibrate", NULL};

typedef struct {
    char name[64], slug[64];
    method_type type;
    merge_spec merge;
    int n_weights; /* weights given in the config (0 = all 1) */
    int hub_examples, hub_budget;
    double hub_alpha, hub_sigma;
    calib_kind ckind;
    int crank, per_layer, shared;
    unsigned cmask;
    long long cseed;
} method_entry;

typedef struct {
    const char *cfg_path;
    cfg *c;
    model base;
    tokenizer *tok;
    int pad;
    adapter_entry adapters[MAX_ADAPTERS];
    int n_adapters;
    task_entry tasks[MAX_TASKS];
    int n_tasks;
    method_entry methods[MAX_METHODS];
    int n_methods;
    train_opts topt;
    gen_opts gen;
    rouge_opts ro;
    char *out_dir;
    int resume;
    const lc_dist *dist; /* NULL: one process */
    int writer;          /* rank 0: writes files and reports */
    /* progress */
    int job, n_jobs;
    double t0;
} ctx_t;



static int find_adapter(const ctx_t *x, const char *name) {
    for (int i = 0; i < x->n_adapters; i++)
        if (!strcmp(x->adapters[i].name, name)) return i;
    return -1;
}

static const char *const CALIB_KIND_NAMES[] = {"bias", "lowrank", NULL};
static const char *const METRIC_NAMES[] = {"rougeL", "weighted_rouge", "chrf", NULL};

static int parse_adapters(ctx_t *x, lc_err *err) {
    cfg *c = x->c;
    int n = cfg_array_len(c, "adapters", err);
    if (n < 0) return LC_FAIL;
    if (n == 0) return lc_errf(err, "%s: key 'adapters': required (the single-task LoRAs)", x->cfg_path);
    if (n > MAX_ADAPTERS) return lc_errf(err, "%s: key 'adapters': at most %d", x->cfg_path, MAX_ADAPTERS);
    char key[96];
    for (int i = 0; i < n; i++) {
        const char *name, *path;
        snprintf(key, sizeof key, "adapters[%d].name", i);
        if (cfg_string(c, key, 1, NULL, &name, err)) return LC_FAIL;
        snprintf(key, sizeof key, "adapters[%d].path", i);
        if (cfg_string(c, key, 1, NULL, &path, err)) return LC_FAIL;
        if (find_adapter(x, name) >= 0)
            return lc_errf(err, "%s: key 'adapters[%d].name': '%s' is used twice", x->cfg_path, i, name);
        adapter_entry *a = &x->adapters[x->n_adapters++];
        snprintf(a->name, sizeof a->name, "%s", name);
        a->path = cfg_resolve_path(c, path);
        /* recipes record absolute paths, so `export` works from any folder */
        char *abs = a->path ? realpath(a->path, NULL) : NULL;
        if (abs) {
            free(a->path);
            a->path = abs;
        }
    }
    return LC_OK;
}

/* multi_step.second_prompt_template: the shared template rule (template.h:
 * "{{" and "}}" are literal braces), with {output}, pass 1's answer, as its
 * one placeholder. */
static int check_second_tpl(const char *src, lc_err *err) {
    tmpl tp;
    if (tmpl_parse(&tp, src, "template", err)) return LC_FAIL;
    int n_out = 0, rc = LC_OK;
    for (int k = 0; k < tp.n && rc == LC_OK; k++) {
        if (!tp.seg[k].is_field) continue;
        if (strcmp(tp.seg[k].s, "output"))
            rc = lc_errf(err, "unknown placeholder '{%s}' (the only one is {output}, the first pass's "
                         "answer; write '{{' and '}}' for literal braces)", tp.seg[k].s);
        n_out++;
    }
    tmpl_free(&tp);
    if (rc == LC_OK && !n_out) rc = lc_errf(err, "must contain {output} (the first pass's answer)");
    return rc;
}

static int parse_tasks(ctx_t *x, lc_err *err) {
    cfg *c = x->c;
    int n = cfg_array_len(c, "tasks", err);
    if (n < 0) return LC_FAIL;
    if (n == 0) return lc_errf(err, "%s: key 'tasks': required (the compositional tasks)", x->cfg_path);
    if (n > MAX_TASKS) return lc_errf(err, "%s: key 'tasks': at most %d", x->cfg_path, MAX_TASKS);
    char key[128];
#define K(fmt) (snprintf(key, sizeof key, "tasks[%d]." fmt, i), key)
    for (int i = 0; i < n; i++) {
        task_entry *t = &x->tasks[x->n_tasks++];
        const char *name, *family, *s_train, *s_val, *s_test, *s_joint, *s_main, *s_aux;
        const char **names = NULL;
        int nn = 0, metric;
        if (cfg_string(c, K("name"), 1, NULL, &name, err) ||
            cfg_string(c, K("family"), 0, NULL, &family, err) ||
            cfg_string_list(c, K("adapters"), 1, &names, &nn, err))
            return LC_FAIL;
        if (strlen(name) >= sizeof t->name || (family && strlen(family) >= sizeof t->family)) {
            free(names);
            return lc_errf(err, "%s: key 'tasks[%d].%s': at most %zu bytes", x->cfg_path, i,
                           strlen(name) >= sizeof t->name ? "name" : "family", sizeof t->name - 1);
        }
        snprintf(t->name, sizeof t->name, "%s", name);
        snprintf(t->family, sizeof t->family, "%s", family ? family : name);
        lc_slugify(t->slug, sizeof t->slug, t->name);
        lc_slugify(t->family_slug, sizeof t->family_slug, t->family);
        for (int j = 0; j < i; j++) {
            if (!strcmp(x->tasks[j].name, name)) {
                free(names);
                return lc_errf(err, "%s: key 'tasks[%d].name': '%s' is used twice", x->cfg_path, i, name);
            }
            if (!strcmp(x->tasks[j].slug, t->slug)) {
                free(names);
                return lc_errf(err, "%s: key 'tasks[%d].name': '%s' and task %d ('%s') have the same folder "
                               "name '%s'", x->cfg_path, i, name, j, x->tasks[j].name, t->slug);
            }
            if (strcmp(x->tasks[j].family, t->family) && !strcmp(x->tasks[j].family_slug, t->family_slug)) {
                free(names);
                return lc_errf(err, "%s: key 'tasks[%d].family': '%s' and '%s' have the same folder name '%s'",
                               x->cfg_path, i, t->family, x->tasks[j].family, t->family_slug);
            }
        }
        if (nn < 1 || nn > ADAPTER_MAX) {
            free(names);
            return lc_errf(err, "%s: key 'tasks[%d].adapters': 1 to %d adapter names", x->cfg_path, i, ADAPTER_MAX);
        }
        for (int j = 0; j < nn; j++) {
            int k = find_adapter(x, names[j]);
            if (k < 0) {
                lc_errf(err, "%s: key 'tasks[%d].adapters[%d]': no adapter named '%s' in 'adapters'",
                        x->cfg_path, i, j, names[j]);
                free(names);
                return LC_FAIL;
            }
            t->ad[t->n_ad++] = k;
        }
        free(names);
        if (cfg_string(c, K("main"), 0, NULL, &s_main, err) ||
            cfg_string(c, K("aux"), 0, NULL, &s_aux, err) ||
            cfg_enum(c, K("metric"), 0, 0, METRIC_NAMES, &metric, err) ||
            cfg_string(c, K("joint_expert"), 0, NULL, &s_joint, err) ||
            cfg_string(c, K("data.train"), 0, NULL, &s_train, err) ||
            cfg_string(c, K("data.validation"), 0, NULL, &s_val, err) ||
            cfg_string(c, K("data.test"), 1, NULL, &s_test, err) ||
            cfg_string(c, K("data.prompt_template"), 1, NULL, &t->ptpl, err) ||
            cfg_string(c, K("data.target_template"), 1, NULL, &t->ttpl, err) ||
            cfg_int(c, K("data.max_len"), 0, 256, &t->max_len, err) ||
            cfg_bool(c, K("data.add_bos"), 0, 1, &t->add_bos, err) ||
            cfg_enum(c, K("data.prompt_format"), 0, PROMPT_RAW, PROMPT_FORMAT_NAMES, &t->pkind, err) ||
            cfg_string(c, K("data.system"), 0, NULL, &t->system, err) ||
            cfg_enum(c, K("data.on_bad_row"), 0, 0, BAD_ROW_NAMES, &t->bad_row, err) ||
            cfg_int(c, K("data.max_train_examples"), 0, 0, &t->max_train, err) ||
            cfg_int(c, K("data.max_val_examples"), 0, 0, &t->max_val, err) ||
            cfg_int(c, K("data.max_test_examples"), 0, 0, &t->max_test, err) ||
            cfg_string(c, K("multi_step.first_prompt_template"), 0, NULL, &t->first_tpl, err) ||
            cfg_string(c, K("multi_step.second_prompt_template"), 0, NULL, &t->second_tpl, err))
            return LC_FAIL;
        t->metric = METRIC_NAMES[metric];
        t->main_i = t->ad[0];
        t->aux_i = t->n_ad > 1 ? t->ad[1] : -1;
        if (s_main && (t->main_i = find_adapter(x, s_main)) < 0)
            return lc_errf(err, "%s: key 'tasks[%d].main': no adapter named '%s'", x->cfg_path, i, s_main);
        if (s_aux && (t->aux_i = find_adapter(x, s_aux)) < 0)
            return lc_errf(err, "%s: key 'tasks[%d].aux': no adapter named '%s'", x->cfg_path, i, s_aux);
        if (t->second_tpl && check_second_tpl(t->second_tpl, err))
            return lc_err_prefix(err, "%s: key 'tasks[%d].multi_step.second_prompt_template': ", x->cfg_path, i);
        t->test_path = cfg_resolve_path(c, s_test);
        if (s_train) t->train_path = cfg_resolve_path(c, s_train);
        if (s_val) t->val_path = cfg_resolve_path(c, s_val);
        if (s_joint) t->joint_path = cfg_resolve_path(c, s_joint);
    }
#undef K
    return LC_OK;
}

static int parse_methods(ctx_t *x, lc_err *err) {
    cfg *c = x->c;
    int n = cfg_array_len(c, "methods", err);
    if (n < 0) return LC_FAIL;
    if (n == 0) return lc_errf(err, "%s: key 'methods': required", x->cfg_path);
    if (n > MAX_METHODS) return lc_errf(err, "%s: key 'methods': at most %d", x->cfg_path, MAX_METHODS);
    char key[128];
#define K(fmt) (snprintf(key, sizeof key, "methods[%d]." fmt, i), key)
    for (int i = 0; i < n; i++) {
        method_entry *me = &x->methods[x->n_methods++];
        const char *name;
        int type, mm, mean, kind;
        if (cfg_string(c, K("name"), 1, NULL, &name, err) ||
            cfg_enum(c, K("type"), 1, 0, TYPE_NAMES, &type, err))
            return LC_FAIL;
        if (strlen(name) >= sizeof me->name)
            return lc_errf(err, "%s: key 'methods[%d].name': at most %zu bytes", x->cfg_path, i,
                           sizeof me->name - 1);
        snprintf(me->name, sizeof me->name, "%s", name);
        lc_slugify(me->slug, sizeof me->slug, name);
        for (int j = 0; j < i; j++)
            if (!strcmp(x->methods[j].slug, me->slug))
                return lc_errf(err, "%s: key 'methods[%d].name': '%s' and method %d ('%s') have the same "
                               "folder name '%s'", x->cfg_path, i, name, j, x->methods[j].name, me->slug);
        me->type = type;
        int needs_merge = type == M_MERGE || type == M_CALIBRATE;
        if (!needs_merge) {
            if (cfg_has(c, K("merge")) || cfg_has(c, K("calibration")))
                return lc_errf(err, "%s: key 'methods[%d]': type '%s' takes no 'merge' or 'calibration'",
                               x->cfg_path, i, TYPE_NAMES[type]);
            continue;
        }
        long long seed;
        double *w = NULL;
        int nw = 0;
        if (cfg_enum(c, K("merge.method"), type == M_MERGE, MERGE_CONCAT, MERGE_NAMES, &mm, err))
            return LC_FAIL;
        merge_spec_default(&me->merge, (merge_method)mm);
        int svd_rank;
        if (cfg_float(c, K("merge.density"), 0, 1.0, &me->merge.density, err) ||
            cfg_float(c, K("merge.lambda"), 0, 1.0, &me->merge.lambda, err) ||
            cfg_enum(c, K("merge.ties_mean"), 0, 0, TIES_MEAN_NAMES, &mean, err) ||
            cfg_i64(c, K("merge.seed"), 0, 0, &seed, err) ||
            cfg_int(c, K("merge.svd_rank"), 0, 0, &svd_rank, err) ||
            cfg_float(c, K("merge.t"), 0, 0.5, &me->merge.t, err) ||
            cfg_int(c, K("merge.examples"), 0, 5, &me->hub_examples, err) ||
            cfg_int(c, K("merge.budget"), 0, 40, &me->hub_budget, err) ||
            cfg_float(c, K("merge.l1"), 0, 0.05, &me->hub_alpha, err) ||
            cfg_float(c, K("merge.sigma"), 0, 0.5, &me->hub_sigma, err))
            return LC_FAIL;
        if (cfg_float_list(c, K("merge.weights"), 0, &w, &nw, err)) return LC_FAIL;
        if (nw > ADAPTER_MAX) {
            free(w);
            return lc_errf(err, "%s: key 'methods[%d].merge.weights': at most %d weights", x->cfg_path,
                           i, ADAPTER_MAX);
        }
        for (int j = 0; j < nw; j++) me->merge.weights[j] = w[j];
        free(w);
        me->n_weights = nw;
        me->merge.mean = (ties_mean)mean;
        me->merge.seed = (uint64_t)seed;
        me->merge.svd_rank = svd_rank;
        if (me->hub_examples <= 0 || me->hub_budget <= 0 || !(me->hub_sigma > 0) || me->hub_alpha < 0)
            return lc_errf(err, "%s: key 'methods[%d].merge': examples, budget and sigma must be "
                           "positive and l1 >= 0", x->cfg_path, i);
        if (type == M_MERGE) {
            if (cfg_has(c, K("calibration")) || cfg_has(c, K("shared")))
                return lc_errf(err, "%s: key 'methods[%d]': type 'merge' takes no 'calibration' or "
                               "'shared' (use type 'calibrate')", x->cfg_path, i);
            continue;
        }
        const char **mods = NULL;
        int nmods = 0;
        if (cfg_enum(c, K("calibration.kind"), 1, 0, CALIB_KIND_NAMES, &kind, err) ||
            cfg_int(c, K("calibration.rank"), 0, 4, &me->crank, err) ||
            cfg_bool(c, K("calibration.per_layer"), 0, 0, &me->per_layer, err) ||
            cfg_i64(c, K("calibration.init_seed"), 0, 0, &me->cseed, err) ||
            cfg_string_list(c, K("calibration.modules"), 0, &mods, &nmods, err) ||
            cfg_bool(c, K("shared"), 0, 0, &me->shared, err)) {
            free(mods);
            return LC_FAIL;
        }
        me->ckind = kind;
        me->cmask = nmods ? 0 : MOD_MASK_ALL;
        for (int j = 0; j < nmods; j++) {
            int mo = module_parse(mods[j]);
            if (mo < 0) {
                lc_errf(err, "%s: key 'methods[%d].calibration.modules[%d]': unknown module '%s' (q, "
                        "k, v, o, gate, up, down)", x->cfg_path, i, j, mods[j]);
                free(mods);
                return LC_FAIL;
            }
            me->cmask |= 1u << mo;
        }
        free(mods);
        if (kind == CALIB_LOWRANK && me->crank <= 0)
            return lc_errf(err, "%s: key 'methods[%d].calibration.rank': must be positive", x->cfg_path, i);
    }
#undef K
    return LC_OK;
}

/* ---- data -------------------------------------------------------------------- */

/* the task's prompt format (prompt.h), made once */
static int task_format(ctx_t *x, task_entry *t, lc_err *err) {
    if (t->have_pfmt) return LC_OK;
    if (prompt_format_init(&t->pfmt, t->pkind, x->tok, t->system, err))
        return lc_err_prefix(err, "%s: task '%s': key 'data.prompt_format': ", x->cfg_path, t->name);
    t->have_pfmt = 1;
    return LC_OK;
}

static int load_task_data(ctx_t *x, task_entry *t, int need_train, lc_err *err) {
    const int ctx_len = x->base.cfg.max_seq_len;
    if (task_format(x, t, err)) return LC_FAIL;
    if (!t->test.ex) {
        dataset_spec s = {t->test_path, t->ptpl, t->ttpl, ctx_len, t->add_bos, 0, t->bad_row, t->max_test, &t->pfmt};
        if (dataset_load(&t->test, &s, x->tok, err)) return LC_FAIL;
        if (t->test.n == 0) return lc_errf(err, "%s: no test examples", t->test_path);
    }
    if (need_train && !t->have_train) {
        if (!t->train_path)
            return lc_errf(err, "%s: task '%s' needs data.train for trained methods (calibrate, "
                           "learned, lorahub)", x->cfg_path, t->name);
        if (t->max_len > x->topt.seq_len + 1)
            return lc_errf(err, "%s: task '%s': data.max_len (%d) must be <= training.seq_len + 1 (%d)",
                           x->cfg_path, t->name, t->max_len, x->topt.seq_len + 1);
        dataset_spec s = {t->train_path, t->ptpl, t->ttpl, t->max_len, t->add_bos, 1, t->bad_row, t->max_train,
                          &t->pfmt};
        if (dataset_load(&t->train, &s, x->tok, err)) return LC_FAIL;
        t->have_train = 1;
        if (t->val_path) {
            s.path = t->val_path;
            s.max_examples = t->max_val;
            if (dataset_load(&t->val, &s, x->tok, err)) return LC_FAIL;
            t->have_val = 1;
        }
        if (x->writer)
            fprintf(stderr, "calibrate: task %s: %d training, %d validation, %d test examples\n", t->name,
                    t->train.n, t->have_val ? t->val.n : 0, t->test.n);
    }
    return LC_OK;
}

static int load_adapter(ctx_t *x, int k, lc_err *err) {
    adapter_entry *a = &x->adapters[k];
    if (a->l.data) return LC_OK;
    if (lora_load(&a->l, &x->base.cfg, a->path, err)) {
        lc_err_prefix(err, "adapter '%s': ", a->name);
        return LC_FAIL;
    }
    memcpy(a->l.name, a->name, sizeof a->name); /* both NUL-terminated, 64 <= 128 */
    return LC_OK;
}

/* ---- results ------------------------------------------------------------------ */

typedef struct {
    int passes;
    size_t extra_params;
    double val_loss_merge, val_loss_calibrated; /* NAN when not measured */
    double train_seconds;
    cJSON *recipe; /* owned; NULL when none */
} job_info;

static cJSON *recipe_json(const ctx_t *x, const task_entry *t, const method_entry *me,
                          const merge_spec *s) {
    const char *names[ADAPTER_MAX], *paths[ADAPTER_MAX];
    for (int i = 0; i < t->n_ad; i++) {
        names[i] = x->adapters[t->ad[i]].name;
        paths[i] = x->adapters[t->ad[i]].path;
    }
    recipe_lorahub hub = {me->hub_examples, me->hub_budget, me->hub_alpha};
    return merge_spec_to_json(s, names, paths, t->n_ad, &hub);
}

/* Adds the job's fields to the results.json evaluate_dataset wrote. */
static int annotate_results(const char *dir, const task_entry *t, const method_entry *me,
                            job_info *ji, lc_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/results.json", dir);
    char *text = lc_read_file(path, NULL, err);
    if (!text) return LC_FAIL;
    cJSON *r = cJSON_Parse(text);
    free(text);
    if (!r) return lc_errf(err, "%s: not valid JSON", path);
    cJSON_DeleteItemFromObject(r, "inference_passes");
    cJSON_AddStringToObject(r, "task", t->name);
    cJSON_AddStringToObject(r, "family", t->family);
    cJSON_AddStringToObject(r, "method", me->name);
    cJSON_AddStringToObject(r, "type", TYPE_NAMES[me->type]);
    cJSON_AddStringToObject(r, "table_metric", t->metric);
    cJSON_AddStringToObject(r, "prompt_template", t->ptpl);
    /* how generate --bundle must build the prompt (absent: raw, with BOS) */
    if (t->pkind == PROMPT_CHAT) {
        cJSON_AddStringToObject(r, "prompt_format", "chat");
        if (t->system) cJSON_AddStringToObject(r, "system", t->system);
    }
    if (!t->add_bos) cJSON_AddFalseToObject(r, "add_bos");
    cJSON_AddNumberToObject(r, "inference_passes", ji->passes);
    cJSON_AddNumberToObject(r, "extra_params", (double)ji->extra_params);
    cJSON_AddNumberToObject(r, "extra_bytes_fp16", 2.0 * (double)ji->extra_params);
    if (isfinite(ji->val_loss_merge)) cJSON_AddNumberToObject(r, "val_loss_merge", ji->val_loss_merge);
    if (isfinite(ji->val_loss_calibrated))
        cJSON_AddNumberToObject(r, "val_loss_calibrated", ji->val_loss_calibrated);
    if (ji->train_seconds > 0) cJSON_AddNumberToObject(r, "train_seconds", ji->train_seconds);
    if (ji->recipe) {
        cJSON_AddItemToObject(r, "merge", ji->recipe);
        ji->recipe = NULL;
    }
    if (me->type == M_CALIBRATE) {
        cJSON *cj = cJSON_AddObjectToObject(r, "calibration");
        cJSON_AddStringToObject(cj, "kind", me->ckind == CALIB_BIAS ? "bias" : "lowrank");
        if (me->ckind == CALIB_LOWRANK) cJSON_AddNumberToObject(cj, "rank", me->crank);
        cJSON_AddBoolToObject(cj, "per_layer", me->per_layer);
        cJSON_AddBoolToObject(cj, "shared", me->shared);
        cJSON_AddStringToObject(cj, "file", "calibration.h5");
    }
    char *out = cJSON_Print(r);
    cJSON_Delete(r);
    int rc = out ? lc_write_text_atomic(path, out, err) : lc_errf(err, "out of memory");
    free(out);
    return rc;
}

static int write_json_file(const char *path, cJSON *j, lc_err *err) {
    char *t = cJSON_Print(j);
    int rc = t ? lc_write_text_atomic(path, t, err) : lc_errf(err, "out of memory");
    free(t);
    return rc;
}

/* ---- evaluation of one configured model ------------------------------------------ */

static void progress(ctx_t *x, const task_entry *t, const method_entry *me, const char *what) {
    if (!x->writer) return;
    double el = lc_now_s() - x->t0;
    char eta[32] = "?";
    if (x->job > 1) {
        double e = el / (x->job - 1) * (x->n_jobs - x->job + 1);
        snprintf(eta, sizeof eta, "%dm%02ds", (int)e / 60, (int)e % 60);
    }
    fprintf(stderr, "calibrate: [job %d/%d] %s / %s: %s (elapsed %dm%02ds, ETA %s)\n", x->job,
            x->n_jobs, t->name, me->name, what, (int)el / 60, (int)el % 60, eta);
}

static int evaluate_job(ctx_t *x, const model *m, const adapter_set *ad, task_entry *t,
                        const dataset *d, const method_entry *me, const char *dir, job_info *ji,
                        lc_err *err) {
    eval_summary sum;
    char label[160];
    snprintf(label, sizeof label, "%s / %s", t->name, me->name);
    if (evaluate_dataset(m, ad, x->tok, d, &x->gen, &x->ro, dir, label, x->dist, &sum, err)) return LC_FAIL;
    if (!x->writer) { /* rank 0 scored and wrote */
        eval_summary_free(&sum);
        return LC_OK;
    }
    fprintf(stderr, "calibrate: %s: ROUGE-L %.4f  weighted ROUGE %.4f  chrF %.2f  (n=%zu)\n", label,
            sum.scores.rl.f, sum.scores.weighted, sum.scores.chrf_corpus, sum.scores.n);
    eval_summary_free(&sum);
    return annotate_results(dir, t, me, ji, err);
}

/* ---- merges ---------------------------------------------------------------------- */

/* A merge ready to run, plus the learned coefficients it was built with. */
typedef struct {
    merged_model mm;
    float *coef_store[ADAPTER_MAX];
} job_merge;

static void job_merge_free(job_merge *jm) {
    merged_model_free(&jm->mm);
    for (int i = 0; i < ADAPTER_MAX; i++) free(jm->coef_store[i]);
    memset(jm, 0, sizeof *jm);
}

static int task_loras(ctx_t *x, const task_entry *t, lora **ls, lc_err *err) {
    for (int i = 0; i < t->n_ad; i++) {
        if (load_adapter(x, t->ad[i], err)) return LC_FAIL;
        ls[i] = &x->adapters[t->ad[i]].l;
    }
    return LC_OK;
}

typedef struct {
    ctx_t *x;
    task_entry *t;
    const method_entry *me;
    lora **ls;
    merge_spec spec;
    dataset sub;
    int evals;
} hub_ctx;

static int hub_objective(const double *w, int n, void *p, double *f, lc_err *err) {
    hub_ctx *h = p;
    for (int i = 0; i < n; i++) h->spec.weights[i] = w[i];
    lora l;
    if (merge_to_lora(&h->spec, h->ls, n, &h->x->base.cfg, &l, err)) return LC_FAIL;
    adapter_set ad = {0};
    ad.loras[ad.n_loras++] = &l;
    double loss;
    int B = h->x->topt.batch_size, T = h->x->topt.seq_len;
    int rc = eval_loss_dist(&h->x->base, &ad, &h->sub, B, T, h->x->pad, 0, h->x->dist, &loss, err);
    lora_free(&l);
    if (rc) return LC_FAIL;
    double l1 = 0;
    for (int i = 0; i < n; i++) l1 += fabs(w[i]);
    *f = loss + h->me->hub_alpha * l1;
    h->evals++;
    return LC_OK;
}

static void hub_progress(int k, int budget, const double *x, int n, double f, double best, void *p) {
    (void)x, (void)n;
    hub_ctx *h = p;
    if (!h->x->writer) return;
    if (k == 1 || k % 10 == 0 || k == budget)
        fprintf(stderr, "calibrate: %s / %s: LoraHub search %d/%d: objective %.4f (best %.4f)\n",
                h->t->name, h->me->name, k, budget, f, best);
}

typedef struct {
    lora **ls;
    int n;
} coef_save_ctx;

static int save_coefs(void *p, const char *dir, lc_err *err) {
    coef_save_ctx *s = p;
    char path[4096];
    if (lc_make_dirs(dir, err)) return LC_FAIL;
    snprintf(path, sizeof path, "%s/coefficients.h5", dir);
    return lora_save_coefs(s->ls, s->n, path, err);
}

/* Builds the merged model of task t for method me (running the LoraHub
 * search or the coefficient training when the method needs one). */
static int build_merge(ctx_t *x, task_entry *t, const method_entry *me, const char *dir,
                       job_merge *jm, job_info *ji, lc_err *err) {
    lora *ls[ADAPTER_MAX];
    memset(jm, 0, sizeof *jm);
    if (task_loras(x, t, ls, err)) return LC_FAIL;
    merge_spec s = me->merge;
    const int n = t->n_ad;
    if (me->n_weights && me->n_weights != n)
        return lc_errf(err, "%s: method '%s': %d merge weights for task '%s' with %d adapters",
                       x->cfg_path, me->name, me->n_weights, t->name, n);
    if (merge_spec_validate(&s, ls, n, &x->base.cfg, err)) {
        lc_err_prefix(err, "%s: method '%s', task '%s': ", x->cfg_path, me->name, t->name);
        return LC_FAIL;
    }
    if (s.method == MERGE_LORAHUB) {
        if (load_task_data(x, t, 1, err)) return LC_FAIL;
        hub_ctx h = {x, t, me, ls, s, t->train, 0};
        h.sub.n = t->train.n < me->hub_examples ? t->train.n : me->hub_examples;
        double w[ADAPTER_MAX] = {0}, best;
        cmaes_opts co = {me->hub_budget, me->hub_sigma, -1.5, 1.5, (uint64_t)me->merge.seed + 1, 0,
                         hub_progress};
        double t0 = lc_now_s();
        if (cmaes_minimize(hub_objective, &h, w, n, &co, &best, err)) return LC_FAIL;
        ji->train_seconds = lc_now_s() - t0;
        for (int i = 0; i < n; i++) s.weights[i] = w[i];
        if (x->writer) {
            fprintf(stderr, "calibrate: %s / %s: LoraHub weights", t->name, me->name);
            for (int i = 0; i < n; i++) fprintf(stderr, " %s=%.4f", ls[i]->name, w[i]);
            fprintf(stderr, " (objective %.4f)\n", best);
        }
    } else if (s.method == MERGE_LEARNED) {
        if (load_task_data(x, t, 1, err)) return LC_FAIL;
        param_list pl = {0};
        adapter_set ad = {0};
        int rc = LC_FAIL;
        for (int i = 0; i < n; i++) {
            char prefix[sizeof ls[i]->name];
            memcpy(prefix, ls[i]->name, sizeof prefix);
            ls[i]->weight = 1.0f;
            if (lora_enable_coef(ls[i], (float)s.weights[i], 1, err) ||
                param_list_add_coef(&pl, ls[i], prefix, err))
                goto learned_done;
            ad.loras[ad.n_loras++] = ls[i];
        }
        train_opts o = x->topt;
        o.out_dir = dir;
        o.what = "calibrate";
        coef_save_ctx sc = {ls, n};
        train_result res;
        if (t->have_val && eval_loss_dist(&x->base, &ad, &t->val, o.batch_size, o.seq_len, x->pad,
                                          o.eval_batches, x->dist, &ji->val_loss_merge, err))
            goto learned_done;
        if (train_run(&x->base, &ad, &pl, &t->train, t->have_val ? &t->val : NULL, x->pad, &o,
                      x->resume, save_coefs, &sc, &res, err))
            goto learned_done;
        ji->val_loss_calibrated = res.last_val;
        ji->train_seconds = res.seconds;
        for (int i = 0; i < n; i++) {
            jm->coef_store[i] = ls[i]->coef; /* keep the trained values for the merge */
            ls[i]->coef = NULL;
            s.weights[i] = 1.0; /* the coefficients started at w_i and carry it now */
        }
        rc = LC_OK;
    learned_done:
        for (int i = 0; i < n; i++) {
            if (ls[i]->coef) free(ls[i]->coef);
            free(ls[i]->gcoef);
            ls[i]->coef = ls[i]->gcoef = NULL;
        }
        param_list_free(&pl);
        if (rc) return LC_FAIL;
        s.coef = (const float *const *)jm->coef_store;
    }
    ji->recipe = recipe_json(x, t, me, &s);
    ji->extra_params += merge_extra_params(&s, ls, n);
    if (merged_model_build(&s, ls, n, &x->base, &jm->mm, err)) return LC_FAIL;
    return LC_OK;
}

/* ---- calibration ---------------------------------------------------------------- */

typedef struct {
    int method;   /* index into methods */
    char family[64];
    calib cb;
    int trained;
    double val_before, val_after, seconds;
} shared_calib;

static int save_calib(void *p, const char *dir, lc_err *err) {
    const calib *cb = p; /* called on rank 0 alone (by the trainer, and see save_calib_if) */
    char path[4096];
    if (lc_make_dirs(dir, err)) return LC_FAIL;
    snprintf(path, sizeof path, "%s/calibration.h5", dir);
    return calib_save(cb, path, err);
}

static int calib_new(ctx_t *x, const method_entry *me, calib *cb, lc_err *err) {
    if (calib_init(cb, &x->base.cfg, me->ckind, me->crank, me->per_layer, me->cmask, err)) return LC_FAIL;
    calib_init_default(cb, &x->base.cfg, (uint64_t)me->cseed);
    snprintf(cb->name, sizeof cb->name, "%s", me->name);
    return calib_enable_grad(cb, err);
}

/* Trains cb on the tasks listed, merges[i] being task i's merge (built by
 * the caller, which keeps it); writes calibration.h5 to dir. */
static int train_calibration(ctx_t *x, const method_entry *me, task_entry **tasks,
                             job_merge *const *merges, int nt, const char *dir, calib *cb,
                             double *val_before, double *val_after, double *seconds, lc_err *err) {
    train_source src[MAX_TASKS] = {{0}};
    adapter_set ads[MAX_TASKS];
    param_list pl = {0};
    int rc = LC_FAIL;
    for (int i = 0; i < nt; i++) {
        ads[i] = merges[i]->mm.ad; /* a copy: the calibration is added below */
        src[i] = (train_source){merges[i]->mm.m, &ads[i], &tasks[i]->train,
                                tasks[i]->have_val ? &tasks[i]->val : NULL};
    }
    if (train_sources_val_loss(src, nt, &x->topt, x->pad, val_before, err)) goto done;
    for (int i = 0; i < nt; i++) ads[i].cals[ads[i].n_cals++] = cb;
    if (param_list_add_calib(&pl, cb, &x->base.cfg, err)) goto done;
    train_opts o = x->topt;
    o.out_dir = dir;
    o.what = "calibrate";
    train_result res;
    if (x->writer)
        fprintf(stderr, "calibrate: %s: training %zu calibration parameters on %d task(s)%s\n", me->name,
                cb->n_params, nt, isfinite(*val_before) ? "" : " (no validation set)");
    if (train_run_multi(src, nt, &pl, x->pad, &o, x->resume, save_calib, cb, &res, err)) goto done;
    *val_after = res.last_val;
    *seconds = res.seconds;
    if (x->writer && save_calib(cb, dir, err)) goto done;
    rc = LC_OK;
done:
    param_list_free(&pl);
    return rc;
}

/* Validation loss of (m, ad) on task t (NAN without a validation set). */
static int task_val_loss(ctx_t *x, task_entry *t, model *m, const adapter_set *ad, double *out,
                         lc_err *err) {
    *out = NAN;
    if (!t->have_val) return LC_OK;
    return eval_loss_dist(m, ad, &t->val, x->topt.batch_size, x->topt.seq_len, x->pad,
                          x->topt.eval_batches, x->dist, out, err);
}

/* The Shared LC of method mi for t's family, trained on first use with every
 * task of the family (jm is t's merge, already built). */
static int shared_calibration(ctx_t *x, task_entry *t, int mi, job_merge *jm, shared_calib *shared,
                              int *n_shared, calib **out, lc_err *err) {
    const method_entry *me = &x->methods[mi];
    for (int i = 0; i < *n_shared; i++)
        if (shared[i].method == mi && !strcmp(shared[i].family, t->family)) {
            *out = &shared[i].cb;
            return LC_OK;
        }
    if (*n_shared >= MAX_TASKS) return lc_errf(err, "too many shared calibrations");
    shared_calib *sc = &shared[(*n_shared)++];
    memset(sc, 0, sizeof *sc);
    sc->method = mi;
    snprintf(sc->family, sizeof sc->family, "%s", t->family);
    task_entry *fam[MAX_TASKS];
    job_merge others[MAX_TASKS], *merges[MAX_TASKS];
    job_info ji_other[MAX_TASKS];
    int nf = 0, n_others = 0, rc = LC_FAIL;
    memset(ji_other, 0, sizeof ji_other);
    for (int i = 0; i < x->n_tasks; i++) {
        task_entry *u = &x->tasks[i];
        if (strcmp(u->family, t->family)) continue;
        if (load_task_data(x, u, 1, err)) goto done;
        if (u == t) {
            merges[nf] = jm;
        } else {
            char udir[2048];
            snprintf(udir, sizeof udir, "%s/%s/%s", x->out_dir, u->slug, me->slug);
            if (build_merge(x, u, me, udir, &others[n_others], &ji_other[n_others], err)) goto done;
            merges[nf] = &others[n_others++];
        }
        fam[nf++] = u;
    }
    char sdir[2048];
    snprintf(sdir, sizeof sdir, "%s/shared-%s/%s", x->out_dir, t->family_slug, me->slug);
    if (calib_new(x, me, &sc->cb, err) ||
        train_calibration(x, me, fam, merges, nf, sdir, &sc->cb, &sc->val_before, &sc->val_after,
                          &sc->seconds, err))
        goto done;
    sc->trained = 1;
    *out = &sc->cb;
    rc = LC_OK;
done:
    for (int i = 0; i < n_others; i++) {
        job_merge_free(&others[i]);
        cJSON_Delete(ji_other[i].recipe);
    }
    return rc;
}

/* ---- multi-step ---------------------------------------------------------------- */

static int run_multi_step(ctx_t *x, task_entry *t, const method_entry *me, const char *dir,
                          job_info *ji, lc_err *err) {
    if (!t->first_tpl || !t->second_tpl)
        return lc_errf(err, "%s: task '%s': method '%s' (multi_step) needs multi_step.first_prompt_template "
                       "and multi_step.second_prompt_template", x->cfg_path, t->name, me->name);
    if (t->aux_i < 0)
        return lc_errf(err, "%s: task '%s': multi_step needs a second (auxiliary) adapter", x->cfg_path, t->name);
    if (load_adapter(x, t->main_i, err) || load_adapter(x, t->aux_i, err)) return LC_FAIL;
    dataset first = {0}, second = {0};
    eval_summary s1 = {0};
    int rc = LC_FAIL;
    char d1[4096];
    snprintf(d1, sizeof d1, "%s/first-pass", dir);
    if (task_format(x, t, err)) return LC_FAIL;
    dataset_spec sp = {t->test_path, t->first_tpl, t->ttpl, x->base.cfg.max_seq_len, t->add_bos, 0,
                       t->bad_row, t->max_test, &t->pfmt};
    if (dataset_load(&first, &sp, x->tok, err)) return LC_FAIL;
    adapter_set a1 = {0};
    x->adapters[t->main_i].l.weight = 1.0f;
    a1.loras[a1.n_loras++] = &x->adapters[t->main_i].l;
    char label[160];
    snprintf(label, sizeof label, "%s / %s (first pass)", t->name, me->name);
    /* under MPI every rank gets every first-pass answer (its second pass needs its share) */
    if (evaluate_dataset(&x->base, &a1, x->tok, &first, &x->gen, &x->ro, d1, label, x->dist, &s1, err)) goto done;
    /* second pass: the auxiliary LoRA on the first pass's answer, scored
     * against the compositional reference of the same row */
    second.ex = calloc(t->test.n, sizeof(ds_example));
    if (!second.ex) {
        lc_errf(err, "out of memory");
        goto done;
    }
    snprintf(second.path, sizeof second.path, "%s", t->test_path);
    const int bos = tokenizer_bos(x->tok), ctx_len = x->base.cfg.max_seq_len;
    for (int i = 0, j = 0; i < t->test.n; i++) {
        const ds_example *ref = &t->test.ex[i];
        while (j < first.n && first.ex[j].line < ref->line) j++;
        const char *out1 = j < first.n && first.ex[j].line == ref->line ? s1.predictions[j] : "";
        ds_example *e = &second.ex[second.n];
        e->line = ref->line;
        /* the shared renderer (template.h), checked at open (check_second_tpl) */
        if (tmpl_fill_one(t->second_tpl, out1, "multi_step.second_prompt_template", &e->prompt, err)) {
            lc_err_prefix(err, "%s: task '%s': ", x->cfg_path, t->name);
            goto done;
        }
        if (t->pfmt.kind == PROMPT_CHAT) { /* pass 2's prompt is the user message */
            char *chat = NULL;
            if (prompt_render(&t->pfmt, e->prompt, &chat, err)) {
                free(e->prompt);
                lc_err_prefix(err, "%s:%d: second pass prompt: ", t->test_path, ref->line);
                goto done;
            }
            free(e->prompt);
            e->prompt = chat;
        }
        e->target = strdup(ref->target);
        if (!e->prompt || !e->target) {
            free(e->prompt), free(e->target);
            lc_errf(err, "out of memory");
            goto done;
        }
        second.n++;
        int *ids = NULL, nids = 0;
        if (prompt_encode(x->tok, e->prompt, strlen(e->prompt), t->add_bos, &ids, &nids, err)) {
            lc_err_prefix(err, "%s:%d: second pass prompt: ", t->test_path, ref->line);
            goto done;
        }
        int kept = prompt_cut_left(ids, nids, bos, ctx_len - 1);
        e->ids = malloc(sizeof(int) * (kept + 1));
        if (!e->ids) {
            free(ids);
            lc_errf(err, "out of memory");
            goto done;
        }
        if (kept) memcpy(e->ids, ids, sizeof(int) * kept);
        e->n_ids = e->n_prompt = kept;
        free(ids);
    }
    adapter_set a2 = {0};
    x->adapters[t->aux_i].l.weight = 1.0f;
    a2.loras[a2.n_loras++] = &x->adapters[t->aux_i].l;
    ji->passes = 2;
    if (evaluate_job(x, &x->base, &a2, t, &second, me, dir, ji, err) == LC_FAIL) goto done;
    rc = LC_OK;
done:
    eval_summary_free(&s1);
    dataset_free(&first);
    dataset_free(&second);
    return rc;
}

/* ---- one job ------------------------------------------------------------------- */

static int job_done(const char *dir) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/results.json", dir);
    return stat(path, &sb) == 0;
}

static int run_job(ctx_t *x, task_entry *t, int mi, shared_calib *shared, int *n_shared,
                   lc_err *err) {
    const method_entry *me = &x->methods[mi];
    char dir[2048]; /* file paths inside it use 4096-byte buffers */
    snprintf(dir, sizeof dir, "%s/%s/%s", x->out_dir, t->slug, me->slug);
    int done = x->resume && x->writer && job_done(dir); /* rank 0's files decide */
    if (x->resume && lc_dist_bcast(x->dist, &done, sizeof done, 0, err)) return LC_FAIL;
    if (done) {
        progress(x, t, me, "done already (--resume), skipped");
        return LC_OK;
    }
    progress(x, t, me, TYPE_NAMES[me->type]);
    if ((x->writer && lc_make_dirs(dir, err)) || load_task_data(x, t, 0, err)) return LC_FAIL;
    job_info ji = {1, 0, NAN, NAN, 0, NULL};
    adapter_set ad = {0};
    int rc = LC_FAIL;
    switch (me->type) {
    case M_ZERO_SHOT:
        return evaluate_job(x, &x->base, &ad, t, &t->test, me, dir, &ji, err);
    case M_MAIN_LORA: case M_AUX_LORA: {
        int k = me->type == M_MAIN_LORA ? t->main_i : t->aux_i;
        if (k < 0) return lc_errf(err, "%s: task '%s' has no auxiliary adapter", x->cfg_path, t->name);
        if (load_adapter(x, k, err)) return LC_FAIL;
        x->adapters[k].l.weight = 1.0f;
        ad.loras[ad.n_loras++] = &x->adapters[k].l;
        return evaluate_job(x, &x->base, &ad, t, &t->test, me, dir, &ji, err);
    }
    case M_MULTI_STEP:
        return run_multi_step(x, t, me, dir, &ji, err);
    case M_JOINT: {
        if (!t->joint_path)
            return lc_errf(err, "%s: task '%s': method '%s' needs tasks[].joint_expert (a LoRA trained "
                           "on the compositional data with `train`)", x->cfg_path, t->name, me->name);
        lora l;
        if (lora_load(&l, &x->base.cfg, t->joint_path, err)) return LC_FAIL;
        ad.loras[ad.n_loras++] = &l;
        ji.extra_params = l.n_params;
        rc = evaluate_job(x, &x->base, &ad, t, &t->test, me, dir, &ji, err);
        lora_free(&l);
        return rc;
    }
    case M_MERGE: {
        job_merge jm;
        if (build_merge(x, t, me, dir, &jm, &ji, err) == LC_OK)
            rc = evaluate_job(x, jm.mm.m, &jm.mm.ad, t, &t->test, me, dir, &ji, err);
        job_merge_free(&jm);
        cJSON_Delete(ji.recipe);
        return rc;
    }
    case M_CALIBRATE: {
        calib own = {0}, *cb = &own;
        double vb = NAN, va = NAN;
        job_merge jm;
        if (load_task_data(x, t, 1, err) || build_merge(x, t, me, dir, &jm, &ji, err)) {
            cJSON_Delete(ji.recipe);
            return LC_FAIL;
        }
        merged_model *mm = &jm.mm;
        if (me->shared) {
            if (shared_calibration(x, t, mi, &jm, shared, n_shared, &cb, err)) goto cal_done;
            /* this task's own validation losses, before and after */
            if (task_val_loss(x, t, mm->m, &mm->ad, &vb, err)) goto cal_done;
            mm->ad.cals[mm->ad.n_cals++] = cb;
            if (task_val_loss(x, t, mm->m, &mm->ad, &va, err)) goto cal_done;
            for (int i = 0; i < *n_shared; i++)
                if (&shared[i].cb == cb) ji.train_seconds = shared[i].seconds;
            if (x->writer && save_calib(cb, dir, err)) goto cal_done;
        } else {
            job_merge *one_m[1] = {&jm};
            task_entry *one[1] = {t};
            if (calib_new(x, me, &own, err) ||
                train_calibration(x, me, one, one_m, 1, dir, &own, &vb, &va, &ji.train_seconds, err))
                goto cal_done;
            mm->ad.cals[mm->ad.n_cals++] = cb;
        }
        ji.extra_params += cb->n_params;
        ji.val_loss_merge = vb;
        ji.val_loss_calibrated = va;
        rc = evaluate_job(x, mm->m, &mm->ad, t, &t->test, me, dir, &ji, err);
    cal_done:
        job_merge_free(&jm);
        cJSON_Delete(ji.recipe);
        calib_free(&own);
        return rc;
    }
    }
    return lc_errf(err, "unknown method type");
}

/* ---- the results table --------------------------------------------------------- */

static double metric_of(const cJSON *r, const char *metric) {
    const cJSON *v;
    if (!strcmp(metric, "weighted_rouge")) {
        v = cJSON_GetObjectItemCaseSensitive(r, "weighted_rouge");
    } else if (!strcmp(metric, "chrf")) {
        v = cJSON_GetObjectItemCaseSensitive(r, "chrf_corpus");
    } else { /* rouge1, rouge2, rougeL: their F1 */
        v = cJSON_GetObjectItemCaseSensitive(r, metric);
        v = v ? cJSON_GetObjectItemCaseSensitive(v, "f1") : NULL;
    }
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double num_of(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Collects every job's results.json into results.json, results.csv and
 * table.md (methods x tasks). */
static int write_summary(ctx_t *x, lc_err *err) {
    cJSON *all = cJSON_CreateArray();
    cJSON *grid[MAX_METHODS][MAX_TASKS];
    memset(grid, 0, sizeof grid);
    char path[4096];
    for (int mi = 0; mi < x->n_methods; mi++)
        for (int ti = 0; ti < x->n_tasks; ti++) {
            snprintf(path, sizeof path, "%s/%s/%s/results.json", x->out_dir, x->tasks[ti].slug,
                     x->methods[mi].slug);
            /* a job not run (e.g. outside --tasks) has no results.json; one
             * that exists and cannot be read or parsed is an error, not a
             * row quietly missing from the tables */
            struct stat sb;
            if (stat(path, &sb) != 0 && errno == ENOENT) continue;
            char *text = lc_read_file(path, NULL, err);
            cJSON *r = text ? cJSON_Parse(text) : NULL;
            free(text);
            if (!r) {
                if (text) lc_errf(err, "%s: not valid JSON; the run summary needs every job's results "
                                  "(rerun the job without --resume, or delete the file)", path);
                cJSON_Delete(all);
                return LC_FAIL;
            }
            cJSON_AddItemToArray(all, r);
            grid[mi][ti] = r;
        }
    snprintf(path, sizeof path, "%s/results.json", x->out_dir);
    if (write_json_file(path, all, err)) {
        cJSON_Delete(all);
        return LC_FAIL;
    }
    /* CSV */
    size_t cap = 1 << 16, len = 0;
    char *csv = malloc(cap);
    if (!csv) {
        cJSON_Delete(all);
        return lc_errf(err, "out of memory");
    }
#define APPEND(...)                                                             \
    do {                                                                        \
        int need = snprintf(NULL, 0, __VA_ARGS__);                              \
        if (len + need + 1 > cap) {                                             \
            while (len + need + 1 > cap) cap *= 2;                              \
            char *nc = realloc(csv, cap);                                       \
            if (!nc) { free(csv); cJSON_Delete(all); return lc_errf(err, "out of memory"); } \
            csv = nc;                                                           \
        }                                                                       \
        snprintf(csv + len, cap - len, __VA_ARGS__);                            \
        len += need;                                                            \
    } while (0)
    APPEND("task,method,type,n,rouge1,rouge2,rougeL,weighted_rouge,chrf,inference_passes,"
           "extra_params,extra_bytes_fp16,val_loss_merge,val_loss_calibrated\n");
    for (int ti = 0; ti < x->n_tasks; ti++)
        for (int mi = 0; mi < x->n_methods; mi++) {
            cJSON *r = grid[mi][ti];
            if (!r) continue;
            APPEND("%s,%s,%s,%.0f,%.6f,%.6f,%.6f,%.6f,%.4f,%.0f,%.0f,%.0f,%.6f,%.6f\n",
                   x->tasks[ti].name, x->methods[mi].name, TYPE_NAMES[x->methods[mi].type],
                   num_of(r, "n"), metric_of(r, "rouge1"), metric_of(r, "rouge2"), metric_of(r, "rougeL"), metric_of(r, "weighted_rouge"), metric_of(r, "chrf"),
                   num_of(r, "inference_passes"), num_of(r, "extra_params"),
                   num_of(r, "extra_bytes_fp16"), num_of(r, "val_loss_merge"),
                   num_of(r, "val_loss_calibrated"));
        }
    snprintf(path, sizeof path, "%s/results.csv", x->out_dir);
    int rc = lc_write_text_atomic(path, csv, err);
    /* Markdown */
    len = 0;
    csv[0] = 0;
    APPEND("| method | inferences | extra params | extra MB (fp16) |");
    for (int ti = 0; ti < x->n_tasks; ti++) APPEND(" %s (%s) |", x->tasks[ti].name, x->tasks[ti].metric);
    APPEND("\n| --- | ---: | ---: | ---: |");
    for (int ti = 0; ti < x->n_tasks; ti++) APPEND(" ---: |");
    APPEND("\n");
    for (int mi = 0; mi < x->n_methods; mi++) {
        double passes = NAN, extra = NAN;
        int any = 0;
        for (int ti = 0; ti < x->n_tasks; ti++)
            if (grid[mi][ti]) {
                any = 1;
                passes = num_of(grid[mi][ti], "inference_passes");
                double e = num_of(grid[mi][ti], "extra_params");
                extra = isfinite(extra) && extra > e ? extra : e;
            }
        if (!any) continue;
        APPEND("| %s | %.0f | %.0f | %.4f |", x->methods[mi].name, passes, extra, 2.0 * extra / 1e6);
        for (int ti = 0; ti < x->n_tasks; ti++) {
            if (grid[mi][ti]) APPEND(" %.4f |", metric_of(grid[mi][ti], x->tasks[ti].metric));
            else APPEND(" – |");
        }
        APPEND("\n");
    }
    APPEND("\nExtra parameters are per task, on top of the base and the single-task LoRAs "
           "(the largest over the tasks); MB = 10^6 bytes at 2 bytes per parameter.\n");
#undef APPEND
    snprintf(path, sizeof path, "%s/table.md", x->out_dir);
    if (rc == LC_OK) rc = lc_write_text_atomic(path, csv, err);
    if (rc == LC_OK) fprintf(stderr, "\n%s\n", csv);
    free(csv);
    cJSON_Delete(all);
    return rc;
}

/* ---- main ----------------------------------------------------------------------- */

static int in_list(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, name, n)) return 1;
        p += l + (e ? 1 : 0);
    }
    return 0;
}

/* ---- the plan's API -------------------------------------------------------- */

struct calib_plan {
    ctx_t x;
    calib_plan_opts o;
    int loaded;
    char *model_path, *tok_path;
};

/* Whether task ti's adapters are needed by the selection: its own jobs, or
 * a selected Shared LC that trains on the whole family of a selected task. */
static int task_needed(const calib_plan *p, int ti) {
    const ctx_t *x = &p->x;
    int any_shared = 0;
    for (int mi = 0; mi < x->n_methods; mi++)
        any_shared |= x->methods[mi].shared && in_list(p->o.only, x->methods[mi].name);
    int need = in_list(p->o.tasks, x->tasks[ti].name);
    for (int tj = 0; any_shared && !need && tj < x->n_tasks; tj++)
        need = in_list(p->o.tasks, x->tasks[tj].name) &&
               !strcmp(x->tasks[tj].family, x->tasks[ti].family);
    return need;
}

static int job_selected(const calib_plan *p, int ti, int mi) {
    return in_list(p->o.tasks, p->x.tasks[ti].name) && in_list(p->o.only, p->x.methods[mi].name);
}

int calib_plan_open(calib_plan **out, const char *cfg_file, const calib_plan_opts *o, lc_err *err) {
    *out = NULL;
    calib_plan *p = lc_calloc(1, sizeof *p, err);
    if (!p) return LC_FAIL;
    p->o = *o;
    ctx_t *x = &p->x;
    x->cfg_path = cfg_file;
    x->resume = o->resume;
    if (cfg_load(&x->c, cfg_file, err)) goto fail;
    const char *s_out;
    if (cfg_string(x->c, "output_dir", 1, NULL, &s_out, err)) goto fail;
    x->out_dir = cfg_resolve_path(x->c, s_out);
    if (!x->out_dir) {
        lc_errf(err, "out of memory");
        goto fail;
    }
    /* read every key before the (slow) model load so a typo fails at once */
    if (parse_adapters(x, err) || parse_tasks(x, err) || parse_methods(x, err)) goto fail;
    int max_len = 2;
    for (int i = 0; i < x->n_tasks; i++) max_len = x->tasks[i].max_len > max_len ? x->tasks[i].max_len : max_len;
    int needs_training = 0;
    for (int i = 0; i < x->n_methods; i++)
        needs_training |= x->methods[i].type == M_CALIBRATE ||
                          (x->methods[i].type == M_MERGE && (x->methods[i].merge.method == MERGE_LEARNED ||
                                                             x->methods[i].merge.method == MERGE_LORAHUB));
    if (needs_training || cfg_has(x->c, "training")) {
        if (train_opts_from_cfg(x->c, max_len, 0, &x->topt, err)) goto fail;
    } else {
        x->topt.batch_size = 8;
        x->topt.seq_len = max_len - 1;
    }
    x->topt.stop_after = o->stop_after;
    x->dist = o->dist;
    x->topt.dist = o->dist;
    x->writer = lc_dist_rank(o->dist) == 0;
    if (eval_opts_from_cfg(x->c, &x->gen, &x->ro, err)) goto fail;
    if (o->load) {
        if (job_load_base(x->c, &x->base, &x->tok, err)) goto fail;
        p->loaded = 1;
    } else if (job_base_paths(x->c, &p->model_path, &p->tok_path, err)) {
        goto fail;
    }
    if (cfg_finish(x->c, err)) goto fail;
    for (int ti = 0; ti < x->n_tasks; ti++)
        for (int mi = 0; mi < x->n_methods; mi++) x->n_jobs += job_selected(p, ti, mi);
    if (x->n_jobs == 0) {
        lc_errf(err, "%s: --only/--tasks select no job", cfg_file);
        goto fail;
    }
    if (o->load) {
        x->pad = tokenizer_eos(x->tok) >= 0 ? tokenizer_eos(x->tok) : 0;
        /* every adapter the selected tasks use must fit the base before any
         * job runs */
        for (int ti = 0; ti < x->n_tasks; ti++) {
            if (!task_needed(p, ti)) continue;
            for (int k = 0; k < x->tasks[ti].n_ad; k++)
                if (load_adapter(x, x->tasks[ti].ad[k], err)) {
                    if (!in_list(o->tasks, x->tasks[ti].name))
                        lc_err_prefix(err, "task '%s' (family '%s', needed by a Shared calibration): ",
                                      x->tasks[ti].name, x->tasks[ti].family);
                    goto fail;
                }
        }
    }
    *out = p;
    return LC_OK;
fail:
    calib_plan_free(p);
    return LC_FAIL;
}

int calib_plan_n_jobs(const calib_plan *p) { return p->x.n_jobs; }

int calib_plan_print(const calib_plan *p, FILE *f, lc_err *err) {
    const ctx_t *x = &p->x;
    char *used = lc_calloc((size_t)x->n_adapters + 1, 1, err);
    if (!used) return LC_FAIL;
    int rc = LC_FAIL;
    for (int ti = 0; ti < x->n_tasks; ti++)
        if (task_needed(p, ti))
            for (int k = 0; k < x->tasks[ti].n_ad; k++) used[x->tasks[ti].ad[k]] = 1;
    for (int i = 0; i < x->n_adapters; i++) {
        if (!used[i]) continue;
        cJSON *j = cJSON_CreateObject();
        if (!j || !cJSON_AddStringToObject(j, "adapter", x->adapters[i].name) ||
            !cJSON_AddStringToObject(j, "path", x->adapters[i].path)) {
            cJSON_Delete(j);
            lc_errf(err, "out of memory");
            goto done;
        }
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!s) {
            lc_errf(err, "out of memory");
            goto done;
        }
        fprintf(f, "%s\n", s);
        free(s);
    }
    int job = 0;
    for (int ti = 0; ti < x->n_tasks; ti++)
        for (int mi = 0; mi < x->n_methods; mi++) {
            if (!job_selected(p, ti, mi)) continue;
            const task_entry *t = &x->tasks[ti];
            const method_entry *me = &x->methods[mi];
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s/%s", x->out_dir, t->slug, me->slug);
            cJSON *j = cJSON_CreateObject();
            if (!j || !cJSON_AddNumberToObject(j, "job", ++job) ||
                !cJSON_AddStringToObject(j, "task", t->name) ||
                !cJSON_AddStringToObject(j, "family", t->family) ||
                !cJSON_AddStringToObject(j, "method", me->name) ||
                !cJSON_AddStringToObject(j, "type", TYPE_NAMES[me->type]) ||
                !cJSON_AddBoolToObject(j, "shared", me->shared) ||
                !cJSON_AddStringToObject(j, "dir", dir)) {
                cJSON_Delete(j);
                lc_errf(err, "out of memory");
                goto done;
            }
            char *s = cJSON_PrintUnformatted(j);
            cJSON_Delete(j);
            if (!s) {
                lc_errf(err, "out of memory");
                goto done;
            }
            fprintf(f, "%s\n", s);
            free(s);
        }
    rc = fflush(f) ? lc_errf(err, "writing the plan: %s", strerror(errno)) : LC_OK;
done:
    free(used);
    return rc;
}

int calib_plan_run(calib_plan *p, lc_err *err) {
    ctx_t *x = &p->x;
    if (!p->loaded) return lc_errf(err, "%s: the plan was opened without loading the model", x->cfg_path);
    shared_calib *shared = lc_calloc(MAX_TASKS, sizeof *shared, err);
    if (!shared) return LC_FAIL;
    int n_shared = 0, rc = LC_FAIL, lock = -1;
    if (x->writer && (lc_make_dirs(x->out_dir, err) ||
                      (!p->o.no_summary && lc_dir_lock(x->out_dir, &lock, err))))
        goto done;
    if (x->writer)
        fprintf(stderr, "calibrate: %d tasks x %d methods = %d jobs -> %s%s\n", x->n_tasks, x->n_methods,
                x->n_jobs, x->out_dir, lc_dist_size(x->dist) > 1 ? " (data-parallel over MPI ranks)" : "");
    x->t0 = lc_now_s();
    x->job = 0;
    for (int ti = 0; ti < x->n_tasks; ti++)
        for (int mi = 0; mi < x->n_methods; mi++) {
            if (!job_selected(p, ti, mi)) continue;
            x->job++;
            if (run_job(x, &x->tasks[ti], mi, shared, &n_shared, err)) {
                lc_err_prefix(err, "job %s / %s: ", x->tasks[ti].name, x->methods[mi].name);
                goto done;
            }
        }
    if (x->writer && !p->o.no_summary) {
        if (write_summary(x, err)) goto done;
        fprintf(stderr, "calibrate: wrote %s/results.json, results.csv and table.md\n", x->out_dir);
    }
    rc = LC_OK;
done:
    lc_dir_unlock(lock);
    for (int i = 0; i < n_shared; i++) calib_free(&shared[i].cb);
    free(shared);
    return rc;
}

void calib_plan_free(calib_plan *p) {
    if (!p) return;
    ctx_t *x = &p->x;
    for (int i = 0; i < x->n_tasks; i++) {
        task_entry *t = &x->tasks[i];
        dataset_free(&t->test);
        if (t->have_train) dataset_free(&t->train);
        if (t->have_val) dataset_free(&t->val);
        free(t->test_path), free(t->train_path), free(t->val_path), free(t->joint_path);
        prompt_format_free(&t->pfmt);
    }
    for (int i = 0; i < x->n_adapters; i++) {
        lora_free(&x->adapters[i].l);
        free(x->adapters[i].path);
    }
    tokenizer_free(x->tok);
    if (p->loaded) model_free(&x->base);
    free(x->out_dir);
    cfg_free(x->c);
    free(p->model_path), free(p->tok_path);
    free(p);
}
