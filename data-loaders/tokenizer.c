/* tokenizer.c: the tokenizer interface of tokenizer.h.
 *
 * Two kinds behind one opaque handle:
 *   - Hugging Face tokenizer.json with a BPE model, re-implemented here
 *     step by step like the Rust `tokenizers` library (the reference the
 *     tests compare against, id for id):
 *       1. added tokens are cut out of the raw text (leftmost-longest, as
 *          the aho-corasick matcher HF uses), honouring single_word,
 *          lstrip, rstrip; tokens with normalized=true are matched in the
 *          normalized text instead (and decode to their normalized form);
 *          their ids are assigned as HF's AddedVocabulary does;
 *       2. every other segment is normalized (Sequence, NFC/NFD/NFKC/NFKD,
 *          Prepend, Replace with a literal, Strip, Lowercase);
 *       3. pre-tokenized (Sequence, Split with one of the known regexes or
 *          a literal, ByteLevel, Metaspace, Digits). The regexes are NOT run
 *          by a regex engine: each known pattern string (GPT-2, Llama 3,
 *          Qwen2) is recognised and implemented as a hand-written scanner
 *          over Unicode general categories (unicode_tables.c);
 *       4. each piece goes through BPE (merge ranks in a hash map over id
 *          pairs, a heap ordered by (rank, position) exactly like HF's
 *          Word::merge_all; byte_fallback, unk/fuse_unk, ignore_merges,
 *          continuing_subword_prefix/end_of_word_suffix). Long pieces
 *          (SentencePiece text has no pre-tokenizer: a whole paragraph is
 *          one piece) are cut where no merge can ever join the two sides,
 *          which keeps the heaps small without changing the result;
 *       5. the post-processor (TemplateProcessing, ByteLevel, Sequence)
 *          adds BOS/EOS when add_special is set.
 *     Decoding runs the decoder chain (ByteLevel, Replace, ByteFallback,
 *     Fuse, Strip, Metaspace, Sequence) and ends with a lossy UTF-8
 *     conversion identical to Rust's String::from_utf8_lossy.
 *   - llama2.c tokenizer files, through the l2c_* functions of llama2c.c.
 *
 * Nothing here is global or mutable: a loaded tokenizer is read-only and
 * may be shared by threads; each encode call owns its scratch memory. */
#include "tokenizer_int.h"

/* ======================================================================
 * tokenizer.json parsing
 * ====================================================================== */

typedef struct {
    const char *file;
    lc_err *err;
} jctx;

__attribute__((format(printf, 3, 4))) static int jfail(jctx *c, const char *key,
                                                      const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lc_errf(c->err, "%s: '%s': %s", c->file, key, msg);
}

/* snprintf for key paths (truncation of very long paths is fine). */
__attribute__((format(printf, 3, 4))) static void keyf(char *buf, size_t n, const char *fmt,
                                                      ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static int joom(jctx *c) { return lc_errf(c->err, "%s: out of memory", c->file); }

/* A short, printable rendering of a JSON value for messages. */
static void jshow(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "'%.200s'", v->valuestring);
    } else {
        char *p = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%.200s", p ? p : "?");
        free(p);
    }
}

static int junsupported(jctx *c, const char *key, const cJSON *v, const char *supported) {
    char shown[256];
    jshow(v, shown, sizeof shown);
    return jfail(c, key, "unsupported value %s (supported: %s)", shown, supported);
}

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* A string member; absent/null -> *out = NULL unless required. */
static int jstr(jctx *c, const cJSON *o, const char *k, const char *path, int required,
                const char **out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = NULL;
    if (jnull(v)) return required ? jfail(c, key, "missing, expected a string") : LC_OK;
    if (!cJSON_IsString(v)) return jfail(c, key, "expected a string");
    *out = v->valuestring;
    return LC_OK;
}

static int jbool(jctx *c, const cJSON *o, const char *k, const char *path, int def, int *out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = def;
    if (jnull(v)) return LC_OK;
    if (!cJSON_IsBool(v)) return jfail(c, key, "expected true or false");
    *out = cJSON_IsTrue(v);
    return LC_OK;
}

static int jint_value(jctx *c, const cJSON *v, const char *key, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v)) return jfail(c, key, "expected an integer");
    double d = v->valuedouble;
    /* range first: converting an out-of-range double to an integer is undefined */
    if (!(d >= lo && d <= hi) || d != floor(d))
        return jfail(c, key, "expected an integer in [%d, %d], found %g", lo, hi, d);
    *out = (int)d;
    return LC_OK;
}

static int jint(jctx *c, const cJSON *o, const char *k, const char *path, int def, int lo, int hi,
                int *out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = def;
    if (jnull(v)) return LC_OK;
    return jint_value(c, v, key, lo, hi, out);
}

/* Exactly one Unicode character. */
static int jchar(jctx *c, const cJSON *o, const char *k, const char *path, uint32_t def,
                 uint32_t *out) {
    const char *s;
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    if (jstr(c, o, k, path, 0, &s)) return LC_FAIL;
    *out = def;
    if (!s) return LC_OK;
    size_t n = strlen(s);
    int len = 0;
    uint32_t cp = n && lc_utf8_check(s, n) == n ? lc_utf8_get((const unsigned char *)s, &len) : 0;
    if (n == 0 || (size_t)len != n)
        return jfail(c, key, "expected a single character, found '%.100s'", s);
    *out = cp;
    return LC_OK;
}

