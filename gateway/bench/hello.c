/*  hello.c - the smallest civetweb server, the yardstick for the gateway
 *
 *  scripts/bench_http.sh runs wrk against this and against bin/hgp-gateway
 *  side by side: the ratio says what the bus round trip, JSON and our
 *  handler cost on top of civetweb itself. It uses the gateway's civetweb
 *  settings (threads, queue, backlog, keep-alive, tcp_nodelay) and answers
 *  the way the gateway does, headers and body in one write, so the only
 *  difference is the work behind the answer.
 *
 *  hello PORT [THREADS]; stops on SIGTERM or SIGINT.
 */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop = 0;

static void
s_signal (int sig)
{
    s_stop = 1;
}

static int
s_begin_request (struct mg_connection *conn)
{
    static const char reply [] =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 18\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: keep-alive\r\n"
        "\r\n"
        "{\"hello\":\"world\"}\n";
    mg_write (conn, reply, sizeof reply - 1);
    return 200;
}

int
main (int argc, char *argv [])
{
    if (argc < 2) {
        fprintf (stderr, "usage: hello PORT [THREADS]\n");
        return 1;
    }
    char listen [64];
    snprintf (listen, sizeof listen, "127.0.0.1:%s", argv [1]);
    const char *threads = argc > 2 ? argv [2] : "1024";
    const char *options [] = {
        "listening_ports", listen,
        "num_threads", threads,
        "connection_queue", "1024",
        "listen_backlog", "1024",
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "5000",
        "request_timeout_ms", "30000",
        "tcp_nodelay", "1",
        "decode_url", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.begin_request = s_begin_request;
    mg_init_library (0);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx) {
        fprintf (stderr, "hello: cannot listen on %s\n", listen);
        return 1;
    }
    signal (SIGTERM, s_signal);
    signal (SIGINT, s_signal);
    printf ("hello: listening on http://%s, %s threads\n", listen, threads);
    fflush (stdout);
    while (!s_stop)
        usleep (100000);
    mg_stop (ctx);
    mg_exit_library ();
    return 0;
}
