/* recipe.c: see recipe.h. */
#include "recipe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

const char *const TIES_MEAN_NAMES[] = {"count", "weight", NULL};

cJSON *merge_spec_to_json(const merge_spec *s, const char *const *names, const char *const *paths,
                          int n, const recipe_lorahub *hub) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    int ok = cJSON_AddStringToObject(r, "method", MERGE_NAMES[s->method]) != NULL;
    cJSON *ads = cJSON_AddArrayToObject(r, "adapters");
    ok &= ads != NULL;
    for (int i = 0; ok && i < n; i++) {
        cJSON *a = cJSON_CreateObject();
        ok = a && cJSON_AddItemToArray(ads, a) && cJSON_AddStringToObject(a, "name", names[i]) &&
             (!paths || !paths[i] || cJSON_AddStringToObject(a, "path", paths[i])) &&
             cJSON_AddNumberToObject(a, "weight", s->weights[i]);
    }
    switch (s->method) {
    case MERGE_TIES: case MERGE_DARE_LINEAR: case MERGE_DARE_TIES:
        ok &= cJSON_AddNumberToObject(r, "density", s->density) != NULL;
        ok &= cJSON_AddNumberToObject(r, "lambda", s->lambda) != NULL;
        if (s->method != MERGE_DARE_LINEAR)
            ok &= cJSON_AddStringToObject(r, "ties_mean", TIES_MEAN_NAMES[s->mean]) != NULL;
        if (s->method != MERGE_TIES) ok &= cJSON_AddNumberToObject(r, "seed", (double)s->seed) != NULL;
        if (s->svd_rank > 0) ok &= cJSON_AddNumberToObject(r, "svd_rank", s->svd_rank) != NULL;
        break;
    case MERGE_SVD: ok &= cJSON_AddNumberToObject(r, "svd_rank", s->svd_rank) != NULL; break;
    case MERGE_SLERP: ok &= cJSON_AddNumberToObject(r, "t", s->t) != NULL; break;
    case MERGE_LEARNED: ok &= cJSON_AddStringToObject(r, "coefficients", "coefficients.h5") != NULL; break;
    case MERGE_LORAHUB:
        if (hub) {
            ok &= cJSON_AddNumberToObject(r, "examples", hub->examples) != NULL;
            ok &= cJSON_AddNumberToObject(r, "budget", hub->budget) != NULL;
            ok &= cJSON_AddNumberToObject(r, "l1", hub->l1) != NULL;
        }
        break;
    default: break;
    }
    ok &= cJSON_AddStringToObject(r, "result", merge_gives_lora(s) ? "lora" : "dense") != NULL;
    if (!ok) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* A number under key k of o, if present: 0 absent, 1 read, -1 wrong type
 * or outside [lo, hi] (error set). */
static int rnum(const cJSON *o, const char *k, const char *where, double lo, double hi, double *v,
                lc_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x) return 0;
    double d;
    if (cfg_json_number(x, "merge recipe", where, k, &d, err)) return -1;
    if (!(d >= lo && d <= hi)) {
        lc_errf(err, "merge recipe: %s'%s': %g is outside [%g, %g]", where, k, d, lo, hi);
        return -1;
    }
    *v = d;
    return 1;
}

int merge_spec_from_json(const cJSON *j, merge_spec *s, const char **names, int *n, lc_err *err) {
    *n = 0;
    if (!cJSON_IsObject(j)) return lc_errf(err, "merge recipe: expected an object, found %s", cfg_json_type(j));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "method");
    int method = -1;
    for (int k = 0; cJSON_IsString(m) && MERGE_NAMES[k]; k++)
        if (!strcmp(m->valuestring, MERGE_NAMES[k])) method = k;
    if (method < 0)
        return lc_errf(err, "merge recipe: 'method': %s%s%s is not a merge method", m ? "" : "missing",
                       cJSON_IsString(m) ? m->valuestring : "", m && !cJSON_IsString(m) ? "not a string" : "");
    merge_spec_default(s, (merge_method)method);
    const cJSON *ads = cJSON_GetObjectItemCaseSensitive(j, "adapters");
    if (!cJSON_IsArray(ads) || cJSON_GetArraySize(ads) < 1 || cJSON_GetArraySize(ads) > ADAPTER_MAX)
        return lc_errf(err, "merge recipe: 'adapters' must list 1 to %d adapters", ADAPTER_MAX);
    for (const cJSON *a = ads->child; a; a = a->next) {
        char where[48];
        snprintf(where, sizeof where, "adapters[%d].", *n);
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(a, "name");
        if (!cJSON_IsString(nm) || !nm->valuestring[0])
            return lc_errf(err, "merge recipe: adapters[%d] has no name", *n);
        double w = 1.0;
        if (rnum(a, "weight", where, -HUGE_VAL, HUGE_VAL, &w, err) < 0) return LC_FAIL;
        names[*n] = nm->valuestring;
        s->weights[(*n)++] = w;
    }
    double v;
    int r;
    if ((r = rnum(j, "density", "", 0, 1, &v, err)) < 0) return LC_FAIL;
    if (r) s->density = v;
    if ((r = rnum(j, "lambda", "", -HUGE_VAL, HUGE_VAL, &v, err)) < 0) return LC_FAIL;
    if (r) s->lambda = v;
    if ((r = rnum(j, "seed", "", 0, 9007199254740992.0, &v, err)) < 0) return LC_FAIL;
    if (r) s->seed = (uint64_t)v;
    if ((r = rnum(j, "svd_rank", "", 0, 65536, &v, err)) < 0) return LC_FAIL;
    if (r) s->svd_rank = (int)v;
    if ((r = rnum(j, "t", "", 0, 1, &v, err)) < 0) return LC_FAIL;
    if (r) s->t = v;
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(j, "ties_mean");
    if (mean) {
        int k = 0;
        while (cJSON_IsString(mean) && TIES_MEAN_NAMES[k] && strcmp(mean->valuestring, TIES_MEAN_NAMES[k])) k++;
        if (!cJSON_IsString(mean) || !TIES_MEAN_NAMES[k])
            return lc_errf(err, "merge recipe: 'ties_mean': expected \"count\" or \"weight\", found %s%s%s",
                           cJSON_IsString(mean) ? "\"" : cfg_json_type(mean),
                           cJSON_IsString(mean) ? mean->valuestring : "", cJSON_IsString(mean) ? "\"" : "");
        s->mean = (ties_mean)k;
    }
    return LC_OK;
}
