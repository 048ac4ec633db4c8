/* example: an app over the on-device runtime (lcmt.h). Loads a base and a
 * bundle once, lists the bundle's tasks with their evaluation results,
 * answers the same input as two compositional tasks on one session,
 * switching between them, and streams the answers as they are generated.
 *
 *   lcmt_example MODEL BUNDLE TASK_A TASK_B "input text"
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lcmt.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* the streaming callback: print each piece as it becomes final */
static void show(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static int answer(lcmt_session *s, const char *input) {
    lcmt_stream stream = {show, NULL, NULL};
    printf("[%s] ", lcmt_session_task(s));
    lcmt_status st = lcmt_session_answer(s, input, &stream, NULL);
    printf("\n");
    if (st != LCMT_OK) fprintf(stderr, "example: %s\n", lcmt_session_last_error(s));
    return st != LCMT_OK;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: lcmt_example MODEL BUNDLE TASK_A TASK_B INPUT\n");
        return 2;
    }
    char msg[1024];
    lcmt_model *model = NULL;
    lcmt_bundle *bundle = NULL;
    lcmt_session *s = NULL;
    int rc = 1;

    /* 1. load once: the base (weights mapped) and its bundle (checked
     *    against the base; every task prepared) */
    double t0 = now();
    if (lcmt_model_open(argv[1], NULL, &model, msg, sizeof msg) ||
        lcmt_bundle_open(model, argv[2], NULL, &bundle, msg, sizeof msg)) {
        fprintf(stderr, "example: %s\n", msg);
        goto done;
    }
    printf("loaded in %.1f ms\n", (now() - t0) * 1e3);

    /* 2. what the bundle offers */
    for (int i = 0; i < lcmt_bundle_n_tasks(bundle); i++) {
        lcmt_task_info t;
        lcmt_bundle_task(bundle, i, &t);
        printf("task %-20s %-8s merge %-8s %s\n", t.name, t.method ? t.method : "?",
               t.merge ? t.merge : "?", t.supported ? "" : t.unsupported_why);
        printf("  results: %.200s\n", t.results_json);
    }

    /* 3. one session, first task */
    if (lcmt_session_new(model, bundle, argv[3], NULL, &s, msg, sizeof msg)) {
        fprintf(stderr, "example: %s\n", msg);
        goto done;
    }
    if (answer(s, argv[5])) goto done;

    /* 4. switch to the second task: pointers only, no reload */
    double t1 = now();
    if (lcmt_session_set_task(s, argv[4])) {
        fprintf(stderr, "example: %s\n", lcmt_session_last_error(s));
        goto done;
    }
    printf("switched in %.1f us\n", (now() - t1) * 1e6);
    if (answer(s, argv[5])) goto done;

    /* 5. and back */
    if (lcmt_session_set_task(s, argv[3]) || answer(s, argv[5])) goto done;
    rc = 0;
done:
    lcmt_session_free(s);
    lcmt_bundle_free(bundle);
    lcmt_model_free(model);
    return rc;
}
