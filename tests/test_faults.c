/* Safe writes (README "Safe writes"): train, calibrate, export and convert
 * run with tests/faultshim.c preloaded, failing the Nth write (ENOSPC),
 * fsync, close or rename (EIO) at several points of each program's writes;
 * and the same programs are killed with SIGKILL at 20+ random points. A
 * failed write must give a non-zero exit and a message naming the file and
 * the OS error, keep the previous file byte-identical and leave no
 * temporary file; after a kill every output present must load (a bundle's
 * SHA-256 sidecar must match it), and `train --resume` must finish with the
 * adapter of an uninterrupted run. A size-limited file system would need
 * privileges (mount/FUSE); the shim needs none. */
#pragma GCC diagnostic ignored "-Wformat-truncation" /* shell commands built in fixed buffers */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "gguf.h"
#include "lc_sha256.h"
#include "lc_time.h"
#include "loaders.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"
#include "tiny_model.h"

static char dir[512];

static void put(const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(tu_write_file(p, text, strlen(text)), 0);
}

#define ADS "[{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}]"
#define DATA "\"data\": {\"train\": \"train.jsonl\", \"test\": \"test.jsonl\", \"prompt_template\": \"{q}\", " \
             "\"target_template\": \" {a}\", \"max_len\": 32}"

/* config names: train<seed>, cal<seed>, export: on out dirs given */
static void write_configs(int seed) {
    char t[4096], n[64];
    snprintf(t, sizeof t,
             "{\"model\": \"model.bin\", \"output_dir\": \"tr\", \"mode\": \"lora\",\n"
             " \"lora\": {\"rank\": %d, \"alpha\": 4},\n"
             " \"data\": {\"train\": \"train.jsonl\", \"validation\": \"test.jsonl\", \"prompt_template\": \"{q}\",\n"
             "   \"target_template\": \" {a}\", \"max_len\": 32},\n"
             " \"training\": {\"batch_size\": 4, \"steps\": %d, \"seed\": %d, \"eval_every\": %d,\n"
             "   \"checkpoint_every\": %d, \"log_every\": 1},\n"
             " \"optimizer\": {\"lr\": 0.01}}\n",
             seed == 3 ? 4 : 2, seed == 2 ? 6 : 12, seed, seed == 2 ? 6 : 3, seed == 2 ? 6 : 2);
    snprintf(n, sizeof n, "train%d.json", seed);
    put(n, t);
    snprintf(t, sizeof t,
             "{\"model\": \"model.bin\", \"output_dir\": \"cal\",\n \"adapters\": " ADS ",\n"
             " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"b\"], " DATA "}],\n"
             " \"methods\": [{\"name\": \"LC\", \"type\": \"calibrate\", \"calibration\": {\"kind\": \"lowrank\", \"rank\": 2}}],\n"
             " \"training\": {\"batch_size\": 4, \"steps\": %d, \"seed\": %d, \"checkpoint_every\": %d, \"log_every\": 1},\n"
             " \"optimizer\": {\"lr\": 0.02}, \"generation\": {\"max_new_tokens\": 2}}\n",
             seed == 1 ? 8 : 4, seed, seed == 1 ? 2 : 4);
    snprintf(n, sizeof n, "cal%d.json", seed);
    put(n, t);
    put("export.json", "{\"model\": \"model.bin\", \"calibrate_dir\": \"cal\", \"output\": \"ex/b.lcmt\",\n"
                       " \"tasks\": [{\"task\": \"t\", \"method\": \"LC\"}],\n"
                       " \"interop\": [{\"task\": \"t\", \"method\": \"LC\", \"peft_dir\": \"ex/peft\", "
                       "\"gguf\": \"ex/t.gguf\"}]}\n");
}


static void setup(void) {
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    const model_config c = tiny_config(2);
    tiny_write_model(dir, &c);
    tiny_write_lora(dir, "lora0", &c, 2, 10);
    tiny_write_lora(dir, "lora1", &c, 2, 11);
    static char rows[8192];
    size_t o = 0;
    const char *w[] = {"red", "blue", "green", "cat", "dog", "sun"};
    for (int i = 0; i < 24; i++)
        o += snprintf(rows + o, sizeof rows - o, "{\"q\": \"%s %s\", \"a\": \"%s\"}\n", w[i % 6], w[(i / 6) % 6],
                      w[(i + 1) % 6]);
    put("train.jsonl", rows);
    put("test.jsonl", "{\"q\": \"red cat\", \"a\": \"blue\"}\n{\"q\": \"sun dog\", \"a\": \"red\"}\n");
    write_configs(1);
    write_configs(2);
    write_configs(3); /* train3.json: train1's run at rank 4 (cal3.json unused) */
}

