/* exporter.c: see exporter.h. */
#include "exporter.h"
#include "integrity.h"

#include <stdlib.h>
#include <string.h>

#include "interop.h"
#include "loaders.h"
#include "recipe.h"
#include "tensor_file.h"

#define MAX_EXPORT_ADAPTERS 64

typedef struct {
    const char *name; /* into a results.json tree */
    char *path;
    lora l;
} ex_adapter;

static cJSON *read_json(const char *path, lc_err *err) {
    char *t = lc_read_file(path, NULL, err);
    if (!t) return NULL;
    cJSON *j = cJSON_Parse(t);
    free(t);
    if (!j) lc_errf(err, "%s: not valid JSON", path);
    return j;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The learned-merge coefficients calibrate trained for a job
 * (<jobdir>/final/coefficients.h5, "<adapter>.coef" (L, 7)): coef[i]
 * malloc'd for each of the n adapters. */
static int read_coefs(const char *jobdir, const char *const *names, int n, int L, float **coef,
                      lc_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/final/coefficients.h5", jobdir);
    tensor_file *tf;
    if (tensor_file_open(&tf, path, err)) return LC_FAIL;
    int rc = LC_OK;
    for (int k = 0; k < n && rc == LC_OK; k++) {
        char tn[320];
        int64_t sh[2] = {L, MOD_COUNT};
        snprintf(tn, sizeof tn, "%s.coef", names[k]);
        if (!(coef[k] = malloc(sizeof(float) * L * MOD_COUNT))) rc = lc_errf(err, "out of memory");
        else rc = tensor_file_read_f32(tf, tn, 2, sh, coef[k], err);
    }
    tensor_file_free(tf);
    return rc;
}

static int add_lora_tensors(bundle_writer *w, const ex_adapter *a, const model_config *c,
                            bundle_dtype dt, lc_err *err) {
    char name[320];
    for (int l = 0; l < c->n_layers; l++)
        for (int m = 0; m < MOD_COUNT; m++) {
            const int s = l * MOD_COUNT + m;
            if (!a->l.A[s]) continue;
            int64_t sa[2] = {a->l.rank, module_in_dim(c, m)}, sb[2] = {module_out_dim(c, m), a->l.rank};
            snprintf(name, sizeof name, "adapter.%s.layers.%d.%s.A", a->name, l, module_short(m));
            if (bundle_writer_add(w, name, 2, sa, a->l.A[s], dt, err)) return LC_FAIL;
            snprintf(name, sizeof name, "adapter.%s.layers.%d.%s.B", a->name, l, module_short(m));
            if (bundle_writer_add(w, name, 2, sb, a->l.B[s], dt, err)) return LC_FAIL;
        }
    return LC_OK;
}

static cJSON *modules_json(unsigned mask) {
    cJSON *a = cJSON_CreateArray();
    for (int m = 0; m < MOD_COUNT; m++)
        if (mask >> m & 1) cJSON_AddItemToArray(a, cJSON_CreateString(module_short(m)));
    return a;
}

static int add_calib_tensors(bundle_writer *w, const char *task, const calib *cb,
                             const model_config *c, bundle_dtype dt, lc_err *err) {
    char name[320];
    const int S = cb->n_slots, pl = cb->per_layer;
    for (int m = 0; m < MOD_COUNT; m++) {
        if (!(cb->module_mask >> m & 1)) continue;
        const int64_t in = module_in_dim(c, m), out = module_out_dim(c, m), k = cb->rank;
        /* each module's (n_slots, ...) tensor is contiguous from slot 0 */
        if (cb->kind == CALIB_BIAS) {
            int64_t sh[2] = {S, out};
            snprintf(name, sizeof name, "task.%s.calib.%s.bias", task, module_short(m));
            if (bundle_writer_add(w, name, pl ? 2 : 1, pl ? sh : sh + 1, cb->p[m], dt, err)) return LC_FAIL;
        } else {
            int64_t s1[3] = {S, k, in}, s2[3] = {S, out, k};
            snprintf(name, sizeof name, "task.%s.calib.%s.P1", task, module_short(m));
            if (bundle_writer_add(w, name, pl ? 3 : 2, pl ? s1 : s1 + 1, cb->P1[m], dt, err)) return LC_FAIL;
            snprintf(name, sizeof name, "task.%s.calib.%s.P2", task, module_short(m));
            if (bundle_writer_add(w, name, pl ? 3 : 2, pl ? s2 : s2 + 1, cb->P2[m], dt, err)) return LC_FAIL;
        }
    }
    return LC_OK;
}

int export_bundle(const model *base, const export_spec *s, FILE *report, lc_err *err) {
    const model_config *c = &base->cfg;
    bundle_writer *w = NULL;
    cJSON *manifest = NULL, **results = NULL;
    ex_adapter ads[MAX_EXPORT_ADAPTERS];
    int n_ads = 0, rc = LC_FAIL;
    size_t *task_bytes = calloc(s->n_items ? s->n_items : 1, sizeof(size_t));
    results = calloc(s->n_items ? s->n_items : 1, sizeof(cJSON *));
    if (!task_bytes || !results) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (s->n_items < 1) {
        lc_errf(err, "export: no task to export");
        goto done;
    }
    if (bundle_writer_open(&w, s->output, err)) goto done;
    manifest = cJSON_CreateObject();
    cJSON_AddStringToObject(manifest, "created_by", "lcmt export");
    cJSON *jbase = bundle_base_identity(base);
    cJSON_AddItemToObject(manifest, "base", jbase);
    if (s->base_path) { /* the pin of the exact base files (BUNDLE.md, Integrity) */
        char hex[LC_SHA256_HEX];
        cJSON *files = NULL;
        if (base_sha256(s->base_path, hex, &files, err)) {
            lc_err_prefix(err, "export: ");
            goto done;
        }
        cJSON_AddStringToObject(jbase, "sha256", hex);
        cJSON_AddItemToObject(jbase, "files", files);
    }
    cJSON *jads = cJSON_AddArrayToObject(manifest, "adapters");
    cJSON *jtasks = cJSON_AddArrayToObject(manifest, "tasks");
    char path[4096], slug[128];
    for (int i = 0; i < s->n_items; i++) {
        const export_item *it = &s->items[i];
        for (int j = 0; j < i; j++)
            if (!strcmp(s->items[j].task, it->task)) {
                lc_errf(err, "export: task '%s' is listed twice (a bundle holds one method per task)", it->task);
                goto done;
            }
        char tslug[128];
        lc_slugify(slug, 64, it->method);
        lc_slugify(tslug, 64, it->task); /* calibrate's folder rule (64-byte names) */
        char jobdir[2048];
        snprintf(jobdir, sizeof jobdir, "%s/%s/%s", s->calibrate_dir, tslug, slug);
        snprintf(path, sizeof path, "%s/results.json", jobdir);
        cJSON *r = results[i] = read_json(path, err);
        if (!r) {
            lc_err_prefix(err, "export: task '%s', method '%s': ", it->task, it->method);
            goto done;
        }
        const char *type = jstr(r, "type");
        if (!type || (strcmp(type, "merge") && strcmp(type, "calibrate"))) {
            lc_errf(err, "%s: method '%s' is of type '%s'; a bundle holds merges and calibrations "
                    "(one inference pass on merged single-task LoRAs)", path, it->method, type ? type : "?");
            goto done;
        }
        const cJSON *recipe = cJSON_GetObjectItemCaseSensitive(r, "merge");
        const cJSON *rads = cJSON_GetObjectItemCaseSensitive(recipe, "adapters");
        if (!cJSON_IsArray(rads)) {
            lc_errf(err, "%s: 'merge.adapters' is missing", path);
            goto done;
        }
        /* the single-task LoRAs, each once */
        for (const cJSON *a = rads->child; a; a = a->next) {
            const char *nm = jstr(a, "name"), *ap = jstr(a, "path");
            if (!nm || !ap) {
                lc_errf(err, "%s: merge.adapters: name and path are required", path);
                goto done;
            }
            int k = -1;
            for (int q = 0; q < n_ads; q++)
                if (!strcmp(ads[q].name, nm)) k = q;
            if (k >= 0) {
                if (strcmp(ads[k].path, ap)) {
                    lc_errf(err, "export: adapter '%s' comes from %s in one task and %s in another", nm,
                            ads[k].path, ap);
                    goto done;
                }
                continue;
            }
            if (n_ads == MAX_EXPORT_ADAPTERS) {
                lc_errf(err, "export: more than %d adapters", MAX_EXPORT_ADAPTERS);
                goto done;
            }
            ex_adapter *e = &ads[n_ads];
            memset(e, 0, sizeof *e);
            e->name = nm;
            if (!(e->path = strdup(ap))) {
                lc_errf(err, "out of memory");
                goto done;
            }
            if (lora_load(&e->l, c, ap, err)) {
                free(e->path);
                lc_err_prefix(err, "export: adapter '%s': ", nm);
                goto done;
            }
            n_ads++;
            if (add_lora_tensors(w, e, c, s->adapter_dtype, err)) goto done;
            cJSON *ja = cJSON_CreateObject();
            cJSON_AddStringToObject(ja, "name", nm);
            cJSON_AddNumberToObject(ja, "rank", e->l.rank);
            cJSON_AddNumberToObject(ja, "alpha", e->l.alpha);
            cJSON_AddBoolToObject(ja, "rslora", e->l.rslora);
            cJSON_AddItemToObject(ja, "modules", modules_json(e->l.module_mask));
            cJSON *ly = cJSON_AddArrayToObject(ja, "layers");
            for (int l = 0; l < c->n_layers; l++)
                if (e->l.layer_on[l]) cJSON_AddItemToArray(ly, cJSON_CreateNumber(l));
            cJSON_AddStringToObject(ja, "dtype", BUNDLE_DTYPE_NAMES[s->adapter_dtype]);
            cJSON_AddItemToArray(jads, ja);
        }
        /* the task */
        cJSON *jt = cJSON_CreateObject();
        cJSON_AddItemToArray(jtasks, jt);
        cJSON_AddStringToObject(jt, "name", it->task);
        cJSON_AddStringToObject(jt, "method", it->method);
        cJSON_AddStringToObject(jt, "type", type);
        cJSON *rec = cJSON_Duplicate(recipe, 1);
        for (cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "adapters")->child; a; a = a->next)
            cJSON_DeleteItemFromObject(a, "path");
        cJSON_AddItemToObject(jt, "merge", rec);
        const char *tpl = jstr(r, "prompt_template");
        if (tpl) cJSON_AddStringToObject(jt, "prompt_template", tpl);
        /* how the prompt was built (calibrate writes these only when not
         * the default: raw format, BOS on) */
        const char *pfmt = jstr(r, "prompt_format"), *sys = jstr(r, "system");
        if (pfmt) cJSON_AddStringToObject(jt, "prompt_format", pfmt);
        if (sys) cJSON_AddStringToObject(jt, "system", sys);
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "add_bos"))) cJSON_AddFalseToObject(jt, "add_bos");
        char prefix[256];
        snprintf(prefix, sizeof prefix, "task.%s.", it->task);
        const char *mname = jstr(recipe, "method");
        if (mname && !strcmp(mname, "learned")) {
            merge_spec ms;
            const char *names[ADAPTER_MAX];
            float *coef[ADAPTER_MAX] = {0};
            int nn, bad = merge_spec_from_json(recipe, &ms, names, &nn, err) ||
                          read_coefs(jobdir, names, nn, c->n_layers, coef, err);
            for (int k = 0; k < nn && !bad; k++) {
                char tn[320];
                int64_t sh[2] = {c->n_layers, MOD_COUNT};
                snprintf(tn, sizeof tn, "task.%s.coef.%s", it->task, names[k]);
                bad = bundle_writer_add(w, tn, 2, sh, coef[k],
                                        s->calib_dtype == BUNDLE_I8 ? BUNDLE_F32 : s->calib_dtype, err);
            }
            for (int k = 0; k < ADAPTER_MAX; k++) free(coef[k]);
            if (bad) goto done;
        }
        const cJSON *cal = cJSON_GetObjectItemCaseSensitive(r, "calibration");
        if (!strcmp(type, "calibrate")) {
            if (!cJSON_IsObject(cal)) {
                lc_errf(err, "%s: 'calibration' is missing", path);
                goto done;
            }
            snprintf(path, sizeof path, "%s/calibration.h5", jobdir);
            calib cb;
            if (calib_load(&cb, c, path, err)) goto done;
            int bad = add_calib_tensors(w, it->task, &cb, c, s->calib_dtype, err);
            cJSON *jc = cJSON_CreateObject();
            cJSON_AddStringToObject(jc, "kind", cb.kind == CALIB_BIAS ? "bias" : "lowrank");
            cJSON_AddNumberToObject(jc, "rank", cb.rank);
            cJSON_AddBoolToObject(jc, "per_layer", cb.per_layer);
            cJSON_AddItemToObject(jc, "modules", modules_json(cb.module_mask));
            cJSON_AddStringToObject(jc, "dtype", BUNDLE_DTYPE_NAMES[s->calib_dtype]);
            cJSON_AddNumberToObject(jc, "n_params", (double)cb.n_params);
            cJSON_AddItemToObject(jt, "calibration", jc);
            calib_free(&cb);
            if (bad) goto done;
        }
        cJSON *res = cJSON_Duplicate(r, 1);
        cJSON_DeleteItemFromObject(res, "merge");
        cJSON_AddItemToObject(jt, "results", res);
        task_bytes[i] = bundle_writer_bytes(w, prefix);
    }
    /* sizes */
    const double base_fp16 = 2.0 * (double)base->n_params;
    size_t ad_bytes = bundle_writer_bytes(w, "adapter.");
    double one_lora = n_ads ? 2.0 * (double)ads[0].l.n_params : 0;
    cJSON *sz = cJSON_AddObjectToObject(manifest, "sizes");
    cJSON_AddNumberToObject(sz, "base_fp16_bytes", base_fp16);
    cJSON_AddNumberToObject(sz, "adapters_bytes", (double)ad_bytes);
    cJSON *tb = cJSON_AddObjectToObject(sz, "tasks_bytes");
    for (int i = 0; i < s->n_items; i++) cJSON_AddNumberToObject(tb, s->items[i].task, (double)task_bytes[i]);
    if (report) {
        fprintf(report, "| part | bytes | vs base (fp16) | vs one single-task LoRA (fp16) |\n"
                        "| --- | ---: | ---: | ---: |\n");
        fprintf(report, "| base model (not in the bundle), fp16 | %.0f | 100 %% | |\n", base_fp16);
        for (int q = 0; q < n_ads; q++) {
            char pre[256];
            snprintf(pre, sizeof pre, "adapter.%s.", ads[q].name);
            size_t b = bundle_writer_bytes(w, pre);
            fprintf(report, "| single-task LoRA '%s' (%s) | %zu | %.3f %% | %.1f %% |\n", ads[q].name,
                    BUNDLE_DTYPE_NAMES[s->adapter_dtype], b, 100.0 * b / base_fp16,
                    one_lora > 0 ? 100.0 * b / (2.0 * ads[q].l.n_params) : 0);
        }
        for (int i = 0; i < s->n_items; i++)
            fprintf(report, "| task '%s' (%s): calibration / coefficients | %zu | %.4f %% | %.2f %% |\n",
                    s->items[i].task, s->items[i].method, task_bytes[i], 100.0 * task_bytes[i] / base_fp16,
                    one_lora > 0 ? 100.0 * task_bytes[i] / one_lora : 0);
    }
    char hex[LC_SHA256_HEX]; /* the SHA-256 of the whole file goes beside it (sha256sum -c reads it) */
    int r = bundle_writer_close_pinned(w, manifest, hex, err);
    w = NULL, manifest = NULL;
    if (r) goto done;
    if (report) fprintf(report, "\nbundle SHA-256: %s (%s.sha256)\n", hex, s->output);
    rc = LC_OK;
