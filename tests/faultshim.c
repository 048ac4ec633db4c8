/* faultshim.c: an LD_PRELOAD library that makes file-system calls fail, to
 * test that a failed write never damages a previous output (test_faults.c).
 * A size-limited file system would need privileges (mount, FUSE); this
 * needs none.
 *
 *   LC_FAULT=KIND:N   the Nth call of KIND on a regular file fails:
 *     write   fwrite/fputc/fputs/write/pwrite/writev: half the bytes are
 *             written, then ENOSPC; every later write fails too (the disk
 *             stays full)
 *     fsync   fsync/fdatasync (any descriptor): EIO
 *     close   fclose/close of a file open for writing (it is closed): EIO
 *     rename  rename: EIO (nothing renamed)
 *   LC_FAULT_COUNT=FILE  at exit, appends "write W fsync F close C rename R"
 *     (the calls seen) to FILE, so a test can pick fault points.
 * Only regular files open for writing count (never stderr, pipes, files
 * read, or an output folder's .lock). Counts are per process. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { K_WRITE, K_FSYNC, K_CLOSE, K_RENAME, K_N };
static const char *const kind_names[K_N] = {"write", "fsync", "close", "rename"};
static long counts[K_N];
static int fault_kind = -1;
static long fault_at;
static int disk_full;

__attribute__((constructor)) static void shim_init(void) {
    const char *s = getenv("LC_FAULT");
    if (!s) return;
    for (int k = 0; k < K_N; k++) {
        size_t n = strlen(kind_names[k]);
        if (!strncmp(s, kind_names[k], n) && s[n] == ':') fault_kind = k, fault_at = atol(s + n + 1);
    }
}

__attribute__((destructor)) static void shim_report(void) {
    const char *p = getenv("LC_FAULT_COUNT");
    if (!p) return;
    static int (*real_fclose)(FILE *);
    static FILE *(*real_fopen)(const char *, const char *);
    if (!real_fopen) real_fopen = dlsym(RTLD_NEXT, "fopen");
    if (!real_fclose) real_fclose = dlsym(RTLD_NEXT, "fclose");
    FILE *f = real_fopen(p, "a");
    if (!f) return;
    fprintf(f, "write %ld fsync %ld close %ld rename %ld\n", counts[K_WRITE], counts[K_FSYNC], counts[K_CLOSE],
            counts[K_RENAME]);
    real_fclose(f);
}

/* a regular file open for writing, other than an output folder's .lock
 * (whose pid line is informative only) */
static int is_file(int fd) {
    struct stat st;
    if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) return 0;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) return 1;
    target[n] = 0;
    return !(n >= 6 && !strcmp(target + n - 6, "/.lock"));
}

/* counts a call of kind k on a regular file; 1 when it must fail */
static int hit(int k, int fd) {
    if (fd >= 0 && !is_file(fd)) return 0;
    counts[k]++;
    if (k == K_WRITE && disk_full) return 1;
    if (k == fault_kind && counts[k] == fault_at) {
        if (k == K_WRITE) disk_full = 1;
        return 1;
    }
    return 0;
}

#define REAL(ret, name, ...)                                  \
    static ret (*real_##name)(__VA_ARGS__);                   \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

size_t fwrite(const void *p, size_t size, size_t n, FILE *f) {
    REAL(size_t, fwrite, const void *, size_t, size_t, FILE *);
    if (size && n && hit(K_WRITE, fileno(f))) {
        size_t half = n / 2;
        if (half) real_fwrite(p, size, half, f);
        errno = ENOSPC;
        return half;
    }
    return real_fwrite(p, size, n, f);
}

int fputc(int c, FILE *f) {
    REAL(int, fputc, int, FILE *);
    if (hit(K_WRITE, fileno(f))) {
        errno = ENOSPC;
        return EOF;
    }
    return real_fputc(c, f);
}

int fputs(const char *s, FILE *f) {
    REAL(int, fputs, const char *, FILE *);
    if (*s && hit(K_WRITE, fileno(f))) {
        errno = ENOSPC;
        return EOF;
    }
    return real_fputs(s, f);
}

ssize_t write(int fd, const void *p, size_t n) {
    REAL(ssize_t, write, int, const void *, size_t);
    if (n && hit(K_WRITE, fd)) {
        ssize_t w = n / 2 ? real_write(fd, p, n / 2) : 0;
        if (w > 0) return w; /* a short write; the caller's retry then fails */
        errno = ENOSPC;
        return -1;
    }
    return real_write(fd, p, n);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off) {
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    if (n && hit(K_WRITE, fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real_pwrite(fd, p, n, off);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    if (n && hit(K_WRITE, fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real_pwrite64(fd, p, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(ssize_t, writev, int, const struct iovec *, int);
    if (cnt && hit(K_WRITE, fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

int fsync(int fd) {
    REAL(int, fsync, int);
    if (hit(K_FSYNC, -1)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    if (hit(K_FSYNC, -1)) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}

int fclose(FILE *f) {
    REAL(int, fclose, FILE *);
    int fail = hit(K_CLOSE, fileno(f));
    int rc = real_fclose(f);
    if (fail) {
        errno = EIO;
        return EOF;
    }
    return rc;
}

int close(int fd) {
    REAL(int, close, int);
    int fail = hit(K_CLOSE, fd);
    int rc = real_close(fd);
    if (fail) {
        errno = EIO;
        return -1;
    }
    return rc;
}

int rename(const char *a, const char *b) {
    REAL(int, rename, const char *, const char *);
    if (hit(K_RENAME, -1)) {
        errno = EIO;
        return -1;
    }
    return real_rename(a, b);
}
