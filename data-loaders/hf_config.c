/* hf_config.c: Hugging Face config.json <-> model_config.
 *
 * Keys read (see loaders.h); every error names the source and the key path:
 *   "<src>: key 'hidden_size': missing"
 *   "<src>: key 'hidden_size': expected a number, found string"
 *   "<src>: key 'rope_scaling.rope_type': unsupported value 'yarn' ..." */
#include "loaders.h"
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


/* ---- JSON helpers ----------------------------------------------------- */

/* Absent and null both count as "not given". */
static const cJSON *json_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* The number under key (path = the name used in messages): 1 read into *d,
 * 0 not given (an error if required), -1 on an error. */
static int json_number(const cJSON *obj, const char *key, const char *path, int required,
                       double *d, const char *src, lc_err *err) {
    const cJSON *v = json_get(obj, key);
    if (!v) return required ? (lc_errf(err, "%s: key '%s': missing", src, path), -1) : 0;
    return cfg_json_number(v, src, "key ", path, d, err) ? -1 : 1;
}

/* Integer value of key (path = the name used in messages). */
static int json_int(const cJSON *obj, const char *key, const char *path, int required, int def,
                    int *out, const char *src, lc_err *err) {
    double d;
    int r = json_number(obj, key, path, required, &d, src, err);
    if (r < 0) return LC_FAIL;
    if (!r) {
        *out = def;
        return LC_OK;
    }
    if (!(d == floor(d)) || d < -2147483648.0 || d > 2147483647.0)
        return lc_errf(err, "%s: key '%s': expected an integer, found %g", src, path, d);
    *out = (int)d;
    return LC_OK;
}

static int json_num(const cJSON *obj, const char *key, const char *path, int required, double def,
                    double *out, const char *src, lc_err *err) {
    double d;
    int r = json_number(obj, key, path, required, &d, src, err);
    if (r < 0) return LC_FAIL;
    if (!r) {
        *out = def;
        return LC_OK;
    }
    /* Every number read here is stored as a float: one that is not finite as
     * a float (inf, or beyond FLT_MAX, e.g. 4.2E222) cannot be computed with
     * nor written back. */
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return lc_errf(err, "%s: key '%s': %g is not a finite 32-bit float", src, path, d);
    *out = d;
    return LC_OK;
}

