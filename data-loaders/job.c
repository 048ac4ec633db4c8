/* job.c: see job.h. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

#include "loaders.h"

int job_base_type_read(cfg *c, lc_err *err) {
    const char *s;
    if (cfg_string(c, "base_type", 0, "f32", &s, err)) return -1;
    const int t = model_base_type_parse(s);
    if (t < 0)
        lc_errf(err, "%s: 'base_type' must be one of f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, found '%s'",
                cfg_path(c), s);
    return t;
}

int job_base_type(cfg *c, model *m, lc_err *err) {
    const int t = job_base_type_read(c, err);
    if (t < 0) return LC_FAIL;
    if (model_quantize(m, t, err)) return lc_err_prefix(err, "%s: base_type: ", cfg_path(c));
    return LC_OK;
}

int job_base_paths(cfg *c, char **model_path, char **tok_path, lc_err *err) {
    const char *s_model, *s_tok;
    *model_path = *tok_path = NULL;
    if (cfg_string(c, "model", 1, NULL, &s_model, err) ||
        cfg_string(c, "tokenizer", 0, NULL, &s_tok, err) || job_base_type_read(c, err) < 0)
        return LC_FAIL;
    *model_path = cfg_resolve_path(c, s_model);
    if (s_tok) *tok_path = cfg_resolve_path(c, s_tok);
    if (!*model_path || (s_tok && !*tok_path)) {
        free(*model_path), free(*tok_path);
        *model_path = *tok_path = NULL;
        return lc_errf(err, "out of memory");
    }
    return LC_OK;
}

int job_load_base(cfg *c, model *m, tokenizer **tok, lc_err *err) {
    char *mp, *tp;
    int rc = LC_FAIL;
    if (job_base_paths(c, &mp, &tp, err)) return LC_FAIL;
    if (model_load(m, mp, err)) goto done;
    if (!tp) {
        char buf[4096];
        if (model_tokenizer_path(mp, m->cfg.vocab_size, buf, sizeof buf, err)) goto done;
        tp = strdup(buf);
    }
    if (!tp) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (tokenizer_load(tok, tp, m->cfg.vocab_size, err)) goto done;
    if (job_base_type(c, m, err)) { /* "base_type": the frozen base in that type */
        tokenizer_free(*tok);
        *tok = NULL;
        goto done;
    }
    rc = LC_OK;
done:
    free(tp);
    if (rc) model_free(m);
    free(mp);
    return rc;
}
