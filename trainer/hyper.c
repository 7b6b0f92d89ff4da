/*  hyper: see hyper.h. */
#include "hyper.h"

#include <stdio.h>
#include <stdlib.h>

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
        return STRATA_EINVAL;
    }
    pc->sampler = (plan_sampler_t) s;
    s = plan_sampler_parse (h->rank_sampler ? h->rank_sampler : "popularity");
    if (s < 0) {
        snprintf (err, errlen, "unknown rank-sampler '%s' (uniform or popularity)", h->rank_sampler);
        return STRATA_EINVAL;
    }
    pc->rank_sampler = (plan_sampler_t) s;
    pc->rank_negatives = mc->rank_negatives = (int) h->rank_negatives;
    mc->rank_weight = (float) h->rank_weight;
    mc->rank_hard = (int) h->rank_hard;
    mc->rank_share = (float) h->rank_share;
    const char *w = h->rank_widths ? h->rank_widths : "128,64,32";
    mc->rank_layers = 0;
    while (*w) {
        char *end;
        long v = strtol (w, &end, 10);
        if (end == w || v < 1 || v > 4096 || mc->rank_layers == MODEL_RANK_MAX_LAYERS || (*end && *end != ',')) {
            snprintf (err, errlen, "bad rank-widths '%s' (1 to %d widths in 1..4096, comma-separated)",
                      h->rank_widths, MODEL_RANK_MAX_LAYERS);
            return STRATA_EINVAL;
        }
        mc->rank_widths[mc->rank_layers++] = (int) v;
        w = *end ? end + 1 : end;
    }
    if (mc->rank_layers == 0) {
        snprintf (err, errlen, "rank-widths is empty");
        return STRATA_EINVAL;
    }
    return 0;
}
