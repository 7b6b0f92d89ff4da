/*  importer: see importer.h. */
#define _XOPEN_SOURCE 700
#include "importer.h"

#include <csv.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define MAX_ATTRS 64
#define MAX_RECORD_LINES 64   // a quoted CSV field may span lines, but not forever
//  Strict quoting, also at end of input, so a broken line is reported, not guessed at.
#define CSV_OPTIONS (CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL)

static const char *s_format_names[] = { "auto", "jsonl", "csv", "s3rec", "s3rec-attrs", "movielens", "homedepot" };

int
import_format_parse (const char *name)
{
    for (size_t i = 0; i < sizeof s_format_names / sizeof s_format_names[0]; i++)
        if (!strcmp (name, s_format_names[i]))
            return (int) i;
    return STRATA_EINVAL;
}

static bool
s_ends_with (const char *s, const char *suffix)
{
    size_t a = strlen (s), b = strlen (suffix);
    return a >= b && !strcmp (s + a - b, suffix);
}

import_format_t
import_format_guess (const char *path)
{
    if (s_ends_with (path, "item2attributes.json"))
        return IMPORT_S3REC_ATTRS;
    if (s_ends_with (path, "u.data"))
        return IMPORT_MOVIELENS;
    if (s_ends_with (path, ".jsonl") || s_ends_with (path, ".ndjson") || s_ends_with (path, ".json"))
        return IMPORT_JSONL;
    if (s_ends_with (path, ".csv"))
        return IMPORT_CSV;
    if (s_ends_with (path, ".txt"))
        return IMPORT_S3REC;
    return IMPORT_JSONL;
}

// ---------------------------------------------------------------- shared helpers

typedef struct {
    const import_opts_t *opts;
    const import_sink_t *sink;
    import_counts_t *counts;
    const char *source;     // file name for raw records
} ctx_t;

static int
s_raw (ctx_t *c, uint64_t line, const char *text, const char *reason)
{
    c->counts->raw++;
    return c->sink->raw (c->sink->arg, c->source, line, text, reason);
}

//  Prefixed id into buf (ids are short; longer ones are left for the worker to reject).
static const char *
s_id (ctx_t *c, const char *id, char *buf, size_t cap)
{
    if (!id || !*id || !c->opts->prefix || !*c->opts->prefix)
        return id;   // an empty id stays empty, so the worker can reject it
    snprintf (buf, cap, "%s%s", c->opts->prefix, id);
    return buf;
}

static int
s_event (ctx_t *c, strata_event_t *e)
{
    char ebuf[512], ubuf[512], ibuf[512];
    e->event_id = s_id (c, e->event_id, ebuf, sizeof ebuf);
    e->user_id = s_id (c, e->user_id, ubuf, sizeof ubuf);
    e->item_id = s_id (c, e->item_id, ibuf, sizeof ibuf);
    c->counts->events++;
    return c->sink->event (c->sink->arg, e);
}

static int
s_item (ctx_t *c, strata_item_t *it)
{
    char ibuf[512];
    it->item_id = s_id (c, it->item_id, ibuf, sizeof ibuf);
    c->counts->items++;
    return c->sink->item (c->sink->arg, it);
}

//  Timestamp text: Unix seconds or ms, or ISO-8601 ("2024-05-01T10:00:00Z", with a
//  space instead of T, or a bare date). Returns 0 when it cannot be read (the worker
//  then rejects the event with "missing timestamp").
static int64_t
s_timestamp (const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll (s, &end, 10);
    if (!errno && end != s && (*end == 0 || (*end == '.' && strspn (end + 1, "0123456789") == strlen (end + 1))))
        return v;
    struct tm tm;
    const char *formats[] = { "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d" };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        memset (&tm, 0, sizeof tm);
        const char *rest = strptime (s, formats[i], &tm);
        if (!rest)
            continue;
        int64_t ms = (int64_t) timegm (&tm) * 1000;
        if (*rest == '.') {   // fractional seconds: keep milliseconds
            int64_t frac = 0, scale = 100;
            for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
                frac += (*rest - '0') * scale;
            ms += frac;
        }
        if (*rest == 0 || !strcmp (rest, "Z"))
            return ms;
        //  A UTC offset: +HH, +HHMM or +HH:MM (local time = UTC + offset).
        int hh = 0, mm = 0;
        char sign = *rest;
        if ((sign == '+' || sign == '-')
            && (sscanf (rest + 1, "%2d:%2d", &hh, &mm) == 2 || sscanf (rest + 1, "%2d%2d", &hh, &mm) >= 1)
            && hh <= 14 && mm < 60) {
            int64_t off = ((int64_t) hh * 60 + mm) * 60000;
            return sign == '+' ? ms - off : ms + off;
        }
        return 0;   // trailing text we do not understand: better rejected than misread
    }
    return 0;
}

