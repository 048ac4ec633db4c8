/* porter.c: the Porter stemmer exactly as NLTK's
 * nltk.stem.porter.PorterStemmer(mode=NLTK_EXTENSIONS).stem(), the stemmer
 * rouge-score uses when use_stemmer=True.
 *
 * The steps follow the published algorithm (Porter 1980) with NLTK's
 * departures, each marked "NLTK" below: a table of irregular forms, words of
 * one or two letters left alone, "ies"/"ied" on four-letter words -> "ie",
 * y -> i only after a consonant that is not the first letter, *o also true
 * for a two-letter vowel-consonant stem, "bli" -> "ble", recursive "alli",
 * "fulli" -> "ful", "logi" -> "log".
 *
 * Rule lists behave like NLTK's _apply_rule_list: the FIRST rule whose suffix
 * matches decides; if its condition fails, the word is returned unchanged
 * (later rules are not tried). Characters other than a e i o u (and y after
 * a consonant) count as consonants, digits included. Works in place. */
#include "metrics.h"

#include <string.h>

typedef struct {
    char *w;
    size_t n;
} pword;

static int is_vowel_char(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* NLTK _is_consonant: y is a consonant at position 0 or after a vowel. */
static int is_cons(const char *w, size_t i) {
    if (is_vowel_char(w[i])) return 0;
    if (w[i] == 'y') {
        if (i == 0) return 1;
        return !is_cons(w, i - 1);
    }
    return 1;
}

/* m in [C](VC){m}[V] of w[0..n): the number of "vc" transitions. */
static int measure(const char *w, size_t n) {
    int m = 0;
    int prev_v = 0;
    for (size_t i = 0; i < n; i++) {
        int c = is_cons(w, i);
        if (c && prev_v) m++;
        prev_v = !c;
    }
    return m;
}

static int contains_vowel(const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_cons(w, i)) return 1;
    return 0;
}

/* *d: ends with a double consonant. */
static int ends_double_cons(const char *w, size_t n) {
    return n >= 2 && w[n - 1] == w[n - 2] && is_cons(w, n - 1);
}

/* *o: ends consonant-vowel-consonant, last not w/x/y; NLTK also accepts a
 * two-letter vowel-consonant word (any consonant). */
static int ends_cvc(const char *w, size_t n) {
    if (n >= 3 && is_cons(w, n - 3) && !is_cons(w, n - 2) &&
        is_cons(w, n - 1) && w[n - 1] != 'w' && w[n - 1] != 'x' &&
        w[n - 1] != 'y')
        return 1;
    return n == 2 && !is_cons(w, 0) && is_cons(w, 1);
}

static int ends_with(const pword *p, const char *suf) {
    size_t k = strlen(suf);
    return p->n >= k && memcmp(p->w + p->n - k, suf, k) == 0;
}

/* Replaces the last `strip` bytes with rep (never longer than the original
 * word overall, see callers). */
static void replace_tail(pword *p, size_t strip, const char *rep) {
    size_t k = strlen(rep);
    memmove(p->w + p->n - strip, rep, k);
    p->n = p->n - strip + k;
}

typedef enum { COND_NONE, COND_M_GT0, COND_M_GT1, COND_LOGI, COND_ION } cond_kind;

typedef struct {
    const char *suffix, *rep;
    cond_kind cond;
} rule;

static int cond_ok(const pword *p, size_t stem_len, cond_kind c) {
    switch (c) {
    case COND_NONE: return 1;
    case COND_M_GT0: return measure(p->w, stem_len) > 0;
    case COND_M_GT1: return measure(p->w, stem_len) > 1;
    case COND_LOGI: /* NLTK: positive measure of word[:-3] */
        return measure(p->w, p->n - 3) > 0;
    case COND_ION:
        return measure(p->w, stem_len) > 1 &&
               (p->w[stem_len - 1] == 's' || p->w[stem_len - 1] == 't');
    }
    return 0;
}

/* NLTK _apply_rule_list for plain suffix rules. */
static void apply_rules(pword *p, const rule *rules, size_t nr) {
    for (size_t i = 0; i < nr; i++) {
        if (!ends_with(p, rules[i].suffix)) continue;
        size_t k = strlen(rules[i].suffix);
        if (cond_ok(p, p->n - k, rules[i].cond)) replace_tail(p, k, rules[i].rep);
        return;
    }
}

static void step1a(pword *p) {
    if (ends_with(p, "ies") && p->n == 4) { /* NLTK: ties -> tie */
        replace_tail(p, 3, "ie");
        return;
    }
    static const rule r[] = {{"sses", "ss", COND_NONE},
                             {"ies", "i", COND_NONE},
                             {"ss", "ss", COND_NONE},
                             {"s", "", COND_NONE}};
    apply_rules(p, r, sizeof r / sizeof r[0]);
}

