/* fuzzutil.c: see fuzz.h. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[FZ_PATH_MAX - 64];
static char slots[8][FZ_PATH_MAX];

static void cleanup(void) {
    if (!dir[0]) return;
    char cmd[FZ_PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", dir);
}

const char *fz_dir(void) {
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/lcfuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(cleanup);
    }
    return dir;
}

const char *fz_path(int slot, const char *name) {
    if (slot < 0 || slot >= 8) abort();
    snprintf(slots[slot], FZ_PATH_MAX, "%s/%s", fz_dir(), name);
    return slots[slot];
}

const char *fz_write(int slot, const char *name, const void *data, size_t n) {
    const char *p = fz_path(slot, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

void fz_unlink(const char *name) {
    char p[FZ_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", fz_dir(), name);
    unlink(p);
}

int fz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max) {
    const size_t sl = strlen(FZ_SEP);
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max - 1 && i + sl <= size; i++) {
        if (memcmp(data + i, FZ_SEP, sl) == 0) {
            parts[n] = data + start, lens[n] = i - start, n++;
            start = i + sl;
            i = start - 1;
        }
    }
    parts[n] = data + start, lens[n] = size - start, n++;
    return n;
}

char *fz_strndup(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

void fz_tiny_config(model_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->arch, "llama");
    c->dim = 32, c->n_layers = 2, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 8;
    c->hidden_dim = 32, c->vocab_size = 262, c->max_seq_len = 32;
    c->norm_eps = 1e-5f, c->rope_theta = 10000.0f;
    c->rope_type = ROPE_DEFAULT;
    c->tie_embeddings = 1;
    c->bos_id = 1, c->eos_id = 2;
}

static model tiny;
static int tiny_made;
static tokenizer *bytetok;

static int registered;

static void free_shared(void) {
    if (tiny_made) model_free(&tiny);
    tiny_made = 0;
    tokenizer_free(bytetok);
    bytetok = NULL;
}

static void register_free(void) {
    if (!registered) atexit(free_shared);
    registered = 1;
}

model *fz_tiny_model(void) {
    if (!tiny_made) {
        model_config c;
        lc_err err;
        fz_tiny_config(&c);
        if (model_init(&tiny, &c, &err)) {
            fprintf(stderr, "fuzz: %s\n", err.msg);
            abort();
        }
        model_init_random(&tiny, 0.1f, 7);
        tiny_made = 1;
        register_free();
    }
    return &tiny;
}

/* GPT-2's byte-to-character map: printable bytes stand for themselves,
 * the others for U+0100 + n in byte order. */
static int byte_char(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256 + n;
}

static int utf8_put(char *o, int cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 63));
    return 2;
}

const tokenizer *fz_byte_tokenizer(void) {
    if (bytetok) return bytetok;
    enum { NB = 256, NM = 4, NT = NB + NM + 2 };
    static char pieces[NT][8];
    char *tokens[NT];
    int lens[NT], types[NT];
    for (int b = 0; b < NB; b++) lens[b] = utf8_put(pieces[b], byte_char(b));
    /* merges "t h", "th e", "Ġ t", "a n" -> tokens 256.. */
    const char *mt[NM] = {"th", "the", "\xc4\xa0t", "an"};
    char *merges[NM] = {"t h", "th e", "\xc4\xa0 t", "a n"};
    for (int i = 0; i < NM; i++) lens[NB + i] = (int)strlen(strcpy(pieces[NB + i], mt[i]));
    lens[NB + NM] = (int)strlen(strcpy(pieces[NB + NM], "<s>"));
    lens[NB + NM + 1] = (int)strlen(strcpy(pieces[NB + NM + 1], "</s>"));
    for (int i = 0; i < NT; i++) tokens[i] = pieces[i], types[i] = i >= NB + NM ? TOKTYPE_CONTROL : TOKTYPE_NORMAL;
    tokenizer_parts p = {0};
    p.model = TOKENIZER_BPE;
    p.pre = "gpt-2";
    p.n_tokens = NT, p.tokens = tokens, p.token_lens = lens, p.types = types;
    p.n_merges = NM, p.merges = merges;
    p.bos = NB + NM, p.eos = NB + NM + 1, p.unk = -1, p.add_bos = 0, p.add_eos = 0;
    lc_err err;
    if (tokenizer_from_parts(&bytetok, &p, "fuzz byte tokenizer", &err)) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    register_free();
    return bytetok;
}
