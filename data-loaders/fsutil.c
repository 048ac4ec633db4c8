/* fsutil.c: small file helpers shared by the loaders and writers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/mman.h>
#include <stdint.h>
#if defined(__linux__)
#include <linux/fs.h> /* RENAME_EXCHANGE */
#endif

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

/* ---- atomic writes ---------------------------------------------------------------
 * Every file the toolchain writes under a final name goes through these: the bytes go to
 * "<path>.tmp.<pid>@<host>" in the same folder (matches .gitignore's *.tmp.*), which is flushed,
 * fsync'd, rename()d over the final name, and the folder fsync'd. On any failure before
 * the rename the temporary file is removed and whatever was under the final name stays
 * as it was; the message names the final file and the OS error. */

/* rm -r of a folder this toolchain wrote (regular files and folders only;
 * symlinks are removed, not followed). Best effort. */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[8400];
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* This machine's name as it goes into temporary names: letters, digits,
 * '-' and '_' only (others become '_'), at most 40 characters. */
static void host_tag(char *out, size_t n) {
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || !h[0]) snprintf(h, sizeof h, "localhost");
    size_t k = 0;
    for (size_t i = 0; h[i] && k + 1 < n && k < 40; i++) {
        const char c = h[i];
        out[k++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ? c : '_';
    }
    out[k] = 0;
}

/* Removes the "<path>.tmp.<pid>@<host>" files and folders (and those named
 * "<path>.tmp.<pid>@<host>.tmp.…") of this machine whose process no longer
 * runs (a write killed before its rename): only this host's, so a live
 * writer on another machine of a shared file system is never touched.
 * Best effort: what cannot be read or removed stays. */
/* 1 unless no process pid runs on this host: gone (ESRCH), or a zombie
 * (killed, not yet reaped: /proc/<pid>/stat state Z). A pid we may not
 * signal counts as alive. */
static int pid_alive(long pid) {
    if (kill((pid_t)pid, 0) != 0) return errno != ESRCH;
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces and ')' */
    return !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

static void remove_stale_tmps(const char *path, const char *host) {
    char dir[4200];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    DIR *d = opendir(dir);
    if (!d) return;
    const size_t bl = strlen(base), hl = strlen(host);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, base, bl) || strncmp(nm + bl, ".tmp.", 5)) continue;
        char *end;
        const long pid = strtol(nm + bl + 5, &end, 10);
        /* "<host>" may be followed by ".tmp...." too: a temporary made inside a
         * temporary folder's name (lc_dir_write nested in a trainer's save) */
        if (end == nm + bl + 5 || pid <= 0 || *end != '@' || strncmp(end + 1, host, hl) ||
            (end[1 + hl] && strncmp(end + 1 + hl, ".tmp.", 5)) || pid == (long)getpid())
            continue;
        if (pid_alive(pid)) continue;
        char full[8400];
        struct stat st;
        if (snprintf(full, sizeof full, "%s/%s", dir, nm) >= (int)sizeof full) continue;
        if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(full);
        else unlink(full);
    }
    closedir(d);
}

int lc_tmp_path(char *out, size_t n, const char *path, lc_err *err) {
    char host[48];
    host_tag(host, sizeof host);
    if (snprintf(out, n, "%s.tmp.%ld@%s", path, (long)getpid(), host) >= (int)n)
        return lc_errf(err, "%s: path too long", path);
    remove_stale_tmps(path, host);
    return LC_OK;
}

static int fail_tmp(const char *tmp, const char *path, const char *what, int e, lc_err *err) {
    unlink(tmp);
    return lc_errf(err, "%s: %s: %s (nothing written; the previous file, if any, is unchanged)", path,
                   what, e ? strerror(e) : "short write");
}

/* fsync of the folder holding path (after a rename into it) */
static int sync_parent(const char *path, lc_err *err) {
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd), e = errno;
    if (fd >= 0) close(fd);
    /* some file systems refuse fsync on a folder (EINVAL); the rename is done either way */
    if (rc != 0 && e != EINVAL && e != EROFS && e != ENOTSUP)
        return lc_errf(err, "%s: written, but syncing its folder %s failed: %s", path, dir, strerror(e));
    return LC_OK;
}

int lc_rename_tmp(const char *tmp, const char *path, lc_err *err) {
    if (rename(tmp, path) != 0) return fail_tmp(tmp, path, "cannot rename the temporary file onto it", errno, err);
    return sync_parent(path, err);
}

int lc_commit_tmp(const char *tmp, const char *path, lc_err *err) {
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_tmp(tmp, path, "cannot reopen the temporary file", errno, err);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return fail_tmp(tmp, path, "fsync failed", e, err);
    }
    if (close(fd) != 0) return fail_tmp(tmp, path, "close failed", errno, err);
    return lc_rename_tmp(tmp, path, err);
}

