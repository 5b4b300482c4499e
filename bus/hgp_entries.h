/*  hgp_entries.h - the broker's requests in flight: an entry pool, its
 *  deadline wheel and the entry life cycle
 *
 *  Every request the broker accepts is an entry until its client has its
 *  one answer and no actor holds it any more. An entry moves through five
 *  states, only by hgp_entries_move, which asserts the move is one of:
 *
 *      FREE     -> LOOSE      taken for a new request (hgp_entries_take)
 *      LOOSE    -> QUEUED     put in an actor's queue
 *      QUEUED   -> INFLIGHT   sent to that actor (token from hgp_entries_mint)
 *      INFLIGHT -> ORPHAN     deadline passed: client answered 504, the
 *                             actor still holds it (still counts against
 *                             its capacity, PROTOCOL.md 5.2)
 *      QUEUED, INFLIGHT -> LOOSE   its actor died: route it again
 *      LOOSE, QUEUED, INFLIGHT, ORPHAN -> FREE   answered and let go
 *
 *  A token names one dispatch: (sequence << 24) | pool slot, so looking
 *  one up is an array index plus an equality check, and a re-dispatch gets
 *  a new sequence: a stale REPLY never matches the new dispatch.
 *
 *  Deadlines live in a wheel of 4096 ticks of 16 ms (65.5 s, more than
 *  HGP_TIMEOUT_MAX): adding, removing and expiring an entry is O(1), and an
 *  expiry run touches only the buckets now due (the zloop_ticket idea, for
 *  tens of thousands of deadlines).
 *
 *  Entries come from chunks of 1024 that never move, so a pointer to an
 *  entry stays valid while the pool lives; their data buffers are reused.
 *  The entry struct is public so the broker reads its fields without a
 *  call per field; only this class writes them (lists write prev, next,
 *  list).
 */
#ifndef HGP_ENTRIES_H_INCLUDED
#define HGP_ENTRIES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    HGP_ENTRY_FREE,             /* in the pool's free list                  */
    HGP_ENTRY_LOOSE,            /* being routed, in no actor list           */
    HGP_ENTRY_QUEUED,           /* waiting in an actor's queue              */
    HGP_ENTRY_INFLIGHT,         /* sent to an actor, client waiting         */
    HGP_ENTRY_ORPHAN,           /* sent to an actor, client answered 504    */
    HGP_ENTRY_STATES
} hgp_entry_state_t;

typedef struct _hgp_entry_t hgp_entry_t;
typedef struct _hgp_entry_list_t hgp_entry_list_t;
typedef struct _hgp_entries_t hgp_entries_t;

struct _hgp_entry_t {
    uint64_t token;             /* last dispatch's token (INFLIGHT, ORPHAN) */
    int64_t deadline;           /* monotonic ms: receipt + timeout_ms       */
    hgp_entry_list_t *list;     /* the actor list it is in, or NULL         */
    hgp_entry_t *prev;          /* neighbours in that list                  */
    hgp_entry_t *next;
    hgp_entry_t *tprev;         /* neighbours in the wheel bucket;          */
    hgp_entry_t *tnext;         /* tnext also links the free list           */
    uint8_t *data;              /* client routing id, request id, body      */
    uint32_t alloc;             /* bytes allocated at data                  */
    uint32_t body_size;         /* bytes of the request body                */
    uint32_t slot;              /* index in the pool                        */
    uint16_t bucket;            /* wheel bucket, when in_wheel              */
    uint8_t ident_size;         /* bytes of the client routing id           */
    uint8_t id_size;            /* bytes of the request id                  */
    uint8_t op;                 /* hgp_op_t                                 */
    uint8_t state;              /* hgp_entry_state_t                        */
    bool in_wheel;              /* linked in a wheel bucket                 */
    bool dispatched;            /* was ever sent: losing it now is a 504    */
    bool batched;               /* came in a client batch: answer in one    */
};

/*  An intrusive FIFO of entries (an actor's queue or in-flight list) */
struct _hgp_entry_list_t {
    hgp_entry_t *head;          /* oldest                                   */
    hgp_entry_t *tail;          /* newest                                   */
    uint32_t size;              /* entries in the list                      */
    size_t bytes;               /* their request bodies' bytes              */
};

