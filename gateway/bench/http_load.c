/*  http_load.c - an open-loop HTTP load generator that costs little CPU
 *
 *  On a 2-core machine the load generator shares the cores with what it
 *  measures, so what it costs per request shows up in every latency it
 *  reports: hey costs ~65-85 µs per request, enough that "half the top
 *  rate" loaded the machine fully and its p99 was its own scheduling.
 *  This one is a single thread on epoll, about 5 µs per request, and
 *  measures the way latency should be measured under a given load:
 *
 *  - open loop: every connection has a schedule (one request each
 *    connections/rate seconds, the connections offset evenly); a request
 *    is due at its scheduled time whether or not the last one came back,
 *    and its latency is counted from that time, so a stall shows as the
 *    latency of every request it delayed (no coordinated omission). With
 *    rate 0 each connection sends its next request when the last one is
 *    answered (closed loop, as fast as the server goes), and latency is
 *    counted from the send;
 *  - latencies by outcome: 2xx apart from the rest (503 busy answers are
 *    fast and would flatter the admitted ones otherwise);
 *  - a connection the server closes (Connection: close) is opened again,
 *    and the connect counts in the latency of the request that needed it.
 *
 *  http_load -p PORT [-c CONNS] [-r RATE] [-d SECONDS] [-n COUNT] [-k KEYS]
 *            [-m METHOD] [-u PATH] [-t TYPE]
 *  -n COUNT: closed loop until COUNT requests were sent (and answered),
 *  instead of for SECONDS. -b MS: closed loop, a connection answered 503
 *  waits MS (jittered by a quarter) before its next request, as a client
 *  honouring Retry-After does (its latency counts from when it sends).
 *  POST bodies are {"resource_id":"rN","counter_type":TYPE} over KEYS keys
 *  (default 1 key, type "c"); GET requests carry no body. Prints one line
 *  of key=value pairs: sent, answered (by status class), rate, latency
 *  percentiles in ms of 2xx and of the others, and its own CPU µs per
 *  request. Exit 1 if any request got no answer or a socket failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_BUCKETS   (1 << 16)       /* latency histogram: 10 µs buckets,    */
#define S_BUCKET_US 10              /* ... up to 655 ms, the rest in last   */

typedef struct {
    uint64_t counts [S_BUCKETS];
    uint64_t total;
    int64_t max_us;
    int64_t sum_us;
} s_histogram_t;

typedef struct {
    int fd;
    bool busy;                      /* a request is out                     */
    bool connecting;
    int64_t due_us;                 /* when its next request is due         */
    int64_t start_us;               /* what the out request's latency counts from */
    uint64_t backlog;               /* requests due but not sent yet        */
    int64_t resume_us;              /* -b: after a 503, not before this     */
    char in [8192];
    size_t in_size;
    size_t key;                     /* the next key this connection uses    */
} s_conn_t;

typedef struct {
    int port;
    int conns;
    double rate;
    double seconds;
    uint64_t count;                 /* -n: closed loop, this many requests  */
    int64_t backoff_us;             /* -b: wait after a 503 (Retry-After)   */
    int keys;
    const char *method;
    const char *path;
    const char *type;
    int epoll;
    s_conn_t *conn;
    int64_t interval_us;            /* per connection; 0: closed loop       */
    int64_t end_us;
    uint64_t sent, ok, other, failed;
    uint64_t statuses [6];          /* by first digit                       */
    s_histogram_t ok_hist, other_hist;
} s_load_t;

static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
s_record (s_histogram_t *h, int64_t us)
{
    int64_t bucket = us / S_BUCKET_US;
    if (bucket >= S_BUCKETS)
        bucket = S_BUCKETS - 1;
    h->counts [bucket < 0 ? 0 : bucket]++;
    h->total++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

static double
s_percentile (const s_histogram_t *h, double p)
{
    if (!h->total)
        return 0;
    uint64_t want = (uint64_t) (p / 100.0 * (double) h->total + 0.5);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int b = 0; b < S_BUCKETS; b++)
        if ((seen += h->counts [b]) >= want)
            return (b + 1) * S_BUCKET_US / 1000.0;
    return h->max_us / 1000.0;
}

static int
s_connect (s_load_t *self, s_conn_t *conn)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) self->port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (fd, (struct sockaddr *) &addr, sizeof addr) && errno != EINPROGRESS) {
        close (fd);
        return -1;
    }
    struct epoll_event event = { .events = EPOLLIN | EPOLLOUT | EPOLLET,
                                 .data.ptr = conn };
    epoll_ctl (self->epoll, EPOLL_CTL_ADD, fd, &event);
    conn->fd = fd;
    conn->connecting = true;
    conn->in_size = 0;
    return 0;
}

