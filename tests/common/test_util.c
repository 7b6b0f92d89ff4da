/*  test_util: UTF-8 checks, Latin-1 conversion, whitespace squeezing, big-endian keys,
    FNV-1a hashes and random ids.

    These helpers sit under every reject decision (invalid UTF-8), every stored key
    (big-endian so that RocksDB's byte order is numeric order) and every hash-partitioned
    structure, so they are checked against published vectors and byte-exact tables rather
    than against each other.
*/
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "util.h"

// ---------------------------------------------------------------- UTF-8

typedef struct {
    const char *label;
    const char *bytes;
    size_t len;
    bool valid;
} utf8_case_t;

#define U8(label, lit, valid) { label, lit, sizeof (lit) - 1, valid }

static const utf8_case_t s_utf8_cases[] = {
    //  Valid.
    U8 ("empty", "", true),
    U8 ("ASCII", "hello, world", true),
    U8 ("embedded NUL", "a\0b", true),
    U8 ("2-byte e-acute", "\xc3\xa9", true),
    U8 ("2-byte lowest U+0080", "\xc2\x80", true),
    U8 ("3-byte han", "\xe4\xbf\x9d", true),
    U8 ("3-byte lowest U+0800", "\xe0\xa0\x80", true),
    U8 ("3-byte just below surrogates", "\xed\x9f\xbf", true),
    U8 ("3-byte just above surrogates", "\xee\x80\x80", true),
    U8 ("3-byte U+FFFF", "\xef\xbf\xbf", true),
    U8 ("4-byte emoji", "\xf0\x9f\x98\x80", true),
    U8 ("4-byte lowest U+10000", "\xf0\x90\x80\x80", true),
    U8 ("4-byte highest U+10FFFF", "\xf4\x8f\xbf\xbf", true),
    U8 ("mixed", "Caf\xc3\xa9 \xe4\xbf\x9d\xe6\xb9\xbf \xf0\x9f\x98\x80!", true),

    //  Overlong forms.
    U8 ("overlong NUL C0 80", "\xc0\x80", false),
    U8 ("overlong C1 BF", "\xc1\xbf", false),
    U8 ("overlong 3-byte E0 80 AF", "\xe0\x80\xaf", false),
    U8 ("overlong 3-byte E0 9F BF", "\xe0\x9f\xbf", false),
    U8 ("overlong 4-byte F0 80 80 AF", "\xf0\x80\x80\xaf", false),
    U8 ("overlong 4-byte F0 8F BF BF", "\xf0\x8f\xbf\xbf", false),

    //  Surrogates and out of range.
    U8 ("surrogate ED A0 80", "\xed\xa0\x80", false),
    U8 ("surrogate ED BF BF", "\xed\xbf\xbf", false),
    U8 ("above U+10FFFF F4 90 80 80", "\xf4\x90\x80\x80", false),
    U8 ("lead F5", "\xf5\x80\x80\x80", false),
    U8 ("lead FF", "\xff", false),
    U8 ("lead FE", "\xfe", false),

    //  Truncated and stray bytes.
    U8 ("truncated 2-byte", "\xc3", false),
    U8 ("truncated 3-byte", "\xe4\xbf", false),
    U8 ("truncated 4-byte", "\xf0\x9f\x98", false),
    U8 ("truncated before ASCII", "\xe4\xbf" "a", false),
    U8 ("lone continuation", "\x80", false),
    U8 ("continuation inside ASCII", "a\xbf" "b", false),
    U8 ("bad continuation", "\xc3\x28", false),
    U8 ("valid then invalid", "ok \xc3\xa9 \xff", false),
};

Test (util, utf8_valid_table)
{
    for (size_t c = 0; c < sizeof s_utf8_cases / sizeof s_utf8_cases[0]; c++) {
        const utf8_case_t *tc = &s_utf8_cases[c];
        cr_assert_eq (util_utf8_valid (tc->bytes, tc->len), tc->valid, "%s: expected %s", tc->label,
                      tc->valid ? "valid" : "invalid");
    }
}

Test (util, utf8_valid_respects_len)
{
    //  A character cut by len is truncated even though the bytes after it exist.
    cr_assert_not (util_utf8_valid ("\xc3\xa9", 1));
    cr_assert_not (util_utf8_valid ("\xf0\x9f\x98\x80", 3));
    cr_assert (util_utf8_valid ("ab\xff", 2));
    cr_assert (util_utf8_valid ("\xff", 0));
}

