/*  serve: `strata recommend`, `strata similar` and `strata search`, one key (user,
    item, query) from the command line or many from a file (one per line; "-" reads
    stdin), through the broker's api endpoint. A batch keeps up to `inflight` requests
    in flight on one socket and writes TSV lines `key<TAB>item1,item2,...` in input
    order (an empty list and a message on stderr for a key that got an Error). A
    search line may carry candidates, `query<TAB>item1,item2,...`: only those items
    are ranked.
*/
#include "serve.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "config.h"
#include "util.h"
#include "wire.h"

typedef struct {
    char *broker, *dir;
    int64_t timeout_ms;
    char *user, *users, *item, *items, *queries, *category, *exclude, *recent;
    int64_t k, inflight;
    double min_price, max_price;
    bool json, exclude_seen, include_purchased, text_only;
} serve_cfg_t;

#define OFF(f) offsetof (serve_cfg_t, f)
static const config_key_t s_keys[] = {
    { "broker", CONFIG_STRING, OFF (broker), "", 0, -1, "broker endpoint (default: local)" },
    { "dir", CONFIG_STRING, OFF (dir), "", 0, -1, "find the cluster started by strata up --dir" },
    { "timeout-ms", CONFIG_INT, OFF (timeout_ms), "5000", 100, 3600000, "how long to wait for each answer" },
    { "user", CONFIG_STRING, OFF (user), "", 0, -1, "recommend: the user; search: blend in this user's taste" },
    { "users", CONFIG_STRING, OFF (users), "", 0, -1, "recommend: a file of users, one per line (-: stdin)" },
    { "item", CONFIG_STRING, OFF (item), "", 0, -1, "similar: the item" },
    { "items", CONFIG_STRING, OFF (items), "", 0, -1, "similar: a file of items, one per line (-: stdin)" },
    { "queries", CONFIG_STRING, OFF (queries), "", 0, -1,
      "search: a file of queries, one per line, optionally query<TAB>item1,item2,... (-: stdin)" },
    { "k", CONFIG_INT, OFF (k), "10", 1, 1000, "items per answer (also -k)" },
    { "category", CONFIG_STRING, OFF (category), "", 0, -1, "only items with this category (any level)" },
    { "min-price", CONFIG_DOUBLE, OFF (min_price), "-1", -1, 1e12, "only items at this price or more" },
    { "max-price", CONFIG_DOUBLE, OFF (max_price), "-1", -1, 1e12, "only items at this price or less" },
    { "exclude", CONFIG_STRING, OFF (exclude), "", 0, -1, "items to leave out, comma-separated" },
    { "recent", CONFIG_STRING, OFF (recent), "", 0, -1,
      "recommend: items of the session not yet ingested, oldest first, comma-separated (viewed)" },
    { "exclude-seen", CONFIG_BOOL, OFF (exclude_seen), "false", 0, -1,
      "recommend: leave out everything in the history (default: purchases only)" },
    { "include-purchased", CONFIG_BOOL, OFF (include_purchased), "false", 0, -1,
      "recommend: do not leave out purchased items" },
    { "json", CONFIG_BOOL, OFF (json), "false", 0, -1, "print the reply as JSON" },
    { "text-only", CONFIG_BOOL, OFF (text_only), "false", 0, -1,
      "search: rank by text relevance alone (BM25F), for comparisons" },
    { "inflight", CONFIG_INT, OFF (inflight), "64", 1, 4096, "batch: requests in flight at once" },
    CONFIG_END,
};

//  Splits "a,b,c" into a NULL-terminated array of copies (free with s_free_list).
static char **
s_split (const char *text, size_t *n)
{
    *n = 0;
    if (!text || !*text)
        return NULL;
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    char **out = calloc (cap + 1, sizeof *out);
    const char *p = text;
    while (out && *p) {
        const char *e = strchr (p, ',');
        size_t len = e ? (size_t) (e - p) : strlen (p);
        if (len)
            out[(*n)++] = strndup (p, len);
        p = e ? e + 1 : p + len;
    }
    return out;
}

static void
s_free_list (char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free (list[i]);
    free (list);
}

