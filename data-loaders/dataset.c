/* dataset.c: JSONL/CSV datasets -> tokenised examples with a loss mask,
 * deterministic epoch-wise shuffling and padded (B, T) batches.
 * Interface: dataset.h; rules: data-loaders/FORMATS.md, "Datasets and
 * configs".
 *
 * Loading, per row: parse the record (JSONL line / CSV record), render the
 * prompt and target templates (the prompt through the chat template when
 * the format is chat), tokenise both separately (the prompt by prompt.h's
 * rule for BOS; EOS after the target is added here), then fit
 * into max_len by cutting the prompt from the left. Anything wrong with a
 * row is a "bad row": an error "<file>:<line>: <what>" or, with
 * BAD_ROW_SKIP, skipped and counted. Anything wrong with the file as a
 * whole (cannot read, bad CSV header, bad template) is always an error. */
#include "dataset.h"
#include "config.h"

#include <cjson/cJSON.h>
#include <csv.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fsutil.h" /* lc_read_file */
#include "lc_rng.h"
#include "lc_sbuf.h"
#include "lc_utf8.h"
#include "template.h"

const char *const BAD_ROW_NAMES[] = {"error", "skip", NULL};

#define N_BAD_SHOWN 5

/* ---- small helpers ---------------------------------------------------- */

typedef lc_sbuf sbuf;
#define sbuf_add lc_sbuf_put

/* Offset of the first byte that is not valid UTF-8 (overlong forms,
 * surrogates and code points past U+10FFFF included) or is NUL, or -1. */
static long utf8_bad_at(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int k = s[i] ? lc_utf8_valid_len(s + i, n - i) : 0;
        if (!k) return (long)i;
        i += (size_t)k;
    }
    return -1;
}

/* JSON numbers as text: integers without a decimal point ("3", not
 * "3.0"), others in the shortest form that reads back exactly. */
static void number_text(double v, char *buf, size_t cap) {
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, cap, "%.0f", v == 0 ? 0.0 : v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* ---- templates: template.h ---------------------------------------------- */

/* ---- records ---------------------------------------------------------- */

typedef struct {
    const cJSON *obj;   /* JSONL */
    char *const *names; /* CSV header */
    char *const *vals;  /* CSV fields */
    int nf;
} record;

/* 0 and the value's text; 1 (bad row, why filled); LC_FAIL never. */
static int record_get(const record *r, const char *name, char *num, size_t numcap,
                      const char **s, size_t *len, char *why, size_t whycap) {
    if (r->obj) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->obj, name);
        if (!v) {
            snprintf(why, whycap, "missing field '%s'", name);
            return 1;
        }
        if (cJSON_IsString(v)) {
            *s = v->valuestring;
            *len = strlen(v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            number_text(v->valuedouble, num, numcap);
            *s = num;
            *len = strlen(num);
        } else if (cJSON_IsBool(v)) {
            *s = cJSON_IsTrue(v) ? "true" : "false";
            *len = strlen(*s);
        } else {
            snprintf(why, whycap, "field '%s': expected a string or a number, found %s", name,
                     cfg_json_type(v));
            return 1;
        }
        return 0;
    }
    for (int i = 0; i < r->nf; i++)
        if (strcmp(r->names[i], name) == 0) {
            *s = r->vals[i];
            *len = strlen(r->vals[i]);
            return 0;
        }
    snprintf(why, whycap, "missing field '%s'", name);
    return 1;
}

/* Renders t into out (reset first). 0 ok, 1 bad row (why), LC_FAIL OOM. */
static int render(const tmpl *t, const record *r, sbuf *out, char *why, size_t whycap) {
    out->n = 0;
    if (sbuf_add(out, "", 0)) return LC_FAIL;
    char num[64];
    for (int i = 0; i < t->n; i++) {
        const char *s = t->seg[i].s;
        size_t len = t->seg[i].len;
        if (t->seg[i].is_field) {
            int rc = record_get(r, t->seg[i].s, num, sizeof num, &s, &len, why, whycap);
            if (rc) return rc;
        }
        if (sbuf_add(out, s, len)) return LC_FAIL;
    }
    return 0;
}

