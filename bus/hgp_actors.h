/*  hgp_actors.h - the broker's actor table and its routing choices
 *
 *  The actors registered with one broker, and the two ways a request picks
 *  one of them (PROTOCOL.md 5.4):
 *  - an incr goes to the rendezvous owner of its key among live "counter"
 *    actors: highest hgp_keyspace_weight, ties to the lower actor_id, so
 *    every broker that sees the same actors picks the same owner;
 *  - a get/mget (to "counter") and a top/stats/uniques (to "analytics") go to the
 *    live actor of that service with the fewest requests on it, ties
 *    rotating so idle readers share the load.
 *
 *  An actor found dead is only flagged (hgp_actors_kill) where it is
 *  found; the broker removes it, and re-routes its entries, once the
 *  message at hand is done, so no list changes under a walk. The table
 *  also holds the rules for who may register (hgp_actors_check): an actor
 *  id is bound to the certificate that registered it.
 *
 *  Actors are few, so they sit in a plain array in join order. The actor
 *  struct is public: the broker's loop reads and updates its lists and
 *  counters; the table owns the memory.
 */
#ifndef HGP_ACTORS_H_INCLUDED
#define HGP_ACTORS_H_INCLUDED

#include "hgp_codec.h"
#include "hgp_entries.h"
#include "hgp_keys.h"

/*  The services the broker routes to; actors of any other service may
    register (and are listed) but get no requests */
#define HGP_KIND_OTHER      0
#define HGP_KIND_COUNTER    1       /* "counter": incr, get, mget           */
#define HGP_KIND_ANALYTICS  2       /* "analytics": top, stats              */

typedef struct _hgp_actor_t hgp_actor_t;
typedef struct _hgp_actors_t hgp_actors_t;

struct _hgp_actor_t {
    uint8_t identity [256];     /* ROUTER routing id of its DEALER          */
    size_t identity_size;       /* bytes in identity                        */
    char service [HGP_ID_MAX + 1];  /* what it offers                       */
    char actor_id [HGP_ID_MAX + 1]; /* its self-chosen id                   */
    char key [HGP_KEY_TXT + 1]; /* CURVE key its READY came with, "" if off:
                                   the id is bound to it while registered  */
    int kind;                   /* HGP_KIND_*: which ops we route to it     */
    uint32_t capacity;          /* most requests it holds without a REPLY   */
    hgp_entry_list_t queue;     /* waiting for capacity, FIFO               */
    hgp_entry_list_t inflight;  /* sent, no REPLY yet (orphans included)    */
    uint64_t served;            /* REPLYs matched to a token                */
    int64_t last_heard;         /* monotonic ms of its last message         */
    bool batch;                 /* takes REQUESTS: dispatches collect in out */
    hgp_buf_t out;              /* REQUESTS entries not yet sent             */
    const char *dead;           /* why it is to be removed; NULL if alive   */
    bool warned;                /* logged one protocol error already        */
    char metrics [HGP_URL_MAX + 1]; /* its metrics URL from READY, or ""    */
};

/*  HGP_KIND_* of a service name, and of an op (which service serves it) */
int hgp_actors_kind_of_service (const char *service);
int hgp_actors_kind_of_op (int op);

/*  The name of the service that serves op: "counter" or "analytics" */
const char *hgp_actors_service_of_op (int op);

/*  An empty table */
hgp_actors_t *hgp_actors_new (void);

/*  Free the table and every actor still in it (their lists must hold no
    entries the caller still needs: entries belong to the entry pool) */
void hgp_actors_destroy (hgp_actors_t **self_p);

/*  Actors registered (dead ones included until removed), and the i-th in
    join order */
size_t hgp_actors_size (hgp_actors_t *self);
hgp_actor_t *hgp_actors_at (hgp_actors_t *self, size_t i);

/*  The actor of a routing id, or of an actor_id, or NULL */
hgp_actor_t *hgp_actors_lookup (hgp_actors_t *self, const uint8_t *identity,
                                size_t size);
hgp_actor_t *hgp_actors_named (hgp_actors_t *self, const char *actor_id);

/*  Why a READY from a connection with CURVE key `key` (routing id already
    registered as `actor`, or NULL) must be refused for reasons of identity,
    as a string the caller frees; NULL when it may register. Refused: another
    cluster than ours, an actor_id registered under another certificate, a
    registered connection that changed certificate. */
char *hgp_actors_check (hgp_actors_t *self, hgp_actor_t *actor,
                        const hgp_ready_t *ready, const char *key,
                        const char *cluster);

/*  Register a new actor from its READY, heard at now; NULL when memory is
    short (it will time out and try again) */
hgp_actor_t *hgp_actors_add (hgp_actors_t *self, const uint8_t *identity,
                             size_t identity_size, const hgp_ready_t *ready,
                             const char *key, int64_t now);

/*  Flag an actor dead (the first reason sticks); it stays in the table,
    getting no new work, until hgp_actors_remove */
void hgp_actors_kill (hgp_actors_t *self, hgp_actor_t *actor,
                      const char *why);

/*  Actors flagged dead and not removed yet, and the first of them */
size_t hgp_actors_dead (hgp_actors_t *self);
hgp_actor_t *hgp_actors_first_dead (hgp_actors_t *self);

/*  Take an actor out of the table; the caller empties its lists, then
    frees it with hgp_actor_destroy */
void hgp_actors_remove (hgp_actors_t *self, hgp_actor_t *actor);
void hgp_actor_destroy (hgp_actor_t **actor_p);

/*  Describe the first HGP_ACTORS_MAX actors in rep->actors (allocated,
    non-NULL even when there are none, so the reply says "actors": []),
    idle times as of now; -1 when memory is short */
int hgp_actors_list (hgp_actors_t *self, int64_t now, hgp_reply_t *rep);

/*  The live counter actor that owns key, or NULL */
hgp_actor_t *hgp_actors_owner (hgp_actors_t *self, const hgp_key_t *key);

/*  The live actor of kind with the fewest requests in flight plus
    waiting, or NULL */
hgp_actor_t *hgp_actors_reader (hgp_actors_t *self, int kind);

#endif
