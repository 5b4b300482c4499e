/*  hgp_codec.h - the one C codec of the hgp wire protocol (schemas/PROTOCOL.md)
 *
 *  Every byte that arrives from a client or an actor passes through
 *  hgp_request_decode or hgp_reply_decode before anything looks at it. The
 *  decoders validate everything the spec says (types, bounds, id character
 *  set, required fields) and return a typed struct or an error with the
 *  status, code and message that the sender is to be told. Nothing
 *  downstream re-checks.
 *
 *  The structs are plain values: fixed-size strings live inline, so a
 *  request can be decoded on the stack without allocation. Only lists are
 *  heap arrays (mget keys and values, actors, a ranking, stats buckets);
 *  hgp_request_clear / hgp_reply_clear free them. A decoded struct owns
 *  everything it points to. Events of the log (hgp_event_t) are decoded by
 *  the same reader, with the same strictness.
 */
#ifndef HGP_CODEC_H_INCLUDED
#define HGP_CODEC_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*  Protocol signatures, the first non-empty frame of every message */
#define HGP_PROTO_CLIENT    "HGPC01"
#define HGP_PROTO_ACTOR     "HGPA01"
/*  Event log: the value of the "hgp" header of every Kafka record */
#define HGP_PROTO_EVENT     "HGPE01"

/*  Broker beacons (PROTOCOL.md section 9): a UDP payload of 60 to 123
    bytes that starts with this tag, then the version byte */
#define HGP_BEACON_TAG      "HGPB"
#define HGP_BEACON_VERSION  2
#define HGP_BEACON_FIXED    59          /* bytes before the cluster name    */
#define HGP_BEACON_MAX      (HGP_BEACON_FIXED + HGP_CLUSTER_NAME_MAX)
#define HGP_BROKER_ID_SIZE  16          /* bytes of a broker id on the wire */
#define HGP_CLUSTER_NAME_MAX 64         /* bytes of a cluster name          */

/*  Limits (PROTOCOL.md, "Limits") */
#define HGP_ID_MAX          128         /* bytes in any id or name */
#define HGP_MGET_MAX        1000        /* keys in one mget */
#define HGP_BODY_MAX        (512 * 1024)/* bytes in one msgpack body */
#define HGP_TIMEOUT_MAX     60000       /* ms */
#define HGP_TIMEOUT_DEFAULT 5000        /* ms, when timeout_ms is absent */
#define HGP_ACTORS_MAX      1024        /* entries in an actors reply */
#define HGP_MESSAGE_MAX     255         /* bytes of an error message */
#define HGP_CODE_MAX        31          /* bytes of an error code */
#define HGP_LIMIT_MAX       1000        /* entries in a top ranking */
#define HGP_LIMIT_DEFAULT   10          /* ... when limit is absent */
#define HGP_MINUTES_MAX     1440        /* buckets in a stats reply */
#define HGP_URL_MAX         128         /* bytes of a metrics URL */
#define HGP_PROCESSES_MAX   256         /* announced processes per broker */
#define HGP_ANNOUNCE_MS     2000        /* between a process's announces */
#define HGP_ANNOUNCE_TTL_MS 10000       /* a broker forgets one this silent */

/*  Actor protocol commands (second frame, one byte) */
#define HGP_CMD_READY       0x01
#define HGP_CMD_REQUEST     0x02
#define HGP_CMD_REPLY       0x03
#define HGP_CMD_HEARTBEAT   0x04
#define HGP_CMD_DISCONNECT  0x05
#define HGP_CMD_REQUESTS    0x06        /* several REQUESTs in one frame    */
#define HGP_CMD_REPLIES     0x07        /* several REPLYs in one frame      */

/*  Status codes, the same numbers as HTTP */
#define HGP_STATUS_OK           200
#define HGP_STATUS_BAD_REQUEST  400
#define HGP_STATUS_NOT_FOUND    404
#define HGP_STATUS_CONFLICT     409
#define HGP_STATUS_TOO_LARGE    413
#define HGP_STATUS_INTERNAL     500
#define HGP_STATUS_UNAVAILABLE  503
#define HGP_STATUS_TIMEOUT      504

