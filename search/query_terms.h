/*  query_terms: what searchers went on to choose, the learned part of search relevance
    ("a query whose past searchers bought X should rank X higher").

    From users' histories in time order: after a SEARCH, each item the same user
    clicks (weight 1), puts in the cart (2) or purchases (3) before the next search and
    within SEARCH_CREDIT_MS credits every term of the search's query (tokenize.h,
    stemmed). The weights are summed per (term, item). Terms rather than whole queries,
    so that what was learned carries over to queries never seen before that share words.
    The same structure keyed by whole queries records the choices themselves.
*/
#ifndef STRATA_QUERY_TERMS_H
#define STRATA_QUERY_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "strata.pb-c.h"
#include "strata_error.h"

#define SEARCH_CREDIT_MS (60 * 60 * 1000)

typedef struct {
    uint32_t n;            // distinct terms, sorted
    char **terms;
    uint32_t *off;         // n + 1: term k's items are items[off[k] .. off[k+1])
    uint32_t *items;
    float *weights;
} query_terms_t;

typedef struct _qt_builder_t qt_builder_t;

qt_builder_t *qt_builder_new (void);
void qt_builder_destroy (qt_builder_t **self_p);

//  One event of `user`; call in time order within a user. 0 or STRATA_ENOMEM.
int qt_builder_event (qt_builder_t *self, uint32_t user, const Strata__V1__Interaction *x);

//  The associations so far (NULL on no memory); the builder may be destroyed after.
query_terms_t *qt_builder_finish (qt_builder_t *self);

//  The same credit per whole query (the search's text as typed) instead of per term:
//  which items were chosen after which queries, what the learned search ranker is
//  fitted to (search_rank.h). NULL on no memory.
query_terms_t *qt_builder_choices (qt_builder_t *self);

//  From arrays of n (term, item, weight) triples (terms in any order, repeats summed).
query_terms_t *query_terms_from (const char *const *terms, const uint32_t *items, const float *weights, size_t n);

void query_terms_destroy (query_terms_t **self_p);

//  The index of a term, or -1.
int64_t query_terms_find (const query_terms_t *self, const char *term);

#endif
