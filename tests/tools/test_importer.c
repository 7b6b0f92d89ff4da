/*  test_importer: dataset files into Strata records.

    `strata import` is how real data enters the system, and its input is whatever the
    dataset authors wrote: field aliases, numeric ids, ISO dates, quoted CSV with commas
    and newlines, Latin-1 text, and broken lines. Each test writes a small file into a
    private temporary directory and imports it into a collecting sink that copies what it
    is given (the importer's pointers are valid only during the callback), then checks
    the records field by field. Broken lines must come out as raw records with their
    reason, and the lines after them must still arrive.
*/
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "importer.h"

#define MAX_RECORDS 64
#define MAX_ATTRS 16

typedef struct {
    char *event_id, *user_id, *item_id, *type, *query, *session;
    int64_t ts;
    double value;
} ev_t;

typedef struct {
    char *item_id, *title, *brand, *category, *price;
    size_t n_attrs;
    char *keys[MAX_ATTRS], *vals[MAX_ATTRS];
} it_t;

typedef struct {
    char *source, *text, *reason;
    uint64_t line;
} raw_t;

typedef struct {
    ev_t ev[MAX_RECORDS];
    it_t it[MAX_RECORDS];
    raw_t raw[MAX_RECORDS];
    size_t nev, nit, nraw;
    int fail_after;   // > 0: the sink fails on that event
} collect_t;

static collect_t s_got;
static char s_dir[64];

static char *
s_dup (const char *s)
{
    return s ? strdup (s) : NULL;
}

static int
s_on_event (void *arg, const strata_event_t *e)
{
    collect_t *c = arg;
    cr_assert_lt (c->nev, MAX_RECORDS);
    ev_t *x = &c->ev[c->nev++];
    x->event_id = s_dup (e->event_id);
    x->user_id = s_dup (e->user_id);
    x->item_id = s_dup (e->item_id);
    x->type = s_dup (e->type);
    x->query = s_dup (e->query);
    x->session = s_dup (e->session);
    x->ts = e->timestamp_ms;
    x->value = e->value;
    if (c->fail_after && (int) c->nev == c->fail_after)
        return -7;
    return 0;
}

static int
s_on_item (void *arg, const strata_item_t *it)
{
    collect_t *c = arg;
    cr_assert_lt (c->nit, MAX_RECORDS);
    it_t *x = &c->it[c->nit++];
    x->item_id = s_dup (it->item_id);
    x->title = s_dup (it->title);
    x->brand = s_dup (it->brand);
    x->category = s_dup (it->category);
    x->price = s_dup (it->price);
    cr_assert_leq (it->n_attrs, MAX_ATTRS);
    x->n_attrs = it->n_attrs;
    for (size_t i = 0; i < it->n_attrs; i++) {
        x->keys[i] = s_dup (it->attr_keys[i]);
        x->vals[i] = s_dup (it->attr_values[i]);
    }
    return 0;
}

static int
s_on_raw (void *arg, const char *source, uint64_t line, const char *text, const char *reason)
{
    collect_t *c = arg;
    cr_assert_lt (c->nraw, MAX_RECORDS);
    raw_t *x = &c->raw[c->nraw++];
    x->source = s_dup (source);
    x->text = s_dup (text);
    x->reason = s_dup (reason);
    x->line = line;
    return 0;
}

static void
s_setup (void)
{
    memset (&s_got, 0, sizeof s_got);
    strcpy (s_dir, "/tmp/strata-import-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    //  Remove whatever the test wrote (plain files only), then the directory.
    DIR *dir = opendir (s_dir);
    if (dir) {
        struct dirent *de;
        while ((de = readdir (dir)))
            if (strcmp (de->d_name, ".") && strcmp (de->d_name, "..")) {
                char path[512];
                snprintf (path, sizeof path, "%s/%s", s_dir, de->d_name);
                unlink (path);
            }
        closedir (dir);
    }
    rmdir (s_dir);
    for (size_t i = 0; i < s_got.nev; i++) {
        ev_t *x = &s_got.ev[i];
        char *strings[] = { x->event_id, x->user_id, x->item_id, x->type, x->query, x->session };
        for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++)
            free (strings[k]);
    }
    for (size_t i = 0; i < s_got.nit; i++) {
        it_t *x = &s_got.it[i];
        char *strings[] = { x->item_id, x->title, x->brand, x->category, x->price };
        for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++)
            free (strings[k]);
        for (size_t k = 0; k < x->n_attrs; k++) {
            free (x->keys[k]);
            free (x->vals[k]);
        }
    }
    for (size_t i = 0; i < s_got.nraw; i++) {
        free (s_got.raw[i].source);
        free (s_got.raw[i].text);
        free (s_got.raw[i].reason);
    }
}

