/*  search: a rank worker's text index over the catalogue, scored with BM25F; the main
    header of the search library (search/: this index, the learned (query term, item)
    associations query_terms.h, and the learned ranker search_rank.h). It may depend
    on common/ only (the tokenizer, the wire schema's types).

    Every item's title, brand, category path and attributes (names and values) are
    tokenised the way the preprocess workers tokenise titles and the way queries are
    (tokenize.h: case folding, light English stemming, CJK character bigrams). A term's
    frequencies in the fields are combined before saturation, as BM25F does:

        tf~ = sum over fields f of  w_f * tf_f / (1 - b + b * len_f / avglen_f)
        score = sum over query terms t of  idf (t) * tf~ * (k1 + 1) / (k1 + tf~)

    with idf (t) = ln (1 + (N - df + 0.5) / (df + 0.5)). Items are added in index order,
    as the catalogue grows, and their text may be replaced (a catalogue update); a
    query touches only the postings of its terms.

    Learned relevance enters as one more field, the way click-through document
    expansion does: the terms of the queries whose searchers chose an item
    (query_terms.h) are that item's "queries" field, with tf log2 (1 + credited weight),
    its own length normalisation and weight. Replaced as a whole with each model
    version; left out for text-only queries.
*/
#ifndef STRATA_SEARCH_H
#define STRATA_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "query_terms.h"
#include "strata.pb-c.h"

typedef struct _search_index_t search_index_t;

enum { SEARCH_TITLE, SEARCH_BRAND, SEARCH_CATEGORY, SEARCH_ATTRIBUTES, SEARCH_FIELDS };

typedef struct {
    float k1, b;
    float weight[SEARCH_FIELDS];
    float queries_weight;      // the learned "queries" field
} search_params_t;

void search_params_default (search_params_t *p);

search_index_t *search_index_new (const search_params_t *params);
void search_index_destroy (search_index_t **self_p);

//  Indexes item number `index` (must be the next one: items come in order). 0,
//  STRATA_EINVAL (not the next index) or STRATA_ENOMEM.
int search_index_add (search_index_t *self, uint32_t index, const Strata__V1__Item *item);

//  Replaces the text of n items already indexed (indices[k] takes items[k]; an index
//  given twice takes its last record): one pass over every posting list takes their
//  old terms out, then their new ones go in. 0 or STRATA_ENOMEM (the index is left
//  without some of these items' terms).
int search_index_update (search_index_t *self, uint32_t n, const uint32_t *indices,
                         const Strata__V1__Item *const *items);

//  Items indexed.
uint32_t search_index_size (search_index_t *self);

//  Sets the learned field (borrowed: it must outlive its use; NULL: none). Items past
//  the index's are ignored.
void search_index_set_learned (search_index_t *self, const query_terms_t *terms);

//  The scores of every item matching a term of the query: fills items[] and scores[]
//  (at most cap entries, any order) and returns how many. With `only` (n_only item
//  indices), only those items are scored (re-ranking a given set); with text_only,
//  the learned field is left out.
uint32_t search_index_query (search_index_t *self, const char *query, const uint32_t *only, uint32_t n_only,
                             bool text_only, uint32_t *items, float *scores, uint32_t cap);

//  The learned ranker's view of n candidates of a query (search_rank.h): for each, in
//  out[i * SEARCH_FEATURES ..]:
//    text           its score (as retrieved) over the best candidate's;
//    coverage       the fraction of the query's terms (those some item has) it has in
//                   any text field;
//    idf_coverage   the same weighted by the terms' idf;
//    all_terms      1 when it has them all;
//    title_bigrams  the fraction of the query's adjacent token pairs found adjacent,
//                   in the same order, in its title;
//    first_term, last_term   whether it has the query's first, last term;
//    title_length   ln (1 + its title's tokens);
//    conversions    ln (1 + how often searchers chose it: conversions[item], n_conv
//                   items; NULL: none).
#define SEARCH_FEATURES 9
extern const char *const search_feature_names[SEARCH_FEATURES];
void search_index_features (search_index_t *self, const char *query, const uint32_t *items, const float *scores,
                            uint32_t n, const float *conversions, uint32_t n_conv, float *out);

#endif
