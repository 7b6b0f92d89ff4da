/*  ivf: an approximate maximum-inner-product index over item vectors, for catalogues
    too large to score whole for every request.

    The vectors are clustered by k-means (Euclidean, trained on a sample, seeded, so
    the same vectors give the same index) into cells; each cell's items are stored
    together, their vectors packed contiguously (8-bit codes, score.h). A query scores every cell's centroid
    by inner product, then scores the items of its `probe` best cells: a candidate
    list, from which the caller selects (filters, exclusions, top k). The items are
    scored by the packed 8-bit scan (score.h), each cell laid out from a block of its
    own: within ivf_bound of the exact inner products, so the caller rescores exactly
    the few near its top, as exact retrieval does. With probe = cells the candidates
    are the whole catalogue.

    Not thread-safe: a search uses scratch kept in the index.
*/
#ifndef STRATA_IVF_H
#define STRATA_IVF_H

#include <stddef.h>
#include <stdint.h>

#include "strata_error.h"

typedef struct {
    uint32_t cells;    // k-means cells (0: about sqrt(n), at least 1)
    uint32_t sample;   // training points per cell (64); the whole set when fewer
    int iters;         // k-means iterations (10)
    uint64_t seed;
} ivf_params_t;

void ivf_params_default (ivf_params_t *p);

typedef struct _ivf_t ivf_t;

//  Builds the index over n vectors of dim floats (row-major; copied). NULL on no
//  memory or n == 0.
ivf_t *ivf_build (const float *vectors, uint32_t n, int dim, const ivf_params_t *p);
void ivf_destroy (ivf_t **self_p);

//  The index as bytes (malloc'd, *len of them): its cells and their members, not the
//  vectors. NULL on no memory.
uint8_t *ivf_save (const ivf_t *self, size_t *len);

//  An index from ivf_save's bytes over the same n vectors of dim floats (copied in
//  cell order). NULL when the bytes do not describe an index of that shape (*rc
//  STRATA_ECORRUPT) or memory runs out (STRATA_ENOMEM); rc may be NULL.
ivf_t *ivf_load (const uint8_t *bytes, size_t len, const float *vectors, uint32_t n, int dim, int *rc);

uint32_t ivf_cells (const ivf_t *self);
uint32_t ivf_size (const ivf_t *self);
//  Items in cell c.
uint32_t ivf_cell_size (const ivf_t *self, uint32_t c);

//  The most candidates a search with `probe` cells can return (the probe largest
//  cells' sizes summed): a sufficient cap.
uint32_t ivf_max_candidates (const ivf_t *self, uint32_t probe);

//  For each of nq queries (nq x dim, row-major): the items of its probe best cells and
//  their inner products with the query (within ivf_bound of exact), into items/scores
//  + q * cap (at most cap each), their count into counts[q]. 0, or STRATA_ENOMEM.
int ivf_search (ivf_t *self, const float *queries, uint32_t nq, uint32_t probe, uint32_t *items, float *scores,
                uint32_t cap, uint32_t *counts);

//  The largest difference between a search's score for query q (dim floats) and the
//  exact inner product.
float ivf_bound (const ivf_t *self, const float *q);

//  The exact top k of each of nq queries over n vectors of dim floats (an index's):
//  out[q * k ..] item ids, best first (-1 past the catalogue's end): the truth
//  ivf_recall measures against. 0, or STRATA_ENOMEM.
int ivf_exact_top (const float *vectors, uint32_t n, int dim, const float *queries, uint32_t nq, int k, int32_t *out);

//  Mean recall@k of the index with probe cells for nq queries: the share of each
//  exact top k (from ivf_exact_top) that the candidates contain. Negative on no
//  memory.
double ivf_recall (ivf_t *self, const float *queries, uint32_t nq, uint32_t probe, int k, const int32_t *exact);

#endif
