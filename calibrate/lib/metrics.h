/* metrics.h: text-overlap metrics used to score generated outputs.
 *
 * ROUGE-N / ROUGE-L   exactly as Google's `rouge-score` package computes them
 *                     (RougeScorer(["rouge1","rouge2","rougeL"]), optional
 *                     use_stemmer=True with NLTK's PorterStemmer()).
 * chrF / chrF++       exactly as sacreBLEU 2.x's CHRF metric (default: char
 *                     order 6, word order 0, beta 2, whitespace removed,
 *                     effective-order averaging); chrF++ = word_order 2.
 * weighted ROUGE      the reply-suggestion metric: 1/6 R1-F + 1/3 R2-F +
 *                     1/2 R3-F (F1 of ROUGE-1, -2, -3).
 *
 * calibrate/METRICS.md writes down every formula, every tokenisation rule and
 * the sources they were checked against. All scores are plain functions of
 * their inputs (no global state). Inputs are NUL-terminated UTF-8; invalid
 * bytes never crash anything (see METRICS.md for how they count).
 *
 * Failure convention: functions returning prf or double return NaN in every
 * field when memory runs out or an argument is invalid (NULL text, n < 1);
 * functions returning int return LC_OK / LC_FAIL. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"

/* Precision, recall and F1 of one comparison, each in [0, 1]. */
typedef struct {
    double p, r, f;
} prf;

/* ---- tokenisation -------------------------------------------------------- */

typedef enum {
    /* rouge-score's tokenizer, bit for bit: Python str.lower(), every run of
     * characters outside [a-z0-9] becomes one separator. Accented letters are
     * separators, so "está" -> "est", "Año" -> "a" "o". The default. */
    ROUGE_TOK_ROUGE_SCORE = 0,
    /* Latin-script variant for Spanish/French/Catalan outputs (NOT rouge-score
     * compatible): NFC composition of base letter + combining accent, simple
     * Unicode case folding, and the letters of Latin-1 Supplement and Latin
     * Extended-A (U+00C0-U+017F, plus ª º) are word characters, so "Está" ->
     * "está", "ÇA" -> "ça"; Catalan "l·l" stays inside a word. */
    ROUGE_TOK_LATIN = 1
} rouge_tok;

typedef struct {
    int stem;      /* nonzero: Porter-stem tokens longer than 3 characters,
                      like rouge-score's use_stemmer=True (English only). */
    rouge_tok tok; /* tokenisation mode; zero-initialised = rouge-score's */
} rouge_opts;      /* NULL or {0} everywhere means rouge-score's defaults. */

/* Tokens of one text: tokens[i] points into a single owned buffer. */
typedef struct {
    char **tokens;
    size_t *lens; /* byte length of each token (tokens are NUL-terminated) */
    size_t n;
    char *buf_;
} rouge_tokens;

/* Tokenises text the way the ROUGE functions below do. */
int rouge_tokenize(const char *text, const rouge_opts *o, rouge_tokens *out,
                   lc_err *err);
void rouge_tokens_free(rouge_tokens *t);

/* NLTK PorterStemmer(mode=NLTK_EXTENSIONS).stem() on a lowercase ASCII word
 * of len bytes, in place. Returns the stem's length (never longer than len);
 * the caller NUL-terminates if it needs a C string. (porter.c) */
size_t porter_stem(char *word, size_t len);

/* ---- ROUGE --------------------------------------------------------------- */

/* ROUGE-N (n >= 1) of candidate cand against reference ref.
 * p = overlap / #cand n-grams, r = overlap / #ref n-grams, overlap = clipped
 * n-gram counts; f = 2pr/(p+r), 0 when p+r = 0 (so 0 when either side has
 * fewer than n tokens). */
prf rouge_n(const char *cand, const char *ref, int n, const rouge_opts *o);

/* ROUGE-L on the whole text (rougeL, not the newline-split rougeLsum):
 * p = LCS / #cand tokens, r = LCS / #ref tokens, f as above. */
