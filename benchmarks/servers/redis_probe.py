"""What one Redis call of the backplane costs, alone: Redis's CPU and the caller's per call.

Run by ``run.py`` in scenario H, pinned to the servers' core, against a Redis of its own that no
hub uses (``--redis URL --redis-pid PID``); prints one JSON line. One redis-py client, one call
at a time (as a hub's greenlets call it: no pipelining):

- a plain ``SET``: the floor of one round trip on this machine;
- the backplane's broadcast script as shipped (``wsroom.backplane.scripts``), on a room laid out
  as the scripts lay it (1,000 live members, the sender excluded), with a call id as the hub
  sends one, and without (``""``: no ``done:<id>`` key read and written);
- ``XREAD`` over 1, 10, 100, 1,000 room streams with nothing new (not blocking): what the reader's
  one XREAD costs per room it reads, in Redis and in the caller (building and parsing the call).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import redis

from wsroom.backplane.scripts import SCRIPTS


def schedstat_s(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def measure(pid: int, n: int, call: Callable[[int], Any]) -> dict[str, float]:
    call(0)  # load the script, open the connection
    r0, c0, w0 = schedstat_s(pid), time.process_time(), time.monotonic()
    for i in range(n):
        call(i)
    wall = time.monotonic() - w0
    return {"redis_us": (schedstat_s(pid) - r0) / n * 1e6,
            "client_us": (time.process_time() - c0) / n * 1e6, "calls_per_s": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--redis-pid", type=int, required=True)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    c = redis.Redis.from_url(args.redis, decode_responses=True)
    room = "probe"
    c.hset(f"wsroom:r:{{{room}}}:c",
           mapping={"joined": 1000, "live": 1000, "grace": 30000, "maxq": 64})
    c.hset(f"wsroom:r:{{{room}}}:m", "p0", json.dumps({"st": "L", "g": 1, "p": "x", "j": 1}))
    frame = json.dumps({"type": "bcast", "payload": {"seq": 1, "t": 1.0, "pad": "x" * 40}})
    bcast = c.register_script(SCRIPTS["broadcast"])
    n = args.calls
    out: dict[str, Any] = {"calls": n}
    out["set"] = measure(args.redis_pid, n, lambda i: c.set("k", "v"))
    out["broadcast_script"] = measure(
        args.redis_pid, n,
        lambda i: bcast(keys=[], args=[os.urandom(9).hex(), room, frame, '["p0"]']))
    out["broadcast_script_no_call_id"] = measure(
        args.redis_pid, n, lambda i: bcast(keys=[], args=["", room, frame, '["p0"]']))
    out["xread"] = {}
    for streams in (1, 10, 100, 1000):
        keys = [f"wsroom:r:{{x{j}}}:s" for j in range(streams)]
        ids = {k: c.xadd(k, {"f": "x"}) for k in keys}
        m = max(50, n // max(1, streams // 10))
        out["xread"][str(streams)] = measure(
            args.redis_pid, m, lambda i, ids=ids: c.xread(ids, count=512, block=None))
    c.flushall()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