int lc_dir_begin(const char *dir, char *tmp, size_t n, lc_err *err) {
    if (lc_tmp_path(tmp, n, dir, err)) return LC_FAIL;
    remove_tree(tmp); /* a folder of this pid from an earlier failure */
    return lc_make_dirs(tmp, err);
}

void lc_dir_abort(const char *tmp) { remove_tree(tmp); }

int lc_dir_commit(const char *tmp, const char *dir, lc_err *err) {
    struct stat st;
    if (lstat(dir, &st) != 0) { /* nothing there yet */
        if (rename(tmp, dir) != 0) {
            int e = errno;
            remove_tree(tmp);
            return lc_errf(err, "%s: cannot rename the temporary folder onto it: %s (nothing written)", dir,
                           strerror(e));
        }
        return sync_parent(dir, err);
    }
    if (!S_ISDIR(st.st_mode)) {
        remove_tree(tmp);
        return lc_errf(err, "%s: exists and is not a folder (nothing written)", dir);
    }
#if defined(SYS_renameat2) && defined(RENAME_EXCHANGE)
    /* one step: the new folder takes the name, the old one takes tmp's */
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        remove_tree(tmp);
        return sync_parent(dir, err);
    }
#endif
    /* no RENAME_EXCHANGE (old kernel, some file systems): the old folder
     * moves aside, the new one in; a crash between the two renames leaves
     * the old one under "<dir>.old.<pid>@<host>" */
    char old[4300];
    if (snprintf(old, sizeof old, "%s.old.%s", dir, strrchr(tmp, '.') ? strrchr(tmp, '.') + 1 : "x") >=
        (int)sizeof old) {
        remove_tree(tmp);
        return lc_errf(err, "%s: path too long", dir);
    }
    if (rename(dir, old) != 0) {
        int e = errno;
        remove_tree(tmp);
        return lc_errf(err, "%s: cannot move the previous folder aside: %s (nothing written)", dir, strerror(e));
    }
    if (rename(tmp, dir) != 0) {
        int e = errno;
        (void)rename(old, dir); /* put the previous one back */
        remove_tree(tmp);
        return lc_errf(err, "%s: cannot rename the temporary folder onto it: %s (the previous folder is kept)",
                       dir, strerror(e));
    }
    remove_tree(old);
    return sync_parent(dir, err);
}

/* ---- a folder of the user's, rewritten whole ------------------------------------------
 * keep_others: the entries of dir that the new folder does not have are hard-linked into
 * it before the exchange, so that the user's other files (a tokenizer.json beside a
 * converted model) stay, and the swap is still one step. Names of the new folder's own
 * files, read before linking, go in *ours (to undo or fall back). */
typedef struct {
    char **v;
    int n, cap;
} name_list;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_add(name_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static int names_has(const name_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return 1;
    return 0;
}

/* the entries of dir other than . and .. */
static int list_dir(const char *dir, name_list *l) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rc = names_add(l, e->d_name);
    closedir(d);
    return rc;
}

/* 0: every entry of dir missing from tmp (regular files and symlinks) now
 * has a link in tmp; -1: one cannot be (a subfolder, or a file system
 * without hard links); the links made are removed again. */
static int link_others(const char *dir, const char *tmp, const name_list *ours) {
    name_list theirs = {0}, made = {0};
    int rc = list_dir(dir, &theirs);
    for (int i = 0; !rc && i < theirs.n; i++) {
        if (names_has(ours, theirs.v[i])) continue;
        char a[8400], b[8400];
        struct stat st;
        if (snprintf(a, sizeof a, "%s/%s", dir, theirs.v[i]) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", tmp, theirs.v[i]) >= (int)sizeof b || lstat(a, &st) != 0 ||
            !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) || link(a, b) != 0 || names_add(&made, theirs.v[i]))
            rc = -1;
    }
    for (int i = 0; rc && i < made.n; i++) {
        char b[8400];
        if (snprintf(b, sizeof b, "%s/%s", tmp, made.v[i]) < (int)sizeof b) unlink(b);
    }
    names_free(&theirs), names_free(&made);
    return rc;
}

/* Where dir holds what cannot be linked: the new files are renamed into dir
 * one by one (each whole, but a failure part-way leaves the first ones new). */
static int move_files_in(const char *tmp, const char *dir, const name_list *ours, lc_err *err) {
    for (int i = 0; i < ours->n; i++) {
        char a[8400], b[8400];
        if (snprintf(a, sizeof a, "%s/%s", tmp, ours->v[i]) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", dir, ours->v[i]) >= (int)sizeof b) {
            remove_tree(tmp);
            return lc_errf(err, "%s: path too long", dir);
        }
        if (rename(a, b) != 0) {
            int e = errno;
            remove_tree(tmp);
            return lc_errf(err, "%s/%s: cannot rename the new file into the folder: %s (%s)", dir, ours->v[i],
                           strerror(e),
                           i ? "the folder holds a subfolder, so it is updated file by file: the files before "
                               "this one are new"
                             : "nothing written");
        }
    }
    remove_tree(tmp);
    char any[8400]; /* the folder they went into */
    snprintf(any, sizeof any, "%s/.", dir);
    return sync_parent(any, err);
}

