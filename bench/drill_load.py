#!/usr/bin/env python3
"""drill_load.py -- the open-loop load of bench/memory_drill.sh (python3 standard library only).

  drill_load.py --port P --path /v1/query/big --rate R --seconds S --connections C
                [--method POST] [--body '{"params":[]}'] [--grace G] --out result.json

Request i is due at start + i / rate for i < rate * seconds, whatever happened before it, and
joins a FIFO until one of C keep-alive connections is free (as bulwark_load does). Responses are
read to the end and thrown away, however large (Content-Length or chunked), and a dead node is
survived: a refused connection is retried (after 10 ms, doubling to 0.5 s). The run ends when
every due request has an answer, or `grace` seconds after the last one was due, if sooner.

Why not bulwark_load: it reads with Beast's default response body limit (8 MiB), so the drill's
~10 MB answers would count as transport errors, and it waits for every request forever, so a
node killed by the kernel leaves it running with nothing printed.

Every request due ends in exactly one of: answered (an HTTP status), transport (sent, the
connection broke before the whole answer came), pending (sent, no whole answer at the cut-off),
unsent (still waiting for a free connection at the cut-off). Writes one JSON document with the
counts, the latency from due time, and a series of answers per `--bucket-ms` by status
(0 = transport error), with the CLOCK_MONOTONIC time of the start and the end so the sampler's
timeline lines up.
"""

