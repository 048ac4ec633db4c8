/* config.c: strict JSON job configs (interface and rules: config.h and
 * data-loaders/FORMATS.md, "Datasets and configs").
 *
 * The parsed cJSON tree is mirrored by a tree of cfg_node that records, per
 * value, whether a getter read it (`read`) or walked through it on the way
 * to a deeper key (`touched`). cfg_finish walks the mirror in document
 * order and reports the first value nobody asked for. */
#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loaders.h" /* lc_read_file */

typedef struct cfg_node {
    cJSON *j;
    unsigned char read, touched;
    int n;                 /* children (object members / array elements) */
    struct cfg_node *kids; /* (n), in document order */
} cfg_node;

struct cfg {
    cJSON *root;
    cfg_node top;
    char *path;     /* as given */
    char **queried; /* key paths asked for but absent: "did you mean" hints */
    int n_queried, cap_queried;
};

/* ---- helpers ----------------------------------------------------------- */

const char *cfg_json_type(const cJSON *j) {
    if (!j) return "nothing";
    if (cJSON_IsBool(j)) return "boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "raw value";
}

int cfg_json_number(const cJSON *j, const char *src, const char *pre, const char *key, double *out,
                    lc_err *err) {
    if (!cJSON_IsNumber(j))
        return lc_errf(err, "%s: %s'%s': expected a number, found %s", src, pre, key, cfg_json_type(j));
    *out = j->valuedouble;
    return LC_OK;
}

static void node_free(cfg_node *nd) {
    for (int i = 0; i < nd->n; i++) node_free(&nd->kids[i]);
    free(nd->kids);
    nd->kids = NULL;
    nd->n = 0;
}

/* Appends ".name" or "[i]" to a key path held in buf (cap bytes). */
static void path_child(char *buf, size_t cap, const char *parent, const char *name, int index) {
    if (name)
        snprintf(buf, cap, "%s%s%s", parent, parent[0] ? "." : "", name);
    else
        snprintf(buf, cap, "%s[%d]", parent, index);
}

/* Mirrors j into nd; rejects duplicate object keys (cJSON keeps both and a
 * getter would only ever see the first). */
static int node_build(cfg_node *nd, cJSON *j, const char *path, const char *src, lc_err *err) {
    memset(nd, 0, sizeof *nd);
    nd->j = j;
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) return LC_OK;
    int n = cJSON_GetArraySize(j);
    if (n == 0) return LC_OK;
    nd->kids = calloc((size_t)n, sizeof *nd->kids);
    if (!nd->kids) return lc_errf(err, "%s: out of memory", src);
    nd->n = n;
    int i = 0;
    char sub[1024];
    for (cJSON *k = j->child; k; k = k->next, i++) {
        if (cJSON_IsObject(j)) {
            for (cJSON *p = j->child; p != k; p = p->next)
                if (strcmp(p->string, k->string) == 0) {
                    path_child(sub, sizeof sub, path, k->string, 0);
                    return lc_errf(err, "%s: duplicate key '%s'", src, sub);
                }
            path_child(sub, sizeof sub, path, k->string, 0);
        } else {
            path_child(sub, sizeof sub, path, NULL, i);
        }
        if (node_build(&nd->kids[i], k, sub, src, err) != LC_OK) return LC_FAIL;
    }
    return LC_OK;
}

static void remember_query(cfg *c, const char *key) {
    for (int i = 0; i < c->n_queried; i++)
        if (strcmp(c->queried[i], key) == 0) return;
    if (c->n_queried == c->cap_queried) {
        int cap = c->cap_queried ? 2 * c->cap_queried : 16;
        char **q = realloc(c->queried, (size_t)cap * sizeof *q);
        if (!q) return; /* hints are best effort */
        c->queried = q;
        c->cap_queried = cap;
    }
    char *s = strdup(key);
    if (s) c->queried[c->n_queried++] = s;
}

/* ---- load / free ------------------------------------------------------- */

int cfg_parse(cfg **out, const char *text, const char *src, lc_err *err) {
    *out = NULL;
    if (!src) src = "<config>";
    if (!text) return lc_errf(err, "%s: no text", src);
    cfg *c = calloc(1, sizeof *c);
    if (!c) return lc_errf(err, "%s: out of memory", src);
    c->path = strdup(src);
    if (!c->path) {
        free(c);
        return lc_errf(err, "%s: out of memory", src);
    }
    const char *end = NULL;
    c->root = cJSON_ParseWithOpts(text, &end, 1);
    if (!c->root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        size_t tl = strlen(text);
        if (off > tl) off = tl;
        int line = 1;
        size_t col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        lc_errf(err, "%s: invalid JSON near byte %zu (line %d, column %zu)", src, off, line, col);
        cfg_free(c);
        return LC_FAIL;
    }
    if (!cJSON_IsObject(c->root)) {
        lc_errf(err, "%s: expected a JSON object at the top level, found %s", src,
                cfg_json_type(c->root));
        cfg_free(c);
        return LC_FAIL;
    }
    if (node_build(&c->top, c->root, "", src, err) != LC_OK) {
        cfg_free(c);
        return LC_FAIL;
    }
    c->top.touched = 1;
    *out = c;
    return LC_OK;
}