// ---------------------------------------------------------------- field mapping

enum { F_EVENT_ID, F_USER, F_ITEM, F_TYPE, F_TS, F_QUERY, F_VALUE, F_SESSION, F_EVENT_COUNT };
enum { F_ITEM_ID, F_TITLE, F_BRAND, F_CATEGORY, F_PRICE, F_ATTRS, F_ITEM_COUNT };

static const char *const s_event_fields[F_EVENT_COUNT][4] = {
    { "event_id", "id", NULL }, { "user_id", "user", NULL },          { "item_id", "item", NULL },
    { "type", "event", "event_type", NULL }, { "timestamp", "ts", "time", NULL }, { "query", NULL },
    { "value", "rating", NULL }, { "session", "session_id", NULL },
};
static const char *const s_item_fields[F_ITEM_COUNT][4] = {
    { "item_id", "id", NULL }, { "title", "name", NULL }, { "brand", NULL },
    { "category", NULL },      { "price", NULL },         { "attributes", NULL },
};

//  Index of the field a column name stands for, or -1.
static int
s_field_of (const char *name, bool items)
{
    int n = items ? F_ITEM_COUNT : F_EVENT_COUNT;
    for (int f = 0; f < n; f++)
        for (int a = 0; a < 4; a++) {
            const char *alias = items ? s_item_fields[f][a] : s_event_fields[f][a];
            if (!alias)
                break;
            if (!strcasecmp (name, alias))
                return f;
        }
    return -1;
}

//  Builds an event from field texts (NULL = absent).
static int
s_emit_event (ctx_t *c, const char *const *v)
{
    strata_event_t e = { 0 };
    e.event_id = v[F_EVENT_ID];
    e.user_id = v[F_USER] ? v[F_USER] : "";
    e.item_id = v[F_ITEM] ? v[F_ITEM] : "";
    e.type = v[F_TYPE] ? v[F_TYPE] : "";
    e.timestamp_ms = s_timestamp (v[F_TS]);
    e.query = v[F_QUERY];
    e.value = v[F_VALUE] && *v[F_VALUE] ? strtod (v[F_VALUE], NULL) : 0;
    e.session = v[F_SESSION];
    return s_event (c, &e);
}

// ---------------------------------------------------------------- JSONL

//  Text of a scalar JSON value (numbers printed into buf), or NULL.
static const char *
s_json_text (json_t *v, char *buf, size_t cap)
{
    if (json_is_string (v))
        return json_string_value (v);
    if (json_is_integer (v)) {
        snprintf (buf, cap, "%lld", (long long) json_integer_value (v));
        return buf;
    }
    if (json_is_real (v)) {
        snprintf (buf, cap, "%.17g", json_real_value (v));
        return buf;
    }
    if (json_is_boolean (v))
        return json_is_true (v) ? "true" : "false";
    return NULL;
}

static int
s_json_event (ctx_t *c, json_t *obj)
{
    const char *v[F_EVENT_COUNT] = { 0 };
    char bufs[F_EVENT_COUNT][64];
    const char *key;
    json_t *val;
    json_object_foreach (obj, key, val) {
        int f = s_field_of (key, false);
        if (f >= 0 && !v[f])
            v[f] = s_json_text (val, bufs[f], sizeof bufs[f]);
    }
    return s_emit_event (c, v);
}

