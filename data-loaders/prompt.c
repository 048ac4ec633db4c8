/* prompt.c: see prompt.h. */
#include "prompt.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int prompt_format_chat(prompt_format *pf, const char *tmpl_src, const char *src_name, const char *bos_text,
                       const char *eos_text, const char *system, lc_err *err) {
    memset(pf, 0, sizeof *pf);
    pf->kind = PROMPT_CHAT;
    if (chat_template_parse(&pf->tmpl, tmpl_src, src_name, err)) return LC_FAIL;
    pf->system = dup_or_null(system);
    pf->bos_text = dup_or_null(bos_text);
    pf->eos_text = dup_or_null(eos_text);
    if ((system && !pf->system) || (bos_text && !pf->bos_text) || (eos_text && !pf->eos_text)) {
        prompt_format_free(pf);
        return lc_errf(err, "out of memory");
    }
    return LC_OK;
}

const char *const PROMPT_FORMAT_NAMES[] = {"raw", "chat", NULL};

int prompt_format_init(prompt_format *pf, int kind, const tokenizer *tok, const char *system, lc_err *err) {
    memset(pf, 0, sizeof *pf);
    if (kind == PROMPT_RAW) {
        if (system) return lc_errf(err, "a system message needs the chat prompt format");
        return LC_OK;
    }
    if (kind != PROMPT_CHAT) return lc_errf(err, "unknown prompt format %d", kind);
    const char *where = NULL, *src = tokenizer_chat_template(tok, &where);
    if (!src) {
        if (where) return lc_errf(err, "%s: no chat_template (needed by the chat prompt format)", where);
        return lc_errf(err, "the chat prompt format needs a chat_template in the tokenizer_config.json beside "
                       "the tokenizer.json, and there is no such file");
    }
    return prompt_format_chat(pf, src, where, tokenizer_bos_text(tok), tokenizer_eos_text(tok), system, err);
}

void prompt_format_free(prompt_format *pf) {
    if (!pf) return;
    chat_template_free(pf->tmpl);
    free(pf->system);
    free(pf->bos_text);
    free(pf->eos_text);
    memset(pf, 0, sizeof *pf);
}

static void add_message(cJSON *msgs, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
}

int prompt_render(const prompt_format *pf, const char *user, char **out, lc_err *err) {
    *out = NULL;
    if (!pf || pf->kind == PROMPT_RAW) {
        *out = strdup(user);
        return *out ? LC_OK : lc_errf(err, "out of memory");
    }
    /* what transformers' apply_chat_template passes: messages, tools and
     * documents (None), add_generation_prompt and the special tokens set */
    cJSON *vars = cJSON_CreateObject(), *msgs = cJSON_CreateArray();
    if (!vars || !msgs) {
        cJSON_Delete(vars), cJSON_Delete(msgs);
        return lc_errf(err, "out of memory");
    }
    if (pf->system) add_message(msgs, "system", pf->system);
    add_message(msgs, "user", user);
    cJSON_AddItemToObject(vars, "messages", msgs);
    cJSON_AddNullToObject(vars, "tools");
    cJSON_AddNullToObject(vars, "documents");
    cJSON_AddTrueToObject(vars, "add_generation_prompt");
    if (pf->bos_text) cJSON_AddStringToObject(vars, "bos_token", pf->bos_text);
    if (pf->eos_text) cJSON_AddStringToObject(vars, "eos_token", pf->eos_text);
    int rc = chat_template_render(pf->tmpl, vars, out, NULL, err);
    cJSON_Delete(vars);
    return rc;
}

int prompt_encode(const tokenizer *tok, const char *text, size_t len, int add_bos, int **ids, int *n,
                  lc_err *err) {
    *ids = NULL;
    *n = 0;
    int *enc = NULL, ne = 0;
    if (len && tokenizer_encode(tok, text, len, 0, &enc, &ne, err)) return LC_FAIL;
    const int bos = add_bos ? tokenizer_bos(tok) : -1;
    int lead = bos >= 0 && !(ne > 0 && enc[0] == bos);
    int *out = malloc(sizeof(int) * (size_t)(ne + lead + 1));
    if (!out) {
        free(enc);
        return lc_errf(err, "out of memory");
    }
    if (lead) out[0] = bos;
    if (ne) memcpy(out + lead, enc, sizeof(int) * (size_t)ne);
    free(enc);
    *n = ne + lead;
    if (!*n) {
        free(out);
        out = NULL;
    }
    *ids = out;
    return LC_OK;
}

int prompt_cut_left(int *ids, int n, int bos, int budget) {
    if (n <= budget) return n;
    int nb = n > 0 && bos >= 0 && ids[0] == bos, keep = budget - nb;
    if (keep < 0) keep = 0;
    memmove(ids + nb, ids + (n - keep), sizeof(int) * (size_t)keep);
    return nb + keep;
}
