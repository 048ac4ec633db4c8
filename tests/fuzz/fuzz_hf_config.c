/* fuzz_hf_config.c: a Hugging Face config.json through hf_config_parse.
 * A config accepted on read must be written back (hf_config_to_json) to a
 * text that reads again to the same configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_strndup(data, size);
    model_config c, c2;
    lc_err err;
    if (hf_config_parse(text, "config.json", &c, &err) == 0) {
        char *back = hf_config_to_json(&c);
        if (!back) abort();
        if (hf_config_parse(back, "written config.json", &c2, &err) != 0) {
            fprintf(stderr, "accepted config does not read back: %s\n%s\n", err.msg, back);
            abort();
        }
        char *again = hf_config_to_json(&c2);
        if (!again || strcmp(back, again) != 0) {
            fprintf(stderr, "config changes when written twice:\n%s\n%s\n", back, again ? again : "");
            abort();
        }
        free(again);
        free(back);
    }
    free(text);
    return 0;
}
