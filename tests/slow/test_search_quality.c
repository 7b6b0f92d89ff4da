/*  Slow: search quality on the Home Depot relevance judgments, through the whole
    system. The distinct products (uid, title) are imported as the catalogue. Queries
    whose FNV-1a 32-bit hash of the search_term bytes (as they stand in the file) is
    divisible by 5 are the test queries; for every other query, its judged products
    with relevance >= 2.5 are ingested as search -> purchase events, which is what the
    learned part of search relevance learns from. Over the full catalogue, on the test
    queries, BM25F alone (Search.text_only) and the blended ranking are measured in
    the same run: NDCG@10 (gain relevance - 1, unjudged products 0) and Recall@100 of
    the products with relevance >= 2.5; and NDCG@10 when only each query's judged
    products are ranked (informative: most judged products are relevant).
*/
#include <criterion/criterion.h>
#include <csv.h>
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    hcluster_stop (&s_c);
}

typedef struct {
    char *uid;
    double rel;
} judged_t;

typedef struct {
    char *term;            // UTF-8
    bool test;
    judged_t *j;
    size_t n, cap;
} query_t;

typedef struct {
    zhashx_t *by_term;     // raw term -> query_t
    char *field[8];
    size_t nf;
    bool header;
} reader_t;

static void
s_field (void *s, size_t len, void *arg)
{
    reader_t *r = arg;
    if (r->nf < 8)
        r->field[r->nf++] = strndup (s, len);
}

static void
s_row (int c, void *arg)
{
    (void) c;
    reader_t *r = arg;
    if (!r->header)
        r->header = true;
    else if (r->nf == 5) {
        const char *raw = r->field[3];
        query_t *q = zhashx_lookup (r->by_term, raw);
        if (!q) {
            q = calloc (1, sizeof *q);
            char *utf8 = malloc (2 * strlen (raw) + 1);
            util_latin1_to_utf8 (raw, strlen (raw), utf8);
            q->term = utf8;
            q->test = util_fnv1a32 (raw, strlen (raw)) % 5 == 0;
            zhashx_insert (r->by_term, raw, q);
        }
        if (q->n == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 4;
            q->j = realloc (q->j, q->cap * sizeof *q->j);
        }
        q->j[q->n].uid = strdup (r->field[1]);
        q->j[q->n].rel = atof (r->field[4]);
        q->n++;
    }
    for (size_t i = 0; i < r->nf; i++)
        free (r->field[i]);
    r->nf = 0;
}

