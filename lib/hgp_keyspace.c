/*  hgp_keyspace.c - counter keys and key ownership (see .h, PROTOCOL.md)
 */
#include "hgp_keyspace.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>

size_t
hgp_keyspace_counter (const hgp_key_t *key, char *buf, size_t size)
{
    assert (size >= HGP_KEYSPACE_COUNTER_MAX);
    int len = snprintf (buf, size, "hgp:c:%zu:%s:%s",
                        strlen (key->resource_id), key->resource_id,
                        key->counter_type);
    assert (len > 0 && (size_t) len < size);
    return (size_t) len;
}

size_t
hgp_keyspace_record (const char *request_id, char *buf, size_t size)
{
    assert (size >= HGP_KEYSPACE_RECORD_MAX);
    int len = snprintf (buf, size, "hgp:r:%s", request_id);
    assert (len > 0 && (size_t) len < size);
    return (size_t) len;
}

static uint64_t
s_fnv1a (uint64_t hash, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t) s [i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

uint64_t
hgp_keyspace_weight (const char *actor_id, const hgp_key_t *key)
{
    static const char zero = 0;
    uint64_t x = 14695981039346656037ULL;
    x = s_fnv1a (x, actor_id, strlen (actor_id));
    x = s_fnv1a (x, &zero, 1);
    x = s_fnv1a (x, key->resource_id, strlen (key->resource_id));
    x = s_fnv1a (x, &zero, 1);
    x = s_fnv1a (x, key->counter_type, strlen (key->counter_type));
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}
