#define _XOPEN_SOURCE 700 /* nftw */
#include "testutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tu_source_dir(void) {
    const char *s = getenv("LC_SOURCE_DIR");
#ifdef LC_SOURCE_DIR
    if (!s) s = LC_SOURCE_DIR;
#endif
    return s ? s : ".";
}

const char *tu_shared_assets(void) {
    static char path[4096];
    const char *env = getenv("LC_SHARED_DIR");
    if (env)
        snprintf(path, sizeof path, "%s/assets", env);
    else
        snprintf(path, sizeof path, "%s/../shared/assets", tu_source_dir());
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return path;
}

void tu_require(const char *probe, const char *what, const char *provider) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "( %s ) >/dev/null 2>&1", probe);
    if (tu_system(cmd) != 0)
        cr_assert_fail("missing %s (`%s` failed): install %s (scripts/setup.sh does). A missing "
                "reference tool fails the test; only ../shared may be absent", what, probe, provider);
}

void tu_require_python(const char *modules, const char *debian_packages) {
    char probe[1024], what[512];
    snprintf(probe, sizeof probe, "/usr/bin/python3 -c 'import %s'", modules);
    snprintf(what, sizeof what, "Python modules %s for /usr/bin/python3", modules);
    tu_require(probe, what, debian_packages);
}

void tu_require_npm(const char *package) {
    char probe[4096], what[512];
    tu_require("node --version", "node (Node.js)", "Debian's nodejs and npm");
    snprintf(probe, sizeof probe, "test -r '%s/tests/js/node_modules/%s/package.json'",
             tu_source_dir(), package);
    snprintf(what, sizeof what, "the npm package %s in tests/js/node_modules", package);
    tu_require(probe, what, "the pinned npm packages (`npm ci` in tests/js)");
}

static const char *binary_dir(void) {
    const char *b = getenv("LC_BINARY_DIR");
#ifdef LC_BINARY_DIR
    if (!b) b = LC_BINARY_DIR;
#endif
    return b ? b : "build";
}

const char *tu_bin(const char *name) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/bin/%s", binary_dir(), name);
    return p;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

const char *tu_cached_fixture(const char *name, const char *const *inputs, const char *cmd,
                              const char *provider) {
    static char dir[4096];
    char cache[2048], tmp[3072], log[3072], run[16384];
    uint64_t h = fnv1a(0xcbf29ce484222325ull, cmd, strlen(cmd) + 1);
    for (const char *const *in = inputs; in && *in; in++) {
        h = fnv1a(h, *in, strlen(*in) + 1);
        FILE *f = fopen(*in, "rb");
        if (!f) {
            h = fnv1a(h, "(missing)", 9);
            continue;
        }
        unsigned char buf[65536];
        size_t r;
        while ((r = fread(buf, 1, sizeof buf, f)) > 0) h = fnv1a(h, buf, r);
        fclose(f);
    }
    snprintf(cache, sizeof cache, "%s/test-cache", binary_dir());
    snprintf(dir, sizeof dir, "%s/%s-%016llx", cache, name, (unsigned long long)h);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;

    if (mkdir(cache, 0777) != 0 && errno != EEXIST)
        cr_assert_fail("cannot create %s: %s", cache, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%ld", cache, name, (long)getpid());
    snprintf(log, sizeof log, "%s/%s.log", cache, name);
    snprintf(run, sizeof run, "rm -rf '%s' && mkdir '%s' && %s '%s' >'%s' 2>&1", tmp, tmp, cmd, tmp,
             log);
    int rc = tu_system(run);
    if (rc != 0) {
        snprintf(run, sizeof run, "rm -rf '%s'", tmp);
        tu_system(run);
        cr_assert_fail("the fixture generator `%s` failed (exit %d): see %s; it needs %s", cmd, rc,
                       log, provider);
    }
    /* older keys go; then ours moves into place (another process may have
     * won the race: its folder is as good as ours) */
    snprintf(run, sizeof run, "rm -rf '%s/%s-'*", cache, name);
    tu_system(run);
    if (rename(tmp, dir) != 0) {
        int e = errno;
        snprintf(run, sizeof run, "rm -rf '%s'", tmp);
        tu_system(run);
        if (stat(dir, &st) != 0) cr_assert_fail("cannot rename %s to %s: %s", tmp, dir, strerror(e));
    }
    return dir;
}

/* Temporary folders are removed when the test process exits, unless
 * LCMT_KEEP_TMP is set (then their paths are printed, to look at after a
 * failure). */
#define TU_MAX_TMP 64
static char tu_tmp[TU_MAX_TMP][64];
static int tu_n_tmp;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void tu_tmp_cleanup(void) {
    const char *keep = getenv("LCMT_KEEP_TMP");
    for (int i = 0; i < tu_n_tmp; i++) {
        if (keep && *keep) fprintf(stderr, "test: kept %s (LCMT_KEEP_TMP)\n", tu_tmp[i]);
        else nftw(tu_tmp[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    tu_n_tmp = 0;
}

const char *tu_tmpdir(void) {
    static char dir[64];
    static int registered;
    snprintf(dir, sizeof dir, "/tmp/lcmt-test-XXXXXX");
    if (!mkdtemp(dir)) return "/tmp";
    if (tu_n_tmp < TU_MAX_TMP) {
        snprintf(tu_tmp[tu_n_tmp++], sizeof tu_tmp[0], "%s", dir);
        if (!registered) registered = 1, atexit(tu_tmp_cleanup);
    }
    return dir;
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int tu_system(const char *cmd) {
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

char *tu_capture(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int st = pclose(p);
    if (status) *status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    return buf;
}

double tu_rel_err_f32_f64(const float *a, const double *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

double tu_rel_err_f32(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md)) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

int tu_write_byte_tokenizer(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int maxlen = 8, ok = fwrite(&maxlen, 4, 1, f) == 1;
    for (int i = 0; ok && i < 259; i++) {
        char piece[16];
        float score = 0;
        if (i == 0) snprintf(piece, sizeof piece, "<unk>");
        else if (i == 1) snprintf(piece, sizeof piece, "<s>");
        else if (i == 2) snprintf(piece, sizeof piece, "</s>");
        else snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        int len = (int)strlen(piece);
        ok = fwrite(&score, 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 &&
             fwrite(piece, 1, (size_t)len, f) == (size_t)len;
    }
    return fclose(f) == 0 && ok ? 0 : -1;
}

int tu_write_merge_tokenizer(const char *path, int V) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int32_t maxlen = 8;
    int ok = fwrite(&maxlen, 4, 1, f) == 1;
    const char *merges[] = {" t", "he", " the", " a", "an", " and", "in", " is"};
    for (int i = 0; i < V && ok; i++) {
        char piece[16];
        float score = 0;
        if (i == 0) strcpy(piece, "<unk>");
        else if (i == 1) strcpy(piece, "<s>");
        else if (i == 2) strcpy(piece, "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else {
            strcpy(piece, merges[(i - 259) % 8]);
            score = -(float)(i - 259);
        }
        int32_t len = (int32_t)strlen(piece);
        ok = fwrite(&score, 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 && fwrite(piece, 1, (size_t)len, f) == (size_t)len;
    }
    return fclose(f) == 0 && ok ? 0 : -1;
}