static int
s_json_item (ctx_t *c, json_t *obj)
{
    const char *v[F_ITEM_COUNT] = { 0 };
    char bufs[F_ITEM_COUNT][64];
    const char *keys[MAX_ATTRS], *vals[MAX_ATTRS];
    char abufs[MAX_ATTRS][64];
    size_t na = 0;
    char category[1024] = "";
    const char *key;
    json_t *val;
    json_object_foreach (obj, key, val) {
        int f = s_field_of (key, true);
        if (f == F_ATTRS && json_is_object (val)) {
            const char *ak;
            json_t *av;
            json_object_foreach (val, ak, av) {
                //  A list value is several attributes of one key (e.g. tags).
                size_t n = json_is_array (av) ? json_array_size (av) : 1;
                for (size_t i = 0; i < n && na < MAX_ATTRS; i++) {
                    json_t *x = json_is_array (av) ? json_array_get (av, i) : av;
                    const char *t = s_json_text (x, abufs[na], sizeof abufs[na]);
                    if (t) {
                        keys[na] = ak;
                        vals[na++] = t;
                    }
                }
            }
        }
        else if (f == F_CATEGORY && json_is_array (val)) {
            size_t i;
            json_t *x;
            json_array_foreach (val, i, x) {
                if (json_is_string (x)) {
                    if (*category)
                        strncat (category, " > ", sizeof category - strlen (category) - 1);
                    strncat (category, json_string_value (x), sizeof category - strlen (category) - 1);
                }
            }
            v[F_CATEGORY] = category;
        }
        else if (f >= 0 && f != F_ATTRS && !v[f])
            v[f] = s_json_text (val, bufs[f], sizeof bufs[f]);
        else if (f < 0 && na < MAX_ATTRS) {
            const char *t = s_json_text (val, abufs[na], sizeof abufs[na]);
            if (t) {
                keys[na] = key;
                vals[na++] = t;
            }
        }
    }
    strata_item_t it = { v[F_ITEM_ID] ? v[F_ITEM_ID] : "", v[F_TITLE], v[F_BRAND], v[F_CATEGORY], v[F_PRICE], na,
                         keys, vals };
    return s_item (c, &it);
}

//  Calls fn for every line of f (without its line end), numbered from 1, until fn
//  returns non-zero. The line is writable and valid only during the call.
typedef int (line_fn) (ctx_t *c, uint64_t n, char *line, size_t len, void *arg);

static int
s_each_line (ctx_t *c, FILE *f, line_fn *fn, void *arg)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t n = 0;
    int rc = 0;
    while (rc == 0 && (len = getline (&line, &cap, f)) >= 0) {
        n++;
        c->counts->lines++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        rc = fn (c, n, line, (size_t) len, arg);
    }
    free (line);
    return rc;
}

static int
s_jsonl_line (ctx_t *c, uint64_t n, char *line, size_t len, void *arg)
{
    (void) arg;
    if (strspn (line, " \t") == len)
        return 0;   // blank lines are not records
    json_error_t jerr;
    json_t *obj = json_loadb (line, len, JSON_DECODE_ANY, &jerr);
    if (!obj) {
        char reason[256];
        snprintf (reason, sizeof reason, "invalid JSON: %s", jerr.text);
        return s_raw (c, n, line, reason);
    }
    int rc;
    if (!json_is_object (obj))
        rc = s_raw (c, n, line, "not a JSON object");
    else
        rc = c->opts->items ? s_json_item (c, obj) : s_json_event (c, obj);
    json_decref (obj);
    return rc;
}

static int
s_jsonl (ctx_t *c, FILE *f)
{
    return s_each_line (c, f, s_jsonl_line, NULL);
}

// ---------------------------------------------------------------- CSV

typedef struct {
    char **fields;
    size_t n, cap;
    bool row_done;
    bool overflow;
} csv_row_t;

static void
s_csv_field (void *data, size_t len, void *arg)
{
    csv_row_t *r = arg;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        if (cap > 4096) {
            r->overflow = true;
            return;
        }
        char **f = realloc (r->fields, cap * sizeof *f);
        if (!f) {
            r->overflow = true;
            return;
        }
        r->fields = f;
        r->cap = cap;
    }
    r->fields[r->n] = strndup (data ? data : "", len);
    if (r->fields[r->n])
        r->n++;
}

