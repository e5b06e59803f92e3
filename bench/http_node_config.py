#!/usr/bin/env python3
"""The HTTP benchmarks' node config, in one place (pipeline_bench.sh, ab_bench.sh).

    bench/http_node_config.py BASE.json TMP PORT [scheduler policy] > node.json

BASE is a whole config: config/default.json, or an older build's --print-default-config (then
config/default.json's demo schema and statements are put in, and only keys BASE has are set).
On top: one HTTP thread, 2 scheduler threads, no admin listener, warn logs, the node's files in
TMP/data, rate limits no run reaches, user_by_id cached for an hour and user_by_id_fresh, the same
statement never cached. BULWARK_CAF_WAITS=1: CAF's own idle waits (500 moderate polls) where
the build exposes them (scheduler.stealing). BULWARK_AGGRESSIVE_POLLS=N: that many back-to-back
polls before an idle worker sleeps (scheduler.stealing.aggressive_poll_attempts).
"""
import json
import os
import sys

base, tmp, port = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(base))
shipped = json.load(open(os.path.join(os.path.dirname(__file__), "..", "config", "default.json")))
cfg["backend"]["init_sql"] = shipped["backend"]["init_sql"]
cfg["statements"] = shipped["statements"]
cfg["http"]["listen"] = "127.0.0.1:" + port
if "listen" in cfg.get("admin", {}):
    cfg["admin"]["listen"] = ""  # no admin routes needed
cfg["http"]["threads"] = 1
cfg["node"]["data_dir"] = tmp + "/data"
cfg["log"]["level"] = "warn"
cfg["scheduler"]["threads"] = 2
if len(sys.argv) > 4:
    cfg["scheduler"]["policy"] = sys.argv[4]
if os.environ.get("BULWARK_CAF_WAITS") == "1" and "stealing" in cfg["scheduler"]:
    cfg["scheduler"]["stealing"]["moderate_poll_attempts"] = 500
if os.environ.get("BULWARK_AGGRESSIVE_POLLS") and "stealing" in cfg["scheduler"]:
    cfg["scheduler"]["stealing"]["aggressive_poll_attempts"] = int(
        os.environ["BULWARK_AGGRESSIVE_POLLS"])
cfg["rate_limiter"]["rate_per_sec"] = 1e8
cfg["rate_limiter"]["burst"] = 100000000
cfg["statements"]["user_by_id"]["cache_ttl_ms"] = 3600000
fresh = dict(cfg["statements"]["user_by_id"])
fresh["cache_ttl_ms"] = 0
cfg["statements"]["user_by_id_fresh"] = fresh
json.dump(cfg, sys.stdout)
