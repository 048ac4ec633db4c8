/* Tests for calibrate/lib/metrics.c: ROUGE against js-rouge configured as
 * rouge-score (tests/js/rouge_ref.js), the Porter stemmer and stemmed ROUGE
 * against NLTK (python3-nltk; missing, the test fails), chrF/chrF++ against a
 * line-by-line Python port of sacreBLEU's CHRF, the Latin tokeniser against a
 * Python/unicodedata formulation, and hand-computed values. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------- */

#define NEAR(a, b, tol) (fabs((a) - (b)) <= (tol))

static void assert_prf(prf x, double p, double r, double f, const char *what) {
    cr_assert(NEAR(x.p, p, 1e-12) && NEAR(x.r, r, 1e-12) && NEAR(x.f, f, 1e-12),
              "%s: got p=%.15g r=%.15g f=%.15g, want p=%.15g r=%.15g f=%.15g",
              what, x.p, x.r, x.f, p, r, f);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static size_t rng_below(uint64_t *s, size_t n) { return (size_t)(rng_next(s) % n); }

typedef struct {
    char **cand, **ref;
    size_t n, cap;
} pairs;

static void pairs_add(pairs *p, const char *c, const char *r) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->cand = realloc(p->cand, p->cap * sizeof *p->cand);
        p->ref = realloc(p->ref, p->cap * sizeof *p->ref);
        cr_assert(p->cand && p->ref);
    }
    p->cand[p->n] = strdup(c);
    p->ref[p->n] = strdup(r);
    p->n++;
}

static void pairs_free(pairs *p) {
    for (size_t i = 0; i < p->n; i++) {
        free(p->cand[i]);
        free(p->ref[i]);
    }
    free(p->cand);
    free(p->ref);
    memset(p, 0, sizeof *p);
}

/* A small vocabulary with repeats, case, punctuation, digits, accents,
 * Turkish dotted I, the Kelvin sign, CJK, an emoji and invalid UTF-8. */
static const char *const vocab[] = {
    "the", "The", "THE", "cat", "cats", "Cat", "mat", "sat", "on", "a", "is",
    "dog", "runs", "running", "ran", "runner", "happy", "happily", "don't",
    "well-known", "U.S.", "3", "42", "x1", "2nd", "está", "Está", "ESTÁ", "café",
    "naïve", "Año", "garçon", "İstanbul", "\u212Aelvin", "ŒUVRE", "col·lecció",
    "日本語", "\xf0\x9f\x99\x82", "\xff", "e\xcc\x81t\xc3\xa9", ",", ".", "!", "?",
    "...", "(hi)", "\"quoted\"", "--", "généralisation", "relational",
};
static const char *const seps[] = {" ", " ", " ", "  ", ", ", "\n", "\t",
                                   "-",  "", ". ", " \xc2\xa0 "};

static char *random_text(uint64_t *s, size_t max_words) {
    size_t nw = rng_below(s, max_words + 1);
    size_t cap = 64 + nw * 40;
    char *t = malloc(cap);
    cr_assert(t);
    t[0] = 0;
    for (size_t i = 0; i < nw; i++) {
        if (i) strcat(t, seps[rng_below(s, sizeof seps / sizeof seps[0])]);
        strcat(t, vocab[rng_below(s, sizeof vocab / sizeof vocab[0])]);
    }
    return t;
}

/* Drops, duplicates and swaps words of src to make a related text. */
static char *perturb(uint64_t *s, const char *src) {
    char *copy = strdup(src);
    char *words[512];
    size_t nw = 0;
    for (char *w = strtok(copy, " "); w && nw < 512; w = strtok(NULL, " "))
        words[nw++] = w;
    for (size_t i = 0; nw > 1 && i < nw / 4 + 1; i++) {
        size_t a = rng_below(s, nw), b = rng_below(s, nw);
        char *t = words[a];
        words[a] = words[b];
        words[b] = t;
    }
    char *out = malloc(2 * strlen(src) + 16);
    cr_assert(out);
    out[0] = 0;
    for (size_t i = 0; i < nw; i++) {
        size_t r = rng_below(s, 10);
        if (r == 0) continue; /* drop */
        strcat(out, words[i]);
        strcat(out, " ");
        if (r == 1) {
            strcat(out, words[i]); /* duplicate */
            strcat(out, " ");
        }
    }
    free(copy);
    return out;
}

