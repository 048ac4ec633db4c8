/* adapter_io.c: LoRA adapters (PEFT folders and the project's HDF5 file) and
 * Learnable Calibration parameters (HDF5 or safetensors), read and write.
 *
 * PEFT tensor names:
 *   base_model.model.model.layers.<i>.<self_attn|mlp>.<m>_proj.lora_<A|B>[.<adapter>].weight
 * with A (r, in) and B (out, r). The adapted (layer, module) set is taken
 * from the tensors present and checked against adapter_config.json.
 *
 * Calibration tensors: calib.<short>.bias (out) | (L, out),
 * calib.<short>.P1 (k, in) | (L, k, in), calib.<short>.P2 (out, k) |
 * (L, out, k); metadata format, version, kind, rank, per_layer, modules. */
#include "loaders.h"
#include "config.h"
#include "tensor_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H5_LORA_FORMAT "lcmt-lora"
#define H5_CALIB_FORMAT "lcmt-calib"
#define H5_VERSION "1"
#define PEFT_PREFIX "base_model.model.model.layers."

static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* ---- small helpers ---------------------------------------------------- */

static int is_hdf5_file(const char *path) {
    unsigned char sig[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(sig, 1, sizeof sig, f);
    fclose(f);
    return n == sizeof sig && !memcmp(sig, HDF5_SIGNATURE, sizeof sig);
}

/* name = basename of path without trailing '/' and without a known
 * extension (.h5, .hdf5, .safetensors). */
static void name_from_path(char *dst, size_t n, const char *path) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t blen = len - start;
    static const char *const exts[] = {".h5", ".hdf5", ".safetensors"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t el = strlen(exts[i]);
        if (blen > el && !memcmp(path + start + blen - el, exts[i], el)) {
            blen -= el;
            break;
        }
    }
    if (blen >= n) blen = n - 1;
    memcpy(dst, path + start, blen);
    dst[blen] = 0;
}


/* "<file>: tensor '<name>': expected shape [a, b], found [c, d]" */
static int check_shape(const tensor_file *tf, const tensor_info *ti, int ndim,
                       const int64_t *shape, lc_err *err) {
    int same = ti->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = ti->shape[i] == shape[i];
    if (same) return LC_OK;
    char want[128], got[128];
    tensor_shape_str(want, sizeof want, ndim, shape);
    tensor_shape_str(got, sizeof got, ti->ndim, ti->shape);
    return lc_errf(err, "%s: tensor '%s': expected shape %s, found %s", tensor_file_path_of(tf, ti),
                   ti->name, want, got);
}

static const cJSON *json_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int json_is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
           fabs(v->valuedouble) < 2147483647.0;
}

/* Region sizes of a parameter block: the tensors of a LoRA or calibration
 * tile its data block without gaps (lora_init / calib_init), so the size of
 * the tensor starting at p is the distance to the next start. */
typedef struct {
    const float **starts;
    int n;
    const float *end;
} block_index;

static int cmp_ptr(const void *a, const void *b) {
    const float *x = *(const float *const *)a, *y = *(const float *const *)b;
    return (x > y) - (x < y);
}

static int block_index_init(block_index *bi, const float *data, size_t n_params,
                            float *const *lists[], size_t list_len, int n_lists, lc_err *err) {
    bi->n = 0;
    bi->end = data + n_params;
    bi->starts = lc_malloc(sizeof(float *) * list_len * n_lists, err);
    if (!bi->starts) return LC_FAIL;
    for (int k = 0; k < n_lists; k++)
        for (size_t i = 0; i < list_len; i++)
            if (lists[k][i]) bi->starts[bi->n++] = lists[k][i];
    qsort(bi->starts, bi->n, sizeof(float *), cmp_ptr);
    return LC_OK;
}

