/*  The broker's worker pool: least-loaded choice, idle workers taking turns, slots
    freed on completion and jobs handed back when a worker goes. */
#include <criterion/criterion.h>
#include <czmq.h>

#include "pool.h"

static pool_worker_t *
s_add (pool_t *p, const char *id, Strata__V1__Role role, uint32_t capacity)
{
    Strata__V1__WorkerHello h = STRATA__V1__WORKER_HELLO__INIT;
    h.worker_id = (char *) id;
    h.role = role;
    h.capacity = capacity;
    zframe_t *identity = zframe_new (id, strlen (id));
    pool_worker_t *w = pool_register (p, identity, &h, NULL, NULL);
    zframe_destroy (&identity);
    cr_assert_not_null (w);
    return w;
}

static uint64_t s_requeued[8];
static int s_n_requeued;

static void
s_requeue (uint64_t seq, void *arg)
{
    (void) arg;
    s_requeued[s_n_requeued++] = seq;
}

Test (pool, least_loaded_then_turns)
{
    pool_t *p = pool_new (1000, 3);
    pool_worker_t *a = s_add (p, "rank-a", STRATA__V1__ROLE__RANK, 4);
    pool_worker_t *b = s_add (p, "rank-b", STRATA__V1__ROLE__RANK, 4);
    s_add (p, "prep", STRATA__V1__ROLE__PREPROCESS, 4);
    //  Jobs answered at once (both idle every time): the two workers alternate.
    int by_a = 0, by_b = 0;
    for (uint64_t seq = 1; seq <= 10; seq++) {
        pool_worker_t *w = pool_least_loaded (p, STRATA__V1__ROLE__RANK);
        cr_assert (w == a || w == b, "a rank job went to a worker of another role");
        pool_assign (p, w, seq);
        cr_assert_eq (pool_complete (p, seq), w);
        by_a += w == a;
        by_b += w == b;
    }
    cr_expect_eq (by_a, 5, "idle workers take turns (a got %d of 10)", by_a);
    cr_expect_eq (by_b, 5);
    //  Load decides before turns: a busy worker is passed over until it is full.
    pool_assign (p, a, 100);
    pool_assign (p, a, 101);
    cr_expect_eq (pool_least_loaded (p, STRATA__V1__ROLE__RANK), b);
    pool_assign (p, b, 102);
    cr_expect_eq (pool_least_loaded (p, STRATA__V1__ROLE__RANK), b, "b holds 1 job, a 2");
    pool_assign (p, b, 103);
    pool_assign (p, b, 104);
    pool_assign (p, b, 105);
    cr_expect_eq (pool_least_loaded (p, STRATA__V1__ROLE__RANK), a, "b is full");
    pool_assign (p, a, 106);
    pool_assign (p, a, 107);
    cr_expect_null (pool_least_loaded (p, STRATA__V1__ROLE__RANK), "every slot taken");
    //  A worker that goes hands its jobs back.
    pool_remove (p, b, s_requeue, NULL);
    cr_expect_eq (s_n_requeued, 4);
    cr_expect_eq (pool_count (p, STRATA__V1__ROLE__RANK), 1u);
    cr_expect_eq (pool_complete (p, 100), a);
    cr_expect_eq (pool_least_loaded (p, STRATA__V1__ROLE__RANK), a);
    pool_destroy (&p);
}

Test (pool, unanswered_messages_hold_a_worker_back)
{
    pool_t *p = pool_new (1000, 3);
    pool_worker_t *a = s_add (p, "rank-a", STRATA__V1__ROLE__RANK, 8);
    pool_worker_t *b = s_add (p, "rank-b", STRATA__V1__ROLE__RANK, 8);
    //  a holds two unanswered messages: with a limit of 2 only b is open to more.
    pool_assign (p, a, 1);
    pool_assign (p, a, 2);
    a->messages = 2;
    pool_assign (p, b, 3);
    pool_assign (p, b, 4);
    pool_assign (p, b, 5);
    b->messages = 1;
    cr_expect_eq (pool_least_loaded (p, STRATA__V1__ROLE__RANK), a, "no limit: the fewest jobs");
    cr_expect_eq (pool_least_loaded_within (p, STRATA__V1__ROLE__RANK, 2, NULL), b, "a's pipeline is full");
    b->messages = 2;
    cr_expect_null (pool_least_loaded_within (p, STRATA__V1__ROLE__RANK, 2, NULL), "both pipelines full");
    cr_expect_eq (pool_least_loaded_within (p, STRATA__V1__ROLE__RANK, 3, NULL), a, "a higher limit opens them");
    //  A worker with nothing in flight is open whatever its count says, and the count
    //  starts again.
    cr_expect_eq (pool_complete (p, 1), a);
    cr_expect_eq (pool_complete (p, 2), a);
    cr_expect_eq (pool_least_loaded_within (p, STRATA__V1__ROLE__RANK, 2, NULL), a);
    cr_expect_eq (a->messages, 0u);
    //  A worker that goes and comes back starts with no messages counted.
    pool_remove (p, b, s_requeue, NULL);
    b = s_add (p, "rank-b", STRATA__V1__ROLE__RANK, 8);
    cr_expect_eq (b->messages, 0u);
    pool_destroy (&p);
}

Test (pool, a_worker_that_reconnects_hands_back_its_old_jobs_at_once)
{
    pool_t *p = pool_new (1000, 3);
    Strata__V1__WorkerHello h = STRATA__V1__WORKER_HELLO__INIT;
    h.worker_id = "rank-1";
    h.role = STRATA__V1__ROLE__RANK;
    h.capacity = 4;
    h.pid = 4242;
    zframe_t *first = zframe_new ("conn-1", 6), *second = zframe_new ("conn-2", 6);
    pool_worker_t *w = pool_register (p, first, &h, s_requeue, NULL);
    cr_assert_not_null (w);
    pool_assign (p, w, 7);
    pool_assign (p, w, 8);
    s_n_requeued = 0;
    //  Another process with the same id is another worker; the same process on a new
    //  connection replaces its old one.
    h.pid = 4243;
    cr_assert_not_null (pool_register (p, second, &h, s_requeue, NULL));
    cr_expect_eq (s_n_requeued, 0);
    cr_expect_eq (pool_size (p), 2u);
    h.pid = 4242;
    zframe_t *third = zframe_new ("conn-3", 6);
    pool_worker_t *again = pool_register (p, third, &h, s_requeue, NULL);
    cr_assert_not_null (again);
    cr_expect_eq (s_n_requeued, 2, "the old connection's jobs were not handed back");
    cr_expect (s_requeued[0] == 7 || s_requeued[1] == 7);
    cr_expect_null (pool_lookup (p, first), "the old connection is still registered");
    cr_expect_eq (pool_size (p), 2u);
    zframe_destroy (&first);
    zframe_destroy (&second);
    zframe_destroy (&third);
    pool_destroy (&p);
}