/* Reads up to max DialogSum records (summary, dialogue) from dev.jsonl. */
static size_t dialogsum_load(char **summ, char **dial, size_t max) {
    const char *assets = tu_shared_assets();
    if (!assets) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/dialogsum/dev.jsonl", assets);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = 0, cap = 1 << 16;
    char *line = malloc(cap);
    cr_assert(line);
    while (n < max && fgets(line, (int)cap, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cJSON *s = cJSON_GetObjectItem(j, "summary"), *d = cJSON_GetObjectItem(j, "dialogue");
        if (cJSON_IsString(s) && cJSON_IsString(d)) {
            summ[n] = strdup(s->valuestring);
            dial[n] = strdup(d->valuestring);
            n++;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return n;
}

/* The comparison set: synthetic pairs (always) plus DialogSum pairs. */
static void make_pairs(pairs *p, size_t *n_dialogsum) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    static const char *const edge[][2] = {
        {"", ""},         {"", "the cat"},     {"the cat", ""},
        {"   ", "a b"},   {"a b", "\n\t"},     {"!!! ...", "a b"},
        {"a", "a"},       {"a", "b"},          {"a b", "a b"},
        {"a a a a", "a"}, {"a", "a a a a"},    {"the the the", "the cat the"},
        {"ESTÁ", "está"}, {"está bien", "esta bien"}, {"İstanbul", "i stanbul"},
        {"\xe2\x84\xaa", "k"}, {"\xff\xfe", "a"}, {"1 2 3", "3 2 1"},
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        pairs_add(p, edge[i][0], edge[i][1]);
    for (int i = 0; i < 300; i++) {
        char *c = random_text(&s, i < 150 ? 8 : 30);
        char *r = (i % 3 == 0) ? perturb(&s, c) : random_text(&s, i < 150 ? 8 : 30);
        pairs_add(p, c, r);
        free(c);
        free(r);
    }
    char *summ[160], *dial[160];
    size_t nd = dialogsum_load(summ, dial, 160);
    size_t before = p->n;
    for (size_t i = 0; i < nd; i++) {
        pairs_add(p, summ[i], summ[(i + 1) % nd]); /* unrelated summaries */
        char *q = perturb(&s, summ[i]);
        pairs_add(p, q, summ[i]); /* related */
        free(q);
        if (i < 30) pairs_add(p, summ[i], dial[i]); /* long reference */
    }
    for (size_t i = 0; i < nd; i++) {
        free(summ[i]);
        free(dial[i]);
    }
    *n_dialogsum = p->n - before;
}

/* Writes pairs as JSONL with the given key names. */
static void write_jsonl(const char *path, const pairs *p, const char *kc,
                        const char *kr) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    for (size_t i = 0; i < p->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, kc, p->cand[i]);
        cJSON_AddStringToObject(o, kr, p->ref[i]);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    fclose(f);
}

/* Splits captured output into lines (in place). */
static size_t split_lines(char *text, char **lines, size_t max) {
    size_t n = 0;
    for (char *l = strtok(text, "\n"); l && n < max; l = strtok(NULL, "\n"))
        lines[n++] = l;
    return n;
}

static int parse_doubles(const char *line, double *v, int max) {
    int n = 0;
    char *end;
    const char *s = line;
    while (n < max) {
        double x = strtod(s, &end);
        if (end == s) break;
        v[n++] = x;
        s = end;
    }
    return n;
}

/* /usr/bin/python3 able to import `module` (NULL: plain python3); a missing
 * one fails the test, naming the Debian package. */
static const char *need_python(const char *module, const char *debian_package) {
    tu_require_python(module ? module : "sys", debian_package);
    return "/usr/bin/python3";
}

static char *write_script(const char *dir, const char *name, const char *src) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert(tu_write_file(path, src, strlen(src)) == 0);
    return path;
}

/* ---- ROUGE vs js-rouge (rouge-score tokenisation, no stemming) ------------ */

Test(metrics, rouge_matches_js_rouge) {
    tu_require_npm("js-rouge");

    pairs p = {0};
    size_t nds = 0;
    make_pairs(&p, &nds);
    const char *dir = tu_tmpdir();
    char in[4096], cmd[8192];
    snprintf(in, sizeof in, "%s/rouge_pairs.jsonl", dir);
    write_jsonl(in, &p, "cand", "ref");
    snprintf(cmd, sizeof cmd, "node %s/tests/js/rouge_ref.js < %s", tu_source_dir(), in);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(out && st == 0, "rouge_ref.js failed (status %d)", st);
    char **lines = malloc(p.n * sizeof *lines);
    size_t nl = split_lines(out, lines, p.n);
    cr_assert_eq(nl, p.n, "rouge_ref.js printed %zu lines for %zu pairs", nl, p.n);

    double maxdiff = 0;
    size_t empty = 0;
    for (size_t i = 0; i < p.n; i++) {
        rouge_scores s;
        lc_err err;
        cr_assert(rouge_score_all(p.cand[i], p.ref[i], NULL, &s, &err) == LC_OK, "%s",
                  err.msg);
        const prf mine[4] = {s.r1, s.r2, s.r3, s.rl};
        if (strcmp(lines[i], "EMPTY") == 0) {
            empty++;
            for (int k = 0; k < 4; k++)
                cr_assert(mine[k].p == 0 && mine[k].r == 0 && mine[k].f == 0,
                          "pair %zu (js-rouge refuses empty text): want zeros", i);
            cr_assert_eq(s.weighted, 0.0);
            continue;
        }
        double v[12];
        cr_assert_eq(parse_doubles(lines[i], v, 12), 12, "bad line %zu: %s", i, lines[i]);
        for (int k = 0; k < 4; k++) {
            const double want[3] = {v[3 * k], v[3 * k + 1], v[3 * k + 2]};
            const double got[3] = {mine[k].p, mine[k].r, mine[k].f};
            for (int j = 0; j < 3; j++) {
                double d = fabs(got[j] - want[j]);
                if (d > maxdiff) maxdiff = d;
                cr_assert(d <= 1e-9,
                          "pair %zu, %s %c: C %.17g vs js-rouge %.17g\ncand: %s\nref:  %s",
                          i, k == 3 ? "ROUGE-L" : (k == 0 ? "ROUGE-1" : k == 1 ? "ROUGE-2" : "ROUGE-3"),
                          "prf"[j], got[j], want[j], p.cand[i], p.ref[i]);
            }
        }
        double w = v[2] / 6 + v[5] / 3 + v[8] / 2;
        cr_assert(NEAR(s.weighted, w, 1e-9), "pair %zu weighted ROUGE %.17g vs %.17g", i,
                  s.weighted, w);
    }
    fprintf(stderr,
            "metrics: ROUGE-1/2/3/L P,R,F agree with js-rouge on %zu pairs "
            "(%zu DialogSum, %zu empty), max |diff| = %.3g\n",
            p.n, nds, empty, maxdiff);
    cr_assert_geq(p.n, 300);
    free(lines);
    free(out);
    pairs_free(&p);
}

/* ---- Porter stemmer and stemmed ROUGE vs NLTK ---------------------------- */

Test(metrics, porter_known_stems) {
    static const char *const cases[][2] = {
        {"running", "run"},     {"caresses", "caress"},   {"ponies", "poni"},
        {"ties", "tie"},        {"cats", "cat"},          {"feed", "feed"},
        {"agreed", "agre"},     {"plastered", "plaster"}, {"motoring", "motor"},
        {"sing", "sing"},       {"conflated", "conflat"}, {"hopping", "hop"},
        {"filing", "file"},     {"happy", "happi"},       {"relational", "relat"},
        {"generalization", "gener"}, {"dying", "die"},    {"skies", "sky"},
        {"news", "news"},       {"runners", "runner"},    {"runs", "run"},
        {"were", "were"},       {"hopefully", "hope"},    {"conditional", "condit"},
        {"triplicate", "triplic"}, {"electrical", "electr"}, {"adjustable", "adjust"},
        {"controlling", "control"}, {"goodness", "good"}, {"at", "at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        size_t n = strlen(cases[i][0]);
        memcpy(buf, cases[i][0], n + 1);
        n = porter_stem(buf, n);
        buf[n] = 0;
        cr_assert_str_eq(buf, cases[i][1], "stem(%s)", cases[i][0]);
    }
}

static const char py_stem[] =
    "import sys\n"
    "from nltk.stem.porter import PorterStemmer\n"
    "p = PorterStemmer()\n"
    "for w in open(sys.argv[1]).read().split():\n"
    "    print(w, p.stem(w))\n";

Test(metrics, porter_matches_nltk) {
    const char *py = need_python("nltk", "Debian's python3-nltk");
    /* words: DialogSum vocabulary (when present) + generated suffix stress */
    pairs p = {0};
    size_t nds;
    make_pairs(&p, &nds);
    const char *dir = tu_tmpdir();
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s/words.txt", dir);
    FILE *f = fopen(wpath, "wb");
    cr_assert(f);
    static const char *const suf[] = {
        "ational", "tional", "enci", "anci", "izer", "bli", "alli", "entli", "eli",
        "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness", "ousness",
        "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize", "iciti",
        "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant",
        "ement", "ment", "ent", "sion", "tion", "ou", "ism", "ate", "iti", "ous", "ive",
        "ize", "e", "ll", "ies", "ied", "eed", "ed", "ing", "sses", "ss", "s", "y"};
    static const char *const stems[] = {"", "a", "b", "tr", "gener", "rel", "hop", "fil",
                                        "cont", "happ", "rat", "oy", "bo", "sky", "x9"};
    size_t nwords = 0;
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++)
        for (size_t j = 0; j < sizeof suf / sizeof suf[0]; j++)
            for (size_t k = 0; k < 8; k++) {
                fprintf(f, "%s%s%s\n", stems[i], suf[j], k ? suf[(j * 7 + k * 13) % 60] : "");
                nwords++;
            }
    for (size_t i = 0; i < p.n; i++) {
        rouge_tokens t;
        lc_err err;
        cr_assert(rouge_tokenize(p.ref[i], NULL, &t, &err) == LC_OK);
        for (size_t k = 0; k < t.n; k++, nwords++) fprintf(f, "%s\n", t.tokens[k]);
        rouge_tokens_free(&t);
    }
    fclose(f);
    const char *script = write_script(dir, "stem.py", py_stem);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s", py, script, wpath);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(out && st == 0, "nltk stemmer script failed");
    size_t checked = 0;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        char *sp = strchr(l, ' ');
        cr_assert(sp);
        *sp = 0;
        char buf[256];
        size_t n = strlen(l);
        cr_assert(n < sizeof buf);
        memcpy(buf, l, n + 1);
        n = porter_stem(buf, n);
        buf[n] = 0;
        cr_assert_str_eq(buf, sp + 1, "stem(%s): C %s, NLTK %s", l, buf, sp + 1);
        checked++;
    }
    cr_assert_eq(checked, nwords);
    fprintf(stderr, "metrics: Porter stems agree with NLTK on %zu words\n", checked);
    free(out);
    pairs_free(&p);
}

