/* tokenizer_parts.c: tokenizer_parts (GGUF tokenizer.ggml.*) to a tokenizer and back (files: tokenizer_int.h). */
#include "tokenizer_int.h"

/* ======================================================================
 * Parts (GGUF tokenizer.ggml.*)
 * ====================================================================== */

static const char SP_SPACE[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */

/* s with every `a` replaced by `b` (malloc'd, *n its length). */
static char *replace_dup(const char *s, size_t len, const char *a, const char *b, int *n) {
    size_t al = strlen(a), bl = strlen(b), cnt = 0;
    for (size_t i = 0; i + al <= len;)
        if (!memcmp(s + i, a, al)) cnt++, i += al;
        else i++;
    size_t out_len = len + cnt * bl - cnt * al;
    char *o = malloc(out_len + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < len;) {
        if (i + al <= len && !memcmp(s + i, a, al)) {
            memcpy(q, b, bl);
            q += bl;
            i += al;
        } else {
            *q++ = s[i++];
        }
    }
    *q = 0;
    *n = (int)out_len;
    return o;
}

typedef struct {
    const char *s;
    int len, id;
} piece_ref_t;

static int cmp_ref_piece(const void *a, const void *b) {
    const piece_ref_t *x = a, *y = b;
    int n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->s, y->s, (size_t)n);
    if (r) return r;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int spm_from_parts(tokenizer *t, const tokenizer_parts *p, const char *src, lc_err *err) {
    l2c_tokenizer *l = &t->l2c;
    int V = p->n_tokens;
    if (!p->scores)
        return lc_errf(err, "%s: key 'tokenizer.ggml.scores': missing (a SentencePiece "
                       "vocabulary needs scores)", src);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int id = b + 3;
        if (id >= V || p->token_lens[id] != 6 || memcmp(p->tokens[id], name, 6))
            return lc_errf(err, "%s: key 'tokenizer.ggml.tokens': byte token %s must be id %d "
                           "(the SentencePiece layout <unk>, <s>, </s>, <0x00>..<0xFF>), found "
                           "'%.*s'", src, name, id, id < V ? (p->token_lens[id] > 40 ? 40 :
                           p->token_lens[id]) : 0, id < V ? p->tokens[id] : "");
    }
    l->vocab_size = V;
    l->vocab = calloc((size_t)V, sizeof *l->vocab);
    l->lens = calloc((size_t)V, sizeof *l->lens);
    l->scores = calloc((size_t)V, sizeof *l->scores);
    l->sorted = calloc((size_t)V, sizeof *l->sorted);
    if (!l->vocab || !l->lens || !l->scores || !l->sorted) return oom(err);
    /* l2c_tokenizer_free frees vocab[0] as the block of all pieces */
    size_t total = 0;
    int *lens = malloc(sizeof(int) * (size_t)V);
    char **tmp = calloc((size_t)V, sizeof *tmp);
    if (!lens || !tmp) {
        free(lens);
        free(tmp);
        return oom(err);
    }
    int rc = LC_OK;
    for (int i = 0; i < V && !rc; i++) {
        if (!(tmp[i] = replace_dup(p->tokens[i], (size_t)p->token_lens[i], SP_SPACE, " ", &lens[i])))
            rc = oom(err);
        else total += (size_t)lens[i] + 1;
    }
    char *block = rc ? NULL : malloc(total);
    if (!rc && !block) rc = oom(err);
    for (int i = 0; i < V && !rc; i++) {
        memcpy(block, tmp[i], (size_t)lens[i] + 1);
        l->vocab[i] = block;
        l->lens[i] = lens[i];
        l->scores[i] = p->scores[i];
        if (lens[i] > l->max_token_length) l->max_token_length = lens[i];
        block += lens[i] + 1;
        l->sorted[i] = i;
    }
    for (int i = 0; i < V; i++) free(tmp[i]);
    free(tmp);
    free(lens);
    if (rc) return rc;
    /* sorted: ids by piece bytes, as l2c_tokenizer_load orders them */
    piece_ref_t *refs = malloc(sizeof *refs * (size_t)V);
    if (!refs) return oom(err);
    for (int i = 0; i < V; i++) refs[i] = (piece_ref_t){l->vocab[i], l->lens[i], i};
    qsort(refs, (size_t)V, sizeof *refs, cmp_ref_piece);
    for (int i = 0; i < V; i++) l->sorted[i] = refs[i].id;
    free(refs);
    l->bos_id = p->bos;
    l->eos_id = p->eos;
    t->l2c_add_bos = p->add_bos;
    t->l2c_add_eos = p->add_eos;
    t->n_ids = V;
    return LC_OK;
}