int cfg_load(cfg **out, const char *path, lc_err *err) {
    *out = NULL;
    size_t len = 0;
    char *text = lc_read_file(path, &len, err);
    if (!text) return LC_FAIL;
    size_t sl = strlen(text);
    if (sl != len) {
        free(text);
        return lc_errf(err, "%s: NUL byte at byte %zu (not a JSON text file)", path, sl);
    }
    int rc = cfg_parse(out, text, path, err);
    free(text);
    return rc;
}

void cfg_free(cfg *c) {
    if (!c) return;
    node_free(&c->top);
    cJSON_Delete(c->root);
    for (int i = 0; i < c->n_queried; i++) free(c->queried[i]);
    free(c->queried);
    free(c->path);
    free(c);
}

const char *cfg_path(const cfg *c) { return c ? c->path : NULL; }

/* ---- key paths ---------------------------------------------------------- */

/* Finds the node for key ("a.b[2].c"). Returns 1 if found (and not null),
 * 0 if absent (or JSON null), LC_FAIL if the key is malformed or a value
 * on the way has the wrong type. mark: 0 marks nothing; otherwise nodes on
 * the way are marked touched, and the final node read (mark = 1; null
 * included: it was considered) or only touched (mark = 2). */
static int key_syntax_ok(const char *p) {
    for (;;) {
        size_t nl = strcspn(p, ".[]");
        if (nl == 0) return 0;
        p += nl;
        while (*p == '[') {
            p++;
            if (!isdigit((unsigned char)*p)) return 0;
            while (isdigit((unsigned char)*p)) p++;
            if (*p++ != ']') return 0;
        }
        if (*p == 0) return 1;
        if (*p != '.') return 0;
        p++;
    }
}

static int lookup(const cfg *cc, const char *key, int mark, cfg_node **out, lc_err *err) {
    cfg *c = (cfg *)cc;
    *out = NULL;
    if (!key || !key_syntax_ok(key))
        return lc_errf(err, "%s: invalid key path '%s'", c->path, key ? key : "(null)");
    cfg_node *nd = &c->top;
    const char *p = key;
    char name[256];
    for (;;) {
        /* a name segment */
        size_t nl = strcspn(p, ".[");
        if (nl == 0 || nl >= sizeof name)
            return lc_errf(err, "%s: invalid key path '%s'", c->path, key);
        memcpy(name, p, nl);
        name[nl] = 0;
        if (!cJSON_IsObject(nd->j)) {
            int pl = (int)(p - key) - 1;
            return lc_errf(err, "%s: key '%.*s': expected an object, found %s", c->path,
                           pl, key, cfg_json_type(nd->j));
        }
        if (mark) nd->touched = 1; /* looked into: its unknown keys get reported */
        cfg_node *next = NULL;
        for (int i = 0; i < nd->n; i++)
            if (strcmp(nd->kids[i].j->string, name) == 0) {
                next = &nd->kids[i];
                break;
            }
        if (!next) return 0;
        nd = next;
        p += nl;
        /* indices */
        while (*p == '[') {
            char *e;
            long idx = strtol(p + 1, &e, 10);
            if (e == p + 1 || *e != ']' || idx < 0 || idx > INT_MAX)
                return lc_errf(err, "%s: invalid key path '%s'", c->path, key);
            if (!cJSON_IsArray(nd->j))
                return lc_errf(err, "%s: key '%.*s': expected an array, found %s", c->path,
                               (int)(p - key), key, cfg_json_type(nd->j));
            if (mark) nd->touched = 1;
            if (idx >= nd->n) return 0;
            nd = &nd->kids[idx];
            p = e + 1;
        }
        if (*p == 0) break;
        if (*p != '.' || p[1] == 0)
            return lc_errf(err, "%s: invalid key path '%s'", c->path, key);
        p++;
    }
    if (mark == 1) nd->read = 1;
    if (mark == 2) nd->touched = 1;
    if (cJSON_IsNull(nd->j)) return 0;
    *out = nd;
    return 1;
}

/* Common front of the getters: 1 = found (*j set), 0 = absent, LC_FAIL. */
static int get(cfg *c, const char *key, int required, cJSON **j, lc_err *err) {
    *j = NULL;
    if (!c) return lc_errf(err, "no config");
    cfg_node *nd;
    int r = lookup(c, key, 1, &nd, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        remember_query(c, key);
        if (required) return lc_errf(err, "%s: key '%s': missing", c->path, key);
        return 0;
    }
    *j = nd->j;
    return 1;
}

