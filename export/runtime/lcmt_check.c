/* lcmt_check: prints what the runtime computes for one request, so two
 * builds (x86-64 and aarch64 under qemu) can be compared:
 *   lcmt_check MODEL BUNDLE|- TASK|- INPUT MAX_NEW
 * line 1: the greedy answer's token ids; line 2: the vocab_size logits
 * after the prompt (%.9g, exact float32 round trip). Exit 1 on error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lcmt.h"

static void put_id(void *user, int id) {
    int *n = user;
    printf((*n)++ ? " %d" : "%d", id);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: lcmt_check MODEL BUNDLE|- TASK|- INPUT MAX_NEW\n");
        return 2;
    }
    char msg[1024];
    lcmt_model *m = NULL;
    lcmt_bundle *b = NULL;
    lcmt_session *s = NULL;
    float *lg = NULL;
    int rc = 1;
    if (lcmt_model_open(argv[1], NULL, &m, msg, sizeof msg)) goto fail;
    if (strcmp(argv[2], "-") && lcmt_bundle_open(m, argv[2], NULL, &b, msg, sizeof msg)) goto fail;
    lcmt_session_params p = lcmt_session_default_params();
    p.temperature = 0;
    p.max_new_tokens = atoi(argv[5]);
    if (lcmt_session_new(m, b, strcmp(argv[3], "-") ? argv[3] : NULL, &p, &s, msg, sizeof msg)) goto fail;
    int n = 0;
    lcmt_stream st = {NULL, put_id, &n};
    if (lcmt_session_answer(s, argv[4], &st, NULL)) goto fail_s;
    printf("\n");
    lcmt_model_info info;
    lcmt_model_get_info(m, &info);
    lg = malloc(sizeof(float) * (size_t)info.vocab_size);
    if (!lg || lcmt_session_prompt_logits(s, argv[4], lg, info.vocab_size)) goto fail_s;
    for (int i = 0; i < info.vocab_size; i++) printf(i ? " %.9g" : "%.9g", lg[i]);
    printf("\n");
    rc = 0;
    goto done;
fail_s:
    snprintf(msg, sizeof msg, "%s", lcmt_session_last_error(s));
fail:
    fprintf(stderr, "lcmt_check: %s\n", msg);
done:
    free(lg);
    lcmt_session_free(s);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
    return rc;
}