static bool
s_send (s_load_t *self, s_conn_t *conn)
{
    char request [512];
    int n;
    if (strcmp (self->method, "POST") == 0) {
        char body [160];
        int size = snprintf (body, sizeof body,
                             "{\"resource_id\":\"r%zu\",\"counter_type\":\"%s\"}",
                             conn->key++ % (size_t) self->keys, self->type);
        n = snprintf (request, sizeof request,
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n"
                      "\r\n%s", self->path, size, body);
    }
    else
        n = snprintf (request, sizeof request,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                      self->method, self->path);
    ssize_t rc = send (conn->fd, request, (size_t) n, MSG_NOSIGNAL);
    if (rc != n)
        return false;           //  a fresh socket always takes 500 bytes
    conn->busy = true;
    self->sent++;
    return true;
}

//  Send what is due on this connection, if it is free
static void
s_pump (s_load_t *self, s_conn_t *conn, int64_t now)
{
    if (conn->busy || conn->connecting || conn->fd < 0)
        return;
    if (self->interval_us) {
        while (conn->due_us <= now && conn->due_us < self->end_us) {
            conn->backlog++;
            conn->due_us += self->interval_us;
        }
        if (!conn->backlog)
            return;
        //  latency from when it was due, however late it goes
        conn->start_us = conn->due_us - (int64_t) conn->backlog * self->interval_us;
        conn->backlog--;
    }
    else {
        if (now >= self->end_us || (self->count && self->sent >= self->count)
        ||  now < conn->resume_us)
            return;
        conn->start_us = now;
    }
    if (!s_send (self, conn)) {
        self->failed++;
        close (conn->fd);
        conn->fd = -1;
    }
}

//  A whole response in conn->in? Returns its size, 0 if not yet
static size_t
s_response (s_conn_t *conn, int *status, bool *close_p)
{
    char *end = memmem (conn->in, conn->in_size, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t) (end - conn->in) + 4;
    *end = 0;
    *status = atoi (conn->in + 9);
    const char *cl = strcasestr (conn->in, "\r\nContent-Length:");
    size_t length = cl ? (size_t) strtoul (cl + 17, NULL, 10) : 0;
    *close_p = strcasestr (conn->in, "\r\nConnection: close") != NULL;
    *end = '\r';
    if (conn->in_size < head + length)
        return 0;
    return head + length;
}

static void
s_readable (s_load_t *self, s_conn_t *conn, int64_t now)
{
    while (true) {
        ssize_t n = recv (conn->fd, conn->in + conn->in_size,
                          sizeof conn->in - conn->in_size, 0);
        if (n > 0)
            conn->in_size += (size_t) n;
        int status;
        bool close_after = false;
        size_t size;
        while (conn->busy && (size = s_response (conn, &status, &close_after))) {
            conn->busy = false;
            int64_t us = s_now_us () - conn->start_us;
            if (status >= 200 && status < 300) {
                self->ok++;
                s_record (&self->ok_hist, us);
            }
            else {
                self->other++;
                s_record (&self->other_hist, us);
            }
            if (status >= 100 && status < 600)
                self->statuses [status / 100]++;
            if (status == 503 && self->backoff_us)
                //  jittered by a quarter either way, as a client should, so
                //  a burst's retries do not all come back at once
                conn->resume_us = s_now_us () + self->backoff_us * 3 / 4
                                + (int64_t) (drand48 () * (double) self->backoff_us / 2);
            memmove (conn->in, conn->in + size, conn->in_size - size);
            conn->in_size -= size;
            if (close_after) {
                close (conn->fd);
                s_connect (self, conn);
                return;
            }
            s_pump (self, conn, now);
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            //  closed under us: an answer lost if one was out
            if (conn->busy)
                self->failed++;
            conn->busy = false;
            close (conn->fd);
            s_connect (self, conn);
            return;
        }
        if (n < 0)
            return;
    }
}

