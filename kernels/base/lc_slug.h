/* lc_slug.h: the folder-name rule, shared by calibrate (which makes the
 * folders) and export (which finds them). */
#ifndef LC_SLUG_H
#define LC_SLUG_H

#include <stddef.h>

/* The one rule that turns a name from a config (task, method, family) into
 * a folder name: characters outside A-Za-z0-9 - _ + . become '_', and so
 * does a leading '.' (no "..", no hidden folder); an empty name becomes
 * "_"; the result is cut to n-1 bytes. Callers check uniqueness on the
 * result, after the cut. */
void lc_slugify(char *dst, size_t n, const char *src);

#endif
