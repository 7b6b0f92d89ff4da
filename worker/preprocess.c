/*  preprocess: see preprocess.h. */
#include "preprocess.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tokenize.h"
#include "util.h"

#define MAX_TOKENS 64
#define REJECT_TEXT_MAX 512

void
preprocess_limits_default (preprocess_limits_t *lim)
{
    lim->max_id_len = 256;
    lim->max_text_len = 2048;
    lim->min_timestamp_ms = 788918400000LL;   // 1995-01-01T00:00:00Z: before any web shop
    lim->max_future_ms = 86400000LL;
    lim->now_ms = 0;
}

static const struct {
    const char *name;
    int type;
} s_type_names[] = {
    { "view", STRATA__V1__EVENT_TYPE__VIEW },         { "pageview", STRATA__V1__EVENT_TYPE__VIEW },
    { "page_view", STRATA__V1__EVENT_TYPE__VIEW },    { "impression", STRATA__V1__EVENT_TYPE__VIEW },
    { "click", STRATA__V1__EVENT_TYPE__CLICK },       { "cart", STRATA__V1__EVENT_TYPE__CART },
    { "add_to_cart", STRATA__V1__EVENT_TYPE__CART },  { "addtocart", STRATA__V1__EVENT_TYPE__CART },
    { "add-to-cart", STRATA__V1__EVENT_TYPE__CART },  { "purchase", STRATA__V1__EVENT_TYPE__PURCHASE },
    { "buy", STRATA__V1__EVENT_TYPE__PURCHASE },      { "order", STRATA__V1__EVENT_TYPE__PURCHASE },
    { "transaction", STRATA__V1__EVENT_TYPE__PURCHASE }, { "search", STRATA__V1__EVENT_TYPE__SEARCH },
    { "query", STRATA__V1__EVENT_TYPE__SEARCH },      { "rate", STRATA__V1__EVENT_TYPE__RATE },
    { "rating", STRATA__V1__EVENT_TYPE__RATE },       { "review", STRATA__V1__EVENT_TYPE__RATE },
};

int
preprocess_event_type (const char *name)
{
    char buf[32];
    size_t n = 0;
    while (*name && isspace ((unsigned char) *name))
        name++;
    for (; *name && n < sizeof buf - 1; name++)
        buf[n++] = (char) tolower ((unsigned char) *name);
    while (n && isspace ((unsigned char) buf[n - 1]))
        n--;
    buf[n] = 0;
    for (size_t i = 0; i < sizeof s_type_names / sizeof s_type_names[0]; i++)
        if (!strcmp (buf, s_type_names[i].name))
            return s_type_names[i].type;
    return 0;
}

//  True when the digit groups between separators sep in num[0..len) are thousands
//  groups: 1-3 digits first, then exactly 3.
static bool
s_thousands (const char *num, size_t len, char sep)
{
    size_t group = 0;
    bool first = true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || num[i] == sep) {
            if (first ? (group == 0 || group > 3) : group != 3)
                return false;
            first = false;
            group = 0;
        }
        else
            group++;
    }
    return true;
}