/* The pre-tokenizer name -> the regex of its Split step (-1: GPT-2's
 * ByteLevel with use_regex). */
static int pre_regex(const char *pre) {
    if (!strcmp(pre, "gpt-2")) return -1;
    if (!strcmp(pre, "qwen2")) return RX_QWEN2;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) return RX_LLAMA3;
    return -2;
}

static int bpe_from_parts(tokenizer *t, const tokenizer_parts *p, const char *src, lc_err *err) {
    const char *pre = p->pre ? p->pre : "gpt-2";
    int rx = pre_regex(pre);
    if (rx == -2)
        return lc_errf(err, "%s: key 'tokenizer.ggml.pre': pre-tokenizer '%s' is not supported "
                       "(supported: gpt-2, qwen2, llama-bpe)", src, pre);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
          *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    int rc = LC_FAIL;
    char *txt = NULL;
    if (!root || !model || !vocab || !merges || !added) goto oom;
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", rx == RX_LLAMA3);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    for (int i = 0; i < p->n_tokens; i++) {
        char *s = tok_dup_bytes(p->tokens[i], (size_t)p->token_lens[i]);
        if (!s) goto oom;
        if (memchr(p->tokens[i], 0, (size_t)p->token_lens[i])) {
            free(s);
            lc_errf(err, "%s: key 'tokenizer.ggml.tokens': token %d holds a NUL byte", src, i);
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(vocab, s)) {
            lc_errf(err, "%s: key 'tokenizer.ggml.tokens': token %d '%.100s' appears twice", src,
                    i, s);
            free(s);
            goto done;
        }
        cJSON_AddNumberToObject(vocab, s, i);
        int ty = p->types ? p->types[i] : TOKTYPE_NORMAL;
        if (ty == TOKTYPE_CONTROL || ty == TOKTYPE_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            if (!a) {
                free(s);
                goto oom;
            }
            cJSON_AddNumberToObject(a, "id", i);
            cJSON_AddStringToObject(a, "content", s);
            cJSON_AddBoolToObject(a, "special", ty == TOKTYPE_CONTROL);
            cJSON_AddBoolToObject(a, "normalized", 0);
            cJSON_AddItemToArray(added, a);
        }
        free(s);
    }
    for (int i = 0; i < p->n_merges; i++) {
        cJSON *m = cJSON_CreateString(p->merges[i]);
        if (!m) goto oom;
        cJSON_AddItemToArray(merges, m);
    }
    cJSON *bl = cJSON_CreateObject();
    if (!bl) goto oom;
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "use_regex", rx == -1);
    if (rx == -1) {
        cJSON_AddItemToObject(root, "pre_tokenizer", bl);
    } else {
        cJSON *seq = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *sp = cJSON_CreateObject(),
              *pat = cJSON_CreateObject();
        if (!seq || !arr || !sp || !pat) {
            cJSON_Delete(seq), cJSON_Delete(arr), cJSON_Delete(sp), cJSON_Delete(pat);
            cJSON_Delete(bl);
            goto oom;
        }
        cJSON_AddStringToObject(seq, "type", "Sequence");
        cJSON_AddItemToObject(seq, "pretokenizers", arr);
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", rx == RX_QWEN2 ? RX_QWEN2_STR : RX_LLAMA3_STR);
        cJSON_AddItemToObject(sp, "pattern", pat);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddItemToArray(arr, sp);
        cJSON_AddItemToArray(arr, bl);
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
    }
    cJSON *dec = cJSON_CreateObject();
    if (!dec) goto oom;
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    if ((p->add_bos && p->bos >= 0) || (p->add_eos && p->eos >= 0)) {
        cJSON *post = cJSON_CreateObject(), *single = cJSON_CreateArray(),
              *specials = cJSON_CreateObject();
        if (!post || !single || !specials) {
            cJSON_Delete(post), cJSON_Delete(single), cJSON_Delete(specials);
            goto oom;
        }
        cJSON_AddStringToObject(post, "type", "TemplateProcessing");
        cJSON_AddItemToObject(post, "single", single);
        cJSON_AddItemToObject(post, "special_tokens", specials);
        for (int k = 0; k < 3; k++) {
            int id = k == 0 ? (p->add_bos ? p->bos : -1) : k == 2 ? (p->add_eos ? p->eos : -1) : 0;
            cJSON *item = cJSON_CreateObject(), *in = cJSON_CreateObject();
            if (!item || !in) {
                cJSON_Delete(item), cJSON_Delete(in);
                cJSON_Delete(post);
                goto oom;
            }
            if (k == 1) {
                cJSON_AddStringToObject(in, "id", "A");
                cJSON_AddItemToObject(item, "Sequence", in);
            } else if (id >= 0) {
                char key[16];
                snprintf(key, sizeof key, "t%d", id);
                cJSON_AddStringToObject(in, "id", key);
                cJSON_AddItemToObject(item, "SpecialToken", in);
                cJSON *def = cJSON_CreateObject(), *ids = cJSON_CreateArray();
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
                cJSON_AddItemToObject(def, "ids", ids);
                cJSON_AddItemToObject(specials, key, def);
            } else {
                cJSON_Delete(item), cJSON_Delete(in);
                continue;
            }
            cJSON_AddItemToArray(single, item);
        }
        cJSON_AddItemToObject(root, "post_processor", post);
    }
    txt = cJSON_PrintUnformatted(root);
    if (!txt) goto oom;
    rc = tok_load_json_text(t, txt, strlen(txt), src, p->n_tokens, 0, err);
    if (!rc) {
        t->bos = p->bos;
        t->eos = p->eos;
    }
    goto done;