/* ---- the loader ------------------------------------------------------------- */

typedef struct {
    const dataset_spec *spec;
    const tokenizer *tok;
    dataset *d;
    lc_err *err;
    tmpl prompt, target;
    int bos, eos; /* ids to add, -1 for none */
    int cap;      /* allocated d->ex */
    int done;     /* max_examples reached */
    sbuf ptext, ttext;
    char shown[N_BAD_SHOWN][1024];
} loader;

/* A bad row: an error, or (skip) counted and remembered for the summary. */
static int bad_row(loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_row(loader *L, int line, const char *fmt, ...) {
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (L->spec->on_bad_row != BAD_ROW_SKIP)
        return lc_errf(L->err, "%s:%d: %s", L->spec->path, line, what);
    if (L->d->n_skipped < N_BAD_SHOWN)
        snprintf(L->shown[L->d->n_skipped], sizeof L->shown[0], "%s:%d: %s", L->spec->path,
                 line, what);
    L->d->n_skipped++;
    return LC_OK;
}

static int encode(loader *L, const sbuf *text, int **ids, int *n, char *why, size_t whycap) {
    *ids = NULL;
    *n = 0;
    if (text->n == 0) return 0;
    lc_err e;
    if (tokenizer_encode(L->tok, text->p, text->n, 0, ids, n, &e) != LC_OK) {
        snprintf(why, whycap, "tokenizer: %.400s", e.msg);
        return 1;
    }
    return 0;
}

/* The prompt by prompt.h's rule; *lead = 1 when it begins with BOS (added
 * by the rule or written by a chat template), which the left cut keeps. */
static int encode_prompt(loader *L, const sbuf *text, int **ids, int *n, int *lead, char *why, size_t whycap) {
    lc_err e;
    *lead = 0;
    if (prompt_encode(L->tok, text->p ? text->p : "", text->n, L->bos >= 0, ids, n, &e) != LC_OK) {
        snprintf(why, whycap, "tokenizer: %.400s", e.msg);
        return 1;
    }
    const int bos = tokenizer_bos(L->tok);
    *lead = *n > 0 && bos >= 0 && (*ids)[0] == bos;
    return 0;
}

/* One record -> one example (or a bad row). */
static int add_record(loader *L, const record *r, int line) {
    dataset *d = L->d;
    char why[512];
    int rc = render(&L->prompt, r, &L->ptext, why, sizeof why);
    if (rc == 0) rc = render(&L->target, r, &L->ttext, why, sizeof why);
    if (rc < 0) return lc_errf(L->err, "%s:%d: out of memory", L->spec->path, line);
    if (rc > 0) return bad_row(L, line, "%s", why);
    if (L->spec->format && L->spec->format->kind == PROMPT_CHAT) {
        /* the rendered prompt_template is the user message */
        lc_err e;
        char *chat = NULL;
        if (utf8_bad_at((const unsigned char *)L->ptext.p, L->ptext.n) >= 0)
            return bad_row(L, line, "invalid UTF-8 in the rendered text");
        if (prompt_render(L->spec->format, L->ptext.p ? L->ptext.p : "", &chat, &e))
            return lc_errf(L->err, "%s:%d: chat template: %s", L->spec->path, line, e.msg);
        L->ptext.n = 0;
        rc = sbuf_add(&L->ptext, chat, strlen(chat));
        free(chat);
        if (rc) return lc_errf(L->err, "%s:%d: out of memory", L->spec->path, line);
    }
    /* the record was checked already, but a number or a template literal
     * cannot break UTF-8 either: this guards the tokenizer's contract */
    long bad = utf8_bad_at((const unsigned char *)L->ttext.p, L->ttext.n);
    if (bad < 0) bad = utf8_bad_at((const unsigned char *)L->ptext.p, L->ptext.n);
    if (bad >= 0) return bad_row(L, line, "invalid UTF-8 in the rendered text");

    int *pids = NULL, *tids = NULL, np = 0, nt = 0, nbos = 0;
    if (encode_prompt(L, &L->ptext, &pids, &np, &nbos, why, sizeof why) ||
        encode(L, &L->ttext, &tids, &nt, why, sizeof why)) {
        free(pids);
        free(tids);
        return bad_row(L, line, "%s", why);
    }
    int neos = L->eos >= 0;
    int ntarget = nt + neos, max_len = L->spec->max_len;
    if (ntarget == 0) {
        free(pids);
        free(tids);
        return bad_row(L, line, "empty target (no tokens to learn from)");
    }
    if (ntarget + nbos > max_len) {
        free(pids);
        free(tids);
        return bad_row(L, line, "target of %d tokens%s does not fit max_len %d%s", ntarget,
                       neos ? " (EOS included)" : "", max_len, nbos ? " with BOS" : "");
    }
    int kept = prompt_cut_left(pids, np, tokenizer_bos(L->tok), max_len - ntarget);
    if (kept < np) d->n_truncated++;
    ds_example ex = {0};
    ex.n_ids = kept + ntarget;
    ex.n_prompt = kept;
    ex.line = line;
    ex.ids = malloc((size_t)ex.n_ids * sizeof *ex.ids);
    ex.prompt = strdup(L->ptext.p);
    ex.target = strdup(L->ttext.p);
    if (d->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        ds_example *ne = realloc(d->ex, (size_t)cap * sizeof *ne);
        if (ne) {
            d->ex = ne;
            L->cap = cap;
        }
    }
    if (!ex.ids || !ex.prompt || !ex.target || d->n == L->cap) {
        free(ex.ids);
        free(ex.prompt);
        free(ex.target);
        free(pids);
        free(tids);
        return lc_errf(L->err, "%s:%d: out of memory", L->spec->path, line);
    }
    int k = 0;
    if (kept) memcpy(ex.ids, pids, (size_t)kept * sizeof(int));
    k += kept;
    if (nt) memcpy(ex.ids + k, tids, (size_t)nt * sizeof(int));
    k += nt;
    if (neos) ex.ids[k++] = L->eos;
    free(pids);
    free(tids);
    d->ex[d->n++] = ex;
    if (L->spec->max_examples > 0 && d->n >= L->spec->max_examples) L->done = 1;
    return LC_OK;
}

/* ---- JSONL ---------------------------------------------------------------- */

static int load_jsonl(loader *L, char *buf, size_t len) {
    size_t pos = 0;
    int line = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* BOM */
    while (pos < len && !L->done) {
        line++;
        char *s = buf + pos;
        char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r') n--;
        s[n] = 0;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
        if (k == n) continue; /* blank line */
        L->d->n_rows++;
        long bad = utf8_bad_at((const unsigned char *)s, n);
        if (bad >= 0) {
            if (s[bad] == 0) {
                if (bad_row(L, line, "NUL byte at column %ld", bad + 1)) return LC_FAIL;
            } else if (bad_row(L, line, "invalid UTF-8 at column %ld", bad + 1)) {
                return LC_FAIL;
            }
            continue;
        }
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(s, &end, 1);
        if (!j) {
            size_t col = end && end >= s ? (size_t)(end - s) + 1 : 1;
            if (bad_row(L, line, "invalid JSON near column %zu", col)) return LC_FAIL;
            continue;
        }
        if (!cJSON_IsObject(j)) {
            int rc = bad_row(L, line, "expected a JSON object, found %s", cfg_json_type(j));
            cJSON_Delete(j);
            if (rc) return LC_FAIL;
            continue;
        }
        record r = {.obj = j};
        int rc = add_record(L, &r, line);
        cJSON_Delete(j);
        if (rc) return LC_FAIL;
    }
    return LC_OK;
}

/* ---- CSV ---------------------------------------------------------------------- */

typedef struct {
    loader *L;
    char **f;    /* fields of the record being read */
    size_t *fl;  /* their lengths (a NUL byte shows as strlen < length) */
    int nf, capf;
    char **names; /* header */
    int n_names;
    int in_record, rec_line, cur_line;
    int failed; /* fatal error in a callback (L->err filled) */
    int oom;
} csv_ctx;

static void csv_drop_fields(csv_ctx *c) {
    for (int i = 0; i < c->nf; i++) free(c->f[i]);
    c->nf = 0;
}

static void csv_field_cb(void *s, size_t len, void *data) {
    csv_ctx *c = data;
    if (c->failed || c->L->done) return;
    if (!c->in_record) { /* a record starting mid-line (after a bare CR) */
        c->in_record = 1;
        c->rec_line = c->cur_line;
    }
    if (c->nf == c->capf) {
        int cap = c->capf ? 2 * c->capf : 16;
        char **nf = realloc(c->f, (size_t)cap * sizeof *nf);
        size_t *nl = nf ? realloc(c->fl, (size_t)cap * sizeof *nl) : NULL;
        if (nf) c->f = nf;
        if (!nf || !nl) {
            c->failed = c->oom = 1;
            return;
        }
        c->fl = nl;
        c->capf = cap;
    }
    char *v = malloc(len + 1);
    if (!v) {
        c->failed = c->oom = 1;
        return;
    }
    if (len) memcpy(v, s, len);
    v[len] = 0;
    c->f[c->nf] = v;
    c->fl[c->nf++] = len;
}

static int csv_header(csv_ctx *c) {
    loader *L = c->L;
    const char *path = L->spec->path;
    int line = c->rec_line;
    for (int i = 0; i < c->nf; i++) {
        char *name = c->f[i];
        if (i == 0 && c->fl[0] >= 3 && memcmp(name, "\xEF\xBB\xBF", 3) == 0) { /* BOM */
            memmove(name, name + 3, c->fl[0] - 3 + 1);
            c->fl[0] -= 3;
        }
        if (utf8_bad_at((const unsigned char *)name, c->fl[i]) >= 0)
            return lc_errf(L->err, "%s:%d: header: invalid UTF-8 in column %d", path, line,
                           i + 1);
        if (!name[0]) return lc_errf(L->err, "%s:%d: header: column %d has no name", path, line, i + 1);
        for (int k = 0; k < i; k++)
            if (strcmp(c->f[k], name) == 0)
                return lc_errf(L->err, "%s:%d: header: duplicate column '%s'", path, line,
                               name);
    }
    /* every placeholder must be a column: otherwise every row would be bad */
    const tmpl *ts[2] = {&L->prompt, &L->target};
    for (int t = 0; t < 2; t++)
        for (int s = 0; s < ts[t]->n; s++) {
            if (!ts[t]->seg[s].is_field) continue;
            int found = 0;
            for (int i = 0; i < c->nf && !found; i++) found = !strcmp(c->f[i], ts[t]->seg[s].s);
            if (!found) {
                char cols[400];
                size_t cl = 0;
                cols[0] = 0;
                for (int i = 0; i < c->nf && cl < sizeof cols; i++) {
                    int w = snprintf(cols + cl, sizeof cols - cl, "%s%s", i ? ", " : "", c->f[i]);
                    if (w < 0) break;
                    cl += (size_t)w;
                }
                return lc_errf(L->err, "%s: %s field '%s' is not a column (columns: %s)", path,
                               t ? "target_template" : "prompt_template", ts[t]->seg[s].s, cols);
            }
        }
    c->names = c->f;
    c->n_names = c->nf;
    c->f = NULL;
    free(c->fl);
    c->fl = NULL;
    c->nf = c->capf = 0;
    return LC_OK;
}

static int csv_row(csv_ctx *c) {
    loader *L = c->L;
    int line = c->rec_line;
    L->d->n_rows++;
    if (c->nf != c->n_names)
        return bad_row(L, line, "expected %d fields (as in the header), found %d", c->n_names,
                       c->nf);
    for (int i = 0; i < c->nf; i++) {
        long bad = utf8_bad_at((const unsigned char *)c->f[i], c->fl[i]);
        if (bad >= 0)
            return bad_row(L, line, "%s in field '%s' at byte %ld",
                           c->f[i][bad] ? "invalid UTF-8" : "NUL byte", c->names[i], bad);
    }
    record r = {.names = c->names, .vals = c->f, .nf = c->nf};
    return add_record(L, &r, line);
}

static void csv_record_cb(int term, void *data) {
    csv_ctx *c = data;
    (void)term;
    if (c->failed || c->L->done) {
        csv_drop_fields(c);
        c->in_record = 0;
        return;
    }
    int rc = c->names ? csv_row(c) : csv_header(c);
    csv_drop_fields(c);
    c->in_record = 0;
    if (rc) c->failed = 1;
}

static int no_space(unsigned char ch) {
    (void)ch;
    return 0; /* RFC 4180: spaces belong to the field */
}

static int load_csv(loader *L, const char *buf, size_t len) {
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL))
        return lc_errf(L->err, "%s: cannot initialise the CSV parser", L->spec->path);
    csv_set_space_func(&p, no_space);
    csv_ctx c = {.L = L};
    int rc = LC_OK;
    size_t pos = 0;
    /* fed one physical line at a time so that rows know their line */
    while (pos < len && !c.failed && !L->done) {
        c.cur_line++;
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) + 1 : len - pos;
        pos += n;
        if (!c.in_record) {
            size_t k = 0;
            while (k < n && (s[k] == '\r' || s[k] == '\n')) k++;
            if (k == n) continue; /* blank line */
            c.in_record = 1;
            c.rec_line = c.cur_line;
        }
        size_t used = csv_parse(&p, s, n, csv_field_cb, csv_record_cb, &c);
        if (c.failed) break;
        if (used < n) {
            int e = csv_error(&p);
            if (e != CSV_EPARSE) {
                rc = lc_errf(L->err, "%s:%d: CSV: %s", L->spec->path, c.cur_line,
                             csv_strerror(e));
                break;
            }
            if (!c.names) {
                rc = lc_errf(L->err, "%s:%d: header: bad CSV quoting (RFC 4180: a quote "
                             "inside a field must be doubled and the field quoted)",
                             L->spec->path, c.rec_line);
                break;
            }
            L->d->n_rows++;
            if (bad_row(L, c.rec_line, "bad CSV quoting at line %d (RFC 4180: a quote "
                        "inside a field must be doubled and the field quoted)", c.cur_line)) {
                rc = LC_FAIL;
                break;
            }
            /* resynchronise at the next line with a fresh parser */
            csv_free(&p);
            if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)) {
                rc = lc_errf(L->err, "%s: cannot initialise the CSV parser", L->spec->path);
                break;
            }
            csv_set_space_func(&p, no_space);
            csv_drop_fields(&c);
            c.in_record = 0;
        }
    }
    if (!rc && !c.failed && !L->done) {
        if (csv_fini(&p, csv_field_cb, csv_record_cb, &c) != 0 && !c.failed) {
            csv_drop_fields(&c);
            if (!c.names) {
                rc = lc_errf(L->err, "%s:%d: header: unterminated quoted field",
                             L->spec->path, c.rec_line);
            } else {
                L->d->n_rows++;
                if (bad_row(L, c.rec_line, "unterminated quoted field")) rc = LC_FAIL;
            }
        }
    }
    if (c.oom && !rc) rc = lc_errf(L->err, "%s: out of memory", L->spec->path);
    if (c.failed) rc = LC_FAIL;
    if (!rc && !c.names) rc = lc_errf(L->err, "%s: empty CSV file (no header row)", L->spec->path);
    csv_free(&p);
    csv_drop_fields(&c);
    free(c.f);
    free(c.fl);
    for (int i = 0; i < c.n_names; i++) free(c.names[i]);
    free(c.names);
    return rc;
}

