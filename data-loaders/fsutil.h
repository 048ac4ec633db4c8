/* fsutil.h: file-system helpers shared by every reader and writer (fsutil.c):
 * whole-file reads, mkdir -p, output-folder locks, atomic writes of files and
 * folders, prefaulting a mapping. No model types: a layer that reads or
 * writes files without models (dataset.c) includes this alone. */
#ifndef FSUTIL_H
#define FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "lc_err.h"
#include "lc_slug.h" /* lc_slugify: the folder-name rule */

/* Reads a whole small file into a NUL-terminated buffer (caller frees). */
char *lc_read_file(const char *path, size_t *len, lc_err *err);
/* mkdir -p */
int lc_make_dirs(const char *dir, lc_err *err);
/* Takes the output folder's lock: flock(2) on DIR/.lock (created; it holds
 * the pid), so a second run on the same folder is refused with a message
 * instead of interleaving its writes. The lock is released by
 * lc_dir_unlock, or by the kernel when the process ends in any way
 * (kill -9 included): a stale .lock file does not block. */
int lc_dir_lock(const char *dir, int *fd, lc_err *err);
void lc_dir_unlock(int fd);
/* Atomic writes (fsutil.c), used by every writer of a file under a final
 * name: the bytes go to a temporary "<path>.tmp.<pid>@<host>" in the same folder,
 * which is flushed, fsync'd, rename()d over the final name, and the folder
 * fsync'd. A failed write, flush, fsync, close or rename removes the
 * temporary file, leaves the previous file intact, and err names the final
 * file and the OS error (strerror). */
int lc_write_text_atomic(const char *path, const char *text, lc_err *err); /* + '\n' */
int lc_write_bytes_atomic(const char *path, const void *buf, size_t n, lc_err *err);
/* tmp = "<path>.tmp.<pid>@<host>"; also removes the temporary files of
 * path that processes of this host killed mid-write left (their pid no
 * longer runs). */
int lc_tmp_path(char *tmp, size_t n, const char *path, lc_err *err);
/* Folders written as one (an adapter's final/ and best/): lc_dir_begin
 * makes an empty "<dir>.tmp.<pid>@<host>" (its name in tmp) for the writer
 * to fill; lc_dir_commit puts it in place of dir in one step (rename, or
 * renameat2 RENAME_EXCHANGE when dir exists, after which the previous
 * folder is removed), so a reader, a crash or a kill sees the old folder
 * or the new one whole, never a mix; lc_dir_abort removes tmp. On an
 * error the previous folder is kept and tmp removed. */
int lc_dir_begin(const char *dir, char *tmp, size_t n, lc_err *err);
int lc_dir_commit(const char *tmp, const char *dir, lc_err *err);
void lc_dir_abort(const char *tmp);
/* The whole of it: fill(ctx, tmp, err) writes the folder's files into the
 * temporary folder, which then replaces dir as above (an error message
 * names dir, not the temporary folder). keep_others = 1 for a folder the
 * user owns (convert's Hugging Face folder, export's PEFT folder): files
 * of dir that the new folder lacks are kept (hard-linked into it before
 * the swap); where dir holds a subfolder or the file system has no hard
 * links, the new files are renamed in one by one instead (each whole).
 * keep_others = 0 (the toolchain's own final/, best/): dir becomes exactly
 * the new folder. */
/* The page-cache pages of a mapping [p, p+n) entered into the page table in
 * one call (MADV_POPULATE_READ, Linux >= 5.14) instead of one fault each;
 * advice only, a failure is harmless. */
void lc_prefault(const void *p, size_t n);
/* The same for memory about to be written (MADV_POPULATE_WRITE). */
void lc_prefault_write(void *p, size_t n);
typedef int (*lc_dir_fill_fn)(void *ctx, const char *tmp, lc_err *err);
int lc_dir_write(const char *dir, int keep_others, lc_dir_fill_fn fill, void *ctx, lc_err *err);
/* fopen("wb") of the temporary file for path (tmp receives its name). */
FILE *lc_tmp_open(const char *path, char *tmp, size_t n, lc_err *err);
/* Ends a write begun with lc_tmp_open: ok = 0 when a write failed
 * (saved_errno its errno, 0 for a short write); otherwise flushes, fsyncs,
 * closes and renames into place. Always closes f; tmp never survives a failure. */
int lc_tmp_close(FILE *f, int ok, int saved_errno, const char *tmp, const char *path, lc_err *err);
/* For a temporary file written by a library (HDF5): fsync, rename, sync the
 * folder; tmp removed on failure. */
int lc_commit_tmp(const char *tmp, const char *path, lc_err *err);
/* The two halves of lc_tmp_close, for a writer that must do something
 * between them (the bundle and its SHA-256 sidecar): flush, fsync and close
 * (tmp removed on failure); then rename onto path and sync the folder. */
int lc_tmp_finish(FILE *f, int ok, int saved_errno, const char *tmp, const char *path, lc_err *err);
int lc_rename_tmp(const char *tmp, const char *path, lc_err *err);

#endif