static size_t block_index_size(const block_index *bi, const float *p) {
    int lo = 0, hi = bi->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (bi->starts[mid] == p) return (size_t)((mid + 1 < bi->n ? bi->starts[mid + 1] : bi->end) - p);
        if (bi->starts[mid] < p) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

/* ---- LoRA: adapter_config.json ---------------------------------------- */

typedef struct {
    int rank;
    double alpha, dropout;
    int rslora;
    unsigned target_mask;
    int has_layers;
    unsigned char *layers; /* (n_layers) when has_layers */
} peft_config;

/* One target_modules entry: "q_proj", "self_attn.q_proj", "q" or a full
 * path ending in one of those. -1 if unknown. */
static int parse_target(const char *s) {
    int m = module_parse(s);
    if (m >= 0) return m;
    const char *dot = strrchr(s, '.');
    if (!dot) return -1;
    m = module_parse(dot + 1);
    return m >= 0 && strlen(dot + 1) > 2 ? m : -1; /* a suffix "x.q" is not q_proj */
}

static int parse_peft_config(const char *text, const char *src, int n_layers, peft_config *pc,
                             lc_err *err) {
    memset(pc, 0, sizeof *pc);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, strlen(text), &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return lc_errf(err, "%s: invalid JSON near byte %zu", src, at);
    }
    int rc = LC_FAIL;
    const cJSON *v;
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: expected a JSON object at the top level, found %s", src,
                cfg_json_type(root));
        goto done;
    }
    if ((v = json_get(root, "peft_type")) &&
        (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA"))) {
        lc_errf(err, "%s: key 'peft_type': expected \"LORA\", found %s%s%s", src,
                cJSON_IsString(v) ? "'" : "", cJSON_IsString(v) ? v->valuestring : cfg_json_type(v),
                cJSON_IsString(v) ? "'" : "");
        goto done;
    }
    if (!(v = json_get(root, "r"))) {
        lc_errf(err, "%s: key 'r': missing", src);
        goto done;
    }
    if (!json_is_int(v) || v->valuedouble <= 0) {
        if (!cJSON_IsNumber(v))
            lc_errf(err, "%s: key 'r': expected a number, found %s", src, cfg_json_type(v));
        else
            lc_errf(err, "%s: key 'r': expected a positive integer, found %g", src, v->valuedouble);
        goto done;
    }
    pc->rank = (int)v->valuedouble;
    pc->alpha = 8; /* PEFT's default */
    if ((v = json_get(root, "lora_alpha"))) {
        if (!cJSON_IsNumber(v)) {
            lc_errf(err, "%s: key 'lora_alpha': expected a number, found %s", src, cfg_json_type(v));
            goto done;
        }
        pc->alpha = v->valuedouble;
    }
    if ((v = json_get(root, "lora_dropout"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1)) {
            lc_errf(err, "%s: key 'lora_dropout': expected a number in [0, 1), found %s", src,
                    cJSON_IsNumber(v) ? "a value out of range" : cfg_json_type(v));
            goto done;
        }
        pc->dropout = v->valuedouble;
    }
    if ((v = json_get(root, "use_rslora"))) {
        if (!cJSON_IsBool(v)) {
            lc_errf(err, "%s: key 'use_rslora': expected a boolean, found %s", src, cfg_json_type(v));
            goto done;
        }
        pc->rslora = cJSON_IsTrue(v);
    }
    if ((v = json_get(root, "use_dora")) && cJSON_IsTrue(v)) {
        lc_errf(err, "%s: key 'use_dora': DoRA adapters are not supported", src);
        goto done;
    }
    if ((v = json_get(root, "bias")) && (!cJSON_IsString(v) || strcmp(v->valuestring, "none"))) {
        lc_errf(err, "%s: key 'bias': only \"none\" is supported", src);
        goto done;
    }
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++)
        if ((v = json_get(root, patterns[i])) &&
            (!cJSON_IsObject(v) || cJSON_GetArraySize(v) > 0)) {
            lc_errf(err, "%s: key '%s': per-module ranks or alphas are not supported", src,
                    patterns[i]);
            goto done;
        }
    if ((v = json_get(root, "modules_to_save")) && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 0)) {
        lc_errf(err, "%s: key 'modules_to_save': not supported", src);
        goto done;
    }
    /* target_modules */
    if (!(v = json_get(root, "target_modules"))) {
        lc_errf(err, "%s: key 'target_modules': missing", src);
        goto done;
    }
    if (cJSON_IsString(v)) {
        int m = parse_target(v->valuestring);
        if (!strcmp(v->valuestring, "all-linear")) {
            pc->target_mask = MOD_MASK_ALL;
        } else if (m >= 0) {
            pc->target_mask = 1u << m;
        } else {
            lc_errf(err, "%s: key 'target_modules': unsupported value '%s' (a list of module "
                    "names or \"all-linear\"; regular expressions are not supported)",
                    src, v->valuestring);
            goto done;
        }
    } else if (cJSON_IsArray(v)) {
        int i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            int m = cJSON_IsString(it) ? parse_target(it->valuestring) : -1;
            if (m < 0) {
                lc_errf(err, "%s: key 'target_modules[%d]': unsupported module %s%s%s (supported: "
                        "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)", src, i,
                        cJSON_IsString(it) ? "'" : "",
                        cJSON_IsString(it) ? it->valuestring : cfg_json_type(it),
                        cJSON_IsString(it) ? "'" : "");
                goto done;
            }
            pc->target_mask |= 1u << m;
        }
        if (!pc->target_mask) {
            lc_errf(err, "%s: key 'target_modules': empty list", src);
            goto done;
        }
    } else {
        lc_errf(err, "%s: key 'target_modules': expected a list or a string, found %s", src,
                cfg_json_type(v));
        goto done;
    }
    /* layers_to_transform */
    if ((v = json_get(root, "layers_to_transform"))) {
        pc->has_layers = 1;
        pc->layers = lc_calloc(n_layers, 1, err);
        if (!pc->layers) goto done;
        int single = !cJSON_IsArray(v);
        const cJSON *it = single ? v : v->child;
        for (int i = 0; it; it = single ? NULL : it->next, i++) {
            char key[64];
            if (single) snprintf(key, sizeof key, "layers_to_transform");
            else snprintf(key, sizeof key, "layers_to_transform[%d]", i);
            if (!json_is_int(it)) {
                lc_errf(err, "%s: key '%s': expected an integer, found %s", src, key,
                        cfg_json_type(it));
                goto done;
            }
            int layer = (int)it->valuedouble;
            if (layer < 0 || layer >= n_layers) {
                lc_errf(err, "%s: key '%s': layer %d is outside the model's %d layers", src, key,
                        layer, n_layers);
                goto done;
            }
            pc->layers[layer] = 1;
        }
    }
    rc = LC_OK;