char *tok_dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* {"String": s} (or {"Regex": r} when allow_regex: *is_regex = 1). */
static int jpattern(jctx *c, const cJSON *o, const char *path, int allow_regex, int *is_regex,
                    const char **s) {
    char key[512];
    keyf(key, sizeof key, "%s.pattern", path);
    const cJSON *p = jget(o, "pattern");
    *is_regex = 0;
    *s = NULL;
    if (!cJSON_IsObject(p)) return jfail(c, key, "missing, expected {\"String\": ...} or {\"Regex\": ...}");
    const cJSON *v = jget(p, "String");
    if (cJSON_IsString(v)) {
        *s = v->valuestring;
        return LC_OK;
    }
    v = jget(p, "Regex");
    if (cJSON_IsString(v)) {
        if (!allow_regex) {
            keyf(key, sizeof key, "%s.pattern.Regex", path);
            return jfail(c, key, "unsupported: regex patterns are not supported here, only "
                         "{\"String\": ...}");
        }
        *is_regex = 1;
        *s = v->valuestring;
        return LC_OK;
    }
    return jfail(c, key, "expected {\"String\": \"...\"} or {\"Regex\": \"...\"}");
}

static const char *jtype(jctx *c, const cJSON *o, const char *path) {
    char key[512];
    keyf(key, sizeof key, "%s.type", path);
    const cJSON *v = jget(o, "type");
    if (!cJSON_IsString(v)) {
        jfail(c, key, "missing, expected a string");
        return NULL;
    }
    return v->valuestring;
}

/* ---- normalizers ---------------------------------------------------------- */

static int add_norm(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.normalizers", path);
        const cJSON *arr = jget(o, "normalizers");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.normalizers[%d]", path, i);
            if (add_norm(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    norm_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") ||
        !strcmp(type, "NFKD")) {
        st.type = NORM_NF;
        st.form = !strcmp(type, "NFC") ? NF_C : !strcmp(type, "NFD") ? NF_D
                  : !strcmp(type, "NFKC") ? NF_KC : NF_KD;
    } else if (!strcmp(type, "Prepend")) {
        const char *s;
        if (jstr(c, o, "prepend", path, 1, &s)) return LC_FAIL;
        st.type = NORM_PREPEND;
        st.alen = strlen(s);
        if (!(st.a = tok_dup_bytes(s, st.alen))) return joom(c);
    } else if (!strcmp(type, "Replace")) {
        const char *pat, *content;
        int is_rx;
        if (jpattern(c, o, path, 0, &is_rx, &pat) || jstr(c, o, "content", path, 1, &content))
            return LC_FAIL;
        if (!*pat) {
            keyf(key, sizeof key, "%s.pattern.String", path);
            return jfail(c, key, "must not be empty");
        }
        st.type = NORM_REPLACE;
        st.alen = strlen(pat);
        st.blen = strlen(content);
        st.a = tok_dup_bytes(pat, st.alen);
        st.b = tok_dup_bytes(content, st.blen);
        if (!st.a || !st.b) {
            free(st.a);
            free(st.b);
            return joom(c);
        }
    } else if (!strcmp(type, "Lowercase")) {
        st.type = NORM_LOWER;
    } else if (!strcmp(type, "Strip")) {
        st.type = NORM_STRIP;
        if (jbool(c, o, "strip_left", path, 1, &st.left) ||
            jbool(c, o, "strip_right", path, 1, &st.right))
            return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Lowercase");
    }
    size_t cap = (size_t)t->n_norm;
    if (GROW(t->norm, cap, (size_t)t->n_norm + 1)) {
        free(st.a);
        free(st.b);
        return joom(c);
    }
    t->norm[t->n_norm++] = st;
    return LC_OK;
}

/* ---- pre-tokenizers ------------------------------------------------------- */

/* prepend_scheme (default "always"); the older add_prefix_space: false
 * means "never" and contradicts any other declared scheme (as in HF). */
static int parse_prepend_scheme(jctx *c, const cJSON *o, const char *path, int *out) {
    const char *s;
    char key[512];
    if (jstr(c, o, "prepend_scheme", path, 0, &s)) return LC_FAIL;
    *out = PREPEND_ALWAYS;
    if (s) {
        keyf(key, sizeof key, "%s.prepend_scheme", path);
        if (!strcmp(s, "always")) *out = PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = PREPEND_NEVER;
        else return junsupported(c, key, jget(o, "prepend_scheme"), "always, first, never");
    }
    int aps;
    if (jbool(c, o, "add_prefix_space", path, 1, &aps)) return LC_FAIL;
    if (!aps) {
        keyf(key, sizeof key, "%s.add_prefix_space", path);
        if (*out != PREPEND_NEVER)
            return jfail(c, key, "false does not match prepend_scheme (absent or not \"never\")");
        *out = PREPEND_NEVER;
    }
    return LC_OK;
}

static int add_pt(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.pretokenizers", path);
        const cJSON *arr = jget(o, "pretokenizers");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.pretokenizers[%d]", path, i);
            if (add_pt(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    pt_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "Split")) {
        const char *pat, *beh;
        int is_rx;
        st.type = PT_SPLIT;
        if (jpattern(c, o, path, 1, &is_rx, &pat)) return LC_FAIL;
        if (jstr(c, o, "behavior", path, 1, &beh) || jbool(c, o, "invert", path, 0, &st.invert))
            return LC_FAIL;
        keyf(key, sizeof key, "%s.behavior", path);
        if (!strcmp(beh, "Removed")) st.behavior = SB_REMOVED;
        else if (!strcmp(beh, "Isolated")) st.behavior = SB_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious")) st.behavior = SB_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext")) st.behavior = SB_MERGED_NEXT;
        else if (!strcmp(beh, "Contiguous")) st.behavior = SB_CONTIGUOUS;
        else return junsupported(c, key, jget(o, "behavior"),
                                 "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
        if (is_rx) {
            keyf(key, sizeof key, "%s.pattern.Regex", path);
            if (!strcmp(pat, RX_GPT2_STR)) st.rx = RX_GPT2;
            else if (!strcmp(pat, RX_LLAMA3_STR)) st.rx = RX_LLAMA3;
            else if (!strcmp(pat, RX_QWEN2_STR)) st.rx = RX_QWEN2;
            else return jfail(c, key, "unsupported regex '%.300s' (regexes are not run by a "
                              "regex engine; supported: the GPT-2, Llama 3 and Qwen2 "
                              "pre-tokenizer patterns)", pat);
        } else {
            if (!*pat) {
                keyf(key, sizeof key, "%s.pattern.String", path);
                return jfail(c, key, "must not be empty");
            }
            st.rx = -1;
            st.lit_len = strlen(pat);
            if (!(st.lit = tok_dup_bytes(pat, st.lit_len))) return joom(c);
        }
    } else if (!strcmp(type, "ByteLevel")) {
        st.type = PT_BYTELEVEL;
        if (jbool(c, o, "add_prefix_space", path, 1, &st.add_prefix_space) ||
            jbool(c, o, "use_regex", path, 1, &st.use_regex))
            return LC_FAIL;
    } else if (!strcmp(type, "Metaspace")) {
        st.type = PT_METASPACE;
        if (jchar(c, o, "replacement", path, 0x2581, &st.repl) ||
            parse_prepend_scheme(c, o, path, &st.prepend) ||
            jbool(c, o, "split", path, 1, &st.split))
            return LC_FAIL;
    } else if (!strcmp(type, "Digits")) {
        st.type = PT_DIGITS;
        if (jbool(c, o, "individual_digits", path, 0, &st.individual)) return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, Split, ByteLevel, Metaspace, Digits");
    }
    size_t cap = (size_t)t->n_pt;
    if (GROW(t->pt, cap, (size_t)t->n_pt + 1)) {
        free(st.lit);
        return joom(c);
    }
    t->pt[t->n_pt++] = st;
    return LC_OK;
}