import argparse
import asyncio
import collections
import json
import os
import socket
import time


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; parses just enough to find where an answer ends."""

    def __init__(self, load):
        self.load = load
        self.transport = None
        self.busy = False
        self.due = 0.0
        self.reset_parser()

    def reset_parser(self):
        self.head = bytearray()
        self.state = "head"  # head, body (content-length), chunk_size, chunk_data, trailer
        self.remaining = 0
        self.line = bytearray()
        self.status = 0
        self.close_after = False

    # --- asyncio.Protocol ---
    def connection_made(self, transport):
        self.transport = transport
        self.load.ready(self)

    def connection_lost(self, exc):
        self.transport = None
        if self.busy:
            self.busy = False
            self.load.done(self, 0)
        self.load.reconnect(self)

    def data_received(self, data):
        mv = memoryview(data)
        while len(mv) and self.busy:
            mv = self.step(mv)

    # --- parser ---
    def step(self, mv):
        if self.state == "head":
            self.head += mv
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 65536:
                    self.transport.close()
                return mv[len(mv):]
            rest = memoryview(bytes(self.head[end + 4:]))
            lines = bytes(self.head[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip().lower()
            self.close_after = headers.get("connection") == "close"
            if "chunked" in headers.get("transfer-encoding", ""):
                self.state = "chunk_size"
                self.line = bytearray()
            else:
                self.remaining = int(headers.get("content-length", "0"))
                self.state = "body"
                if self.remaining == 0:
                    self.finish()
            return rest
        if self.state in ("body", "chunk_data"):
            n = min(self.remaining, len(mv))
            self.remaining -= n
            if self.remaining == 0:
                if self.state == "body":
                    self.finish()
                else:
                    self.state = "chunk_crlf"
                    self.line = bytearray()
            return mv[n:]
        # line-oriented states: chunk_size, chunk_crlf, trailer
        nl = bytes(mv[:4096]).find(b"\n")
        if nl < 0:
            self.line += mv
            return mv[len(mv):]
        self.line += mv[:nl + 1]
        rest = mv[nl + 1:]
        text = bytes(self.line).strip()
        self.line = bytearray()
        if self.state == "chunk_crlf":
            self.state = "chunk_size"
        elif self.state == "chunk_size":
            size = int(text.split(b";")[0], 16)
            if size == 0:
                self.state = "trailer"
            else:
                self.remaining = size
                self.state = "chunk_data"
        elif self.state == "trailer":
            if not text:
                self.finish()
        return rest

    def finish(self):
        status, close = self.status, self.close_after
        self.reset_parser()
        self.busy = False
        self.load.done(self, status)
        if close and self.transport is not None:
            self.transport.close()  # connection_lost reconnects
        else:
            self.load.dispatch()


class Load:
    def __init__(self, opt, loop):
        self.opt = opt
        self.loop = loop
        self.total = int(opt.rate * opt.seconds)
        self.conns = []
        self.backlog = collections.deque()
        self.issued = 0
        self.sent = 0
        self.finished = 0
        self.statuses = collections.Counter()
        self.latencies = []
        self.series = collections.defaultdict(collections.Counter)
        self.last_answer = None
        self.all_done = asyncio.Event()
        self.connecting = set()
        host = opt.host
        body = opt.body.encode()
        req = f"{opt.method} {opt.path} HTTP/1.1\r\nHost: {host}\r\n"
        if body:
            req += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.request = req.encode() + b"\r\n" + body

    def connect(self, c):
        async def go():
            backoff = 0.01  # doubling to 0.5 s while refused, so a dead node costs no CPU
            while not self.all_done.is_set():
                try:
                    await self.loop.create_connection(lambda: c, self.opt.host, self.opt.port)
                    return
                except OSError:
                    await asyncio.sleep(backoff)
                    backoff = min(0.5, backoff * 2)
        t = self.loop.create_task(go())
        self.connecting.add(t)
        t.add_done_callback(self.connecting.discard)

    def reconnect(self, c):
        if not self.all_done.is_set():
            self.loop.call_later(0.01, self.connect, c)

    def ready(self, c):
        c.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dispatch()

    def due_at(self, i):
        return self.start + i / self.opt.rate

    def schedule(self):
        now = time.monotonic()
        while self.issued < self.total and self.due_at(self.issued) <= now:
            self.backlog.append(self.due_at(self.issued))
            self.issued += 1
        self.dispatch()
        if self.issued < self.total:
            self.loop.call_at(self.loop.time() + max(0.0, self.due_at(self.issued) - now),
                              self.schedule)

    def dispatch(self):
        for c in self.conns:
            if not self.backlog:
                return
            if c.transport is None or c.busy or c.transport.is_closing():
                continue
            c.busy = True
            c.due = self.backlog.popleft()
            self.sent += 1
            c.transport.write(self.request)

    def done(self, c, status):
        now = time.monotonic()
        self.finished += 1
        self.statuses[status] += 1
        if status:
            self.last_answer = now
            self.latencies.append(now - c.due)
        bucket = int((now - self.start) * 1000 // self.opt.bucket_ms)
        self.series[bucket][status] += 1
        if self.finished == self.total:
            self.all_done.set()

    async def run(self):
        for _ in range(self.opt.connections):
            c = Conn(self)
            self.conns.append(c)
            self.connect(c)
        self.start = time.monotonic()
        self.schedule()
        cutoff = self.opt.seconds + self.opt.grace
        try:
            await asyncio.wait_for(self.all_done.wait(), timeout=cutoff)
        except asyncio.TimeoutError:
            pass
        self.end = time.monotonic()
        self.all_done.set()
        pending = sum(1 for c in self.conns if c.busy)
        for c in self.conns:
            c.busy = False  # pending, not a transport error when the abort below closes it
            if c.transport is not None:
                c.transport.abort()
        tasks = list(self.connecting)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return pending


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--method", default="POST")
    ap.add_argument("--path", default="/v1/query/big")
    ap.add_argument("--body", default='{"params":[]}')
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--grace", type=float, default=15.0,
                    help="seconds after the last due time to wait for answers")
    ap.add_argument("--bucket-ms", type=int, default=1000)
    ap.add_argument("--out", required=True)
    opt = ap.parse_args()

    loop = asyncio.new_event_loop()
    load = Load(opt, loop)
    pending = loop.run_until_complete(load.run())
    answered = sum(n for s, n in load.statuses.items() if s)
    cpu = os.times()
    out = {
        "cpu_s": cpu.user + cpu.system,
        "rate": opt.rate,
        "seconds": opt.seconds,
        "connections": opt.connections,
        "start_mono": load.start,
        "end_mono": load.end,
        "last_answer_mono": load.last_answer,
        "offered": load.total,
        "sent": load.sent,
        "answered": answered,
        "transport": load.statuses.get(0, 0),
        "pending": pending,
        "unsent": load.total - load.sent,
        "statuses": {str(s): n for s, n in sorted(load.statuses.items())},
        "latency_s": {"p50": pct(load.latencies, 0.5), "p99": pct(load.latencies, 0.99),
                      "max": max(load.latencies) if load.latencies else None},
        "bucket_ms": opt.bucket_ms,
        "series": [[b * opt.bucket_ms / 1000.0, {str(s): n for s, n in sorted(cnt.items())}]
                   for b, cnt in sorted(load.series.items())],
    }
    with open(opt.out, "w") as f:
        json.dump(out, f)
    print(f"offered {out['offered']}, sent {out['sent']}, answered {answered} "
          f"{out['statuses']}, transport {out['transport']}, pending {pending}, "
          f"unsent {out['unsent']}, {out['end_mono'] - out['start_mono']:.1f} s, "
          f"load generator CPU {out['cpu_s']:.1f} s")


if __name__ == "__main__":
    main()
