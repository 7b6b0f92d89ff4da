/*  snapshot: see snapshot.h. */
#include "snapshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_LEN 12

//  Bytes of the terms section.
static size_t
s_terms_bytes (const query_terms_t *t)
{
    size_t n = 0;
    for (uint32_t k = 0; t && k < t->n; k++)
        n += 1 + strlen (t->terms[k]) + 4 + (size_t) (t->off[k + 1] - t->off[k]) * 8;
    return n;
}

uint8_t *
snapshot_build (model_t *m, uint64_t version, const float *popularity, const snapshot_search_t *search, json_t *meta,
                size_t *len)
{
    const query_terms_t *terms = search ? search->terms : NULL;
    const float *conversions = search ? search->conversions : NULL;
    const model_config_t *c = model_config (m);
    const float *vectors = model_item_vectors (m);
    if (!vectors)
        return NULL;
    uint32_t items = model_rows (m);
    size_t dense = model_dense_size (m);
    json_t *widths = json_array ();
    for (int k = 0; c->rank_negatives > 0 && k < c->rank_layers; k++)
        json_array_append_new (widths, json_integer (c->rank_widths[k]));
    size_t tbytes = s_terms_bytes (terms);
    uint32_t frows = c->feature_rows > 0 ? model_feature_rows (m) : 0;
    json_t *h = json_pack ("{s:I, s:i, s:i, s:i, s:i, s:i, s:o, s:I, s:I, s:I, s:I, s:O}", "version", (json_int_t) version,
                           "dim", c->dim, "max_len", c->max_len, "blocks", c->blocks, "ffn", c->ffn, "rank_negatives",
                           c->rank_negatives, "rank_widths", widths, "items", (json_int_t) items, "dense",
                           (json_int_t) dense, "feature_rows", (json_int_t) frows, "terms_bytes", (json_int_t) tbytes,
                           "meta", meta ? meta : json_object ());
    if (h && conversions)
        json_object_set_new (h, "conversions", json_true ());
    if (h && search && search->ranker) {
        json_t *w = json_array ();
        for (int k = 0; k < SEARCH_FEATURES; k++)
            json_array_append_new (w, json_real (search->ranker[k]));
        json_object_set_new (h, "search_ranker", w);
    }
    char *text = h ? json_dumps (h, JSON_COMPACT) : NULL;
    json_decref (h);
    if (!text)
        return NULL;
    uint32_t hlen = (uint32_t) strlen (text);
    size_t head = MAGIC_LEN + 4 + ((hlen + 3) & ~3u);
    size_t floats = dense + (size_t) items * c->dim + items + (size_t) frows * c->dim + (conversions ? items : 0);
    uint8_t *blob = calloc (1, head + floats * sizeof (float) + tbytes);
    if (!blob) {
        free (text);
        return NULL;
    }
    memcpy (blob, SNAPSHOT_MAGIC, MAGIC_LEN);
    uint8_t le[4] = { (uint8_t) hlen, (uint8_t) (hlen >> 8), (uint8_t) (hlen >> 16), (uint8_t) (hlen >> 24) };
    memcpy (blob + MAGIC_LEN, le, 4);
    memcpy (blob + MAGIC_LEN + 4, text, hlen);
    free (text);
    float *f = (float *) (blob + head);
    model_dense_get (m, f);
    memcpy (f + dense, vectors, (size_t) items * c->dim * sizeof (float));
    memcpy (f + dense + (size_t) items * c->dim, popularity, items * sizeof (float));
    if (frows)
        memcpy (f + dense + (size_t) items * (c->dim + 1), model_feature_weights (m, NULL),
                (size_t) frows * c->dim * sizeof (float));
    if (conversions)
        memcpy (f + dense + (size_t) items * (c->dim + 1) + (size_t) frows * c->dim, conversions,
                items * sizeof (float));
    uint8_t *p = blob + head + floats * sizeof (float);
    for (uint32_t k = 0; terms && k < terms->n; k++) {
        size_t tl = strlen (terms->terms[k]);
        uint32_t cnt = terms->off[k + 1] - terms->off[k];
        *p++ = (uint8_t) tl;
        memcpy (p, terms->terms[k], tl);
        p += tl;
        memcpy (p, &cnt, 4);
        p += 4;
        for (uint32_t j = terms->off[k]; j < terms->off[k + 1]; j++) {
            memcpy (p, &terms->items[j], 4);
            memcpy (p + 4, &terms->weights[j], 4);
            p += 8;
        }
    }
    *len = head + floats * sizeof (float) + tbytes;
    return blob;
}