static void
s_csv_row (int term, void *arg)
{
    (void) term;
    ((csv_row_t *) arg)->row_done = true;
}

static void
s_csv_clear (csv_row_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free (r->fields[i]);
    r->n = 0;
    r->row_done = r->overflow = false;
}

//  Calls fn for each CSV record with its fields; broken records go to raw().
typedef int (csv_record_fn) (ctx_t *c, uint64_t line, char **fields, size_t n, void *arg);

static int
s_csv_each (ctx_t *c, FILE *f, csv_record_fn *fn, void *arg)
{
    struct csv_parser p;
    if (csv_init (&p, CSV_OPTIONS) != 0)
        return STRATA_ENOMEM;
    csv_row_t row = { 0 };
    char *line = NULL, *conv = NULL;
    size_t cap = 0, conv_cap = 0;
    ssize_t len;
    uint64_t n = 0, start = 1;
    int rc = 0, pending_lines = 0;
    char *record = NULL;   // raw text of the record so far, for reject messages
    size_t rec_len = 0;
    while (rc == 0 && (len = getline (&line, &cap, f)) >= 0) {
        n++;
        c->counts->lines++;
        const char *text = line;
        if (c->opts->latin1) {
            if (conv_cap < (size_t) len * 2 + 1) {
                conv_cap = (size_t) len * 2 + 1;
                char *nc = realloc (conv, conv_cap);
                if (!nc) {
                    rc = STRATA_ENOMEM;
                    break;
                }
                conv = nc;
            }
            len = (ssize_t) util_latin1_to_utf8 (line, (size_t) len, conv);
            text = conv;
        }
        if (pending_lines == 0) {
            start = n;
            rec_len = 0;
        }
        char *nr = realloc (record, rec_len + (size_t) len + 1);
        if (!nr) {
            rc = STRATA_ENOMEM;
            break;
        }
        record = nr;
        memcpy (record + rec_len, text, (size_t) len);
        rec_len += (size_t) len;
        record[rec_len] = 0;
        pending_lines++;

        size_t used = csv_parse (&p, text, (size_t) len, s_csv_field, s_csv_row, &row);
        bool broken = used != (size_t) len || row.overflow;
        //  A last line without a newline still ends its record; an open quote there
        //  makes csv_fini fail (CSV_STRICT_FINI), which is a broken record.
        if (!broken && !row.row_done && (len == 0 || text[len - 1] != '\n') && feof (f))
            broken = csv_fini (&p, s_csv_field, s_csv_row, &row) != 0;
        if (!broken && !row.row_done && row.n == 0 && !p.quoted) {
            pending_lines = 0;   // a blank line: no record at all
            continue;
        }
        if (!broken && !row.row_done && pending_lines < MAX_RECORD_LINES)
            continue;   // a quoted field goes on over the next line
        while (rec_len && (record[rec_len - 1] == '\n' || record[rec_len - 1] == '\r'))
            record[--rec_len] = 0;
        if (broken || !row.row_done) {
            rc = s_raw (c, start, record,
                        broken && used != (size_t) len ? "malformed CSV quoting" : "unterminated quoted CSV field");
            csv_free (&p);
            csv_init (&p, CSV_OPTIONS);
        }
        else if (row.n > 0 && !(row.n == 1 && (!row.fields[0] || !*row.fields[0])))
            rc = fn (c, start, row.fields, row.n, arg);
        s_csv_clear (&row);
        pending_lines = 0;
    }
    if (rc == 0 && pending_lines) {
        //  Input ended inside a quoted field.
        rc = s_raw (c, start, record ? record : "", "unterminated quoted CSV field");
    }
    s_csv_clear (&row);
    free (row.fields);
    free (record);
    free (line);
    free (conv);
    csv_free (&p);
    return rc;
}

typedef struct {
    bool have_header;
    size_t ncols;
    int col_field[256];      // column -> field index or -1
    char *col_name[256];
} csv_map_t;