/* ---- decoders ------------------------------------------------------------- */

static int add_dec(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.decoders", path);
        const cJSON *arr = jget(o, "decoders");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.decoders[%d]", path, i);
            if (add_dec(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    dec_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "ByteLevel")) {
        st.type = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Replace")) {
        const char *pat, *content;
        int is_rx;
        if (jpattern(c, o, path, 0, &is_rx, &pat) || jstr(c, o, "content", path, 1, &content))
            return LC_FAIL;
        if (!*pat) {
            keyf(key, sizeof key, "%s.pattern.String", path);
            return jfail(c, key, "must not be empty");
        }
        st.type = DEC_REPLACE;
        st.alen = strlen(pat);
        st.blen = strlen(content);
        st.a = tok_dup_bytes(pat, st.alen);
        st.b = tok_dup_bytes(content, st.blen);
        if (!st.a || !st.b) {
            free(st.a);
            free(st.b);
            return joom(c);
        }
    } else if (!strcmp(type, "ByteFallback")) {
        st.type = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st.type = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        st.type = DEC_STRIP;
        if (jchar(c, o, "content", path, ' ', &st.cp) ||
            jint(c, o, "start", path, 0, 0, 1 << 30, &st.start) ||
            jint(c, o, "stop", path, 0, 0, 1 << 30, &st.stop))
            return LC_FAIL;
    } else if (!strcmp(type, "Metaspace")) {
        st.type = DEC_METASPACE;
        if (jchar(c, o, "replacement", path, 0x2581, &st.cp) ||
            parse_prepend_scheme(c, o, path, &st.prepend))
            return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
    }
    size_t cap = (size_t)t->n_dec;
    if (GROW(t->dec, cap, (size_t)t->n_dec + 1)) {
        free(st.a);
        free(st.b);
        return joom(c);
    }
    t->dec[t->n_dec++] = st;
    return LC_OK;
}

/* ---- post-processors ------------------------------------------------------ */

static void tmpl_free(tmpl *p) {
    for (int i = 0; i < p->n; i++) free(p->items[i].ids);
    free(p->items);
    memset(p, 0, sizeof *p);
}

