"""Two hubs on one backplane in this test process: every cross-process rule, fast.

Each hub has its own actors, link (heartbeat, reader, keeper) and server, as a process of its
own would; the multi-process tests (``test_cross_process.py``) hold the same rules across
real processes.
"""

from __future__ import annotations

from typing import Any

import pytest
import websocket
from conftest import read_close, recv_json, send_json, wait_until

import wsroom

from .shared import events, joined, pair

__all__ = ["pair"]  # the fixture, imported for pytest

def test_broadcast_reaches_members_on_both_hubs_in_one_order(pair: Any) -> None:
    a, b = pair()
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"), what="bob to be a member, seen from hub a")
    for i in range(50):
        hub = (a, b)[i % 2].hub
        report = hub.broadcast("lobby", wsroom.Envelope("n", i))
        assert report == wsroom.BroadcastReport(sent=2, queued=0, dropped=())
    assert [recv_json(alice)["payload"] for _ in range(50)] == list(range(50))
    assert [recv_json(bob)["payload"] for _ in range(50)] == list(range(50))


def test_exclude_and_send_to_work_across_hubs(pair: Any) -> None:
    a, b = pair()
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    report = a.hub.broadcast("lobby", wsroom.Envelope("x"), exclude=["bob"])
    assert report.sent == 1
    assert a.hub.send_to("lobby", "bob", wsroom.Envelope("dm", 1)) is wsroom.Delivery.SENT
    assert recv_json(bob) == {"type": "dm", "payload": 1}
    assert recv_json(alice)["type"] == "x"
    with pytest.raises(wsroom.ParticipantNotFound):
        b.hub.send_to("lobby", "carol", wsroom.Envelope("dm"))
    with pytest.raises(wsroom.RoomNotFound):
        b.hub.send_to("nowhere", "bob", wsroom.Envelope("dm"))
    with pytest.raises(wsroom.RoomNotFound):
        b.hub.broadcast("nowhere", wsroom.Envelope("dm"))
    assert a.hub.rooms() == b.hub.rooms() == ["lobby"]


def test_on_message_reply_from_a_hook_reaches_the_other_hub(pair: Any) -> None:
    a, b = pair()
    a.hooks.message_fn = lambda room, pid, env: a.hub.broadcast(room, env, exclude=[pid])
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    for i in range(20):
        send_json(alice, "say", i)
    assert [recv_json(bob)["payload"] for _ in range(20)] == list(range(20))


def test_reconnect_on_the_other_hub_gets_its_queue_in_order(pair: Any) -> None:
    a, b = pair(grace=5.0, queued=3)
    alice = a.join(user="alice")
    bob = a.join(user="bob")
    bob.close()
    wait_until(lambda: a.hub.members("lobby").get("bob") is wsroom.Presence.OFFLINE)
    assert b.hub.members("lobby")["bob"] is wsroom.Presence.OFFLINE
    assert a.hub.send_to("lobby", "bob", wsroom.Envelope("q", 1)) is wsroom.Delivery.QUEUED
    report = b.hub.broadcast("lobby", wsroom.Envelope("q", 2), exclude=["alice"])
    assert report == wsroom.BroadcastReport(sent=0, queued=1, dropped=())
    assert a.hub.send_to("lobby", "bob", wsroom.Envelope("q", 3)) is wsroom.Delivery.QUEUED
    with pytest.raises(wsroom.ParticipantOffline):
        a.hub.send_to("lobby", "bob", wsroom.Envelope("q", 4))
    report = a.hub.broadcast("lobby", wsroom.Envelope("q", 5))
    assert report == wsroom.BroadcastReport(sent=1, queued=0, dropped=("bob",))
    b.hooks.join_fn = lambda jc, client: client.send(wsroom.Envelope("hello", jc.reconnect))
    bob = b.connect(user="bob")
    assert recv_json(bob) == {"type": "hello", "payload": True}
    assert [recv_json(bob)["payload"] for _ in range(3)] == [1, 2, 3]
    a.hub.broadcast("lobby", wsroom.Envelope("live", 6))
    assert recv_json(bob) == {"type": "live", "payload": 6}
    assert recv_json(alice)["payload"] == 5
    wait_until(lambda: ("presence", "bob", "ONLINE") in b.hooks.events)
    assert ("presence", "bob", "OFFLINE") in a.hooks.events
    assert not events(a, b, kind="leave")


