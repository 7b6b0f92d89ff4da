/*  util: see util.h. */
#include "util.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t
util_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t
util_fnv1a32 (const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

uint64_t
util_splitmix64 (uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t
util_fnv1a64_add (uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t
util_fnv1a64 (const void *data, size_t len)
{
    return util_fnv1a64_add (UTIL_FNV64_INIT, data, len);
}

bool
util_utf8_valid (const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        }
        else
            return false;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

size_t
util_latin1_to_utf8 (const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) in[i];
        if (c < 0x80)
            out[o++] = (char) c;
        else {
            out[o++] = (char) (0xC0 | (c >> 6));
            out[o++] = (char) (0x80 | (c & 0x3F));
        }
    }
    out[o] = 0;
    return o;
}

size_t
util_squeeze (char *s)
{
    size_t r = 0, w = 0;
    bool space = false;
    while (s[r] && isspace ((unsigned char) s[r]))
        r++;
    for (; s[r]; r++) {
        if (isspace ((unsigned char) s[r]))
            space = true;
        else {
            if (space && w)
                s[w++] = ' ';
            space = false;
            s[w++] = s[r];
        }
    }
    s[w] = 0;
    return w;
}

void
util_ascii_lower (char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char) (*s + 32);
}

void
util_put_be64 (unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char) v;
        v >>= 8;
    }
}

void
util_put_be32 (unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (unsigned char) v;
        v >>= 8;
    }
}

uint64_t
util_get_be64 (const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

uint32_t
util_get_be32 (const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

void
util_random_hex (char out[17])
{
    uint64_t v = 0;
    if (getrandom (&v, sizeof v, 0) != (ssize_t) sizeof v)
        v = (uint64_t) util_now_ms () ^ ((uint64_t) getpid () << 32);
    snprintf (out, 17, "%016llx", (unsigned long long) v);
}