/* ---- dataset_load / free ------------------------------------------------- */

static int has_ext(const char *path, const char *ext) {
    size_t lp = strlen(path), le = strlen(ext);
    return lp >= le && strcasecmp(path + lp - le, ext) == 0;
}

void dataset_free(dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->ex[i].ids);
        free(d->ex[i].prompt);
        free(d->ex[i].target);
    }
    free(d->ex);
    memset(d, 0, sizeof *d);
}

int dataset_load(dataset *d, const dataset_spec *spec, const tokenizer *tok, lc_err *err) {
    memset(d, 0, sizeof *d);
    if (!spec || !spec->path) return lc_errf(err, "dataset: no path");
    const char *path = spec->path;
    snprintf(d->path, sizeof d->path, "%s", path);
    if (!tok) return lc_errf(err, "%s: no tokenizer", path);
    int is_csv = has_ext(path, ".csv");
    if (!is_csv && !has_ext(path, ".jsonl") && !has_ext(path, ".ndjson"))
        return lc_errf(err, "%s: unknown dataset format: expected a .jsonl or .csv file", path);
    if (spec->max_len <= 0)
        return lc_errf(err, "%s: max_len must be positive, found %d", path, spec->max_len);
    if (spec->max_examples < 0)
        return lc_errf(err, "%s: max_examples must be >= 0, found %d", path,
                       spec->max_examples);
    loader L = {.spec = spec, .tok = tok, .d = d, .err = err, .bos = -1, .eos = -1};
    /* The one BOS rule (prompt.h): add_bos adds the tokenizer's BOS when it has one;
     * a tokenizer without a BOS (Qwen2/Qwen3) gets nothing, as in transformers. */
    if (spec->add_bos) L.bos = tokenizer_bos(tok);
    if (spec->add_eos && (L.eos = tokenizer_eos(tok)) < 0)
        return lc_errf(err, "%s: add_eos is set but the tokenizer has no EOS token", path);
    if (tmpl_parse(&L.prompt, spec->prompt_template, "prompt_template", err) ||
        tmpl_parse(&L.target, spec->target_template, "target_template", err)) {
        lc_err_prefix(err, "%s: ", path);
        tmpl_free(&L.prompt);
        return LC_FAIL;
    }
    size_t len = 0;
    char *buf = lc_read_file(path, &len, err);
    int rc = LC_FAIL;
    if (buf) rc = is_csv ? load_csv(&L, buf, len) : load_jsonl(&L, buf, len);
    free(buf);
    free(L.ptext.p);
    free(L.ttext.p);
    tmpl_free(&L.prompt);
    tmpl_free(&L.target);
    if (rc == LC_OK && d->n == 0) {
        if (d->n_skipped)
            rc = lc_errf(err, "%s: no usable rows (%d rows read, all bad; first: %s)", path,
                         d->n_rows, L.shown[0]);
        else
            rc = lc_errf(err, "%s: no rows", path);
    }
    if (rc == LC_OK && d->n_skipped) {
        int shown = d->n_skipped < N_BAD_SHOWN ? d->n_skipped : N_BAD_SHOWN;
        for (int i = 0; i < shown; i++) fprintf(stderr, "dataset: skipped %s\n", L.shown[i]);
        fprintf(stderr, "dataset: %s: skipped %d bad row%s of %d (%s)\n", path, d->n_skipped,
                d->n_skipped == 1 ? "" : "s", d->n_rows,
                d->n_skipped > shown ? "the first 5 shown above" : "shown above");
    }
    if (rc != LC_OK) {
        int nr = d->n_rows, ns = d->n_skipped;
        dataset_free(d);
        snprintf(d->path, sizeof d->path, "%s", path);
        d->n_rows = nr;
        d->n_skipped = ns;
    }
    return rc;
}

