/*  hgp_ledger.h - applying the event log to the counters in Redis
 *
 *  The counters in Redis are a materialised view of the event log: each
 *  event adds its delta exactly once. This class is everything that
 *  applies events, shared by the counter actor (its own batches, and the
 *  recovery of actors that died) and `hgp replay` (all of the log):
 *
 *  - the apply script: per event, skip it if its request record says it
 *    was applied (or is a promise its batch kept), else INCRBY and write
 *    the record, atomically; and advance the producing actor's watermark,
 *    in the same script. An actor's own batch is coalesced: one INCRBY per
 *    counter key by the sum of its events, each event's value the running
 *    sum; and where the prepare's promises of a key all hold, that INCRBY
 *    is all, the batch's key keeping them (ledger_apply.lua);
 *  - the registry of counter actors that produce events: a lease each
 *    (hgp:lease:<actor>, expiring unless renewed), the list of registered
 *    actors (hgp:actors) and a watermark per actor and partition
 *    (hgp:wm:<actor>): every event of that actor at or below it is applied;
 *  - recovery: for an actor whose lease expired, first *fence* it: write
 *    a fence record naming it into every partition (and keep each fence's
 *    offset in hgp:fence:<actor>). Its events after a fence are void for
 *    every reader (PROTOCOL.md section 10). Then read each partition from
 *    its watermark up to the fence, apply its events that are not applied
 *    yet, and remove it from the registry. After that, a request it had
 *    prepared but never logged may be taken over by another actor.
 *    Why the fence: an actor that stalled (a paused process) past its
 *    lease may still hand Kafka an event after it was recovered; without
 *    the fence a retry served by another actor would make that request
 *    two events in the log. The actor's own apply refuses once its lease
 *    is gone, and a lease never comes back, so every event it applied
 *    itself is before the fence, and every event after it is applied by
 *    nobody.
 *  - replay: read every partition from the start and apply every event.
 *  - trust: every identity that ever registered stays in hgp:ids, and
 *    readers (replay, analytics) count nothing of an identity that never
 *    did (hgp_ledger_vouch): an event or fence produced straight into
 *    Kafka under an invented actor id changes no counter and no ranking.
 *    That takes write access to Redis as well as to Kafka to get past;
 *    Kafka's ACLs (README) are what keep the log itself to the counters.
 *
 *  Storage layout: schemas/PROTOCOL.md section 7. Why records and
 *  watermarks both: a record (kept counter/dedup_ttl seconds) tells for
 *  one request id whether it was applied, which makes re-applying any
 *  event safe within that window, whoever does it; a watermark tells for
 *  a whole range of the log, which makes it safe beyond.
 */
#ifndef HGP_LEDGER_H_INCLUDED
#define HGP_LEDGER_H_INCLUDED

#include "hgp_codec.h"
#include "hgp_eventlog.h"
#include "hgp_keyspace.h"
#include "hgp_redis.h"

typedef struct _hgp_ledger_t hgp_ledger_t;

/*  Most items in one hgp_ledger_apply, and most partitions of a topic */
#define HGP_LEDGER_BATCH_MAX    4096

/*  Result codes of one item of hgp_ledger_apply */
#define HGP_LEDGER_APPLIED      0   /* added now; value is the new value   */
#define HGP_LEDGER_ALREADY      1   /* its record says applied; value then */
#define HGP_LEDGER_CONFLICT    -1   /* its id is recorded for another
                                       increment; nothing changed          */
#define HGP_LEDGER_OVERFLOW    -2   /* would leave int64; nothing changed  */
#define HGP_LEDGER_REFUSED     -3   /* Redis refused (OOM...); nothing     */
#define HGP_LEDGER_RELEASED     4   /* release: the pending record is gone */
#define HGP_LEDGER_NOT_MINE     5   /* release: the record was not ours    */

/*  One event to apply, or one pending record to release */
typedef struct {
    char counter_key [HGP_KEYSPACE_COUNTER_MAX];   /* hgp:c:...            */
    char record_key [HGP_KEYSPACE_RECORD_MAX];     /* hgp:r:<id>           */
    char delta [24];            /* decimal, as recorded                    */
    int32_t partition;          /* where the event is in the log           */
    int64_t offset;             /* ... -1 when it is not (release)         */
    bool release;               /* drop my pending record, apply nothing   */
    bool fast;                  /* own batch: its record is a promise of
                                   this batch predicted from base (see
                                   hgp_ledger_apply)                       */
    int64_t base;               /* fast: the counter as the prepare read it */
    int code;                   /* result, HGP_LEDGER_*                    */
    int64_t value;              /* APPLIED, ALREADY: the counter's value   */
    char text [128];            /* REFUSED, OVERFLOW: Redis's words        */
} hgp_ledger_item_t;

/*  What a recovery or replay did */
typedef struct {
    uint64_t read;              /* records read from the log               */
    uint64_t applied;           /* events applied now                      */
    uint64_t already;           /* events whose record said applied        */
    uint64_t skipped;           /* events of other actors (recovery)       */
    uint64_t fences;            /* fences read                             */
    uint64_t voided;            /* events of fenced actors after their
                                   fence: void, not applied                */
    uint64_t bad;               /* records that do not decode, conflicts,
                                   overflows: logged, not applied          */
    uint64_t unregistered;      /* records of identities that never
                                   registered: forged, not applied         */
} hgp_ledger_stats_t;