/* rouge-score's tokenize.py, _score_ngrams and _score_lcs, written out. */
static const char py_rouge[] =
    "import json, re, sys\n"
    "from collections import Counter\n"
    "stemmer = None\n"
    "if sys.argv[2] == '1':\n"
    "    from nltk.stem import porter\n"
    "    stemmer = porter.PorterStemmer()\n"
    "def tokenize(text):\n"
    "    text = text.lower()\n"
    "    text = re.sub(r'[^a-z0-9]+', ' ', text)\n"
    "    toks = re.split(r'\\s+', text)\n"
    "    if stemmer:\n"
    "        toks = [stemmer.stem(x) if len(x) > 3 else x for x in toks]\n"
    "    return [x for x in toks if re.match(r'^[a-z0-9]+$', x)]\n"
    "def fm(p, r):\n"
    "    return 2 * p * r / (p + r) if p + r > 0 else 0.0\n"
    "def grams(t, n):\n"
    "    return Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1))\n"
    "def rn(c, r, n):\n"
    "    gc, gr = grams(c, n), grams(r, n)\n"
    "    inter = sum(min(gr[g], gc[g]) for g in gr)\n"
    "    p = inter / max(sum(gc.values()), 1)\n"
    "    q = inter / max(sum(gr.values()), 1)\n"
    "    return (p, q, fm(p, q))\n"
    "def rl(c, r):\n"
    "    if not c or not r:\n"
    "        return (0.0, 0.0, 0.0)\n"
    "    prev = [0] * (len(c) + 1)\n"
    "    for i in range(1, len(r) + 1):\n"
    "        cur = [0] * (len(c) + 1)\n"
    "        for j in range(1, len(c) + 1):\n"
    "            cur[j] = prev[j - 1] + 1 if r[i - 1] == c[j - 1] else max(prev[j], cur[j - 1])\n"
    "        prev = cur\n"
    "    p, q = prev[-1] / len(c), prev[-1] / len(r)\n"
    "    return (p, q, fm(p, q))\n"
    "for line in open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):\n"
    "    d = json.loads(line)\n"
    "    c, r = tokenize(d['cand']), tokenize(d['ref'])\n"
    "    v = rn(c, r, 1) + rn(c, r, 2) + rn(c, r, 3) + rl(c, r)\n"
    "    print(' '.join(repr(float(x)) for x in v))\n";

