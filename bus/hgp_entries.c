/*  hgp_entries.c - the broker's entry pool, deadline wheel and entry life
 *  cycle (see hgp_entries.h for the contract)
 *
 *  Why it is built this way: the broker is the one hop every request takes
 *  twice, so an entry costs no allocation once the pool has grown (chunks
 *  of fixed entries, data buffers reused unless larger than KEEP_DATA), a
 *  token lookup is an index, and a deadline is O(1) to add and remove.
 *  Request bodies are copied into the entry rather than kept as received
 *  zmq_msg_t: libzmq's zero-copy receive would pin an 8 KiB receive buffer
 *  per long-waiting request.
 *
 *  The life cycle is the table s_moves: one row per state, one bit per
 *  state it may move to. hgp_entries_move is the only writer of
 *  entry->state.
 */
#include "hgp_entries.h"
#include <assert.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/*  Pool and token layout */
#define SLOT_BITS       24                  /* slot part of a token         */
#define SLOT_MAX        (1u << SLOT_BITS)   /* most entries at once         */
#define SLOT_MASK       (SLOT_MAX - 1)
#define CHUNK_BITS      10                  /* entries per pool chunk: 1024 */
#define CHUNK_SIZE      (1u << CHUNK_BITS)
#define KEEP_DATA       4096                /* free bigger buffers on reuse */
#define TRIM_BYTES      (8u << 20)          /* held this much: give freed
                                               memory back once idle        */

/*  Deadline wheel: 4096 ticks of 16 ms span 65.5 s, more than the longest
    budget (HGP_TIMEOUT_MAX), so a bucket holds one tick's deadlines */
#define WHEEL_SHIFT     4
#define WHEEL_SIZE      4096
#define WHEEL_MASK      (WHEEL_SIZE - 1)

#define S_TO(state)     (1u << (state))

/*  The entry life cycle: the states each state may move to */
static const uint8_t s_moves [HGP_ENTRY_STATES] = {
    [HGP_ENTRY_FREE]     = S_TO (HGP_ENTRY_LOOSE),
    [HGP_ENTRY_LOOSE]    = S_TO (HGP_ENTRY_QUEUED) | S_TO (HGP_ENTRY_FREE),
    [HGP_ENTRY_QUEUED]   = S_TO (HGP_ENTRY_INFLIGHT) | S_TO (HGP_ENTRY_LOOSE)
                         | S_TO (HGP_ENTRY_FREE),
    [HGP_ENTRY_INFLIGHT] = S_TO (HGP_ENTRY_ORPHAN) | S_TO (HGP_ENTRY_LOOSE)
                         | S_TO (HGP_ENTRY_FREE),
    [HGP_ENTRY_ORPHAN]   = S_TO (HGP_ENTRY_FREE)
};

static const char *s_names [HGP_ENTRY_STATES] = {
    "free", "loose", "queued", "inflight", "orphan"
};

struct _hgp_entries_t {
    hgp_entry_t **chunks;       /* chunks of CHUNK_SIZE entries             */
    size_t nchunks;             /* chunks allocated                         */
    hgp_entry_t *free_entries;  /* free list, linked by tnext               */
    size_t nentries;            /* entries in use                           */
    size_t held_bytes;          /* request bytes held in entries in use     */
    bool trim;                  /* held TRIM_BYTES since the last trim      */
    uint64_t seq;               /* dispatch sequence, high part of tokens   */
    hgp_entry_t *wheel [WHEEL_SIZE];    /* deadline buckets                 */
    int64_t wheel_tick;         /* last tick whose bucket was expired       */
};


/*  --------------------------------------------------------------------
 *  Lists
 */

void
hgp_entry_list_push (hgp_entry_list_t *list, hgp_entry_t *e)
{
    assert (!e->list);
    e->next = NULL;
    e->prev = list->tail;
    if (list->tail)
        list->tail->next = e;
    else
        list->head = e;
    list->tail = e;
    list->size++;
    list->bytes += e->body_size;
    e->list = list;
}

void
hgp_entry_list_push_front (hgp_entry_list_t *list, hgp_entry_t *e)
{
    assert (!e->list);
    e->prev = NULL;
    e->next = list->head;
    if (list->head)
        list->head->prev = e;
    else
        list->tail = e;
    list->head = e;
    list->size++;
    list->bytes += e->body_size;
    e->list = list;
}