TestSuite (importer, .init = s_setup, .fini = s_teardown);

//  Writes len bytes into s_dir/name and returns the path (static buffer per call site).
static const char *
s_write (const char *name, const char *text, size_t len)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf (path, 256, "%s/%s", s_dir, name);
    FILE *f = fopen (path, "wb");
    cr_assert_not_null (f, "cannot write %s", path);
    cr_assert_eq (fwrite (text, 1, len, f), len);
    fclose (f);
    return path;
}

#define WRITE(name, lit) s_write (name, lit, sizeof (lit) - 1)

//  Imports path with the given options into s_got; returns import_file's code.
static int
s_import (const char *path, import_format_t format, bool items, const char *prefix, import_counts_t *counts)
{
    import_opts_t opts = { .path = path, .format = format, .items = items, .prefix = prefix };
    import_sink_t sink = { s_on_event, s_on_item, s_on_raw, &s_got };
    import_counts_t local;
    char err[256] = "";
    int rc = import_file (&opts, &sink, counts ? counts : &local, err, sizeof err);
    if (rc != 0 && rc != -7)
        cr_log_info ("import_file: %d %s", rc, err);
    return rc;
}

static const ev_t *
s_event_by_id (const char *event_id)
{
    for (size_t i = 0; i < s_got.nev; i++)
        if (s_got.ev[i].event_id && !strcmp (s_got.ev[i].event_id, event_id))
            return &s_got.ev[i];
    cr_assert_fail ("no event '%s'", event_id);
    return NULL;
}

static const it_t *
s_item_by_id (const char *item_id)
{
    for (size_t i = 0; i < s_got.nit; i++)
        if (!strcmp (s_got.it[i].item_id, item_id))
            return &s_got.it[i];
    cr_assert_fail ("no item '%s'", item_id);
    return NULL;
}

static size_t
s_attr_count (const it_t *it, const char *key, const char *value)
{
    size_t n = 0;
    for (size_t i = 0; i < it->n_attrs; i++)
        n += !strcmp (it->keys[i], key) && (!value || !strcmp (it->vals[i], value));
    return n;
}

static bool
s_starts (const char *s, const char *prefix)
{
    return s && !strncmp (s, prefix, strlen (prefix));
}

// ---------------------------------------------------------------- format names

typedef struct {
    const char *path;
    import_format_t format;
} guess_case_t;

