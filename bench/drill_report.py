#!/usr/bin/env python3
"""drill_report.py -- turns one mode of bench/memory_drill.sh into numbers and plot data.

  drill_report.py summarize --mode NAME --dir DIR --budget BYTES [--after 5]
        DIR holds rss.csv and scrapes.jsonl (bench/drill_sampler.py), load.json
        (bench/drill_load.py) and node.json (written by the drill: how the node ended, and the
        cgroup's memory.oom_control / memory.failcnt / memory.max_usage_in_bytes). Writes
        DIR/summary.json and, for bench/drill_plot.gp, DIR/rss.dat, DIR/cgroup.dat,
        DIR/reserved.dat, DIR/level.dat, DIR/answers.dat and DIR/plot_vars.gp, with time in
        seconds from the start of the flood.
  drill_report.py table DIR...
        prints the markdown table, one row per mode, and the bar against each.

The bar (issue 10, item 5): peak RSS <= 1.1 x budget, zero OOM kills, every request answered.
Peak RSS is the kernel's VmHWM (exact) as last read while the node lived; the 20 Hz sampled
peak is shown beside it. An OOM kill is the cgroup's oom_kill count, or, outside a cgroup, the
node ending by SIGKILL while the drill had not stopped it. "Answered" is by the load generator:
a whole HTTP answer for every request due. The books hold at a scrape when
bulwark_requests_received_total == sum(bulwark_requests_total) + bulwark_requests_in_flight.
"""

import argparse
import json
import os
import statistics
import sys

MiB = 1024.0 * 1024.0