Test(metrics, stemmed_rouge_matches_rouge_score_with_nltk) {
    const char *py = need_python("nltk", "Debian's python3-nltk");
    pairs p = {0};
    size_t nds;
    make_pairs(&p, &nds);
    const char *dir = tu_tmpdir();
    char in[4096], cmd[8192];
    snprintf(in, sizeof in, "%s/pairs.jsonl", dir);
    write_jsonl(in, &p, "cand", "ref");
    const char *script = write_script(dir, "rouge.py", py_rouge);
    snprintf(cmd, sizeof cmd, "%s %s %s 1", py, script, in);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(out && st == 0, "python rouge reference failed");
    char **lines = malloc(p.n * sizeof *lines);
    cr_assert_eq(split_lines(out, lines, p.n), p.n);
    rouge_opts o = {.stem = 1};
    double maxdiff = 0;
    for (size_t i = 0; i < p.n; i++) {
        rouge_scores s;
        cr_assert(rouge_score_all(p.cand[i], p.ref[i], &o, &s, NULL) == LC_OK);
        const prf mine[4] = {s.r1, s.r2, s.r3, s.rl};
        double v[12];
        cr_assert_eq(parse_doubles(lines[i], v, 12), 12);
        for (int k = 0; k < 4; k++) {
            const double got[3] = {mine[k].p, mine[k].r, mine[k].f};
            for (int j = 0; j < 3; j++) {
                double d = fabs(got[j] - v[3 * k + j]);
                if (d > maxdiff) maxdiff = d;
                cr_assert(d <= 1e-9, "pair %zu score %d/%d: %.17g vs %.17g\ncand: %s\nref: %s",
                          i, k, j, got[j], v[3 * k + j], p.cand[i], p.ref[i]);
            }
        }
    }
    fprintf(stderr,
            "metrics: stemmed ROUGE-1/2/3/L agree with rouge-score+NLTK on %zu pairs, "
            "max |diff| = %.3g\n",
            p.n, maxdiff);
    free(lines);
    free(out);
    pairs_free(&p);
}

/* ---- hand-computed ROUGE ---------------------------------------------------- */

Test(metrics, rouge_hand_computed) {
    /* cand: the cat sat on the mat / ref: the cat is on the mat
     * unigrams: 5 of 6 match; bigrams: "the cat" "on the" "the mat" of 5;
     * LCS "the cat on the mat" = 5 */
    const char *c = "The cat sat on the mat.", *r = "The cat is on the mat";
    assert_prf(rouge_n(c, r, 1, NULL), 5.0 / 6, 5.0 / 6, 5.0 / 6, "R1");
    assert_prf(rouge_n(c, r, 2, NULL), 3.0 / 5, 3.0 / 5, 3.0 / 5, "R2");
    assert_prf(rouge_l(c, r, NULL), 5.0 / 6, 5.0 / 6, 5.0 / 6, "RL");
    /* unequal lengths: cand 2 tokens, ref 4; overlap 2 -> p=1, r=1/2 */
    assert_prf(rouge_n("police killed", "police killed the gunman", 1, NULL), 1, 0.5,
               2.0 / 3, "R1 short");
    /* clipping: "a a a a" vs "a": overlap min(4,1) = 1 */
    assert_prf(rouge_n("a a a a", "a", 1, NULL), 0.25, 1, 0.4, "R1 clip");
    /* empty sides: all zero, like rouge-score */
    assert_prf(rouge_n("", "a b", 1, NULL), 0, 0, 0, "R1 empty cand");
    assert_prf(rouge_n("a b", "", 1, NULL), 0, 0, 0, "R1 empty ref");
    assert_prf(rouge_n("", "", 2, NULL), 0, 0, 0, "R2 both empty");
    assert_prf(rouge_l("!!!", "a", NULL), 0, 0, 0, "RL punctuation only");
    assert_prf(rouge_n("a", "a b", 2, NULL), 0, 0, 0, "R2 too short");
    /* accents, rouge-score default: "ESTÁ bien" -> est bien; "esta bien" ->
     * esta bien: 1 of 2 */
    assert_prf(rouge_n("ESTÁ bien", "esta bien", 1, NULL), 0.5, 0.5, 0.5, "R1 accents");
    assert_prf(rouge_n("ESTÁ bien", "est bien", 1, NULL), 1, 1, 1, "R1 accents dropped");
    rouge_opts lat = {.tok = ROUGE_TOK_LATIN};
    assert_prf(rouge_n("ESTÁ bien", "está bien", 1, &lat), 1, 1, 1, "R1 latin");
    assert_prf(rouge_n("ESTÁ bien", "est bien", 1, &lat), 0.5, 0.5, 0.5, "R1 latin 2");
    /* stemming: runners->runner, running->run, runs->run, were stays */
    rouge_opts st = {.stem = 1};
    assert_prf(rouge_n("The runners were running", "the runner runs", 1, &st), 0.75, 1,
               6.0 / 7, "R1 stem");
    assert_prf(rouge_n("The runners were running", "the runner runs", 1, NULL), 0.25,
               1.0 / 3, 2.0 / 7, "R1 no stem");
    /* invalid arguments */
    prf bad = rouge_n(NULL, "a", 1, NULL);
    cr_assert(isnan(bad.p) && isnan(bad.r) && isnan(bad.f));
    bad = rouge_n("a", "a", 0, NULL);
    cr_assert(isnan(bad.f));
    cr_assert(isnan(rouge_l("a", NULL, NULL).f));
    cr_assert(isnan(weighted_rouge(NULL, "a", NULL)));
}

