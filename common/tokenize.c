/*  tokenize: see tokenize.h. */
#include "tokenize.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

//  Decodes one UTF-8 code point at s (len bytes left); returns its length, or 0 if invalid.
static size_t
s_decode (const unsigned char *s, size_t len, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > len)
        return 0;
    uint32_t v = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    //  Overlong forms, surrogates and values past U+10FFFF are invalid, so tokens made
    //  from what remains are always valid UTF-8.
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool
s_is_cjk (uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF)
        || (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0xAC00 && cp <= 0xD7AF)
        || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x2FA1F);
}

static bool
s_is_word (uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    //  Latin-1 supplement letters and other alphabetic scripts count as word characters;
    //  punctuation blocks and full-width forms do not.
    if (cp == 0xD7 || cp == 0xF7 || (cp >= 0x80 && cp < 0xC0))
        return false;
    if ((cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFF00 && cp <= 0xFFEF))
        return false;
    return !s_is_cjk (cp);
}

static size_t
s_stem (char *w, size_t n)
{
    //  Plural stripping only; words of 3 letters or fewer are kept as they are.
    if (n > 4 && !strcmp (w + n - 3, "ies")) {
        w[n - 3] = 'y';
        w[n - 2] = 0;
        return n - 2;
    }
    if (n > 4 && (!strcmp (w + n - 4, "shes") || !strcmp (w + n - 4, "ches") || !strcmp (w + n - 3, "xes")
                  || !strcmp (w + n - 3, "zes") || !strcmp (w + n - 4, "sses"))) {
        w[n - 2] = 0;
        return n - 2;
    }
    if (n > 3 && w[n - 1] == 's' && w[n - 2] != 's' && w[n - 2] != 'u' && w[n - 2] != 'i') {
        w[n - 1] = 0;
        return n - 1;
    }
    return n;
}

void
tokenize (const char *text, size_t len, unsigned flags, tokenize_fn *fn, void *arg)
{
    const unsigned char *s = (const unsigned char *) text;
    char word[TOKENIZE_MAX_TOKEN + 8];
    size_t wn = 0;
    bool word_overflow = false;
    //  Previous CJK character, for bigrams.
    char prev[8];
    size_t prev_n = 0;
    bool prev_emitted = false;

    size_t i = 0;
    while (i <= len) {
        uint32_t cp = 0;
        size_t n = 0;
        if (i < len) {
            n = s_decode (s + i, len - i, &cp);
            if (n == 0) {
                n = 1;
                cp = ' ';
            }
        }
        bool end = i >= len;
        bool word_char = !end && s_is_word (cp);
        bool cjk = !end && s_is_cjk (cp);

        if (!word_char && wn) {
            word[wn] = 0;
            if (!word_overflow) {
                if (flags & TOKENIZE_STEM)
                    wn = s_stem (word, wn);
                fn (word, wn, arg);
            }
            wn = 0;
            word_overflow = false;
        }
        if (!cjk && prev_n) {
            if (!prev_emitted) {
                char one[8];
                memcpy (one, prev, prev_n);
                one[prev_n] = 0;
                fn (one, prev_n, arg);
            }
            prev_n = 0;
            prev_emitted = false;
        }
        if (end)
            break;
        if (word_char) {
            if (wn + n <= TOKENIZE_MAX_TOKEN) {
                for (size_t k = 0; k < n; k++) {
                    char c = (char) s[i + k];
                    word[wn++] = (c >= 'A' && c <= 'Z') ? (char) (c + 32) : c;
                }
            }
            else
                word_overflow = true;   // absurdly long runs are not useful terms
        }
        else if (cjk) {
            if (prev_n) {
                char bi[16];
                memcpy (bi, prev, prev_n);
                memcpy (bi + prev_n, s + i, n);
                bi[prev_n + n] = 0;
                fn (bi, prev_n + n, arg);
                prev_emitted = true;
            }
            else
                prev_emitted = false;
            //  A run of one CJK character yields the character itself; longer runs
            //  yield only their bigrams (prev_emitted records that one was made).
            memcpy (prev, s + i, n);
            prev_n = n;
        }
        i += n;
    }
}