done:
    cJSON_Delete(root);
    if (rc) {
        free(pc->layers);
        pc->layers = NULL;
    }
    return rc;
}

static char *peft_config_json(const lora *l) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(o, "r", l->rank);
    cJSON_AddNumberToObject(o, "lora_alpha", l->alpha);
    cJSON_AddBoolToObject(o, "use_rslora", l->rslora != 0);
    cJSON_AddNumberToObject(o, "lora_dropout", l->dropout);
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON *tm = cJSON_AddArrayToObject(o, "target_modules");
    for (int m = 0; tm && m < MOD_COUNT; m++)
        if (l->module_mask >> m & 1) cJSON_AddItemToArray(tm, cJSON_CreateString(module_name(m)));
    int all = 1;
    for (int i = 0; i < l->n_layers; i++) all &= l->layer_on[i] != 0;
    if (all) {
        cJSON_AddNullToObject(o, "layers_to_transform");
    } else {
        cJSON *lt = cJSON_AddArrayToObject(o, "layers_to_transform");
        for (int i = 0; lt && i < l->n_layers; i++)
            if (l->layer_on[i]) cJSON_AddItemToArray(lt, cJSON_CreateNumber(i));
    }
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* ---- LoRA: tensors ---------------------------------------------------- */

enum { NAME_OK = 0, NAME_NOT_LORA, NAME_UNKNOWN_MODULE };

/* Parses a PEFT LoRA tensor name. On NAME_UNKNOWN_MODULE, module_buf holds
 * the module path found. */
static int parse_lora_name(const char *name, int *layer, int *mod, int *is_b, char *module_buf,
                           size_t module_n) {
    size_t pl = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, pl)) return NAME_NOT_LORA;
    const char *p = name + pl;
    long v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 9) v = v * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.') return NAME_NOT_LORA;
    p++;
    const char *a = strstr(p, ".lora_A."), *b = strstr(p, ".lora_B.");
    const char *hit = a && (!b || a < b) ? a : b;
    if (!hit) return NAME_NOT_LORA;
    /* suffix: "weight" or "<adapter>.weight" */
    const char *suf = hit + 8;
    const char *dot = strchr(suf, '.');
    if (strcmp(suf, "weight") && !(dot && dot > suf && !strcmp(dot, ".weight") &&
                                   !strchr(dot + 1, '.')))
        return NAME_NOT_LORA;
    *layer = (int)v;
    *is_b = hit == b;
    size_t mlen = (size_t)(hit - p);
    *mod = -1;
    for (int m = 0; m < MOD_COUNT; m++)
        if (strlen(module_path(m)) == mlen && !memcmp(p, module_path(m), mlen)) *mod = m;
    if (*mod >= 0) return NAME_OK;
    if (mlen >= module_n) mlen = module_n - 1;
    memcpy(module_buf, p, mlen);
    module_buf[mlen] = 0;
    return NAME_UNKNOWN_MODULE;
}