static int json_bool(const cJSON *obj, const char *key, int def, int *out, const char *src,
                     lc_err *err) {
    const cJSON *v = json_get(obj, key);
    if (!v) {
        *out = def;
        return LC_OK;
    }
    if (!cJSON_IsBool(v))
        return lc_errf(err, "%s: key '%s': expected a boolean, found %s", src, key,
                       cfg_json_type(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return LC_OK;
}

/* Optional string; *out = NULL when absent. */
static int json_str(const cJSON *obj, const char *key, const char *path, const char **out,
                    const char *src, lc_err *err) {
    const cJSON *v = json_get(obj, key);
    *out = NULL;
    if (!v) return LC_OK;
    if (!cJSON_IsString(v))
        return lc_errf(err, "%s: key '%s': expected a string, found %s", src, path,
                       cfg_json_type(v));
    *out = v->valuestring;
    return LC_OK;
}

/* bos/eos: an integer, a list of integers (first is taken), or absent (-1). */
static int json_token_id(const cJSON *obj, const char *key, int *out, const char *src,
                         lc_err *err) {
    const cJSON *v = json_get(obj, key);
    *out = -1;
    if (!v) return LC_OK;
    const char *name = key;
    char path[64];
    double d;
    if (cJSON_IsArray(v)) {
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        if (!first) return LC_OK;
        snprintf(path, sizeof path, "%s[0]", key);
        name = path;
        if (cfg_json_number(first, src, "key ", path, &d, err)) return LC_FAIL;
    } else if (!cJSON_IsNumber(v)) {
        return lc_errf(err, "%s: key '%s': expected a number or a list of numbers, found %s", src,
                       key, cfg_json_type(v));
    } else {
        d = v->valuedouble;
    }
    if (!(d == floor(d)) || d < -1 || d > 2147483647.0)
        return lc_errf(err, "%s: key '%s': expected a token id, found %g", src, name, d);
    *out = (int)d;
    return LC_OK;
}

/* ---- parsing ---------------------------------------------------------- */

static int parse_rope_scaling(const cJSON *rs, const char *src, model_config *c, lc_err *err) {
    c->rope_type = ROPE_DEFAULT;
    c->rope_factor = 0;
    c->rope_low_freq_factor = 0;
    c->rope_high_freq_factor = 0;
    c->rope_original_max_pos = 0;
    if (!rs) return LC_OK;
    if (!cJSON_IsObject(rs))
        return lc_errf(err, "%s: key 'rope_scaling': expected an object or null, found %s", src,
                       cfg_json_type(rs));
    const char *type = NULL, *key = "rope_scaling.rope_type";
    if (json_str(rs, "rope_type", key, &type, src, err)) return LC_FAIL;
    if (!type) {
        key = "rope_scaling.type";
        if (json_str(rs, "type", key, &type, src, err)) return LC_FAIL;
    }
    if (!type) return lc_errf(err, "%s: key 'rope_scaling.rope_type': missing", src);
    double d = 0;
    if (!strcmp(type, "default")) {
        return LC_OK;
    } else if (!strcmp(type, "linear")) {
        c->rope_type = ROPE_LINEAR;
        if (json_num(rs, "factor", "rope_scaling.factor", 1, 0, &d, src, err)) return LC_FAIL;
        c->rope_factor = (float)d;
    } else if (!strcmp(type, "llama3")) {
        c->rope_type = ROPE_LLAMA3;
        if (json_num(rs, "factor", "rope_scaling.factor", 1, 0, &d, src, err)) return LC_FAIL;
        c->rope_factor = (float)d;
        if (json_num(rs, "low_freq_factor", "rope_scaling.low_freq_factor", 1, 0, &d, src, err))
            return LC_FAIL;
        c->rope_low_freq_factor = (float)d;
        if (json_num(rs, "high_freq_factor", "rope_scaling.high_freq_factor", 1, 0, &d, src, err))
            return LC_FAIL;
        c->rope_high_freq_factor = (float)d;
        if (json_int(rs, "original_max_position_embeddings",
                     "rope_scaling.original_max_position_embeddings", 1, 0,
                     &c->rope_original_max_pos, src, err))
            return LC_FAIL;
    } else {
        return lc_errf(err, "%s: key '%s': unsupported value '%s' (supported: \"llama3\", \"linear\")",
                       src, key, type);
    }
    return LC_OK;
}

int hf_config_parse(const char *json_text, const char *src, model_config *c, lc_err *err) {
    memset(c, 0, sizeof *c);
    if (!src) src = "config.json";
    if (!json_text) return lc_errf(err, "%s: no text", src);
    const char *end = NULL;
    size_t len = strlen(json_text);
    cJSON *root = cJSON_ParseWithLengthOpts(json_text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json_text ? (size_t)(end - json_text) : 0;
        return lc_errf(err, "%s: invalid JSON near byte %zu", src, at);
    }
    int rc = LC_FAIL;
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: expected a JSON object at the top level, found %s", src,
                cfg_json_type(root));
        goto done;
    }

    const char *type = NULL;
    if (json_str(root, "model_type", "model_type", &type, src, err)) goto done;
    if (!type) type = "llama";
    if (strcmp(type, "llama") && strcmp(type, "mistral") && strcmp(type, "qwen2")) {
        lc_errf(err, "%s: key 'model_type': unsupported value '%s' (supported: \"llama\", "
                "\"mistral\", \"qwen2\")", src, type);
        goto done;
    }
    snprintf(c->arch, sizeof c->arch, "%s", type);

    const char *act = NULL;
    if (json_str(root, "hidden_act", "hidden_act", &act, src, err)) goto done;
    if (act && strcmp(act, "silu")) {
        lc_errf(err, "%s: key 'hidden_act': unsupported value '%s' (supported: \"silu\")", src, act);
        goto done;
    }

    if (json_int(root, "hidden_size", "hidden_size", 1, 0, &c->dim, src, err) ||
        json_int(root, "num_hidden_layers", "num_hidden_layers", 1, 0, &c->n_layers, src, err) ||
        json_int(root, "num_attention_heads", "num_attention_heads", 1, 0, &c->n_heads, src, err) ||
        json_int(root, "intermediate_size", "intermediate_size", 1, 0, &c->hidden_dim, src, err) ||
        json_int(root, "vocab_size", "vocab_size", 1, 0, &c->vocab_size, src, err))
        goto done;
    if (json_int(root, "num_key_value_heads", "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads,
                 src, err))
        goto done;
    if (c->n_heads <= 0) {
        lc_errf(err, "%s: key 'num_attention_heads': must be positive, found %d", src, c->n_heads);
        goto done;
    }
    if (!json_get(root, "head_dim") && c->dim % c->n_heads) {
        lc_errf(err, "%s: key 'hidden_size': %d is not a multiple of num_attention_heads (%d) "
                "and 'head_dim' is not given", src, c->dim, c->n_heads);
        goto done;
    }
    if (json_int(root, "head_dim", "head_dim", 0, c->dim / c->n_heads, &c->head_dim, src, err) ||
        json_int(root, "max_position_embeddings", "max_position_embeddings", 0, 4096,
                 &c->max_seq_len, src, err))
        goto done;

    double d = 0;
    if (json_num(root, "rms_norm_eps", "rms_norm_eps", 0, 1e-6, &d, src, err)) goto done;
    c->norm_eps = (float)d;
    if (json_num(root, "rope_theta", "rope_theta", 0, 10000.0, &d, src, err)) goto done;
    c->rope_theta = (float)d;
    if (parse_rope_scaling(json_get(root, "rope_scaling"), src, c, err)) goto done;

    int bias = 0, mlp_bias = 0;
    if (json_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, src, err) ||
        json_bool(root, "attention_bias", 0, &bias, src, err) ||
        json_bool(root, "mlp_bias", 0, &mlp_bias, src, err))
        goto done;
    if (mlp_bias) {
        lc_errf(err, "%s: key 'mlp_bias': true is not supported", src);
        goto done;
    }
    c->qkv_bias = bias || !strcmp(type, "qwen2");

    /* Sliding-window attention equals full causal attention up to the
     * window: cap the context there instead of refusing the model. */
    int use_sw = !strcmp(type, "mistral"), window = 0;
    if (!strcmp(type, "qwen2") && json_bool(root, "use_sliding_window", 0, &use_sw, src, err))
        goto done;
    if (use_sw) {
        if (json_int(root, "sliding_window", "sliding_window", 0, 0, &window, src, err)) goto done;
        if (window > 0 && window < c->max_seq_len) c->max_seq_len = window;
    }

    if (json_token_id(root, "bos_token_id", &c->bos_id, src, err) ||
        json_token_id(root, "eos_token_id", &c->eos_id, src, err))
        goto done;

    rc = model_config_validate(c, src, err);
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- writing ---------------------------------------------------------- */