oom:
    rc = lc_errf(err, "%s: out of memory building the tokenizer", src);
done:
    free(txt);
    cJSON_Delete(root);
    if (!root) {
        cJSON_Delete(model), cJSON_Delete(vocab), cJSON_Delete(merges), cJSON_Delete(added);
    }
    return rc;
}

int tokenizer_from_parts(tokenizer **out, const tokenizer_parts *p, const char *src,
                         lc_err *err) {
    *out = NULL;
    if (p->n_tokens <= 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.tokens': empty", src);
    const char *names[3] = {"bos", "eos", "unknown"};
    int ids[3] = {p->bos, p->eos, p->unk};
    for (int k = 0; k < 3; k++)
        if (ids[k] < -1 || ids[k] >= p->n_tokens)
            return lc_errf(err, "%s: key 'tokenizer.ggml.%s_token_id': %d is outside the "
                           "vocabulary of %d tokens", src, names[k], ids[k], p->n_tokens);
    if (p->add_bos && p->bos < 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.add_bos_token': true, but there is no "
                       "bos_token_id", src);
    if (p->add_eos && p->eos < 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.add_eos_token': true, but there is no "
                       "eos_token_id", src);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = tok_dup_bytes(src, strlen(src)))) {
        free(t);
        return oom(err);
    }
    t->unk_id = t->bos = t->eos = -1;
    int rc;
    if (p->model == TOKENIZER_SPM) {
        t->kind = KIND_L2C;
        rc = spm_from_parts(t, p, src, err);
        t->bos = p->bos;
        t->eos = p->eos;
    } else if (p->model == TOKENIZER_BPE) {
        t->kind = KIND_HF;
        rc = bpe_from_parts(t, p, src, err);
    } else {
        rc = lc_errf(err, "%s: key 'tokenizer.ggml.model': unknown tokenizer model", src);
    }
    if (!rc && p->chat_template) {
        if (!(t->chat_template = tok_dup_bytes(p->chat_template, strlen(p->chat_template))) ||
            !(t->cfg_path = tok_dup_bytes(src, strlen(src))))
            rc = oom(err);
        char **text[2] = {&t->bos_text, &t->eos_text};
        int sid[2] = {p->bos, p->eos};
        for (int k = 0; k < 2 && !rc; k++) {
            int id = sid[k];
            if (id < 0 || !p->types || (p->types[id] != TOKTYPE_CONTROL && p->types[id] != TOKTYPE_USER_DEFINED))
                continue;
            if (!(*text[k] = tok_dup_bytes(p->tokens[id], (size_t)p->token_lens[id]))) rc = oom(err);
        }
    }
    if (rc) {
        tokenizer_free(t);
        return LC_FAIL;
    }
    *out = t;
    return LC_OK;
}

