/*
 * core/b64.c - base64 through OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock.
 *
 * EVP_DecodeBlock alone is too lenient for input validation (it skips leading and trailing
 * whitespace and reports the padding as decoded zero bytes), so b64_decode_new() checks the
 * alphabet and the padding itself first and trims the padding bytes afterwards.
 */
#include "b64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

size_t b64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

size_t b64_encode(const void *in, size_t n, char *out)
{
    size_t done = 0, written = 0;

    /* EVP_EncodeBlock takes an int length: feed it in chunks that are multiples of 3. */
    while (n - done > 0) {
        size_t chunk = n - done;
        int w;

        if (chunk > 3u * 1024u * 1024u)
            chunk = 3u * 1024u * 1024u;
        w = EVP_EncodeBlock((unsigned char *)out + written, (const unsigned char *)in + done,
                            (int)chunk);
        written += (size_t)w;
        done += chunk;
    }
    out[written] = '\0';
    return written;
}

char *b64_encode_new(const void *in, size_t n)
{
    char *out = malloc(b64_encoded_size(n));

    if (out == NULL)
        return NULL;
    b64_encode(in, n, out);
    return out;
}

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

char *b64_decode_new(const char *in, size_t n, size_t *outlen)
{
    size_t pad = 0;
    char *out;
    int w;

    if (n % 4 != 0 || n > (size_t)1 << 30)
        return NULL;
    if (n > 0 && in[n - 1] == '=')
        pad++;
    if (n > 1 && in[n - 2] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        if (!b64_char((unsigned char)in[i]))
            return NULL;
    }
    out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    w = n > 0 ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n) : 0;
    if (w < 0 || (size_t)w < pad) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)w - pad;
    out[*outlen] = '\0';
    return out;
}