/* ---- outputs: listing, validity ---------------------------------------------------- */

typedef struct {
    int n;
    char *name[64]; /* relative to dir */
    char *bytes[64];
    size_t len[64];
} snap;

static void snap_walk(snap *s, const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    DIR *d = opendir(p);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* . .. .lock */
        char r[2048];
        snprintf(r, sizeof r, "%s/%s", rel, e->d_name);
        snprintf(p, sizeof p, "%s/%s", dir, r);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            snap_walk(s, r);
            continue;
        }
        cr_assert_lt(s->n, 64);
        lc_err err;
        s->name[s->n] = strdup(r);
        s->bytes[s->n] = lc_read_file(p, &s->len[s->n], &err);
        cr_assert_not_null(s->bytes[s->n], "%s", err.msg);
        s->n++;
    }
    closedir(d);
}

static void snap_take(snap *s, const char *const *rels) {
    memset(s, 0, sizeof *s);
    for (int i = 0; rels[i]; i++) snap_walk(s, rels[i]);
}

static void snap_free(snap *s) {
    for (int i = 0; i < s->n; i++) free(s->name[i]), free(s->bytes[i]);
    s->n = 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* 1 when the file is whole: it loads with the project's own reader. */
static int file_valid(const snap *s, int i, char *why, size_t n) {
    const char *name = s->name[i];
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    lc_err err = {{0}};
    int ok = 1;
    if (strstr(name, ".tmp.")) {
        snprintf(err.msg, sizeof err.msg, "a temporary file");
        ok = 0;
    } else if (ends_with(name, ".h5") || ends_with(name, ".safetensors")) {
        tensor_file *tf;
        ok = tensor_file_open(&tf, p, &err) == LC_OK;
        if (ok) tensor_file_free(tf);
    } else if (ends_with(name, ".lcmt")) {
        bundle *b;
        ok = bundle_open(&b, p, &err) == LC_OK;
        if (ok) bundle_close(b);
    } else if (ends_with(name, ".gguf")) {
        gguf_file *g;
        ok = gguf_open(&g, p, &err) == LC_OK;
        if (ok) gguf_close(g);
    } else if (ends_with(name, ".sha256")) { /* matches the bundle beside it */
        char bp[4096], hex[LC_SHA256_HEX];
        uint8_t d[LC_SHA256_BYTES];
        snprintf(bp, sizeof bp, "%.*s", (int)(strlen(p) - 7), p);
        ok = lc_sha256_file(bp, d, NULL, &err) == LC_OK;
        if (ok) lc_sha256_hex(d, hex), ok = s->len[i] > 64 && !memcmp(s->bytes[i], hex, 64);
        if (!ok && !err.msg[0]) snprintf(err.msg, sizeof err.msg, "does not match %.900s", bp);
    } else if (ends_with(name, ".json")) {
        cJSON *j = cJSON_Parse(s->bytes[i]);
        ok = j != NULL;
        cJSON_Delete(j);
        if (!ok) snprintf(err.msg, sizeof err.msg, "not JSON");
    } else if (ends_with(name, ".jsonl")) { /* whole lines of JSON */
        char *t = strdup(s->bytes[i]), *line = t, *nl;
        ok = s->len[i] == 0 || t[s->len[i] - 1] == '\n';
        for (; ok && (nl = strchr(line, '\n')); line = nl + 1) {
            *nl = 0;
            cJSON *j = cJSON_Parse(line);
            ok = j != NULL;
            cJSON_Delete(j);
        }
        free(t);
        if (!ok) snprintf(err.msg, sizeof err.msg, "a torn or bad line");
    } else { /* csv, md, bin: whole text ends in a newline; binaries just exist */
        ok = !(ends_with(name, ".csv") || ends_with(name, ".md")) || (s->len[i] && s->bytes[i][s->len[i] - 1] == '\n');
    }
    snprintf(why, n, "%s", err.msg);
    return ok;
}

static void assert_all_valid(const snap *s, const char *ctx) {
    for (int i = 0; i < s->n; i++) {
        char why[8192];
        cr_assert(file_valid(s, i, why, sizeof why), "%s: %s is not whole: %s", ctx, s->name[i], why);
    }
}

/* ---- running ----------------------------------------------------------------------- */

static const char *shim(void) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/libfaultshim.so", LC_BINARY_DIR);
    return p;
}