//  The TSV answers of a batch search: query -> item list.
static zhashx_t *
s_answers (const char *path)
{
    zhashx_t *a = zhashx_new ();
    zhashx_set_destructor (a, (zhashx_destructor_fn *) zstr_free);
    FILE *f = fopen (path, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline (&line, &cap, f) > 0) {
        line[strcspn (line, "\r\n")] = 0;
        char *tab = strchr (line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        zhashx_update (a, line, strdup (tab + 1));
    }
    free (line);
    if (f)
        fclose (f);
    return a;
}

typedef struct {
    double ndcg, recall;
    int queries;
} metrics_t;

static double
s_rel (const query_t *q, const char *uid)
{
    for (size_t i = 0; i < q->n; i++)
        if (!strcmp (q->j[i].uid, uid))
            return q->j[i].rel;
    return 0;
}

static int
s_desc (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x > y ? -1 : x < y;
}

static void
s_score (zhashx_t *by_term, zhashx_t *answers, metrics_t *m)
{
    memset (m, 0, sizeof *m);
    int with_relevant = 0;
    for (query_t *q = zhashx_first (by_term); q; q = zhashx_next (by_term)) {
        if (!q->test)
            continue;
        const char *list = zhashx_lookup (answers, q->term);
        char *copy = strdup (list ? list : "");
        double dcg = 0, gains[256];
        size_t ng = 0, relevant = 0, found = 0;
        for (size_t i = 0; i < q->n && ng < 256; i++) {
            gains[ng++] = q->j[i].rel - 1;
            relevant += q->j[i].rel >= 2.5;
        }
        qsort (gains, ng, sizeof *gains, s_desc);
        double idcg = 0;
        for (size_t i = 0; i < ng && i < 10; i++)
            idcg += gains[i] / log2 (i + 2.0);
        int rank = 0;
        for (char *save = NULL, *tok = strtok_r (copy, ",", &save); tok; tok = strtok_r (NULL, ",", &save), rank++) {
            double rel = s_rel (q, tok);
            if (rank < 10 && rel > 0)
                dcg += (rel - 1) / log2 (rank + 2.0);
            if (rank < 100 && rel >= 2.5)
                found++;
        }
        free (copy);
        m->ndcg += idcg > 0 ? dcg / idcg : 0;
        m->queries++;
        if (relevant) {
            m->recall += (double) found / (double) relevant;
            with_relevant++;
        }
    }
    m->ndcg /= m->queries ? m->queries : 1;
    m->recall /= with_relevant ? with_relevant : 1;
}

static void
s_search (const char *queries, const char *out, bool text_only, const char *k)
{
    const char *argv[] = { "search", "--broker", s_c.api, "--queries", queries, "-k", k, "--timeout-ms", "60000",
                           text_only ? "--text-only" : NULL, NULL };
    pid_t pid = harness_cli_start (out, argv);
    cr_assert_eq (harness_wait (pid, 900000), 0, "batch search failed");
}

Test (quality, homedepot_search_full_catalogue, .fini = s_cleanup, .timeout = 3600)
{
    const char *csv = harness_data ("homedepot-search-relevance/train.csv");
    if (!csv)
        cr_skip_test ("../shared/data/homedepot-search-relevance/train.csv is absent");
    char path[4096];
    snprintf (path, sizeof path, "%s", csv);
    reader_t r = { .by_term = zhashx_new () };
    struct csv_parser p;
    cr_assert_eq (csv_init (&p, CSV_APPEND_NULL), 0);
    FILE *f = fopen (path, "r");
    cr_assert_not_null (f);
    char buf[65536];
    size_t got;
    while ((got = fread (buf, 1, sizeof buf, f)) > 0)
        cr_assert_eq (csv_parse (&p, buf, got, s_field, s_row, &r), got);
    csv_fini (&p, s_field, s_row, &r);
    csv_free (&p);
    fclose (f);
    size_t n_test = 0, n_train = 0;
    for (query_t *q = zhashx_first (r.by_term); q; q = zhashx_next (r.by_term))
        q->test ? n_test++ : n_train++;
    cr_log_info ("%zu test queries, %zu training queries", n_test, n_train);
    cr_assert_gt (n_test, 1000u);

    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    //  Training queries' relevant products as search -> purchase events.
    char events[700], queries[700], judged[700], out_text[700], out_blend[700], out_judged[700], out_jtext[700];
    snprintf (events, sizeof events, "%s/events.jsonl", s_c.dir);
    snprintf (queries, sizeof queries, "%s/queries.txt", s_c.dir);
    snprintf (judged, sizeof judged, "%s/judged.txt", s_c.dir);
    FILE *ev = fopen (events, "w"), *qf = fopen (queries, "w"), *jf = fopen (judged, "w");
    cr_assert (ev && qf && jf);
    long ts = 1500000000000L;
    int u = 0;
    for (query_t *q = zhashx_first (r.by_term); q; q = zhashx_next (r.by_term), u++) {
        if (q->test) {
            fprintf (qf, "%s\n", q->term);
            fprintf (jf, "%s\t", q->term);
            for (size_t i = 0; i < q->n; i++)
                fprintf (jf, i ? ",%s" : "%s", q->j[i].uid);
            fputc ('\n', jf);
            continue;
        }
        char user[32], id[48];
        snprintf (user, sizeof user, "hq%d", u);
        snprintf (id, sizeof id, "hq%d-s", u);
        json_t *e = json_pack ("{s:s, s:s, s:s, s:s, s:I}", "event_id", id, "user_id", user, "type", "search", "query",
                               q->term, "timestamp", (json_int_t) ts);
        char *line = json_dumps (e, JSON_COMPACT);
        fprintf (ev, "%s\n", line);
        free (line);
        json_decref (e);
        for (size_t i = 0; i < q->n; i++) {
            if (q->j[i].rel < 2.5)
                continue;
            snprintf (id, sizeof id, "hq%d-%zu", u, i);
            e = json_pack ("{s:s, s:s, s:s, s:s, s:I}", "event_id", id, "user_id", user, "item_id", q->j[i].uid, "type",
                           "purchase", "timestamp", (json_int_t) (ts + 60000 * (long) (i + 1)));
            line = json_dumps (e, JSON_COMPACT);
            fprintf (ev, "%s\n", line);
            free (line);
            json_decref (e);
        }
    }
    fclose (ev);
    fclose (qf);
    fclose (jf);
    const char *imp_items[] = { "import", "--broker", s_c.ingest, "--quiet", "--items", "--format=homedepot", path,
                                NULL };
    const char *imp_events[] = { "import", "--broker", s_c.ingest, "--quiet", events, NULL };
    json_decref (harness_cli_json (imp_items, NULL));
    json_decref (harness_cli_json (imp_events, NULL));
    const char *tflags[] = { "--dim=32", "--blocks=1", "--max-len=10", "--continuous=false", NULL };
    cr_assert_eq (hcluster_start_trainer (&s_c, tflags), 0);
    hcluster_add_train_worker (&s_c);
    const char *train[] = { "train", "--trainer", s_c.trainer_api, "--epochs", "2", "--wait", "--timeout-ms",
                            "600000", NULL };
    json_decref (harness_cli_json (train, NULL));
    hcluster_add_rank_worker (&s_c, 1);
    //  Wait until the rank worker serves a version (it holds the learned terms).
    const char *probe[] = { "search", "--broker", s_c.api, "drill", "--json", NULL };
    cr_assert (harness_cli_until_served (probe, 120000), "no rank worker served a model version");
    snprintf (out_text, sizeof out_text, "%s/text.tsv", s_c.dir);
    snprintf (out_blend, sizeof out_blend, "%s/blend.tsv", s_c.dir);
    snprintf (out_judged, sizeof out_judged, "%s/judged.tsv", s_c.dir);
    snprintf (out_jtext, sizeof out_jtext, "%s/judged-text.tsv", s_c.dir);
    s_search (queries, out_text, true, "100");
    s_search (queries, out_blend, false, "100");
    s_search (judged, out_judged, false, "10");
    s_search (judged, out_jtext, true, "10");
    zhashx_t *a_text = s_answers (out_text), *a_blend = s_answers (out_blend), *a_judged = s_answers (out_judged);
    zhashx_t *a_jtext = s_answers (out_jtext);
    metrics_t mt, mb, mj, mjt;
    s_score (r.by_term, a_text, &mt);
    s_score (r.by_term, a_blend, &mb);
    s_score (r.by_term, a_judged, &mj);
    s_score (r.by_term, a_jtext, &mjt);
    char report[800];
    snprintf (report, sizeof report,
              "Home Depot, %d test queries, full catalogue:\n"
              "  BM25F alone           NDCG@10 %.4f  Recall@100 %.4f\n"
              "  learned (ranker)      NDCG@10 %.4f  Recall@100 %.4f  (x%.3f)\n"
              "  judged products only  NDCG@10 %.4f learned, %.4f BM25F alone (informative)\n",
              mt.queries, mt.ndcg, mt.recall, mb.ndcg, mb.recall, mb.ndcg / (mt.ndcg > 0 ? mt.ndcg : 1), mj.ndcg,
              mjt.ndcg);
    fprintf (stderr, "%s", report);
    cr_log_info ("%s", report);
    cr_expect_gt (mt.ndcg, 0.38, "BM25F over titles fell below a plain BM25's 0.38");
    cr_expect_gt (mt.recall, 0.77, "BM25F recall fell below a plain BM25's 0.77");
    cr_expect_geq (mb.recall, mt.recall, "the learned part lost recall");
    cr_expect_geq (mb.ndcg, 1.05 * mt.ndcg, "the learned ranking gained less than 5%% NDCG@10 over BM25F alone");
    zhashx_destroy (&a_text);
    zhashx_destroy (&a_blend);
    zhashx_destroy (&a_judged);
    zhashx_destroy (&a_jtext);
    for (query_t *q = zhashx_first (r.by_term); q; q = zhashx_next (r.by_term)) {
        for (size_t i = 0; i < q->n; i++)
            free (q->j[i].uid);
        free (q->j);
        free (q->term);
        free (q);
    }
    zhashx_destroy (&r.by_term);
}