/* Builds l from a parsed config and the tensors of tf. */
static int lora_from_tensors(lora *l, const model_config *c, const peft_config *pc,
                             const char *cfg_src, tensor_file *tf, lc_err *err) {
    const int L = c->n_layers;
    const size_t slots = (size_t)L * MOD_COUNT;
    int *idx[2] = {lc_malloc(sizeof(int) * slots, err), lc_malloc(sizeof(int) * slots, err)};
    unsigned char *layer_on = lc_calloc(L, 1, err);
    int rc = LC_FAIL;
    if (!idx[0] || !idx[1] || !layer_on) goto done;
    for (size_t s = 0; s < slots; s++) idx[0][s] = idx[1][s] = -1;
    unsigned present = 0;
    for (int i = 0; i < tensor_file_count(tf); i++) {
        const tensor_info *ti = tensor_file_at(tf, i);
        const char *file = tensor_file_path_of(tf, ti);
        int layer, mod, is_b;
        char mbuf[128];
        int r = parse_lora_name(ti->name, &layer, &mod, &is_b, mbuf, sizeof mbuf);
        if (r == NAME_NOT_LORA) {
            lc_errf(err, "%s: tensor '%s': not a LoRA tensor of a Llama-family model (expected "
                    "%s<i>.<module>.lora_A.weight)", file, ti->name, PEFT_PREFIX);
            goto done;
        }
        if (r == NAME_UNKNOWN_MODULE) {
            lc_errf(err, "%s: tensor '%s': unknown module '%s'", file, ti->name, mbuf);
            goto done;
        }
        if (layer >= L) {
            lc_errf(err, "%s: tensor '%s': layer %d is past the model's %d layers (0..%d)", file,
                    ti->name, layer, L, L - 1);
            goto done;
        }
        if (!(pc->target_mask >> mod & 1)) {
            lc_errf(err, "%s: tensor '%s': module %s is not in target_modules of %s", file,
                    ti->name, module_name(mod), cfg_src);
            goto done;
        }
        if (pc->has_layers && !pc->layers[layer]) {
            lc_errf(err, "%s: tensor '%s': layer %d is not in layers_to_transform of %s", file,
                    ti->name, layer, cfg_src);
            goto done;
        }
        size_t s = (size_t)layer * MOD_COUNT + mod;
        if (idx[is_b][s] >= 0) {
            lc_errf(err, "%s: tensor '%s': duplicate of '%s'", file, ti->name,
                    tensor_file_at(tf, idx[is_b][s])->name);
            goto done;
        }
        int64_t shape[2] = {pc->rank, module_in_dim(c, mod)};
        if (is_b) shape[0] = module_out_dim(c, mod), shape[1] = pc->rank;
        if (check_shape(tf, ti, 2, shape, err)) goto done;
        idx[is_b][s] = i;
        present |= 1u << mod;
        layer_on[layer] = 1;
    }
    for (size_t s = 0; s < slots; s++) {
        if ((idx[0][s] < 0) == (idx[1][s] < 0)) continue;
        int have = idx[0][s] >= 0 ? 0 : 1;
        const tensor_info *ti = tensor_file_at(tf, idx[have][s]);
        char want[256];
        lora_tensor_name(want, sizeof want, (int)(s / MOD_COUNT), (module_kind)(s % MOD_COUNT),
                         !have);
        lc_errf(err, "%s: tensor '%s': its lora_%c partner is missing (expected '%s')",
                tensor_file_path_of(tf, ti), ti->name, have ? 'A' : 'B', want);
        goto done;
    }
    if (!present) {
        lc_errf(err, "%s: no LoRA tensors", tensor_file_path(tf));
        goto done;
    }
    for (int m = 0; m < MOD_COUNT; m++)
        if ((pc->target_mask >> m & 1) && !(present >> m & 1)) {
            lc_errf(err, "%s: key 'target_modules': %s has no tensors in %s", cfg_src,
                    module_name(m), tensor_file_path(tf));
            goto done;
        }
    if (lora_init(l, c, pc->rank, (float)pc->alpha, pc->rslora, present, layer_on, err)) {
        lc_err_prefix(err, "%s: ", cfg_src);
        goto done;
    }
    l->dropout = (float)pc->dropout;
    /* (layer, module) pairs adapted elsewhere but absent here stay zero */
    for (size_t s = 0; s < slots; s++) {
        if (idx[0][s] < 0) continue;
        int m = (int)(s % MOD_COUNT);
        int64_t sa[2] = {pc->rank, module_in_dim(c, m)}, sb[2] = {module_out_dim(c, m), pc->rank};
        if (tensor_file_read_f32(tf, tensor_file_at(tf, idx[0][s])->name, 2, sa, l->A[s], err) ||
            tensor_file_read_f32(tf, tensor_file_at(tf, idx[1][s])->name, 2, sb, l->B[s], err)) {
            lora_free(l);
            goto done;
        }
    }
    rc = LC_OK;
done:
    free(idx[0]);
    free(idx[1]);
    free(layer_on);
    return rc;
}

