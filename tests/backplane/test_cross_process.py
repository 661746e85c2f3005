"""Contract §8: hub processes on one Redis behave as one hub, for every rule of §3-§5.

Every test runs real hub processes (node.py) with real clients on each. Hook events are summed
over the processes, since on_presence and on_leave run wherever the change is observed.
"""

from __future__ import annotations

import itertools
from typing import Any

import gevent
import pytest
from conftest import wait_until

import wsroom

from .support import SLACK, Cluster, WsClient, env

ROOM_CLOSED = (4000, "room closed")
REPLACED = (4001, "replaced")


def same_order(streams: dict[str, list[Any]]) -> None:
    """Any two members received what they both received in the same order."""
    for (x, xs), (y, ys) in itertools.combinations(streams.items(), 2):
        common = set(xs) & set(ys)
        assert [e for e in xs if e in common] == [e for e in ys if e in common], (x, y)


def test_broadcasts_reach_every_member_on_every_process_in_one_order(
    hub_procs, redis_url: str
) -> None:
    c: Cluster = hub_procs(3, redis_url, grace=30.0, queued=64)
    users = [f"u{i}" for i in range(6)]
    socks = {u: c.join(c[i % 3], "r", u) for i, u in enumerate(users)}
    per_caller, per_member = 40, 10

    def caller(k: int) -> None:
        # One caller per process, each its own numbered series, all at once.
        for i in range(per_caller):
            report = c[k].broadcast("r", "m", [f"n{k}", i])
            assert report == {"sent": 6, "queued": 0, "dropped": []}

    def member(u: str) -> None:
        # A member's hook broadcasts what it sends, excluding the sender, wherever it is.
        for i in range(per_member):
            socks[u].send("bcast", [u, i])

    workers = [gevent.spawn(caller, k) for k in range(3)]
    workers += [gevent.spawn(member, u) for u in users]
    gevent.joinall(workers, raise_error=True)

    streams: dict[str, list[tuple[str, int]]] = {}
    for u, ws in socks.items():
        ws.wait_payloads("m", 3 * per_caller)
        ws.wait_payloads("b", (len(users) - 1) * per_member)
        gevent.sleep(0.2)  # nothing more may come (a duplicate, its own broadcast)
        stream = [tuple(f["payload"]) for f in ws.frames if f["type"] in ("m", "b")]
        assert len(stream) == len(set(stream)), f"{u} got a duplicate"
        assert len(stream) == 3 * per_caller + (len(users) - 1) * per_member, u
        # Each caller's series arrives in the order it was sent, the member's own is excluded.
        for origin in [*(f"n{k}" for k in range(3)), *users]:
            got = [i for o, i in stream if o == origin]
            count = per_caller if origin.startswith("n") else per_member
            assert got == ([] if origin == u else list(range(count))), (u, origin)
        streams[u] = stream
    same_order(streams)
    # on_message ran where each connection is, once per envelope.
    for k, node in enumerate(c):
        senders = {e[2] for e in node.events("message")}
        assert senders == {u for i, u in enumerate(users) if i % 3 == k}


def test_broadcast_report_counts_members_on_every_process(hub_procs, redis_url: str) -> None:
    c: Cluster = hub_procs(3, redis_url, grace=30.0, queued=1)
    a = c.join(c[0], "r", "a")
    b = c.join(c[1], "r", "b")
    e = c.join(c[2], "r", "e")
    c.drop(c.join(c[2], "r", "q"), "r", "q")  # offline, its queue empty
    c.drop(c.join(c[1], "r", "d"), "r", "d")  # offline, its queue about to be full
    assert c[2].send_to("r", "d", "m", "d-only") == "QUEUED"

    report = c[0].broadcast("r", "m", "all", exclude=["b", "nobody"])
    assert report == {"sent": 2, "queued": 1, "dropped": ["d"]}
    assert a.wait_payloads("m", 1) == ["all"]
    assert e.wait_payloads("m", 1) == ["all"]
    assert c[2].send_to("r", "b", "m", "after") == "SENT"
    assert b.wait_payloads("m", 1) == ["after"]  # excluded: "all" never came

    q = c.connect(c[0], "r", "q")
    assert q.wait_hello() == {"reconnect": True}
    assert q.wait_payloads("m", 1) == ["all"]
    d = c.connect(c[0], "r", "d")
    assert d.wait_hello() == {"reconnect": True}
    c.wait_presence("r", "d", "ONLINE")
    assert c[1].send_to("r", "d", "m", "live") == "SENT"
    assert d.wait_payloads("m", 2) == ["d-only", "live"]  # "all" was dropped, not queued
    assert c.leaves() == []


