/* replay.c: main() for a harness built without libFuzzer. Runs the
 * harness once on every regular file named on the command line or found
 * in a folder named there (not recursive), in name order, and prints how
 * many. A memory error, undefined behaviour or failed check in the harness
 * stops it with a non-zero status (under ASan/UBSan builds). A missing
 * folder is an error, so a test cannot pass by replaying nothing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) return -1;
    /* libFuzzer hands a copy of exactly n bytes: so do we (ASan sees overreads) */
    unsigned char *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    int total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i])) return 2;
            total++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 2;
        }
        char **names = NULL;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, sizeof *names * (n + 1));
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        if (n > 1) qsort(names, n, sizeof *names, cmp); /* names is NULL when the folder is empty */
        for (int k = 0; k < n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[k]);
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(p)) return 2;
                total++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("%s: %d inputs replayed, no failure\n", argv[0], total);
    return 0;
}