int
main (int argc, char *argv [])
{
    s_load_t self = { .conns = 50, .seconds = 10, .keys = 1, .method = "POST",
                      .path = "/api/v1/counter/increment", .type = "c" };
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *flag = argv [i], *value = argv [i + 1];
        if (!strcmp (flag, "-p"))      self.port = atoi (value);
        else if (!strcmp (flag, "-c")) self.conns = atoi (value);
        else if (!strcmp (flag, "-r")) self.rate = atof (value);
        else if (!strcmp (flag, "-d")) self.seconds = atof (value);
        else if (!strcmp (flag, "-n")) self.count = strtoull (value, NULL, 10);
        else if (!strcmp (flag, "-b")) self.backoff_us = (int64_t) (atof (value) * 1000);
        else if (!strcmp (flag, "-k")) self.keys = atoi (value);
        else if (!strcmp (flag, "-m")) self.method = value;
        else if (!strcmp (flag, "-u")) self.path = value;
        else if (!strcmp (flag, "-t")) self.type = value;
        else {
            fprintf (stderr, "http_load: unknown option %s\n", flag);
            return 2;
        }
    }
    if (!self.port || self.conns < 1 || self.keys < 1) {
        fprintf (stderr, "usage: http_load -p PORT [-c CONNS] [-r RATE] [-d SECONDS] "
                         "[-n COUNT] [-b MS] [-k KEYS] [-m METHOD] [-u PATH] [-t TYPE]\n");
        return 2;
    }
    struct rlimit nofile;
    if (getrlimit (RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t) self.conns + 64) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit (RLIMIT_NOFILE, &nofile);
    }
    self.epoll = epoll_create1 (EPOLL_CLOEXEC);
    self.conn = calloc ((size_t) self.conns, sizeof (s_conn_t));
    if (self.epoll < 0 || !self.conn)
        return 1;
    int64_t start = s_now_us ();
    if (self.count)
        self.rate = 0;              //  a count is a closed-loop run
    self.interval_us = self.rate > 0 ? (int64_t) (1e6 * self.conns / self.rate) : 0;
    self.end_us = start + (int64_t) ((self.count ? 3600 : self.seconds) * 1e6);
    for (int i = 0; i < self.conns; i++) {
        s_conn_t *conn = &self.conn [i];
        conn->key = (size_t) i;
        conn->due_us = start + (self.interval_us * i) / self.conns;
        if (s_connect (&self, conn))
            self.failed++;
    }
    struct rusage before, after;
    getrusage (RUSAGE_SELF, &before);
    struct epoll_event events [256];
    while (true) {
        int64_t now = s_now_us ();
        bool open = false;
        int64_t next = now + 1000;
        for (int i = 0; i < self.conns; i++) {
            s_conn_t *conn = &self.conn [i];
            s_pump (&self, conn, now);
            open |= conn->busy || conn->backlog
                 || (conn->resume_us > now && now < self.end_us);
            if (self.interval_us && !conn->busy && conn->due_us < next)
                next = conn->due_us;
            if (!self.interval_us && !conn->busy && conn->resume_us > now
            &&  conn->resume_us < next)
                next = conn->resume_us;
        }
        bool done = now >= self.end_us
                 || (self.count && self.sent >= self.count);
        if (done && !open)
            break;
        if (now >= self.end_us + 10000000) {
            fprintf (stderr, "http_load: answers still missing 10 s after the end\n");
            break;
        }
        //  until the next due request, at most 1 ms
        int64_t wait_us = next > now ? next - now : 0;
        struct timespec wait = { 0, (long) wait_us * 1000 };
        int n = epoll_pwait2 (self.epoll, events, 256, &wait, NULL);
        now = s_now_us ();
        for (int e = 0; e < n; e++) {
            s_conn_t *conn = events [e].data.ptr;
            if (conn->connecting && (events [e].events & (EPOLLOUT | EPOLLERR))) {
                int error = 0;
                socklen_t len = sizeof error;
                getsockopt (conn->fd, SOL_SOCKET, SO_ERROR, &error, &len);
                if (error) {
                    self.failed++;
                    close (conn->fd);
                    conn->fd = -1;
                    continue;
                }
                conn->connecting = false;
                s_pump (&self, conn, now);
            }
            if (events [e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                s_readable (&self, conn, now);
        }
    }
    getrusage (RUSAGE_SELF, &after);
    double elapsed = (s_now_us () - start) / 1e6;
    double cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1e6
                  + (after.ru_utime.tv_usec - before.ru_utime.tv_usec)
                  + (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e6
                  + (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    uint64_t answered = self.ok + self.other;
    printf ("sent=%llu answered=%llu 2xx=%llu 4xx=%llu 5xx=%llu failed=%llu "
            "rate=%.1f ok_p50=%.2f ok_p90=%.2f ok_p99=%.2f ok_p999=%.2f ok_max=%.2f "
            "other_p50=%.2f other_p99=%.2f cpu_us=%.1f ok_mean=%.3f seconds=%.3f\n",
            (unsigned long long) self.sent, (unsigned long long) answered,
            (unsigned long long) self.statuses [2],
            (unsigned long long) self.statuses [4],
            (unsigned long long) self.statuses [5],
            (unsigned long long) self.failed, answered / elapsed,
            s_percentile (&self.ok_hist, 50), s_percentile (&self.ok_hist, 90),
            s_percentile (&self.ok_hist, 99), s_percentile (&self.ok_hist, 99.9),
            self.ok_hist.max_us / 1000.0,
            s_percentile (&self.other_hist, 50), s_percentile (&self.other_hist, 99),
            answered ? cpu_us / (double) answered : 0,
            self.ok_hist.total
                ? self.ok_hist.sum_us / 1000.0 / (double) self.ok_hist.total : 0,
            elapsed);
    return self.failed || answered != self.sent ? 1 : 0;
}