static int lora_load_peft(lora *l, const model_config *c, const char *dir, lc_err *err) {
    char cfg_path[4200], st_path[4200];
    if (snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir) >= (int)sizeof cfg_path)
        return lc_errf(err, "%s: path too long", dir);
    if (snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir) >= (int)sizeof st_path)
        return lc_errf(err, "%s: path too long", dir);
    if (access(st_path, F_OK) != 0) {
        char bin[4200];
        if (snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir) >= (int)sizeof bin)
            return lc_errf(err, "%s: path too long", dir);
        if (access(bin, F_OK) == 0)
            return lc_errf(err, "%s: pickled PyTorch adapters are not supported; save the adapter "
                           "with safe_serialization=True", bin);
        return lc_errf(err, "%s: missing (expected a PEFT adapter folder)", st_path);
    }
    char *text = lc_read_file(cfg_path, NULL, err);
    if (!text) return LC_FAIL;
    peft_config pc;
    int rc = parse_peft_config(text, cfg_path, c->n_layers, &pc, err);
    free(text);
    if (rc) return LC_FAIL;
    tensor_file *tf = NULL;
    if (tensor_file_open(&tf, st_path, err) == LC_OK)
        rc = lora_from_tensors(l, c, &pc, cfg_path, tf, err);
    else
        rc = LC_FAIL;
    tensor_file_free(tf);
    free(pc.layers);
    return rc;
}

static int lora_load_h5(lora *l, const model_config *c, const char *path, lc_err *err) {
    tensor_file *tf = NULL;
    if (tensor_file_open(&tf, path, err)) return LC_FAIL;
    int rc = LC_FAIL;
    const char *fmt = tensor_file_meta(tf, "format"), *ver = tensor_file_meta(tf, "version");
    const char *json = tensor_file_meta(tf, "adapter_config");
    char src[4200];
    snprintf(src, sizeof src, "%s: attribute 'adapter_config'", path);
    if (!fmt || strcmp(fmt, H5_LORA_FORMAT)) {
        lc_errf(err, "%s: attribute 'format': expected '%s', found %s%s%s", path, H5_LORA_FORMAT,
                fmt ? "'" : "", fmt ? fmt : "none", fmt ? "'" : "");
    } else if (!ver || strcmp(ver, H5_VERSION)) {
        lc_errf(err, "%s: attribute 'version': expected '%s', found %s%s%s", path, H5_VERSION,
                ver ? "'" : "", ver ? ver : "none", ver ? "'" : "");
    } else if (!json) {
        lc_errf(err, "%s: attribute 'adapter_config': missing", path);
    } else {
        peft_config pc;
        if (parse_peft_config(json, src, c->n_layers, &pc, err) == LC_OK) {
            rc = lora_from_tensors(l, c, &pc, src, tf, err);
            free(pc.layers);
        }
    }
    tensor_file_free(tf);
    return rc;
}

int lora_load(lora *l, const model_config *c, const char *path, lc_err *err) {
    memset(l, 0, sizeof *l);
    struct stat st;
    if (stat(path, &st) != 0) return lc_errf(err, "%s: cannot open LoRA: %s", path, strerror(errno));
    int rc;
    if (S_ISDIR(st.st_mode)) rc = lora_load_peft(l, c, path, err);
    else if (is_hdf5_file(path)) rc = lora_load_h5(l, c, path, err);
    else
        return lc_errf(err, "%s: not a PEFT adapter folder nor an HDF5 LoRA file", path);
    if (rc == LC_OK) name_from_path(l->name, sizeof l->name, path);
    return rc;
}

/* Adds every A and B of l to w; dims are recovered from the block layout. */
static int lora_add_tensors(const lora *l, tensor_writer *w, const char *path, lc_err *err) {
    const size_t slots = (size_t)l->n_layers * MOD_COUNT;
    float *const *lists[2] = {l->A, l->B};
    block_index bi;
    if (block_index_init(&bi, l->data, l->n_params, lists, slots, 2, err)) return LC_FAIL;
    int rc = LC_OK;
    for (size_t s = 0; s < slots && rc == LC_OK; s++) {
        if (!l->A[s] || !l->B[s]) continue;
        size_t na = block_index_size(&bi, l->A[s]), nb = block_index_size(&bi, l->B[s]);
        if (!na || !nb || na % l->rank || nb % l->rank) {
            rc = lc_errf(err, "%s: LoRA '%s' has an unexpected memory layout", path, l->name);
            break;
        }
        int layer = (int)(s / MOD_COUNT);
        module_kind m = (module_kind)(s % MOD_COUNT);
        char name[256];
        int64_t sa[2] = {l->rank, (int64_t)(na / l->rank)}, sb[2] = {(int64_t)(nb / l->rank), l->rank};
        lora_tensor_name(name, sizeof name, layer, m, 0);
        rc = tensor_writer_add_f32(w, name, 2, sa, l->A[s], DT_F32, err);
        if (rc) break;
        lora_tensor_name(name, sizeof name, layer, m, 1);
        rc = tensor_writer_add_f32(w, name, 2, sb, l->B[s], DT_F32, err);
    }
    free(bi.starts);
    return rc;
}