int
preprocess_parse_price (const char *text, double *out)
{
    //  Shape: [currency text] NUMBER [currency text]. Currency text is letters, spaces,
    //  '$' and non-ASCII symbols; anything with two numbers ("2 for $5") is refused.
    const char *p = text;
    while (*p && !isdigit ((unsigned char) *p) && !(*p == '.' && isdigit ((unsigned char) p[1]))) {
        unsigned char c = (unsigned char) *p;
        if (!(isalpha (c) || isspace (c) || c == '$' || c >= 0x80))
            return STRATA_EINVAL;   // '-' (negative), '(' and other symbols are not prices
        p++;
    }
    const char *num = p;
    while (*p && (isdigit ((unsigned char) *p) || *p == '.' || *p == ','))
        p++;
    size_t len = (size_t) (p - num);
    for (; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (!(isalpha (c) || isspace (c) || c == '$' || c >= 0x80))
            return STRATA_EINVAL;
    }
    if (len == 0 || len > 40 || num[len - 1] == '.' || num[len - 1] == ',')
        return STRATA_EINVAL;
    //  The rest of the text is free of digits; now the separators.
    const char *last_dot = NULL, *last_comma = NULL;
    int dots = 0, commas = 0;
    for (size_t i = 0; i < len; i++) {
        if (num[i] == '.') {
            dots++;
            last_dot = num + i;
        }
        else if (num[i] == ',') {
            commas++;
            last_comma = num + i;
        }
    }
    char decimal = 0, thousands = 0;
    if (dots && commas) {
        decimal = last_dot > last_comma ? '.' : ',';
        thousands = decimal == '.' ? ',' : '.';
        if ((decimal == '.' ? dots : commas) != 1)
            return STRATA_EINVAL;
    }
    else if (commas == 1 && len - (size_t) (last_comma - num) - 1 <= 2)
        decimal = ',';   // "3,50"
    else if (commas)
        thousands = ',';
    else if (dots == 1)
        decimal = '.';
    else if (dots)
        thousands = '.';   // "1.234.567"
    const char *dec_at = decimal == '.' ? last_dot : decimal == ',' ? last_comma : NULL;
    size_t int_len = dec_at ? (size_t) (dec_at - num) : len;
    if (thousands && !s_thousands (num, int_len, thousands))
        return STRATA_EINVAL;
    char buf[48];
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (num + i == dec_at)
            buf[w++] = '.';
        else if (isdigit ((unsigned char) num[i]))
            buf[w++] = num[i];
    }
    buf[w] = 0;
    char *end;
    double v = strtod (buf, &end);
    if (end == buf || *end || !isfinite (v) || v < 0)
        return STRATA_EINVAL;
    *out = v;
    return 0;
}

//  A cleaned copy of s: whitespace squeezed (or only trimmed), NULL if invalid UTF-8.
static char *
s_clean (arena_t *arena, const char *s, bool squeeze)
{
    if (!s)
        s = "";
    size_t len = strlen (s);
    if (!util_utf8_valid (s, len))
        return NULL;
    char *c = arena_strndup (arena, s, len);
    if (!c)
        return NULL;
    if (squeeze)
        util_squeeze (c);
    else {
        size_t start = 0;
        while (c[start] && isspace ((unsigned char) c[start]))
            start++;
        size_t end = strlen (c);
        while (end > start && isspace ((unsigned char) c[end - 1]))
            end--;
        c[end] = 0;
        if (start)
            memmove (c, c + start, end - start + 1);
    }
    return c;
}

//  Cuts s at most max bytes, on a UTF-8 character boundary.
static void
s_cut (char *s, size_t max)
{
    size_t len = strlen (s);
    if (len <= max)
        return;
    size_t n = max;
    while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
        n--;
    s[n] = 0;
}