def load_rss(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            t, rss, hwm, cg = line.rstrip("\n").split(",")
            rows.append((float(t), int(rss) if rss else None, int(hwm) if hwm else None,
                         int(cg) if cg else None))
    return rows


def load_scrapes(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # the last line of a killed sampler
    return out


def fmt_mib(b):
    return "–" if b is None else f"{b / MiB:.0f}"


def summarize(opt):
    d = opt.dir
    load = json.load(open(os.path.join(d, "load.json")))
    node = json.load(open(os.path.join(d, "node.json")))
    rss = load_rss(os.path.join(d, "rss.csv"))
    scrapes = load_scrapes(os.path.join(d, "scrapes.jsonl"))
    t0, t_end = load["start_mono"], load["end_mono"]
    budget = opt.budget

    alive = [r for r in rss if r[1] is not None]
    sampled_peak = max((r[1] for r in alive), default=None)
    hwm = max((r[2] for r in rss if r[2] is not None), default=None)
    peak = max(x for x in (hwm, sampled_peak, 0) if x is not None) or None
    before = [r[1] for r in alive if t0 - 1.5 <= r[0] < t0]
    rss_before = statistics.median(before) if before else None
    after_t = t_end + opt.after
    after = [r for r in rss if r[0] >= after_t]
    rss_after = after[0][1] if after else None
    cg_peak = max((r[3] for r in rss if r[3] is not None), default=None)
    died_at = None
    if rss and rss[-1][1] is None and alive:
        died_at = alive[-1][0] - t0  # last sample that saw it alive

    good = [s for s in scrapes if s.get("ok")]
    last = good[-1] if good else {}
    max_level = max((s.get("level", 0) for s in good), default=None)
    books_total = books_held = 0
    books_worst = None
    for s in good:
        if "received" in s and "in_flight" in s:
            books_total += 1
            gap = s["received"] - sum(s.get("outcomes", {}).values()) - s["in_flight"]
            if abs(gap) < 0.5:
                books_held += 1
            elif books_worst is None or abs(gap) > abs(books_worst):
                books_worst = gap
    has_received = any("received" in s for s in good)
    has_in_flight = any("in_flight" in s for s in good)
    has_reserved = any("reserved" in s for s in good)

    oom = node.get("oom_kill")
    if oom is None:  # outside a cgroup: SIGKILL that the drill did not send
        oom = 1 if node.get("died_by_signal") == 9 else 0

    answered = load["answered"]
    offered = load["offered"]
    bar_peak = peak is not None and peak <= 1.1 * budget
    bar_oom = oom == 0
    bar_answered = answered == offered
    summary = {
        "mode": opt.mode,
        "budget": budget,
        "limit_seen": last.get("limit"),
        "peak_rss": peak,
        "peak_rss_sampled": sampled_peak,
        "peak_ratio": None if peak is None else peak / budget,
        "cgroup_peak_sampled": cg_peak,
        "cgroup_max_usage": node.get("max_usage"),
        "failcnt": node.get("failcnt"),
        "under_oom": node.get("under_oom"),
        "oom_kills": oom,
        "node_end": node.get("end"),
        "died_at_s": died_at,
        "max_level": max_level,
        "load": {k: load[k] for k in ("rate", "seconds", "connections", "offered", "sent",
                                       "answered", "transport", "pending", "unsent",
                                       "statuses", "latency_s")},
        "flood_s": t_end - t0,
        "node_outcomes": {k: int(v) for k, v in sorted(last.get("outcomes", {}).items()) if v},
        "node_outcomes_at_s": (last["t"] - t0) if last else None,
        "received": last.get("received"),
        "pool_acquire_timeouts": last.get("pool_acquire_timeouts"),
        "pool_call_timeouts": last.get("pool_call_timeouts"),
        "reserved_peak": ({k: max(s.get("reserved", {}).get(k, 0) for s in good)
                           for k in sorted({k for s in good for k in s.get("reserved", {})})}
                          if has_reserved else None),
        "reserved_sum_peak": (max(sum(s.get("reserved", {}).values()) for s in good)
                              if has_reserved else None),
        "books": ({"held": books_held, "of": books_total, "worst_gap": books_worst}
                  if has_received and has_in_flight else None),
        "metrics_absent": [n for n, ok in (("bulwark_requests_received_total", has_received),
                                           ("bulwark_requests_in_flight", has_in_flight),
                                           ("bulwark_memory_reserved_bytes", has_reserved))
                           if not ok],
        "scrapes": {"ok": len(good), "failed": len(scrapes) - len(good)},
        "rss_before": rss_before,
        "rss_after": rss_after,
        "after_s": opt.after,
        "bar": {"peak": bar_peak, "oom": bar_oom, "answered": bar_answered},
    }
    json.dump(summary, open(os.path.join(d, "summary.json"), "w"), indent=1)

    # plot data, t = seconds since the flood started
    with open(os.path.join(d, "rss.dat"), "w") as f:
        f.write("# t rss_MiB\n")
        for t, r, _, _ in alive:
            f.write(f"{t - t0:.3f} {r / MiB:.2f}\n")
    with open(os.path.join(d, "cgroup.dat"), "w") as f:
        f.write("# t cgroup_usage_MiB\n")
        for t, _, _, cg in rss:
            if cg is not None:
                f.write(f"{t - t0:.3f} {cg / MiB:.2f}\n")
    with open(os.path.join(d, "reserved.dat"), "w") as f:
        f.write("# t reserved_MiB (sum over consumers)\n")
        for s in good:
            if "reserved" in s:
                f.write(f"{s['t'] - t0:.3f} {sum(s['reserved'].values()) / MiB:.2f}\n")
    with open(os.path.join(d, "level.dat"), "w") as f:
        f.write("# t level\n")
        for s in good:
            if "level" in s:
                f.write(f"{s['t'] - t0:.3f} {s['level']:.0f}\n")
    with open(os.path.join(d, "answers.dat"), "w") as f:
        # answers per second by HTTP status, at the middle of each bucket
        f.write("# t 2xx 503 504 other transport\n")
        width = load["bucket_ms"] / 1000.0
        for start, counts in load["series"]:
            c = {int(k): v for k, v in counts.items()}
            ok = sum(v for k, v in c.items() if 200 <= k < 300)
            s503, s504, tr = c.get(503, 0), c.get(504, 0), c.get(0, 0)
            other = sum(c.values()) - ok - s503 - s504 - tr
            f.write(f"{start + width / 2:.3f} " +
                    " ".join(f"{x / width:.2f}" for x in (ok, s503, s504, other, tr)) + "\n")
    with open(os.path.join(d, "plot_vars.gp"), "w") as f:
        f.write(f"flood = {load['seconds']}\nend_t = {t_end - t0:.3f}\n"
                f"after_t = {t_end - t0 + opt.after:.3f}\nhas_cg = {1 if cg_peak else 0}\n"
                f"has_reserved = {1 if has_reserved else 0}\n"
                f"died_t = {-1 if died_at is None else died_at:.3f}\n")


def yes(b):
    return "✓" if b else "✗"


def latency(x):
    """Client latency from each request's due time (so the load generator's own queue counts)."""
    if not x or x.get("p50") is None:
        return "–"
    return " / ".join(f"{x[k]:.3f}" for k in ("p50", "p99", "max"))


def table(dirs):
    rows = [json.load(open(os.path.join(d, "summary.json"))) for d in dirs]
    print("| mode | node's limit | peak RSS MiB (VmHWM / 20 Hz) | peak / budget | peak reserved MiB"
          " | cgroup max usage MiB"
          " | OOM kills | failcnt | max level | node | offered / sent / answered"
          " | unanswered: transport / pending / unsent | HTTP statuses (0 = transport)"
          " | node outcomes (last good scrape) | books | client p50 / p99 / max s"
          " | RSS MiB before → 5 s after | bar |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        ld = s["load"]
        node = s["node_end"] or "?"
        if s["died_at_s"] is not None and "alive" not in node:
            node += f" at {s['died_at_s']:.1f} s"
        books = ("n/a (" + ", ".join(s["metrics_absent"][:2]) + " absent)" if s["books"] is None
                 else f"{s['books']['held']}/{s['books']['of']} scrapes"
                 + ("" if s["books"]["worst_gap"] is None
                    else f", worst gap {s['books']['worst_gap']:+.0f}"))
        outcomes = " ".join(f"{k}:{v}" for k, v in s["node_outcomes"].items()) or "–"
        if s["node_outcomes_at_s"] is not None:
            outcomes += f" (t={s['node_outcomes_at_s']:.1f} s)"
        statuses = " ".join(f"{k}:{v}" for k, v in ld["statuses"].items()) or "–"
        after = "dead" if s["rss_after"] is None else fmt_mib(s["rss_after"])
        bar = s["bar"]
        verdict = "PASS" if all(bar.values()) else "FAIL"
        cells = [
            s["mode"],
            fmt_mib(s["limit_seen"]),
            f"{fmt_mib(s['peak_rss'])} / {fmt_mib(s['peak_rss_sampled'])}",
            "–" if s["peak_ratio"] is None else f"{s['peak_ratio']:.2f} ×",
            fmt_mib(s["reserved_sum_peak"]),
            fmt_mib(s["cgroup_max_usage"]) if s["cgroup_max_usage"] is not None else "–",
            str(s["oom_kills"]),
            "–" if s["failcnt"] is None else str(s["failcnt"]),
            "–" if s["max_level"] is None else f"{s['max_level']:.0f}",
            node,
            f"{ld['offered']} / {ld['sent']} / {ld['answered']}",
            f"{ld['transport']} / {ld['pending']} / {ld['unsent']}",
            statuses,
            outcomes,
            books,
            latency(ld.get("latency_s")),
            f"{fmt_mib(s['rss_before'])} → {after}",
            f"{verdict}: peak≤1.1×{yes(bar['peak'])} OOM=0{yes(bar['oom'])} "
            f"all answered{yes(bar['answered'])}",
        ]
        print("| " + " | ".join(cells) + " |")
    # Where the 504s came from (the pool's counters at the last good scrape).
    for s in rows:
        if s.get("pool_acquire_timeouts") is not None:
            print(f"{s['mode']}: pool acquire timeouts {s['pool_acquire_timeouts']:.0f}, "
                  f"call timeouts {s.get('pool_call_timeouts') or 0:.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("--mode", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--budget", type=int, required=True)
    s.add_argument("--after", type=float, default=5.0)
    t = sub.add_parser("table")
    t.add_argument("dirs", nargs="+")
    opt = ap.parse_args()
    if opt.cmd == "summarize":
        summarize(opt)
    else:
        table(opt.dirs)


if __name__ == "__main__":
    sys.exit(main())
