/*  score: the whole catalogue scored against a few user vectors, the hot loop of exact
    retrieval.

    A general matrix product (sgemm) is built for large operands: with a handful of
    queries against a catalogue of thousands of items it spends as long packing the
    catalogue into its panel layout, on every call, as computing, and its kernels waste
    most lanes on the narrow side. This module keeps the catalogue packed once, in
    blocks of 16 items stored dimension-major (block j holds, for each dimension k, the
    k-th value of items 16j .. 16j+15), so that one vector register accumulates the
    scores of 16 items while the block is read once for several queries. The kernel is
    compiled for AVX-512 VNNI, AVX-512, AVX2 + FMA and baseline x86-64, chosen when the
    table is built by the CPU (GCC target attributes).

    The table holds each value in 8 bits (item i's value k is its code c_ik times the
    item's scale s_i = max_k |v_ik| / 127): a scan reads a quarter of the bytes of the
    float vectors, so more of the table stays in cache beside the rest of the process,
    and a large catalogue's scan is bound by memory four times less. A scanned score is
    within score_table_bound of the exact inner product; the caller rescores exactly
    the few items whose scanned scores come within twice that of the best (exact
    retrieval stays exact).

    With VNNI (vpdpbusd: 64 products of 8-bit integers added into 16 sums in one
    instruction) the query too is rounded to 8-bit codes, and the table is laid out in
    groups of 4 dimensions per item, as the instruction reads them. The bound then
    covers the query's rounding as well; on Beauty's trained vectors the items
    rescored for k = 10 stay at 12 on average, with either kernel.
*/
#ifndef STRATA_SCORE_H
#define STRATA_SCORE_H

#include <stdint.h>

#include "strata_error.h"

typedef struct _score_table_t score_table_t;

//  The catalogue's n vectors of d floats (row-major), packed. NULL on no memory.
score_table_t *score_table_new (const float *vectors, uint32_t n, int d);

//  As score_table_new, with row i of the table vectors[rows[i]] (d floats), or all
//  zeros where rows[i] < 0: a table laid out for score_table_run_range (runs of rows
//  that each start on a block of 16).
score_table_t *score_table_new_rows (const float *vectors, const int64_t *rows, uint32_t n, int d);
void score_table_destroy (score_table_t **self_p);

uint32_t score_table_size (const score_table_t *self);

//  Packs rows size .. n - 1 of vectors (row-major, d floats each: the whole catalogue's
//  table, of which the first size rows are packed already) after those the table
//  holds: items added to a catalogue are scanned as its others are. Room grows by half
//  at a time. 0, or STRATA_ENOMEM (the table as it was).
int score_table_append (score_table_t *self, const float *vectors, uint32_t n);

//  Packs item i (< size) again from its d floats v: an item whose vector changed. The
//  bound stays that of the largest scale the table has held.
void score_table_set (score_table_t *self, uint32_t i, const float *v);

//  Scores every item against nq queries (nq x d, row-major): out[q * ld + i] (ld >= n)
//  is query q's inner product with item i, within score_table_bound (q) of exact.
void score_table_run (const score_table_t *self, const float *queries, uint32_t nq, float *out, uint32_t ld);

//  Scores rows first .. first + n - 1 (first a multiple of SCORE_TABLE_BLOCK) against
//  one query: out[i] is row first + i's, within score_table_bound (query) of exact.
#define SCORE_TABLE_BLOCK 16
void score_table_run_range (const score_table_t *self, const float *query, uint32_t first, uint32_t n, float *out);

//  The largest difference between a scanned score of query q (d floats) and its exact
//  inner product (that is, as computed in float).
float score_table_bound (const score_table_t *self, const float *q);

#endif