static int parse_template(tokenizer *t, jctx *c, const cJSON *o, const char *path) {
    char key[512];
    keyf(key, sizeof key, "%s.single", path);
    const cJSON *single = jget(o, "single");
    if (!cJSON_IsArray(single)) return jfail(c, key, "missing, expected an array");
    const cJSON *specials = jget(o, "special_tokens");
    tmpl tp = {0};
    int n = cJSON_GetArraySize(single);
    if (n > 0 && !(tp.items = calloc((size_t)n, sizeof *tp.items))) return joom(c);
    int i = 0;
    for (const cJSON *e = single->child; e; e = e->next, i++) {
        keyf(key, sizeof key, "%s.single[%d]", path, i);
        const cJSON *seq = jget(e, "Sequence"), *sp = jget(e, "SpecialToken");
        tmpl_item *it = &tp.items[tp.n++];
        if (cJSON_IsObject(seq)) {
            const cJSON *id = jget(seq, "id");
            if (!cJSON_IsString(id) || strcmp(id->valuestring, "A")) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.single[%d].Sequence.id", path, i);
                return jfail(c, key, "expected \"A\" in a single-sequence template");
            }
            it->is_seq = 1;
        } else if (cJSON_IsObject(sp)) {
            const cJSON *id = jget(sp, "id");
            if (!cJSON_IsString(id)) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.single[%d].SpecialToken.id", path, i);
                return jfail(c, key, "missing, expected a string");
            }
            const cJSON *def = cJSON_IsObject(specials) ? jget(specials, id->valuestring) : NULL;
            const cJSON *ids = def ? jget(def, "ids") : NULL;
            if (!cJSON_IsArray(ids)) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.special_tokens.%.200s.ids", path, id->valuestring);
                return jfail(c, key, "missing, expected the ids of special token '%.200s'",
                             id->valuestring);
            }
            int m = cJSON_GetArraySize(ids), j = 0;
            if (m > 0 && !(it->ids = malloc(sizeof(int) * (size_t)m))) {
                tmpl_free(&tp);
                return joom(c);
            }
            for (const cJSON *x = ids->child; x; x = x->next, j++) {
                keyf(key, sizeof key, "%s.special_tokens.%.200s.ids[%d]", path,
                         id->valuestring, j);
                if (jint_value(c, x, key, 0, MAX_TOKEN_ID, &it->ids[j])) {
                    tmpl_free(&tp);
                    return LC_FAIL;
                }
            }
            it->n = m;
        } else {
            tmpl_free(&tp);
            return jfail(c, key, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
        }
    }
    size_t cap = (size_t)t->n_post;
    if (GROW(t->post, cap, (size_t)t->n_post + 1)) {
        tmpl_free(&tp);
        return joom(c);
    }
    t->post[t->n_post++] = tp;
    return LC_OK;
}