static int commit_keep(const char *tmp, const char *dir, lc_err *err) {
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return lc_dir_commit(tmp, dir, err);
    name_list ours = {0};
    if (list_dir(tmp, &ours)) {
        names_free(&ours);
        remove_tree(tmp);
        return lc_errf(err, "%s: cannot list the temporary folder %s (nothing written)", dir, tmp);
    }
    int rc = link_others(dir, tmp, &ours) ? move_files_in(tmp, dir, &ours, err) : lc_dir_commit(tmp, dir, err);
    names_free(&ours);
    return rc;
}

int lc_dir_write(const char *dir, int keep_others, lc_dir_fill_fn fill, void *ctx, lc_err *err) {
    char tmp[4300];
    if (lc_dir_begin(dir, tmp, sizeof tmp, err)) return LC_FAIL;
    if (fill(ctx, tmp, err)) {
        lc_dir_abort(tmp);
        /* name the folder the user knows, not the temporary one */
        char msg[sizeof err->msg];
        const size_t tl = strlen(tmp);
        size_t o = 0;
        for (const char *q = err->msg; *q && o + 1 < sizeof msg;) {
            if (!strncmp(q, tmp, tl)) {
                o += (size_t)snprintf(msg + o, sizeof msg - o, "%s", dir);
                q += tl;
            } else {
                msg[o++] = *q++;
            }
        }
        msg[o < sizeof msg ? o : sizeof msg - 1] = 0;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
        return LC_FAIL;
    }
    return keep_others ? commit_keep(tmp, dir, err) : lc_dir_commit(tmp, dir, err);
}

FILE *lc_tmp_open(const char *path, char *tmp, size_t n, lc_err *err) {
    if (lc_tmp_path(tmp, n, path, err)) return NULL;
    FILE *f = fopen(tmp, "wb");
    if (!f) lc_errf(err, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
    return f;
}

int lc_tmp_finish(FILE *f, int ok, int saved_errno, const char *tmp, const char *path, lc_err *err) {
    const char *what = "write failed";
    if (ok && fflush(f) != 0) ok = 0, saved_errno = errno;
    if (ok && fsync(fileno(f)) != 0) ok = 0, saved_errno = errno, what = "fsync failed";
    if (fclose(f) != 0 && ok) ok = 0, saved_errno = errno, what = "close failed";
    return ok ? LC_OK : fail_tmp(tmp, path, what, saved_errno, err);
}

int lc_tmp_close(FILE *f, int ok, int saved_errno, const char *tmp, const char *path, lc_err *err) {
    if (lc_tmp_finish(f, ok, saved_errno, tmp, path, err)) return LC_FAIL;
    return lc_rename_tmp(tmp, path, err);
}

int lc_write_bytes_atomic(const char *path, const void *buf, size_t n, lc_err *err) {
    char tmp[4200];
    FILE *f = lc_tmp_open(path, tmp, sizeof tmp, err);
    if (!f) return LC_FAIL;
    int ok = n == 0 || fwrite(buf, 1, n, f) == n;
    return lc_tmp_close(f, ok, ok ? 0 : errno, tmp, path, err);
}

int lc_write_text_atomic(const char *path, const char *text, lc_err *err) {
    char tmp[4200];
    FILE *f = lc_tmp_open(path, tmp, sizeof tmp, err);
    if (!f) return LC_FAIL;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    return lc_tmp_close(f, ok, ok ? 0 : errno, tmp, path, err);
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

/* madvise(advice) over the whole pages of [p, p+n); advice only: a failure
 * (older kernel, advice unknown) is harmless, the pages then come in by
 * faults as before. */
static void populate(const void *p, size_t n, int advice) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = (uintptr_t)p / page * page, z = (uintptr_t)p + n;
    (void)madvise((void *)a, z - a, advice);
}

/* Maps the page-cache pages of [p, p+n) into the page table in one call
 * (Linux >= 5.14): decoding touches every weight at the first token, and
 * taking those faults one by one cost 1.1 s for 438 MB on the test VM. */
void lc_prefault(const void *p, size_t n) {
#ifdef MADV_POPULATE_READ
    populate(p, n, MADV_POPULATE_READ);
#else
    (void)p, (void)n, (void)populate;
#endif
}

/* The same for memory about to be written (a fresh allocation): its pages
 * made present and writable in one call instead of a fault each, which
 * costs most in a nested VM. */
void lc_prefault_write(void *p, size_t n) {
#ifdef MADV_POPULATE_WRITE
    populate(p, n, MADV_POPULATE_WRITE);
#else
    (void)p, (void)n, (void)populate;
#endif
}
