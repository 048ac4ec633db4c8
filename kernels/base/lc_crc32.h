/* lc_crc32.h: CRC-32 as zlib's crc32() computes it (reflected polynomial
 * 0xEDB88320, initial value and final xor 0xFFFFFFFF), so the device
 * runtime reads bundles without zlib. On x86-64 with PCLMULQDQ (checked
 * at run time) by carry-less multiplication folding, else slicing-by-8
 * over constant tables; safe from any thread. */
#ifndef LC_CRC32_H
#define LC_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc (0 to start) over n bytes: lc_crc32(lc_crc32(0, a, n), b, m)
 * equals the CRC of a followed by b, as with zlib. */
uint32_t lc_crc32(uint32_t crc, const void *data, size_t n);
/* on = 1: the tables only, whatever the CPU (for tests comparing the two
 * paths); not for use while other threads compute CRCs. */
void lc_crc32_force_table(int on);

#endif