typedef struct {
    Strata__V1__Filters f;
    char **exclude;
    size_t n_exclude;
    Strata__V1__RecentEvent *recent;
    Strata__V1__RecentEvent **recent_p;
    char **recent_ids;
    size_t n_recent;
} request_parts_t;

static void
s_parts (const serve_cfg_t *cfg, request_parts_t *p)
{
    memset (p, 0, sizeof *p);
    strata__v1__filters__init (&p->f);
    p->f.exclude_all_seen = cfg->exclude_seen;
    p->f.include_purchased = cfg->include_purchased;
    p->f.category = cfg->category;
    p->f.has_min_price = cfg->min_price >= 0;
    p->f.min_price = cfg->min_price;
    p->f.has_max_price = cfg->max_price >= 0;
    p->f.max_price = cfg->max_price;
    p->exclude = s_split (cfg->exclude, &p->n_exclude);
    p->f.exclude = p->exclude;
    p->f.n_exclude = p->n_exclude;
    p->recent_ids = s_split (cfg->recent, &p->n_recent);
    if (p->n_recent) {
        p->recent = calloc (p->n_recent, sizeof *p->recent);
        p->recent_p = calloc (p->n_recent, sizeof *p->recent_p);
        for (size_t i = 0; p->recent && p->recent_p && i < p->n_recent; i++) {
            strata__v1__recent_event__init (&p->recent[i]);
            p->recent[i].item = p->recent_ids[i];
            p->recent[i].type = STRATA__V1__EVENT_TYPE__VIEW;
            p->recent_p[i] = &p->recent[i];
        }
    }
}

static void
s_parts_free (request_parts_t *p)
{
    s_free_list (p->exclude, p->n_exclude);
    s_free_list (p->recent_ids, p->n_recent);
    free (p->recent);
    free (p->recent_p);
}

typedef enum { KIND_RECOMMEND, KIND_SIMILAR, KIND_SEARCH } kind_t;

//  Packs the request for `key` (a user, an item, a query with optional candidates after
//  a tab); user: the searching user (may be empty).
static uint8_t *
s_pack (kind_t kind, const char *key, const char *user, bool text_only, const char *request_id, uint32_t k,
        request_parts_t *p, size_t *len)
{
    uint8_t *buf = NULL;
    if (kind == KIND_SEARCH) {
        Strata__V1__Search q = STRATA__V1__SEARCH__INIT;
        const char *tab = strchr (key, '\t');
        char *query = tab ? strndup (key, (size_t) (tab - key)) : strdup (key);
        size_t nc = 0;
        char **cands = tab ? s_split (tab + 1, &nc) : NULL;
        q.request_id = (char *) request_id;
        q.query = query;
        q.user = (char *) (user ? user : "");
        q.k = k;
        q.filters = &p->f;
        q.candidates = cands;
        q.n_candidates = nc;
        q.text_only = text_only;
        *len = strata__v1__search__get_packed_size (&q);
        if ((buf = malloc (*len ? *len : 1)))
            strata__v1__search__pack (&q, buf);
        s_free_list (cands, nc);
        free (query);
    }
    else if (kind == KIND_SIMILAR) {
        Strata__V1__Similar q = STRATA__V1__SIMILAR__INIT;
        q.request_id = (char *) request_id;
        q.item = (char *) key;
        q.k = k;
        q.filters = &p->f;
        *len = strata__v1__similar__get_packed_size (&q);
        if ((buf = malloc (*len ? *len : 1)))
            strata__v1__similar__pack (&q, buf);
    }
    else {
        Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
        q.request_id = (char *) request_id;
        q.user = (char *) key;
        q.k = k;
        q.filters = &p->f;
        q.n_recent = p->recent_p ? p->n_recent : 0;
        q.recent = p->recent_p;
        *len = strata__v1__recommend__get_packed_size (&q);
        if ((buf = malloc (*len ? *len : 1)))
            strata__v1__recommend__pack (&q, buf);
    }
    return buf;
}