const char *
preprocess_event (const Strata__V1__Event *in, const preprocess_limits_t *lim, arena_t *arena,
                  Strata__V1__Event *out)
{
    strata__v1__event__init (out);
    char *event_id = s_clean (arena, in->event_id, false);
    char *user_id = s_clean (arena, in->user_id, false);
    char *item_id = s_clean (arena, in->item_id, false);
    char *session = s_clean (arena, in->session, false);
    char *query = s_clean (arena, in->query, true);
    char *type_name = s_clean (arena, in->type_name, false);
    if (!event_id || !user_id || !item_id || !session || !query || !type_name)
        return "invalid UTF-8";
    if (!*event_id)
        return "empty event_id";
    if (!*user_id)
        return "empty user_id";
    if (strlen (event_id) > lim->max_id_len || strlen (user_id) > lim->max_id_len
        || strlen (item_id) > lim->max_id_len || strlen (session) > lim->max_id_len)
        return "id too long";

    int type = (int) in->type;
    if (type == 0) {
        if (!*type_name)
            return "missing event type";
        type = preprocess_event_type (type_name);
        if (type == 0) {
            s_cut (type_name, 32);
            const char *r = arena_printf (arena, "unknown event type '%s'", type_name);
            return r ? r : "unknown event type";
        }
    }
    else if (type < STRATA__V1__EVENT_TYPE__VIEW || type > STRATA__V1__EVENT_TYPE__RATE)
    {
        const char *r = arena_printf (arena, "unknown event type %d", type);
        return r ? r : "unknown event type";
    }

    int64_t ts = in->timestamp_ms;
    if (ts == 0)
        return "missing timestamp";
    if (ts > 0 && ts < 100000000000LL)
        ts *= 1000;   // seconds
    int64_t now = lim->now_ms ? lim->now_ms : util_now_ms ();
    if (ts < lim->min_timestamp_ms || ts > now + lim->max_future_ms)
        return "timestamp out of range";

    if (type == STRATA__V1__EVENT_TYPE__SEARCH) {
        if (!*query)
            return "search without query";
    }
    else if (!*item_id)
        return "empty item_id";
    if (strlen (query) > lim->max_text_len)
        s_cut (query, lim->max_text_len);

    double value = in->value;
    if (!isfinite (value))
        return "invalid value";
    if (type == STRATA__V1__EVENT_TYPE__RATE) {
        if (value < 0 || value > 10)
            return "rating out of range";
    }
    else if (value < 0)
        return "invalid value";

    out->event_id = event_id;
    out->user_id = user_id;
    out->item_id = item_id;
    out->type = (Strata__V1__EventType) type;
    out->timestamp_ms = ts;
    out->query = query;
    out->value = value;
    out->session = session;
    out->type_name = "";
    return NULL;
}

typedef struct {
    arena_t *arena;
    char **tokens;
    size_t count;
} token_sink_t;

static void
s_add_token (const char *tok, size_t len, void *arg)
{
    token_sink_t *sink = arg;
    if (sink->count >= MAX_TOKENS)
        return;
    for (size_t i = 0; i < sink->count; i++)
        if (!strcmp (sink->tokens[i], tok))
            return;
    char *t = arena_strndup (sink->arena, tok, len);
    if (t)
        sink->tokens[sink->count++] = t;
}