def test_send_to_reaches_a_participant_on_another_process(hub_procs, redis_url: str) -> None:
    c: Cluster = hub_procs(3, redis_url, grace=30.0, queued=2)
    a = c.join(c[0], "r", "a")
    b = c.join(c[1], "r", "b")
    # From a process that serves no one in the room: one caller's sends arrive in order.
    for i in range(30):
        assert c[2].send_to("r", "b", "m", i) == "SENT"
    assert b.wait_payloads("m", 30) == list(range(30))
    assert c[1].send_to("r", "a", "m", "x") == "SENT"
    assert a.wait_payloads("m", 1) == ["x"]
    # A hook's own send_to, from a's process to b's.
    a.send("to", {"to": "b", "data": "from a"})
    assert b.wait_payloads("t", 1) == ["from a"]

    # Offline on another process: queued up to the bound, then refused.
    c.drop(c.join(c[1], "r", "q"), "r", "q")
    assert c[0].send_to("r", "q", "m", 1) == "QUEUED"
    assert c[2].send_to("r", "q", "m", 2) == "QUEUED"
    assert c[0].call_raw("send_to", "r", "q", env("m", 3)) == {
        "error": "ParticipantOffline",
        "detail": "wsroom: participant offline",
    }
    with pytest.raises(wsroom.ParticipantOffline):
        c[1].send_to("r", "q", "m", 4)
    with pytest.raises(wsroom.RoomNotFound):
        c[2].send_to("nope", "a", "m")
    assert c[1].call_raw("send_to", "r", "zed", env("m")) == {
        "error": "ParticipantNotFound",
        "detail": "wsroom: participant not found",
    }
    # The same errors reach a hook's own calls.
    a.send("to", {"to": "zed", "data": 0})
    a.send("to", {"to": "q", "data": 0})
    wait_until(
        lambda: (
            [e[3] for e in c[0].events("error")] == ["ParticipantNotFound", "ParticipantOffline"]
        ),
        what="the hook's errors",
    )
    # The queue comes back whole and in order on yet another process.
    q = c.connect(c[2], "r", "q")
    assert q.wait_hello() == {"reconnect": True}
    assert q.wait_payloads("m", 2) == [1, 2]
    # on_message ran only where a's connection is.
    assert [e[2] for e in c.events("message")] == ["a", "a", "a"]
    assert [e[2] for e in c[0].events("message")] == ["a", "a", "a"]


def test_rooms_members_and_presence_are_global(hub_procs, redis_url: str) -> None:
    c: Cluster = hub_procs(3, redis_url, grace=30.0, queued=8)
    assert [n.rooms() for n in c] == [[], [], []]
    c.join(c[0], "r1", "a")
    b = c.join(c[1], "r2", "b")
    c.join(c[2], "r2", "c")
    for node in c:
        assert node.rooms() == ["r1", "r2"]
        assert node.members("r1") == {"a": "ONLINE"}
        assert node.members("r2") == {"b": "ONLINE", "c": "ONLINE"}
        with pytest.raises(wsroom.RoomNotFound):
            node.members("nope")

    c.drop(b, "r2", "b")  # OFFLINE as every process sees it
    for node in c:
        assert node.members("r2") == {"b": "OFFLINE", "c": "ONLINE"}
    back = c.join(c[0], "r2", "b")  # back on another process
    wait_until(lambda: len(c.presences("b")) >= 2, what="b's presence changes")
    # Reported once each, wherever observed; joins and others report nothing.
    assert sorted(c.presences("b")) == ["OFFLINE", "ONLINE"]

    # A replacement on a third process: online all along, no change to report.
    newest = c.connect(c[2], "r2", "b")
    assert back.wait_closed() == REPLACED
    assert newest.wait_hello() == {"reconnect": True}
    c.wait_presence("r2", "b", "ONLINE")
    gevent.sleep(0.3)  # a wrong OFFLINE/ONLINE report would come now
    assert sorted(c.presences("b")) == ["OFFLINE", "ONLINE"]
    assert c.presences("a") == [] and c.presences("c") == []
    assert c.leaves() == []


def test_a_room_ends_everywhere_when_its_last_member_is_gone(hub_procs, redis_url: str) -> None:
    grace = 1.0
    c: Cluster = hub_procs(2, redis_url, grace=grace, queued=8)
    a = c.join(c[0], "r", "a")
    c.drop(a, "r", "a")
    wait_until(
        lambda: [n.rooms() for n in c] == [[], []], timeout=grace + SLACK, what="the room to end"
    )
    assert c.leaves() == [["leave", "r", "a", "GraceExpired", "Disconnected"]]
    for node in c:
        with pytest.raises(wsroom.RoomNotFound):
            node.send_to("r", "a", "m")
        with pytest.raises(wsroom.RoomNotFound):
            node.broadcast("r", "m")