/* ---- batches -------------------------------------------------------------- */

/* order = the permutation of `epoch`: a function of (seed, epoch) only. */
static void make_order(batch_iter *it) {
    for (int i = 0; i < it->n; i++) it->order[i] = i;
    if (!it->shuffle) return;
    lc_rng r;
    lc_rng_seed(&r, lc_splitmix64(it->seed ^ lc_splitmix64((uint64_t)(uint32_t)it->epoch)));
    for (int i = it->n - 1; i > 0; i--) { /* Fisher-Yates, unbiased draws */
        uint64_t bound = (uint64_t)i + 1, lim = (1ull << 32) - ((1ull << 32) % bound), x;
        do x = lc_rng_u32(&r);
        while (x >= lim);
        int j = (int)(x % bound), t = it->order[i];
        it->order[i] = it->order[j];
        it->order[j] = t;
    }
}

int batch_iter_init(batch_iter *it, int n, uint64_t seed, int shuffle, lc_err *err) {
    memset(it, 0, sizeof *it);
    if (n <= 0) return lc_errf(err, "batch_iter: no examples (n = %d)", n);
    it->order = lc_malloc((size_t)n * sizeof *it->order, err);
    if (!it->order) return LC_FAIL;
    it->n = n;
    it->seed = seed;
    it->shuffle = shuffle ? 1 : 0;
    make_order(it);
    return LC_OK;
}