const char *
preprocess_item (const Strata__V1__Item *in, const preprocess_limits_t *lim, arena_t *arena,
                 Strata__V1__Item *out)
{
    strata__v1__item__init (out);
    char *item_id = s_clean (arena, in->item_id, false);
    char *title = s_clean (arena, in->title, true);
    char *brand = s_clean (arena, in->brand, true);
    if (!item_id || !title || !brand)
        return "invalid UTF-8";
    if (!*item_id)
        return "empty item_id";
    if (strlen (item_id) > lim->max_id_len)
        return "id too long";
    s_cut (title, lim->max_text_len);
    s_cut (brand, lim->max_id_len);
    util_ascii_lower (brand);

    //  Category path: either given as elements, or one "a > b > c" string.
    size_t ncat = 0;
    char **cats = NULL;
    if (in->n_category == 1 && strchr (in->category[0] ? in->category[0] : "", '>')) {
        char *whole = s_clean (arena, in->category[0], true);
        if (!whole)
            return "invalid UTF-8";
        size_t parts = 1;
        for (char *p = whole; *p; p++)
            parts += *p == '>';
        cats = arena_calloc (arena, parts, sizeof *cats);
        char *save = NULL;
        for (char *tok = strtok_r (whole, ">", &save); tok && cats; tok = strtok_r (NULL, ">", &save)) {
            util_squeeze (tok);
            util_ascii_lower (tok);
            if (*tok)
                cats[ncat++] = tok;
        }
    }
    else if (in->n_category) {
        cats = arena_calloc (arena, in->n_category, sizeof *cats);
        for (size_t i = 0; i < in->n_category && cats; i++) {
            char *c = s_clean (arena, in->category[i], true);
            if (!c)
                return "invalid UTF-8";
            util_ascii_lower (c);
            s_cut (c, lim->max_id_len);
            if (*c)
                cats[ncat++] = c;
        }
    }

    double price = 0;
    bool has_price = false;
    if (in->has_price) {
        if (!isfinite (in->price) || in->price < 0)
            return "invalid price";
        price = in->price;
        has_price = true;
    }
    else if (in->price_text && *in->price_text) {
        if (preprocess_parse_price (in->price_text, &price) < 0)
            return "invalid price";
        has_price = true;
    }

    Strata__V1__Attribute **attrs = NULL;
    size_t nattr = 0;
    if (in->n_attributes) {
        attrs = arena_calloc (arena, in->n_attributes, sizeof *attrs);
        if (!attrs)
            return "out of memory";
        for (size_t i = 0; i < in->n_attributes; i++) {
            const Strata__V1__Attribute *a = in->attributes[i];
            char *k = s_clean (arena, a->key, true);
            char *v = s_clean (arena, a->value, true);
            if (!k || !v)
                return "invalid UTF-8";
            util_ascii_lower (k);
            s_cut (k, lim->max_id_len);
            s_cut (v, lim->max_text_len);
            if (!*k || !*v)
                continue;
            Strata__V1__Attribute *c = arena_alloc (arena, sizeof *c);
            if (!c)
                return "out of memory";
            strata__v1__attribute__init (c);
            c->key = k;
            c->value = v;
            attrs[nattr++] = c;
        }
    }

    token_sink_t sink = { arena, arena_calloc (arena, MAX_TOKENS, sizeof (char *)), 0 };
    if (sink.tokens) {
        tokenize (title, strlen (title), TOKENIZE_STEM, s_add_token, &sink);
        tokenize (brand, strlen (brand), TOKENIZE_STEM, s_add_token, &sink);
    }

    out->item_id = item_id;
    out->title = title;
    out->brand = brand;
    out->n_category = ncat;
    out->category = cats;
    out->price = price;
    out->has_price = has_price;
    out->price_text = "";
    out->n_attributes = nattr;
    out->attributes = attrs;
    out->updated_ms = in->updated_ms;
    out->n_tokens = sink.count;
    out->tokens = sink.tokens;
    return NULL;
}

//  Makes a printable, valid-UTF-8, bounded copy of a rejected record for the dead-letter
//  store: invalid bytes become '?'.
static char *
s_reject_text (arena_t *arena, const char *text)
{
    size_t len = strlen (text ? text : "");
    if (len > REJECT_TEXT_MAX)
        len = REJECT_TEXT_MAX;
    char *c = arena_strndup (arena, text ? text : "", len);
    if (!c)
        return NULL;
    for (size_t i = 0; i < len;) {
        unsigned char b = (unsigned char) c[i];
        size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
        if (i + n <= len && util_utf8_valid (c + i, n))
            i += n;
        else
            c[i++] = '?';
    }
    return c;
}

static Strata__V1__Reject *
s_reject (arena_t *arena, const char *kind, const char *id, const char *reason, const char *text,
          const char *batch_id, uint64_t line)
{
    Strata__V1__Reject *r = arena_alloc (arena, sizeof *r);
    if (!r)
        return NULL;
    strata__v1__reject__init (r);
    r->kind = (char *) kind;
    r->id = s_reject_text (arena, id ? id : "");
    r->reason = (char *) reason;
    r->text = s_reject_text (arena, text ? text : "");
    r->batch_id = s_reject_text (arena, batch_id ? batch_id : "");
    r->line = line;
    return r;
}

static char *
s_event_text (arena_t *arena, const Strata__V1__Event *e)
{
    return arena_printf (arena, "event_id=%.64s user_id=%.64s item_id=%.64s type=%d type_name=%.32s timestamp_ms=%lld",
                         e->event_id ? e->event_id : "", e->user_id ? e->user_id : "",
                         e->item_id ? e->item_id : "", (int) e->type, e->type_name ? e->type_name : "",
                         (long long) e->timestamp_ms);
}

//  Open-addressing set of strings for in-batch dedupe.
typedef struct {
    const char **slots;
    size_t mask;
} strset_t;