// ---------------------------------------------------------------- Latin-1

typedef struct {
    const char *in;
    size_t in_len;
    const char *out;
} latin1_case_t;

#define L1(in, out) { in, sizeof (in) - 1, out }

static const latin1_case_t s_latin1_cases[] = {
    L1 ("", ""),
    L1 ("plain ASCII", "plain ASCII"),
    L1 ("\xe9", "\xc3\xa9"),                                    // é
    L1 ("\xae", "\xc2\xae"),                                    // ®
    L1 ("\x80", "\xc2\x80"),                                    // first high byte
    L1 ("\xff", "\xc3\xbf"),                                    // ÿ
    L1 ("\xa0", "\xc2\xa0"),                                    // no-break space
    L1 ("Caf\xe9 Table 36\xae", "Caf\xc3\xa9 Table 36\xc2\xae"),
};

Test (util, latin1_to_utf8_table)
{
    for (size_t c = 0; c < sizeof s_latin1_cases / sizeof s_latin1_cases[0]; c++) {
        const latin1_case_t *tc = &s_latin1_cases[c];
        char out[64];
        memset (out, 'X', sizeof out);
        size_t n = util_latin1_to_utf8 (tc->in, tc->in_len, out);
        cr_assert_eq (n, strlen (tc->out), "case %zu: length %zu", c, n);
        cr_assert_eq (out[n], 0, "case %zu: NUL-terminated", c);
        cr_assert_str_eq (out, tc->out, "case %zu", c);
        cr_assert (util_utf8_valid (out, n), "case %zu: output is valid UTF-8", c);
    }
}

Test (util, latin1_every_byte_is_valid_utf8)
{
    char in[256], out[513];
    for (int i = 0; i < 256; i++)
        in[i] = (char) (i == 0 ? ' ' : i);
    size_t n = util_latin1_to_utf8 (in, sizeof in, out);
    cr_assert_eq (n, 128 + 2 * 128, "each high byte becomes two");
    cr_assert (util_utf8_valid (out, n));
}

// ---------------------------------------------------------------- squeeze, lower

typedef struct {
    const char *in;
    const char *out;
} squeeze_case_t;

static const squeeze_case_t s_squeeze_cases[] = {
    { "", "" },
    { "   ", "" },
    { "\t\n\r\v\f", "" },
    { "abc", "abc" },
    { "  leading", "leading" },
    { "trailing  ", "trailing" },
    { "  both  ", "both" },
    { "inner   run", "inner run" },
    { "tabs\tand\nnewlines\r\nmixed", "tabs and newlines mixed" },
    { " \t a \n\n b \t c \r\n", "a b c" },
    { "x", "x" },
    { "caf\xc3\xa9  \xe4\xbf\x9d", "caf\xc3\xa9 \xe4\xbf\x9d" },
};

Test (util, squeeze_table)
{
    for (size_t c = 0; c < sizeof s_squeeze_cases / sizeof s_squeeze_cases[0]; c++) {
        char buf[64];
        strcpy (buf, s_squeeze_cases[c].in);
        size_t n = util_squeeze (buf);
        cr_assert_str_eq (buf, s_squeeze_cases[c].out, "case %zu: '%s'", c, s_squeeze_cases[c].in);
        cr_assert_eq (n, strlen (buf), "case %zu: returned length", c);
    }
}

Test (util, ascii_lower_leaves_other_bytes)
{
    char buf[] = "AbC-XYZ 09 \xc3\x89t\xc3\xa9 \xe4\xbf\x9d";
    util_ascii_lower (buf);
    cr_assert_str_eq (buf, "abc-xyz 09 \xc3\x89t\xc3\xa9 \xe4\xbf\x9d");
}

// ---------------------------------------------------------------- big-endian