typedef enum {
    HGP_OP_NONE = 0,
    HGP_OP_INCR,                /* counter: add delta, reply value    */
    HGP_OP_GET,                 /* counter: read one value            */
    HGP_OP_MGET,                /* counter: read up to 1000 values    */
    HGP_OP_PING,                /* broker: liveness of the bus itself */
    HGP_OP_ACTORS,              /* broker: what the broker sees       */
    HGP_OP_TOP,                 /* analytics: a ranking of resources  */
    HGP_OP_STATS,               /* analytics: one resource over time  */
    HGP_OP_ANNOUNCE,            /* broker: a process's metrics URL    */
    HGP_OP_UNIQUES              /* analytics: distinct users of one
                                   counter, estimated                 */
} hgp_op_t;

/*  Which ranking a top request asks for */
typedef enum {
    HGP_WINDOW_ALL = 0,         /* all-time sums, exact               */
    HGP_WINDOW_1H,              /* sums over the last hour            */
    HGP_WINDOW_24H,             /* sums over the last 24 hours        */
    HGP_WINDOW_TRENDING         /* forward-decayed score              */
} hgp_window_t;

/*  A counter key: both parts are 1..128 bytes of [A-Za-z0-9_.:-] */
typedef struct {
    char resource_id [HGP_ID_MAX + 1];
    char counter_type [HGP_ID_MAX + 1];
} hgp_key_t;

/*  An error as data: the status, a stable code, a human message */
typedef struct {
    uint16_t status;                    /* HGP_STATUS_*                  */
    char code [HGP_CODE_MAX + 1];       /* e.g. "invalid", "" if none    */
    char message [HGP_MESSAGE_MAX + 1]; /* for humans                    */
} hgp_error_t;

typedef struct {
    hgp_op_t op;                        /* what to do                       */
    char id [HGP_ID_MAX + 1];           /* request id, idempotency key      */
    char trace [HGP_ID_MAX + 1];        /* trace id, "" when absent         */
    uint32_t timeout_ms;                /* budget from when it was sent     */
    hgp_key_t key;                      /* incr, get                        */
    int64_t delta;                      /* incr, non-zero                   */
    char user_id [HGP_ID_MAX + 1];      /* incr, "" when absent             */
    size_t nkeys;                       /* mget                             */
    hgp_key_t *keys;                    /* mget, owned, nkeys entries       */
    hgp_window_t window;                /* top, HGP_WINDOW_ALL by default   */
    uint32_t limit;                     /* top, 1..1000, 10 by default      */
    char role [HGP_ID_MAX + 1];         /* announce: e.g. "gateway"         */
    char metrics [HGP_URL_MAX + 1];     /* announce: its metrics URL        */
} hgp_request_t;

/*  One row of an actors reply */
typedef struct {
    char service [HGP_ID_MAX + 1];      /* e.g. "counter"                   */
    char actor_id [HGP_ID_MAX + 1];     /* the actor's self-chosen id       */
    uint32_t capacity;                  /* max requests in flight to it     */
    uint32_t inflight;                  /* requests it holds now            */
    uint32_t queued;                    /* requests waiting in the broker   */
    uint32_t idle_ms;                   /* ms since the broker heard it     */
    uint64_t served;                    /* replies it has sent              */
    char metrics [HGP_URL_MAX + 1];     /* its metrics URL, "" if none      */
} hgp_actor_info_t;

/*  One announced process of an actors reply (announce, PROTOCOL.md 4.5) */
typedef struct {
    char role [HGP_ID_MAX + 1];         /* e.g. "gateway", "kafka"          */
    char metrics [HGP_URL_MAX + 1];     /* its metrics URL                  */
    uint32_t idle_ms;                   /* ms since its last announce       */
} hgp_process_info_t;

