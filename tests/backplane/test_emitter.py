"""Contract §8: ``wsroom.emitter(url)`` in a process that serves no sockets and never patched
gevent gives the hub's results and errors; the clients on the hub processes see its sends."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from typing import Any

from conftest import wait_until

from .support import UNAVAILABLE_WITHIN, Cluster

# Run with ``python -c`` in a fresh interpreter: nothing imports gevent.monkey, and the calls
# come from the main thread and from a plain OS thread. One JSON line out: every step's result
# (enums and reports spelled out with their classes) or error (class name, text, and whether
# it is a WsroomError), and whether anything got patched.
SCRIPT = r"""
import json, socket, sys, threading, time
import wsroom
from wsroom import Envelope

out = {}

def plain(v):
    if isinstance(v, wsroom.Delivery):
        return "Delivery." + v.name
    if isinstance(v, wsroom.Presence):
        return "Presence." + v.name
    if isinstance(v, wsroom.BroadcastReport):
        return {"BroadcastReport": [v.sent, v.queued, list(v.dropped)]}
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return sorted(plain(x) for x in v)
    return v

def step(name, fn):
    start = time.monotonic()
    try:
        value = fn()
    except Exception as exc:
        out[name] = {"error": type(exc).__name__, "detail": str(exc),
                     "wsroom": isinstance(exc, wsroom.WsroomError)}
    else:
        out[name] = {"ok": plain(value)}
    out[name]["took"] = time.monotonic() - start

mode = sys.argv[1]
em = None
def make():
    global em
    em = wsroom.emitter(sys.argv[2])
    return type(em).__name__
step("emitter", make)
out["is_emitter"] = isinstance(em, wsroom.Emitter)
if mode == "down":
    if em is not None:
        step("send_to", lambda: em.send_to("r", "a", Envelope("e", 0)))
else:
    step("rooms", lambda: em.rooms())
    step("members", lambda: em.members("r"))
    step("send_a", lambda: em.send_to("r", "a", Envelope("e", 1)))
    step("send_q", lambda: em.send_to("r", "q", Envelope("e", 2)))
    step("bcast_1", lambda: em.broadcast("r", Envelope("e", 3), exclude=["b"]))
    step("send_q_full", lambda: em.send_to("r", "q", Envelope("e", 4)))
    step("bcast_2", lambda: em.broadcast("r", Envelope("e", 5)))
    step("send_nope", lambda: em.send_to("nope", "a", Envelope("e", 0)))
    step("send_zed", lambda: em.send_to("r", "zed", Envelope("e", 0)))
    step("bcast_nope", lambda: em.broadcast("nope", Envelope("e", 0)))
    step("members_nope", lambda: em.members("nope"))
    step("close_nope", lambda: em.close_room("nope"))
    t = threading.Thread(target=lambda: step("thread_rooms", lambda: em.rooms()))
    t.start()
    t.join(30)
    step("close_r", lambda: em.close_room("r"))
    step("rooms_after", lambda: em.rooms())
gm = sys.modules.get("gevent.monkey")
out["patched"] = bool(gm is not None and gm.is_anything_patched())
out["socket_is_stdlib"] = socket.socket.__module__ == "socket"
print(json.dumps(out))
"""


def run_script(*argv: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=tempfile.gettempdir(),  # the repository root would shadow the installed package
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value}


def error(name: str, detail: str) -> dict[str, Any]:
    return {"error": name, "detail": detail, "wsroom": True}


def without_time(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k != "took"}


def test_an_emitter_in_a_plain_process_sends_as_the_hub_does(hub_procs, redis_url: str) -> None:
    c: Cluster = hub_procs(2, redis_url, grace=30.0, queued=2)
    a = c.join(c[0], "r", "a")
    b = c.join(c[1], "r", "b")
    c.drop(c.join(c[1], "r", "q"), "r", "q")
    x = c.join(c[0], "x", "e")

    report = run_script("up", redis_url)
    steps = {k: without_time(v) for k, v in report.items() if isinstance(v, dict)}
    assert steps["emitter"] == ok("Emitter")
    assert report["is_emitter"] is True
    assert steps["rooms"] == ok(["r", "x"])
    assert steps["members"] == ok(
        {"a": "Presence.ONLINE", "b": "Presence.ONLINE", "q": "Presence.OFFLINE"}
    )
    assert steps["send_a"] == ok("Delivery.SENT")
    assert steps["send_q"] == ok("Delivery.QUEUED")
    assert steps["bcast_1"] == ok({"BroadcastReport": [1, 1, []]})  # a sent, q queued, b not
    assert steps["send_q_full"] == error("ParticipantOffline", "wsroom: participant offline")
    assert steps["bcast_2"] == ok({"BroadcastReport": [2, 0, ["q"]]})
    assert steps["send_nope"] == error("RoomNotFound", "wsroom: room not found")
    assert steps["send_zed"] == error("ParticipantNotFound", "wsroom: participant not found")
    assert steps["bcast_nope"] == error("RoomNotFound", "wsroom: room not found")
    assert steps["members_nope"] == error("RoomNotFound", "wsroom: room not found")
    assert steps["close_nope"] == error("RoomNotFound", "wsroom: room not found")
    assert steps["thread_rooms"] == ok(["r", "x"])  # from a plain OS thread too
    assert steps["close_r"] == ok(None)
    assert steps["rooms_after"] == ok(["x"])
    assert report["patched"] is False
    assert report["socket_is_stdlib"] is True

    # What the clients on the hub processes received, in the order the emitter sent it.
    assert a.wait_payloads("e", 3) == [1, 3, 5]
    assert b.wait_payloads("e", 1) == [5]
    assert a.wait_closed() == (4000, "room closed")
    assert b.wait_closed() == (4000, "room closed")
    assert a.payloads("e") == [1, 3, 5] and b.payloads("e") == [5]
    wait_until(lambda: len(c.leaves(room="r")) >= 3, what="three leaves")
    leaves = c.leaves(room="r")
    assert sorted(e[2] for e in leaves) == ["a", "b", "q"]
    assert {e[3] for e in leaves} == {"RoomClosed"}
    assert not x.ended
    assert [n.rooms() for n in c] == [["x"], ["x"]]


def test_an_emitter_without_redis_raises_backplane_unavailable_in_bounded_time(
    redis_server: Any,
) -> None:
    from redis_server import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    start = time.monotonic()
    report = run_script("down", nowhere)
    assert time.monotonic() - start < 3 * UNAVAILABLE_WITHIN  # the whole script
    # Creating it may fail already, or its first call does; either way in time and by name.
    failures = [report[name] for name in ("emitter", "send_to") if "error" in report.get(name, {})]
    assert failures, report
    for failure in failures:
        assert failure["error"] == "BackplaneUnavailable", failure
        assert failure["wsroom"] is True
        assert failure["took"] < UNAVAILABLE_WITHIN, failure
    assert report["patched"] is False