/* cmd run in dir with LC_FAULT=fault (NULL: none); stderr captured. */
static char *run(const char *fault, const char *count_file, const char *cmd, int *st) {
    char c[4096];
    snprintf(c, sizeof c,
             "cd %s && LD_PRELOAD=%s ASAN_OPTIONS=\"$ASAN_OPTIONS:verify_asan_link_order=0\" %s%s %s%s %s 2>&1 "
             ">/dev/null",
             dir, shim(), fault ? "LC_FAULT=" : "", fault ? fault : "", count_file ? "LC_FAULT_COUNT=" : "",
             count_file ? count_file : "", cmd);
    return tu_capture(c, st);
}

static long count_of(const char *file, const char *kind) {
    lc_err err;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *t = lc_read_file(p, NULL, &err);
    cr_assert_not_null(t, "%s", err.msg);
    char *k = strstr(t, kind);
    cr_assert_not_null(k);
    long v = atol(k + strlen(kind) + 1);
    free(t);
    return v;
}

/* The previous outputs (made by prev_cmd) under rels; then cmd with each
 * fault: fails with a message naming a file and the OS error; that file is
 * byte-identical to before; every file present is whole; no temporary. */
static void faults_keep_previous(const char *what, const char *prev_cmd, const char *cmd, const char *const *rels) {
    int st;
    char *out = run(NULL, NULL, prev_cmd, &st);
    cr_assert_eq(st, 0, "%s: the previous run failed:\n%s", what, out);
    free(out);
    /* how many calls of each kind the run makes (on a copy of the state) */
    char save[8192];
    snprintf(save, sizeof save, "cd %s && rm -rf .save && mkdir .save && for r in", dir);
    for (int i = 0; rels[i]; i++) snprintf(save + strlen(save), sizeof save - strlen(save), " %s", rels[i]);
    snprintf(save + strlen(save), sizeof save - strlen(save), "; do cp -a $r .save/; done");
    cr_assert_eq(tu_system(save), 0);
    out = run(NULL, "counts.txt", cmd, &st);
    cr_assert_eq(st, 0, "%s: the clean run failed:\n%s", what, out);
    free(out);
    const char *kinds[] = {"write", "fsync", "close", "rename"};
    long total[4];
    for (int k = 0; k < 4; k++) total[k] = count_of("counts.txt", kinds[k]);
    snprintf(save, sizeof save, "%s/counts.txt", dir);
    unlink(save);
    cr_assert_gt(total[0], 3, "%s: the shim saw no writes (is it preloaded?)", what);
    int tried = 0;
    for (int k = 0; k < 4; k++) {
        const int points = k == 0 ? 5 : 3;
        for (int q = 0; q < points; q++) {
            long nth = 1 + (total[k] - 1) * q / (points > 1 ? points - 1 : 1);
            if (nth < 1 || nth > total[k]) continue;
            char restore[8192];
            snprintf(restore, sizeof restore, "cd %s && for r in", dir);
            for (int i = 0; rels[i]; i++)
                snprintf(restore + strlen(restore), sizeof restore - strlen(restore), " %s", rels[i]);
            snprintf(restore + strlen(restore), sizeof restore - strlen(restore),
                     "; do rm -rf $r; cp -a .save/$(basename $r) $r; done");
            cr_assert_eq(tu_system(restore), 0);
            snap before, after;
            snap_take(&before, rels);
            char fault[64];
            snprintf(fault, sizeof fault, "%s:%ld", kinds[k], nth);
            out = run(fault, NULL, cmd, &st);
            snap_take(&after, rels);
            if (st == 0) { /* a call whose failure the program may survive: none expected */
                cr_assert_fail("%s with %s: exit 0\n%s", what, fault, out);
            }
            cr_assert_lt(st, 128, "%s with %s: crashed (%d)\n%s", what, fault, st, out);
            cr_assert(!strstr(out, "Sanitizer:"), "%s with %s: a sanitizer report\n%s", what, fault, out);
            const char *oserr = k == 0 ? "No space left on device" : "Input/output error";
            cr_assert(strstr(out, oserr), "%s with %s: the message lacks the OS error:\n%s", what, fault, out);
            int named = 0;
            char *errline = out + strlen(out); /* the last line: the error */
            while (errline > out && errline[-1] == '\n') *--errline = 0;
            while (errline > out && errline[-1] != '\n') errline--;
            for (int i = 0; i < before.n; i++) {
                const char *base = strrchr(before.name[i], '/') + 1;
                if (!strstr(errline, before.name[i] + 2)) continue;
                if (strstr(errline, "written, but syncing its folder")) continue; /* the new file is in place */
                /* metrics.jsonl is restarted by a new run; a job's results.json is written twice by
                 * calibrate (evaluation, then the job's fields); the sidecar goes with its bundle:
                 * these are checked whole below */
                if (!strcmp(base, "metrics.jsonl") || !strcmp(base, "results.json") || ends_with(base, ".sha256"))
                    continue;
                int j = 0;
                while (j < after.n && strcmp(after.name[j], before.name[i])) j++;
                cr_assert_lt(j, after.n, "%s with %s: %s is gone\n%s", what, fault, before.name[i], out);
                cr_assert(after.len[j] == before.len[i] && !memcmp(after.bytes[j], before.bytes[i], before.len[i]),
                          "%s with %s: the previous %s changed\n%s", what, fault, before.name[i], out);
                named++;
            }
            cr_assert(named || strstr(errline, "metrics.jsonl") || strstr(errline, "written, but syncing") ||
                          strstr(errline, ".sha256") || strstr(errline, "results.json"),
                      "%s with %s: the message names no output file:\n%s", what, fault, out);
            assert_all_valid(&after, fault);
            fprintf(stderr, "faults: %s %s -> %s\n", what, fault, errline);
            snap_free(&before), snap_free(&after);
            free(out);
            tried++;
        }
    }
    cr_assert_gt(tried, 10);
}

