/*  tokenize: turns product titles and queries into index terms.

    English and other Latin-script text: runs of letters and digits, ASCII case-folded,
    with a light plural stemmer (TOKENIZE_STEM). CJK text (Han, Kana, Hangul) has no
    spaces, so each run of CJK characters yields its overlapping character bigrams (a
    lone character yields itself), the usual choice for indexing Chinese without a
    dictionary. The same function serves the preprocess workers (item tokens) and search
    (queries), so both sides always agree on terms.
*/
#ifndef STRATA_TOKENIZE_H
#define STRATA_TOKENIZE_H

#include <stddef.h>

#define TOKENIZE_STEM 1u   // strip English plural endings
#define TOKENIZE_MAX_TOKEN 64

//  Called once per token; tok is NUL-terminated and valid only during the call.
typedef void (tokenize_fn) (const char *tok, size_t len, void *arg);

//  Tokenizes text[0..len). Invalid UTF-8 bytes are treated as separators.
void tokenize (const char *text, size_t len, unsigned flags, tokenize_fn *fn, void *arg);

#endif