static int add_post(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.processors", path);
        const cJSON *arr = jget(o, "processors");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.processors[%d]", path, i);
            if (add_post(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    if (!strcmp(type, "ByteLevel")) return LC_OK; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) return parse_template(t, c, o, path);
    keyf(key, sizeof key, "%s.type", path);
    return junsupported(c, key, jget(o, "type"), "Sequence, ByteLevel, TemplateProcessing");
}

/* ---- model ------------------------------------------------------------- */

static uint32_t first_char(const char *s, int n) {
    int k;
    if (n <= 0 || !lc_utf8_valid_len((const unsigned char *)s, (size_t)n)) return UINT32_MAX;
    return lc_utf8_get((const unsigned char *)s, &k);
}

static uint32_t last_char(const char *s, int n) {
    int q = n - 1, k;
    if (n <= 0) return UINT32_MAX;
    while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
    if (lc_utf8_valid_len((const unsigned char *)s + q, (size_t)(n - q)) != n - q) return UINT32_MAX;
    return lc_utf8_get((const unsigned char *)s + q, &k);
}

/* The junction set (see struct tokenizer); left empty when unsafe. */
static int build_junctions(tokenizer *t) {
    if (t->cont_prefix || t->eow_suffix) return LC_OK;
    t->first_cp = malloc(sizeof(uint32_t) * ((size_t)t->n_ids + 1));
    t->last_cp = malloc(sizeof(uint32_t) * ((size_t)t->n_ids + 1));
    if (!t->first_cp || !t->last_cp) return LC_FAIL;
    for (int id = 0; id < t->n_ids; id++) {
        t->first_cp[id] = first_char(t->id_str[id], t->id_str[id] ? t->id_len[id] : 0);
        t->last_cp[id] = last_char(t->id_str[id], t->id_str[id] ? t->id_len[id] : 0);
    }
    u64map j;
    if (tok_u64map_init(&j, 1024)) {
        tok_u64map_free(&j);
        return LC_FAIL;
    }
    for (size_t h = 0; h <= t->merges.mask; h++) {
        if (t->merges.key[h] == U64_EMPTY) continue;
        int a = (int)(t->merges.key[h] >> 32), b = (int)(uint32_t)t->merges.key[h];
        if (t->last_cp[a] == UINT32_MAX || t->first_cp[b] == UINT32_MAX) {
            tok_u64map_free(&j); /* cannot reason about it: never split */
            return LC_OK;
        }
        if (tok_u64map_set(&j, ((uint64_t)t->last_cp[a] << 32) | t->first_cp[b], 0, 0)) {
            tok_u64map_free(&j);
            return LC_FAIL;
        }
    }
    t->junctions = j;
    return LC_OK;
}

static int parse_model(tokenizer *t, jctx *c, const cJSON *m) {
    if (!cJSON_IsObject(m)) return jfail(c, "model", "missing, expected an object");
    const cJSON *tv = jget(m, "type");
    if (!cJSON_IsString(tv)) return jfail(c, "model.type", "missing, expected \"BPE\"");
    if (strcmp(tv->valuestring, "BPE"))
        return junsupported(c, "model.type", tv, "BPE");
    const cJSON *dropout = jget(m, "dropout");
    if (!jnull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return junsupported(c, "model.dropout", dropout, "null (BPE dropout is random)");
    const char *unk, *pre, *suf;
    if (jstr(c, m, "unk_token", "model", 0, &unk) ||
        jstr(c, m, "continuing_subword_prefix", "model", 0, &pre) ||
        jstr(c, m, "end_of_word_suffix", "model", 0, &suf) ||
        jbool(c, m, "fuse_unk", "model", 0, &t->fuse_unk) ||
        jbool(c, m, "byte_fallback", "model", 0, &t->byte_fallback) ||
        jbool(c, m, "ignore_merges", "model", 0, &t->ignore_merges))
        return LC_FAIL;
    if (pre && *pre) {
        t->cont_prefix_len = strlen(pre);
        if (!(t->cont_prefix = tok_dup_bytes(pre, t->cont_prefix_len))) return joom(c);
    }
    if (suf && *suf) {
        t->eow_suffix_len = strlen(suf);
        if (!(t->eow_suffix = tok_dup_bytes(suf, t->eow_suffix_len))) return joom(c);
    }
    /* vocab */
    const cJSON *vocab = jget(m, "vocab");
    if (!cJSON_IsObject(vocab)) return jfail(c, "model.vocab", "missing, expected an object");
    size_t total = 0, count = 0;
    int max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        char key[512];
        keyf(key, sizeof key, "model.vocab.%.200s", e->string);
        int id = 0;
        if (jint_value(c, e, key, 0, MAX_TOKEN_ID, &id)) return LC_FAIL;
        if (id > max_id) max_id = id;
        total += strlen(e->string) + 1;
        count++;
    }
    t->n_ids = max_id + 1;
    t->vocab_count = (int)count;
    t->arena = malloc(total ? total : 1);
    t->id_str = calloc((size_t)t->n_ids + 1, sizeof *t->id_str);
    t->id_len = calloc((size_t)t->n_ids + 1, sizeof *t->id_len);
    if (!t->arena || !t->id_str || !t->id_len || tok_strmap_init(&t->vocab, count)) return joom(c);
    char *p = t->arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id = (int)e->valuedouble;
        size_t len = strlen(e->string);
        if (t->id_str[id]) {
            char key[512];
            keyf(key, sizeof key, "model.vocab.%.200s", e->string);
            return jfail(c, key, "id %d is also used by '%.200s'", id, t->id_str[id]);
        }
        memcpy(p, e->string, len + 1);
        t->id_str[id] = p;
        t->id_len[id] = (int)len;
        p += len + 1;
        if (tok_strmap_insert(&t->vocab, t->id_str, t->id_len, id) >= 0) {
            char key[512];
            keyf(key, sizeof key, "model.vocab.%.200s", e->string);
            return jfail(c, key, "token listed twice");
        }
    }
    /* merges: "a b" strings or ["a", "b"] pairs; rank = position */
    const cJSON *merges = jget(m, "merges");
    if (jnull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges))
        return jfail(c, "model.merges", "expected an array");
    if (tok_u64map_init(&t->merges, merges ? (size_t)cJSON_GetArraySize(merges) : 0)) return joom(c);
    sbuf cat = {0};
    int rank = 0, i = 0, rc = LC_OK;
    for (const cJSON *e = merges ? merges->child : NULL; e && !rc; e = e->next, i++) {
        char key[512];
        keyf(key, sizeof key, "model.merges[%d]", i);
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = jfail(c, key, "expected \"a b\" (two tokens and one space), found '%.200s'", s);
                break;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            alen = strlen(a);
            b = e->child->next->valuestring;
            blen = strlen(b);
        } else {
            rc = jfail(c, key, "expected \"a b\" or [\"a\", \"b\"]");
            break;
        }
        int ia = tok_vocab_find(t, a, alen), ib = tok_vocab_find(t, b, blen);
        size_t skip = t->cont_prefix_len <= blen ? t->cont_prefix_len : blen;
        cat.n = 0;
        if (lc_sbuf_put(&cat, a, alen) || lc_sbuf_put(&cat, b + skip, blen - skip)) {
            rc = joom(c);
            break;
        }
        int inew = tok_vocab_find(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || inew < 0) {
            const char *what = ia < 0 ? a : ib < 0 ? b : cat.p;
            int wl = ia < 0 ? (int)alen : ib < 0 ? (int)blen : (int)cat.n;
            rc = jfail(c, key, "token '%.*s' is not in model.vocab", wl > 200 ? 200 : wl, what);
            break;
        }
        if (rank >= (1 << 24)) {
            rc = jfail(c, key, "more than %d merges are not supported", 1 << 24);
            break;
        }
        if (tok_u64map_set(&t->merges, ((uint64_t)ia << 32) | (uint32_t)ib, rank, inew)) rc = joom(c);
        rank++;
    }
    free(cat.p);
    if (rc) return rc;
    if (build_junctions(t)) return joom(c);
    t->unk_id = -1;
    if (unk) {
        t->unk_id = tok_vocab_find(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return jfail(c, "model.unk_token", "'%.200s' is not in model.vocab", unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_vocab_find(t, name, 6);
    }
    return LC_OK;
}

/* ---- added tokens ------------------------------------------------------- */


/* added_tokens, resolved like HF's AddedVocabulary::add_tokens: the ids
 * written in the file are NOT used (HF only warns when they differ): a
 * token takes the id of an earlier added token with the same content, else
 * its id in model.vocab, else the next id from the model's vocabulary size
 * (number of entries) on. A token identical to an earlier one is ignored;
 * the same content with other flags updates the flags. */
static int parse_added(tokenizer *t, jctx *c, const cJSON *arr) {
    if (jnull(arr)) return LC_OK;
    if (!cJSON_IsArray(arr)) return jfail(c, "added_tokens", "expected an array");
    int n = cJSON_GetArraySize(arr), i = 0;
    size_t n_index = (size_t)(t->n_ids > t->vocab_count + n ? t->n_ids : t->vocab_count + n) + 1;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    t->added_str = calloc((size_t)n + 1, sizeof *t->added_str);
    t->added_len = calloc((size_t)n + 1, sizeof *t->added_len);
    int *index = malloc(sizeof(int) * n_index); /* id -> t->added index */
    if (!t->added || !t->added_str || !t->added_len || !index ||
        tok_strmap_init(&t->added_map, (size_t)n)) {
        free(index);
        return joom(c);
    }
    for (size_t k = 0; k < n_index; k++) index[k] = -1;
    int next_id = t->vocab_count, rc = LC_OK;
    for (const cJSON *e = arr->child; e && !rc; e = e->next, i++) {
        char path[64];
        keyf(path, sizeof path, "added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) {
            rc = jfail(c, path, "expected an object");
            break;
        }
        added_tok a;
        memset(&a, 0, sizeof a);
        const char *content;
        int file_id;
        if (jstr(c, e, "content", path, 1, &content) ||
            jint(c, e, "id", path, -1, 0, MAX_TOKEN_ID, &file_id) ||
            jbool(c, e, "special", path, 0, &a.special) ||
            jbool(c, e, "single_word", path, 0, &a.single_word) ||
            jbool(c, e, "lstrip", path, 0, &a.lstrip) ||
            jbool(c, e, "rstrip", path, 0, &a.rstrip) ||
            jbool(c, e, "normalized", path, !a.special, &a.normalized)) {
            rc = LC_FAIL;
            break;
        }
        a.len = (int)strlen(content);
        if (a.len == 0) continue;
        int prev = tok_strmap_find(&t->added_map, t->added_str, t->added_len, content, (size_t)a.len);
        if (prev >= 0) {
            added_tok *p = &t->added[prev];
            if (p->special == a.special && p->single_word == a.single_word &&
                p->lstrip == a.lstrip && p->rstrip == a.rstrip && p->normalized == a.normalized)
                continue;
            /* same content, same id: new flags; the special set only grows */
            p->special_set |= a.special;
            p->special = a.special;
            p->single_word = a.single_word;
            p->lstrip = a.lstrip;
            p->rstrip = a.rstrip;
            p->normalized = a.normalized;
            continue;
        }
        int id = tok_vocab_find(t, content, (size_t)a.len);
        if (id < 0) id = next_id++;
        if (!(a.content = tok_dup_bytes(content, (size_t)a.len))) {
            rc = joom(c);
            break;
        }
        a.id = id;
        a.special_set = a.special;
        int slot = index[id];
        if (slot >= 0) { /* an id taken by another content (sparse vocab) */
            free(t->added[slot].content);
            t->added[slot] = a;
        } else {
            slot = t->n_added++;
            t->added[slot] = a;
            index[id] = slot;
        }
        t->added_str[slot] = t->added[slot].content;
        t->added_len[slot] = a.len;
        tok_strmap_insert(&t->added_map, t->added_str, t->added_len, slot);
    }
    free(index);
    return rc;
}

/* After the model and the normalizer are known: ids, maps and tries. */
static int finish_added(tokenizer *t, jctx *c) {
    int n_ids = t->n_ids;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n_ids) n_ids = t->added[i].id + 1;
    if (n_ids > t->n_ids) {
        char **s = realloc(t->id_str, sizeof *s * ((size_t)n_ids + 1));
        if (!s) return joom(c);
        t->id_str = s;
        int *l = realloc(t->id_len, sizeof *l * ((size_t)n_ids + 1));
        if (!l) return joom(c);
        t->id_len = l;
        for (int i = t->n_ids; i <= n_ids; i++) {
            t->id_str[i] = NULL;
            t->id_len[i] = 0;
        }
        t->n_ids = n_ids;
    }
    t->added_of_id = malloc(sizeof(int) * ((size_t)t->n_ids + 1));
    t->is_special = calloc((size_t)t->n_ids + 1, 1);
    if (!t->added_of_id || !t->is_special) return joom(c);
    if (!t->added_map.slot && tok_strmap_init(&t->added_map, 0)) return joom(c);
    for (int i = 0; i < t->n_ids; i++) t->added_of_id[i] = -1;
    strmap specials;
    if (tok_strmap_init(&specials, (size_t)t->n_added)) return joom(c);
    sbuf nb = {0}, tmp = {0};
    u32buf w = {0};
    int rc = LC_OK;
    for (int i = 0; i < t->n_added && !rc; i++) {
        added_tok *a = &t->added[i];
        t->added_of_id[a->id] = i;
        if (a->special_set) tok_strmap_insert(&specials, t->added_str, t->added_len, i);
        if (a->normalized) { /* matched after normalization, in its normalized form */
            nb.n = 0;
            if (tok_normalize_text(t, a->content, (size_t)a->len, &nb, &tmp, &w)) {
                rc = joom(c);
                break;
            }
            a->norm_len = (int)nb.n;
            if (!(a->norm = tok_dup_bytes(nb.p ? nb.p : "", nb.n))) rc = joom(c);
            else if (a->norm_len && tok_trie_add(&t->norm_trie, a->norm, a->norm_len, i)) rc = joom(c);
        } else if (tok_trie_add(&t->raw_trie, a->content, a->len, i)) {
            rc = joom(c);
        }
    }
    for (int id = 0; id < t->n_ids && !rc; id++) {
        int len;
        const char *s = tok_id_token(t, id, &len);
        if (s && tok_strmap_find(&specials, t->added_str, t->added_len, s, (size_t)len) >= 0)
            t->is_special[id] = 1;
    }
    free(specials.slot);
    free(nb.p);
    free(tmp.p);
    free(w.cp);
    free(w.cc);
    return rc;
}