static void assert_tokens(const char *text, const rouge_opts *o, const char *want) {
    rouge_tokens t;
    lc_err err;
    cr_assert(rouge_tokenize(text, o, &t, &err) == LC_OK, "%s", err.msg);
    char got[1024] = "";
    for (size_t i = 0; i < t.n; i++) {
        if (i) strcat(got, "|");
        strcat(got, t.tokens[i]);
        cr_assert_eq(strlen(t.tokens[i]), t.lens[i]);
    }
    cr_assert_str_eq(got, want, "tokens of \"%s\" (mode %d, stem %d)", text, o ? (int)o->tok : 0,
                     o ? o->stem : 0);
    rouge_tokens_free(&t);
}

Test(metrics, tokenisers) {
    rouge_opts lat = {.tok = ROUGE_TOK_LATIN}, st = {.stem = 1},
               latst = {.stem = 1, .tok = ROUGE_TOK_LATIN};
    assert_tokens("Está bien, ¿no?", NULL, "est|bien|no");
    assert_tokens("Está bien, ¿no?", &lat, "está|bien|no");
    assert_tokens("Año NUEVO", NULL, "a|o|nuevo");
    assert_tokens("Año NUEVO", &lat, "año|nuevo");
    assert_tokens("CAFÉ crème Œuvre GARÇON", &lat, "café|crème|œuvre|garçon");
    /* NFD input composes to the same tokens */
    assert_tokens("CAFE\xcc\x81 cre\xcc\x80me", &lat, "café|crème");
    assert_tokens("CAFE\xcc\x81", NULL, "cafe");
    /* Catalan middle dot stays between l and l only */
    assert_tokens("Col·lecció a·b", &lat, "col·lecció|a|b");
    assert_tokens("Col·lecció", NULL, "col|lecci");
    /* French apostrophes and hyphens separate */
    assert_tokens("L'école est-elle", &lat, "l|école|est|elle");
    /* Turkish dotted capital I: rouge-score lowercases to "i" + U+0307 */
    assert_tokens("İstanbul", NULL, "i|stanbul");
    assert_tokens("İstanbul", &lat, "istanbul");
    /* Kelvin sign lowercases to k in both; ß and ſ */
    assert_tokens("\u212Aelvin", NULL, "kelvin");
    assert_tokens("\u212Aelvin STRAẞE stra\xc3\x9f" "e \xc5\xbf", &lat,
                  "kelvin|stra|e|straße|s");
    /* ordinal indicators; digits; other scripts are separators */
    assert_tokens("1º 2ª 日本語 x", &lat, "1º|2ª|x");
    assert_tokens("don't stop-me 42x", NULL, "don|t|stop|me|42x");
    /* invalid UTF-8 bytes are separators */
    assert_tokens("ab\xff" "cd\xc3", NULL, "ab|cd");
    assert_tokens("ab\xff" "cd\xc3", &lat, "ab|cd");
    /* stemming: only tokens longer than 3; ASCII only in the Latin mode */
    assert_tokens("Running runs ran cats caresses ponies", &st, "run|run|ran|cat|caress|poni");
    assert_tokens("running canciones está", &latst, "run|cancion|está");
    assert_tokens("", NULL, "");
    assert_tokens("  \n\t ", &lat, "");
}

/* ---- the Latin tokeniser vs a unicodedata formulation --------------------- */

static const char py_latin[] =
    "import json, sys, unicodedata\n"
    "def fold(ch):\n"
    "    if ch == '\\u0130': return 'i'\n"
    "    if ch == '\\u017f': return 's'\n"
    "    if ord(ch) < 0x180:\n"
    "        l = ch.lower()\n"
    "        return l if len(l) == 1 else ch\n"
    "    return ch\n"
    "def word(ch):\n"
    "    o = ord(ch)\n"
    "    return ('a' <= ch <= 'z' or '0' <= ch <= '9' or ch in '\\u00aa\\u00ba'\n"
    "            or (0xdf <= o <= 0xff and o != 0xf7) or 0x100 <= o <= 0x17f)\n"
    "for line in open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):\n"
    "    s = unicodedata.normalize('NFC', json.loads(line)['t'])\n"
    "    s = [fold(c) for c in s if not 0x300 <= ord(c) <= 0x36f]\n"
    "    toks, cur = [], ''\n"
    "    for i, c in enumerate(s):\n"
    "        if word(c) or (c == '\\u00b7' and 0 < i < len(s) - 1 and s[i - 1] == 'l' and s[i + 1] == 'l'):\n"
    "            cur += c\n"
    "        elif cur:\n"
    "            toks.append(cur); cur = ''\n"
    "    if cur: toks.append(cur)\n"
    "    sys.stdout.buffer.write(('|'.join(toks) + '\\n').encode('utf-8'))\n";

