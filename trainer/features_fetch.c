/*  features_fetch: see features_fetch.h. */
#include "features_fetch.h"

#include <stdbool.h>
#include <stdio.h>

#include "request.h"
#include "wire.h"

features_t *
features_fetch (const char *endpoint, uint32_t rows, uint32_t n_items, int timeout_ms, features_item_fn *each,
                void *arg, char *err, size_t errlen)
{
    features_builder_t *b = features_builder_new (rows, n_items);
    uint32_t start = 0, count = 0;
    bool ok = b != NULL;
    for (bool done = false; ok && !done;) {
        Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
        req.start_item = start;
        Strata__V1__CatalogueReply *r = (Strata__V1__CatalogueReply *) client_request (
            endpoint, WIRE_CATALOGUE, &req.base, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor,
            timeout_ms, err, errlen);
        if (!r) {
            ok = false;
            break;
        }
        count = r->item_count;
        ok = features_builder_expect (b, count) == 0;
        for (size_t i = 0; ok && i < r->n_items; i++) {
            int rc = features_builder_add (b, r->items[i]);
            ok = rc >= 0 && (rc > 0 || !each || each (r->items[i], arg) == 0);
        }
        done = r->done || r->next_item <= start;
        start = r->next_item;
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
    }
    features_t *f = ok ? features_builder_finish (&b, count > n_items ? count : n_items) : NULL;
    features_builder_destroy (&b);
    if (!f && !*err)
        snprintf (err, errlen, "out of memory");
    return f;
}