static int type_err(const cfg *c, const char *key, const char *expected, const cJSON *j,
                    lc_err *err) {
    return lc_errf(err, "%s: key '%s': expected %s, found %s", c->path, key, expected,
                   cfg_json_type(j));
}

/* Integer check shared by cfg_int, cfg_i64 and cfg_int_list. */
static int as_integer(const cfg *c, const char *key, const cJSON *j, double lo, double hi,
                      long long *v, lc_err *err) {
    if (!cJSON_IsNumber(j)) return type_err(c, key, "an integer", j, err);
    double d = j->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return lc_errf(err, "%s: key '%s': expected an integer, found %.17g", c->path, key, d);
    if (d < lo || d > hi)
        return lc_errf(err, "%s: key '%s': integer %.17g out of range [%.17g, %.17g]", c->path,
                       key, d, lo, hi);
    *v = (long long)d;
    return LC_OK;
}

/* ---- getters ------------------------------------------------------------ */

int cfg_int(cfg *c, const char *key, int required, int def, int *out, lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    long long v = 0;
    if (as_integer(c, key, j, (double)INT_MIN, (double)INT_MAX, &v, err)) return LC_FAIL;
    *out = (int)v;
    return LC_OK;
}

int cfg_i64(cfg *c, const char *key, int required, long long def, long long *out,
            lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    /* JSON numbers arrive as doubles: from 2^53 on they are not exact. */
    const double lim = 9007199254740991.0;
    return as_integer(c, key, j, -lim, lim, out, err);
}

int cfg_float(cfg *c, const char *key, int required, double def, double *out, lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    if (!cJSON_IsNumber(j)) return type_err(c, key, "a number", j, err);
    *out = j->valuedouble;
    return LC_OK;
}

int cfg_bool(cfg *c, const char *key, int required, int def, int *out, lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    if (!cJSON_IsBool(j)) return type_err(c, key, "a boolean (true or false)", j, err);
    *out = cJSON_IsTrue(j) ? 1 : 0;
    return LC_OK;
}

int cfg_string(cfg *c, const char *key, int required, const char *def, const char **out,
               lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    if (!cJSON_IsString(j)) return type_err(c, key, "a string", j, err);
    *out = j->valuestring;
    return LC_OK;
}

int cfg_object(cfg *c, const char *key, int required, const cJSON **out, lc_err *err) {
    cJSON *j;
    *out = NULL;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) return LC_OK;
    if (!cJSON_IsObject(j)) return type_err(c, key, "an object", j, err);
    *out = j;
    return LC_OK;
}

int cfg_enum(cfg *c, const char *key, int required, int def, const char *const *choices,
             int *out, lc_err *err) {
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        *out = def;
        return LC_OK;
    }
    char list[512];
    size_t ll = 0;
    list[0] = 0;
    for (int i = 0; choices && choices[i]; i++) {
        int w = snprintf(list + ll, sizeof list - ll, "%s\"%s\"", i ? ", " : "", choices[i]);
        if (w < 0 || (size_t)w >= sizeof list - ll) break;
        ll += (size_t)w;
    }
    if (!cJSON_IsString(j))
        return lc_errf(err, "%s: key '%s': expected one of %s, found %s", c->path, key, list,
                       cfg_json_type(j));
    for (int i = 0; choices && choices[i]; i++)
        if (strcmp(j->valuestring, choices[i]) == 0) {
            *out = i;
            return LC_OK;
        }
    return lc_errf(err, "%s: key '%s': expected one of %s, found \"%s\"", c->path, key, list,
                   j->valuestring);
}

int cfg_string_list(cfg *c, const char *key, int required, const char ***out, int *n,
                    lc_err *err) {
    *out = NULL;
    *n = 0;
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r <= 0) return r;
    if (!cJSON_IsArray(j)) return type_err(c, key, "an array of strings", j, err);
    int len = cJSON_GetArraySize(j);
    if (len == 0) return LC_OK;
    const char **v = malloc((size_t)len * sizeof *v);
    if (!v) return lc_errf(err, "%s: out of memory", c->path);
    int i = 0;
    for (cJSON *e = j->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            free(v);
            return lc_errf(err, "%s: key '%s[%d]': expected a string, found %s", c->path, key,
                           i, cfg_json_type(e));
        }
        v[i] = e->valuestring;
    }
    *out = v;
    *n = len;
    return LC_OK;
}

