/* account.c: parameter/storage accounting and the efficiency table
 * (account.h has the formulas). */
#include "account.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loaders.h"

void account_opts_default(account_opts *o) {
    o->lora_rank = ACCOUNT_DEFAULT_LORA_RANK;
    o->lora_mask = MOD_MASK_ALL;
    o->calib_mask = 0;
    o->lc_rank = ACCOUNT_DEFAULT_LC_RANK;
    o->per_layer = 0;
}

/* ---- counts ------------------------------------------------------------- */

int64_t account_base_params(const model_config *c) {
    int64_t D = c->dim, emb = (int64_t)c->vocab_size * D;
    int64_t layer = 2 * D; /* attention and MLP RMSNorm weights */
    for (int m = 0; m < MOD_COUNT; m++) {
        int64_t out = module_out_dim(c, (module_kind)m), in = module_in_dim(c, (module_kind)m);
        layer += out * in;
        if (c->qkv_bias && m <= MOD_V) layer += out;
    }
    return emb + (int64_t)c->n_layers * layer + D + (c->tie_embeddings ? 0 : emb);
}

int64_t account_lc_params(const model_config *c, unsigned mask, int per_layer) {
    int64_t n = 0;
    for (int m = 0; m < MOD_COUNT; m++)
        if (mask & (1u << m)) n += module_out_dim(c, (module_kind)m);
    return per_layer ? n * c->n_layers : n;
}

/* sum over the modules in mask of (in_m + out_m) */
static int64_t sum_in_out(const model_config *c, unsigned mask) {
    int64_t n = 0;
    for (int m = 0; m < MOD_COUNT; m++)
        if (mask & (1u << m))
            n += (int64_t)module_in_dim(c, (module_kind)m) + module_out_dim(c, (module_kind)m);
    return n;
}

int64_t account_lcpp_params(const model_config *c, unsigned mask, int k, int per_layer) {
    int64_t n = (int64_t)k * sum_in_out(c, mask);
    return per_layer ? n * c->n_layers : n;
}

int64_t account_lora_params(const model_config *c, unsigned mask, int r) {
    return (int64_t)c->n_layers * r * sum_in_out(c, mask);
}

/* ---- checks and the result ------------------------------------------------ */

static int check_config(const model_config *c, lc_err *err) {
    struct { const char *key; int v; } dims[] = {
        {"hidden_size", c->dim},          {"num_hidden_layers", c->n_layers},
        {"num_attention_heads", c->n_heads}, {"num_key_value_heads", c->n_kv_heads},
        {"head_dim", c->head_dim},        {"intermediate_size", c->hidden_dim},
        {"vocab_size", c->vocab_size}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v <= 0)
            return lc_errf(err, "model config: key '%s': must be positive, found %d", dims[i].key,
                           dims[i].v);
    return LC_OK;
}

static int check_mask(const char *what, unsigned mask, lc_err *err) {
    if (mask == 0 || (mask & ~MOD_MASK_ALL))
        return lc_errf(err, "account: %s 0x%x: expected a non-empty set of the seven modules "
                       "(bits 0..%d: q k v o gate up down)", what, mask, MOD_COUNT - 1);
    return LC_OK;
}

static void fill_size(account_size *s, int64_t params, int64_t lora, int64_t base) {
    s->params = params;
    s->bytes = params * ACCOUNT_BYTES_PER_PARAM;
    s->mb = (double)s->bytes / 1e6;
    s->pct_lora = lora > 0 ? 100.0 * (double)params / (double)lora : 0.0;
    s->pct_base = base > 0 ? 100.0 * (double)params / (double)base : 0.0;
}

int account_compute(const model_config *c, const account_opts *o, account_result *out,
                    lc_err *err) {
    account_opts d;
    if (!o) {
        account_opts_default(&d);
        o = &d;
    }
    if (check_config(c, err)) return LC_FAIL;
    if (o->lora_rank < 1)
        return lc_errf(err, "account: lora_rank must be >= 1, found %d", o->lora_rank);
    if (o->lc_rank < 1)
        return lc_errf(err, "account: lc_rank (LC++ k) must be >= 1, found %d", o->lc_rank);
    if (check_mask("lora_mask", o->lora_mask, err)) return LC_FAIL;
    unsigned cmask = o->calib_mask ? o->calib_mask : o->lora_mask;
    if (check_mask("calib_mask", cmask, err)) return LC_FAIL;

    memset(out, 0, sizeof *out);
    out->opts = *o;
    out->opts.calib_mask = cmask;
    out->opts.per_layer = o->per_layer != 0;
    int64_t base = account_base_params(c);
    int64_t lora = account_lora_params(c, o->lora_mask, o->lora_rank);
    fill_size(&out->base, base, lora, base);
    fill_size(&out->lora, lora, lora, base);
    fill_size(&out->joint, lora, lora, base);
    fill_size(&out->lc, account_lc_params(c, cmask, out->opts.per_layer), lora, base);
    fill_size(&out->lcpp, account_lcpp_params(c, cmask, o->lc_rank, out->opts.per_layer), lora,
              base);
    return LC_OK;
}