static int
s_int (json_t *h, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    json_t *v = json_object_get (h, key);
    if (!json_is_integer (v) || json_integer_value (v) < lo || json_integer_value (v) > hi)
        return -1;
    *out = json_integer_value (v);
    return 0;
}

//  Parses the terms section. 0 or -1 (malformed, an item out of range, no memory).
static int
s_load_terms (const uint8_t *p, size_t len, uint32_t items, query_terms_t **out)
{
    //  Two passes: count the triples, then collect them.
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char **terms = NULL;
        uint32_t *its = NULL;
        float *ws = NULL;
        char (*buf)[256] = NULL;
        if (pass == 1) {
            terms = malloc ((n ? n : 1) * sizeof *terms);
            its = malloc ((n ? n : 1) * sizeof *its);
            ws = malloc ((n ? n : 1) * sizeof *ws);
            buf = malloc ((n ? n : 1) * sizeof *buf);
            if (!terms || !its || !ws || !buf) {
                free (terms);
                free (its);
                free (ws);
                free (buf);
                return -1;
            }
        }
        size_t at = 0, k = 0;
        int bad = 0;
        while (at < len && !bad) {
            size_t tl = p[at++];
            uint32_t cnt;
            if (at + tl + 4 > len) {
                bad = 1;
                break;
            }
            const uint8_t *term = p + at;
            at += tl;
            memcpy (&cnt, p + at, 4);
            at += 4;
            if ((size_t) cnt * 8 > len - at) {
                bad = 1;
                break;
            }
            for (uint32_t j = 0; j < cnt; j++, k++) {
                uint32_t item;
                memcpy (&item, p + at, 4);
                if (item >= items)
                    bad = 1;
                if (pass == 1 && !bad) {
                    memcpy (buf[k], term, tl);
                    buf[k][tl] = 0;
                    terms[k] = buf[k];
                    its[k] = item;
                    memcpy (&ws[k], p + at + 4, 4);
                }
                at += 8;
            }
        }
        if (pass == 0) {
            if (bad)
                return -1;
            n = k;
            continue;
        }
        *out = bad ? NULL : query_terms_from (terms, its, ws, n);
        free (terms);
        free (its);
        free (ws);
        free (buf);
        return *out ? 0 : -1;
    }
    return -1;
}