void batch_iter_seek(batch_iter *it, int epoch, int pos) {
    if (!it->order || it->n <= 0) return;
    if (epoch < 0) epoch = 0;
    if (pos < 0) pos = 0;
    epoch += pos / it->n;
    pos %= it->n;
    if (epoch != it->epoch) {
        it->epoch = epoch;
        make_order(it);
    }
    it->pos = pos;
}

void batch_iter_free(batch_iter *it) {
    if (!it) return;
    free(it->order);
    memset(it, 0, sizeof *it);
}

static int batch_fill(batch_iter *it, const dataset *d, int B, int T, int pad_id, int *tokens,
                      int *targets, int *n_loss, int *T_used, lc_err *err) {
    if (n_loss) *n_loss = 0;
    if (!it->order) return lc_errf(err, "batch_next: iterator not initialised");
    if (it->n != d->n)
        return lc_errf(err, "batch_next: the iterator was made for %d examples, %s has %d",
                       it->n, d->path, d->n);
    if (B <= 0 || T <= 0) return lc_errf(err, "batch_next: bad batch shape (%d, %d)", B, T);
    int epoch0 = it->epoch, pos0 = it->pos, loss = 0, Tf = T_used ? 1 : T;
    const ds_example *stack_ex[64], **exs = B <= 64 ? stack_ex : malloc(sizeof *exs * (size_t)B);
    if (!exs) return lc_errf(err, "out of memory");
    for (int b = 0; b < B; b++) {
        if (it->pos >= it->n) {
            it->epoch++;
            it->pos = 0;
            make_order(it);
        }
        const ds_example *ex = &d->ex[it->order[it->pos]];
        if (ex->n_ids > T + 1) {
            lc_errf(err, "%s:%d: example of %d tokens does not fit T = %d (load with max_len "
                    "<= T + 1)", d->path, ex->line, ex->n_ids, T);
            batch_iter_seek(it, epoch0, pos0); /* leave the iterator as it was */
            if (exs != stack_ex) free(exs);
            return LC_FAIL;
        }
        it->pos++;
        exs[b] = ex;
        if (T_used && ex->n_ids - 1 > Tf) Tf = ex->n_ids - 1;
    }
    for (int b = 0; b < B; b++) {
        const ds_example *ex = exs[b];
        int *tk = tokens + (size_t)b * Tf, *tg = targets + (size_t)b * Tf;
        for (int t = 0; t < Tf; t++) {
            tk[t] = t < ex->n_ids ? ex->ids[t] : pad_id;
            int in_span = t + 1 >= ex->n_prompt && t + 1 < ex->n_ids;
            tg[t] = in_span ? ex->ids[t + 1] : -1;
            loss += in_span;
        }
    }
    if (exs != stack_ex) free(exs);
    if (T_used) *T_used = Tf;
    if (n_loss) *n_loss = loss;
    return LC_OK;
}

int batch_next(batch_iter *it, const dataset *d, int B, int T, int pad_id, int *tokens,
               int *targets, int *n_loss, lc_err *err) {
    return batch_fill(it, d, B, T, pad_id, tokens, targets, n_loss, NULL, err);
}

int batch_next_fit(batch_iter *it, const dataset *d, int B, int T, int pad_id, int *tokens,
                   int *targets, int *n_loss, int *T_used, lc_err *err) {
    int dummy;
    return batch_fill(it, d, B, T, pad_id, tokens, targets, n_loss, T_used ? T_used : &dummy, err);
}