/* ---- BOS / EOS -------------------------------------------------------------- */

static int token_id_of(const tokenizer *t, const char *s) {
    size_t n = strlen(s);
    int a = tok_strmap_find(&t->added_map, t->added_str, t->added_len, s, n);
    if (a >= 0) return t->added[a].id;
    return tok_vocab_find(t, s, n);
}

/* bos_token / eos_token of a tokenizer_config.json beside the file, when
 * there is one; otherwise the template's first special token for BOS and
 * the usual names. */
static void find_bos_eos(tokenizer *t, const char *json_path) {
    t->bos = t->eos = -1;
    int have_cfg = 0;
    char cfg[4200];
    const char *slash = strrchr(json_path, '/');
    int dir_len = slash ? (int)(slash - json_path) + 1 : 0;
    if (snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", dir_len, json_path) <
        (int)sizeof cfg) {
        lc_err e2;
        size_t len;
        char *txt = lc_read_file(cfg, &len, &e2);
        cJSON *root = txt ? cJSON_ParseWithLength(txt, len) : NULL;
        if (cJSON_IsObject(root)) {
            have_cfg = 1;
            const char *names[2] = {"bos_token", "eos_token"};
            int *dst[2] = {&t->bos, &t->eos};
            char **text[2] = {&t->bos_text, &t->eos_text};
            for (int k = 0; k < 2; k++) {
                const cJSON *v = jget(root, names[k]);
                if (cJSON_IsObject(v)) v = jget(v, "content");
                if (cJSON_IsString(v)) {
                    *dst[k] = token_id_of(t, v->valuestring);
                    *text[k] = strdup(v->valuestring);
                }
            }
            /* a string, or a list of {"name", "template"} of which "default" */
            const cJSON *ct = jget(root, "chat_template"), *e;
            if (cJSON_IsArray(ct)) {
                const cJSON *found = NULL;
                cJSON_ArrayForEach(e, ct) {
                    const cJSON *nm = jget(e, "name");
                    if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")) found = jget(e, "template");
                }
                ct = found;
            }
            if (cJSON_IsString(ct)) t->chat_template = strdup(ct->valuestring);
            t->cfg_path = strdup(cfg);
        }
        cJSON_Delete(root);
        free(txt);
    }
    if (have_cfg) return;
    for (int i = 0; i < t->n_post && t->bos < 0; i++)
        if (t->post[i].n > 1 && !t->post[i].items[0].is_seq && t->post[i].items[0].n == 1)
            t->bos = t->post[i].items[0].ids[0];
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>"};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"};
    for (size_t i = 0; i < sizeof bos_names / sizeof *bos_names && t->bos < 0; i++)
        t->bos = token_id_of(t, bos_names[i]);
    for (size_t i = 0; i < sizeof eos_names / sizeof *eos_names && t->eos < 0; i++)
        t->eos = token_id_of(t, eos_names[i]);
}