//  Reads keys, one per line (blank lines skipped; a line may carry more after a tab,
//  which is ignored here).
static char **
s_read_keys (const char *path, bool keep_tab, size_t *n)
{
    FILE *f = strcmp (path, "-") ? fopen (path, "r") : stdin;
    *n = 0;
    if (!f)
        return NULL;
    size_t cap = 1024;
    char **keys = malloc (cap * sizeof *keys);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while (keys && (got = getline (&line, &lcap, f)) >= 0) {
        line[strcspn (line, keep_tab ? "\r\n" : "\t\r\n")] = 0;
        if (!*line)
            continue;
        if (*n == cap) {
            char **grown = realloc (keys, cap * 2 * sizeof *keys);
            if (!grown)
                break;
            keys = grown;
            cap *= 2;
        }
        keys[(*n)++] = strdup (line);
    }
    free (line);
    if (f != stdin)
        fclose (f);
    return keys;
}

static void
s_print_one (const char *type, const char *key, Strata__V1__Recommendations *r, bool json)
{
    if (json) {
        json_t *items = json_array ();
        for (size_t i = 0; i < r->n_items; i++)
            json_array_append_new (items, json_pack ("{s:s, s:f, s:s}", "item", r->items[i]->item, "score",
                                                     (double) r->items[i]->score, "title", r->items[i]->title));
        json_t *o = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:o}", "request", type, "key", key, "model_version",
                               (json_int_t) r->model_version, "source", r->source, "worker", r->worker, "items", items);
        char *text = json_dumps (o, JSON_COMPACT);
        printf ("%s\n", text);
        free (text);
        json_decref (o);
        return;
    }
    printf ("# %s %s: model version %llu, %s, from %s\n", type, key, (unsigned long long) r->model_version, r->source,
            r->worker);
    for (size_t i = 0; i < r->n_items; i++)
        printf ("%3zu  %-16s %9.4f  %s\n", i + 1, r->items[i]->item, (double) r->items[i]->score, r->items[i]->title);
}