done:
    if (w) bundle_writer_abort(w);
    cJSON_Delete(manifest);
    for (int q = 0; q < n_ads; q++) {
        lora_free(&ads[q].l);
        free(ads[q].path);
    }
    for (int i = 0; results && i < s->n_items; i++) cJSON_Delete(results[i]);
    free(results);
    free(task_bytes);
    return rc;
}

int export_interop(model *base, const char *calibrate_dir, const char *task, const char *method,
                   const char *peft_dir, const char *gguf_path, int gguf_f16, lc_err *err) {
    const model_config *c = &base->cfg;
    char slug[128], jobdir[2048], path[4096];
    char tslug[64];
    lc_slugify(slug, 64, method);
    lc_slugify(tslug, sizeof tslug, task);
    snprintf(jobdir, sizeof jobdir, "%s/%s/%s", calibrate_dir, tslug, slug);
    snprintf(path, sizeof path, "%s/results.json", jobdir);
    cJSON *r = read_json(path, err);
    if (!r) return LC_FAIL;
    merge_spec spec;
    const char *names[ADAPTER_MAX];
    lora loras[ADAPTER_MAX], merged = {0}, one = {0};
    lora *ls[ADAPTER_MAX];
    calib cb = {0};
    int n = 0, n_loaded = 0, have_cb = 0, have_merged = 0, rc = LC_FAIL;
    float *coef[ADAPTER_MAX] = {0};
    const cJSON *recipe = cJSON_GetObjectItemCaseSensitive(r, "merge");
    if (!recipe || merge_spec_from_json(recipe, &spec, names, &n, err)) {
        lc_err_prefix(err, "%s: ", path);
        goto done;
    }
    if (!merge_gives_lora(&spec) && spec.method != MERGE_LINEAR) {
        lc_errf(err, "%s: merge '%s' gives a dense delta, which is not a LoRA; export 'concat', 'svd', "
                "'lorahub', 'learned' or a calibration on one of them", path, MERGE_NAMES[spec.method]);
        goto done;
    }
    if (spec.method == MERGE_LINEAR) spec.method = MERGE_CONCAT; /* the same delta, as a LoRA */
    int i = 0;
    for (const cJSON *a = cJSON_GetObjectItemCaseSensitive(recipe, "adapters")->child; a; a = a->next, i++) {
        const char *ap = jstr(a, "path");
        if (!ap) {
            lc_errf(err, "%s: merge.adapters[%d].path is missing", path, i);
            goto done;
        }
        if (lora_load(&loras[i], c, ap, err)) goto done;
        n_loaded++;
        ls[i] = &loras[i];
        snprintf(loras[i].name, sizeof loras[i].name, "%s", names[i]);
    }
    if (spec.method == MERGE_LEARNED) {
        if (read_coefs(jobdir, names, n, c->n_layers, coef, err)) goto done;
        spec.coef = (const float *const *)coef;
    }
    if (merge_to_lora(&spec, ls, n, c, &merged, err)) goto done;
    have_merged = 1;
    const cJSON *cal = cJSON_GetObjectItemCaseSensitive(r, "calibration");
    if (cJSON_IsObject(cal)) {
        snprintf(path, sizeof path, "%s/calibration.h5", jobdir);
        if (calib_load(&cb, c, path, err)) goto done;
        have_cb = 1;
    }
    if (lora_append_calib(&merged, have_cb ? &cb : NULL, c, &one, err)) {
        lc_err_prefix(err, "task '%s', method '%s': ", task, method);
        goto done;
    }
    if (peft_dir && peft_write_lora(&one, c, peft_dir, err)) goto done;
    if (gguf_path && gguf_write_lora(&one, c, gguf_path, gguf_f16, err)) goto done;
    rc = LC_OK;
done:
    lora_free(&one);
    if (have_merged) lora_free(&merged);
    if (have_cb) calib_free(&cb);
    for (int k = 0; k < n_loaded; k++) lora_free(&loras[k]);
    for (int k = 0; k < ADAPTER_MAX; k++) free(coef[k]);
    cJSON_Delete(r);
    return rc;
}