/* ---- the whole file ------------------------------------------------------- */

/* txt/len: the JSON text; path names it in errors and locates a
 * tokenizer_config.json (find_special = 1) for BOS/EOS. */
int tok_load_json_text(tokenizer *t, const char *txt, size_t len, const char *path,
                       int vocab_size, int find_special, lc_err *err) {
    jctx c = {path, err};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(txt, len, &end, 0);
    int rc = LC_FAIL;
    if (!root) {
        size_t off = end && end >= txt && end <= txt + len ? (size_t)(end - txt) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (txt[i] == '\n') line++, col = 1;
            else col++;
        }
        lc_errf(err, "%s: invalid JSON near line %d, column %d (byte %zu)", path, line, col, off);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: expected a JSON object (a tokenizer.json)", path);
        goto done;
    }
    const cJSON *v;
    if (!jnull(v = jget(root, "truncation"))) {
        junsupported(&c, "truncation", v, "null");
        goto done;
    }
    if (!jnull(v = jget(root, "padding"))) {
        junsupported(&c, "padding", v, "null");
        goto done;
    }
    if (parse_model(t, &c, jget(root, "model"))) goto done;
    if (!jnull(v = jget(root, "normalizer")) && add_norm(t, &c, v, "normalizer", 0)) goto done;
    if (!jnull(v = jget(root, "pre_tokenizer")) && add_pt(t, &c, v, "pre_tokenizer", 0)) goto done;
    if (!jnull(v = jget(root, "post_processor")) && add_post(t, &c, v, "post_processor", 0))
        goto done;
    t->has_decoder = !jnull(v = jget(root, "decoder"));
    if (t->has_decoder && add_dec(t, &c, v, "decoder", 0)) goto done;
    if (parse_added(t, &c, jget(root, "added_tokens")) || finish_added(t, &c)) goto done;
    for (int i = 0; i < t->n_post; i++)
        for (int j = 0; j < t->post[i].n; j++)
            for (int k = 0; k < t->post[i].items[j].n; k++)
                if (t->post[i].items[j].ids[k] >= t->n_ids) {
                    lc_errf(err, "%s: 'post_processor': special token id %d is past the "
                            "vocabulary (%d ids)", path, t->post[i].items[j].ids[k], t->n_ids);
                    goto done;
                }
    if (vocab_size > 0 && vocab_size < t->n_ids) {
        lc_errf(err, "%s: the tokenizer has ids up to %d but the model's vocab_size is %d", path,
                t->n_ids - 1, vocab_size);
        goto done;
    }
    if (find_special) find_bos_eos(t, path);
    rc = LC_OK;
