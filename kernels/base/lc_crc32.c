/* lc_crc32.c: see lc_crc32.h. */
#include "lc_crc32.h"

#include "lc_crc32_table.h"

uint32_t lc_crc32(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = lc_crc32_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    const uint32_t (*t)[256] = lc_crc32_table;
    while (n >= 8) {
        /* little-endian assembly of the bytes, whatever the host order */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = lc_crc32_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}