static int
s_generic_record (ctx_t *c, uint64_t line, char **fields, size_t n, void *arg)
{
    csv_map_t *m = arg;
    if (!m->have_header) {
        m->ncols = n < 256 ? n : 256;
        for (size_t i = 0; i < m->ncols; i++) {
            m->col_name[i] = strdup (fields[i] ? fields[i] : "");
            util_squeeze (m->col_name[i]);
            m->col_field[i] = s_field_of (m->col_name[i], c->opts->items);
        }
        m->have_header = true;
        return 0;
    }
    if (n != m->ncols) {
        //  Re-join the fields so the reject shows what was read.
        char text[1024] = "";
        for (size_t i = 0; i < n; i++) {
            if (i)
                strncat (text, ",", sizeof text - strlen (text) - 1);
            strncat (text, fields[i] ? fields[i] : "", sizeof text - strlen (text) - 1);
        }
        char reason[96];
        snprintf (reason, sizeof reason, "expected %zu CSV fields, got %zu", m->ncols, n);
        return s_raw (c, line, text, reason);
    }
    if (!c->opts->items) {
        const char *v[F_EVENT_COUNT] = { 0 };
        for (size_t i = 0; i < n; i++)
            if (m->col_field[i] >= 0 && fields[i])
                v[m->col_field[i]] = fields[i];
        return s_emit_event (c, v);
    }
    const char *v[F_ITEM_COUNT] = { 0 };
    const char *keys[MAX_ATTRS], *vals[MAX_ATTRS];
    size_t na = 0;
    for (size_t i = 0; i < n; i++) {
        if (!fields[i])
            continue;
        if (m->col_field[i] >= 0 && m->col_field[i] != F_ATTRS)
            v[m->col_field[i]] = fields[i];
        else if (na < MAX_ATTRS) {
            keys[na] = m->col_name[i];
            vals[na++] = fields[i];
        }
    }
    strata_item_t it = { v[F_ITEM_ID] ? v[F_ITEM_ID] : "", v[F_TITLE], v[F_BRAND], v[F_CATEGORY], v[F_PRICE], na,
                         keys, vals };
    return s_item (c, &it);
}

static int
s_csv (ctx_t *c, FILE *f)
{
    csv_map_t m = { 0 };
    int rc = s_csv_each (c, f, s_generic_record, &m);
    for (size_t i = 0; i < m.ncols; i++)
        free (m.col_name[i]);
    return rc;
}

// ---------------------------------------------------------------- S3-Rec

static int
s_s3rec_line (ctx_t *c, uint64_t n, char *line, size_t len, void *arg)
{
    int64_t base = *(const int64_t *) arg;
    char *copy = strndup (line, len);
    char *save = NULL;
    char *user = strtok_r (line, " \t", &save);
    int rc = 0;
    int64_t pos = 0;
    char *tok;
    while (user && rc == 0 && (tok = strtok_r (NULL, " \t", &save))) {
        //  Order is time: one second apart, so the sequence is kept by timestamp.
        char id[160];
        snprintf (id, sizeof id, "%s:%s:%lld", c->opts->prefix ? c->opts->prefix : "", user, (long long) pos);
        strata_event_t e = { .event_id = id, .user_id = user, .item_id = tok, .type = "purchase",
                             .timestamp_ms = base + pos * 1000, .value = 1 };
        rc = s_event (c, &e);
        pos++;
    }
    if (user && rc == 0 && pos == 0)
        rc = s_raw (c, n, copy ? copy : "", "sequence line without items");
    free (copy);
    return rc;
}

static int
s_s3rec (ctx_t *c, FILE *f)
{
    int64_t base = c->opts->base_ms ? c->opts->base_ms : 1388534400000LL;   // 2014-01-01
    return s_each_line (c, f, s_s3rec_line, &base);
}