Test (importer, format_guess_table)
{
    static const guess_case_t cases[] = {
        { "data/Beauty_item2attributes.json", IMPORT_S3REC_ATTRS },
        { "ml-100k/u.data", IMPORT_MOVIELENS },
        { "u.data", IMPORT_MOVIELENS },
        { "events.jsonl", IMPORT_JSONL },
        { "events.ndjson", IMPORT_JSONL },
        { "events.json", IMPORT_JSONL },
        { "items.csv", IMPORT_CSV },
        { "home-depot/train.csv", IMPORT_CSV },
        { "Beauty.txt", IMPORT_S3REC },
        { "no-suffix", IMPORT_JSONL },
        { "-", IMPORT_JSONL },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_assert_eq (import_format_guess (cases[c].path), cases[c].format, "%s", cases[c].path);
}

Test (importer, format_parse_table)
{
    static const struct {
        const char *name;
        int format;
    } cases[] = {
        { "auto", IMPORT_AUTO },           { "jsonl", IMPORT_JSONL },
        { "csv", IMPORT_CSV },             { "s3rec", IMPORT_S3REC },
        { "s3rec-attrs", IMPORT_S3REC_ATTRS }, { "movielens", IMPORT_MOVIELENS },
        { "homedepot", IMPORT_HOMEDEPOT }, { "xml", STRATA_EINVAL },
        { "", STRATA_EINVAL },             { "csv ", STRATA_EINVAL },
        { "s3rec_attrs", STRATA_EINVAL },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_assert_eq (import_format_parse (cases[c].name), cases[c].format, "'%s'", cases[c].name);
}

Test (importer, missing_file)
{
    import_opts_t opts = { .path = "/nonexistent/strata/events.jsonl" };
    import_sink_t sink = { s_on_event, s_on_item, s_on_raw, &s_got };
    import_counts_t counts;
    char err[256] = "";
    cr_assert_eq (import_file (&opts, &sink, &counts, err, sizeof err), STRATA_ENOTFOUND);
    cr_assert (strstr (err, "/nonexistent/strata/events.jsonl"), "%s", err);
    cr_assert_eq (s_got.nev + s_got.nit + s_got.nraw, 0);
}

// ---------------------------------------------------------------- JSONL events

Test (importer, jsonl_events_aliases)
{
    const char *path = WRITE ("events.jsonl",
        "{\"id\": \"e1\", \"user\": \"u1\", \"item\": \"i1\", \"event\": \"view\", \"ts\": 1714557600}\n"
        "{\"event_id\": 42, \"user_id\": 7, \"item_id\": 9001, \"type\": \"purchase\","
        " \"timestamp\": \"2024-05-01T10:00:00Z\", \"value\": 2}\r\n"
        "{\"event_id\": \"e3\", \"user_id\": \"u3\", \"event_type\": \"search\", \"time\": \"2024-05-01 10:00:00\","
        " \"query\": \"red lipstick\", \"session_id\": \"s9\"}\n"
        "{\"event_id\": \"e4\", \"user\": \"u4\", \"item\": \"i4\", \"type\": \"rate\", \"rating\": 4.5,"
        " \"ts\": \"2024-05-01\", \"session\": \"s1\", \"extra\": [1, 2]}\n"
        "{\"event_id\": \"e5\", \"user\": \"u5\", \"item\": \"i5\", \"type\": \"view\","
        " \"timestamp\": \"2024-05-01T10:00:00.250Z\"}\n"
        "{\"event_id\": \"e6\", \"user\": \"u6\", \"item\": \"i6\", \"type\": \"view\", \"ts\": 1714557600123}\n"
        "{\"event_id\": \"e7\", \"user\": \"u7\", \"item\": \"i7\", \"type\": \"view\", \"ts\": \"yesterday\"}\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_AUTO, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nev, 7);
    cr_assert_eq (s_got.nraw, 0);
    cr_assert_eq (counts.events, 7);
    cr_assert_eq (counts.lines, 7);

    const ev_t *e = s_event_by_id ("e1");
    cr_assert_str_eq (e->user_id, "u1");
    cr_assert_str_eq (e->item_id, "i1");
    cr_assert_str_eq (e->type, "view");
    cr_assert_eq (e->ts, 1714557600, "Unix seconds pass through; the worker converts them");

    e = s_event_by_id ("42");
    cr_assert_str_eq (e->user_id, "7", "numeric ids become text");
    cr_assert_str_eq (e->item_id, "9001");
    cr_assert_str_eq (e->type, "purchase");
    cr_assert_eq (e->ts, 1714557600000LL);
    cr_assert_float_eq (e->value, 2, 1e-12);

    e = s_event_by_id ("e3");
    cr_assert_str_eq (e->type, "search");
    cr_assert_eq (e->ts, 1714557600000LL, "space instead of T");
    cr_assert_str_eq (e->query, "red lipstick");
    cr_assert_str_eq (e->session, "s9");
    cr_assert_str_eq (e->item_id, "", "a missing item is empty, not NULL");

    e = s_event_by_id ("e4");
    cr_assert_float_eq (e->value, 4.5, 1e-12);
    cr_assert_eq (e->ts, 1714521600000LL, "a bare date is midnight UTC");
    cr_assert_str_eq (e->session, "s1");

    cr_assert_eq (s_event_by_id ("e5")->ts, 1714557600250LL, "fractional seconds keep their milliseconds");
    cr_assert_eq (s_event_by_id ("e6")->ts, 1714557600123LL, "ms pass through");
    cr_assert_eq (s_event_by_id ("e7")->ts, 0, "unreadable time is 0, for the worker to reject");
}

Test (importer, jsonl_broken_lines)
{
    const char *path = WRITE ("events.jsonl",
        "{\"event_id\": \"e1\", \"user_id\": \"u1\", \"item_id\": \"i1\", \"type\": \"view\", \"ts\": 1714557600}\n"
        "{\"event_id\": \"e2\", \"user_id\"\n"
        "\n"
        "   \t \n"
        "[1, 2, 3]\n"
        "\"just a string\"\n"
        "{\"event_id\": \"e3\", \"user_id\": \"u3\", \"item_id\": \"i3\", \"type\": \"view\", \"ts\": 1714557600}\n"
        "{'single': 'quotes'}\n"
        "{\"event_id\": \"e4\", \"user_id\": \"u4\", \"item_id\": \"i4\", \"type\": \"view\", \"ts\": 1714557600}");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_JSONL, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nev, 3, "valid lines before and after broken ones arrive");
    cr_assert_str_eq (s_got.ev[0].event_id, "e1");
    cr_assert_str_eq (s_got.ev[1].event_id, "e3");
    cr_assert_str_eq (s_got.ev[2].event_id, "e4", "a last line without newline is read");

    cr_assert_eq (s_got.nraw, 4, "blank lines are not records");
    static const struct {
        uint64_t line;
        const char *reason_prefix;
        const char *text;
    } want[] = {
        { 2, "invalid JSON", "{\"event_id\": \"e2\", \"user_id\"" },
        { 5, "not a JSON object", "[1, 2, 3]" },
        { 6, "not a JSON object", "\"just a string\"" },
        { 8, "invalid JSON", "{'single': 'quotes'}" },
    };
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq (s_got.raw[i].line, want[i].line, "raw %zu", i);
        cr_assert (s_starts (s_got.raw[i].reason, want[i].reason_prefix), "raw %zu reason '%s'", i,
                   s_got.raw[i].reason);
        cr_assert_str_eq (s_got.raw[i].text, want[i].text, "raw %zu", i);
        cr_assert_str_eq (s_got.raw[i].source, "events.jsonl", "the source is the file name");
    }
    cr_assert_eq (counts.lines, 9);
    cr_assert_eq (counts.events, 3);
    cr_assert_eq (counts.raw, 4);
}

Test (importer, jsonl_prefix)
{
    const char *path = WRITE ("events.jsonl",
        "{\"event_id\": \"e1\", \"user_id\": \"u1\", \"item_id\": \"i1\", \"type\": \"view\", \"ts\": 1714557600}\n"
        "{\"event_id\": \"e2\", \"user_id\": 5, \"item_id\": 6, \"type\": \"view\", \"ts\": 1714557600}\n");
    cr_assert_eq (s_import (path, IMPORT_JSONL, false, "shop:", NULL), 0);
    cr_assert_eq (s_got.nev, 2);
    cr_assert_str_eq (s_got.ev[0].user_id, "shop:u1");
    cr_assert_str_eq (s_got.ev[0].item_id, "shop:i1");
    cr_assert_str_eq (s_got.ev[0].event_id, "shop:e1", "event ids are prefixed too: two shops' e1 are two events");
    cr_assert_str_eq (s_got.ev[1].user_id, "shop:5");
    cr_assert_str_eq (s_got.ev[1].item_id, "shop:6");
}

Test (importer, sink_error_stops_import)
{
    const char *path = WRITE ("events.jsonl",
        "{\"event_id\": \"e1\", \"user_id\": \"u\", \"item_id\": \"i\", \"type\": \"view\", \"ts\": 1714557600}\n"
        "{\"event_id\": \"e2\", \"user_id\": \"u\", \"item_id\": \"i\", \"type\": \"view\", \"ts\": 1714557600}\n"
        "{\"event_id\": \"e3\", \"user_id\": \"u\", \"item_id\": \"i\", \"type\": \"view\", \"ts\": 1714557600}\n");
    s_got.fail_after = 2;
    cr_assert_eq (s_import (path, IMPORT_JSONL, false, NULL, NULL), -7, "the sink's code is returned");
    cr_assert_eq (s_got.nev, 2, "nothing is read after the failure");
}

// ---------------------------------------------------------------- JSONL items

Test (importer, jsonl_items)
{
    const char *path = WRITE ("items.jsonl",
        "{\"item_id\": \"sku-1\", \"title\": \"Serum\", \"brand\": \"Acme\","
        " \"category\": [\"Beauty\", \"Skin Care\", \"Face\"], \"price\": \"$12.50\","
        " \"attributes\": {\"color\": \"red\", \"tags\": [\"vegan\", \"new\"], \"volume_ml\": 50},"
        " \"origin\": \"FR\", \"score\": 4.5, \"in_stock\": true, \"dims\": {\"w\": 1}, \"none\": null}\n"
        "{\"id\": 7, \"name\": \"Brush\", \"price\": 3.5, \"category\": \"Tools > Brushes\"}\n"
        "not json at all\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_JSONL, true, NULL, &counts), 0);
    cr_assert_eq (s_got.nit, 2);
    cr_assert_eq (s_got.nev, 0, "an items file yields no events");
    cr_assert_eq (s_got.nraw, 1);
    cr_assert (s_starts (s_got.raw[0].reason, "invalid JSON"), "%s", s_got.raw[0].reason);
    cr_assert_eq (counts.items, 2);

    const it_t *it = s_item_by_id ("sku-1");
    cr_assert_str_eq (it->title, "Serum");
    cr_assert_str_eq (it->brand, "Acme");
    cr_assert_str_eq (it->category, "Beauty > Skin Care > Face", "a category array is joined");
    cr_assert_str_eq (it->price, "$12.50", "price text is left for the worker to parse");
    cr_assert_eq (s_attr_count (it, "color", "red"), 1);
    cr_assert_eq (s_attr_count (it, "tags", "vegan"), 1, "a list value is several attributes");
    cr_assert_eq (s_attr_count (it, "tags", "new"), 1);
    cr_assert_eq (s_attr_count (it, "volume_ml", "50"), 1);
    cr_assert_eq (s_attr_count (it, "origin", "FR"), 1, "unknown scalar fields become attributes");
    cr_assert_eq (s_attr_count (it, "score", "4.5"), 1);
    cr_assert_eq (s_attr_count (it, "in_stock", "true"), 1);
    cr_assert_eq (s_attr_count (it, "dims", NULL), 0, "objects are not attributes");
    cr_assert_eq (s_attr_count (it, "none", NULL), 0, "nulls are not attributes");
    cr_assert_eq (it->n_attrs, 7);

    it = s_item_by_id ("7");
    cr_assert_str_eq (it->title, "Brush", "name is an alias of title");
    cr_assert_str_eq (it->price, "3.5");
    cr_assert_str_eq (it->category, "Tools > Brushes");
    cr_assert_null (it->brand, "absent fields are NULL");
    cr_assert_eq (it->n_attrs, 0);
}

Test (importer, jsonl_items_prefix)
{
    const char *path = WRITE ("items.jsonl", "{\"item_id\": \"sku-1\", \"title\": \"Serum\"}\n");
    cr_assert_eq (s_import (path, IMPORT_JSONL, true, "b:", NULL), 0);
    cr_assert_eq (s_got.nit, 1);
    cr_assert_str_eq (s_got.it[0].item_id, "b:sku-1");
}

// ---------------------------------------------------------------- CSV

Test (importer, csv_events)
{
    const char *path = WRITE ("events.csv",
        "event_id,user_id,item_id,type,timestamp,query,value\n"                 // 1
        "e1,u1,i1,view,1714557600,,\n"                                          // 2
        "e2,u2,,search,2024-05-01T10:00:00Z,\"red, matte lipstick\",\n"        // 3
        "e3,u3,i3,purchase,1714557600,\"line one\n"                             // 4
        "line two\",2\n"                                                        // 5
        "e4,u4,i4,view\n"                                                       // 6
        "e5,u5,i5,view,1714557600,\"abc\"def,\n"                                // 7
        "e6,u6,i6,click,1714557600,\"say \"\"hi\"\"\",1.5\n"                    // 8
        "e7,u7,i7,view,1714557600,,,extra\n"                                    // 9
        "e8,u8,i8,cart,1714557600,,\r\n");                                      // 10
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_AUTO, false, NULL, &counts), 0);

    cr_assert_eq (s_got.nev, 5, "every valid row arrives, also after broken ones");
    const ev_t *e = s_event_by_id ("e1");
    cr_assert_str_eq (e->user_id, "u1");
    cr_assert_str_eq (e->type, "view");
    cr_assert_eq (e->ts, 1714557600);
    e = s_event_by_id ("e2");
    cr_assert_str_eq (e->query, "red, matte lipstick", "a quoted comma is not a separator");
    cr_assert_eq (e->ts, 1714557600000LL);
    e = s_event_by_id ("e3");
    cr_assert_str_eq (e->query, "line one\nline two", "a quoted newline stays in the field");
    cr_assert_float_eq (e->value, 2, 1e-12);
    e = s_event_by_id ("e6");
    cr_assert_str_eq (e->query, "say \"hi\"", "doubled quotes are one quote");
    cr_assert_float_eq (e->value, 1.5, 1e-12);
    e = s_event_by_id ("e8");
    cr_assert_str_eq (e->type, "cart");
    cr_assert_str_eq (e->user_id, "u8");

    cr_assert_eq (s_got.nraw, 3);
    cr_assert_eq (s_got.raw[0].line, 6);
    cr_assert_str_eq (s_got.raw[0].reason, "expected 7 CSV fields, got 4");
    cr_assert (strstr (s_got.raw[0].text, "e4"), "%s", s_got.raw[0].text);
    cr_assert_eq (s_got.raw[1].line, 7);
    cr_assert_str_eq (s_got.raw[1].reason, "malformed CSV quoting");
    cr_assert_str_eq (s_got.raw[1].text, "e5,u5,i5,view,1714557600,\"abc\"def,");
    cr_assert_eq (s_got.raw[2].line, 9);
    cr_assert_str_eq (s_got.raw[2].reason, "expected 7 CSV fields, got 8");
    for (size_t i = 0; i < s_got.nraw; i++)
        cr_assert_str_eq (s_got.raw[i].source, "events.csv");
    cr_assert_eq (counts.lines, 10);
    cr_assert_eq (counts.events, 5);
    cr_assert_eq (counts.raw, 3);
}

