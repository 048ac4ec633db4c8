/* The real pretrained model (../shared/assets/stories260K): `generate` at
 * temperature 0 for 256 tokens must match the float64 PyTorch reference
 * (scripts/torch_ref.py stories, which implements llama2.c's run.c maths
 * independently, with interleaved RoPE on the original weights) token for
 * token, and its text must begin as ../shared/README.md shows. Skips with a
 * visible message when ../shared is absent. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h"
#include "testutil.h"


Test(stories260k, greedy_256_tokens_match_pytorch_reference, .timeout = 300) {
    TU_REQUIRE_SHARED();
    const char *assets = tu_shared_assets();
    const char *dir = tu_tmpdir();
    char cmd[4096], ckpt[1024], tokp[1024], out[1024];
    snprintf(ckpt, sizeof ckpt, "%s/stories260K/stories260K.bin", assets);
    snprintf(tokp, sizeof tokp, "%s/stories260K/tok512.bin", assets);
    snprintf(out, sizeof out, "%s/ref.json", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/scripts/torch_ref.py stories --checkpoint %s --tokenizer %s "
             "--steps 256 --out %s 2>/dev/null",
             tu_source_dir(), ckpt, tokp, out);
    cr_assert_eq(tu_system(cmd), 0, "PyTorch reference failed: %s", cmd);
    lc_err err;
    char *js = lc_read_file(out, NULL, &err);
    cr_assert_not_null(js, "%s", err.msg);
    cJSON *ref = cJSON_Parse(js);
    free(js);
    cJSON *toks = cJSON_GetObjectItem(ref, "tokens");
    int nref = cJSON_GetArraySize(toks);
    cr_assert_gt(nref, 200);

    int st;
    snprintf(cmd, sizeof cmd, "%s --model %s --temperature 0 --max-new-tokens 256 --print-ids --quiet",
             tu_bin("generate"), ckpt);
    char *ids = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "generate failed: %s", cmd);
    /* reference tokens[0] is BOS; the rest are the generated ones */
    char *p = ids;
    int n = 0;
    for (int i = 1; i < nref; i++, n++) {
        char *end;
        long v = strtol(p, &end, 10);
        cr_assert_neq(end, p, "generate stopped after %d tokens, the reference has %d", n, nref - 1);
        cr_assert_eq(v, cJSON_GetArrayItem(toks, i)->valueint, "token %d: C %ld, PyTorch %d", i, v,
                     cJSON_GetArrayItem(toks, i)->valueint);
        p = end;
    }
    cr_assert_eq(n, 256);
    free(ids);

    snprintf(cmd, sizeof cmd, "%s --model %s --temperature 0 --max-new-tokens 256 --quiet",
             tu_bin("generate"), ckpt);
    char *text = tu_capture(cmd, &st);
    cr_assert_eq(st, 0);
    const char *expect = "Once upon a time, there was a little girl named Lily. She loved to play "
                         "outside in the park.";
    cr_assert_eq(strncmp(text, expect, strlen(expect)), 0, "text begins: %.120s", text);
    cr_assert_str_eq(strstr(cJSON_GetObjectItem(ref, "text")->valuestring, expect) ? "ok" : "no", "ok");
    free(text);
    cJSON_Delete(ref);
}
