/*  step_session: training in one process, for offline evaluation, benchmarks and
    tests. The same code as the cluster's: the plan's shards (plan.h) computed in turn
    by step_compute (model/step.h) on a compute model and aggregated into the master
    by agg.h, so a session and a synchronous cluster run do the same arithmetic.
*/
#ifndef STRATA_STEP_SESSION_H
#define STRATA_STEP_SESSION_H

#include <stdint.h>

#include "agg.h"
#include "dataset.h"
#include "item_features.h"
#include "model.h"
#include "plan.h"
#include "step.h"

//  One epoch in process: every step's shards computed in turn on `local`, then
//  applied to the master. Returns the mean loss per predicted position (NAN on no
//  memory).
double step_session_run (agg_t *self, model_t *local, plan_t *plan, uint32_t epoch);

//  In-process training as a whole (offline evaluation, benchmarks, tests): a master
//  model, a compute model, an aggregator and a plan over train (borrowed).
typedef struct {
    model_t *master;
    model_t *local;
    agg_t *agg;
    plan_t *plan;
    uint32_t epoch;   // epochs done
} step_session_t;

//  features (borrowed, may be NULL): the catalogue's, for the item tower. 0 or
//  STRATA_ENOMEM (the session is left empty).
int step_session_init (step_session_t *self, const model_config_t *mc, const plan_config_t *pc,
                       const dataset_t *train, const features_t *features);
double step_session_epoch (step_session_t *self);
void step_session_fini (step_session_t *self);

#endif