/*  One row of a top reply. count is the score of the count windows;
    score is the trending score (and count as a double elsewhere). */
typedef struct {
    char resource_id [HGP_ID_MAX + 1];  /* what is ranked                   */
    int64_t count;                      /* all, 1h, 24h: the sum of deltas  */
    double score;                       /* trending: decayed score          */
} hgp_rank_t;

/*  One bucket of a stats reply */
typedef struct {
    int64_t start_ms;                   /* bucket start, ms since the epoch */
    int64_t count;                      /* sum of deltas in the bucket      */
} hgp_bucket_t;

typedef struct {
    char id [HGP_ID_MAX + 1];           /* the request id it answers        */
    hgp_error_t error;                  /* status 200 and code "" when ok   */
    bool has_value;                     /* incr, get                        */
    int64_t value;                      /* the counter's value              */
    bool replayed;                      /* incr: answered from the record   */
    size_t nvalues;                     /* mget                             */
    int64_t *values;                    /* mget, owned, in request order    */
    size_t nactors;                     /* actors                           */
    hgp_actor_info_t *actors;           /* actors, owned                    */
    char metrics [HGP_URL_MAX + 1];     /* actors: the broker's own, or ""  */
    size_t nprocesses;                  /* actors: announced processes      */
    hgp_process_info_t *processes;      /* actors, owned                    */
    hgp_window_t window;                /* top: the ranking's window        */
    size_t nranking;                    /* top                              */
    hgp_rank_t *ranking;                /* top, owned, best first           */
    bool has_stats;                     /* stats: the four fields below     */
    int64_t total;                      /* stats: all-time sum              */
    double trending;                    /* stats: decayed score now         */
    uint32_t bucket_ms;                 /* stats: width of each bucket      */
    size_t nbuckets;                    /* stats                            */
    hgp_bucket_t *buckets;              /* stats, owned, oldest first       */
    bool has_uniques;                   /* uniques: the two fields below    */
    uint64_t uniques;                   /* uniques: distinct user ids       */
    bool approximate;                   /* uniques: an estimate (HLL)       */
    bool has_as_of;                     /* top, stats, uniques: as_of_ms    */
    int64_t as_of_ms;                   /* ... the log is folded in up to   */
} hgp_reply_t;

/*  One record of the log (PROTOCOL.md section 10): an increment, or, when
    fence is set, a fence: events of actor `fence` after this record in
    its partition are void (written by the actor that recovers `fence`).
    A fence has only fence, ts and actor. */
typedef struct {
    char id [HGP_ID_MAX + 1];           /* request id of the increment      */
    hgp_key_t key;                      /* which counter                    */
    int64_t delta;                      /* what was added, non-zero         */
    char user_id [HGP_ID_MAX + 1];      /* who, "" when absent              */
    int64_t value;                      /* counter value right after it     */
    uint64_t ts;                        /* ms since the Unix epoch          */
    char actor [HGP_ID_MAX + 1];        /* actor_id of the producing actor  */
    char fence [HGP_ID_MAX + 1];        /* fence: the fenced log id; "" for
                                           an increment                    */
    char trace [HGP_ID_MAX + 1];        /* the request's trace, "" if none  */
} hgp_event_t;

/*  READY body: an actor introduces itself */
typedef struct {
    char service [HGP_ID_MAX + 1];
    char actor_id [HGP_ID_MAX + 1];
    uint32_t capacity;
    char cluster [HGP_CLUSTER_NAME_MAX + 1];    /* bus/cluster of the actor */
    bool batch;                         /* it takes REQUESTS (optional key) */
    char metrics [HGP_URL_MAX + 1];     /* its metrics URL (optional key)   */
} hgp_ready_t;

