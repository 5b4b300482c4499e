/*  hgp_keyspace.h - where counters live and who owns them
 *
 *  Two pure functions that must agree across every process, so they are
 *  specified in schemas/PROTOCOL.md (sections 5.4 and 7) and live here once:
 *  - the Redis key of a counter, "hgp:c:<len(r)>:<r>:<t>"; the length prefix
 *    makes it injective even though ids may contain ':';
 *  - the rendezvous weight of (actor, key); the live actor with the highest
 *    weight owns the key, so each key has one writer at a time and only the
 *    keys of a joining or leaving actor move.
 */
#ifndef HGP_KEYSPACE_H_INCLUDED
#define HGP_KEYSPACE_H_INCLUDED

#include "hgp_codec.h"

/*  Longest encoded counter key, with its terminating zero */
#define HGP_KEYSPACE_COUNTER_MAX (6 + 3 + 1 + HGP_ID_MAX + 1 + HGP_ID_MAX + 1)
/*  Longest encoded request record key, with its terminating zero */
#define HGP_KEYSPACE_RECORD_MAX  (6 + HGP_ID_MAX + 1)

/*  Write the counter's Redis key into buf; returns its length */
size_t hgp_keyspace_counter (const hgp_key_t *key, char *buf, size_t size);

/*  Write the request record's Redis key into buf; returns its length */
size_t hgp_keyspace_record (const char *request_id, char *buf, size_t size);

/*  Rendezvous weight of key at actor_id */
uint64_t hgp_keyspace_weight (const char *actor_id, const hgp_key_t *key);

#endif