void
hgp_entry_list_remove (hgp_entry_t *e)
{
    hgp_entry_list_t *list = e->list;
    assert (list);
    if (e->prev)
        e->prev->next = e->next;
    else
        list->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        list->tail = e->prev;
    e->prev = e->next = NULL;
    e->list = NULL;
    list->size--;
    list->bytes -= e->body_size;
}

hgp_entry_t *
hgp_entry_list_pop (hgp_entry_list_t *list)
{
    hgp_entry_t *e = list->head;
    if (e)
        hgp_entry_list_remove (e);
    return e;
}

void
hgp_entry_id (const hgp_entry_t *e, char *id)
{
    memcpy (id, e->data + e->ident_size, e->id_size);
    id [e->id_size] = 0;
}


/*  --------------------------------------------------------------------
 *  The life cycle
 */

bool
hgp_entry_state_can_move (hgp_entry_state_t from, hgp_entry_state_t to)
{
    assert (from < HGP_ENTRY_STATES && to < HGP_ENTRY_STATES);
    return (s_moves [from] & S_TO (to)) != 0;
}

const char *
hgp_entry_state_name (hgp_entry_state_t state)
{
    return state < HGP_ENTRY_STATES ? s_names [state] : "?";
}

static void
s_wheel_add (hgp_entries_t *self, hgp_entry_t *e)
{
    int64_t tick = e->deadline >> WHEEL_SHIFT;
    if (tick <= self->wheel_tick)
        tick = self->wheel_tick + 1;    //  already due: next expiry run
    e->bucket = (uint16_t) (tick & WHEEL_MASK);
    hgp_entry_t **head = &self->wheel [e->bucket];
    e->tprev = NULL;
    e->tnext = *head;
    if (*head)
        (*head)->tprev = e;
    *head = e;
    e->in_wheel = true;
}

static void
s_wheel_remove (hgp_entries_t *self, hgp_entry_t *e)
{
    if (!e->in_wheel)
        return;
    if (e->tprev)
        e->tprev->tnext = e->tnext;
    else
        self->wheel [e->bucket] = e->tnext;
    if (e->tnext)
        e->tnext->tprev = e->tprev;
    e->tprev = e->tnext = NULL;
    e->in_wheel = false;
}

//  Back to the free list: the client has its answer, no actor holds it
static void
s_release (hgp_entries_t *self, hgp_entry_t *e)
{
    s_wheel_remove (self, e);
    if (e->alloc > KEEP_DATA) {
        free (e->data);
        e->data = NULL;
        e->alloc = 0;
    }
    self->held_bytes -= hgp_entry_bytes (e);
    e->token = 0;
    e->tnext = self->free_entries;
    self->free_entries = e;
    self->nentries--;
}

void
hgp_entries_move (hgp_entries_t *self, hgp_entry_t *e, hgp_entry_state_t to)
{
    assert (self);
    assert (e);
    assert (hgp_entry_state_can_move ((hgp_entry_state_t) e->state, to));
    //  Only an orphan stays in its list: the actor still holds it
    assert (!e->list || to == HGP_ENTRY_ORPHAN);
    switch (to) {
        case HGP_ENTRY_LOOSE:
            e->token = 0;
            break;
        case HGP_ENTRY_INFLIGHT:
            e->dispatched = true;
            break;
        case HGP_ENTRY_ORPHAN:
            s_wheel_remove (self, e);
            break;
        case HGP_ENTRY_FREE:
            s_release (self, e);
            break;
        default:
            break;
    }
    e->state = (uint8_t) to;
}


/*  --------------------------------------------------------------------
 *  The pool
 */

hgp_entries_t *
hgp_entries_new (int64_t now)
{
    hgp_entries_t *self = (hgp_entries_t *) calloc (1, sizeof (hgp_entries_t));
    if (self)
        self->wheel_tick = (now >> WHEEL_SHIFT) - 1;
    return self;
}

void
hgp_entries_destroy (hgp_entries_t **self_p)
{
    assert (self_p);
    hgp_entries_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nchunks; i++) {
        for (size_t j = 0; j < CHUNK_SIZE; j++)
            free (self->chunks [i][j].data);
        free (self->chunks [i]);
    }
    free (self->chunks);
    free (self);
    *self_p = NULL;
}

static inline hgp_entry_t *
s_entry_at (hgp_entries_t *self, uint32_t slot)
{
    return &self->chunks [slot >> CHUNK_BITS][slot & (CHUNK_SIZE - 1)];
}