/*  Batches (PROTOCOL.md 5.1): REQUESTS and REPLIES carry, in one frame,
    entries that are each what a REQUEST or REPLY carries in its frames.
    A request entry is token (8) | budget ms (4) | clock ms (8) | body
    size (4) | body; a reply entry is token (8) | body size (4) | body;
    integers big-endian. One frame costs the link one message (one CURVE
    box, one wake-up) however many entries it holds. */
#define HGP_BATCH_REQUEST_HEAD  24      /* bytes before a request's body    */
#define HGP_BATCH_REPLY_HEAD    12      /* bytes before a reply's body      */

typedef struct {
    const uint8_t *token;               /* 8 bytes                          */
    uint32_t budget;                    /* requests: ms left at clock       */
    int64_t clock;                      /* requests: sender's clock, ms     */
    const uint8_t *body;                /* inside the frame                 */
    uint32_t size;                      /* bytes of body                    */
} hgp_batch_entry_t;

/*  Cursor over a batch frame's entries */
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t at;
    bool replies;                       /* reply entries, else requests     */
} hgp_batch_cur_t;

/*  Client batches (PROTOCOL.md 4.1): a client frame 2 that is a msgpack
    array of request bodies instead of one body; the broker answers its
    requests in frames that are arrays of reply bodies. One frame costs the
    link one message (one CURVE box per frame, one wake-up) however many
    bodies it holds. Arrays are written with an array 32 header (5 bytes)
    reserved first and filled in once the count is known. */
#define HGP_ARRAY_HEAD      5           /* bytes of an array 32 header      */
#define HGP_ARRAY_MAX       1024        /* bodies in one client batch       */

/*  A broker beacon. The id is kept as 32 lowercase hex digits, as logged,
    shown by `hgp actors` and used as the broker's client ROUTER routing id */
typedef enum {
    HGP_BEACON_ALIVE = 1,               /* serving at these ports           */
    HGP_BEACON_LEAVING = 2              /* stopping cleanly: forget it now  */
} hgp_beacon_state_t;

typedef struct {
    hgp_beacon_state_t state;           /* alive or leaving                 */
    char broker_id [2 * HGP_BROKER_ID_SIZE + 1];   /* hex, never all zero   */
    uint16_t client_port;               /* TCP port of the client endpoint  */
    uint16_t actor_port;                /* TCP port of the actor endpoint   */
    uint8_t public_key [32];            /* CURVE server key; all zero: the
                                           broker runs without CURVE       */
    char cluster [HGP_CLUSTER_NAME_MAX + 1];    /* bus/cluster, an id       */
} hgp_beacon_t;

/*  Growable output buffer; data is owned, free with hgp_buf_clear */
typedef struct {
    uint8_t *data;
    size_t size;
    size_t alloc;
} hgp_buf_t;

void hgp_buf_clear (hgp_buf_t *self);
/*  Append size bytes: 0, or -1 when out of memory */
int hgp_buf_append (hgp_buf_t *self, const void *data, size_t size);

/*  Names */
const char *hgp_op_name (hgp_op_t op);
hgp_op_t hgp_op_from_name (const char *name);
const char *hgp_window_name (hgp_window_t window);
/*  0 and *window set, or -1 when name is not all, 1h, 24h or trending */
int hgp_window_from_name (const char *name, hgp_window_t *window);

/*  Is s (length len) a valid id: 1..128 bytes of [A-Za-z0-9_.:-]? */
bool hgp_id_valid (const char *s, size_t len);

/*  Is s a metrics URL: http:// or https://, then 1..HGP_URL_MAX bytes in
    all of visible ASCII (no spaces, no quotes or backslashes)? */
bool hgp_url_valid (const char *s, size_t len);