static int
s_s3rec_attrs (ctx_t *c, FILE *f)
{
    json_error_t jerr;
    json_t *root = json_loadf (f, 0, &jerr);
    if (!root || !json_is_object (root)) {
        char reason[256];
        snprintf (reason, sizeof reason, "invalid item2attributes JSON: %s", root ? "not an object" : jerr.text);
        json_decref (root);
        return s_raw (c, root ? 1 : (uint64_t) jerr.line, "", reason);
    }
    int rc = 0;
    const char *item;
    json_t *attrs;
    json_object_foreach (root, item, attrs) {
        c->counts->lines++;
        const char *keys[MAX_ATTRS], *vals[MAX_ATTRS];
        char bufs[MAX_ATTRS][32];
        size_t na = 0, i;
        json_t *a;
        if (!json_is_array (attrs)) {
            rc = s_raw (c, 0, item, "attributes are not a list");
            if (rc)
                break;
            continue;
        }
        json_array_foreach (attrs, i, a) {
            if (na < MAX_ATTRS && s_json_text (a, bufs[na], sizeof bufs[na])) {
                keys[na] = "attr";
                vals[na] = s_json_text (a, bufs[na], sizeof bufs[na]);
                na++;
            }
        }
        strata_item_t it = { .item_id = item, .n_attrs = na, .attr_keys = keys, .attr_values = vals };
        rc = s_item (c, &it);
        if (rc)
            break;
    }
    json_decref (root);
    return rc;
}

// ---------------------------------------------------------------- MovieLens

static int
s_movielens_items (ctx_t *c, const char *dir)
{
    char path[4096];
    char genres[32][64];
    size_t ngenres = 0;
    snprintf (path, sizeof path, "%s/u.genre", dir);
    FILE *g = fopen (path, "r");
    if (g) {
        char line[256];
        while (ngenres < 32 && fgets (line, sizeof line, g)) {
            char *bar = strchr (line, '|');
            if (!bar)
                continue;
            *bar = 0;
            snprintf (genres[ngenres++], sizeof genres[0], "%.63s", line);
        }
        fclose (g);
    }
    snprintf (path, sizeof path, "%s/u.item", dir);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;   // titles are optional
    const char *saved = c->source;
    c->source = "u.item";
    char *line = NULL, *conv = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t n = 0;
    int rc = 0;
    while (rc == 0 && (len = getline (&line, &cap, f)) >= 0) {
        n++;
        c->counts->lines++;
        //  u.item is ISO-8859-1 (accented titles).
        free (conv);
        conv = malloc ((size_t) len * 2 + 1);
        if (!conv) {
            rc = STRATA_ENOMEM;
            break;
        }
        util_latin1_to_utf8 (line, (size_t) len, conv);
        conv[strcspn (conv, "\r\n")] = 0;
        char *fields[32];
        size_t nf = 0;
        char *p = conv;
        while (nf < 32) {
            fields[nf++] = p;
            char *bar = strchr (p, '|');
            if (!bar)
                break;
            *bar = 0;
            p = bar + 1;
        }
        if (nf < 5 + ngenres || nf < 5) {
            for (size_t k = 1; k < nf; k++)
                fields[k][-1] = '|';   // undo the split for the reject text
            rc = s_raw (c, n, conv, "u.item line with too few fields");
            continue;
        }
        const char *keys[MAX_ATTRS], *vals[MAX_ATTRS];
        size_t na = 0;
        char category[128] = "";
        for (size_t k = 0; k < ngenres && 5 + k < nf && na < MAX_ATTRS - 1; k++)
            if (!strcmp (fields[5 + k], "1")) {
                keys[na] = "genre";
                vals[na++] = genres[k];
                if (!*category)
                    snprintf (category, sizeof category, "movies > %s", genres[k]);
            }
        if (*fields[2]) {
            keys[na] = "release_date";
            vals[na++] = fields[2];
        }
        strata_item_t it = { .item_id = fields[0], .title = fields[1], .category = category,
                             .n_attrs = na, .attr_keys = keys, .attr_values = vals };
        rc = s_item (c, &it);
    }
    free (conv);
    free (line);
    fclose (f);
    c->source = saved;
    return rc;
}