static bool
s_strset_add (strset_t *set, const char *s)
{
    size_t i = util_fnv1a64 (s, strlen (s)) & set->mask;
    while (set->slots[i]) {
        if (!strcmp (set->slots[i], s))
            return false;
        i = (i + 1) & set->mask;
    }
    set->slots[i] = s;
    return true;
}

static size_t
s_pow2_above (size_t n)
{
    size_t p = 16;
    while (p < n * 2)
        p <<= 1;
    return p;
}

int
preprocess_batch (const Strata__V1__EventBatch *batch, const preprocess_limits_t *lim, arena_t *arena,
                  Strata__V1__JobResult *out)
{
    out->batch_id = arena_strdup (arena, batch->batch_id ? batch->batch_id : "");
    size_t cap_rejects = batch->n_events + batch->n_items + batch->n_raw;
    out->events = arena_calloc (arena, batch->n_events + 1, sizeof *out->events);
    out->items = arena_calloc (arena, batch->n_items + 1, sizeof *out->items);
    out->rejects = arena_calloc (arena, cap_rejects + 1, sizeof *out->rejects);
    if (!out->batch_id || !out->events || !out->items || !out->rejects)
        return STRATA_ENOMEM;
    out->n_events = out->n_items = out->n_rejects = 0;
    out->in_batch_duplicates = 0;

    strset_t seen = { NULL, s_pow2_above (batch->n_events) - 1 };
    seen.slots = arena_calloc (arena, seen.mask + 1, sizeof *seen.slots);
    if (!seen.slots)
        return STRATA_ENOMEM;

    for (size_t i = 0; i < batch->n_events; i++) {
        Strata__V1__Event *e = arena_alloc (arena, sizeof *e);
        if (!e)
            return STRATA_ENOMEM;
        const char *reason = preprocess_event (batch->events[i], lim, arena, e);
        if (reason) {
            out->rejects[out->n_rejects++] = s_reject (arena, "event", batch->events[i]->event_id, reason,
                                                       s_event_text (arena, batch->events[i]),
                                                       batch->batch_id, 0);
            continue;
        }
        if (!s_strset_add (&seen, e->event_id)) {
            out->in_batch_duplicates++;
            continue;
        }
        out->events[out->n_events++] = e;
    }

    //  Items: the last record of an id wins, so walk backwards and keep first sightings.
    strset_t items_seen = { NULL, s_pow2_above (batch->n_items) - 1 };
    items_seen.slots = arena_calloc (arena, items_seen.mask + 1, sizeof *items_seen.slots);
    if (!items_seen.slots)
        return STRATA_ENOMEM;
    for (size_t i = batch->n_items; i-- > 0;) {
        Strata__V1__Item *it = arena_alloc (arena, sizeof *it);
        if (!it)
            return STRATA_ENOMEM;
        const char *reason = preprocess_item (batch->items[i], lim, arena, it);
        if (reason) {
            const Strata__V1__Item *src = batch->items[i];
            out->rejects[out->n_rejects++] = s_reject (
                arena, "item", src->item_id, reason,
                arena_printf (arena, "item_id=%.64s title=%.128s price_text=%.32s", src->item_id ? src->item_id : "",
                              src->title ? src->title : "", src->price_text ? src->price_text : ""),
                batch->batch_id, 0);
            continue;
        }
        if (s_strset_add (&items_seen, it->item_id))
            out->items[out->n_items++] = it;
    }

    for (size_t i = 0; i < batch->n_raw; i++) {
        const Strata__V1__RawRecord *raw = batch->raw[i];
        const char *reason = raw->reason && *raw->reason ? raw->reason : "unparseable record";
        char *src = arena_printf (arena, "%.128s:%llu: %s", raw->source ? raw->source : "",
                                  (unsigned long long) raw->line, raw->text ? raw->text : "");
        out->rejects[out->n_rejects++] = s_reject (arena, "raw", "", s_reject_text (arena, reason), src,
                                                   batch->batch_id, raw->line);
    }
    for (size_t i = 0; i < out->n_rejects; i++)
        if (!out->rejects[i])
            return STRATA_ENOMEM;
    return 0;
}