prf rouge_l(const char *cand, const char *ref, const rouge_opts *o);

/* All ROUGE numbers of one pair from a single tokenisation. */
typedef struct {
    prf r1, r2, r3, rl;
    double weighted; /* weighted_rouge() of the same pair */
} rouge_scores;

int rouge_score_all(const char *cand, const char *ref, const rouge_opts *o,
                    rouge_scores *out, lc_err *err);

/* Weighted ROUGE for reply suggestion (Zhang et al. 2021, "A Dataset and
 * Baselines for Multilingual Reply Suggestion"; see METRICS.md):
 *   R1.f / 6 + R2.f / 3 + R3.f / 2. */
double weighted_rouge(const char *cand, const char *ref, const rouge_opts *o);

/* The simpler average sometimes also called "weighted ROUGE" elsewhere:
 * (R1.f + R2.f + RL.f) / 3. Not the project's reply metric; offered for
 * comparison with papers that use it. */
double rouge_mean_12l(const char *cand, const char *ref, const rouge_opts *o);

/* ---- chrF ---------------------------------------------------------------- */

#define CHRF_MAX_ORDER 16 /* char_order + word_order at most */

typedef struct {
    int char_order;    /* 6 */
    int word_order;    /* 0 = chrF, 2 = chrF++ */
    double beta;       /* 2 */
    int lowercase;     /* 0; nonzero lowercases (ASCII/Latin-1/Latin Ext-A) */
    int whitespace;    /* 0; nonzero keeps whitespace inside char n-grams */
    int eps_smoothing; /* 0 = sacreBLEU default effective-order averaging */
} chrf_opts;

/* sacreBLEU's defaults: {6, 0, 2.0, 0, 0, 0}. */
chrf_opts chrf_opts_default(void);

/* Sentence-level chrF of hyp against ref, on sacreBLEU's 0..100 scale
 * (sacrebleu.sentence_chrf(hyp, [ref]).score). NULL o = defaults. */
double chrf(const char *hyp, const char *ref, const chrf_opts *o);

/* n-gram statistics: for each order i (chars 1..char_order, then words
 * 1..word_order) stats[3i] = #hyp n-grams (0 when the reference has none of
 * that order), stats[3i+1] = #ref n-grams, stats[3i+2] = clipped matches.
 * Summing them over segments and scoring the sum is sacreBLEU's corpus chrF. */
typedef struct {
    int order; /* char_order + word_order */
    double stats[3 * CHRF_MAX_ORDER];
} chrf_stats;

void chrf_stats_init(chrf_stats *s, const chrf_opts *o);
/* Adds one segment's statistics to acc. */
int chrf_stats_add(chrf_stats *acc, const char *hyp, const char *ref,
                   const chrf_opts *o, lc_err *err);
/* The chrF score (0..100) of accumulated statistics. */
double chrf_from_stats(const chrf_stats *s, const chrf_opts *o);

/* ---- corpus aggregation -------------------------------------------------- */

typedef struct {
    rouge_scores rouge;
    double chrf; /* sentence chrF, 0..100 */
} metrics_example;

typedef struct {
    size_t n;
    /* Means over the n examples of every per-example number (p, r and f
     * averaged separately, as rouge-score's per-example use then mean). NaN
     * when n = 0. */
    prf r1, r2, r3, rl;
    double weighted;
    double chrf_mean;   /* mean of sentence chrF */
    double chrf_corpus; /* sacreBLEU corpus_score: stats summed, then scored */
    metrics_example *examples; /* n entries, owned */
} metrics_corpus;

/* Scores n (candidate, reference) pairs. ro / co may be NULL (defaults). */
int metrics_corpus_eval(const char *const *cands, const char *const *refs,
                        size_t n, const rouge_opts *ro, const chrf_opts *co,
                        metrics_corpus *out, lc_err *err);
void metrics_corpus_free(metrics_corpus *c);

#endif