Test(metrics, latin_tokeniser_matches_unicodedata) {
    const char *py = need_python(NULL, "Debian's python3");
    /* random strings over Latin-1/Ext-A letters (precomposed and NFD),
     * ASCII, punctuation, stray combining marks, middle dots, Kelvin and
     * Angstrom signs, CJK. A mark never follows an accented letter: NFC
     * would compose e.g. Ç + U+0301 to U+1E08, outside the word range, where
     * the tokeniser drops the second mark (documented in METRICS.md). */
    static const char *const bits[] = {
        "A", "z", "Q", "0", "9", " ", " ", ",", "'", "-", "·", "l", "L", "l·l", "L·L",
        "É", "é", "ñ", "Ñ", "ç", "Ç", "ß", "ẞ", "ÿ", "Ÿ", "Œ", "œ", "Ā", "ą", "Ł", "ł",
        "ĳ", "Ĳ", "ſ", "İ", "ı", "ŉ", "Þ", "×", "÷", "µ", "ª", "º", "\xe2\x84\xaa",
        "\xe2\x84\xab", "日", " \xcc\x81", "1\xcc\x88", " \xcd\x81", "e\xcc\x81", "E\xcc\x80",
        "n\xcc\x83", "C\xcc\xa7", "u\xcc\x88", "a\xcc\x8a", "z\xcc\x8c", "I\xcc\x87",
        "1\xcc\x81", "\xc2\xa0", "\t"};
    uint64_t s = 12345;
    size_t n = 400;
    char **texts = malloc(n * sizeof *texts);
    const char *dir = tu_tmpdir();
    char in[4096];
    snprintf(in, sizeof in, "%s/latin.jsonl", dir);
    FILE *f = fopen(in, "wb");
    cr_assert(f && texts);
    for (size_t i = 0; i < n; i++) {
        char buf[512] = "";
        size_t k = rng_below(&s, 25);
        for (size_t j = 0; j < k; j++) strcat(buf, bits[rng_below(&s, sizeof bits / sizeof bits[0])]);
        texts[i] = strdup(buf);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "t", buf);
        char *js = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", js);
        free(js);
        cJSON_Delete(o);
    }
    fclose(f);
    const char *script = write_script(dir, "latin.py", py_latin);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s", py, script, in);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(out && st == 0, "python latin reference failed");
    char *line = out;
    rouge_opts lat = {.tok = ROUGE_TOK_LATIN};
    for (size_t i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        cr_assert(nl, "too few lines");
        *nl = 0;
        rouge_tokens t;
        cr_assert(rouge_tokenize(texts[i], &lat, &t, NULL) == LC_OK);
        char got[2048] = "";
        for (size_t k = 0; k < t.n; k++) {
            if (k) strcat(got, "|");
            strcat(got, t.tokens[k]);
        }
        cr_assert_str_eq(got, line, "text %zu \"%s\": C %s, python %s", i, texts[i], got, line);
        rouge_tokens_free(&t);
        free(texts[i]);
        line = nl + 1;
    }
    free(texts);
    free(out);
}

/* ---- chrF ------------------------------------------------------------------ */

Test(metrics, chrf_hand_computed) {
    /* identical: orders 1-2 effective, P = R = 1 */
    cr_assert(NEAR(chrf("ab", "ab", NULL), 100, 1e-12));
    /* "abc" vs "abd": order 1: 2/3, order 2: 1/2, order 3: 0, orders 4-6 not
     * effective: avgP = avgR = 7/18 -> 100 * 7/18 */
    cr_assert(NEAR(chrf("abc", "abd", NULL), 700.0 / 18, 1e-12), "%.17g",
              chrf("abc", "abd", NULL));
    /* whitespace removed: "a b" vs "abc": order 1 P=1 R=2/3, order 2 P=1 R=1/2,
     * order 3 has no hyp n-gram: avgP = 1, avgR = 7/12,
     * F2 = 5 * 7/12 / (4 + 7/12) = 7/11 */
    cr_assert(NEAR(chrf("a b", "abc", NULL), 700.0 / 11, 1e-12), "%.17g",
              chrf("a b", "abc", NULL));
    cr_assert_eq(chrf("", "abc", NULL), 0.0);
    cr_assert_eq(chrf("abc", "", NULL), 0.0);
    cr_assert_eq(chrf("", "", NULL), 0.0);
    cr_assert_eq(chrf("xyz", "abc", NULL), 0.0);
    /* case matters by default; lowercase option */
    chrf_opts lo = chrf_opts_default();
    lo.lowercase = 1;
    cr_assert(chrf("AB", "ab", NULL) == 0.0);
    cr_assert(NEAR(chrf("ÁB", "áb", &lo), 100, 1e-12));
    /* chrF++: "ab" vs "ab": chars 1-2, word unigram effective, P = R = 1 */
    chrf_opts pp = chrf_opts_default();
    pp.word_order = 2;
    cr_assert(NEAR(chrf("ab", "ab", &pp), 100, 1e-12));
    /* chrF++ "ab cd" vs "ab ce": chars "abcd"/"abce": o1 3/4, o2 2/3, o3 1/2,
     * o4 0; words: o1 1/2, o2 0 -> avg over 6 effective orders */
    double want = 100 * (0.75 + 2.0 / 3 + 0.5 + 0 + 0.5 + 0) / 6;
    cr_assert(NEAR(chrf("ab cd", "ab ce", &pp), want, 1e-12), "%.17g vs %.17g",
              chrf("ab cd", "ab ce", &pp), want);
    /* corpus statistics sum before scoring */
    chrf_stats acc;
    chrf_stats_init(&acc, NULL);
    cr_assert(chrf_stats_add(&acc, "abc", "abd", NULL, NULL) == LC_OK);
    cr_assert(chrf_stats_add(&acc, "ab", "ab", NULL, NULL) == LC_OK);
    /* o1: match 4 / hyp 5 / ref 5; o2: 2/3; o3: 0 of 1 -> avg (4/5+2/3+0)/3 */
    cr_assert(NEAR(chrf_from_stats(&acc, NULL), 100 * (0.8 + 2.0 / 3) / 3, 1e-12));
    /* invalid options */
    chrf_opts bad = chrf_opts_default();
    bad.char_order = 20;
    cr_assert(isnan(chrf("a", "a", &bad)));
    cr_assert(isnan(chrf(NULL, "a", NULL)));
}

/* sacreBLEU 2.x CHRF (_remove_punctuation, extract_all_char_ngrams,
 * extract_word_ngrams, _get_match_statistics, _compute_f_score) written out. */