TestSuite(faults, .init = setup, .timeout = 600);

Test(faults, train_write_failures_keep_the_previous_outputs) {
    const char *rels[] = {"./tr", NULL};
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s --config train1.json", tu_bin("train"));
    snprintf(b, sizeof b, "%s --config train2.json", tu_bin("train"));
    faults_keep_previous("train", a, b, rels);
}

Test(faults, calibrate_write_failures_keep_the_previous_outputs) {
    const char *rels[] = {"./cal", NULL};
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s --config cal1.json", tu_bin("calibrate"));
    snprintf(b, sizeof b, "%s --config cal2.json", tu_bin("calibrate"));
    faults_keep_previous("calibrate", a, b, rels);
}

Test(faults, export_write_failures_keep_the_previous_outputs) {
    const char *rels[] = {"./ex", NULL};
    char a[8192], b[4096];
    snprintf(a, sizeof a, "%s --config cal1.json && ", tu_bin("calibrate"));
    snprintf(a + strlen(a), sizeof a - strlen(a), "%s --config export.json", tu_bin("export"));
    /* the second export packs another calibration */
    snprintf(b, sizeof b, "%s --config export.json", tu_bin("export"));
    int st;
    char *out = run(NULL, NULL, a, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    char c[4096];
    snprintf(c, sizeof c, "%s --config cal2.json", tu_bin("calibrate"));
    out = run(NULL, NULL, c, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    faults_keep_previous("export", "true", b, rels);
}

Test(faults, convert_write_failures_keep_the_previous_outputs) {
    const char *rels[] = {"./cv", NULL};
    char a[8192], b[8192];
    snprintf(a, sizeof a, "mkdir -p cv && %s --model model.bin --out cv/m.gguf", tu_bin("convert"));
    snprintf(b, sizeof b, "%s --model model.bin --out cv/m.gguf --type q8_0", tu_bin("convert"));
    faults_keep_previous("convert", a, b, rels);
}

/* ---- kill -9 ----------------------------------------------------------------------- */

/* Starts cmd (a shell command in dir), SIGKILLs its process group after
 * delay seconds (if still running); returns 1 if it was killed. */
static int run_and_kill(const char *cmd, double delay) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        if (chdir(dir) != 0) _exit(127);
        if (!freopen("/dev/null", "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    double t0 = lc_now_s();
    int st, killed = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (lc_now_s() - t0 >= delay) {
            kill(-pid, SIGKILL);
            killed = 1;
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    return killed;
}

/* n kills at deterministic random points of one clean run's duration
 * (runs that end first do not count); after each, every output present loads. */
static void kills(const char *what, const char *cmd, const char *const *rels, int n) {
    double t0 = lc_now_s();
    char c[16384];
    snprintf(c, sizeof c, "cd %s && %s >/dev/null 2>&1", dir, cmd);
    cr_assert_eq(tu_system(c), 0, "%s: the clean run failed", what);
    double T = lc_now_s() - t0;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int killed = 0;
    int i = 0;
    for (; killed < n && i < 4 * n; i++) { /* until n runs were killed mid-way */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double delay = 0.9 * T * (double)(x % 1000) / 1000.0;
        killed += run_and_kill(cmd, delay);
        snap s;
        snap_take(&s, rels);
        char ctx[128];
        snprintf(ctx, sizeof ctx, "%s killed after %.3f s (kill %d)", what, delay, i);
        for (int k = 0; k < s.n; k++) { /* a temporary file is left by a kill; it never has a final name */
            if (strstr(s.name[k], ".tmp.")) {
                free(s.name[k]);
                s.name[k] = strdup("ignored.bin");
            }
        }
        assert_all_valid(&s, ctx);
        snap_free(&s);
    }
    fprintf(stderr, "kills: %s: %d of %d runs killed mid-way (clean run %.2f s)\n", what, killed, i, T);
    cr_assert_geq(killed, n, "%s: only %d runs were killed mid-way", what, killed);
    /* the temporary files the kills left: the next whole run removes those
     * of the files it writes (their pids are gone); a live process's is kept */
    snap s;
    snap_take(&s, rels);
    int stale = 0;
    for (int k = 0; k < s.n; k++) stale += strstr(s.name[k], ".tmp.") != NULL;
    snap_free(&s);
    char live[4200] = "";
    const char *first = NULL;
    snap_take(&s, rels); /* (first points into s until snap_free; live keeps the path) */
    for (int k = 0; k < s.n && !first; k++) { /* a file each run writes anew (atomically), beside the folders */
        const char *nm = s.name[k], *sl = strchr(nm + 2, '/');
        if (!strstr(nm, ".tmp.") && sl && !strchr(sl + 1, '/') && !ends_with(nm, "metrics.jsonl")) first = nm;
    }
    /* a temporary file of a process that runs (this one), beside that output */
    if (first) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        for (char *h = host; *h; h++)
            if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') || *h == '-'))
                *h = '_';
        snprintf(live, sizeof live, "%s/%s.tmp.%ld@%.40s", dir, first, (long)getpid(), host);
        cr_assert_eq(tu_write_file(live, "x", 1), 0);
    }
    const int have_live = first != NULL;
    snap_free(&s);
    cr_assert_eq(tu_system(c), 0, "%s: the run after the kills failed", what);
    snap_take(&s, rels);
    int left = 0;
    for (int k = 0; k < s.n; k++)
        if (strstr(s.name[k], ".tmp.") && !(have_live && strstr(live, s.name[k] + 1))) {
            fprintf(stderr, "kills: %s: left: %s\n", what, s.name[k]);
            left++;
        }
    snap_free(&s);
    fprintf(stderr, "kills: %s: %d temporary files after the kills, %d after a whole run\n", what, stale, left);
    cr_assert_eq(left, 0, "%s: a whole run left %d stale temporary files of killed runs", what, left);
    if (have_live) {
        struct stat st;
        cr_assert_eq(stat(live, &st), 0, "%s: the temporary file of a live process was removed", what);
        unlink(live);
    }
}

Test(faults, kill9_train_calibrate_export_leave_whole_files) {
    const char *tr[] = {"./tr", NULL}, *cal[] = {"./cal", NULL}, *ex[] = {"./ex", NULL};
    char c[8192];
    snprintf(c, sizeof c, "%s --config train1.json", tu_bin("train"));
    kills("train", c, tr, 20);
    /* --resume after a kill finishes with the uninterrupted run's adapter */
    snprintf(c, sizeof c, "cd %s && rm -rf tr && %s --config train1.json >/dev/null 2>&1 && "
             "mv tr tr_full", dir, tu_bin("train"));
    cr_assert_eq(tu_system(c), 0);
    int resumed = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(c, sizeof c, "cd %s && rm -rf tr", dir);
        tu_system(c);
        snprintf(c, sizeof c, "%s --config train1.json", tu_bin("train"));
        run_and_kill(c, 0.15 + 0.2 * i);
        snprintf(c, sizeof c, "cd %s && %s --config train1.json --resume 2>&1 | grep -c 'resumed from'; "
                 "cmp tr/final/adapter_model.safetensors tr_full/final/adapter_model.safetensors", dir,
                 tu_bin("train"));
        int st;
        char *out = tu_capture(c, &st);
        cr_assert_eq(st, 0, "train --resume after kill %d: the final adapter differs from the uninterrupted run:\n%s",
                     i, out);
        resumed += atoi(out) > 0;
        free(out);
    }
    fprintf(stderr, "kills: train --resume: %d of 4 resumed from a checkpoint, all bit-identical\n", resumed);
    snprintf(c, sizeof c, "%s --config cal1.json", tu_bin("calibrate"));
    kills("calibrate", c, cal, 20);
    snprintf(c, sizeof c, "cd %s && %s --config cal1.json >/dev/null 2>&1", dir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(c), 0);
    snprintf(c, sizeof c, "%s --config export.json", tu_bin("export"));
    kills("export", c, ex, 20);
}

/* An adapter folder is replaced as one: over train1's rank-2 outputs, a
 * rank-4 run (train3.json) whose every rename(2) in turn fails never
 * leaves a final/ or best/ whose adapter_config.json and safetensors
 * disagree: the two files are written into a temporary folder that takes
 * the folder's name in one step (written in place, a failed rename of the
 * second file left the new tensors beside the old config). */
Test(faults, failed_writes_never_mix_an_adapter_folder) {
    model_config c = tiny_config(2);
    char cmd[4096], p[4096];
    int st;
    snprintf(cmd, sizeof cmd, "%s --config train1.json", tu_bin("train"));
    free(run(NULL, NULL, cmd, &st));
    cr_assert_eq(st, 0, "train1 failed");
    snprintf(p, sizeof p, "cd %s && rm -rf .save1 && cp -a tr .save1", dir);
    cr_assert_eq(tu_system(p), 0);
    char c3[4096];
    snprintf(c3, sizeof c3, "%s --config train3.json", tu_bin("train"));
    free(run(NULL, "counts3.txt", c3, &st));
    cr_assert_eq(st, 0, "train3 failed");
    const long renames = count_of("counts3.txt", "rename");
    cr_assert_gt(renames, 4);
    int failed = 0;
    for (long n = 1; n <= renames; n++) {
        snprintf(p, sizeof p, "cd %s && rm -rf tr && cp -a .save1 tr", dir);
        cr_assert_eq(tu_system(p), 0);
        char fault[64];
        snprintf(fault, sizeof fault, "rename:%ld", n);
        char *out = run(fault, NULL, c3, &st);
        failed += st != 0;
        const char *sub[2] = {"final", "best"};
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s/tr/%s", dir, sub[k]);
            struct stat sb;
            if (stat(p, &sb) != 0) continue;
            lora l;
            lc_err err;
            cr_assert_eq(lora_load(&l, &c, p, &err), LC_OK, "train3 with %s: tr/%s is not one adapter: %s\n%s",
                         fault, sub[k], err.msg, out);
            cr_assert(l.rank == 2 || l.rank == 4);
            lora_free(&l);
        }
        free(out);
    }
    fprintf(stderr, "faults: adapter folders: %ld renames failed in turn (%d runs failed), every folder whole\n",
            renames, failed);
    cr_assert_gt(failed, 0);
}

/* convert --format hf into a folder of the user's: with every rename(2) of
 * the run failing in turn, the folder always loads as one model (the old
 * 2-layer one or the new 3-layer one, never the new tensors beside the old
 * config.json), and the user's own files in it stay byte-identical. */
static void hf_folder_case(int with_subfolder) {
    model_config c = tiny_config(3);
    model m;
    lc_err err;
    char p[4096], cmd[4096];
    cr_assert_eq(model_init(&m, &c, &err), LC_OK);
    model_init_random(&m, 0.1f, 7);
    snprintf(p, sizeof p, "%s/model3.bin", dir);
    cr_assert_eq(model_save_llama2c(&m, p, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    int st;
    snprintf(cmd, sizeof cmd, "%s --model model.bin --out cv/hf --format hf", tu_bin("convert"));
    free(run(NULL, NULL, cmd, &st));
    cr_assert_eq(st, 0, "the first convert failed");
    put("cv/hf/tokenizer.json", "{\"user\": \"file\"}\n");
    put("cv/hf/notes.txt", "mine\n");
    if (with_subfolder) {
        snprintf(p, sizeof p, "%s/cv/hf/sub", dir);
        cr_assert_eq(mkdir(p, 0777), 0);
        put("cv/hf/sub/x.txt", "kept\n");
    }
    snprintf(p, sizeof p, "cd %s && rm -rf .savecv && cp -a cv .savecv", dir);
    cr_assert_eq(tu_system(p), 0);
    char c3[4096];
    snprintf(c3, sizeof c3, "%s --model model3.bin --out cv/hf --format hf", tu_bin("convert"));
    free(run(NULL, "countscv.txt", c3, &st));
    cr_assert_eq(st, 0, "the second convert failed");
    const long renames = count_of("countscv.txt", "rename");
    cr_assert_geq(renames, 2);
    const char *mine[] = {"tokenizer.json", "notes.txt", "sub/x.txt"};
    const char *want[] = {"{\"user\": \"file\"}\n", "mine\n", "kept\n"};
    int failed = 0;
    for (long n = 0; n <= renames; n++) { /* n = 0: no fault */
        snprintf(p, sizeof p, "cd %s && rm -rf cv && cp -a .savecv cv", dir);
        cr_assert_eq(tu_system(p), 0);
        char fault[64];
        snprintf(fault, sizeof fault, "rename:%ld", n);
        char *out = run(n ? fault : NULL, NULL, c3, &st);
        failed += st != 0;
        snprintf(p, sizeof p, "%s/cv/hf", dir);
        model r;
        int loaded = model_load_hf(&r, p, &err) == LC_OK;
        if (with_subfolder && !loaded) { /* file by file: a failure part-way may mix; the message says so */
            cr_assert(strstr(out, "updated file by file"), "convert with %s: cv/hf does not load (%s), and the "
                      "message does not say why:\n%s", fault, err.msg, out);
        } else {
            cr_assert(loaded, "convert with %s: cv/hf is not one model: %s\n%s", fault, err.msg, out);
            cr_assert(r.cfg.n_layers == 2 || r.cfg.n_layers == 3);
            if (n == 0) cr_assert_eq(r.cfg.n_layers, 3, "the clean convert did not replace the model");
            model_free(&r);
        }
        for (int k = 0; k < 2 + with_subfolder; k++) {
            snprintf(p, sizeof p, "%s/cv/hf/%s", dir, mine[k]);
            char *t = lc_read_file(p, NULL, &err);
            cr_assert(t && !strcmp(t, want[k]), "convert with %s: the user's %s is %s\n%s", fault, mine[k],
                      t ? "changed" : "gone", out);
            free(t);
        }
        snprintf(p, sizeof p, "cd %s/cv && ls -a hf | grep -c '\\.tmp\\.' ; ls -a | grep -c '\\.tmp\\.'", dir);
        char *tmps = tu_capture(p, &st);
        cr_assert(!strcmp(tmps, "0\n0\n"), "convert with %s: a temporary file or folder is left:\n%s", fault, tmps);
        free(tmps);
        free(out);
    }
    fprintf(stderr, "faults: hf folder%s: %ld renames failed in turn (%d runs failed), every folder whole\n",
            with_subfolder ? " with a subfolder" : "", renames, failed);
    cr_assert_gt(failed, 0);
}

Test(faults, failed_writes_never_mix_a_converted_folder) { hf_folder_case(0); }

Test(faults, a_converted_folder_with_a_subfolder_is_updated_file_by_file) { hf_folder_case(1); }

Test(faults, second_export_on_the_same_folder_is_refused) {
    char c[4096];
    char ex[4096];
    snprintf(ex, sizeof ex, "%s", tu_bin("export"));
    snprintf(c, sizeof c, "cd %s && %s --config cal1.json >/dev/null 2>&1 && mkdir -p ex && "
             "{ flock -o ex/.lock sleep 30 >/dev/null 2>&1 & p=$!; }; sleep 0.5; %s --config export.json 2>&1; "
             "echo \"rc=$?\"; kill $p", dir, tu_bin("calibrate"), ex);
    int st;
    char *out = tu_capture(c, &st);
    cr_assert(strstr(out, "another run is writing to this output folder") && strstr(out, "ex/.lock") &&
                  !strstr(out, "rc=0"), "the second export was not refused:\n%s", out);
    free(out);
}
