#!/usr/bin/env python3
"""A misbehaving HTTP client for the metrics endpoint tests (standard library only).

usage:
  http_peer.py raw  SRC DST PORT HEXBYTES        one connection: send the bytes, read until closed
  http_peer.py slow SRC DST PORT N SECONDS       N connections send a head one line per second

Prints one line per connection: `conn=<i> outcome=<what> after_ms=<n>`, where what is
`reset`, `closed-empty`, `status:<code>` (first line of an answer), `open` (still open at
the end) or `connect-failed:<errno name>`.
"""
import errno
import select
import socket
import sys
import time


def connect(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(5)
    s.connect((dst, port))
    return s


def outcome_of(data):
    if not data:
        return "closed-empty"
    first = data.split(b"\r\n", 1)[0].decode("ascii", "replace")
    parts = first.split(" ")
    if len(parts) >= 2 and parts[0].startswith("HTTP/"):
        return "status:" + parts[1]
    return "garbage"


def raw(src, dst, port, hexbytes):
    t0 = time.monotonic()
    try:
        s = connect(src, dst, port)
    except OSError as e:
        print(f"conn=0 outcome=connect-failed:{errno.errorcode.get(e.errno, e.errno)} after_ms=0")
        return
    s.settimeout(10)
    data = b""
    try:
        s.sendall(bytes.fromhex(hexbytes))
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        what = outcome_of(data)
    except ConnectionResetError:
        what = "reset" if not data else outcome_of(data)
    except socket.timeout:
        what = "open"
    except OSError as e:
        what = "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else f"error:{e.errno}"
    ms = int((time.monotonic() - t0) * 1000)
    print(f"conn=0 outcome={what} after_ms={ms}", flush=True)


def slow(src, dst, port, n, seconds):
    t0 = time.monotonic()
    conns = {}
    for i in range(n):
        try:
            s = connect(src, dst, port)
            s.setblocking(False)
            conns[i] = [s, b"", None]
        except OSError as e:
            name = errno.errorcode.get(e.errno, e.errno)
            print(f"conn={i} outcome=connect-failed:{name} after_ms=0", flush=True)
    lines = [b"GET /metrics HTTP/1.1\r\n"] + [b"X-Slow-%d: 1\r\n" % k for k in range(1000)]
    step = 0
    next_send = time.monotonic()
    deadline = t0 + seconds
    while conns and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            for i, c in list(conns.items()):
                try:
                    c[0].send(lines[min(step, len(lines) - 1)])
                except OSError:
                    pass  # the read side reports what happened
            step += 1
            next_send = now + 1.0
        socks = [c[0] for c in conns.values()]
        readable, _, _ = select.select(socks, [], [], 0.1)
        for i, c in list(conns.items()):
            if c[0] not in readable:
                continue
            try:
                chunk = c[0].recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = None
            except BlockingIOError:
                continue
            ms = int((time.monotonic() - t0) * 1000)
            if chunk is None:
                what = "reset" if not c[1] else outcome_of(c[1])
            elif chunk:
                c[1] += chunk
                continue
            else:
                what = outcome_of(c[1])
            print(f"conn={i} outcome={what} after_ms={ms}", flush=True)
            c[0].close()
            del conns[i]
    ms = int((time.monotonic() - t0) * 1000)
    for i, c in conns.items():
        print(f"conn={i} outcome=open after_ms={ms}", flush=True)
        c[0].close()


def main():
    mode, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "raw":
        raw(src, dst, port, sys.argv[5])
    elif mode == "slow":
        slow(src, dst, port, int(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