static const char py_chrf[] =
    "import json, sys\n"
    "from collections import Counter\n"
    "co, wo, beta, lc, ws, epsm = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\\n"
    "    sys.argv[5] == '1', sys.argv[6] == '1', sys.argv[7] == '1'\n"
    "PUNCTS = set('!\"#$%&\\'()*+,-./:;<=>?@[\\\\]^_`{|}~')\n"
    "def remove_punct(sent):\n"
    "    out = []\n"
    "    for w in sent.split():\n"
    "        if len(w) == 1:\n"
    "            out.append(w)\n"
    "        elif w[-1] in PUNCTS:\n"
    "            out += [w[:-1], w[-1]]\n"
    "        elif w[0] in PUNCTS:\n"
    "            out += [w[0], w[1:]]\n"
    "        else:\n"
    "            out.append(w)\n"
    "    return out\n"
    "def char_ngrams(line):\n"
    "    if not ws:\n"
    "        line = ''.join(line.split())\n"
    "    return [Counter(line[i:i + n] for i in range(len(line) - n + 1)) for n in range(1, co + 1)]\n"
    "def word_ngrams(toks, n):\n"
    "    return Counter(' '.join(toks[i:i + n]) for i in range(len(toks) - n + 1))\n"
    "def stats(hyp, ref):\n"
    "    if lc:\n"
    "        hyp, ref = hyp.lower(), ref.lower()\n"
    "    h, r = char_ngrams(hyp), char_ngrams(ref)\n"
    "    if wo > 0:\n"
    "        hw, rw = remove_punct(hyp), remove_punct(ref)\n"
    "        h += [word_ngrams(hw, n) for n in range(1, wo + 1)]\n"
    "        r += [word_ngrams(rw, n) for n in range(1, wo + 1)]\n"
    "    out = []\n"
    "    for hn, rn in zip(h, r):\n"
    "        m, hc = 0, 0\n"
    "        for g, c in hn.items():\n"
    "            hc += c\n"
    "            if g in rn:\n"
    "                m += min(c, rn[g])\n"
    "        out += [hc if rn else 0, sum(rn.values()), m]\n"
    "    return out\n"
    "def fscore(st):\n"
    "    eps = 1e-16\n"
    "    score, eff, factor = 0.0, 0, beta ** 2\n"
    "    ap, ar = 0.0, 0.0\n"
    "    for i in range(co + wo):\n"
    "        nh, nr, nm = st[3 * i: 3 * i + 3]\n"
    "        p = nm / nh if nh > 0 else eps\n"
    "        r = nm / nr if nr > 0 else eps\n"
    "        d = factor * p + r\n"
    "        score += ((1 + factor) * p * r / d) if d > 0 else eps\n"
    "        if nh > 0 and nr > 0:\n"
    "            ap += p; ar += r; eff += 1\n"
    "    if epsm:\n"
    "        return 100 * score / (co + wo)\n"
    "    if eff == 0:\n"
    "        ap = ar = 0.0\n"
    "    else:\n"
    "        ap /= eff; ar /= eff\n"
    "    if ap + ar:\n"
    "        score = (1 + factor) * ap * ar\n"
    "        score /= ((factor * ap) + ar)\n"
    "        return 100 * score\n"
    "    return 0.0\n"
    "total = [0] * (3 * (co + wo))\n"
    "for line in open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):\n"
    "    d = json.loads(line)\n"
    "    st = stats(d['hyp'], d['ref'])\n"
    "    total = [a + b for a, b in zip(total, st)]\n"
    "    print(repr(fscore(st)))\n"
    "print(repr(fscore(total)))\n";

Test(metrics, chrf_matches_sacrebleu_port) {
    const char *py = need_python(NULL, "Debian's python3");
    pairs p = {0};
    size_t nds;
    make_pairs(&p, &nds);
    const char *dir = tu_tmpdir();
    char in[4096];
    snprintf(in, sizeof in, "%s/chrf.jsonl", dir);
    write_jsonl(in, &p, "hyp", "ref");
    const char *script = write_script(dir, "chrf.py", py_chrf);
    /* char_order word_order beta lowercase whitespace eps_smoothing */
    static const chrf_opts variants[] = {
        {6, 0, 2, 0, 0, 0}, {6, 2, 2, 0, 0, 0}, {6, 0, 2, 1, 0, 0},
        {6, 2, 2, 1, 1, 0}, {6, 0, 2, 0, 0, 1}, {4, 1, 1, 0, 1, 0},
    };
    char **lines = malloc((p.n + 1) * sizeof *lines);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const chrf_opts *o = &variants[v];
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "%s %s %s %d %d %d %d %d %d", py, script, in,
                 o->char_order, o->word_order, (int)o->beta, o->lowercase, o->whitespace,
                 o->eps_smoothing);
        int st;
        char *out = tu_capture(cmd, &st);
        cr_assert(out && st == 0, "python chrF reference failed");
        cr_assert_eq(split_lines(out, lines, p.n + 1), p.n + 1);
        double maxdiff = 0;
        for (size_t i = 0; i < p.n; i++) {
            double want = strtod(lines[i], NULL), got = chrf(p.cand[i], p.ref[i], o);
            double d = fabs(got - want);
            if (d > maxdiff) maxdiff = d;
            cr_assert(d <= 1e-9, "variant %zu pair %zu: C %.17g, sacreBLEU port %.17g\nhyp: %s\nref: %s",
                      v, i, got, want, p.cand[i], p.ref[i]);
        }
        metrics_corpus c;
        lc_err err;
        cr_assert(metrics_corpus_eval((const char *const *)p.cand, (const char *const *)p.ref,
                                      p.n, NULL, o, &c, &err) == LC_OK, "%s", err.msg);
        double want = strtod(lines[p.n], NULL);
        cr_assert(NEAR(c.chrf_corpus, want, 1e-9), "variant %zu corpus chrF %.17g vs %.17g", v,
                  c.chrf_corpus, want);
        fprintf(stderr,
                "metrics: chrF(c%d w%d b%g lc%d ws%d eps%d) agrees with the sacreBLEU port on "
                "%zu pairs, max |diff| = %.3g (corpus %.6f)\n",
                o->char_order, o->word_order, o->beta, o->lowercase, o->whitespace,
                o->eps_smoothing, p.n, maxdiff, c.chrf_corpus);
        metrics_corpus_free(&c);
        free(out);
    }
    free(lines);
    pairs_free(&p);
}

