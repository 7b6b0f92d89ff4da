/*  test_preprocess: validation, cleaning and in-batch dedupe of one batch.

    preprocess is the single place where untrusted records become clean ones or counted
    rejects, so every rule in the banner of preprocess.h has a row here: valid records of
    each kind, edges (seconds converted to ms, limits hit exactly and by one), and junk
    for each reject reason, checked by its exact text because reasons are counted and
    shown to operators. Event rows state only what differs from a valid baseline event;
    the clock is fixed through lim.now_ms so the time rules are deterministic.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "preprocess.h"
#include "strata.pb-c.h"
#include "util.h"

#define NOW_MS 1714557600000LL   // 2024-05-01T10:00:00Z
#define DAY_MS 86400000LL
#define MIN_TS 788918400000LL    // 1995-01-01T00:00:00Z, the default lower bound
#define NO_TS INT64_MIN          // row marker: leave timestamp_ms at 0

#define VIEW STRATA__V1__EVENT_TYPE__VIEW
#define CLICK STRATA__V1__EVENT_TYPE__CLICK
#define CART STRATA__V1__EVENT_TYPE__CART
#define PURCHASE STRATA__V1__EVENT_TYPE__PURCHASE
#define SEARCH STRATA__V1__EVENT_TYPE__SEARCH
#define RATE STRATA__V1__EVENT_TYPE__RATE

static arena_t *s_arena;
static preprocess_limits_t s_lim;

static void
s_setup (void)
{
    s_arena = arena_new (16 * 1024);
    cr_assert_not_null (s_arena);
    preprocess_limits_default (&s_lim);
    s_lim.now_ms = NOW_MS;
}

static void
s_teardown (void)
{
    arena_destroy (&s_arena);
}

TestSuite (preprocess, .init = s_setup, .fini = s_teardown);

Test (preprocess, limits_default)
{
    preprocess_limits_t lim;
    memset (&lim, 0xFF, sizeof lim);
    preprocess_limits_default (&lim);
    cr_assert_eq (lim.max_id_len, 256);
    cr_assert_eq (lim.max_text_len, 2048);
    cr_assert_eq (lim.min_timestamp_ms, MIN_TS);
    cr_assert_eq (lim.max_future_ms, DAY_MS);
    cr_assert_eq (lim.now_ms, 0);
}

// ---------------------------------------------------------------- event types

typedef struct {
    const char *name;
    int type;
} type_case_t;

static const type_case_t s_type_cases[] = {
    { "view", VIEW },          { "PageView", VIEW },          { "page_view", VIEW },
    { "impression", VIEW },    { "click", CLICK },            { "CLICK", CLICK },
    { "cart", CART },          { "Add_To_Cart", CART },       { "addtocart", CART },
    { "add-to-cart", CART },   { "purchase", PURCHASE },      { " buy ", PURCHASE },
    { "order", PURCHASE },     { "Transaction", PURCHASE },   { "search", SEARCH },
    { "query", SEARCH },       { "rate", RATE },              { "Rating", RATE },
    { "review", RATE },        { "\tview\n", VIEW },
    //  Unknown.
    { "teleport", 0 },         { "", 0 },                     { "   ", 0 },
    { "view2", 0 },            { "add to cart", 0 },          { "vie", 0 },
    { "viewviewviewviewviewviewviewviewviewview", 0 },
};

Test (preprocess, event_type_names)
{
    for (size_t c = 0; c < sizeof s_type_cases / sizeof s_type_cases[0]; c++)
        cr_assert_eq (preprocess_event_type (s_type_cases[c].name), s_type_cases[c].type, "'%s'",
                      s_type_cases[c].name);
}

// ---------------------------------------------------------------- events

//  A row states what differs from the baseline: event "ev-1" by user "u-1" viewing
//  "sku-1" an hour ago. NULL strings take the baseline; "" really means empty.
typedef struct {
    const char *label;
    const char *event_id, *user_id, *item_id, *session, *query, *type_name;
    int type;          // 0 with type_name NULL: the baseline VIEW
    int64_t ts;        // 0: baseline; NO_TS: missing
    double value;
    const char *reason;      // NULL: accepted
    int want_type;           // accepted: the cleaned type (0: not checked)
    int64_t want_ts;         // accepted: the cleaned timestamp (0: the baseline)
    const char *want_query;  // accepted: the cleaned query (NULL: not checked)
    const char *want_user;   // accepted: the cleaned user id (NULL: "u-1")
} event_case_t;

static const event_case_t s_event_cases[] = {
    //  Valid, type by enum.
    { "view by enum", .type = VIEW, .want_type = VIEW },
    { "click by enum", .type = CLICK, .want_type = CLICK },
    { "cart by enum", .type = CART, .want_type = CART },
    { "purchase by enum", .type = PURCHASE, .value = 2, .want_type = PURCHASE },
    { "search by enum", .type = SEARCH, .item_id = "", .query = "lipstick", .want_type = SEARCH },
    { "rate by enum", .type = RATE, .value = 4.5, .want_type = RATE },
    //  Valid, type by name.
    { "Add_To_Cart", .type_name = "Add_To_Cart", .want_type = CART },
    { "' buy '", .type_name = " buy ", .want_type = PURCHASE },
    { "PageView", .type_name = "PageView", .want_type = VIEW },
    { "click by name", .type_name = "click", .want_type = CLICK },
    { "query by name", .type_name = "query", .item_id = "", .query = "serum", .want_type = SEARCH },
    { "RATING by name", .type_name = "RATING", .value = 3, .want_type = RATE },
    { "enum wins over name", .type = CLICK, .type_name = "teleport", .want_type = CLICK },
    { "ids trimmed", .event_id = "  ev-1 ", .user_id = "\tu-1\n", .want_type = VIEW },
    { "unicode ids", .user_id = "用户-1", .item_id = "商品-1", .want_type = VIEW, .want_user = "用户-1" },
    { "session kept", .session = "s-42", .want_type = VIEW },

    //  Edges.
    { "timestamp in seconds", .ts = NOW_MS / 1000, .want_type = VIEW, .want_ts = NOW_MS },
    { "timestamp at minimum", .ts = MIN_TS, .want_type = VIEW, .want_ts = MIN_TS },
    { "timestamp at max future", .ts = NOW_MS + DAY_MS, .want_type = VIEW, .want_ts = NOW_MS + DAY_MS },
    { "query squeezed", .type = SEARCH, .item_id = "", .query = "  red   matte\t lipstick \n",
      .want_type = SEARCH, .want_query = "red matte lipstick" },
    { "search with item", .type = SEARCH, .query = "x", .want_type = SEARCH },
    { "view with query", .query = " a  b ", .want_type = VIEW, .want_query = "a b" },
    { "rating 0", .type = RATE, .value = 0, .want_type = RATE },
    { "rating 10", .type = RATE, .value = 10, .want_type = RATE },
    { "purchase value 0", .type = PURCHASE, .value = 0, .want_type = PURCHASE },
    { "large purchase value", .type = PURCHASE, .value = 1e9, .want_type = PURCHASE },

    //  Junk: every reject reason.
    { "empty event_id", .event_id = "", .reason = "empty event_id" },
    { "blank event_id", .event_id = "  \t ", .reason = "empty event_id" },
    { "empty user_id", .user_id = "", .reason = "empty user_id" },
    { "invalid UTF-8 event_id", .event_id = "ev\xff", .reason = "invalid UTF-8" },
    { "invalid UTF-8 user_id", .user_id = "u\xc3", .reason = "invalid UTF-8" },
    { "invalid UTF-8 item_id", .item_id = "\xed\xa0\x80", .reason = "invalid UTF-8" },
    { "invalid UTF-8 session", .session = "s\x80", .reason = "invalid UTF-8" },
    { "invalid UTF-8 query", .type = SEARCH, .query = "caf\xe9", .reason = "invalid UTF-8" },
    { "invalid UTF-8 type_name", .type_name = "vi\xc0\x80" "ew", .reason = "invalid UTF-8" },
    { "unknown type name", .type_name = "teleport", .reason = "unknown event type 'teleport'" },
    { "unknown type name trimmed", .type_name = "  teleport  ", .reason = "unknown event type 'teleport'" },
    { "numeric type 99", .type = 99, .reason = "unknown event type 99" },
    { "numeric type 7", .type = 7, .reason = "unknown event type 7" },
    { "negative type", .type = -1, .reason = "unknown event type -1" },
    { "missing event type", .type_name = "", .reason = "missing event type" },
    { "blank event type", .type_name = "   ", .reason = "missing event type" },
    { "missing timestamp", .ts = NO_TS, .reason = "missing timestamp" },
    { "before 1995", .ts = MIN_TS - 1, .reason = "timestamp out of range" },
    { "1994 in seconds", .ts = 788918399, .reason = "timestamp out of range" },
    { "negative timestamp", .ts = -1000, .reason = "timestamp out of range" },
    { "too far in the future", .ts = NOW_MS + DAY_MS + 1, .reason = "timestamp out of range" },
    { "year 3000", .ts = 32503680000000LL, .reason = "timestamp out of range" },
    { "view without item", .item_id = "", .reason = "empty item_id" },
    { "click with blank item", .type = CLICK, .item_id = "   ", .reason = "empty item_id" },
    { "search without query", .type = SEARCH, .item_id = "", .reason = "search without query" },
    { "search with blank query", .type = SEARCH, .query = " \t ", .reason = "search without query" },
    { "rating above 10", .type = RATE, .value = 10.5, .reason = "rating out of range" },
    { "negative rating", .type = RATE, .value = -0.5, .reason = "rating out of range" },
    { "negative value", .type = PURCHASE, .value = -1, .reason = "invalid value" },
    { "NaN value", .type = PURCHASE, .value = NAN, .reason = "invalid value" },
    { "infinite value", .value = INFINITY, .reason = "invalid value" },
    { "NaN rating", .type = RATE, .value = NAN, .reason = "invalid value" },
};

//  Builds the event a row describes.
static void
s_make_event (const event_case_t *tc, Strata__V1__Event *e)
{
    strata__v1__event__init (e);
    e->event_id = (char *) (tc->event_id ? tc->event_id : "ev-1");
    e->user_id = (char *) (tc->user_id ? tc->user_id : "u-1");
    e->item_id = (char *) (tc->item_id ? tc->item_id : "sku-1");
    e->session = (char *) (tc->session ? tc->session : "");
    e->query = (char *) (tc->query ? tc->query : "");
    e->type_name = (char *) (tc->type_name ? tc->type_name : "");
    e->type = (Strata__V1__EventType) (tc->type == 0 && !tc->type_name ? VIEW : tc->type);
    e->timestamp_ms = tc->ts == NO_TS ? 0 : tc->ts ? tc->ts : NOW_MS - 3600000;
    e->value = tc->value;
}

Test (preprocess, event_table)
{
    for (size_t c = 0; c < sizeof s_event_cases / sizeof s_event_cases[0]; c++) {
        const event_case_t *tc = &s_event_cases[c];
        Strata__V1__Event in, out;
        s_make_event (tc, &in);
        const char *reason = preprocess_event (&in, &s_lim, s_arena, &out);
        if (tc->reason) {
            cr_assert_not_null (reason, "%s: accepted, expected '%s'", tc->label, tc->reason);
            cr_assert_str_eq (reason, tc->reason, "%s", tc->label);
            continue;
        }
        cr_assert_null (reason, "%s: rejected with '%s'", tc->label, reason);
        cr_assert_eq (out.type, tc->want_type, "%s: type %d", tc->label, out.type);
        cr_assert_eq (out.timestamp_ms, tc->want_ts ? tc->want_ts : NOW_MS - 3600000, "%s", tc->label);
        if (tc->want_query)
            cr_assert_str_eq (out.query, tc->want_query, "%s", tc->label);
        cr_assert_str_eq (out.event_id, "ev-1", "%s", tc->label);
        cr_assert_str_eq (out.user_id, tc->want_user ? tc->want_user : "u-1", "%s", tc->label);
        cr_assert_str_eq (out.type_name, "", "%s: the name is resolved into type", tc->label);
        cr_assert_float_eq (out.value, tc->value, 1e-9, "%s", tc->label);
        cr_assert_str_eq (out.session, tc->session ? tc->session : "", "%s", tc->label);
    }
}

Test (preprocess, event_output_is_a_copy)
{
    char id[] = " ev-7 ";
    Strata__V1__Event in = STRATA__V1__EVENT__INIT, out;
    in.event_id = id;
    in.user_id = "u";
    in.item_id = "i";
    in.type = VIEW;
    in.timestamp_ms = NOW_MS;
    cr_assert_null (preprocess_event (&in, &s_lim, s_arena, &out));
    cr_assert_str_eq (out.event_id, "ev-7");
    cr_assert_str_eq (in.event_id, " ev-7 ", "the input is not modified");
    id[1] = 'X';
    cr_assert_str_eq (out.event_id, "ev-7", "the output lives in the arena");
}

//  Ids exactly at the limit pass; one byte more is rejected, for every id field.
Test (preprocess, event_id_length_limit)
{
    static const char *fields[] = { "event_id", "user_id", "item_id", "session" };
    char at[300], over[300];
    memset (at, 'a', s_lim.max_id_len);
    at[s_lim.max_id_len] = 0;
    memset (over, 'a', s_lim.max_id_len + 1);
    over[s_lim.max_id_len + 1] = 0;
    for (size_t f = 0; f < 4; f++)
        for (int longer = 0; longer < 2; longer++) {
            event_case_t tc = { fields[f], .type = VIEW };
            const char *id = longer ? over : at;
            if (f == 0)
                tc.event_id = id;
            else if (f == 1)
                tc.user_id = id;
            else if (f == 2)
                tc.item_id = id;
            else
                tc.session = id;
            Strata__V1__Event in, out;
            s_make_event (&tc, &in);
            const char *reason = preprocess_event (&in, &s_lim, s_arena, &out);
            if (longer) {
                cr_assert_not_null (reason, "%s of %zu bytes accepted", fields[f], strlen (id));
                cr_assert_str_eq (reason, "id too long", "%s", fields[f]);
            }
            else
                cr_assert_null (reason, "%s of %zu bytes: %s", fields[f], strlen (id), reason);
        }
}

Test (preprocess, event_query_cut_on_character_boundary)
{
    s_lim.max_text_len = 10;
    //  Four 3-byte characters (12 bytes): cut at 10 falls inside the fourth.
    event_case_t tc = { "long query", .type = SEARCH, .item_id = "", .query = "保湿精华" };
    Strata__V1__Event in, out;
    s_make_event (&tc, &in);
    cr_assert_null (preprocess_event (&in, &s_lim, s_arena, &out));
    cr_assert_str_eq (out.query, "保湿精");
    cr_assert (util_utf8_valid (out.query, strlen (out.query)));
}

// ---------------------------------------------------------------- items

//  A valid item; tests change what they need.
static void
s_make_item (Strata__V1__Item *it)
{
    strata__v1__item__init (it);
    it->item_id = "sku-1";
    it->title = "Vitamin C Serum";
    it->brand = "Acme";
    it->updated_ms = NOW_MS;
}

static bool
s_has_token (const Strata__V1__Item *it, const char *tok)
{
    for (size_t i = 0; i < it->n_tokens; i++)
        if (!strcmp (it->tokens[i], tok))
            return true;
    return false;
}

Test (preprocess, item_valid)
{
    Strata__V1__Item in, out;
    s_make_item (&in);
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_str_eq (out.item_id, "sku-1");
    cr_assert_str_eq (out.title, "Vitamin C Serum");
    cr_assert_str_eq (out.brand, "acme");
    cr_assert_eq (out.n_category, 0);
    cr_assert_eq (out.has_price, false);
    cr_assert_eq (out.n_attributes, 0);
    cr_assert_eq (out.updated_ms, NOW_MS);
    cr_assert_str_eq (out.price_text, "");
    //  Title and brand tokens, stemmed, in order, without repeats.
    static const char *want[] = { "vitamin", "c", "serum", "acme" };
    cr_assert_eq (out.n_tokens, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq (out.tokens[i], want[i]);
}

typedef struct {
    const char *label;
    const char *title;
    size_t max_text_len;
    const char *want;
} title_case_t;

static const title_case_t s_title_cases[] = {
    { "squeezed", "  Vitamin   C\tSerum \n", 2048, "Vitamin C Serum" },
    { "empty title", "", 2048, "" },
    { "exactly at limit", "abcdefghij", 10, "abcdefghij" },
    { "one over limit", "abcdefghijk", 10, "abcdefghij" },
    { "cut inside 2-byte", "abcdefghi\xc3\xa9", 10, "abcdefghi" },
    { "cut after 2-byte", "abcdefgh\xc3\xa9xyz", 10, "abcdefgh\xc3\xa9" },
    { "cut inside 3-byte", "保湿精华液", 10, "保湿精" },
    { "cut inside 4-byte", "ab\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 9, "ab\xf0\x9f\x98\x80" },
    { "squeeze before cut", "a     b     c     d", 5, "a b c" },
};

Test (preprocess, item_title_table)
{
    for (size_t c = 0; c < sizeof s_title_cases / sizeof s_title_cases[0]; c++) {
        const title_case_t *tc = &s_title_cases[c];
        s_lim.max_text_len = tc->max_text_len;
        Strata__V1__Item in, out;
        s_make_item (&in);
        in.title = (char *) tc->title;
        cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out), "%s", tc->label);
        cr_assert_str_eq (out.title, tc->want, "%s", tc->label);
        cr_assert_leq (strlen (out.title), tc->max_text_len, "%s", tc->label);
        cr_assert (util_utf8_valid (out.title, strlen (out.title)), "%s", tc->label);
    }
}

Test (preprocess, item_brand_folded)
{
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.brand = "  ACME   Labs\t";
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_str_eq (out.brand, "acme labs");
    cr_assert (s_has_token (&out, "acme"));
    cr_assert (s_has_token (&out, "lab"), "brand tokens are stemmed like the title");
}

Test (preprocess, item_category_split)
{
    char *cat[1] = { "Beauty > Skin Care >  Face" };
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.n_category = 1;
    in.category = cat;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_eq (out.n_category, 3);
    cr_assert_str_eq (out.category[0], "beauty");
    cr_assert_str_eq (out.category[1], "skin care");
    cr_assert_str_eq (out.category[2], "face");
}

Test (preprocess, item_category_split_drops_empty_levels)
{
    char *cat[1] = { " > Home >> Garden > " };
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.n_category = 1;
    in.category = cat;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_eq (out.n_category, 2);
    cr_assert_str_eq (out.category[0], "home");
    cr_assert_str_eq (out.category[1], "garden");
}

Test (preprocess, item_category_elements)
{
    char *cat[4] = { "Beauty", "  Skin   Care ", "", "FACE" };
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.n_category = 4;
    in.category = cat;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_eq (out.n_category, 3, "the empty element is dropped");
    cr_assert_str_eq (out.category[0], "beauty");
    cr_assert_str_eq (out.category[1], "skin care");
    cr_assert_str_eq (out.category[2], "face");
}

Test (preprocess, item_single_category_without_separator)
{
    char *cat[1] = { " Toys " };
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.n_category = 1;
    in.category = cat;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_eq (out.n_category, 1);
    cr_assert_str_eq (out.category[0], "toys");
}

typedef struct {
    const char *label;
    bool has_price;
    double price;
    const char *price_text;
    const char *reason;   // NULL: accepted
    bool want_has;
    double want;
} item_price_case_t;

static const item_price_case_t s_item_price_cases[] = {
    { "no price", false, 0, "", NULL, false, 0 },
    { "number", true, 12.5, "", NULL, true, 12.5 },
    { "zero is a price", true, 0, "", NULL, true, 0 },
    { "number wins over text", true, 7, "abc", NULL, true, 7 },
    { "text dollars", false, 0, "$1,299.00", NULL, true, 1299.0 },
    { "text decimal comma", false, 0, "3,50", NULL, true, 3.5 },
    { "text currency code", false, 0, "EUR 12", NULL, true, 12 },
    { "negative number", true, -1, "", "invalid price", false, 0 },
    { "NaN number", true, NAN, "", "invalid price", false, 0 },
    { "infinite number", true, INFINITY, "", "invalid price", false, 0 },
    { "text junk", false, 0, "abc", "invalid price", false, 0 },
    { "text negative", false, 0, "-5", "invalid price", false, 0 },
    { "text two dots", false, 0, "1.2.3", "invalid price", false, 0 },
};

Test (preprocess, item_price_table)
{
    for (size_t c = 0; c < sizeof s_item_price_cases / sizeof s_item_price_cases[0]; c++) {
        const item_price_case_t *tc = &s_item_price_cases[c];
        Strata__V1__Item in, out;
        s_make_item (&in);
        in.has_price = tc->has_price;
        in.price = tc->price;
        in.price_text = (char *) tc->price_text;
        const char *reason = preprocess_item (&in, &s_lim, s_arena, &out);
        if (tc->reason) {
            cr_assert_not_null (reason, "%s: accepted", tc->label);
            cr_assert_str_eq (reason, tc->reason, "%s", tc->label);
            continue;
        }
        cr_assert_null (reason, "%s: %s", tc->label, reason);
        cr_assert_eq (out.has_price, tc->want_has, "%s", tc->label);
        cr_assert_float_eq (out.price, tc->want, 1e-9, "%s", tc->label);
        cr_assert_str_eq (out.price_text, "", "%s: text is consumed", tc->label);
    }
}

Test (preprocess, item_attributes)
{
    Strata__V1__Attribute a[5];
    Strata__V1__Attribute *ap[5];
    static const char *kv[5][2] = {
        { " Color ", " Deep   Red " }, { "SIZE", "50ml" }, { "", "orphan value" },
        { "empty", "   " },           { "Made In", "France" },
    };
    for (int i = 0; i < 5; i++) {
        strata__v1__attribute__init (&a[i]);
        a[i].key = (char *) kv[i][0];
        a[i].value = (char *) kv[i][1];
        ap[i] = &a[i];
    }
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.n_attributes = 5;
    in.attributes = ap;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    cr_assert_eq (out.n_attributes, 3, "empty keys and values are dropped");
    cr_assert_str_eq (out.attributes[0]->key, "color");
    cr_assert_str_eq (out.attributes[0]->value, "Deep Red", "values keep their case");
    cr_assert_str_eq (out.attributes[1]->key, "size");
    cr_assert_str_eq (out.attributes[1]->value, "50ml");
    cr_assert_str_eq (out.attributes[2]->key, "made in");
    cr_assert_str_eq (out.attributes[2]->value, "France");
}

Test (preprocess, item_tokens)
{
    typedef struct {
        const char *title, *brand;
        const char *want[8];
    } token_case_t;
    static const token_case_t cases[] = {
        { "Hydrating Serums for Dry Skin", "ACME", { "hydrating", "serum", "for", "dry", "skin", "acme" } },
        { "Serum serum SERUMS", "", { "serum" } },
        { "保湿精华 Serum", "Acme", { "保湿", "湿精", "精华", "serum", "acme" } },
        { "Brushes, 3-pack", "Brush Co", { "brush", "3", "pack", "co" } },
        { "", "", { NULL } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Strata__V1__Item in, out;
        s_make_item (&in);
        in.title = (char *) cases[c].title;
        in.brand = (char *) cases[c].brand;
        cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
        size_t n = 0;
        while (n < 8 && cases[c].want[n])
            n++;
        cr_assert_eq (out.n_tokens, n, "'%s' + '%s': %zu tokens", cases[c].title, cases[c].brand, out.n_tokens);
        for (size_t i = 0; i < n; i++)
            cr_assert_str_eq (out.tokens[i], cases[c].want[i], "'%s' token %zu", cases[c].title, i);
    }
}

typedef struct {
    const char *label;
    const char *item_id, *title, *brand, *category, *attr_key, *attr_value;
    const char *reason;
} item_reject_case_t;

static const item_reject_case_t s_item_rejects[] = {
    { "empty item_id", .item_id = "", .reason = "empty item_id" },
    { "blank item_id", .item_id = "   ", .reason = "empty item_id" },
    { "invalid UTF-8 item_id", .item_id = "sku\xff", .reason = "invalid UTF-8" },
    { "invalid UTF-8 title", .title = "Caf\xe9", .reason = "invalid UTF-8" },
    { "invalid UTF-8 brand", .brand = "\xc0\x80", .reason = "invalid UTF-8" },
    { "invalid UTF-8 category path", .category = "a > \xff", .reason = "invalid UTF-8" },
    { "invalid UTF-8 attribute key", .attr_key = "k\x80", .reason = "invalid UTF-8" },
    { "invalid UTF-8 attribute value", .attr_value = "\xed\xa0\x80", .reason = "invalid UTF-8" },
};

Test (preprocess, item_reject_table)
{
    for (size_t c = 0; c < sizeof s_item_rejects / sizeof s_item_rejects[0]; c++) {
        const item_reject_case_t *tc = &s_item_rejects[c];
        Strata__V1__Item in, out;
        s_make_item (&in);
        if (tc->item_id)
            in.item_id = (char *) tc->item_id;
        if (tc->title)
            in.title = (char *) tc->title;
        if (tc->brand)
            in.brand = (char *) tc->brand;
        char *cat[1] = { (char *) tc->category };
        if (tc->category) {
            in.n_category = 1;
            in.category = cat;
        }
        Strata__V1__Attribute attr = STRATA__V1__ATTRIBUTE__INIT;
        Strata__V1__Attribute *ap[1] = { &attr };
        if (tc->attr_key || tc->attr_value) {
            attr.key = (char *) (tc->attr_key ? tc->attr_key : "k");
            attr.value = (char *) (tc->attr_value ? tc->attr_value : "v");
            in.n_attributes = 1;
            in.attributes = ap;
        }
        const char *reason = preprocess_item (&in, &s_lim, s_arena, &out);
        cr_assert_not_null (reason, "%s: accepted", tc->label);
        cr_assert_str_eq (reason, tc->reason, "%s", tc->label);
    }
}

Test (preprocess, item_id_length_limit)
{
    char id[300];
    memset (id, 'x', sizeof id);
    id[s_lim.max_id_len] = 0;
    Strata__V1__Item in, out;
    s_make_item (&in);
    in.item_id = id;
    cr_assert_null (preprocess_item (&in, &s_lim, s_arena, &out));
    id[s_lim.max_id_len] = 'x';
    id[s_lim.max_id_len + 1] = 0;
    const char *reason = preprocess_item (&in, &s_lim, s_arena, &out);
    cr_assert_not_null (reason);
    cr_assert_str_eq (reason, "id too long");
}

// ---------------------------------------------------------------- prices

typedef struct {
    const char *text;
    int rc;
    double value;
} price_case_t;

static const price_case_t s_price_cases[] = {
    //  Valid.
    { "12.5", 0, 12.5 },
    { "0", 0, 0 },
    { "$1,299.00", 0, 1299.0 },
    { "1,299", 0, 1299 },
    { "1,299,000.50", 0, 1299000.5 },
    { "3,50", 0, 3.5 },
    { "0,99", 0, 0.99 },
    { "EUR 12", 0, 12 },
    { "EUR 3,50", 0, 3.5 },
    { "3,50 EUR", 0, 3.5 },
    { "12 USD", 0, 12 },
    { " 7 ", 0, 7 },
    { "\xe2\x82\xac" "9.99", 0, 9.99 },   // €9.99
    { "\xc2\xa3" "5", 0, 5 },              // £5
    //  Junk.
    { "", STRATA_EINVAL, 0 },
    { "   ", STRATA_EINVAL, 0 },
    { "abc", STRATA_EINVAL, 0 },
    { "$", STRATA_EINVAL, 0 },
    { "-5", STRATA_EINVAL, 0 },
    { "$-5.00", STRATA_EINVAL, 0 },
    { "1.2.3", STRATA_EINVAL, 0 },
    { "1-2", STRATA_EINVAL, 0 },
    { "12#", STRATA_EINVAL, 0 },
    { "5%", STRATA_EINVAL, 0 },
    { "(5)", STRATA_EINVAL, 0 },
    { "nan", STRATA_EINVAL, 0 },
    { "inf", STRATA_EINVAL, 0 },
    { ".", STRATA_EINVAL, 0 },
    { "1111111111111111111111111111111111111111111111111111111111111111111111", STRATA_EINVAL, 0 },
};

Test (preprocess, parse_price_table)
{
    for (size_t c = 0; c < sizeof s_price_cases / sizeof s_price_cases[0]; c++) {
        const price_case_t *tc = &s_price_cases[c];
        double v = -12345;
        int rc = preprocess_parse_price (tc->text, &v);
        cr_assert_eq (rc, tc->rc, "'%s': rc %d (value %g)", tc->text, rc, v);
        if (rc == 0)
            cr_assert_float_eq (v, tc->value, 1e-9, "'%s' gave %g", tc->text, v);
    }
}

// ---------------------------------------------------------------- batches

//  Events and items built in the arena, for batches.
static Strata__V1__Event *
s_ev (const char *event_id, const char *user_id, const char *item_id)
{
    Strata__V1__Event *e = arena_alloc (s_arena, sizeof *e);
    strata__v1__event__init (e);
    e->event_id = arena_strdup (s_arena, event_id);
    e->user_id = arena_strdup (s_arena, user_id);
    e->item_id = arena_strdup (s_arena, item_id);
    e->type = VIEW;
    e->timestamp_ms = NOW_MS;
    return e;
}

static Strata__V1__Item *
s_it (const char *item_id, const char *title)
{
    Strata__V1__Item *it = arena_alloc (s_arena, sizeof *it);
    strata__v1__item__init (it);
    it->item_id = arena_strdup (s_arena, item_id);
    it->title = arena_strdup (s_arena, title);
    return it;
}

static Strata__V1__RawRecord *
s_raw (const char *source, uint64_t line, const char *text, const char *reason)
{
    Strata__V1__RawRecord *r = arena_alloc (s_arena, sizeof *r);
    strata__v1__raw_record__init (r);
    r->source = arena_strdup (s_arena, source);
    r->line = line;
    r->text = arena_strdup (s_arena, text);
    r->reason = arena_strdup (s_arena, reason);
    return r;
}

static size_t
s_count_kind (const Strata__V1__JobResult *res, const char *kind)
{
    size_t n = 0;
    for (size_t i = 0; i < res->n_rejects; i++)
        n += !strcmp (res->rejects[i]->kind, kind);
    return n;
}

static void
s_check_rejects_valid (const Strata__V1__JobResult *res, const char *batch_id)
{
    for (size_t i = 0; i < res->n_rejects; i++) {
        const Strata__V1__Reject *r = res->rejects[i];
        cr_assert_not_null (r);
        cr_assert_str_eq (r->batch_id, batch_id, "reject %zu", i);
        cr_assert (util_utf8_valid (r->text, strlen (r->text)), "reject %zu text is valid UTF-8", i);
        cr_assert (util_utf8_valid (r->id, strlen (r->id)), "reject %zu id is valid UTF-8", i);
        cr_assert (util_utf8_valid (r->reason, strlen (r->reason)), "reject %zu reason is valid UTF-8", i);
        cr_assert (*r->reason, "reject %zu has a reason", i);
    }
}

Test (preprocess, batch_event_dedupe)
{
    Strata__V1__Event *ev[] = {
        s_ev ("e1", "u1", "i1"), s_ev ("e2", "u1", "i2"), s_ev ("e1", "u2", "i9"),   // e1 again
        s_ev ("e3", "", "i3"),                                                          // rejected
        s_ev (" e2 ", "u3", "i3"),                                                      // e2 after trimming
        s_ev ("e4", "u4", "i4"),
    };
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "batch-1";
    batch.n_events = sizeof ev / sizeof ev[0];
    batch.events = ev;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_str_eq (res.batch_id, "batch-1");
    cr_assert_eq (res.n_events, 3);
    cr_assert_str_eq (res.events[0]->event_id, "e1");
    cr_assert_str_eq (res.events[0]->user_id, "u1", "the first copy is kept");
    cr_assert_str_eq (res.events[1]->event_id, "e2");
    cr_assert_str_eq (res.events[2]->event_id, "e4");
    cr_assert_eq (res.in_batch_duplicates, 2);
    cr_assert_eq (res.n_rejects, 1);
    cr_assert_str_eq (res.rejects[0]->kind, "event");
    cr_assert_str_eq (res.rejects[0]->id, "e3");
    cr_assert_str_eq (res.rejects[0]->reason, "empty user_id");
    cr_assert (strstr (res.rejects[0]->text, "event_id=e3"), "%s", res.rejects[0]->text);
    cr_assert_eq (res.n_events + s_count_kind (&res, "event") + res.in_batch_duplicates, batch.n_events);
    s_check_rejects_valid (&res, "batch-1");
}

Test (preprocess, batch_items_last_wins)
{
    Strata__V1__Item *it[] = {
        s_it ("sku-1", "Old Title"), s_it ("sku-2", "Brush"), s_it ("sku-1", "New Title"),
        s_it ("", "No Id"), s_it ("sku-3", "Comb"),
    };
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "batch-2";
    batch.n_items = sizeof it / sizeof it[0];
    batch.items = it;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_eq (res.n_items, 3);
    size_t found = 0;
    for (size_t i = 0; i < res.n_items; i++)
        if (!strcmp (res.items[i]->item_id, "sku-1")) {
            cr_assert_str_eq (res.items[i]->title, "New Title");
            found++;
        }
    cr_assert_eq (found, 1, "sku-1 appears once");
    cr_assert_eq (res.n_rejects, 1);
    cr_assert_str_eq (res.rejects[0]->kind, "item");
    cr_assert_str_eq (res.rejects[0]->reason, "empty item_id");
    cr_assert (strstr (res.rejects[0]->text, "No Id"), "%s", res.rejects[0]->text);
    cr_assert_eq (res.in_batch_duplicates, 0, "item repeats are not event duplicates");
    s_check_rejects_valid (&res, "batch-2");
}

Test (preprocess, batch_raw_records)
{
    Strata__V1__RawRecord *raw[] = {
        s_raw ("events.jsonl", 7, "{\"event_id\": ", "invalid JSON: premature end of input"),
        s_raw ("items.csv", 12, "a,\"b", ""),
        s_raw ("latin1.csv", 3, "Caf\xe9 \xff\xfe", "malformed CSV quoting"),
    };
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "batch-3";
    batch.n_raw = 3;
    batch.raw = raw;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_eq (res.n_events, 0);
    cr_assert_eq (res.n_items, 0);
    cr_assert_eq (res.n_rejects, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq (res.rejects[i]->kind, "raw");
    cr_assert_str_eq (res.rejects[0]->reason, "invalid JSON: premature end of input");
    cr_assert_eq (res.rejects[0]->line, 7);
    cr_assert (strstr (res.rejects[0]->text, "events.jsonl:7: {\"event_id\": "), "%s", res.rejects[0]->text);
    cr_assert_str_eq (res.rejects[1]->reason, "unparseable record", "an empty reason gets a default");
    cr_assert_eq (res.rejects[1]->line, 12);
    cr_assert_str_eq (res.rejects[2]->reason, "malformed CSV quoting");
    cr_assert (strstr (res.rejects[2]->text, "latin1.csv:3: Caf?"), "%s", res.rejects[2]->text);
    s_check_rejects_valid (&res, "batch-3");
}

Test (preprocess, batch_reject_text_valid_utf8)
{
    //  Invalid bytes in ids and in a long title; the reject copies must still be clean.
    char title[1200];
    memset (title, 'T', sizeof title - 1);
    title[sizeof title - 1] = 0;
    title[100] = (char) 0xC3;   // a lead byte followed by 'T'
    Strata__V1__Event *ev[] = { s_ev ("bad\xff" "id", "u\xc3", "i1"), s_ev ("e\xe4\xbf", "u", "i") };
    Strata__V1__Item *it[] = { s_it ("sku\x80", title) };
    //  A long raw line with an invalid byte inside the part that is kept.
    title[300] = (char) 0xFF;
    Strata__V1__RawRecord *raw[] = { s_raw ("big.jsonl", 9, title, "invalid JSON") };
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "batch-4";
    batch.n_events = 2;
    batch.events = ev;
    batch.n_items = 1;
    batch.items = it;
    batch.n_raw = 1;
    batch.raw = raw;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_eq (res.n_rejects, 4);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq (res.rejects[i]->reason, "invalid UTF-8");
    cr_assert_str_eq (res.rejects[0]->id, "bad?id");
    cr_assert_str_eq (res.rejects[1]->id, "e??");
    cr_assert_str_eq (res.rejects[2]->id, "sku?");
    cr_assert_str_eq (res.rejects[3]->kind, "raw");
    size_t len = strlen (res.rejects[3]->text);
    cr_assert_gt (len, 300, "the start of a long raw line is kept");
    cr_assert_leq (len, 512, "reject text is bounded");
    cr_assert (strchr (res.rejects[3]->text, '?'), "the invalid byte is replaced");
    s_check_rejects_valid (&res, "batch-4");
}

Test (preprocess, batch_counts_add_up)
{
    //  A larger mixed batch: 300 events over 120 ids, every seventh one invalid.
    enum { N = 300 };
    Strata__V1__Event *ev[N];
    size_t invalid = 0;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf (id, sizeof id, "ev-%d", i % 120);
        ev[i] = s_ev (id, i % 7 == 3 ? "" : "user", "item");
    }
    for (int i = 0; i < N; i++)
        invalid += !*ev[i]->user_id;
    Strata__V1__RawRecord *raw[] = { s_raw ("f", 1, "x", "bad") };
    Strata__V1__Item *it[] = { s_it ("a", "A"), s_it ("b", "B"), s_it ("a", "A2"), s_it ("c", "C") };
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "batch-5";
    batch.n_events = N;
    batch.events = ev;
    batch.n_items = 4;
    batch.items = it;
    batch.n_raw = 1;
    batch.raw = raw;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_eq (s_count_kind (&res, "event"), invalid);
    cr_assert_eq (s_count_kind (&res, "raw"), 1);
    cr_assert_eq (s_count_kind (&res, "item"), 0);
    cr_assert_eq (res.n_events + invalid + res.in_batch_duplicates, N);
    cr_assert_eq (res.n_items, 3);
    //  Every accepted event id is distinct.
    for (size_t i = 0; i < res.n_events; i++)
        for (size_t j = i + 1; j < res.n_events; j++)
            cr_assert_str_neq (res.events[i]->event_id, res.events[j]->event_id);
    //  Ids whose every copy was invalid are absent, the rest are present once.
    size_t ids_with_valid_copy = 0;
    for (int id = 0; id < 120; id++) {
        bool any = false;
        for (int i = id; i < N; i += 120)
            any = any || i % 7 != 3;
        ids_with_valid_copy += any;
    }
    cr_assert_eq (res.n_events, ids_with_valid_copy);
    s_check_rejects_valid (&res, "batch-5");
}

Test (preprocess, batch_empty)
{
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "empty";
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    cr_assert_eq (preprocess_batch (&batch, &s_lim, s_arena, &res), 0);
    cr_assert_str_eq (res.batch_id, "empty");
    cr_assert_eq (res.n_events + res.n_items + res.n_rejects + res.in_batch_duplicates, 0);
}

//  What a batch's cleaning answers: bad records are rejects, never an error; only a
//  batch the arena cannot hold fails, with STRATA_ENOMEM (counts that no arena can
//  hold stand for memory running out: no record past them is read).
typedef struct {
    const char *what;
    size_t n_events, n_items, n_raw;   // TOO_MANY: more than memory holds
    int rc;
} batch_case_t;

#define TOO_MANY (SIZE_MAX / 8)

static const batch_case_t s_batch_cases[] = {
    { "valid records", 2, 2, 0, STRATA_OK },
    { "nothing in it", 0, 0, 0, STRATA_OK },
    { "every record bad", 2, 2, 1, STRATA_OK },
    { "more events than memory holds", TOO_MANY, 0, 0, STRATA_ENOMEM },
    { "more items than memory holds", 0, TOO_MANY, 0, STRATA_ENOMEM },
    { "more raw records than memory holds", 0, 0, TOO_MANY, STRATA_ENOMEM },
};

Test (preprocess, batch_codes_table)
{
    for (size_t c = 0; c < sizeof s_batch_cases / sizeof s_batch_cases[0]; c++) {
        const batch_case_t *tc = &s_batch_cases[c];
        bool bad = !strcmp (tc->what, "every record bad");
        Strata__V1__Event *ev[] = { s_ev ("e1", "u1", "i1"), s_ev ("e2", bad ? "" : "u2", "i2") };
        Strata__V1__Item *it[] = { s_it (bad ? "" : "sku-1", "Brush"), s_it (bad ? "" : "sku-2", "Comb") };
        Strata__V1__RawRecord raw = STRATA__V1__RAW_RECORD__INIT, *rp[] = { &raw };
        if (bad)
            ev[0]->timestamp_ms = 0;
        Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
        batch.batch_id = "codes";
        batch.n_events = tc->n_events;
        batch.events = ev;
        batch.n_items = tc->n_items;
        batch.items = it;
        batch.n_raw = tc->n_raw;
        batch.raw = rp;
        Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
        int rc = preprocess_batch (&batch, &s_lim, s_arena, &res);
        cr_expect_eq (rc, tc->rc, "%s: %s, not %s", tc->what, strata_strerror (rc), strata_strerror (tc->rc));
        if (rc == 0)
            cr_expect_eq (res.n_events + res.n_items + res.n_rejects, tc->n_events + tc->n_items + tc->n_raw,
                          "%s: every record is kept or rejected", tc->what);
        if (bad && rc == 0)
            cr_expect_eq (res.n_rejects, 5, "every record bad: all rejected");
        arena_reset (s_arena);
    }
}
