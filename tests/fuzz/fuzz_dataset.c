/* fuzz_dataset.c: a data set file read as JSONL and as CSV by
 * dataset_load (quoting, escapes, UTF-8, missing fields, long rows), with
 * both bad-row policies, tokenised by fuzz.h's byte-level tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const tokenizer *tok = fz_byte_tokenizer();
    const char *names[2] = {"data.jsonl", "data.csv"};
    for (int f = 0; f < 2; f++) {
        const char *path = fz_write(f, names[f], data, size);
        for (int pol = 0; pol < 2; pol++) {
            dataset_spec s;
            memset(&s, 0, sizeof s);
            s.path = path;
            s.prompt_template = "Summarize:\n{dialogue}\nSummary:";
            s.target_template = " {summary}";
            s.max_len = 48;
            s.add_bos = 1, s.add_eos = 1;
            s.on_bad_row = pol ? BAD_ROW_SKIP : BAD_ROW_ERROR;
            dataset d;
            memset(&d, 0, sizeof d);
            lc_err err;
            if (dataset_load(&d, &s, tok, &err) == 0) {
                for (int i = 0; i < d.n; i++)
                    if (d.ex[i].n_prompt > d.ex[i].n_ids || d.ex[i].n_ids > s.max_len) abort();
                dataset_free(&d);
            }
        }
    }
    return 0;
}