def test_second_connection_on_the_other_hub_replaces_the_first(pair: Any) -> None:
    a, b = pair()
    old = a.join(user="bob")
    new = b.connect(user="bob")
    assert read_close(old)[0] == 4001
    wait_until(lambda: ("join", "bob", True) in b.hooks.events)
    wait_until(lambda: b.hub.members("lobby") == {"bob": wsroom.Presence.ONLINE})
    report = a.hub.broadcast("lobby", wsroom.Envelope("after"))
    # Live, or queued for the flush if the new connection's join is still completing.
    assert (report.sent, report.queued) in ((1, 0), (0, 1))
    assert recv_json(new)["type"] == "after"
    assert not events(a, b, kind="leave")


def test_close_room_closes_everyone_everywhere_and_leaves_once(pair: Any) -> None:
    a, b = pair()
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    carol = b.connect(user="carol")
    wait_until(lambda: len(a.hub.members("lobby")) == 3 if a.hub.rooms() else False)
    carol.close()
    wait_until(lambda: a.hub.members("lobby").get("carol") is wsroom.Presence.OFFLINE)
    a.hub.close_room("lobby")
    assert read_close(alice)[0] == 4000
    assert read_close(bob)[0] == 4000
    wait_until(lambda: len(events(a, b, kind="leave")) == 3, what="three on_leave calls")
    assert sorted(e[1:] for e in events(a, b, kind="leave")) == [
        ("alice", "RoomClosed"),
        ("bob", "RoomClosed"),
        ("carol", "RoomClosed"),
    ]
    assert a.hub.rooms() == b.hub.rooms() == []
    with pytest.raises(wsroom.RoomNotFound):
        b.hub.members("lobby")


def test_grace_expiry_is_reported_once_by_one_hub(pair: Any) -> None:
    a, b = pair(grace=0.5)
    a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    bob.close()
    wait_until(lambda: len(events(a, b, kind="leave")) == 1, timeout=5, what="bob's leave")
    leaves = [(r, p, why) for live in (a, b) for r, p, why in live.hooks.leaves]
    assert len(leaves) == 1
    reason = leaves[0][2]
    assert isinstance(reason, wsroom.GraceExpired)
    assert isinstance(reason.__cause__, wsroom.Disconnected)
    assert list(a.hub.members("lobby")) == ["alice"]


def test_no_grace_ends_the_membership_at_once(pair: Any) -> None:
    a, b = pair(grace=0.0, queued=0)
    a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    bob.close()
    wait_until(lambda: b.hooks.leaves_of("bob"), what="bob's on_leave")
    assert isinstance(b.hooks.leaves_of("bob")[0], wsroom.Disconnected)
    with pytest.raises(wsroom.ParticipantNotFound):
        a.hub.send_to("lobby", "bob", wsroom.Envelope("late"))


def test_a_stopped_hub_leaves_its_members_to_the_survivor(pair: Any) -> None:
    a, b = pair(grace=1.0)
    a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    b.hub.stop()
    assert read_close(bob)[0] == 1001
    assert a.hub.members("lobby")["bob"] is wsroom.Presence.OFFLINE
    wait_until(lambda: a.hooks.leaves_of("bob"), timeout=6, what="the survivor to end bob")
    assert isinstance(a.hooks.leaves_of("bob")[0], wsroom.GraceExpired)
    assert not b.hooks.leaves
    # bob's going OFFLINE was news for a hub whose calls still work: the survivor's.
    assert ("presence", "bob", "OFFLINE") in a.hooks.events
    assert ("presence", "bob", "OFFLINE") not in b.hooks.events


