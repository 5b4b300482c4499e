/*  fuzz_smoke.c - a small mutation fuzzer for `make test`, no clang needed
 *
 *  Starts from valid bodies made by the codec itself, then flips bits,
 *  cuts, duplicates and splices bytes, and feeds every mutant to the same
 *  LLVMFuzzerTestOneInput as the libFuzzer build. Deterministic (fixed
 *  seed unless one is given) so a failure reproduces. Usage:
 *  fuzz_smoke [ITERATIONS [SEED]]
 */
#include "hgp_codec.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_mutate.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define SEEDS 11

static void
s_seeds (hgp_buf_t *bufs)
{
    hgp_request_t req;
    hgp_request_init (&req);
    req.op = HGP_OP_INCR;
    strcpy (req.id, "seed-1");
    strcpy (req.key.resource_id, "post_42");
    strcpy (req.key.counter_type, "like");
    strcpy (req.user_id, "u1");
    strcpy (req.trace, "t1");
    req.delta = -70000;
    hgp_request_encode (&req, &bufs [0]);
    hgp_key_t keys [3] = { { "a", "b" }, { "c:d", "e" }, { "f", "g" } };
    req.op = HGP_OP_MGET;
    req.keys = keys;
    req.nkeys = 3;
    hgp_request_encode (&req, &bufs [1]);

    hgp_reply_t rep;
    hgp_reply_init (&rep);
    strcpy (rep.id, "seed-1");
    rep.has_value = true;
    rep.value = 123456789012LL;
    hgp_reply_encode (&rep, &bufs [2]);
    hgp_actor_info_t actor = { "counter", "abc", 10, 1, 2, 3, 4,
                               "http://127.0.0.1:49152/metrics" };
    hgp_process_info_t process = { "gateway", "http://h:8080/metrics", 9 };
    rep.has_value = false;
    rep.actors = &actor;
    rep.nactors = 1;
    rep.processes = &process;
    rep.nprocesses = 1;
    strcpy (rep.metrics, "http://127.0.0.1:49153/metrics");
    hgp_reply_encode (&rep, &bufs [3]);
    hgp_error_t err;
    hgp_error_set (&err, 503, "busy", "queue full");
    hgp_reply_encode_error ("x", &err, &bufs [4]);

    hgp_request_init (&req);
    req.op = HGP_OP_TOP;
    strcpy (req.id, "seed-2");
    strcpy (req.key.counter_type, "like");
    req.window = HGP_WINDOW_24H;
    req.limit = 25;
    hgp_request_encode (&req, &bufs [5]);
    hgp_rank_t ranks [2] = { { "a", 5, 5.0 }, { "b", 3, 3.0 } };
    hgp_bucket_t buckets [2] = { { 60000, 2 }, { 120000, 3 } };
    hgp_reply_init (&rep);
    strcpy (rep.id, "seed-2");
    rep.window = HGP_WINDOW_TRENDING;
    rep.ranking = ranks;
    rep.nranking = 2;
    rep.has_stats = true;
    rep.total = 5;
    rep.trending = 0.5;
    rep.bucket_ms = 60000;
    rep.buckets = buckets;
    rep.nbuckets = 2;
    hgp_reply_encode (&rep, &bufs [6]);
    hgp_event_t event = { "seed-3", { "post_1", "like" }, 2, "u1", 7,
                          1700000000000ULL, "actor.1", "",
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
    hgp_event_encode (&event, &bufs [7]);
    hgp_event_t fence = { .ts = 1700000000000ULL };
    strcpy (fence.fence, "actor.1");
    strcpy (fence.actor, "actor.2");
    hgp_event_encode (&fence, &bufs [9]);
    /*  A broker beacon: fixed binary layout, mutated like the bodies */
    hgp_beacon_t beacon = { HGP_BEACON_ALIVE,
                            "0123456789abcdef0123456789abcdef", 5555, 5556,
                            { 7 }, "hgp" };
    uint8_t wire [HGP_BEACON_MAX];
    int size = hgp_beacon_encode (&beacon, wire, sizeof wire);
    bufs [8].data = malloc ((size_t) size);
    memcpy (bufs [8].data, wire, (size_t) size);
    bufs [8].size = bufs [8].alloc = (size_t) size;
    /*  A client batch: an array of the first two requests */
    size_t start;
    hgp_array_start (&bufs [10], &start);
    hgp_buf_append (&bufs [10], bufs [0].data, bufs [0].size);
    hgp_buf_append (&bufs [10], bufs [1].data, bufs [1].size);
    hgp_array_finish (&bufs [10], start, 2);
}

int
main (int argc, char *argv [])
{
    long iterations = argc > 1 ? atol (argv [1]) : 200000;
    uint64_t state = argc > 2 ? strtoull (argv [2], NULL, 10) : 42;
    hgp_buf_t seeds [SEEDS];
    memset (seeds, 0, sizeof seeds);
    s_seeds (seeds);
    uint8_t *work = malloc (8192);
    for (long i = 0; i < iterations; i++) {
        hgp_buf_t *seed = &seeds [fuzz_rand (&state) % SEEDS];
        size_t size = seed->size;
        memcpy (work, seed->data, size);
        int edits = 1 + (int) (fuzz_rand (&state) % 4);
        for (int e = 0; e < edits && size > 0; e++) {
            size_t at = fuzz_rand (&state) % size;
            unsigned kind = (unsigned) (fuzz_rand (&state) % 6);
            if (fuzz_mutate_step (work, &size, 8192, at, kind, &state))
                continue;
            switch (kind) {
                case 4: {                                           /* hostile length */
                    static const uint8_t heads [] = { 0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xda };
                    work [at] = heads [fuzz_rand (&state) % sizeof heads];
                    break;
                }
                case 5: {                                           /* splice */
                    hgp_buf_t *other = &seeds [fuzz_rand (&state) % SEEDS];
                    size_t from = fuzz_rand (&state) % other->size;
                    size_t n = other->size - from;
                    if (at + n < 8192) {
                        memcpy (work + at, other->data + from, n);
                        size = at + n;
                    }
                    break;
                }
            }
        }
        LLVMFuzzerTestOneInput (work, size);
    }
    for (int i = 0; i < SEEDS; i++) {
        char path [64];
        snprintf (path, sizeof path, "tests/fuzz/corpus/seed%d", i);
        FILE *f = fopen (path, "rb");
        if (!f) {
            /*  keep the libFuzzer corpus seeded from the same bodies */
            f = fopen (path, "wb");
            if (f) {
                fwrite (seeds [i].data, 1, seeds [i].size, f);
                fclose (f);
            }
        }
        else
            fclose (f);
        hgp_buf_clear (&seeds [i]);
    }
    free (work);
    printf ("fuzz_smoke: %ld mutated bodies decoded, no crash, no leak\n", iterations);
    return 0;
}
