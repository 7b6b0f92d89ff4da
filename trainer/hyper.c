/*  hyper: see hyper.h. */
#include "hyper.h"

#include <stdio.h>

int
hyper_configs (const hyper_t *h, model_config_t *mc, plan_config_t *pc, char *err, size_t errlen)
{
    model_config_default (mc);
    plan_config_default (pc);
    mc->dim = (int) h->dim;
    mc->blocks = (int) h->blocks;
    mc->max_len = (int) h->max_len;
    mc->ffn = (int) h->dim * 2;
    mc->batch = (int) h->batch;
    mc->dropout = (float) h->dropout;
    mc->lr = (float) h->lr;
    mc->seed = (uint64_t) h->seed;
    mc->feature_rows = (int) h->feature_rows;
    pc->batch = (int) h->batch;
    pc->max_len = (int) h->max_len;
    pc->seed = (uint64_t) h->seed;
    pc->negatives = (int) h->negatives;
    pc->alpha = (float) h->alpha;
    pc->shards = h->shards > 0 ? (int) h->shards : 1;
    int s = plan_sampler_parse (h->sampler ? h->sampler : "popularity");
    if (s < 0) {
        snprintf (err, errlen, "unknown sampler '%s' (uniform or popularity)", h->sampler);
        return -1;
    }
    pc->sampler = (plan_sampler_t) s;
    return 0;
}
