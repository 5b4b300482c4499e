#   Sourced by bench_http.sh and loadtest.sh: webdis, the peer they measure
#   against (Debian's, C on libevent: HTTP GET /INCR/key straight to Redis,
#   no idempotency, no log), on its own redis-server, with Debian's default
#   of 2 threads.
#
#   webdis_start DIR PORT REDIS_PORT: starts both, logs in DIR; sets
#   webdis_redis_pid and webdis_pid (the caller stops them)
webdis_start () {
    local dir=$1 port=$2 rport=$3
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
        > "$dir/webdis-redis.log" 2>&1 &
    webdis_redis_pid=$!
    cat > "$dir/webdis.json" <<JSON
{"redis_host": "127.0.0.1", "redis_port": $rport, "redis_auth": null,
 "http_host": "127.0.0.1", "http_port": $port, "threads": 2,
 "daemonize": false, "database": 0, "verbosity": 1,
 "logfile": "$dir/webdis.log"}
JSON
    webdis "$dir/webdis.json" > "$dir/webdis.out" 2>&1 &
    webdis_pid=$!
}