static int
s_movielens_line (ctx_t *c, uint64_t n, char *line, size_t len, void *arg)
{
    (void) len;
    (void) arg;
    char user[64], item[64];
    double rating;
    long long ts;
    if (sscanf (line, "%63s %63s %lf %lld", user, item, &rating, &ts) != 4)
        return s_raw (c, n, line, "expected user, item, rating, timestamp");
    char id[160];
    snprintf (id, sizeof id, "ml:%s:%s:%lld", user, item, ts);
    strata_event_t e = { .event_id = id, .user_id = user, .item_id = item, .type = "rate",
                         .timestamp_ms = ts * 1000, .value = rating };
    return s_event (c, &e);
}

static int
s_movielens (ctx_t *c, FILE *f)
{
    int rc = s_each_line (c, f, s_movielens_line, NULL);
    if (rc == 0) {
        char *copy = strdup (c->opts->path);
        if (copy)
            rc = s_movielens_items (c, dirname (copy));
        free (copy);
    }
    return rc;
}

// ---------------------------------------------------------------- Home Depot

typedef struct {
    bool have_header;
    int uid_col, title_col;
    zhashx_t *seen;
} homedepot_t;

static int
s_homedepot_record (ctx_t *c, uint64_t line, char **fields, size_t n, void *arg)
{
    homedepot_t *h = arg;
    if (!h->have_header) {
        h->uid_col = h->title_col = -1;
        for (size_t i = 0; i < n; i++) {
            if (fields[i] && !strcmp (fields[i], "product_uid"))
                h->uid_col = (int) i;
            if (fields[i] && !strcmp (fields[i], "product_title"))
                h->title_col = (int) i;
        }
        h->have_header = true;
        if (h->uid_col < 0 || h->title_col < 0)
            return s_raw (c, line, "", "header lacks product_uid or product_title");
        return 0;
    }
    if (h->uid_col < 0 || (size_t) h->uid_col >= n || (size_t) h->title_col >= n || !fields[h->uid_col])
        return s_raw (c, line, "", "row lacks product_uid or product_title");
    const char *uid = fields[h->uid_col];
    if (zhashx_lookup (h->seen, uid))
        return 0;   // the file repeats a product once per judged query
    zhashx_insert (h->seen, uid, (void *) 1);
    strata_item_t it = { .item_id = uid, .title = fields[h->title_col] };
    return s_item (c, &it);
}

static int
s_homedepot (ctx_t *c, FILE *f)
{
    homedepot_t h = { .seen = zhashx_new () };
    if (!h.seen)
        return STRATA_ENOMEM;
    int rc = s_csv_each (c, f, s_homedepot_record, &h);
    zhashx_destroy (&h.seen);
    return rc;
}

// ---------------------------------------------------------------- entry

int
import_file (const import_opts_t *opts, const import_sink_t *sink, import_counts_t *counts, char *err,
             size_t errlen)
{
    memset (counts, 0, sizeof *counts);
    FILE *f = !strcmp (opts->path, "-") ? stdin : fopen (opts->path, "r");
    if (!f) {
        snprintf (err, errlen, "cannot open %s: %s", opts->path, strerror (errno));
        return STRATA_ENOTFOUND;
    }
    import_opts_t o = *opts;
    if (o.format == IMPORT_AUTO)
        o.format = import_format_guess (o.path);
    if (o.format == IMPORT_HOMEDEPOT)
        o.latin1 = true;
    ctx_t c = { &o, sink, counts, strrchr (o.path, '/') ? strrchr (o.path, '/') + 1 : o.path };
    int rc;
    switch (o.format) {
    case IMPORT_CSV: rc = s_csv (&c, f); break;
    case IMPORT_S3REC: rc = s_s3rec (&c, f); break;
    case IMPORT_S3REC_ATTRS: rc = s_s3rec_attrs (&c, f); break;
    case IMPORT_MOVIELENS: rc = s_movielens (&c, f); break;
    case IMPORT_HOMEDEPOT: rc = s_homedepot (&c, f); break;
    default: rc = s_jsonl (&c, f); break;
    }
    if (f != stdin)
        fclose (f);
    if (rc < 0)
        snprintf (err, errlen, "%s", strata_strerror (rc));
    return rc;
}
