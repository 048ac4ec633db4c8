/* fsutil.c: small file helpers shared by the loaders and writers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loaders.h"

char *lc_read_file(const char *path, size_t *len, lc_err *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        lc_errf(err, "%s: is a directory, expected a file", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = lc_malloc(cap, err);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    for (;;) { /* read to EOF: the size may change or be unknown (pipes) */
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                lc_errf(err, "%s: out of memory reading the file", path);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        lc_errf(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* mkdir -p */
int lc_make_dirs(const char *dir, lc_err *err) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return lc_errf(err, "%s: invalid directory name", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return lc_errf(err, "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lc_errf(err, "%s: exists and is not a directory", dir);
    return LC_OK;
}

/* Writes text to path through a temporary file and rename(). */
int lc_write_text_atomic(const char *path, const char *text, lc_err *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lc_errf(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lc_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        unlink(tmp);
        return lc_errf(err, "%s: write failed", path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lc_errf(err, "%s: cannot rename %s onto it: %s", path, tmp, strerror(e));
    }
    return LC_OK;
}


static int is_regular(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int model_tokenizer_path(const char *model_path, int vocab_size, char *out, size_t n,
                         lc_err *err) {
    struct stat st;
    if (stat(model_path, &st) != 0)
        return lc_errf(err, "%s: cannot open: %s", model_path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(out, n, "%s/tokenizer.json", model_path);
        if (is_regular(out)) return LC_OK;
        return lc_errf(err, "%s: no tokenizer.json in the model folder; name one with 'tokenizer'",
                       model_path);
    }
    FILE *f = fopen(model_path, "rb");
    if (f) {
        char magic[4] = {0};
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        size_t pl = strlen(model_path);
        if ((got == 4 && !memcmp(magic, "GGUF", 4)) ||
            (pl >= 5 && !strcmp(model_path + pl - 5, ".gguf"))) {
            snprintf(out, n, "%s", model_path);
            return LC_OK;
        }
    }
    const char *slash = strrchr(model_path, '/');
    int dlen = slash ? (int)(slash - model_path) : 1;
    const char *dir = slash ? model_path : ".";
    snprintf(out, n, "%.*s/tokenizer.bin", dlen, dir);
    if (is_regular(out)) return LC_OK;
    snprintf(out, n, "%.*s/tok%d.bin", dlen, dir, vocab_size);
    if (is_regular(out)) return LC_OK;
    return lc_errf(err, "%s: no tokenizer.bin or tok%d.bin beside the model; name one with "
                   "'tokenizer'", model_path, vocab_size);
}

void lc_slugify(char *dst, size_t n, const char *src) {
    if (!n) return;
    size_t k = 0;
    for (const char *p = src; *p && k + 1 < n; p++) {
        unsigned char ch = (unsigned char)*p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '+' || (ch == '.' && k > 0);
        dst[k++] = ok ? (char)ch : '_'; /* so never "/", "\\", a control character, or a leading "." */
    }
    if (k == 0 && n > 1) dst[k++] = '_'; /* never empty */
    dst[k] = 0;
}

int lc_dir_lock(const char *dir, int *fd_out, lc_err *err) {
    *fd_out = -1;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) return lc_errf(err, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return lc_errf(err, "%s: cannot create the lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        if (n > 0) pid[n] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return lc_errf(err, "%s: another run is writing to this output folder (it holds %s%s%s); wait for it "
                           "to end or choose another output folder", dir, path, pid[0] ? ", pid " : "", pid);
        return lc_errf(err, "%s: cannot lock: %s", path, strerror(e));
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) { /* the pid is only informative */
    }
    *fd_out = fd;
    return LC_OK;
}

void lc_dir_unlock(int fd) {
    if (fd >= 0) close(fd); /* the lock goes with the descriptor (and with the process, however it ends) */
}