/*  Fill item for event (key, record key, delta) at partition/offset */
void hgp_ledger_item_event (hgp_ledger_item_t *item, const hgp_event_t *event,
                            int32_t partition, int64_t offset);

/*  A ledger on redis (which it does not own). Registers its scripts on
    redis, so call it before redis first connects. dedup_ttl: seconds a
    record is kept; lease_ms: life of a lease unless renewed. */
hgp_ledger_t *hgp_ledger_new (hgp_redis_t *redis, const char *who,
                              int64_t dedup_ttl, int64_t lease_ms);
void hgp_ledger_destroy (hgp_ledger_t **self_p);

/*  The record TTL in decimal seconds, for scripts of the caller */
const char *hgp_ledger_ttl (hgp_ledger_t *self);

/*  Run the apply script over items, in order, in one round trip; actor
    is whose watermarks advance with the applied events (NULL: none; the
    actor must be registered for them to move) and whose pending records
    a release may drop. batch: not 0 when actor applies its own batch of
    that number (its prepare's promises name it); then nothing is applied
    once its lease is gone (see recovery below), and a counter key whose
    items are all fast costs one INCRBY and no record write: the batch's
    mark keeps their promises (ledger_apply.lua). Fast items of one key
    must follow the order their values were predicted in, from base. When
    a fast key's counter no longer holds base (a second writer), its items
    are applied like the others, in a second round trip. held: the counter
    keys (nheld of them) of increments the batch promised and neither
    applies nor releases (their outcome is unsettled): the mark must not
    keep their promises. Returns 0 with
    every item's code set; 1 when the script surely did not run (no
    connection, refused); 2 (own only) when the lease was gone and nothing
    was applied; -1 when it may have run and we did not see the answer.
    reason says why on 1, 2 and -1. */
int hgp_ledger_apply (hgp_ledger_t *self, const char *actor, uint64_t batch,
                      hgp_ledger_item_t *items, size_t count,
                      const char *const *held, size_t nheld,
                      char *reason, size_t size);

/*  Register actor: its lease, its entry in hgp:actors, and its
    watermarks at ends[p] - 1 for each of the partitions (ends: the next
    offset of each partition, read before the actor produced anything).
    0, or -1 (Redis failed; reason says why). */
int hgp_ledger_register (hgp_ledger_t *self, const char *actor,
                         const int64_t *ends, int partitions,
                         char *reason, size_t size);

/*  Put actor among the identities ever registered (hgp:ids) without a
    lease: for a producer that needs no recovery (event_log async). 0/-1. */
int hgp_ledger_identify (hgp_ledger_t *self, const char *actor);

/*  May a reader believe a record written under actor at partition and
    offset? Every identity that ever registered is kept in hgp:ids (never
    removed), and where that list began in each partition in
    hgp:ids:horizon. 1: actor registered; 0: it never did and the record
    is past the list's beginning, so it is forged (logged once per
    identity): count it for nothing; 2: the record is older than the
    list (Redis lost it, or the log predates it), so nothing can vouch
    for it: it is trusted as written (logged once); -1 Redis failed.
    Answers are cached per identity. */
int hgp_ledger_vouch (hgp_ledger_t *self, const char *actor,
                      int32_t partition, int64_t offset);

/*  Forget what hgp_ledger_vouch learnt (Redis was flushed or replaced) */
void hgp_ledger_vouch_reset (hgp_ledger_t *self);

/*  Renew actor's lease. 1 renewed, 0 lost (expired or deleted: the actor
    must stop producing under this id), -1 Redis failed. */
int hgp_ledger_renew (hgp_ledger_t *self, const char *actor);

/*  Leave the registry: only for an actor that produces nothing more and
    whose events are all applied (a clean stop). 0 or -1. */
int hgp_ledger_leave (hgp_ledger_t *self, const char *actor);

/*  Give up actor's lease now, so that it can be recovered at once.
    0 or -1. */
int hgp_ledger_retire (hgp_ledger_t *self, const char *actor);

/*  Move actor's watermark in partition up to offset (never down), when
    actor is registered. Only for offsets up to which every event of actor
    in that partition is applied. 0 or -1. */
int hgp_ledger_advance (hgp_ledger_t *self, const char *actor,
                        int32_t partition, int64_t offset);

/*  Recover every registered actor whose lease expired (not me): fence
    it (the fences say they were written by me), apply its unapplied
    events up to the fences, then forget it. Each recovery holds a lock
    (hgp:recovering:<actor>) so actors do not all do the same work. Stops
    at deadline (zclock_mono ms). Returns how many actors were recovered,
    or -1 when one failed (the log or Redis; logged). */
int hgp_ledger_recover_dead (hgp_ledger_t *self, hgp_eventlog_t *log,
                             const char *me, int64_t deadline);

/*  Apply every event of the log, from the start of each partition to its
    end when the replay started. Refuses (-1) when a partition no longer
    starts at offset 0. progress, when not NULL, is called after each
    partition. 0 or -1, reason filled. */
int hgp_ledger_replay (hgp_ledger_t *self, hgp_eventlog_t *log,
                       hgp_ledger_stats_t *stats,
                       void (*progress) (int32_t partition,
                                         const hgp_ledger_stats_t *stats),
                       char *reason, size_t size);

#endif