Test (util, be64_byte_order)
{
    unsigned char b[8];
    util_put_be64 (b, 0x0102030405060708ULL);
    const unsigned char expect[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    cr_assert_arr_eq (b, expect, 8);
    cr_assert_eq (util_get_be64 (b), 0x0102030405060708ULL);
}

Test (util, be32_byte_order)
{
    unsigned char b[4];
    util_put_be32 (b, 0xA1B2C3D4u);
    const unsigned char expect[4] = { 0xA1, 0xB2, 0xC3, 0xD4 };
    cr_assert_arr_eq (b, expect, 4);
    cr_assert_eq (util_get_be32 (b), 0xA1B2C3D4u);
}

static const uint64_t s_be_values[] = {
    0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000ULL, 0xFFFFFFFFULL,
    0x100000000ULL, 0x7FFFFFFFFFFFFFFFULL, 0x8000000000000000ULL, UINT64_MAX,
};
#define N_BE (sizeof s_be_values / sizeof s_be_values[0])

Test (util, be_round_trip_and_sortable)
{
    for (size_t i = 0; i < N_BE; i++) {
        unsigned char a[8], a32[4];
        util_put_be64 (a, s_be_values[i]);
        cr_assert_eq (util_get_be64 (a), s_be_values[i], "be64 round trip of %llx",
                      (unsigned long long) s_be_values[i]);
        uint32_t v32 = (uint32_t) s_be_values[i];
        util_put_be32 (a32, v32);
        cr_assert_eq (util_get_be32 (a32), v32);

        //  The table is ascending: byte order must agree with numeric order.
        for (size_t j = 0; j < N_BE; j++) {
            unsigned char b[8];
            util_put_be64 (b, s_be_values[j]);
            int cmp = memcmp (a, b, 8);
            int want = i < j ? -1 : i > j ? 1 : 0;
            cr_assert_eq ((cmp > 0) - (cmp < 0), want, "%llx vs %llx", (unsigned long long) s_be_values[i],
                          (unsigned long long) s_be_values[j]);
        }
    }
}

// ---------------------------------------------------------------- FNV-1a

typedef struct {
    const char *text;
    uint32_t h32;
    uint64_t h64;
} fnv_case_t;

static const fnv_case_t s_fnv_cases[] = {
    { "", 0x811c9dc5u, 0xcbf29ce484222325ULL },
    { "a", 0xe40c292cu, 0xaf63dc4c8601ec8cULL },
    { "foobar", 0xbf9cf968u, 0x85944171f73967e8ULL },
};

Test (util, fnv1a_vectors)
{
    for (size_t c = 0; c < sizeof s_fnv_cases / sizeof s_fnv_cases[0]; c++) {
        const fnv_case_t *tc = &s_fnv_cases[c];
        size_t len = strlen (tc->text);
        cr_assert_eq (util_fnv1a32 (tc->text, len), tc->h32, "fnv1a32('%s') = %08x", tc->text,
                      util_fnv1a32 (tc->text, len));
        cr_assert_eq (util_fnv1a64 (tc->text, len), tc->h64, "fnv1a64('%s') = %016llx", tc->text,
                      (unsigned long long) util_fnv1a64 (tc->text, len));
    }
    cr_assert_eq (UTIL_FNV64_INIT, 0xcbf29ce484222325ULL);
}

Test (util, fnv1a64_add_is_incremental)
{
    uint64_t h = util_fnv1a64_add (UTIL_FNV64_INIT, "foo", 3);
    h = util_fnv1a64_add (h, "bar", 3);
    cr_assert_eq (h, util_fnv1a64 ("foobar", 6));
    cr_assert_eq (util_fnv1a64_add (UTIL_FNV64_INIT, "x", 0), UTIL_FNV64_INIT);
    //  Hashes the bytes, not a C string: a NUL counts.
    cr_assert_neq (util_fnv1a64 ("a\0b", 3), util_fnv1a64 ("a", 1));
}

// ---------------------------------------------------------------- clocks, random ids

Test (util, random_hex)
{
    char a[17], b[17];
    memset (a, 'Z', sizeof a);
    util_random_hex (a);
    util_random_hex (b);
    cr_assert_eq (strlen (a), 16);
    cr_assert_eq (strlen (b), 16);
    for (int i = 0; i < 16; i++) {
        cr_assert (isxdigit ((unsigned char) a[i]) && !isupper ((unsigned char) a[i]), "'%s'", a);
        cr_assert (isxdigit ((unsigned char) b[i]) && !isupper ((unsigned char) b[i]), "'%s'", b);
    }
    cr_assert_str_neq (a, b);
}

Test (util, clocks)
{
    int64_t now = util_now_ms ();
    int64_t wall = (int64_t) time (NULL) * 1000;
    cr_assert_geq (now, wall - 2000);
    cr_assert_leq (now, wall + 2000);
    int64_t m1 = util_mono_ms ();
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep (&ts, NULL);
    int64_t m2 = util_mono_ms ();
    cr_assert_geq (m2 - m1, 19, "monotonic clock advanced %lld ms", (long long) (m2 - m1));
}