done:
    cJSON_Delete(root);
    return rc;
}

static int load_json(tokenizer *t, const char *path, int vocab_size, lc_err *err) {
    size_t len;
    char *txt = lc_read_file(path, &len, err);
    if (!txt) return LC_FAIL;
    int rc = tok_load_json_text(t, txt, len, path, vocab_size, 1, err);
    free(txt);
    return rc;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    if (t->kind == KIND_L2C) l2c_tokenizer_free(&t->l2c);
    free(t->path);
    free(t->chat_template);
    free(t->bos_text);
    free(t->eos_text);
    free(t->cfg_path);
    free(t->id_str);
    free(t->id_len);
    free(t->arena);
    free(t->vocab.slot);
    tok_u64map_free(&t->merges);
    tok_u64map_free(&t->junctions);
    free(t->first_cp);
    free(t->last_cp);
    free(t->cont_prefix);
    free(t->eow_suffix);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->added);
    free(t->added_of_id);
    free(t->added_str);
    free(t->added_len);
    free(t->added_map.slot);
    tok_trie_free(&t->raw_trie);
    tok_trie_free(&t->norm_trie);
    free(t->is_special);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pt; i++) free(t->pt[i].lit);
    free(t->pt);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    for (int i = 0; i < t->n_post; i++) tmpl_free(&t->post[i]);
    free(t->post);
    free(t);
}

static int has_json_ext(const char *p) {
    size_t n = strlen(p);
    return n >= 5 && !strcmp(p + n - 5, ".json");
}

int tokenizer_load(tokenizer **out, const char *path, int vocab_size, lc_err *err) {
    *out = NULL;
    if (!path) return lc_errf(err, "tokenizer_load: no path given");
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return oom(err);
    t->unk_id = t->bos = t->eos = -1;
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) != 0) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        free(t);
        return LC_FAIL;
    }
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + 32;
        file = malloc(n);
        if (!file) {
            free(t);
            return oom(err);
        }
        snprintf(file, n, "%s/tokenizer.json", path);
        if (stat(file, &st) != 0) {
            lc_errf(err, "%s: directory without a tokenizer.json", path);
            free(file);
            free(t);
            return LC_FAIL;
        }
    } else {
        file = tok_dup_bytes(path, strlen(path));
        if (!file) {
            free(t);
            return oom(err);
        }
    }
    t->path = file;
    int is_json = has_json_ext(file);
    size_t fl = strlen(file);
    if (fl >= 5 && !strcmp(file + fl - 5, ".gguf")) {
        tokenizer_free(t);
        return tokenizer_load_gguf(out, path, vocab_size, err);
    }
    if (!is_json) { /* sniff: a JSON object, GGUF, or a llama2.c file (int32 first) */
        FILE *f = fopen(file, "rb");
        if (f) {
            unsigned char head[64];
            size_t n = fread(head, 1, sizeof head, f);
            fclose(f);
            if (n >= 4 && !memcmp(head, "GGUF", 4)) {
                tokenizer_free(t);
                return tokenizer_load_gguf(out, path, vocab_size, err);
            }
            size_t i = 0;
            while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t'))
                i++;
            if (i < n && head[i] == '{') {
                is_json = 1;
                if (i == 0 && n >= 4 && !head[1] && !head[2] && !head[3]) is_json = 0;
            }
        }
    }
    int rc;
    if (is_json) {
        t->kind = KIND_HF;
        rc = load_json(t, file, vocab_size, err);
    } else {
        t->kind = KIND_L2C;
        t->l2c_add_bos = 1;
        rc = l2c_tokenizer_load(&t->l2c, file, vocab_size, err);
        if (!rc) {
            t->n_ids = t->l2c.vocab_size;
            t->bos = t->l2c.bos_id;
            t->eos = t->l2c.eos_id;
        } else {
            memset(&t->l2c, 0, sizeof t->l2c);
        }
    }
    if (rc) {
        tokenizer_free(t);
        return LC_FAIL;
    }
    *out = t;
    return LC_OK;
}

int tokenizer_vocab_size(const tokenizer *t) { return t ? t->n_ids : 0; }
int tokenizer_bos(const tokenizer *t) { return t ? t->bos : -1; }
const char *tokenizer_chat_template(const tokenizer *t, const char **cfg_path) {
    if (cfg_path) *cfg_path = t ? t->cfg_path : NULL;
    return t ? t->chat_template : NULL;
}
const char *tokenizer_bos_text(const tokenizer *t) { return t ? t->bos_text : NULL; }
const char *tokenizer_eos_text(const tokenizer *t) { return t ? t->eos_text : NULL; }
int tokenizer_eos(const tokenizer *t) { return t ? t->eos : -1; }

int tokenizer_token_id(const tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    if (t->kind == KIND_L2C) {
        size_t n = strlen(piece);
        for (int i = 0; i < t->l2c.vocab_size; i++)
            if ((size_t)t->l2c.lens[i] == n && !memcmp(t->l2c.vocab[i], piece, n)) return i;
        return -1;
    }
    return token_id_of(t, piece);
}

