/* lc_utf8 (kernels/base: the one UTF-8 codec of the tokenizers, the data-set
 * reader and the metrics) against Python's strict and "replace" decoders:
 * every 1- and 2-byte sequence, every 3-byte sequence, and every 4-byte
 * sequence whose last two bytes come from a set covering each class of
 * continuation byte; the encoder against the decoder on every code point;
 * and the Unicode Standard's example of maximal-subpart replacement. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_utf8.h"
#include "testutil.h"

/* The 4-byte sequences' third and fourth bytes: ASCII, the edges of the
 * continuation range, and bytes that cannot continue. */
static const unsigned char TAIL[] = {0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF5};
#define NT (sizeof TAIL)

/* Python's verdict on each candidate, one byte '1' (decodes strictly) or '0'
 * per sequence, in the order the candidates are listed below. */
static char *python_verdicts(size_t *n) {
    tu_require_python("sys", "python3");
    char script[4096];
    snprintf(script, sizeof script,
             "import sys\n"
             "T = bytes([%d,%d,%d,%d,%d,%d,%d,%d,%d,%d])\n"
             "def ok(b):\n"
             "    try:\n"
             "        b.decode('utf-8'); return '1'\n"
             "    except UnicodeDecodeError:\n"
             "        return '0'\n"
             "out = []\n"
             "for a in range(256): out.append(ok(bytes([a])))\n"
             "for a in range(256):\n"
             "    for b in range(256): out.append(ok(bytes([a, b])))\n"
             "for a in range(0xE0, 0xF0):\n"
             "    for b in range(256):\n"
             "        for c in range(256): out.append(ok(bytes([a, b, c])))\n"
             "for a in range(0xF0, 0x100):\n"
             "    for b in range(256):\n"
             "        for c in T:\n"
             "            for d in T: out.append(ok(bytes([a, b, c, d])))\n"
             "sys.stdout.write(''.join(out))\n",
             TAIL[0], TAIL[1], TAIL[2], TAIL[3], TAIL[4], TAIL[5], TAIL[6], TAIL[7], TAIL[8], TAIL[9]);
    char path[512];
    snprintf(path, sizeof path, "%s/verdicts.py", tu_tmpdir());
    cr_assert_eq(tu_write_file(path, script, strlen(script)), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s", path);
    int status = -1;
    char *out = tu_capture(cmd, &status);
    cr_assert(out && status == 0, "python3 %s failed", path);
    *n = strlen(out);
    return out;
}

/* Valid as a whole: lc_utf8_check finds no bad byte in the sequence. */
static int valid(const unsigned char *s, size_t n) {
    return lc_utf8_check((const char *)s, n) == n;
}

Test(utf8, validity_equals_pythons_strict_decoder) {
    size_t nv = 0;
    char *v = python_verdicts(&nv);
    cr_assert_eq(nv, 256 + 65536 + 16 * 65536 + 16 * 256 * NT * NT, "python printed %zu verdicts", nv);
    size_t at = 0, bad = 0;
    unsigned char s[4];
    for (int a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        bad += valid(s, 1) != (v[at++] == '1');
    }
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++) {
            s[0] = (unsigned char)a, s[1] = (unsigned char)b;
            bad += valid(s, 2) != (v[at++] == '1');
        }
    for (int a = 0xE0; a < 0xF0; a++)
        for (int b = 0; b < 256; b++)
            for (int c = 0; c < 256; c++) {
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                int want = v[at++] == '1';
                if (valid(s, 3) != want && bad++ < 5)
                    cr_log_error("%02X %02X %02X: python %d", a, b, c, want);
            }
    for (int a = 0xF0; a < 0x100; a++)
        for (int b = 0; b < 256; b++)
            for (size_t c = 0; c < NT; c++)
                for (size_t d = 0; d < NT; d++) {
                    s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = TAIL[c], s[3] = TAIL[d];
                    int want = v[at++] == '1';
                    if (valid(s, 4) != want && bad++ < 5)
                        cr_log_error("%02X %02X %02X %02X: python %d", a, b, TAIL[c], TAIL[d], want);
                }
    free(v);
    cr_assert_eq(bad, 0, "%zu sequences judged otherwise than Python's decoder", bad);
}

Test(utf8, encoder_and_decoder_are_inverse_on_every_code_point) {
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        char o[4];
        int n = lc_utf8_put(o, cp), len = 0;
        cr_assert_eq(lc_utf8_valid_len((const unsigned char *)o, (size_t)n), n, "U+%04X", cp);
        cr_assert_eq(lc_utf8_get((const unsigned char *)o, &len), cp, "U+%04X", cp);
        cr_assert_eq(len, n, "U+%04X", cp);
        cr_assert_eq(n, cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4, "U+%04X", cp);
        /* A sequence cut short is not valid. */
        if (n > 1) cr_assert_eq(lc_utf8_valid_len((const unsigned char *)o, (size_t)n - 1), 0, "U+%04X", cp);
    }
}

/* The Unicode Standard (ch. 3.9, "U+FFFD Substitution of Maximal Subparts"):
 * 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d,
 * which is also what Python's errors="replace" gives. */
Test(utf8, bad_len_replaces_maximal_subparts) {
    const unsigned char s[] = {0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64};
    const size_t n = sizeof s;
    const char *want = "a?" "?" "?b?c??d";
    char got[32];
    size_t i = 0, k = 0;
    while (i < n) {
        int l = lc_utf8_valid_len(s + i, n - i);
        if (l) {
            got[k++] = (char)s[i];
            i += (size_t)l;
        } else {
            got[k++] = '?';
            i += lc_utf8_bad_len(s + i, n - i);
        }
    }
    got[k] = 0;
    cr_assert_str_eq(got, want);
    cr_assert_eq(lc_utf8_check((const char *)s, n), 1);
    /* A surrogate's lead and second byte are two replacements (ED A0 is never a prefix). */
    const unsigned char sur[] = {0xED, 0xA0, 0x80};
    cr_assert_eq(lc_utf8_bad_len(sur, 3), 1);
    const unsigned char cut[] = {0xF0, 0x9F, 0x98};
    cr_assert_eq(lc_utf8_bad_len(cut, 3), 3);
}
