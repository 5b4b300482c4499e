"""tcp_forward.py LISTEN_HOST PORT TO_HOST: accept on LISTEN_HOST:PORT and
copy bytes both ways to TO_HOST:PORT, one thread per direction.

The discovery tests need it for Kafka: hgp-kafka-mock (librdkafka's mock
cluster) listens on 127.0.0.1 only and advertises that address, but counter
actors run in two network namespaces. A forwarder on the same port in each
namespace makes 127.0.0.1:PORT reach the one mock from both sides.
Runs until SIGTERM, which ends it with exit 0."""
import signal
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    host, port, to = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(64)
    print("forwarding %s:%d to %s:%d" % (host, port, to, port), flush=True)
    while True:
        conn, _ = server.accept()
        try:
            out = socket.create_connection((to, port), timeout=5)
            out.settimeout(None)
        except OSError:
            conn.close()
            continue
        for a, b in ((conn, out), (out, conn)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