/* ---- table ---------------------------------------------------------------- */

/* 1234567 -> "1,234,567" */
static const char *fmt_count(char *buf, size_t n, int64_t v) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(digits), j = 0;
    if (v < 0 && j + 1 < n) buf[j++] = '-';
    for (size_t i = 0; i < len && j + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && j + 1 < n) buf[j++] = ',';
        if (j + 1 < n) buf[j++] = digits[i];
    }
    buf[j] = 0;
    return buf;
}

/* Three significant digits below 1 (trailing zeros kept), two decimals
 * above; exact 0 as "0". */
static const char *fmt_real(char *buf, size_t n, double v) {
    if (v == 0)
        snprintf(buf, n, "0");
    else if (v < 1)
        snprintf(buf, n, "%#.3g", v);
    else
        snprintf(buf, n, "%.2f", v);
    return buf;
}

/* "q, k, v, o, gate, up, down" */
static const char *fmt_mask(char *buf, size_t n, unsigned mask) {
    size_t j = 0;
    buf[0] = 0;
    for (int m = 0; m < MOD_COUNT; m++)
        if (mask & (1u << m)) {
            int w = snprintf(buf + j, n - j, "%s%s", j ? ", " : "", module_short((module_kind)m));
            if (w < 0 || (size_t)w >= n - j) break;
            j += (size_t)w;
        }
    return buf;
}

/* Which size a table row shows; ROW_ZERO for the methods with no extra
 * storage. */
typedef enum { ROW_ZERO = 0, ROW_JOINT, ROW_LC, ROW_LCPP } row_kind;

static void print_row(FILE *out, const char *method, int inferences, const account_result *r,
                      int n, row_kind kind) {
    fprintf(out, "| %s | %d |", method, inferences);
    for (int i = 0; i < n; i++) {
        const account_size *s = kind == ROW_JOINT ? &r[i].joint
                                : kind == ROW_LC  ? &r[i].lc
                                : kind == ROW_LCPP ? &r[i].lcpp
                                                   : NULL;
        char a[48], b[48], c[48];
        if (!s)
            fprintf(out, " 0 | 0 | 0 |");
        else
            fprintf(out, " %s | %s | %s |", fmt_count(a, sizeof a, s->params),
                    fmt_real(b, sizeof b, s->mb), fmt_real(c, sizeof c, s->pct_lora));
    }
    fputc('\n', out);
}