/* ---- weighted ROUGE and corpus aggregation ---------------------------------- */

Test(metrics, weighted_rouge_hand_computed) {
    /* "a b c d" vs "a b c e": R1 3/4, R2 2/3, R3 1/2, RL 3/4 */
    double w = weighted_rouge("a b c d", "a b c e", NULL);
    cr_assert(NEAR(w, 0.75 / 6 + (2.0 / 3) / 3 + 0.5 / 2, 1e-12), "%.17g", w);
    cr_assert(NEAR(w, 43.0 / 72, 1e-12));
    cr_assert(NEAR(rouge_mean_12l("a b c d", "a b c e", NULL), (0.75 + 2.0 / 3 + 0.75) / 3,
                   1e-12));
    cr_assert(NEAR(weighted_rouge("Sure, see you at 5!", "sure see you at 5", NULL), 1.0,
                   1e-12));
    cr_assert_eq(weighted_rouge("", "ok", NULL), 0.0);
    /* two-word reply: no trigram, so at most 1/6 + 1/3 */
    cr_assert(NEAR(weighted_rouge("ok thanks", "ok thanks", NULL), 0.5, 1e-12));
}

Test(metrics, corpus_means_and_examples) {
    const char *cands[] = {"a b c d", "the cat", ""};
    const char *refs[] = {"a b c e", "the cat", "x"};
    metrics_corpus c;
    lc_err err;
    cr_assert(metrics_corpus_eval(cands, refs, 3, NULL, NULL, &c, &err) == LC_OK, "%s",
              err.msg);
    cr_assert_eq(c.n, 3);
    cr_assert(NEAR(c.r1.f, (0.75 + 1 + 0) / 3, 1e-12));
    cr_assert(NEAR(c.r2.p, (2.0 / 3 + 1 + 0) / 3, 1e-12));
    cr_assert(NEAR(c.rl.r, (0.75 + 1 + 0) / 3, 1e-12));
    cr_assert(NEAR(c.weighted, (43.0 / 72 + 0.5 + 0) / 3, 1e-12));
    for (size_t i = 0; i < 3; i++) {
        cr_assert(NEAR(c.examples[i].rouge.weighted, weighted_rouge(cands[i], refs[i], NULL),
                       1e-15));
        cr_assert(NEAR(c.examples[i].chrf, chrf(cands[i], refs[i], NULL), 1e-12));
    }
    cr_assert(NEAR(c.chrf_mean, (c.examples[0].chrf + c.examples[1].chrf) / 3, 1e-12));
    metrics_corpus_free(&c);
    /* empty corpus: n = 0, means NaN */
    cr_assert(metrics_corpus_eval(NULL, NULL, 0, NULL, NULL, &c, &err) == LC_OK);
    cr_assert(c.n == 0 && isnan(c.r1.f) && isnan(c.chrf_corpus));
    metrics_corpus_free(&c);
    /* a NULL text is an error, not a crash */
    const char *nulls[] = {"a", NULL};
    const char *two[] = {"a", "b"};
    cr_assert(metrics_corpus_eval(nulls, two, 2, NULL, NULL, &c, &err) == LC_FAIL);
    cr_assert(strstr(err.msg, "example 1") != NULL, "%s", err.msg);
}

/* ---- arbitrary bytes ----------------------------------------------------------- */

Test(metrics, arbitrary_bytes_give_bounded_scores) {
    uint64_t s = 777;
    rouge_opts ro[3] = {{0, ROUGE_TOK_ROUGE_SCORE}, {1, ROUGE_TOK_ROUGE_SCORE},
                        {1, ROUGE_TOK_LATIN}};
    chrf_opts co = chrf_opts_default(), pp = chrf_opts_default();
    pp.word_order = 2;
    pp.lowercase = 1;
    for (int it = 0; it < 2000; it++) {
        char a[96], b[96];
        size_t na = rng_below(&s, sizeof a), nb = rng_below(&s, sizeof b);
        for (size_t i = 0; i < na; i++) a[i] = (char)(1 + rng_below(&s, 255));
        for (size_t i = 0; i < nb; i++) b[i] = (char)(1 + rng_below(&s, 255));
        a[na] = b[nb] = 0;
        for (int k = 0; k < 3; k++) {
            rouge_scores r;
            cr_assert(rouge_score_all(a, b, &ro[k], &r, NULL) == LC_OK);
            const prf all[4] = {r.r1, r.r2, r.r3, r.rl};
            for (int j = 0; j < 4; j++)
                cr_assert(all[j].p >= 0 && all[j].p <= 1 && all[j].r >= 0 && all[j].r <= 1 &&
                          all[j].f >= 0 && all[j].f <= 1);
            cr_assert(r.weighted >= 0 && r.weighted <= 1 + 1e-12);
        }
        double c1 = chrf(a, b, &co), c2 = chrf(a, b, &pp);
        cr_assert(c1 >= 0 && c1 <= 100 + 1e-9 && c2 >= 0 && c2 <= 100 + 1e-9, "%g %g", c1, c2);
        double self = chrf(a, a, &co); /* 0 only for whitespace-only text */
        cr_assert(self == 0.0 || NEAR(self, 100, 1e-9), "%.17g", self);
    }
}
