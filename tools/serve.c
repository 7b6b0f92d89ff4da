/*  serve: `strata recommend`, `strata similar` and `strata search`, one key (user,
    item, query) from the command line or many from a file (one per line; "-" reads
    stdin), through the broker's api endpoint. A batch keeps up to `inflight` requests
    in flight on one connection and writes TSV lines `key<TAB>item1,item2,...` in input
    order (an empty list and a message on stderr for a key that got an Error). A
    search line may carry candidates, `query<TAB>item1,item2,...`: only those items
    are ranked. The requests go through the client library's request calls
    (strata.h), as any storefront's would.
*/
#include "serve.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "config.h"
#include "strata.h"

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

typedef enum { KIND_RECOMMEND, KIND_SIMILAR, KIND_SEARCH } kind_t;

//  What every request of a run shares: the filters and the session's recent events.
typedef struct {
    strata_filters_t f;
    char **exclude;
    size_t n_exclude;
    char **recent_ids;
    strata_recent_t *recent;
    size_t n_recent;
} request_parts_t;

static void
s_parts (const serve_cfg_t *cfg, request_parts_t *p)
{
    memset (p, 0, sizeof *p);
    p->f.exclude_all_seen = cfg->exclude_seen;
    p->f.include_purchased = cfg->include_purchased;
    p->f.category = cfg->category;
    p->f.has_min_price = cfg->min_price >= 0;
    p->f.min_price = cfg->min_price;
    p->f.has_max_price = cfg->max_price >= 0;
    p->f.max_price = cfg->max_price;
    p->exclude = s_split (cfg->exclude, &p->n_exclude);
    p->f.exclude = (const char *const *) p->exclude;
    p->f.n_exclude = p->n_exclude;
    p->recent_ids = s_split (cfg->recent, &p->n_recent);
    if (p->n_recent && (p->recent = calloc (p->n_recent, sizeof *p->recent)))
        for (size_t i = 0; i < p->n_recent; i++)
            p->recent[i] = (strata_recent_t) { p->recent_ids[i], "view" };
}

static void
s_parts_free (request_parts_t *p)
{
    s_free_list (p->exclude, p->n_exclude);
    s_free_list (p->recent_ids, p->n_recent);
    free (p->recent);
}

//  Sends the request for `key` (a user, an item, a query with optional candidates after
//  a tab); user: the searching user (may be empty).
static int
s_send (strata_client_t *client, kind_t kind, const char *key, const serve_cfg_t *cfg, request_parts_t *p,
        uint64_t *id)
{
    int timeout = (int) cfg->timeout_ms;
    if (kind == KIND_SEARCH) {
        const char *tab = strchr (key, '\t');
        char *query = tab ? strndup (key, (size_t) (tab - key)) : strdup (key);
        size_t nc = 0;
        char **cands = tab ? s_split (tab + 1, &nc) : NULL;
        strata_search_t q = { .query = query, .user_id = cfg->user, .k = (uint32_t) cfg->k, .filters = &p->f,
                              .candidates = (const char *const *) cands, .n_candidates = nc,
                              .text_only = cfg->text_only };
        int rc = query ? strata_client_send_search (client, &q, timeout, id) : STRATA_ENOMEM;
        s_free_list (cands, nc);
        free (query);
        return rc;
    }
    if (kind == KIND_SIMILAR) {
        strata_similar_t q = { .item_id = key, .k = (uint32_t) cfg->k, .filters = &p->f };
        return strata_client_send_similar (client, &q, timeout, id);
    }
    strata_recommend_t q = { .user_id = key, .k = (uint32_t) cfg->k, .filters = &p->f, .recent = p->recent,
                             .n_recent = p->recent ? p->n_recent : 0 };
    return strata_client_send_recommend (client, &q, timeout, id);
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
s_print_one (const char *type, const char *key, const strata_reply_t *r, bool json)
{
    if (json) {
        json_t *items = json_array ();
        for (size_t i = 0; i < r->n_items; i++)
            json_array_append_new (items, json_pack ("{s:s, s:f, s:s}", "item", r->items[i].item_id, "score",
                                                     (double) r->items[i].score, "title", r->items[i].title));
        json_t *o = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:o}", "request", type, "key", key, "model_version",
                               (json_int_t) r->model_version, "source", r->source, "worker", r->served_by, "items",
                               items);
        char *text = json_dumps (o, JSON_COMPACT);
        printf ("%s\n", text);
        free (text);
        json_decref (o);
        return;
    }
    printf ("# %s %s: model version %llu, %s, from %s\n", type, key, (unsigned long long) r->model_version, r->source,
            r->served_by);
    for (size_t i = 0; i < r->n_items; i++)
        printf ("%3zu  %-16s %9.4f  %s\n", i + 1, r->items[i].item_id, (double) r->items[i].score, r->items[i].title);
}

//  The key a request id was sent for: ids grow with every send, so ids[] is sorted.
static size_t
s_key_of (const uint64_t *ids, size_t sent, uint64_t id)
{
    size_t lo = 0, hi = sent;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sent && ids[lo] == id ? lo : SIZE_MAX;
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
    strata_client_opts_t opts = { .timeout_ms = (int) cfg.timeout_ms };
    strata_client_t *client = strata_client_new (eps.api, &opts);
    strata_reply_t **answers = calloc (n ? n : 1, sizeof *answers);
    char **errors = calloc (n ? n : 1, sizeof *errors);
    uint64_t *ids = calloc (n ? n : 1, sizeof *ids);
    size_t sent = 0, done = 0, failed = 0;
    bool timed_out = false;
    while (client && answers && errors && ids && done < n && !timed_out && !zsys_interrupted) {
        while (sent < n && sent - done < (size_t) cfg.inflight) {
            int r = s_send (client, kind, keys[sent], &cfg, &parts, &ids[sent]);
            if (r < 0) {
                //  Refused before it was sent (a key the protocol cannot carry).
                errors[sent] = strdup (strata_client_error (client));
                done++;
                failed++;
            }
            sent++;
        }
        strata_reply_t *reply = NULL;
        int r = strata_client_recv (client, -1, &reply);
        if (r == STRATA_ESTATE)
            continue;   // nothing in flight: every key sent so far was refused
        if (r < 0)
            break;      // interrupted
        size_t i = s_key_of (ids, sent, reply->request_id);
        if (reply->status == STRATA_ETIMEOUT) {
            fprintf (stderr, "strata %s: no answer for %lld ms (%zu of %zu answered)\n", name,
                     (long long) cfg.timeout_ms, done, n);
            timed_out = true;
        }
        else if (i < n && reply->status == STRATA_OK) {
            answers[i] = reply;
            reply = NULL;
            done++;
        }
        else if (i < n) {
            errors[i] = strdup (reply->error);
            done++;
            failed++;
        }
        strata_reply_destroy (&reply);
    }
    for (size_t i = 0; i < n; i++) {
        if (batch) {
            printf ("%.*s\t", (int) strcspn (keys[i], "\t"), keys[i]);
            for (size_t j = 0; answers && answers[i] && j < answers[i]->n_items; j++)
                printf (j ? ",%s" : "%s", answers[i]->items[j].item_id);
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
        if (answers)
            strata_reply_destroy (&answers[i]);
        if (errors)
            free (errors[i]);
        free (keys[i]);
    }
    free (answers);
    free (errors);
    free (ids);
    free (keys);
    strata_client_destroy (&client);
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