def test_rejected_first_join_leaves_no_trace_anywhere(pair: Any) -> None:
    a, b = pair()
    a.join(user="alice")

    def refuse(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        raise wsroom.CloseConnection(4403, "no")

    b.hooks.join_fn = refuse
    ws = websocket.create_connection(b.url(user="mallory"), timeout=5)
    assert read_close(ws)[0] == 4403
    assert list(a.hub.members("lobby")) == ["alice"]
    assert not events(a, b, kind="leave")


def test_emitter_reaches_members_on_every_hub(pair: Any, redis_url: str) -> None:
    a, b = pair(grace=5.0)
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    em = wsroom.emitter(redis_url)
    try:
        assert em.rooms() == ["lobby"]
        assert set(em.members("lobby")) == {"alice", "bob"}
        assert em.broadcast("lobby", wsroom.Envelope("news")).sent == 2
        assert em.send_to("lobby", "bob", wsroom.Envelope("dm")) is wsroom.Delivery.SENT
        assert recv_json(alice)["type"] == "news"
        assert [recv_json(bob)["type"] for _ in range(2)] == ["news", "dm"]
        with pytest.raises(wsroom.ParticipantNotFound):
            em.send_to("lobby", "zed", wsroom.Envelope("dm"))
        em.close_room("lobby")
        assert read_close(alice)[0] == 4000
        assert read_close(bob)[0] == 4000
        wait_until(lambda: len(events(a, b, kind="leave")) == 2, what="the hubs to run on_leave")
    finally:
        em.close()


def test_the_proxy_gives_the_same_answers_on_a_backplane(pair: Any) -> None:
    a, b = pair()
    alice = a.join(user="alice")
    b.connect(user="bob")
    wait_until(joined(a, "bob"))
    report = b.hub.proxy.broadcast("lobby", wsroom.Envelope("p")).get()
    assert report == wsroom.BroadcastReport(sent=2, queued=0, dropped=())
    assert b.hub.proxy.send_to("lobby", "alice", wsroom.Envelope("q")).get() is (
        wsroom.Delivery.SENT
    )
    assert b.hub.proxy.rooms().get() == ["lobby"]
    assert set(b.hub.proxy.members("lobby").get()) == {"alice", "bob"}
    with pytest.raises(wsroom.RoomNotFound):
        b.hub.proxy.members("nowhere").get()
    assert [recv_json(alice)["type"] for _ in range(2)] == ["p", "q"]


def test_a_queue_bigger_than_the_outbox_flushes_in_order_while_traffic_goes_on(
    pair: Any,
) -> None:
    a, b = pair(grace=5.0, queued=300, outbox_max_messages=8)
    a.join(user="alice")
    bob = a.join(user="bob")
    bob.close()
    wait_until(lambda: a.hub.members("lobby").get("bob") is wsroom.Presence.OFFLINE)
    for i in range(100):
        a.hub.send_to("lobby", "bob", wsroom.Envelope("n", i))
    bob = b.connect(user="bob")
    sent = 100
    while sent < 160:  # live traffic while the backlog drains
        a.hub.broadcast("lobby", wsroom.Envelope("n", sent), exclude=["alice"])
        sent += 1
    got = [recv_json(bob)["payload"] for _ in range(160)]
    assert got == list(range(160))


def test_a_process_wrongly_declared_dead_sends_its_clients_back(pair: Any, redis_url: str) -> None:
    from wsroom.backplane.store import Store, connect

    a, b = pair(grace=5.0)
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    # As if both had stalled past dead_after: another process reaps them.
    reaper = Store(connect(redis_url, gevent_sockets=False), timeout=3.0)
    assert len(reaper.reap_dead(0.0, "someone-else")["offline"]) == 2
    assert read_close(alice)[0] == 1012
    assert read_close(bob)[0] == 1012
    assert a.hub.send_to("lobby", "bob", wsroom.Envelope("kept")) is wsroom.Delivery.QUEUED
    bob = a.connect(user="bob")
    assert recv_json(bob) == {"type": "kept", "payload": None}
    wait_until(lambda: a.hub.members("lobby")["bob"] is wsroom.Presence.ONLINE)
