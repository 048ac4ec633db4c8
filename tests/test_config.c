/* Tests for data-loaders/config.c: nested and array access, defaults,
 * unknown keys by full path (top level, inside objects, inside array
 * elements), type errors naming key path / expected / found, integer and
 * enum checks, invalid JSON with its byte offset and line, duplicate keys,
 * and path resolution against the config's folder. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

#define ASSERT_HAS(msg, sub) \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (sub))

static cfg *parse(const char *text) {
    cfg *c = NULL;
    lc_err err = {0};
    cr_assert_eq(cfg_parse(&c, text, "train.json", &err), LC_OK, "%s", err.msg);
    cr_assert_not_null(c);
    return c;
}

static void parse_fails(const char *text, const char *what) {
    cfg *c = (cfg *)1;
    lc_err err = {0};
    cr_assert_eq(cfg_parse(&c, text, "train.json", &err), LC_FAIL, "accepted: %s", text);
    cr_assert_null(c);
    ASSERT_HAS(err.msg, "train.json: ");
    ASSERT_HAS(err.msg, what);
}

/* ---- access -------------------------------------------------------------- */

Test(config, nested_and_array_access_from_file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/config/nested.json", tu_source_dir());
    cfg *c = NULL;
    lc_err err = {0};
    cr_assert_eq(cfg_load(&c, path, &err), LC_OK, "%s", err.msg);
    cr_assert_str_eq(cfg_path(c), path);

    const char *s;
    int i, b;
    long long ll;
    double d;
    cr_assert_eq(cfg_string(c, "model", 1, NULL, &s, &err), LC_OK, "%s", err.msg);
    cr_assert_str_eq(s, "../models/base");
    cr_assert_eq(cfg_i64(c, "seed", 1, 0, &ll, &err), LC_OK);
    cr_assert_eq(ll, 1234);
    cr_assert_eq(cfg_float(c, "optimizer.lr", 1, 0, &d, &err), LC_OK, "%s", err.msg);
    cr_assert_float_eq(d, 3e-4, 1e-15);
    cr_assert_eq(cfg_int(c, "optimizer.warmup_steps", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(i, 100);
    cr_assert_eq(cfg_float(c, "optimizer.betas[1]", 1, 0, &d, &err), LC_OK, "%s", err.msg);
    cr_assert_float_eq(d, 0.95, 1e-15);
    cr_assert_eq(cfg_float(c, "optimizer.betas[0]", 1, 0, &d, &err), LC_OK);
    static const char *const kinds[] = {"constant", "linear", "cosine", NULL};
    cr_assert_eq(cfg_enum(c, "optimizer.schedule.kind", 1, 0, kinds, &i, &err), LC_OK);
    cr_assert_eq(i, 2);
    cr_assert_eq(cfg_float(c, "optimizer.schedule.min_lr", 0, 1, &d, &err), LC_OK);
    cr_assert_eq(d, 0.0);

    int n = cfg_array_len(c, "loras", &err);
    cr_assert_eq(n, 2, "%s", err.msg);
    for (int k = 0; k < n; k++) {
        char key[64];
        snprintf(key, sizeof key, "loras[%d].name", k);
        cr_assert_eq(cfg_string(c, key, 1, NULL, &s, &err), LC_OK, "%s", err.msg);
        cr_assert_str_eq(s, k ? "translate" : "summarize");
        snprintf(key, sizeof key, "loras[%d].weight", k);
        cr_assert_eq(cfg_float(c, key, 1, 0, &d, &err), LC_OK);
        cr_assert_float_eq(d, k ? 1.0 : 0.5, 0);
        snprintf(key, sizeof key, "loras[%d].path", k);
        cr_assert_eq(cfg_string(c, key, 1, NULL, &s, &err), LC_OK);
        char *r = cfg_resolve_path(c, s);
        char want[1100];
        if (k == 0)
            snprintf(want, sizeof want, "%s/tests/data/config/loras/sum", tu_source_dir());
        else
            snprintf(want, sizeof want, "/abs/loras/tr");
        cr_assert_str_eq(r, want);
        free(r);
    }
    cr_assert_eq(cfg_array_len(c, "absent", &err), 0);

    const char **mods;
    int nm;
    cr_assert_eq(cfg_string_list(c, "modules", 1, &mods, &nm, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(nm, 2);
    cr_assert_str_eq(mods[0], "q");
    cr_assert_str_eq(mods[1], "v");
    free(mods);
    int *layers, nl;
    cr_assert_eq(cfg_int_list(c, "layers", 1, &layers, &nl, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(nl, 3);
    cr_assert_eq(layers[2], 4);
    free(layers);
    cr_assert_eq(cfg_bool(c, "resume", 1, 0, &b, &err), LC_OK);
    cr_assert_eq(b, 1);
    /* null counts as absent: the default is used */
    cr_assert_eq(cfg_string(c, "notes", 0, "none", &s, &err), LC_OK);
    cr_assert_str_eq(s, "none");

    char *model = cfg_resolve_path(c, "../models/base");
    char want[1100];
    snprintf(want, sizeof want, "%s/tests/data/config/../models/base", tu_source_dir());
    cr_assert_str_eq(model, want);
    free(model);
    cr_assert_eq(cfg_finish(c, &err), LC_OK, "%s", err.msg);
    cfg_free(c);
}

Test(config, defaults_required_and_has) {
    cfg *c = parse("{\"a\": {\"b\": 2}, \"x\": 1}");
    lc_err err = {0};
    int i = -1;
    cr_assert(cfg_has(c, "a.b"));
    cr_assert(cfg_has(c, "a"));
    cr_assert(!cfg_has(c, "a.c"));
    cr_assert(!cfg_has(c, "x.y"), "a number has no members");
    cr_assert_eq(cfg_int(c, "steps", 0, 77, &i, &err), LC_OK);
    cr_assert_eq(i, 77);
    cr_assert_eq(cfg_int(c, "a.missing", 0, 5, &i, &err), LC_OK);
    cr_assert_eq(i, 5);
    cr_assert_eq(cfg_int(c, "steps", 1, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'steps': missing");
    cr_assert_eq(cfg_int(c, "a.c", 1, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'a.c': missing");
    const char **sl = (const char **)1;
    int n = -1;
    cr_assert_eq(cfg_string_list(c, "mods", 0, &sl, &n, &err), LC_OK);
    cr_assert_null(sl);
    cr_assert_eq(n, 0);
    /* cfg_has marks nothing: a.b and x are still unread */
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'a.b' (did you mean 'a.c'?)");
    cr_assert_eq(cfg_int(c, "a.b", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'x'");
    cr_assert_eq(cfg_int(c, "x", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_OK, "%s", err.msg);
    cfg_free(c);
}

/* ---- unknown keys ----------------------------------------------------------- */

Test(config, unknown_key_inside_a_known_object) {
    cfg *c = parse("{\"optimizer\": {\"lr\": 0.1, \"lerning_rate\": 0.2}}");
    lc_err err = {0};
    double d;
    cr_assert_eq(cfg_float(c, "optimizer.lr", 1, 0, &d, &err), LC_OK);
    cr_assert_eq(cfg_float(c, "optimizer.learning_rate", 0, 0.01, &d, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "train.json: unknown key 'optimizer.lerning_rate'");
    ASSERT_HAS(err.msg, "did you mean 'optimizer.learning_rate'?");
    cfg_free(c);
}

Test(config, unknown_top_level_key_and_unread_object) {
    cfg *c = parse("{\"steps\": 3, \"optimzer\": {\"lr\": 0.1}}");
    lc_err err = {0};
    int i;
    cr_assert_eq(cfg_int(c, "steps", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(cfg_int(c, "optimizer.lr", 0, 0, &i, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    /* a whole object nobody looked into is reported by its own name */
    ASSERT_HAS(err.msg, "train.json: unknown key 'optimzer'");
    cfg_free(c);

    c = parse("{\"a\": 1, \"extra\": {}}");
    cr_assert_eq(cfg_int(c, "a", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'extra'");
    cfg_free(c);
}

Test(config, unknown_key_in_array_element) {
    cfg *c = parse("{\"loras\": [{\"name\": \"a\"}, {\"name\": \"b\", \"alpha\": 3}]}");
    lc_err err = {0};
    const char *s;
    int n = cfg_array_len(c, "loras", &err);
    cr_assert_eq(n, 2);
    /* the array itself was looked at, but not its elements' fields */
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'loras[0].name'");
    cr_assert_eq(cfg_string(c, "loras[0].name", 1, NULL, &s, &err), LC_OK);
    cr_assert_eq(cfg_string(c, "loras[1].name", 1, NULL, &s, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'loras[1].alpha'");
    cfg_free(c);

    /* elements past the end are absent */
    c = parse("{\"loras\": [{\"r\": 4}]}");
    int r = 0;
    cr_assert_eq(cfg_int(c, "loras[1].r", 0, 9, &r, &err), LC_OK);
    cr_assert_eq(r, 9);
    cr_assert_eq(cfg_int(c, "loras[0].r", 1, 0, &r, &err), LC_OK);
    cr_assert_eq(r, 4);
    cr_assert_eq(cfg_finish(c, &err), LC_OK, "%s", err.msg);
    cfg_free(c);
}

Test(config, unread_array_elements) {
    cfg *c = parse("{\"betas\": [0.9, 0.95], \"list\": [1, 2]}");
    lc_err err = {0};
    double d;
    cr_assert_eq(cfg_float(c, "betas[0]", 1, 0, &d, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'betas[1]'");
    cr_assert_eq(cfg_float(c, "betas[1]", 1, 0, &d, &err), LC_OK);
    cr_assert_eq(cfg_finish(c, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: unknown key 'list'");
    cfg_free(c);
}

/* ---- type errors -------------------------------------------------------------- */

Test(config, type_errors_name_key_expected_and_found) {
    cfg *c = parse("{\"optimizer\": {\"lr\": \"0.1\", \"steps\": 1.5, \"big\": 3e9, \"on\": 1,"
                   " \"name\": 7, \"mode\": \"lx\", \"mode2\": 3, \"mods\": [\"q\", 2],"
                   " \"layers\": [1, \"2\"], \"frac\": [1, 2.5], \"obj\": {}, \"arr\": [1]},"
                   " \"n\": 5}");
    lc_err err = {0};
    double d;
    int i;
    long long ll;
    const char *s;
    const char **sl;
    int *il, n;
    cr_assert_eq(cfg_float(c, "optimizer.lr", 1, 0, &d, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.lr': expected a number, found string");
    cr_assert_eq(cfg_int(c, "optimizer.steps", 1, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.steps': expected an integer, found 1.5");
    cr_assert_eq(cfg_int(c, "optimizer.lr", 1, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.lr': expected an integer, found string");
    cr_assert_eq(cfg_int(c, "optimizer.big", 1, 0, &i, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "key 'optimizer.big': integer 3000000000 out of range [-2147483648, 2147483647]");
    cr_assert_eq(cfg_i64(c, "optimizer.big", 1, 0, &ll, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(ll, 3000000000LL);
    cr_assert_eq(cfg_bool(c, "optimizer.on", 1, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.on': expected a boolean (true or false), found number");
    cr_assert_eq(cfg_string(c, "optimizer.name", 1, NULL, &s, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.name': expected a string, found number");
    static const char *const modes[] = {"lc", "lcpp", "merge", NULL};
    cr_assert_eq(cfg_enum(c, "optimizer.mode", 1, 0, modes, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.mode': expected one of \"lc\", \"lcpp\", \"merge\", found \"lx\"");
    cr_assert_eq(cfg_enum(c, "optimizer.mode2", 1, 0, modes, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.mode2': expected one of \"lc\", \"lcpp\", \"merge\", found number");
    cr_assert_eq(cfg_string_list(c, "optimizer.mods", 1, &sl, &n, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.mods[1]': expected a string, found number");
    cr_assert_eq(cfg_int_list(c, "optimizer.layers", 1, &il, &n, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.layers[1]': expected an integer, found string");
    cr_assert_eq(cfg_int_list(c, "optimizer.frac", 1, &il, &n, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.frac[1]': expected an integer, found 2.5");
    cr_assert_eq(cfg_int_list(c, "optimizer.obj", 1, &il, &n, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.obj': expected an array of integers, found object");
    cr_assert_eq(cfg_array_len(c, "optimizer.arr", &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.arr[0]': expected an object, found number");
    cr_assert_eq(cfg_array_len(c, "optimizer.obj", &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.obj': expected an array of objects, found object");
    /* walking through a value that is not an object / array */
    cr_assert_eq(cfg_int(c, "n.k", 0, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'n': expected an object, found number");
    cr_assert_eq(cfg_int(c, "optimizer.name.x", 0, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'optimizer.name': expected an object, found number");
    cr_assert_eq(cfg_int(c, "n[0]", 0, 0, &i, &err), LC_FAIL);
    cr_assert_str_eq(err.msg, "train.json: key 'n': expected an array, found number");
    /* malformed key paths are reported, not crashed on */
    const char *bad_keys[] = {"", "a..b", "a.", ".a", "a[", "a[x]", "a[-1]", "a]"};
    for (size_t k = 0; k < sizeof bad_keys / sizeof *bad_keys; k++) {
        cr_assert_eq(cfg_int(c, bad_keys[k], 0, 0, &i, &err), LC_FAIL, "key '%s' accepted",
                     bad_keys[k]);
        ASSERT_HAS(err.msg, "invalid key path");
    }
    cfg_free(c);
}

Test(config, integer_edges) {
    cfg *c = parse("{\"a\": 2147483647, \"b\": -2147483648, \"c\": 2147483648, \"d\": 1e3,"
                   " \"e\": 9007199254740993, \"f\": -0}");
    lc_err err = {0};
    int i;
    long long ll;
    cr_assert_eq(cfg_int(c, "a", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(i, 2147483647);
    cr_assert_eq(cfg_int(c, "b", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(i, -2147483647 - 1);
    cr_assert_eq(cfg_int(c, "c", 1, 0, &i, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "key 'c': integer 2147483648 out of range");
    cr_assert_eq(cfg_int(c, "d", 1, 0, &i, &err), LC_OK);
    cr_assert_eq(i, 1000);
    cr_assert_eq(cfg_i64(c, "e", 1, 0, &ll, &err), LC_FAIL, "beyond 2^53 is not exact");
    ASSERT_HAS(err.msg, "key 'e': integer");
    cr_assert_eq(cfg_int(c, "f", 1, 1, &i, &err), LC_OK);
    cr_assert_eq(i, 0);
    cfg_free(c);
}

/* ---- syntax ------------------------------------------------------------------ */

Test(config, invalid_json_reports_offset_and_line) {
    parse_fails("{\n  \"a\": 1,\n  \"b\": }\n", "invalid JSON near byte 19 (line 3, column 8)");
    parse_fails("{\"a\": 1} trailing", "invalid JSON near byte 9 (line 1, column 10)");
    parse_fails("{\"a\": 1,}", "invalid JSON near byte");
    parse_fails("", "invalid JSON near byte 0");
    parse_fails("[1, 2]", "expected a JSON object at the top level, found array");
    parse_fails("{\"a\": 1, \"b\": {\"c\": 1, \"c\": 2}}", "duplicate key 'b.c'");
    parse_fails("{\"a\": [{\"x\": 1, \"x\": 1}]}", "duplicate key 'a[0].x'");
}

Test(config, load_errors_name_the_file) {
    cfg *c = (cfg *)1;
    lc_err err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/nope.json", tu_tmpdir());
    cr_assert_eq(cfg_load(&c, path, &err), LC_FAIL);
    cr_assert_null(c);
    ASSERT_HAS(err.msg, path);
    snprintf(path, sizeof path, "%s/bad.json", tu_tmpdir());
    const char *text = "{\"lr\": 0.1,\n \"x\": tru}";
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
    cr_assert_eq(cfg_load(&c, path, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "invalid JSON near byte");
    ASSERT_HAS(err.msg, "line 2");
    cr_assert_eq(tu_write_file(path, "{\"a\": 1}\0x", 10), 0);
    cr_assert_eq(cfg_load(&c, path, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "NUL byte at byte 8");
}

/* ---- paths ------------------------------------------------------------------ */

Test(config, resolve_path) {
    cfg *c = NULL;
    lc_err err = {0};
    cr_assert_eq(cfg_parse(&c, "{}", "/jobs/exp1/train.json", &err), LC_OK);
    char *r;
    r = cfg_resolve_path(c, "data/train.jsonl");
    cr_assert_str_eq(r, "/jobs/exp1/data/train.jsonl");
    free(r);
    r = cfg_resolve_path(c, "../shared/x.bin");
    cr_assert_str_eq(r, "/jobs/exp1/../shared/x.bin");
    free(r);
    r = cfg_resolve_path(c, "/abs/x.bin");
    cr_assert_str_eq(r, "/abs/x.bin");
    free(r);
    r = cfg_resolve_path(c, "./from/cwd");
    cr_assert_str_eq(r, "./from/cwd");
    free(r);
    cr_assert_eq(cfg_finish(c, &err), LC_OK, "%s", err.msg);
    cfg_free(c);
    /* a config in the cwd (no folder in its path): values stay as they are */
    cr_assert_eq(cfg_parse(&c, "{}", "train.json", &err), LC_OK);
    r = cfg_resolve_path(c, "data/x.jsonl");
    cr_assert_str_eq(r, "data/x.jsonl");
    free(r);
    cfg_free(c);
    cr_assert_null(cfg_resolve_path(NULL, NULL));
}