Test (importer, csv_header_aliases)
{
    const char *path = WRITE ("events.csv",
        " ID , User,ITEM,Event,TS,Rating,Session_ID\n"
        "e1,u1,i1,rate,1714557600,4,s1\n");
    cr_assert_eq (s_import (path, IMPORT_CSV, false, NULL, NULL), 0);
    cr_assert_eq (s_got.nev, 1);
    const ev_t *e = &s_got.ev[0];
    cr_assert_str_eq (e->event_id, "e1", "header names are trimmed and case-insensitive");
    cr_assert_str_eq (e->user_id, "u1");
    cr_assert_str_eq (e->item_id, "i1");
    cr_assert_str_eq (e->type, "rate");
    cr_assert_eq (e->ts, 1714557600);
    cr_assert_float_eq (e->value, 4, 1e-12);
    cr_assert_str_eq (e->session, "s1");
}

Test (importer, csv_unterminated_quote_at_eof)
{
    const char *path = WRITE ("events.csv",
        "event_id,user_id,item_id,type,timestamp\n"
        "e1,u1,i1,view,1714557600\n"
        "e2,u2,\"i2,view,1714557600\n"
        "e3,u3,i3,view,1714557600\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_CSV, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nev, 1);
    cr_assert_str_eq (s_got.ev[0].event_id, "e1");
    cr_assert_eq (s_got.nraw, 1);
    cr_assert_eq (s_got.raw[0].line, 3, "the raw record starts where the quote opened");
    cr_assert_str_eq (s_got.raw[0].reason, "unterminated quoted CSV field");
    cr_assert (s_starts (s_got.raw[0].text, "e2,u2,\"i2"), "%s", s_got.raw[0].text);
}

Test (importer, csv_last_line_without_newline)
{
    const char *path = WRITE ("events.csv",
        "event_id,user_id,item_id,type,timestamp\n"
        "e1,u1,i1,view,1714557600");
    cr_assert_eq (s_import (path, IMPORT_CSV, false, NULL, NULL), 0);
    cr_assert_eq (s_got.nev, 1);
    cr_assert_str_eq (s_got.ev[0].event_id, "e1");
    cr_assert_eq (s_got.ev[0].ts, 1714557600);
    cr_assert_eq (s_got.nraw, 0);
}

Test (importer, csv_items_extra_columns)
{
    const char *path = WRITE ("items.csv",
        "item_id,title,brand,category,price,color,Pack Size\n"
        "sku-1,\"Serum, 30ml\",Acme,Beauty > Face,$12.50,red,2\n"
        "sku-2,Brush,Acme,Tools,3.5,black,1\n"
        "sku-3,Broken\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_CSV, true, "x/", &counts), 0);
    cr_assert_eq (s_got.nit, 2);
    const it_t *it = s_item_by_id ("x/sku-1");
    cr_assert_str_eq (it->title, "Serum, 30ml");
    cr_assert_str_eq (it->brand, "Acme");
    cr_assert_str_eq (it->category, "Beauty > Face");
    cr_assert_str_eq (it->price, "$12.50");
    cr_assert_eq (it->n_attrs, 2);
    cr_assert_eq (s_attr_count (it, "color", "red"), 1, "extra columns become attributes");
    cr_assert_eq (s_attr_count (it, "Pack Size", "2"), 1, "named by their header");
    it = s_item_by_id ("x/sku-2");
    cr_assert_eq (s_attr_count (it, "color", "black"), 1);
    cr_assert_eq (s_got.nraw, 1);
    cr_assert_str_eq (s_got.raw[0].reason, "expected 7 CSV fields, got 2");
    cr_assert_eq (counts.items, 2);
}

// ---------------------------------------------------------------- S3-Rec

Test (importer, s3rec_sequences)
{
    const char *path = WRITE ("Beauty.txt", "1 5 6 7\n2 9\n\n3\n4\t10\t11\r\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_AUTO, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nev, 6);
    const int64_t base = 1388534400000LL;   // 2014-01-01, the documented default
    static const char *items1[] = { "5", "6", "7" };
    for (int i = 0; i < 3; i++) {
        const ev_t *e = &s_got.ev[i];
        cr_assert_str_eq (e->user_id, "1");
        cr_assert_str_eq (e->item_id, items1[i]);
        cr_assert_str_eq (e->type, "purchase");
        cr_assert_eq (e->ts, base + i * 1000, "order is time: increasing timestamps");
    }
    cr_assert_str_eq (s_got.ev[3].user_id, "2");
    cr_assert_str_eq (s_got.ev[3].item_id, "9");
    cr_assert_eq (s_got.ev[3].ts, base, "each user starts at the base time");
    cr_assert_str_eq (s_got.ev[4].user_id, "4", "tabs and CRLF separate too");
    cr_assert_str_eq (s_got.ev[5].item_id, "11");
    //  Every event id is distinct, so the broker's dedupe keeps them all.
    for (size_t i = 0; i < s_got.nev; i++) {
        cr_assert (s_got.ev[i].event_id && *s_got.ev[i].event_id);
        for (size_t j = i + 1; j < s_got.nev; j++)
            cr_assert_str_neq (s_got.ev[i].event_id, s_got.ev[j].event_id);
    }
    cr_assert_eq (s_got.nraw, 1, "a user without items is a raw record; a blank line is nothing");
    cr_assert_eq (s_got.raw[0].line, 4);
    cr_assert_str_eq (s_got.raw[0].reason, "sequence line without items");
    cr_assert_eq (counts.events, 6);
}

Test (importer, s3rec_base_and_prefix)
{
    const char *path = WRITE ("Beauty.txt", "1 5 6\n");
    import_opts_t opts = { .path = path, .format = IMPORT_S3REC, .prefix = "b:", .base_ms = 1700000000000LL };
    import_sink_t sink = { s_on_event, s_on_item, s_on_raw, &s_got };
    import_counts_t counts;
    char err[128];
    cr_assert_eq (import_file (&opts, &sink, &counts, err, sizeof err), 0);
    cr_assert_eq (s_got.nev, 2);
    cr_assert_str_eq (s_got.ev[0].user_id, "b:1");
    cr_assert_str_eq (s_got.ev[0].item_id, "b:5");
    cr_assert_eq (s_got.ev[0].ts, 1700000000000LL);
    cr_assert_eq (s_got.ev[1].ts, 1700000001000LL);
    cr_assert (strstr (s_got.ev[0].event_id, "b:"), "the prefix namespaces event ids: %s", s_got.ev[0].event_id);
}

Test (importer, s3rec_attrs)
{
    const char *path = WRITE ("Beauty_item2attributes.json", "{\"4\": [1, 2], \"5\": [\"x\"], \"6\": \"bad\", \"7\": []}");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_AUTO, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nit, 3);
    const it_t *it = s_item_by_id ("4");
    cr_assert_eq (it->n_attrs, 2);
    cr_assert_eq (s_attr_count (it, "attr", "1"), 1);
    cr_assert_eq (s_attr_count (it, "attr", "2"), 1);
    cr_assert_null (it->title);
    it = s_item_by_id ("5");
    cr_assert_eq (s_attr_count (it, "attr", "x"), 1);
    cr_assert_eq (s_item_by_id ("7")->n_attrs, 0);
    cr_assert_eq (s_got.nraw, 1);
    cr_assert_str_eq (s_got.raw[0].text, "6");
    cr_assert_str_eq (s_got.raw[0].reason, "attributes are not a list");
}

Test (importer, s3rec_attrs_invalid_json)
{
    const char *path = WRITE ("Beauty_item2attributes.json", "{\"4\": [1, 2");
    cr_assert_eq (s_import (path, IMPORT_S3REC_ATTRS, false, NULL, NULL), 0);
    cr_assert_eq (s_got.nit, 0);
    cr_assert_eq (s_got.nraw, 1);
    cr_assert (s_starts (s_got.raw[0].reason, "invalid item2attributes JSON"), "%s", s_got.raw[0].reason);
}

// ---------------------------------------------------------------- MovieLens

Test (importer, movielens)
{
    WRITE ("u.genre", "unknown|0\nAction|1\nComedy|2\n\n");
    //  5 leading fields + 3 genre flags; the second title is ISO-8859-1.
    WRITE ("u.item",
           "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
           "2|Caf\xe9 Society (2016)|01-Jan-2016||http://y|0|1|1\n"
           "3|Short|x\n");
    const char *path = WRITE ("u.data",
                              "196\t242\t3\t881250949\n"
                              "186\t302\t3.5\t891717742\n"
                              "broken line\n"
                              "22\t377\t1\t878887116\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_AUTO, false, NULL, &counts), 0);

    cr_assert_eq (s_got.nev, 3);
    const ev_t *e = &s_got.ev[0];
    cr_assert_str_eq (e->user_id, "196");
    cr_assert_str_eq (e->item_id, "242");
    cr_assert_str_eq (e->type, "rate");
    cr_assert_float_eq (e->value, 3, 1e-12);
    cr_assert_eq (e->ts, 881250949000LL);
    cr_assert_float_eq (s_got.ev[1].value, 3.5, 1e-12);
    cr_assert_str_eq (s_got.ev[2].user_id, "22", "lines after a broken one arrive");
    cr_assert_str_neq (s_got.ev[0].event_id, s_got.ev[1].event_id);

    cr_assert_eq (s_got.nit, 2);
    const it_t *it = s_item_by_id ("1");
    cr_assert_str_eq (it->title, "Toy Story (1995)");
    cr_assert_eq (s_attr_count (it, "genre", NULL), 1);
    cr_assert_eq (s_attr_count (it, "genre", "Comedy"), 1);
    cr_assert_eq (s_attr_count (it, "release_date", "01-Jan-1995"), 1);
    cr_assert_str_eq (it->category, "movies > Comedy");
    it = s_item_by_id ("2");
    cr_assert_str_eq (it->title, "Caf\xc3\xa9 Society (2016)", "u.item is converted from ISO-8859-1");
    cr_assert_eq (s_attr_count (it, "genre", "Action"), 1);
    cr_assert_eq (s_attr_count (it, "genre", "Comedy"), 1);
    cr_assert_eq (s_attr_count (it, "genre", "unknown"), 0);

    cr_assert_eq (s_got.nraw, 2);
    cr_assert_eq (s_got.raw[0].line, 3);
    cr_assert_str_eq (s_got.raw[0].source, "u.data");
    cr_assert_str_eq (s_got.raw[0].reason, "expected user, item, rating, timestamp");
    cr_assert_str_eq (s_got.raw[0].text, "broken line");
    cr_assert_eq (s_got.raw[1].line, 3);
    cr_assert_str_eq (s_got.raw[1].source, "u.item");
    cr_assert_str_eq (s_got.raw[1].reason, "u.item line with too few fields");
    cr_assert_eq (counts.events, 3);
    cr_assert_eq (counts.items, 2);
    cr_assert_eq (counts.raw, 2);
}

Test (importer, movielens_without_item_file)
{
    const char *path = WRITE ("u.data", "1\t2\t5\t881250949\n");
    cr_assert_eq (s_import (path, IMPORT_MOVIELENS, false, NULL, NULL), 0);
    cr_assert_eq (s_got.nev, 1);
    cr_assert_eq (s_got.nit, 0, "titles are optional");
    cr_assert_eq (s_got.nraw, 0);
}

// ---------------------------------------------------------------- Home Depot

Test (importer, homedepot_latin1_distinct_products)
{
    const char *path = WRITE ("train.csv",
        "\"id\",\"product_uid\",\"product_title\",\"search_term\",\"relevance\"\n"
        "2,100001,\"Caf\xe9 Table 36\xae\",\"table\",3\n"
        "3,100001,\"Caf\xe9 Table 36\xae\",\"cafe table\",2.5\n"
        "9,100002,\"Simpson Strong-Tie 12-Gauge Angle\",\"angle bracket\",3\n"
        "16,100001,\"Caf\xe9 Table 36\xae\",\"round table\",2\n");
    import_counts_t counts;
    cr_assert_eq (s_import (path, IMPORT_HOMEDEPOT, false, NULL, &counts), 0);
    cr_assert_eq (s_got.nit, 2, "one item per product, however many queries judge it");
    cr_assert_eq (s_got.nev, 0);
    cr_assert_eq (s_got.nraw, 0);
    const it_t *it = s_item_by_id ("100001");
    cr_assert_str_eq (it->title, "Caf\xc3\xa9 Table 36\xc2\xae", "converted to UTF-8");
    it = s_item_by_id ("100002");
    cr_assert_str_eq (it->title, "Simpson Strong-Tie 12-Gauge Angle");
    cr_assert_eq (counts.items, 2);
}

Test (importer, homedepot_bad_header)
{
    const char *path = WRITE ("train.csv", "\"id\",\"uid\",\"title\"\n1,2,x\n");
    cr_assert_eq (s_import (path, IMPORT_HOMEDEPOT, false, NULL, NULL), 0);
    cr_assert_eq (s_got.nit, 0);
    cr_assert_geq (s_got.nraw, 1);
    cr_assert_str_eq (s_got.raw[0].reason, "header lacks product_uid or product_title");
}