int cfg_int_list(cfg *c, const char *key, int required, int **out, int *n, lc_err *err) {
    *out = NULL;
    *n = 0;
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r <= 0) return r;
    if (!cJSON_IsArray(j)) return type_err(c, key, "an array of integers", j, err);
    int len = cJSON_GetArraySize(j);
    if (len == 0) return LC_OK;
    int *v = malloc((size_t)len * sizeof *v);
    if (!v) return lc_errf(err, "%s: out of memory", c->path);
    int i = 0;
    char sub[512];
    for (cJSON *e = j->child; e; e = e->next, i++) {
        long long x = 0;
        snprintf(sub, sizeof sub, "%s[%d]", key, i);
        if (as_integer(c, sub, e, (double)INT_MIN, (double)INT_MAX, &x, err)) {
            free(v);
            return LC_FAIL;
        }
        v[i] = (int)x;
    }
    *out = v;
    *n = len;
    return LC_OK;
}

int cfg_float_list(cfg *c, const char *key, int required, double **out, int *n, lc_err *err) {
    *out = NULL;
    *n = 0;
    cJSON *j;
    int r = get(c, key, required, &j, err);
    if (r <= 0) return r;
    if (!cJSON_IsArray(j)) return type_err(c, key, "an array of numbers", j, err);
    int len = cJSON_GetArraySize(j);
    if (len == 0) return LC_OK;
    double *v = malloc((size_t)len * sizeof *v);
    if (!v) return lc_errf(err, "%s: out of memory", c->path);
    int i = 0;
    for (cJSON *e = j->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e)) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%d]", key, i);
            free(v);
            return type_err(c, sub, "a number", e, err);
        }
        v[i] = e->valuedouble;
    }
    *out = v;
    *n = len;
    return LC_OK;
}

int cfg_has(const cfg *c, const char *key) {
    if (!c) return 0;
    cfg_node *nd;
    return lookup(c, key, 0, &nd, NULL) == 1;
}

int cfg_array_len(cfg *c, const char *key, lc_err *err) {
    if (!c) return lc_errf(err, "no config");
    cfg_node *nd;
    int r = lookup(c, key, 2, &nd, err); /* the elements' fields are read one by one */
    if (r < 0) return LC_FAIL;
    if (r == 0) {
        remember_query(c, key);
        return 0;
    }
    if (!cJSON_IsArray(nd->j)) return type_err(c, key, "an array of objects", nd->j, err);
    for (int i = 0; i < nd->n; i++)
        if (!cJSON_IsObject(nd->kids[i].j))
            return lc_errf(err, "%s: key '%s[%d]': expected an object, found %s", c->path, key,
                           i, cfg_json_type(nd->kids[i].j));
    return nd->n;
}

/* ---- paths ---------------------------------------------------------------- */

char *cfg_resolve_path(const cfg *c, const char *value) {
    if (!value) return NULL;
    const char *base = c ? c->path : NULL;
    const char *slash = base ? strrchr(base, '/') : NULL;
    if (value[0] == '/' || strncmp(value, "./", 2) == 0 || strcmp(value, ".") == 0 || !slash)
        return strdup(value);
    size_t dl = (size_t)(slash - base), vl = strlen(value);
    char *r = malloc(dl + 1 + vl + 1);
    if (!r) return NULL;
    memcpy(r, base, dl);
    r[dl] = '/';
    memcpy(r + dl + 1, value, vl + 1);
    return r;
}

/* ---- finish ---------------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 200 || lb > 200) return (size_t)-1;
    size_t row[201];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Finds the first unread value below nd (whose path is `path`); returns 1
 * and fills buf with its path, 0 if everything was read. */
static int first_unread(const cfg_node *nd, const char *path, int elem_of_touched, char *buf,
                        size_t cap) {
    if (nd->read) return 0;
    int is_obj = cJSON_IsObject(nd->j), is_arr = cJSON_IsArray(nd->j);
    if ((!is_obj && !is_arr) || (!nd->touched && !elem_of_touched)) {
        snprintf(buf, cap, "%s", path);
        return 1;
    }
    char sub[1024];
    for (int i = 0; i < nd->n; i++) {
        const cfg_node *k = &nd->kids[i];
        path_child(sub, sizeof sub, path, is_obj ? k->j->string : NULL, i);
        if (first_unread(k, sub, is_arr, buf, cap)) return 1;
    }
    return 0;
}

int cfg_finish(cfg *c, lc_err *err) {
    if (!c) return lc_errf(err, "no config");
    char path[1024];
    if (!first_unread(&c->top, "", 1, path, sizeof path)) return LC_OK;
    /* a hint: the closest key the program asked for and did not find */
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (int i = 0; i < c->n_queried; i++) {
        size_t d = edit_distance(path, c->queried[i]);
        if (d < bd) {
            bd = d;
            best = c->queried[i];
        }
    }
    if (best && bd > 0 && bd <= 2 && 3 * bd <= strlen(path))
        return lc_errf(err, "%s: unknown key '%s' (did you mean '%s'?)", c->path, path, best);
    return lc_errf(err, "%s: unknown key '%s'", c->path, path);
}