/*  Fill an error. Returns -1 so decoders can `return hgp_error_set (...)` */
int hgp_error_set (hgp_error_t *err, uint16_t status, const char *code,
                   const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

/*  Requests. decode: 0 and a filled req (clear it after), or -1 and err.
    encode appends to buf (caller clears); returns 0 or -1 on bad input. */
void hgp_request_init (hgp_request_t *req);
void hgp_request_clear (hgp_request_t *req);
int  hgp_request_decode (hgp_request_t *req, const uint8_t *data, size_t size,
                         hgp_error_t *err);
int  hgp_request_encode (const hgp_request_t *req, hgp_buf_t *buf);

/*  Replies: same conventions */
void hgp_reply_init (hgp_reply_t *rep);
void hgp_reply_clear (hgp_reply_t *rep);
int  hgp_reply_decode (hgp_reply_t *rep, const uint8_t *data, size_t size,
                       hgp_error_t *err);
int  hgp_reply_encode (const hgp_reply_t *rep, hgp_buf_t *buf);

/*  Make rep (set up with hgp_reply_init) an error reply for request id:
    what a client answers for itself (timeouts, unreachable brokers) */
void hgp_reply_set_error (hgp_reply_t *rep, const char *id, uint16_t status,
                          const char *code, const char *message);

/*  Encode an error reply for request id (id may be "" when unknown) */
int  hgp_reply_encode_error (const char *id, const hgp_error_t *error,
                             hgp_buf_t *buf);

/*  Events (the value of a Kafka record): same conventions */
int  hgp_event_decode (hgp_event_t *event, const uint8_t *data, size_t size,
                       hgp_error_t *err);
int  hgp_event_encode (const hgp_event_t *event, hgp_buf_t *buf);

/*  READY bodies */
int  hgp_ready_decode (hgp_ready_t *ready, const uint8_t *data, size_t size,
                       hgp_error_t *err);
int  hgp_ready_encode (const hgp_ready_t *ready, hgp_buf_t *buf);

/*  Batches: append one entry to buf (0, or -1 when out of memory) */
int  hgp_batch_put_request (hgp_buf_t *buf, const uint8_t *token,
                            uint32_t budget, int64_t clock,
                            const void *body, uint32_t size);
int  hgp_batch_put_reply (hgp_buf_t *buf, const uint8_t *token,
                          const void *body, uint32_t size);
/*  Client batches. hgp_array_open: the element count when data starts
    with a msgpack array header (*at is then just past it), else -1 (a map,
    or anything else). hgp_array_next: the whole value at *at, to depth 8:
    its bytes are *elem, *elem_size of them, and *at moves past it; -1 when
    what is left does not hold one. hgp_array_start appends a header to
    buf, to be filled in by hgp_array_finish with the count (0 or -1 when
    out of memory). */
int  hgp_array_open (const uint8_t *data, size_t size, size_t *at);
int  hgp_array_next (const uint8_t *data, size_t size, size_t *at,
                     const uint8_t **elem, size_t *elem_size);
int  hgp_array_start (hgp_buf_t *buf, size_t *start);
void hgp_array_finish (hgp_buf_t *buf, size_t start, uint32_t count);

/*  Read entries off a frame: begin, then next until it returns 0 (no more
    entries) or -1 (the rest of the frame is not an entry: stop, the
    entries before it were good) */
void hgp_batch_begin (hgp_batch_cur_t *cur, const uint8_t *data, size_t size,
                      bool replies);
int  hgp_batch_next (hgp_batch_cur_t *cur, hgp_batch_entry_t *entry);

/*  Beacons. encode writes HGP_BEACON_FIXED + strlen (cluster) bytes into
    out (size must be at least HGP_BEACON_MAX); returns that count, or -1
    when a field is not valid (id not 32 hex digits or all zero, a port 0,
    unknown state, a cluster name that is not a 1-64 byte id).
    decode: 0 and a filled beacon, or -1 and err (400 malformed: wrong tag
    or size; 400 invalid: another version, a bad state, id, port or
    cluster name). */
int  hgp_beacon_encode (const hgp_beacon_t *beacon, uint8_t *out, size_t size);
int  hgp_beacon_decode (hgp_beacon_t *beacon, const uint8_t *data, size_t size,
                        hgp_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