static int save_peft_files(void *ctx, const char *dir, lc_err *err) {
    const lora *l = ctx;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    tensor_writer *w = NULL;
    if (tensor_writer_open(&w, path, TW_SAFETENSORS, err)) return LC_FAIL;
    if (tensor_writer_meta(w, "format", "pt", err) || lora_add_tensors(l, w, path, err)) {
        tensor_writer_abort(w);
        return LC_FAIL;
    }
    if (tensor_writer_close(w, err)) return LC_FAIL;
    if (snprintf(path, sizeof path, "%s/adapter_config.json", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    char *json = peft_config_json(l);
    if (!json) return lc_errf(err, "%s: out of memory", dir);
    int rc = lc_write_text_atomic(path, json, err);
    free(json);
    return rc;
}

/* the two files written as one folder (lc_dir_write): a kill or a failed
 * write never leaves new tensors beside an old adapter_config.json */
int lora_save_peft(const lora *l, const char *dir, lc_err *err) {
    return lc_dir_write(dir, 1, save_peft_files, (void *)l, err);
}

int lora_save_h5(const lora *l, const char *path, lc_err *err) {
    char *json = peft_config_json(l);
    if (!json) return lc_errf(err, "%s: out of memory", path);
    tensor_writer *w = NULL;
    int rc = tensor_writer_open(&w, path, TW_HDF5, err);
    if (rc == LC_OK) {
        if (tensor_writer_meta(w, "format", H5_LORA_FORMAT, err) ||
            tensor_writer_meta(w, "version", H5_VERSION, err) ||
            tensor_writer_meta(w, "adapter_config", json, err) ||
            lora_add_tensors(l, w, path, err)) {
            tensor_writer_abort(w);
            rc = LC_FAIL;
        } else {
            rc = tensor_writer_close(w, err);
        }
    }
    free(json);
    return rc;
}

/* ---- calibration ------------------------------------------------------ */

static int parse_meta_int(const char *s, int *out) {
    if (!s || !*s) return LC_FAIL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < -2147483647L || v > 2147483647L) return LC_FAIL;
    *out = (int)v;
    return LC_OK;
}


/* Name and shape of part (0: bias or P1, 1: P2) of module m's calibration
 * tensor; returns the number of dims. */
static int calib_expect(const model_config *c, calib_kind kind, int rank, int per_layer, int m,
                        int part, char name[128], int64_t shape[3]) {
    const int in = module_in_dim(c, m), out = module_out_dim(c, m);
    int nd = 0;
    if (per_layer) shape[nd++] = c->n_layers;
    if (kind == CALIB_BIAS) shape[nd++] = out;
    else if (part == 0) shape[nd++] = rank, shape[nd++] = in;
    else shape[nd++] = out, shape[nd++] = rank;
    calib_tensor_name(name, 128, m, kind == CALIB_BIAS ? "bias" : part == 0 ? "P1" : "P2");
    return nd;
}

static int calib_check_tensor(const tensor_file *tf, const char *path, const char *mods,
                              const char *name, int nd, const int64_t *shape, lc_err *err) {
    const tensor_info *ti = tensor_file_find(tf, name);
    if (!ti) return lc_errf(err, "%s: tensor '%s': missing (metadata modules '%s')", path, name, mods);
    return check_shape(tf, ti, nd, shape, err);
}

int calib_load(calib *cb, const model_config *c, const char *path, lc_err *err) {
    memset(cb, 0, sizeof *cb);
    tensor_file *tf = NULL;
    if (tensor_file_open(&tf, path, err)) return LC_FAIL;
    int rc = LC_FAIL;
    float *tmp = NULL;
    const char *fmt = tensor_file_meta(tf, "format"), *ver = tensor_file_meta(tf, "version");
    const char *kind_s = tensor_file_meta(tf, "kind"), *rank_s = tensor_file_meta(tf, "rank");
    const char *pl_s = tensor_file_meta(tf, "per_layer"), *mods = tensor_file_meta(tf, "modules");
    if (!fmt || strcmp(fmt, H5_CALIB_FORMAT)) {
        lc_errf(err, "%s: metadata 'format': expected '%s', found %s%s%s", path, H5_CALIB_FORMAT,
                fmt ? "'" : "", fmt ? fmt : "none", fmt ? "'" : "");
        goto done;
    }
    if (ver && strcmp(ver, H5_VERSION)) {
        lc_errf(err, "%s: metadata 'version': expected '%s', found '%s'", path, H5_VERSION, ver);
        goto done;
    }
    calib_kind kind;
    if (kind_s && !strcmp(kind_s, "bias")) kind = CALIB_BIAS;
    else if (kind_s && !strcmp(kind_s, "lowrank")) kind = CALIB_LOWRANK;
    else {
        lc_errf(err, "%s: metadata 'kind': expected 'bias' or 'lowrank', found %s%s%s", path,
                kind_s ? "'" : "", kind_s ? kind_s : "none", kind_s ? "'" : "");
        goto done;
    }
    int rank = 0, per_layer = 0;
    if (kind == CALIB_LOWRANK && (parse_meta_int(rank_s, &rank) || rank <= 0)) {
        lc_errf(err, "%s: metadata 'rank': expected a positive integer, found %s%s%s", path,
                rank_s ? "'" : "", rank_s ? rank_s : "none", rank_s ? "'" : "");
        goto done;
    }
    if (pl_s && strcmp(pl_s, "0") && strcmp(pl_s, "1")) {
        lc_errf(err, "%s: metadata 'per_layer': expected '0' or '1', found '%s'", path, pl_s);
        goto done;
    }
    per_layer = pl_s && !strcmp(pl_s, "1");
    if (!mods) {
        lc_errf(err, "%s: metadata 'modules': missing", path);
        goto done;
    }
    unsigned mask = 0;
    for (const char *p = mods; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char one[64];
        int m = -1;
        if (n < sizeof one) {
            memcpy(one, p, n);
            one[n] = 0;
            m = module_parse(one);
        }
        if (m < 0) {
            lc_errf(err, "%s: metadata 'modules': unknown module '%.*s' in '%s'", path, (int)n, p,
                    mods);
            goto done;
        }
        mask |= 1u << m;
        p += n + (e ? 1 : 0);
    }
    /* every tensor the metadata implies is in the file with its shape before
     * calib_init allocates for it (a 'rank' of 10^9 must not be allocated) */
    for (int m = 0; m < MOD_COUNT; m++)
        for (int part = 0; (mask >> m & 1) && part < (kind == CALIB_BIAS ? 1 : 2); part++) {
            int64_t shape[3];
            char name[128];
            const int nd = calib_expect(c, kind, rank, per_layer, m, part, name, shape);
            if (calib_check_tensor(tf, path, mods, name, nd, shape, err)) goto done;
        }
    if (calib_init(cb, c, kind, rank, per_layer, mask, err)) {
        lc_err_prefix(err, "%s: ", path);
        goto done;
    }
    name_from_path(cb->name, sizeof cb->name, path);
    const int S = cb->n_slots;
    size_t maxn = 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        size_t a = (size_t)module_out_dim(c, m), b = (size_t)module_in_dim(c, m);
        size_t n = kind == CALIB_BIAS ? a : (size_t)rank * (a > b ? a : b);
        if (n * S > maxn) maxn = n * S;
    }
    tmp = lc_malloc(sizeof(float) * maxn, err);
    if (!tmp) goto done;
    int n_expected = 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        if (!(mask >> m & 1)) continue;
        const int in = module_in_dim(c, m), out = module_out_dim(c, m);
        for (int part = 0; part < (kind == CALIB_BIAS ? 1 : 2); part++) {
            int64_t shape[3];
            char name[128];
            const int nd = calib_expect(c, kind, rank, per_layer, m, part, name, shape);
            size_t each = kind == CALIB_BIAS ? (size_t)out : (size_t)rank * (part ? out : in);
            if (calib_check_tensor(tf, path, mods, name, nd, shape, err) ||
                tensor_file_read_f32(tf, name, nd, shape, tmp, err))
                goto done;
            for (int s = 0; s < S; s++) {
                float *dst = kind == CALIB_BIAS ? cb->p[s * MOD_COUNT + m]
                             : part == 0        ? cb->P1[s * MOD_COUNT + m]
                                                : cb->P2[s * MOD_COUNT + m];
                memcpy(dst, tmp + (size_t)s * each, sizeof(float) * each);
            }
            n_expected++;
        }
    }
    if (tensor_file_count(tf) != n_expected) {
        /* find the tensor that does not belong */
        for (int i = 0; i < tensor_file_count(tf); i++) {
            const tensor_info *ti = tensor_file_at(tf, i);
            int ok = 0;
            for (int m = 0; m < MOD_COUNT && !ok; m++) {
                if (!(mask >> m & 1)) continue;
                for (int part = 0; part < 3 && !ok; part++) {
                    static const char *const parts[3] = {"bias", "P1", "P2"};
                    if ((kind == CALIB_BIAS) != (part == 0)) continue;
                    char name[128];
                    calib_tensor_name(name, sizeof name, m, parts[part]);
                    ok = !strcmp(name, ti->name);
                }
            }
            if (!ok) {
                lc_errf(err, "%s: tensor '%s': not part of a '%s' calibration of modules '%s'",
                        tensor_file_path_of(tf, ti), ti->name, kind_s, mods);
                goto done;
            }
        }
    }
    rc = LC_OK;
