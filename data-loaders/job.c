/* job.c: see job.h. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

#include "loaders.h"

int job_load_base(cfg *c, model *m, tokenizer **tok, char **model_path, lc_err *err) {
    const char *s_model, *s_tok;
    if (model_path) *model_path = NULL;
    if (cfg_string(c, "model", 1, NULL, &s_model, err) ||
        cfg_string(c, "tokenizer", 0, NULL, &s_tok, err))
        return LC_FAIL;
    char *mp = cfg_resolve_path(c, s_model), *tp = NULL;
    int rc = LC_FAIL;
    if (!mp) return lc_errf(err, "out of memory");
    if (model_load(m, mp, err)) goto done;
    if (s_tok) {
        tp = cfg_resolve_path(c, s_tok);
    } else {
        char buf[4096];
        if (model_tokenizer_path(mp, m->cfg.vocab_size, buf, sizeof buf, err)) goto done;
        tp = strdup(buf);
    }
    if (!tp) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (tokenizer_load(tok, tp, m->cfg.vocab_size, err)) goto done;
    rc = LC_OK;
done:
    free(tp);
    if (rc) model_free(m);
    if (rc == LC_OK && model_path) *model_path = mp;
    else free(mp);
    return rc;
}
