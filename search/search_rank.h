/*  search_rank: the learned search ranker, fitted to what searchers chose.

    A query's best SEARCH_RANK_CANDIDATES items by BM25F are re-ranked by a linear score
    w . x over their features (search.h: text score, query coverage, phrase matches,
    title length, how often searchers chose the item, ...). The weights are fitted in
    the trainer by listwise maximum likelihood: for every past query after which
    searchers chose items (query_terms.h, whole queries), the softmax of the scores
    over its candidates should put the chosen items' share of the credit where the
    searchers put it. The prior is the text score alone (w = (1, 0, ...)), with the
    weight of one past query, so that a handful of queries cannot turn text relevance
    upside down. Newton's method with a line search on the log-posterior, which is
    concave: deterministic, and a few iterations suffice.

    The conversions feature counts choices, and a query's own choices would teach the
    ranker to trust it blindly: while fitting, each query sees the counts without its
    own (leave-one-out), as a new query will at serving time.
*/
#ifndef STRATA_SEARCH_RANK_H
#define STRATA_SEARCH_RANK_H

#include <stdint.h>

#include "query_terms.h"
#include "search.h"

#define SEARCH_RANK_CANDIDATES 100
//  Past queries fitted on at most (the most credited): enough for nine weights, and it
//  bounds the fit's time on a long search log.
#define SEARCH_RANK_MAX_QUERIES 50000

typedef struct {
    float w[SEARCH_FEATURES];
    uint32_t queries;     // past queries fitted (with a chosen item among the candidates)
    double loss;          // their mean cross-entropy after fitting
    double base_loss;     // the same with the text score alone (the prior)
} search_ranker_t;

//  How often searchers chose each item (summed credit): out has n_items floats.
void search_conversions (const query_terms_t *choices, uint32_t n_items, float *out);

//  Fits the ranker on the past queries' choices over the index's text-only ranking.
//  conversions (n_items floats) is modified while fitting and restored. 0,
//  STRATA_ENOMEM, or STRATA_ENOTFOUND when no query has a chosen item among its
//  candidates (out untouched).
int search_ranker_fit (search_index_t *index, const query_terms_t *choices, float *conversions, uint32_t n_items,
                       search_ranker_t *out);

//  out[i] = w . features of candidate i.
void search_ranker_score (const float *w, const float *features, uint32_t n, float *out);

#endif