/* The shortest decimal that reads back as the same float, as a double (so
 * that 1e-5f is written "1e-05", not "9.9999997473787516e-06"). */
static double short_float(float f) {
    char buf[64];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

char *hf_config_to_json(const model_config *c) {
    const char *arch = c->arch[0] ? c->arch : "llama";
    const char *cls = !strcmp(arch, "qwen2")     ? "Qwen2ForCausalLM"
                      : !strcmp(arch, "mistral") ? "MistralForCausalLM"
                                                 : "LlamaForCausalLM";
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    if (archs) cJSON_AddItemToArray(archs, cJSON_CreateString(cls));
    cJSON_AddStringToObject(o, "model_type", arch);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", short_float(c->norm_eps));
    cJSON_AddNumberToObject(o, "rope_theta", short_float(c->rope_theta));
    if (c->rope_type == ROPE_DEFAULT) {
        cJSON_AddNullToObject(o, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        if (rs) {
            cJSON_AddStringToObject(rs, "rope_type", c->rope_type == ROPE_LLAMA3 ? "llama3" : "linear");
            cJSON_AddNumberToObject(rs, "factor", short_float(c->rope_factor));
            if (c->rope_type == ROPE_LLAMA3) {
                cJSON_AddNumberToObject(rs, "low_freq_factor", short_float(c->rope_low_freq_factor));
                cJSON_AddNumberToObject(rs, "high_freq_factor", short_float(c->rope_high_freq_factor));
                cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                        c->rope_original_max_pos);
            }
        }
    }
    cJSON_AddBoolToObject(o, "attention_bias", c->qkv_bias != 0);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings != 0);
    if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    else cJSON_AddNullToObject(o, "bos_token_id");
    if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
    else cJSON_AddNullToObject(o, "eos_token_id");
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s; /* cJSON uses malloc by default: the caller frees with free() */
}
