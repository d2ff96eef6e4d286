/* core/fastid.c - see fastid.h. */
#include "fastid.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include <uuid/uuid.h>

#define POOL_BYTES 4096

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left;

/* 16 fresh random bytes into B. Returns 0, or -1 when the kernel gave us nothing. */
static int take16(unsigned char b[16])
{
    if (pool_left < 16) {
        size_t got = 0;

        while (got < POOL_BYTES) {
            ssize_t n = getrandom(pool + got, POOL_BYTES - got, 0);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got < 16)
            return -1;
        /* Use the bytes from the end of what we got, so a short read is still all fresh. */
        memmove(pool + POOL_BYTES - got, pool, got);
        pool_left = got;
    }
    memcpy(b, pool + POOL_BYTES - pool_left, 16);
    memset(pool + POOL_BYTES - pool_left, 0, 16); /* never hand the same bytes out twice */
    pool_left -= 16;
    return 0;
}

void fastid_uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t k = 0;

    if (take16(b) != 0) {
        uuid_t u; /* the kernel refused: libuuid has its own fallbacks */

        uuid_generate_random(u);
        uuid_unparse_lower(u, out);
        return;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[b[i] >> 4];
        out[k++] = hex[b[i] & 0x0f];
    }
    out[k] = '\0';
}
