#!/usr/bin/env python3
"""Holds SSE and WebSocket subscriptions open against the storefront for the soak
(benches/soak/run.sh), reconnecting any that end, and counts what arrives.

usage: subscribers.py HOST:PORT SECONDS [--sse N] [--ws N] [--auth HEADER]

Subscribers pick /Product/<id> (most) or /Product/?categoryId=<c> (one in five). Prints one
JSON line at the end: opened, reconnects, refused (non-101/200 answers), events, bytes.
Standard library only (a raw WebSocket client: the server's frames are read, none sent).
"""
import base64, json, os, random, selectors, socket, sys, time

CATEGORIES = ["electronics", "books", "toys", "home", "garden", "sports", "clothing",
              "beauty", "automotive", "grocery"]


def path_for(i):
    if i % 5 == 0:
        return f"/Product/?categoryId={CATEGORIES[i % len(CATEGORIES)]}"
    return f"/Product/prod-{random.randint(1, 300):05d}"


class Sub:
    def __init__(self, i, kind):
        self.i, self.kind = i, kind
        self.sock = None
        self.buf = b""
        self.head_done = False


def main():
    args = sys.argv[1:]
    addr, seconds = args[0], float(args[1])
    opts = dict(zip(args[2::2], args[3::2]))
    n_sse, n_ws = int(opts.get("--sse", 200)), int(opts.get("--ws", 100))
    auth = opts.get("--auth", "")
    host, port = addr.rsplit(":", 1)
    port = int(port)
    sel = selectors.DefaultSelector()
    stats = dict(opened=0, reconnects=0, refused=0, events=0, bytes=0, errors=0)

    def connect(sub, again=False):
        if again:
            stats["reconnects"] += 1
        try:
            s = socket.create_connection((host, port), timeout=10)
        except OSError:
            stats["errors"] += 1
            return False
        s.setblocking(False)
        path = path_for(sub.i)
        extra = f"Authorization: {auth}\r\n" if auth else ""
        if sub.kind == "sse":
            req = (f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n"
                   f"{extra}\r\n")
        else:
            key = base64.b64encode(os.urandom(16)).decode()
            req = (f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n{extra}\r\n")
        try:
            s.sendall(req.encode())
        except OSError:
            stats["errors"] += 1
            s.close()
            return False
        sub.sock, sub.buf, sub.head_done = s, b"", False
        sel.register(s, selectors.EVENT_READ, sub)
        stats["opened"] += 1
        return True

    def drop(sub):
        try:
            sel.unregister(sub.sock)
        except (KeyError, ValueError):
            pass
        sub.sock.close()
        sub.sock = None

    def consume(sub):
        if not sub.head_done:
            end = sub.buf.find(b"\r\n\r\n")
            if end < 0:
                return True
            status = sub.buf.split(b" ", 2)[1] if b" " in sub.buf else b""
            if status not in (b"101", b"200"):
                stats["refused"] += 1
                return False
            sub.buf = sub.buf[end + 4:]
            sub.head_done = True
        if sub.kind == "sse":
            # Chunked or not, each event ends with a blank line after its data.
            stats["events"] += sub.buf.count(b"data:")
            cut = sub.buf.rfind(b"\n")
            sub.buf = sub.buf[cut + 1:] if cut >= 0 else sub.buf
        else:
            while len(sub.buf) >= 2:
                b1 = sub.buf[1] & 0x7F
                off = 2
                if b1 == 126:
                    if len(sub.buf) < 4:
                        break
                    b1, off = int.from_bytes(sub.buf[2:4], "big"), 4
                elif b1 == 127:
                    if len(sub.buf) < 10:
                        break
                    b1, off = int.from_bytes(sub.buf[2:10], "big"), 10
                if len(sub.buf) < off + b1:
                    break
                opcode = sub.buf[0] & 0x0F
                if opcode == 1:
                    stats["events"] += 1
                elif opcode == 8:
                    return False
                sub.buf = sub.buf[off + b1:]
        return True

    subs = [Sub(i, "sse") for i in range(n_sse)] + [Sub(n_sse + i, "ws") for i in range(n_ws)]
    for sub in subs:
        connect(sub)
    deadline = time.time() + seconds
    last_retry = time.time()
    while time.time() < deadline:
        for key, _ in sel.select(timeout=1.0):
            sub = key.data
            try:
                data = sub.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(sub)
                continue
            stats["bytes"] += len(data)
            sub.buf += data
            if not consume(sub):
                drop(sub)
        if time.time() - last_retry > 2:
            last_retry = time.time()
            for sub in subs:
                if sub.sock is None:
                    connect(sub, again=True)
    stats["open_at_end"] = sum(1 for s in subs if s.sock is not None)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