def test_close_room_closes_every_member_everywhere_once(hub_procs, redis_url: str) -> None:
    grace = 1.5
    c: Cluster = hub_procs(3, redis_url, grace=grace, queued=8)
    live = [c.join(c[i], "r", u) for i, u in enumerate(["a", "b", "c"])]
    c.drop(c.join(c[1], "r", "d"), "r", "d")  # offline: its grace timer must be cancelled
    x = c.join(c[2], "x", "e")

    assert c[0].call("close_room", "r") is None
    for ws in live:
        assert ws.wait_closed() == ROOM_CLOSED
    wait_until(lambda: len(c.leaves(room="r")) >= 4, what="four leaves")
    gevent.sleep(grace + 1.0)  # past d's grace: no GraceExpired, no second leave
    leaves = c.leaves(room="r")
    assert sorted(e[2] for e in leaves) == ["a", "b", "c", "d"], leaves
    assert {e[3] for e in leaves} == {"RoomClosed"}
    for node in c:
        assert node.rooms() == ["x"]
        with pytest.raises(wsroom.RoomNotFound):
            node.members("r")
        with pytest.raises(wsroom.RoomNotFound):
            node.close_room("r")
        with pytest.raises(wsroom.RoomNotFound):
            node.send_to("r", "a", "m")
    assert not x.ended  # another room is untouched
    assert c[0].send_to("x", "e", "m", "still here") == "SENT"
    assert x.wait_payloads("m", 1) == ["still here"]
    # The room can be joined again, afresh, on any process.
    again = c.join(c[1], "r", "d")
    assert again.wait_hello() == {"reconnect": False}
    assert c[2].members("r") == {"d": "ONLINE"}


def test_reconnect_on_another_process_inside_grace_gets_the_queue_first(
    hub_procs, redis_url: str
) -> None:
    grace = 3.0
    c: Cluster = hub_procs(3, redis_url, grace=grace, queued=8)
    a = c.join(c[0], "r", "a")
    b = c.join(c[1], "r", "b")
    c.drop(a, "r", "a")
    assert c[1].send_to("r", "a", "m", 1) == "QUEUED"
    assert c[2].broadcast("r", "m", 2) == {"sent": 1, "queued": 1, "dropped": []}
    assert c[0].send_to("r", "a", "m", 3) == "QUEUED"

    a2 = c.connect(c[1], "r", "a")
    assert a2.wait_hello() == {"reconnect": True}  # on_join's own send comes first
    assert a2.wait_payloads("m", 3) == [1, 2, 3]
    assert a2.types()[:4] == ["hello", "m", "m", "m"]
    c.wait_presence("r", "a", "ONLINE")
    assert c[0].send_to("r", "a", "m", "live") == "SENT"
    assert a2.wait_payloads("m", 4) == [1, 2, 3, "live"]
    assert b.wait_payloads("m", 1) == [2]
    assert [e[3] for e in c.joins("a")] == [False, True]
    assert c.leaves() == []

    # Gone for good this time: its grace ends once, on one process, and its queue with it.
    c.drop(a2, "r", "a")
    assert c[2].send_to("r", "a", "m", "lost") == "QUEUED"
    wait_until(lambda: c.leaves("a"), timeout=grace + SLACK, what="a's grace to end")
    gevent.sleep(1.0)  # a second GraceExpired would come now
    assert c.leaves() == [["leave", "r", "a", "GraceExpired", "Disconnected"]]
    with pytest.raises(wsroom.ParticipantNotFound):
        c[0].send_to("r", "a", "m")
    fresh = c.connect(c[2], "r", "a")
    assert fresh.wait_hello() == {"reconnect": False}
    c.wait_presence("r", "a", "ONLINE")
    assert c[0].send_to("r", "a", "m", "fresh") == "SENT"
    assert fresh.wait_payloads("m", 1) == ["fresh"]  # "lost" was dropped with the queue


def test_a_connection_on_another_process_replaces_the_first(hub_procs, redis_url: str) -> None:
    c: Cluster = hub_procs(2, redis_url, grace=30.0, queued=8)
    old = c.join(c[0], "r", "a")
    c.join(c[1], "r", "b")
    new = c.connect(c[1], "r", "a")
    assert old.wait_closed() == REPLACED
    assert new.wait_hello() == {"reconnect": True}
    c.wait_presence("r", "a", "ONLINE")
    assert c[0].members("r") == {"a": "ONLINE", "b": "ONLINE"}
    assert c[0].send_to("r", "a", "m", "to-new") == "SENT"
    assert c[0].broadcast("r", "m", "all") == {"sent": 2, "queued": 0, "dropped": []}
    assert new.wait_payloads("m", 2) == ["to-new", "all"]
    assert old.payloads("m") == []

    # And back again, to the first process.
    newest: WsClient = c.connect(c[0], "r", "a")
    assert new.wait_closed() == REPLACED
    assert newest.wait_hello() == {"reconnect": True}
    c.wait_presence("r", "a", "ONLINE")
    assert c[1].send_to("r", "a", "m", "to-newest") == "SENT"
    assert newest.wait_payloads("m", 1) == ["to-newest"]
    gevent.sleep(0.3)  # a wrong leave or presence report would come now
    assert [e[3] for e in c.joins("a")] == [False, True, True]
    assert c.leaves() == []
    assert c.presences("a") == []
