/*  test_tokenize: index terms from titles and queries.

    The preprocess workers tokenise item titles and the search path tokenises queries
    with the same function, so any change in what a term is silently breaks recall. The
    cases are one table of text -> expected terms (joined with '|' so a failure shows the
    whole list): English words and case folding, punctuation and digits, the plural
    stemmer and its limits, CJK bigrams, mixed scripts, invalid UTF-8 and over-long runs.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "tokenize.h"

//  Collects tokens as "a|b|c".
typedef struct {
    char text[1024];
    size_t count;
    bool bad_len;   // a token whose len differs from strlen
} sink_t;

static void
s_collect (const char *tok, size_t len, void *arg)
{
    sink_t *sink = arg;
    if (strlen (tok) != len)
        sink->bad_len = true;
    if (sink->count++)
        strncat (sink->text, "|", sizeof sink->text - strlen (sink->text) - 1);
    strncat (sink->text, tok, sizeof sink->text - strlen (sink->text) - 1);
}

static sink_t
s_run (const char *text, size_t len, unsigned flags)
{
    sink_t sink = { "", 0, false };
    tokenize (text, len, flags, s_collect, &sink);
    return sink;
}

typedef struct {
    const char *label;
    const char *text;
    unsigned flags;
    const char *expect;
} tok_case_t;

#define STEM TOKENIZE_STEM

static const tok_case_t s_cases[] = {
    //  Latin script: words, case folding, punctuation, digits.
    { "empty", "", 0, "" },
    { "spaces only", "  \t\n ", 0, "" },
    { "lower-cased", "Hello WORLD", 0, "hello|world" },
    { "punctuation splits", "Acme,Serum-Gel/Night!(new)", 0, "acme|serum|gel|night|new" },
    { "digits kept", "Serum 50ml 2x 1.5oz", 0, "serum|50ml|2x|1|5oz" },
    { "apostrophe splits", "L'Oreal men's", 0, "l|oreal|men|s" },
    { "accented letters are word characters", "Crème Brûlée", 0, "crème|brûlée" },
    { "only ASCII is case-folded", "CAFÉ", 0, "cafÉ" },
    { "latin-1 punctuation splits", "a\xc2\xbb" "b\xc3\x97" "c", 0, "a|b|c" },
    { "general punctuation splits", "x\xe2\x80\x94y\xe2\x80\x99z", 0, "x|y|z" },

    //  Plural stemming, only with TOKENIZE_STEM.
    { "stem -s", "serums", STEM, "serum" },
    { "stem -shes", "brushes", STEM, "brush" },
    { "stem -ches", "watches", STEM, "watch" },
    { "stem -xes", "boxes", STEM, "box" },
    { "stem -sses", "dresses classes", STEM, "dress|class" },
    { "stem -ies", "berries", STEM, "berry" },
    { "-ss stays", "glass", STEM, "glass" },
    { "-us stays", "status", STEM, "status" },
    { "-is stays", "analysis", STEM, "analysis" },
    { "short words stay", "gas bus ios", STEM, "gas|bus|ios" },
    { "stem after case folding", "SERUMS Brushes", STEM, "serum|brush" },
    { "no stem without flag", "serums brushes berries glass", 0, "serums|brushes|berries|glass" },

    //  CJK: bigrams of each run, a lone character as itself.
    { "han run bigrams", "保湿精华", 0, "保湿|湿精|精华" },
    { "han pair", "保湿", 0, "保湿" },
    { "lone han", "保", 0, "保" },
    { "lone han between spaces", " 保 湿 ", 0, "保|湿" },
    { "mixed scripts", "Acme 保湿 serum", 0, "acme|保湿|serum" },
    { "mixed without spaces", "Acme保湿精华Serums", STEM, "acme|保湿|湿精|精华|serum" },
    { "full-width comma splits runs", "保湿，精华", 0, "保湿|精华" },
    { "ideographic space splits runs", "保\xe3\x80\x80湿", 0, "保|湿" },
    { "kana bigrams", "カタカナ", 0, "カタ|タカ|カナ" },
    { "hangul bigrams", "한국어", 0, "한국|국어" },
    { "CJK is not stemmed", "精华s", STEM, "精华|s" },

    //  Invalid UTF-8 bytes are separators.
    { "0xff splits", "abc\xff" "def", 0, "abc|def" },
    { "lone continuation", "\x80\x80x\xbf", 0, "x" },
    { "truncated 2-byte at end", "abc\xc3", 0, "abc" },
    { "truncated 3-byte at end", "\xe4\xbf", 0, "" },
    { "bad continuation", "a\xc3(b", 0, "a|b" },
    { "invalid byte inside CJK run", "保\xff湿", 0, "保|湿" },
    { "overlong lead byte", "\xc0\xaf" "ok", 0, "ok" },
};

Test (tokenize, table)
{
    for (size_t c = 0; c < sizeof s_cases / sizeof s_cases[0]; c++) {
        const tok_case_t *tc = &s_cases[c];
        sink_t sink = s_run (tc->text, strlen (tc->text), tc->flags);
        cr_assert_str_eq (sink.text, tc->expect, "%s: '%s' gave '%s', expected '%s'", tc->label, tc->text,
                          sink.text, tc->expect);
        cr_assert_not (sink.bad_len, "%s: len argument differs from strlen", tc->label);
    }
}

Test (tokenize, length_bounds_input)
{
    //  Only text[0..len) is read: no terminator needed, nothing beyond len seen.
    sink_t sink = s_run ("hello world", 5, 0);
    cr_assert_str_eq (sink.text, "hello");
    sink = s_run ("保湿精华", 6, 0);
    cr_assert_str_eq (sink.text, "保湿");
    //  A length that cuts a character in half drops the partial character.
    sink = s_run ("保湿精华", 7, 0);
    cr_assert_str_eq (sink.text, "保湿");
}

Test (tokenize, embedded_nul_is_separator)
{
    sink_t sink = s_run ("ab\0cd", 5, 0);
    cr_assert_str_eq (sink.text, "ab|cd");
    cr_assert_eq (sink.count, 2);
}

Test (tokenize, long_tokens)
{
    char text[256];
    //  Exactly TOKENIZE_MAX_TOKEN letters: kept.
    memset (text, 'a', TOKENIZE_MAX_TOKEN);
    text[TOKENIZE_MAX_TOKEN] = 0;
    sink_t sink = s_run (text, strlen (text), 0);
    cr_assert_eq (sink.count, 1);
    cr_assert_eq (strlen (sink.text), TOKENIZE_MAX_TOKEN);

    //  One more: skipped entirely (not truncated), neighbours survive.
    strcpy (text, "short ");
    size_t n = strlen (text);
    memset (text + n, 'B', TOKENIZE_MAX_TOKEN + 1);
    strcpy (text + n + TOKENIZE_MAX_TOKEN + 1, " tail");
    sink = s_run (text, strlen (text), TOKENIZE_STEM);
    cr_assert_str_eq (sink.text, "short|tail");

    //  Multi-byte letters count in bytes: 33 two-byte letters are 66 bytes.
    text[0] = 0;
    for (int i = 0; i < 33; i++)
        strcat (text, "é");
    strcat (text, " ok");
    sink = s_run (text, strlen (text), 0);
    cr_assert_str_eq (sink.text, "ok");
}

Test (tokenize, junk_never_crashes_and_yields_valid_tokens)
{
    //  Every byte value, in several orders: tokens must stay within the limit and be
    //  whole (their reported length matches).
    unsigned char buf[512];
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char) (i * (2 * round + 1) + round * 7);
        sink_t sink = { "", 0, false };
        tokenize ((const char *) buf, sizeof buf, TOKENIZE_STEM, s_collect, &sink);
        cr_assert_not (sink.bad_len, "round %d", round);
        cr_assert_gt (sink.count, 0, "ASCII letters in the buffer make tokens (round %d)", round);
    }
}