static int
s_grow (hgp_entries_t *self)
{
    if ((self->nchunks + 1) * CHUNK_SIZE > SLOT_MAX)
        return -1;
    hgp_entry_t **chunks = (hgp_entry_t **) realloc (self->chunks,
                               (self->nchunks + 1) * sizeof (hgp_entry_t *));
    if (!chunks)
        return -1;
    self->chunks = chunks;
    hgp_entry_t *chunk = (hgp_entry_t *) calloc (CHUNK_SIZE,
                                                 sizeof (hgp_entry_t));
    if (!chunk)
        return -1;
    self->chunks [self->nchunks] = chunk;
    uint32_t base = (uint32_t) (self->nchunks * CHUNK_SIZE);
    //  Push in reverse so low slots are used first
    for (uint32_t i = CHUNK_SIZE; i-- > 0;) {
        chunk [i].slot = base + i;
        chunk [i].tnext = self->free_entries;
        self->free_entries = &chunk [i];
    }
    self->nchunks++;
    return 0;
}

//  Make room for need bytes of data in e; -1 when memory is short
static int
s_reserve (hgp_entry_t *e, size_t need)
{
    if (need <= e->alloc)
        return 0;
    size_t alloc = need < 256 ? 256 : need;
    uint8_t *data = (uint8_t *) realloc (e->data, alloc);
    if (!data)
        return -1;
    e->data = data;
    e->alloc = (uint32_t) alloc;
    return 0;
}

hgp_entry_t *
hgp_entries_take (hgp_entries_t *self, const uint8_t *ident, size_t ident_size,
                  const char *id, const uint8_t *body, size_t body_size,
                  int op, int64_t deadline, bool batched)
{
    assert (self);
    assert (ident_size <= UINT8_MAX);
    size_t id_size = strlen (id);
    assert (id_size <= UINT8_MAX);
    if (!self->free_entries && s_grow (self))
        return NULL;
    hgp_entry_t *e = self->free_entries;
    size_t need = ident_size + id_size + body_size;
    if (s_reserve (e, need))
        return NULL;
    self->free_entries = e->tnext;
    self->nentries++;
    self->held_bytes += need;
    if (self->held_bytes >= TRIM_BYTES)
        self->trim = true;
    memcpy (e->data, ident, ident_size);
    memcpy (e->data + ident_size, id, id_size);
    memcpy (e->data + ident_size + id_size, body, body_size);
    e->ident_size = (uint8_t) ident_size;
    e->id_size = (uint8_t) id_size;
    e->body_size = (uint32_t) body_size;
    e->op = (uint8_t) op;
    e->deadline = deadline;
    e->token = 0;
    e->list = NULL;
    e->prev = e->next = NULL;
    e->dispatched = false;
    e->batched = batched;
    hgp_entries_move (self, e, HGP_ENTRY_LOOSE);
    s_wheel_add (self, e);
    return e;
}

uint64_t
hgp_entries_mint (hgp_entries_t *self, hgp_entry_t *e)
{
    e->token = (++self->seq << SLOT_BITS) | e->slot;
    return e->token;
}

hgp_entry_t *
hgp_entries_lookup (hgp_entries_t *self, uint64_t token)
{
    uint32_t slot = (uint32_t) (token & SLOT_MASK);
    if (token == 0 || slot >= self->nchunks * CHUNK_SIZE)
        return NULL;
    hgp_entry_t *e = s_entry_at (self, slot);
    if (e->token != token
    || (e->state != HGP_ENTRY_INFLIGHT && e->state != HGP_ENTRY_ORPHAN))
        return NULL;
    return e;
}

void
hgp_entries_expire (hgp_entries_t *self, int64_t now,
                    hgp_entries_expire_fn *fn, void *arg)
{
    int64_t last = (now >> WHEEL_SHIFT) - 1;
    if (last - self->wheel_tick > WHEEL_SIZE)
        self->wheel_tick = last - WHEEL_SIZE;
    while (self->wheel_tick < last) {
        self->wheel_tick++;
        hgp_entry_t *e = self->wheel [self->wheel_tick & WHEEL_MASK];
        while (e) {
            hgp_entry_t *next = e->tnext;   //  fn touches no other entry
            if (e->deadline <= now) {
                fn (e, arg);
                assert (!e->in_wheel);
            }
            e = next;
        }
    }
}

size_t
hgp_entries_size (hgp_entries_t *self)
{
    return self->nentries;
}

size_t
hgp_entries_held (hgp_entries_t *self)
{
    return self->held_bytes;
}

bool
hgp_entries_trim (hgp_entries_t *self)
{
    if (!self->trim || self->held_bytes >= TRIM_BYTES / 8)
        return false;
    malloc_trim (0);
    self->trim = false;
    return true;
}
