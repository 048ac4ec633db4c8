/* fuzz_template.c: prompt templates and chat templates. The input's first
 * part is a data-set template ("{field}", "{{") for tmpl_parse and
 * tmpl_fill_one, and a Jinja chat template rendered as a job's prompt
 * (prompt_format_chat + prompt_render); the optional second part is a JSON
 * object of variables the chat template is rendered with directly. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "chat_template.h"
#include "fuzz.h"
#include "prompt.h"
#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[2];
    size_t n[2];
    int k = fz_split(data, size, p, n, 2);
    char *src = fz_strndup(p[0], n[0]);
    lc_err err;
    tmpl t;
    if (tmpl_parse(&t, src, "prompt_template", &err) == 0) tmpl_free(&t);
    char *out = NULL;
    if (tmpl_fill_one(src, "a value {x}", "prompt_template", &out, &err) == 0) free(out);
    prompt_format pf;
    if (prompt_format_chat(&pf, src, "tokenizer_config.json", "<s>", "</s>", "Be brief.", &err) == 0) {
        out = NULL;
        if (prompt_render(&pf, "Summarize this chat.", &out, &err) == 0) free(out);
        prompt_format_free(&pf);
    }
    if (k > 1) {
        char *js = fz_strndup(p[1], n[1]);
        cJSON *vars = cJSON_Parse(js);
        chat_template *ct = NULL;
        if (vars && cJSON_IsObject(vars) && chat_template_parse(&ct, src, "template", &err) == 0) {
            size_t len;
            out = NULL;
            if (chat_template_render(ct, vars, &out, &len, &err) == 0) free(out);
            chat_template_free(ct);
        }
        cJSON_Delete(vars);
        free(js);
    }
    free(src);
    return 0;
}