static int
s_run (int argc, char **argv, kind_t kind)
{
    bool similar = kind == KIND_SIMILAR, search = kind == KIND_SEARCH;
    //  -k N is --k N.
    for (int i = 1; i < argc; i++)
        if (!strcmp (argv[i], "-k"))
            argv[i] = "--k";
    serve_cfg_t cfg = { 0 };
    char err[512];
    const char *name = similar ? "similar" : search ? "search" : "recommend";
    int argi = argc;
    int rc = config_parse (s_keys, &cfg, argc, argv, &argi, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (s_keys, stdout,
                     similar ? "usage: strata similar --item I | --items FILE [-k 10] [--json] [filters]"
                     : search ? "usage: strata search \"QUERY\" | --queries FILE [--user U] [-k 10] [--json] [filters]"
                              : "usage: strata recommend --user U | --users FILE [-k 10] [--json] [filters]");
        config_free (s_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata %s: %s\n", name, err);
        config_free (s_keys, &cfg);
        return 2;
    }
    const char *one = similar ? cfg.item : search ? (argi < argc ? argv[argi] : NULL) : cfg.user;
    const char *file = similar ? cfg.items : search ? cfg.queries : cfg.users;
    cluster_endpoints_t eps;
    size_t n = 0;
    char **keys = NULL;
    bool batch = file && *file;
    rc = 0;
    if (!batch && !(one && *one)) {
        fprintf (stderr, "strata %s: give %s or %s (see --help)\n", name,
                 similar ? "--item" : search ? "a query" : "--user",
                 similar ? "--items FILE" : search ? "--queries FILE" : "--users FILE");
        rc = 2;
    }
    else if (cluster_resolve (cfg.broker, cfg.dir, &eps, err, sizeof err) < 0) {
        fprintf (stderr, "strata %s: %s\n", name, err);
        rc = 1;
    }
    else if (batch) {
        keys = s_read_keys (file, search, &n);
        if (!keys) {
            fprintf (stderr, "strata %s: cannot read %s\n", name, file);
            rc = 1;
        }
    }
    else {
        keys = malloc (sizeof *keys);
        if (keys)
            keys[n++] = strdup (one);
    }
    if (rc || !keys) {
        config_free (s_keys, &cfg);
        free (keys);
        return rc ? rc : 1;
    }
    request_parts_t parts;
    s_parts (&cfg, &parts);
    zsock_t *s = zsock_new_dealer (eps.api);
    zsock_set_rcvtimeo (s, 100);
    Strata__V1__Recommendations **answers = calloc (n ? n : 1, sizeof *answers);
    char **errors = calloc (n ? n : 1, sizeof *errors);
    size_t sent = 0, done = 0, failed = 0;
    int64_t last = util_mono_ms ();
    const char *type = similar ? WIRE_SIMILAR : search ? WIRE_SEARCH : WIRE_RECOMMEND;
    const char *reply_type = similar ? WIRE_SIMILAR_REPLY : search ? WIRE_SEARCH_REPLY : WIRE_RECOMMEND_REPLY;
    while (s && answers && errors && done < n) {
        while (sent < n && sent - done < (size_t) cfg.inflight) {
            char id[24];
            snprintf (id, sizeof id, "%zu", sent);
            size_t len;
            uint8_t *buf = s_pack (kind, keys[sent], cfg.user, cfg.text_only, id, (uint32_t) cfg.k, &parts, &len);
            if (buf)
                wire_send_bytes (s, NULL, type, buf, len);
            free (buf);
            sent++;
        }
        wire_msg_t msg;
        int r = wire_recv (s, false, 64 << 20, &msg);
        if (r == STRATA_EINTR) {
            if (zsys_interrupted)
                break;
            if (util_mono_ms () - last > cfg.timeout_ms) {
                fprintf (stderr, "strata %s: no answer for %lld ms (%zu of %zu answered)\n", name,
                         (long long) cfg.timeout_ms, done, n);
                break;
            }
            continue;
        }
        last = util_mono_ms ();
        if (r == 0 && !strcmp (msg.type, reply_type)) {
            Strata__V1__Recommendations *a = (Strata__V1__Recommendations *) wire_unpack (
                &strata__v1__recommendations__descriptor, msg.payload, NULL);
            size_t i = a ? strtoull (a->request_id, NULL, 10) : n;
            if (i < n && !answers[i] && !errors[i]) {
                answers[i] = a;
                done++;
            }
            else if (a)
                strata__v1__recommendations__free_unpacked (a, NULL);
        }
        else if (r == 0 && !strcmp (msg.type, WIRE_ERROR)) {
            Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
            size_t i = e && e->ref && *e->ref ? strtoull (e->ref, NULL, 10) : n;
            if (i < n && !answers[i] && !errors[i]) {
                errors[i] = strdup (e->message);
                done++;
                failed++;
            }
            else if (e && n == 1 && !errors[0] && !answers[0]) {
                errors[0] = strdup (e->message);
                done++;
                failed++;
            }
            if (e)
                strata__v1__error__free_unpacked (e, NULL);
        }
        wire_msg_reset (&msg);
    }
    for (size_t i = 0; i < n; i++) {
        if (batch) {
            printf ("%.*s\t", (int) strcspn (keys[i], "\t"), keys[i]);
            for (size_t j = 0; answers && answers[i] && j < answers[i]->n_items; j++)
                printf (j ? ",%s" : "%s", answers[i]->items[j]->item);
            putchar ('\n');
            if (errors && errors[i])
                fprintf (stderr, "strata %s: %s: %s\n", name, keys[i], errors[i]);
        }
        else if (answers && answers[i])
            s_print_one (name, keys[i], answers[i], cfg.json);
        else
            fprintf (stderr, "strata %s: %s\n", name, errors && errors[i] ? errors[i] : "no answer");
    }
    if (batch)
        fprintf (stderr, "strata %s: %zu keys, %zu answered, %zu errors\n", name, n, done - failed, failed);
    rc = done == n && (batch || failed == 0) ? 0 : 1;
    for (size_t i = 0; i < n; i++) {
        if (answers && answers[i])
            strata__v1__recommendations__free_unpacked (answers[i], NULL);
        if (errors)
            free (errors[i]);
        free (keys[i]);
    }
    free (answers);
    free (errors);
    free (keys);
    zsock_destroy (&s);
    s_parts_free (&parts);
    config_free (s_keys, &cfg);
    return rc;
}

int
recommend_main (int argc, char **argv)
{
    return s_run (argc, argv, KIND_RECOMMEND);
}

int
similar_main (int argc, char **argv)
{
    return s_run (argc, argv, KIND_SIMILAR);
}

int
search_main (int argc, char **argv)
{
    return s_run (argc, argv, KIND_SEARCH);
}
