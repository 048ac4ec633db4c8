/* lc_slug.c: see lc_slug.h. */
#include "lc_slug.h"

void lc_slugify(char *dst, size_t n, const char *src) {
    if (!n) return;
    size_t k = 0;
    for (const char *p = src; *p && k + 1 < n; p++) {
        unsigned char ch = (unsigned char)*p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '+' || (ch == '.' && k > 0);
        dst[k++] = ok ? (char)ch : '_'; /* so never "/", "\\", a control character, or a leading "." */
    }
    if (k == 0 && n > 1) dst[k++] = '_'; /* never empty */
    dst[k] = 0;
}
