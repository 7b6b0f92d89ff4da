/*  hyper: the model's and the schedule's settings as configuration keys, shared by
    every program that trains (strata-trainer, strata eval, bench/train) so that a flag
    means the same thing everywhere. Embed a hyper_t in the program's configuration
    struct and HYPER_CONFIG_KEYS (that struct, the member) in its key table.
*/
#ifndef STRATA_HYPER_H
#define STRATA_HYPER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "plan.h"

typedef struct {
    int64_t dim, blocks, max_len, batch, seed, negatives, shards, feature_rows, rank_negatives, rank_hard;
    double dropout, lr, alpha, rank_weight, rank_share;
    char *sampler, *rank_sampler, *rank_widths;
} hyper_t;

#define HYPER_CONFIG_KEYS(type, m)                                                                               \
    { "dim", CONFIG_INT, offsetof (type, m.dim), "64", 4, 1024, "model width" },                                \
    { "blocks", CONFIG_INT, offsetof (type, m.blocks), "2", 0, 16, "attention blocks" },                        \
    { "max-len", CONFIG_INT, offsetof (type, m.max_len), "50", 2, 1000, "history positions the model reads" },  \
    { "batch", CONFIG_INT, offsetof (type, m.batch), "128", 1, 4096, "sequences per step" },                    \
    { "dropout", CONFIG_DOUBLE, offsetof (type, m.dropout), "0.3", 0, 0.9, "dropout rate" },                    \
    { "lr", CONFIG_DOUBLE, offsetof (type, m.lr), "0.001", 1e-6, 1, "Adam learning rate" },                     \
    { "seed", CONFIG_INT, offsetof (type, m.seed), "42", 0, -1, "random seed" },                                \
    { "negatives", CONFIG_INT, offsetof (type, m.negatives), "0", 0, 1 << 24,                                   \
      "softmax candidates sampled per step (0: the whole catalogue)" },                                         \
    { "sampler", CONFIG_STRING, offsetof (type, m.sampler), "popularity", 0, -1,                                \
      "how candidates are sampled: uniform or popularity (count^alpha, log-Q corrected)" },                     \
    { "alpha", CONFIG_DOUBLE, offsetof (type, m.alpha), "0.75", 0, 1, "popularity sampler exponent" },          \
    { "feature-rows", CONFIG_INT, offsetof (type, m.feature_rows), "32768", 0, 1 << 26,                        \
      "hashed rows for catalogue features (brand, category, price, attributes, title tokens; 0: ids only)" },      \
    { "rank-negatives", CONFIG_INT, offsetof (type, m.rank_negatives), "4", 0, 256,                            \
      "ranking-head negatives per predicted position (0: no ranking head)" },                                   \
    { "rank-hard", CONFIG_INT, offsetof (type, m.rank_hard), "4", 0, 64,                                        \
      "ranking-head hard negatives per position: the items retrieval scores highest there" },                  \
    { "rank-sampler", CONFIG_STRING, offsetof (type, m.rank_sampler), "popularity", 0, -1,                      \
      "how ranking-head negatives are sampled: uniform or popularity (count^alpha)" },                          \
    { "rank-widths", CONFIG_STRING, offsetof (type, m.rank_widths), "128,64,32", 0, -1,                         \
      "hidden layer widths of the ranking MLP (1 to 4, comma-separated)" },                                     \
    { "rank-weight", CONFIG_DOUBLE, offsetof (type, m.rank_weight), "1", 0, 100,                                \
      "weight of the ranking loss in the joint objective" },                                                    \
    { "rank-share", CONFIG_DOUBLE, offsetof (type, m.rank_share), "0", 0, 1,                                    \
      "share of the ranking loss's gradient that reaches the shared towers (0: they learn from retrieval only)" }

//  Fills the model and plan configurations. 0, or STRATA_EINVAL with err (an unknown
//  sampler, bad widths).
int hyper_configs (const hyper_t *h, model_config_t *mc, plan_config_t *pc, char *err, size_t errlen);

#endif