void tokenizer_parts_free(tokenizer_parts *p) {
    if (!p) return;
    for (int i = 0; p->tokens && i < p->n_tokens; i++) free(p->tokens[i]);
    for (int i = 0; p->merges && i < p->n_merges; i++) free(p->merges[i]);
    free(p->tokens);
    free(p->token_lens);
    free(p->scores);
    free(p->types);
    free(p->merges);
    free(p->pre);
    free(p->chat_template);
    memset(p, 0, sizeof *p);
}

/* Does encoding with add_special put BOS first / EOS last? */
static void special_flags(const tokenizer *t, int *add_bos, int *add_eos) {
    int *a = NULL, *b = NULL, na = 0, nb = 0;
    lc_err e;
    *add_bos = *add_eos = 0;
    if (!tokenizer_encode(t, "a", 1, 1, &a, &na, &e) && !tokenizer_encode(t, "a", 1, 0, &b, &nb, &e)) {
        *add_bos = t->bos >= 0 && na > nb && a[0] == t->bos;
        *add_eos = t->eos >= 0 && na > nb && a[na - 1] == t->eos;
    }
    free(a);
    free(b);
}

static int cmp_rank(const void *x, const void *y) {
    const int64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

int tokenizer_to_parts(const tokenizer *t, tokenizer_parts *p, lc_err *err) {
    memset(p, 0, sizeof *p);
    int V = t->n_ids;
    p->n_tokens = V;
    p->tokens = calloc((size_t)V, sizeof *p->tokens);
    p->token_lens = calloc((size_t)V, sizeof *p->token_lens);
    p->types = calloc((size_t)V, sizeof *p->types);
    if (!p->tokens || !p->token_lens || !p->types) goto oom;
    if (t->chat_template && !(p->chat_template = tok_dup_bytes(t->chat_template, strlen(t->chat_template))))
        goto oom;
    p->bos = t->bos;
    p->eos = t->eos;
    p->unk = -1;
    if (t->kind == KIND_L2C) {
        const l2c_tokenizer *l = &t->l2c;
        p->model = TOKENIZER_SPM;
        if (!(p->scores = malloc(sizeof(float) * (size_t)V))) goto oom;
        p->add_bos = t->l2c_add_bos;
        p->add_eos = t->l2c_add_eos;
        p->unk = V > 0 ? 0 : -1;
        for (int i = 0; i < V; i++) {
            const char *s = l->vocab[i];
            int n = l->lens[i];
            int ty = TOKTYPE_NORMAL;
            if (i == l->bos_id || i == l->eos_id) {
                /* llama2.c writes "\n<s>\n" and "\n</s>\n" for these */
                s = i == l->bos_id ? "<s>" : "</s>";
                n = (int)strlen(s);
                ty = TOKTYPE_CONTROL;
            } else if (i == 0) {
                ty = TOKTYPE_UNKNOWN;
            } else if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                ty = TOKTYPE_BYTE;
            }
            p->scores[i] = l->scores[i];
            p->types[i] = ty;
            if (!(p->tokens[i] = replace_dup(s, (size_t)n, " ", SP_SPACE, &p->token_lens[i])))
                goto oom;
        }
        return LC_OK;
    }
    /* Hugging Face: byte-level BPE only */
    const char *why = NULL;
    if (t->byte_fallback || t->cont_prefix || t->eow_suffix) why = "it is not byte-level BPE";
    else if (t->n_pt == 1 && t->pt[0].type == PT_BYTELEVEL && t->pt[0].use_regex &&
             !t->pt[0].add_prefix_space)
        p->pre = strdup("gpt-2");
    else if (t->n_pt == 2 && t->pt[0].type == PT_SPLIT && t->pt[0].behavior == SB_ISOLATED &&
             !t->pt[0].invert && (t->pt[0].rx == RX_QWEN2 || t->pt[0].rx == RX_LLAMA3) &&
             t->pt[1].type == PT_BYTELEVEL && !t->pt[1].use_regex && !t->pt[1].add_prefix_space)
        p->pre = strdup(t->pt[0].rx == RX_QWEN2 ? "qwen2" : "llama-bpe");
    else why = "its pre-tokenizer is not GPT-2's, Qwen2's or Llama 3's byte-level split";
    for (int i = 0; i < t->n_norm && !why; i++)
        if (t->norm[i].type != NORM_NF) why = "it has a normalizer llama.cpp does not run";
    if (why) {
        tokenizer_parts_free(p);
        return lc_errf(err, "%s: cannot be written as a GGUF tokenizer: %s (supported: llama2.c "
                       "tokenizers and byte-level BPE tokenizer.json)", t->path, why);
    }
    if (!p->pre) goto oom;
    p->model = TOKENIZER_BPE;
    p->unk = t->unk_id;
    special_flags(t, &p->add_bos, &p->add_eos);
    for (int i = 0; i < V; i++) {
        int n;
        const char *s = tok_id_token(t, i, &n);
        char pad[32];
        int ty = TOKTYPE_NORMAL;
        if (!s) { /* a hole: convert_hf_to_gguf.py's placeholder */
            n = snprintf(pad, sizeof pad, "[PAD%d]", i);
            s = pad;
            ty = TOKTYPE_UNUSED;
        } else if (t->added_of_id[i] >= 0) {
            ty = t->is_special[i] ? TOKTYPE_CONTROL : TOKTYPE_USER_DEFINED;
        }
        p->types[i] = ty;
        p->token_lens[i] = n;
        if (!(p->tokens[i] = tok_dup_bytes(s, (size_t)n))) goto oom;
    }
    /* merges by rank */
    size_t nm = t->merges.n, k = 0;
    int64_t *order = malloc(sizeof(int64_t) * 2 * (nm + 1));
    p->merges = calloc(nm + 1, sizeof *p->merges);
    if (!order || !p->merges) {
        free(order);
        goto oom;
    }
    for (size_t h = 0; t->merges.key && h <= t->merges.mask; h++) {
        if (t->merges.key[h] == U64_EMPTY) continue;
        order[2 * k] = t->merges.a[h];
        order[2 * k + 1] = (int64_t)t->merges.key[h];
        k++;
    }
    qsort(order, k, 2 * sizeof(int64_t), cmp_rank);
    for (size_t i = 0; i < k; i++) {
        uint64_t key = (uint64_t)order[2 * i + 1];
        int a = (int)(key >> 32), b = (int)(uint32_t)key;
        sbuf m = {0};
        if (lc_sbuf_put(&m, t->id_str[a], (size_t)t->id_len[a]) || lc_sbuf_put(&m, " ", 1) ||
            lc_sbuf_put(&m, t->id_str[b], (size_t)t->id_len[b])) {
            free(m.p);
            free(order);
            goto oom;
        }
        p->merges[p->n_merges++] = m.p;
    }
    free(order);
    return LC_OK;
oom:
    tokenizer_parts_free(p);
    return lc_errf(err, "%s: out of memory", t->path);
}
