/* lc_utf8.h: the project's one UTF-8 codec, by Unicode's rules (as Rust's
 * str and Python's "strict" codec): no overlong forms, no surrogates
 * (U+D800-U+DFFF), nothing past U+10FFFF. The tokenizers, the data-set
 * reader and the metrics all decide validity here. */
#ifndef LC_UTF8_H
#define LC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the valid sequence at s, with n >= 1 bytes left; 0 if
 * the bytes there are not one. */
int lc_utf8_valid_len(const unsigned char *s, size_t n);

/* Bytes an invalid sequence at s spans when it is replaced by one U+FFFD:
 * the longest prefix of a valid sequence, at least one byte (Rust's
 * String::from_utf8_lossy, Python's errors="replace"). */
size_t lc_utf8_bad_len(const unsigned char *s, size_t n);

/* Offset of the first byte that does not start a valid sequence, or n when
 * all n bytes are valid UTF-8. */
size_t lc_utf8_check(const char *s, size_t n);

/* Decodes the sequence at s, which must be valid (lc_utf8_valid_len > 0);
 * its length goes to *len. */
uint32_t lc_utf8_get(const unsigned char *s, int *len);

/* Encodes cp (<= U+10FFFF) into o[0..3]; returns the bytes written. */
int lc_utf8_put(char *o, uint32_t cp);

#endif