int account_print_table(FILE *out, const char *const *names, const model_config *cfgs, int n,
                        const account_opts *o, lc_err *err) {
    if (n < 1) return lc_errf(err, "account: no model configs to tabulate (n = %d)", n);
    account_result *r = lc_calloc((size_t)n, sizeof *r, err);
    if (!r) return LC_FAIL;
    for (int i = 0; i < n; i++) {
        const char *name = names && names[i] ? names[i] : cfgs[i].arch;
        if (account_compute(&cfgs[i], o, &r[i], err)) {
            free(r);
            return lc_err_prefix(err, "%s: ", name);
        }
    }
    const account_opts *u = &r[0].opts;
    char a[48], b[48], c[48], d[48], e[48], mods[64], cmods[64];
    fmt_mask(mods, sizeof mods, u->lora_mask);
    fmt_mask(cmods, sizeof cmods, u->calib_mask);

    for (int i = 0; i < n; i++) {
        const char *name = names && names[i] ? names[i] : cfgs[i].arch;
        fprintf(out, "- %s: base model %s parameters (%s MB fp16); one single-task LoRA "
                "(r = %d; %s) %s parameters (%s MB, %s %% of the base)\n",
                name, fmt_count(a, sizeof a, r[i].base.params), fmt_real(b, sizeof b, r[i].base.mb),
                u->lora_rank, mods, fmt_count(c, sizeof c, r[i].lora.params),
                fmt_real(d, sizeof d, r[i].lora.mb), fmt_real(e, sizeof e, r[i].lora.pct_base));
    }
    fputc('\n', out);

    fprintf(out, "| Method | Inferences |");
    for (int i = 0; i < n; i++) {
        const char *name = names && names[i] ? names[i] : cfgs[i].arch;
        if (n == 1)
            fprintf(out, " Extra parameters | Extra MB (fp16) | %% of a single LoRA |");
        else
            fprintf(out, " %s extra parameters | %s extra MB (fp16) | %s %% of a single LoRA |",
                    name, name, name);
    }
    fprintf(out, "\n| --- | ---: |");
    for (int i = 0; i < n; i++) fprintf(out, " ---: | ---: | ---: |");
    fputc('\n', out);

    char label[96];
    const char *layout = u->per_layer ? ", per layer" : "";
    print_row(out, "Zero-shot (base model)", 1, r, n, ROW_ZERO);
    print_row(out, "Main-task LoRA", 1, r, n, ROW_ZERO);
    print_row(out, "Multi-step LoRA (one task after the other)", 2, r, n, ROW_ZERO);
    snprintf(label, sizeof label, "Joint-expert LoRA (r = %d, per task)", u->lora_rank);
    print_row(out, label, 1, r, n, ROW_JOINT);
    print_row(out, "Linear merge", 1, r, n, ROW_ZERO);
    snprintf(label, sizeof label, "LC (bias%s)", layout);
    print_row(out, label, 1, r, n, ROW_LC);
    snprintf(label, sizeof label, "LC++ (k = %d%s)", u->lc_rank, layout);
    print_row(out, label, 1, r, n, ROW_LCPP);

    fprintf(out, "\nExtra = stored beyond the base model and the single-task LoRAs already on "
                 "the device; the joint-expert LoRA, LC and LC++ are stored once per "
                 "compositional task. MB = 10^6 bytes at 2 bytes per parameter (fp16). "
                 "LoRAs: rank %d on %s in every layer. LC / LC++ on %s, %s.\n",
            u->lora_rank, mods, cmods,
            u->per_layer ? "one set per layer" : "shared across layers");
    free(r);
    if (ferror(out)) return lc_errf(err, "account: writing the table failed");
    return LC_OK;
}

/* ---- files ---------------------------------------------------------------- */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int account_load_config(const char *path, model_config *c, lc_err *err) {
    char file[4096];
    if (is_dir(path))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *text = lc_read_file(file, NULL, err);
    if (!text) return LC_FAIL;
    memset(c, 0, sizeof *c);
    int rc = hf_config_parse(text, file, c, err);
    free(text);
    return rc;
}

/* "a/b/llama-3.2-1b/config.json" -> "llama-3.2-1b"; "a/model/" -> "model";
 * "x.json" -> "x.json". */
static void config_label(const char *path, char *buf, size_t n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t len = strlen(tmp);
    while (len > 1 && tmp[len - 1] == '/') tmp[--len] = 0;
    if (!is_dir(tmp)) {
        char *slash = strrchr(tmp, '/');
        const char *base = slash ? slash + 1 : tmp;
        if (strcmp(base, "config.json") || !slash) {
            snprintf(buf, n, "%s", base);
            return;
        }
        *slash = 0; /* the folder holding config.json */
        if (!tmp[0]) {
            snprintf(buf, n, "/");
            return;
        }
    }
    char *slash = strrchr(tmp, '/');
    snprintf(buf, n, "%s", slash && slash[1] ? slash + 1 : tmp);
}

int account_print_file(FILE *out, const char *config_path, int lora_rank, int lc_rank,
                       lc_err *err) {
    if (lora_rank < 0)
        return lc_errf(err, "%s: lora rank must be >= 1 (0 = default %d), found %d", config_path,
                       ACCOUNT_DEFAULT_LORA_RANK, lora_rank);
    if (lc_rank < 0)
        return lc_errf(err, "%s: LC++ rank must be >= 1 (0 = default %d), found %d", config_path,
                       ACCOUNT_DEFAULT_LC_RANK, lc_rank);
    model_config c;
    if (account_load_config(config_path, &c, err)) return LC_FAIL;
    account_opts o;
    account_opts_default(&o);
    if (lora_rank) o.lora_rank = lora_rank;
    if (lc_rank) o.lc_rank = lc_rank;
    char label[256];
    config_label(config_path, label, sizeof label);
    const char *names[1] = {label};
    return account_print_table(out, names, &c, 1, &o, err);
}