done:
    free(tmp);
    tensor_file_free(tf);
    if (rc) calib_free(cb);
    return rc;
}

int calib_save(const calib *cb, const char *path, lc_err *err) {
    const size_t slots = (size_t)cb->n_slots * MOD_COUNT;
    float *const *lists[3] = {cb->p, cb->P1, cb->P2};
    block_index bi;
    if (block_index_init(&bi, cb->data, cb->n_params, lists, slots, 3, err)) return LC_FAIL;
    tensor_writer *w = NULL;
    float *tmp = NULL;
    int rc = tensor_writer_open(&w, path, TW_HDF5, err);
    if (rc) goto done;
    char mods[128] = "", rank[32];
    for (int m = 0; m < MOD_COUNT; m++)
        if (cb->module_mask >> m & 1)
            snprintf(mods + strlen(mods), sizeof mods - strlen(mods), "%s%s", mods[0] ? "," : "",
                     module_short(m));
    snprintf(rank, sizeof rank, "%d", cb->kind == CALIB_LOWRANK ? cb->rank : 0);
    if (tensor_writer_meta(w, "format", H5_CALIB_FORMAT, err) ||
        tensor_writer_meta(w, "version", H5_VERSION, err) ||
        tensor_writer_meta(w, "kind", cb->kind == CALIB_BIAS ? "bias" : "lowrank", err) ||
        tensor_writer_meta(w, "rank", rank, err) ||
        tensor_writer_meta(w, "per_layer", cb->per_layer ? "1" : "0", err) ||
        tensor_writer_meta(w, "modules", mods, err)) {
        rc = LC_FAIL;
        goto done;
    }
    for (int m = 0; m < MOD_COUNT && rc == LC_OK; m++) {
        if (!(cb->module_mask >> m & 1)) continue;
        for (int part = 0; part < (cb->kind == CALIB_BIAS ? 1 : 2) && rc == LC_OK; part++) {
            float *const *list = cb->kind == CALIB_BIAS ? cb->p : part == 0 ? cb->P1 : cb->P2;
            size_t each = block_index_size(&bi, list[m]);
            if (!each || (cb->kind == CALIB_LOWRANK && each % cb->rank)) {
                rc = lc_errf(err, "%s: calibration '%s' has an unexpected memory layout", path,
                             cb->name);
                break;
            }
            free(tmp);
            tmp = lc_malloc(sizeof(float) * each * cb->n_slots, err);
            if (!tmp) {
                rc = LC_FAIL;
                break;
            }
            for (int s = 0; s < cb->n_slots; s++)
                memcpy(tmp + (size_t)s * each, list[s * MOD_COUNT + m], sizeof(float) * each);
            int64_t shape[3];
            int nd = 0;
            if (cb->per_layer) shape[nd++] = cb->n_slots;
            if (cb->kind == CALIB_BIAS) shape[nd++] = (int64_t)each;
            else if (part == 0) shape[nd++] = cb->rank, shape[nd++] = (int64_t)(each / cb->rank);
            else shape[nd++] = (int64_t)(each / cb->rank), shape[nd++] = cb->rank;
            char name[128];
            calib_tensor_name(name, sizeof name, m, cb->kind == CALIB_BIAS ? "bias"
                                                    : part == 0            ? "P1"
                                                                           : "P2");
            rc = tensor_writer_add_f32(w, name, nd, shape, tmp, DT_F32, err);
        }
    }
done:
    free(tmp);
    free(bi.starts);
    if (!w) return LC_FAIL;
    if (rc) {
        tensor_writer_abort(w);
        return LC_FAIL;
    }
    return tensor_writer_close(w, err);
}

int lora_save_coefs(lora *const *ls, int n, const char *path, lc_err *err) {
    tensor_writer *w;
    if (tensor_writer_open(&w, path, TW_HDF5, err)) return LC_FAIL;
    if (tensor_writer_meta(w, "format", "lcmt-merge-coefficients", err)) goto fail;
    for (int i = 0; i < n; i++) {
        char name[192];
        int64_t shape[2] = {ls[i]->n_layers, MOD_COUNT};
        if (!ls[i]->coef) {
            lc_errf(err, "%s: LoRA '%s' has no coefficients", path, ls[i]->name);
            goto fail;
        }
        snprintf(name, sizeof name, "%s.coef", ls[i]->name);
        if (tensor_writer_add_f32(w, name, 2, shape, ls[i]->coef, DT_F32, err)) goto fail;
    }
    return tensor_writer_close(w, err);
fail:
    tensor_writer_abort(w);
    return LC_FAIL;
}
