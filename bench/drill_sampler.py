#!/usr/bin/env python3
"""drill_sampler.py -- samples a bulwarkd during bench/memory_drill.sh until SIGTERM.

  drill_sampler.py --pid PID --port P --out DIR [--cgroup /sys/fs/cgroup/memory/X]
                   [--rss-hz 20] [--scrape-hz 5]

DIR/rss.csv, at --rss-hz: CLOCK_MONOTONIC seconds, VmRSS and VmHWM of /proc/PID/status in bytes
(empty once the process is gone or a zombie), and the cgroup's memory.usage_in_bytes (v1) when
--cgroup is given.

DIR/scrapes.jsonl, at --scrape-hz, in its own thread so a slow scrape never delays the RSS: one
JSON object per GET /metrics (1 s timeout) with its start time `t`, `ok`, and, from the text:
bulwark_memory_pressure_level, _ratio, bulwark_memory_used_bytes, bulwark_memory_limit_bytes,
bulwark_requests_total{outcome} (all outcomes), bulwark_requests_received_total,
bulwark_requests_in_flight, bulwark_http_requests_in_flight,
bulwark_pool_acquire_timeouts_total, bulwark_pool_call_timeouts_total and
bulwark_memory_reserved_bytes{consumer}. A metric the node does not export is left out of the
object; a failed scrape (a dying node) is recorded with its error and sampling goes on.
"""

import argparse
import json
import os
import re
import signal
import threading
import time
import urllib.request

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

SCALARS = {
    "bulwark_memory_pressure_level": "level",
    "bulwark_memory_pressure_ratio": "ratio",
    "bulwark_memory_used_bytes": "used",
    "bulwark_memory_limit_bytes": "limit",
    "bulwark_requests_received_total": "received",
    "bulwark_requests_in_flight": "in_flight",
    "bulwark_http_requests_in_flight": "http_in_flight",
    # where a 504 came from: a waiter past its wait (or judged hopeless), a call past its deadline
    "bulwark_pool_acquire_timeouts_total": "pool_acquire_timeouts",
    "bulwark_pool_call_timeouts_total": "pool_call_timeouts",
}
LABELLED = {
    "bulwark_requests_total": ("outcomes", "outcome"),
    "bulwark_memory_reserved_bytes": ("reserved", "consumer"),
}


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        if name in SCALARS:
            # a scalar may still carry labels; sum its series
            key = SCALARS[name]
            out[key] = out.get(key, 0.0) + v
        elif name in LABELLED:
            key, label = LABELLED[name]
            lab = dict(LABEL.findall(labels or ""))
            series = out.setdefault(key, {})
            k = lab.get(label, "")
            series[k] = series.get(k, 0.0) + v
    return out


def read_status(pid):
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cgroup", default="")
    ap.add_argument("--rss-hz", type=float, default=20.0)
    ap.add_argument("--scrape-hz", type=float, default=5.0)
    opt = ap.parse_args()
    os.makedirs(opt.out, exist_ok=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    url = f"http://127.0.0.1:{opt.port}/metrics"

    def scraper():
        period = 1.0 / opt.scrape_hz
        nxt = time.monotonic()
        with open(os.path.join(opt.out, "scrapes.jsonl"), "w") as f:
            while not stop.is_set():
                t = time.monotonic()
                rec = {"t": t}
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as r:
                        body = r.read().decode("utf-8", "replace")
                    rec["ok"] = True
                    rec.update(parse_metrics(body))
                except Exception as e:  # a dying or saturated node: record and go on
                    rec["ok"] = False
                    rec["error"] = f"{type(e).__name__}: {e}"[:200]
                rec["dur"] = time.monotonic() - t
                f.write(json.dumps(rec) + "\n")
                f.flush()
                nxt = max(nxt + period, time.monotonic())
                stop.wait(max(0.0, nxt - time.monotonic()))

    th = threading.Thread(target=scraper, daemon=True)
    th.start()

    usage_path = os.path.join(opt.cgroup, "memory.usage_in_bytes") if opt.cgroup else ""
    period = 1.0 / opt.rss_hz
    nxt = time.monotonic()
    with open(os.path.join(opt.out, "rss.csv"), "w") as f:
        f.write("t,rss,hwm,cgroup_usage\n")
        while not stop.is_set():
            t = time.monotonic()
            rss, hwm = read_status(opt.pid)
            cg = read_int(usage_path) if usage_path else None
            f.write(f"{t:.4f},{'' if rss is None else rss},{'' if hwm is None else hwm},"
                    f"{'' if cg is None else cg}\n")
            nxt = max(nxt + period, time.monotonic())
            stop.wait(max(0.0, nxt - time.monotonic()))
        f.flush()
    th.join(timeout=2.0)


if __name__ == "__main__":
    main()