static void step1b(pword *p) {
    if (ends_with(p, "ied")) { /* NLTK */
        replace_tail(p, 3, p->n == 4 ? "ie" : "i");
        return;
    }
    if (ends_with(p, "eed")) {
        if (measure(p->w, p->n - 3) > 0) replace_tail(p, 3, "ee");
        return;
    }
    size_t stem_n = 0;
    int ok = 0;
    if (ends_with(p, "ed") && contains_vowel(p->w, p->n - 2)) {
        stem_n = p->n - 2;
        ok = 1;
    } else if (ends_with(p, "ing") && contains_vowel(p->w, p->n - 3)) {
        stem_n = p->n - 3;
        ok = 1;
    }
    if (!ok) return;
    p->n = stem_n; /* the intermediate stem */
    if (ends_with(p, "at")) { replace_tail(p, 2, "ate"); return; }
    if (ends_with(p, "bl")) { replace_tail(p, 2, "ble"); return; }
    if (ends_with(p, "iz")) { replace_tail(p, 2, "ize"); return; }
    if (ends_double_cons(p->w, p->n)) {
        char last = p->w[p->n - 1];
        if (last != 'l' && last != 's' && last != 'z') p->n -= 1;
        return;
    }
    if (measure(p->w, p->n) == 1 && ends_cvc(p->w, p->n)) {
        p->w[p->n] = 'e'; /* room: the stem is >= 2 bytes shorter */
        p->n += 1;
    }
}

static void step1c(pword *p) {
    /* NLTK: y -> i when the stem is longer than one letter and ends in a
     * consonant. */
    if (!ends_with(p, "y")) return;
    size_t s = p->n - 1;
    if (s > 1 && is_cons(p->w, s - 1)) p->w[s] = 'i';
}

static void step2(pword *p) {
    if (ends_with(p, "alli") && measure(p->w, p->n - 4) > 0) { /* NLTK */
        replace_tail(p, 4, "al");
        step2(p);
        return;
    }
    static const rule r[] = {
        {"ational", "ate", COND_M_GT0}, {"tional", "tion", COND_M_GT0},
        {"enci", "ence", COND_M_GT0},   {"anci", "ance", COND_M_GT0},
        {"izer", "ize", COND_M_GT0},    {"bli", "ble", COND_M_GT0},
        {"alli", "al", COND_M_GT0},     {"entli", "ent", COND_M_GT0},
        {"eli", "e", COND_M_GT0},       {"ousli", "ous", COND_M_GT0},
        {"ization", "ize", COND_M_GT0}, {"ation", "ate", COND_M_GT0},
        {"ator", "ate", COND_M_GT0},    {"alism", "al", COND_M_GT0},
        {"iveness", "ive", COND_M_GT0}, {"fulness", "ful", COND_M_GT0},
        {"ousness", "ous", COND_M_GT0}, {"aliti", "al", COND_M_GT0},
        {"iviti", "ive", COND_M_GT0},   {"biliti", "ble", COND_M_GT0},
        {"fulli", "ful", COND_M_GT0},   {"logi", "log", COND_LOGI},
    };
    apply_rules(p, r, sizeof r / sizeof r[0]);
}

static void step3(pword *p) {
    static const rule r[] = {
        {"icate", "ic", COND_M_GT0}, {"ative", "", COND_M_GT0},
        {"alize", "al", COND_M_GT0}, {"iciti", "ic", COND_M_GT0},
        {"ical", "ic", COND_M_GT0},  {"ful", "", COND_M_GT0},
        {"ness", "", COND_M_GT0},
    };
    apply_rules(p, r, sizeof r / sizeof r[0]);
}

static void step4(pword *p) {
    static const rule r[] = {
        {"al", "", COND_M_GT1},    {"ance", "", COND_M_GT1},
        {"ence", "", COND_M_GT1},  {"er", "", COND_M_GT1},
        {"ic", "", COND_M_GT1},    {"able", "", COND_M_GT1},
        {"ible", "", COND_M_GT1},  {"ant", "", COND_M_GT1},
        {"ement", "", COND_M_GT1}, {"ment", "", COND_M_GT1},
        {"ent", "", COND_M_GT1},   {"ion", "", COND_ION},
        {"ou", "", COND_M_GT1},    {"ism", "", COND_M_GT1},
        {"ate", "", COND_M_GT1},   {"iti", "", COND_M_GT1},
        {"ous", "", COND_M_GT1},   {"ive", "", COND_M_GT1},
        {"ize", "", COND_M_GT1},
    };
    apply_rules(p, r, sizeof r / sizeof r[0]);
}

static void step5a(pword *p) {
    if (!ends_with(p, "e")) return;
    size_t s = p->n - 1;
    int m = measure(p->w, s);
    if (m > 1 || (m == 1 && !ends_cvc(p->w, s))) p->n = s;
}

static void step5b(pword *p) {
    if (ends_with(p, "ll") && measure(p->w, p->n - 1) > 1) p->n -= 1;
}

/* NLTK_EXTENSIONS irregular forms (PorterStemmer.pool). */
static const char *const porter_pool[][2] = {
    {"sky", "sky"},         {"skies", "sky"},       {"dying", "die"},
    {"lying", "lie"},       {"tying", "tie"},       {"news", "news"},
    {"innings", "inning"},  {"inning", "inning"},   {"outings", "outing"},
    {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"},
    {"succeed", "succeed"},
};

size_t porter_stem(char *word, size_t len) {
    for (size_t i = 0; i < sizeof porter_pool / sizeof porter_pool[0]; i++) {
        size_t k = strlen(porter_pool[i][0]);
        if (k == len && memcmp(word, porter_pool[i][0], k) == 0) {
            size_t m = strlen(porter_pool[i][1]);
            memcpy(word, porter_pool[i][1], m); /* m <= k */
            return m;
        }
    }
    if (len <= 2) return len; /* NLTK departure */
    pword p = {word, len};
    step1a(&p);
    step1b(&p);
    step1c(&p);
    step2(&p);
    step3(&p);
    step4(&p);
    step5a(&p);
    step5b(&p);
    return p.n;
}