model_t *
snapshot_load (const uint8_t *blob, size_t len, int batch, snapshot_info_t *info, char *err, size_t errlen)
{
    memset (info, 0, sizeof *info);
    if (len < MAGIC_LEN + 4 || memcmp (blob, SNAPSHOT_MAGIC, MAGIC_LEN)) {
        snprintf (err, errlen, "not a model snapshot");
        return NULL;
    }
    uint32_t hlen = (uint32_t) blob[MAGIC_LEN] | (uint32_t) blob[MAGIC_LEN + 1] << 8
                  | (uint32_t) blob[MAGIC_LEN + 2] << 16 | (uint32_t) blob[MAGIC_LEN + 3] << 24;
    size_t head = MAGIC_LEN + 4 + (((size_t) hlen + 3) & ~(size_t) 3);
    if (head > len) {
        snprintf (err, errlen, "snapshot header runs past the end");
        return NULL;
    }
    json_error_t jerr;
    json_t *h = json_loadb ((const char *) blob + MAGIC_LEN + 4, hlen, 0, &jerr);
    int64_t version, dim, max_len, blocks, ffn, rank_neg, items, dense, tbytes, frows = 0;
    if (!h || s_int (h, "version", 0, INT64_MAX, &version) < 0 || s_int (h, "dim", 1, 4096, &dim) < 0
        || s_int (h, "max_len", 1, 10000, &max_len) < 0 || s_int (h, "blocks", 0, 64, &blocks) < 0
        || s_int (h, "ffn", 1, 65536, &ffn) < 0 || s_int (h, "rank_negatives", 0, 256, &rank_neg) < 0
        || s_int (h, "items", 0, 1LL << 31, &items) < 0 || s_int (h, "dense", 0, 1LL << 40, &dense) < 0
        || s_int (h, "terms_bytes", 0, 1LL << 40, &tbytes) < 0
        || (json_object_get (h, "feature_rows") && s_int (h, "feature_rows", 0, 1LL << 28, &frows) < 0)) {
        snprintf (err, errlen, "snapshot header is not valid: %s", h ? "a field is missing or out of range" : jerr.text);
        json_decref (h);
        return NULL;
    }
    model_config_t c;
    model_config_default (&c);
    c.dim = (int) dim;
    c.max_len = (int) max_len;
    c.blocks = (int) blocks;
    c.ffn = (int) ffn;
    c.dropout = 0;
    c.batch = batch;
    c.feature_rows = 0;
    c.inference = 1;
    c.rank_negatives = (int) rank_neg;
    json_t *widths = json_object_get (h, "rank_widths");
    c.rank_layers = (int) json_array_size (widths);
    if (rank_neg > 0 && (c.rank_layers < 1 || c.rank_layers > MODEL_RANK_MAX_LAYERS)) {
        snprintf (err, errlen, "snapshot ranking head has %d layers", c.rank_layers);
        json_decref (h);
        return NULL;
    }
    for (int k = 0; k < c.rank_layers && k < MODEL_RANK_MAX_LAYERS; k++) {
        json_int_t w = json_integer_value (json_array_get (widths, (size_t) k));
        if (w < 1 || w > 4096) {
            snprintf (err, errlen, "snapshot ranking head width out of range");
            json_decref (h);
            return NULL;
        }
        c.rank_widths[k] = (int) w;
    }
    bool conversions = json_is_true (json_object_get (h, "conversions"));
    json_t *ranker = json_object_get (h, "search_ranker");
    if (ranker && json_array_size (ranker) != SEARCH_FEATURES) {
        //  A ranker over other features (another release): search goes without it.
        ranker = NULL;
    }
    for (size_t k = 0; ranker && k < SEARCH_FEATURES; k++) {
        json_t *v = json_array_get (ranker, k);
        if (!json_is_number (v) || !isfinite (json_number_value (v))) {
            snprintf (err, errlen, "snapshot search ranker weights are not numbers");
            json_decref (h);
            return NULL;
        }
        info->ranker[k] = (float) json_number_value (v);
    }
    info->has_ranker = ranker != NULL;
    size_t floats = (size_t) dense + (size_t) items * (size_t) dim + (size_t) items + (size_t) frows * (size_t) dim
                  + (conversions ? (size_t) items : 0);
    if (len - head != floats * sizeof (float) + (size_t) tbytes) {
        snprintf (err, errlen, "snapshot holds %zu bytes of weights and terms, its header says %zu", len - head,
                  floats * sizeof (float) + (size_t) tbytes);
        json_decref (h);
        return NULL;
    }
    model_t *m = model_new (&c, (uint32_t) items);
    if (!m || model_dense_size (m) != (size_t) dense) {
        snprintf (err, errlen, m ? "snapshot dense size does not match its shape" : "out of memory for the model");
        model_destroy (&m);
        json_decref (h);
        return NULL;
    }
    const float *f = (const float *) (blob + head);
    model_dense_set (m, f);
    memcpy (model_row_weights (m, NULL), f + dense, (size_t) items * (size_t) dim * sizeof (float));
    info->popularity = malloc ((items ? (size_t) items : 1) * sizeof (float));
    if (!info->popularity) {
        model_destroy (&m);
        json_decref (h);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    memcpy (info->popularity, f + dense + (size_t) items * (size_t) dim, (size_t) items * sizeof (float));
    if (frows) {
        info->features = malloc ((size_t) frows * (size_t) dim * sizeof (float));
        if (!info->features) {
            free (info->popularity);
            info->popularity = NULL;
            model_destroy (&m);
            json_decref (h);
            snprintf (err, errlen, "out of memory");
            return NULL;
        }
        memcpy (info->features, f + dense + (size_t) items * (size_t) (dim + 1),
                (size_t) frows * (size_t) dim * sizeof (float));
        info->feature_rows = (uint32_t) frows;
    }
    if (conversions) {
        info->conversions = malloc ((items ? (size_t) items : 1) * sizeof (float));
        if (!info->conversions) {
            snapshot_info_free (info);
            model_destroy (&m);
            json_decref (h);
            snprintf (err, errlen, "out of memory");
            return NULL;
        }
        memcpy (info->conversions, f + dense + (size_t) items * (size_t) (dim + 1) + (size_t) frows * (size_t) dim,
                (size_t) items * sizeof (float));
    }
    if (s_load_terms (blob + head + floats * sizeof (float), (size_t) tbytes, (uint32_t) items, &info->terms) < 0) {
        snprintf (err, errlen, "snapshot search terms are malformed");
        snapshot_info_free (info);
        model_destroy (&m);
        json_decref (h);
        return NULL;
    }
    info->version = (uint64_t) version;
    info->items = (uint32_t) items;
    info->dim = (int) dim;
    info->meta = json_incref (json_object_get (h, "meta"));
    json_decref (h);
    return m;
}

void
snapshot_info_free (snapshot_info_t *info)
{
    free (info->popularity);
    free (info->features);
    free (info->conversions);
    query_terms_destroy (&info->terms);
    json_decref (info->meta);
    memset (info, 0, sizeof *info);
}