/*  Append e (in no list) to list, or put it first */
void hgp_entry_list_push (hgp_entry_list_t *list, hgp_entry_t *e);
void hgp_entry_list_push_front (hgp_entry_list_t *list, hgp_entry_t *e);

/*  Unlink e from the list it is in (e->list) */
void hgp_entry_list_remove (hgp_entry_t *e);

/*  Unlink and return the oldest entry, or NULL when empty */
hgp_entry_t *hgp_entry_list_pop (hgp_entry_list_t *list);

/*  The parts of an entry's data */
static inline const uint8_t *
hgp_entry_ident (const hgp_entry_t *e)
{
    return e->data;
}

static inline const uint8_t *
hgp_entry_body (const hgp_entry_t *e)
{
    return e->data + e->ident_size + e->id_size;
}

/*  Copy the request id into id (HGP_ID_MAX + 1 bytes), as a C string */
void hgp_entry_id (const hgp_entry_t *e, char *id);

/*  Bytes of the request an entry holds (what broker/queue_bytes bounds) */
static inline size_t
hgp_entry_bytes (const hgp_entry_t *e)
{
    return (size_t) e->ident_size + e->id_size + e->body_size;
}

/*  True when the life cycle allows a move from one state to the other */
bool hgp_entry_state_can_move (hgp_entry_state_t from, hgp_entry_state_t to);

/*  The state's name, for logs and tests */
const char *hgp_entry_state_name (hgp_entry_state_t state);

/*  An empty pool whose wheel starts at now (monotonic ms) */
hgp_entries_t *hgp_entries_new (int64_t now);

/*  Free every entry and its data */
void hgp_entries_destroy (hgp_entries_t **self_p);

/*  Take a free entry for a request (FREE -> LOOSE): copies the client
    routing id (at most 255 bytes), the request id (at most HGP_ID_MAX) and
    the body, and puts the deadline in the wheel. NULL when the pool holds
    2^24 entries or memory is short. batched: the request came in a client
    batch (PROTOCOL.md 4.1), so its answer goes back in one. */
hgp_entry_t *hgp_entries_take (hgp_entries_t *self, const uint8_t *ident,
                               size_t ident_size, const char *id,
                               const uint8_t *body, size_t body_size,
                               int op, int64_t deadline, bool batched);

/*  The one place an entry changes state; asserts the move is allowed and
    does what the new state implies: LOOSE forgets the token, INFLIGHT
    marks it dispatched, ORPHAN takes it off the wheel (its client has its
    answer), FREE gives it back to the pool. e must be in no list, except
    INFLIGHT -> ORPHAN, which leaves it where it is. */
void hgp_entries_move (hgp_entries_t *self, hgp_entry_t *e,
                       hgp_entry_state_t to);

/*  A new token for e's next dispatch, stored in e->token; it matches
    hgp_entries_lookup only once e is INFLIGHT */
uint64_t hgp_entries_mint (hgp_entries_t *self, hgp_entry_t *e);

/*  The INFLIGHT or ORPHAN entry that token names, or NULL (0, bogus, or of
    an earlier dispatch) */
hgp_entry_t *hgp_entries_lookup (hgp_entries_t *self, uint64_t token);

/*  Called for each entry whose deadline has passed. It must move e to
    ORPHAN or FREE, and touch no other entry. */
typedef void (hgp_entries_expire_fn) (hgp_entry_t *e, void *arg);

/*  Expire every entry whose deadline is at or before now. Only buckets of
    ticks wholly in the past are visited, so an entry is expired up to one
    tick (16 ms) late; one of a later wheel turn (after a stall) waits for
    its turn. */
void hgp_entries_expire (hgp_entries_t *self, int64_t now,
                         hgp_entries_expire_fn *fn, void *arg);

/*  Entries in use, and the request bytes they hold */
size_t hgp_entries_size (hgp_entries_t *self);
size_t hgp_entries_held (hgp_entries_t *self);

/*  Give freed heap back to the system after a burst (8 MiB held) has
    drained below 1 MiB; glibc would keep it for reuse otherwise, and after
    a burst of large requests that is most of our RSS. True when it did. */
bool hgp_entries_trim (hgp_entries_t *self);

#endif
