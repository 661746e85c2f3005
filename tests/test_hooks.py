"""Contract §3: the hooks, over real connections."""

from __future__ import annotations

import logging

import gevent
import gevent.event
import pytest
from conftest import Live, read_close, recv_json, send_json, wait_until

import wsroom


def test_on_join_gets_the_join_context_and_a_client_that_sends(make_live) -> None:
    live: Live = make_live(grace=5.0, queued=8)
    live.hooks.join_fn = lambda jc, client: client.send(wsroom.Envelope("hello", jc.participant))
    ws = live.connect("r", "alice")
    assert recv_json(ws) == {"type": "hello", "payload": "alice"}
    jc = wait_until(lambda: live.hooks.joins and live.hooks.joins[0])
    assert jc == wsroom.JoinContext("r", "alice", wsroom.Identity("alice", ""), False)


def test_a_first_join_is_a_member_only_once_on_join_returns(make_live) -> None:
    live: Live = make_live(grace=5.0, queued=8)
    seen: dict[str, object] = {}

    def join(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        try:
            seen[jc.participant] = dict(live.hub.members(jc.room))
        except wsroom.RoomNotFound as exc:
            seen[jc.participant] = exc
        seen[jc.participant + "-rooms"] = live.hub.rooms()

    live.hooks.join_fn = join
    live.join("r", "alice")
    live.join("r", "bob")
    assert isinstance(seen["alice"], wsroom.RoomNotFound)
    assert seen["alice-rooms"] == []
    assert seen["bob"] == {"alice": wsroom.Presence.ONLINE}
    assert live.hub.members("r") == {"alice": wsroom.Presence.ONLINE, "bob": wsroom.Presence.ONLINE}


def test_on_join_close_connection_refuses_with_its_code_and_leaves_no_trace(make_live) -> None:
    live: Live = make_live(grace=5.0, queued=8)

    def refuse(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        raise wsroom.CloseConnection(4403, "not invited")

    live.hooks.join_fn = refuse
    ws = live.connect("r", "alice")
    assert read_close(ws) == (4403, "not invited")
    gevent.sleep(0.05)  # give a wrong on_leave or room the chance to show up
    assert live.hooks.leaves == []
    assert live.hub.rooms() == []
    with pytest.raises(wsroom.RoomNotFound):
        live.hub.members("r")


def test_on_join_raising_anything_else_closes_with_1008(make_live, caplog) -> None:
    live: Live = make_live(grace=5.0, queued=8)

    def boom(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        raise RuntimeError("no joins today")

    live.hooks.join_fn = boom
    with caplog.at_level(logging.ERROR, logger="wsroom"):
        ws = live.connect("r", "alice")
        assert read_close(ws)[0] == 1008
    assert live.hooks.leaves == []
    assert live.hub.rooms() == []
    assert any("no joins today" in (r.exc_text or "") for r in caplog.records)


def test_a_rejected_reconnect_ends_the_membership_with_the_exception(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.join("r", "alice")
    bob = live.join("r", "bob")
    bob.close()
    wait_until(lambda: live.hub.members("r").get("bob") == wsroom.Presence.OFFLINE)
    refusal = wsroom.CloseConnection(4409, "come back later")

    def refuse_reconnects(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        if jc.reconnect:
            raise refusal

    live.hooks.join_fn = refuse_reconnects
    again = live.connect("r", "bob")
    assert read_close(again) == (4409, "come back later")
    wait_until(lambda: live.hooks.leaves_of("bob"))
    assert live.hooks.leaves_of("bob") == [refusal]
    assert "bob" not in live.hub.members("r")


def test_on_message_runs_one_at_a_time_per_participant_in_frame_order(make_live) -> None:
    live: Live = make_live()
    inside = {"now": 0, "max": 0}
    gate = gevent.event.Event()

    def slow(room: str, p: str, env: wsroom.Envelope) -> None:
        inside["now"] += 1
        inside["max"] = max(inside["max"], inside["now"])
        gate.wait(2)
        inside["now"] -= 1

    live.hooks.message_fn = slow
    ws = live.join("r", "alice")
    for i in range(5):
        send_json(ws, "n", i)
    wait_until(lambda: len(live.hooks.messages) >= 1)
    gevent.sleep(0.05)  # a second, concurrent on_message would start now if it could
    assert len(live.hooks.messages) == 1
    gate.set()
    wait_until(lambda: len(live.hooks.messages) == 5)
    assert [env.payload for _, _, env in live.hooks.messages] == [0, 1, 2, 3, 4]
    assert inside["max"] == 1


def test_envelopes_sent_just_before_the_clients_close_still_reach_on_message(make_live) -> None:
    live: Live = make_live()
    gate = gevent.event.Event()
    live.hooks.message_fn = lambda room, p, env: gate.wait(5)  # the frames wait in the window
    ws = live.join("r", "alice")
    for i in range(5):
        send_json(ws, "n", i)
    wait_until(lambda: live.hooks.messages, what="the first envelope inside on_message")
    ws.close(timeout=2)  # returns once the server answered the close: its reader is done
    gate.set()
    wait_until(lambda: len(live.hooks.messages) == 5, what="every envelope handled")
    assert [env.payload for _, _, env in live.hooks.messages] == [0, 1, 2, 3, 4]
    wait_until(lambda: live.hooks.leaves_of("alice"), what="the leave, after them")


def test_on_message_raising_closes_with_1011_and_starts_the_grace_period(make_live, caplog) -> None:
    live: Live = make_live(grace=30.0, queued=8)

    def boom(room: str, p: str, env: wsroom.Envelope) -> None:
        raise KeyError("bad state")

    live.hooks.message_fn = boom
    ws = live.join("r", "alice")
    with caplog.at_level(logging.ERROR, logger="wsroom"):
        send_json(ws, "x")
        assert read_close(ws)[0] == 1011
        wait_until(lambda: live.hub.members("r") == {"alice": wsroom.Presence.OFFLINE})
    assert any("bad state" in (r.exc_text or "") for r in caplog.records)
    assert live.hooks.leaves == []


def test_on_message_close_connection_closes_with_its_code(make_live) -> None:
    live: Live = make_live()

    def kick(room: str, p: str, env: wsroom.Envelope) -> None:
        raise wsroom.CloseConnection(4100, "kicked")

    live.hooks.message_fn = kick
    ws = live.join("r", "alice")
    send_json(ws, "x")
    assert read_close(ws) == (4100, "kicked")
    wait_until(lambda: live.hooks.leaves_of("alice"))
    assert live.hooks.leaves_of("alice") == [wsroom.Disconnected(4100, "kicked")]


def test_a_failing_hook_does_not_disturb_other_participants(make_live) -> None:
    live: Live = make_live()

    def picky(room: str, p: str, env: wsroom.Envelope) -> None:
        if p == "bad":
            raise RuntimeError("only bad fails")
        live.hub.send_to(room, p, wsroom.Envelope("ok", env.payload))

    live.hooks.message_fn = picky
    good = live.join("r", "good")
    bad = live.join("r", "bad")
    send_json(bad, "x")
    assert read_close(bad)[0] == 1011
    send_json(good, "x", 1)
    assert recv_json(good) == {"type": "ok", "payload": 1}


def test_on_leave_runs_exactly_once_with_disconnected_when_there_is_no_grace(make_live) -> None:
    live: Live = make_live(grace=0.0)
    ws = live.join("r", "alice")
    live.join("r", "bob")
    ws.close(status=1000, reason=b"bye")
    wait_until(lambda: live.hooks.leaves_of("alice"))
    gevent.sleep(0.05)
    assert live.hooks.leaves_of("alice") == [wsroom.Disconnected(1000, "bye")]
    assert live.hooks.leaves_of("bob") == []


@pytest.mark.parametrize("where", ["on_join", "on_message", "on_leave"])
def test_every_hook_may_call_every_hub_method_for_its_own_room(make_live, where: str) -> None:
    live: Live = make_live(grace=0.0)
    results: list[object] = []

    def use_the_hub(room: str, participant: str) -> None:
        results.append(sorted(live.hub.rooms()))
        results.append(live.hub.broadcast(room, wsroom.Envelope("note", where)))
        results.append(dict(live.hub.members(room)))
        results.append(live.hub.send_to(room, "watcher", wsroom.Envelope("direct", where)))

    watcher = live.join("r", "watcher")
    if where == "on_join":
        live.hooks.join_fn = lambda jc, client: use_the_hub(jc.room, jc.participant)
        live.connect("r", "actor")
    elif where == "on_message":
        live.hooks.message_fn = lambda room, p, env: use_the_hub(room, p)
        send_json(live.join("r", "actor"), "go")
    else:
        live.hooks.leave_fn = lambda room, p, reason: use_the_hub(room, p) if p == "actor" else None
        live.join("r", "actor").close()
    wait_until(lambda: len(results) == 4, what=f"hub calls from {where}")
    assert results[0] == ["r"]
    assert isinstance(results[1], wsroom.BroadcastReport) and results[1].sent >= 1
    assert "watcher" in results[2]
    assert results[3] is wsroom.Delivery.SENT
    assert recv_json(watcher) == {"type": "note", "payload": where}
    assert recv_json(watcher) == {"type": "direct", "payload": where}


@pytest.mark.parametrize("others", [0, 1], ids=["room-reaped", "room-kept"])
def test_a_join_waits_for_the_same_participants_running_on_leave(make_live, others: int) -> None:
    # With no grace, a quick return is a new membership: the application must see the old one
    # end (on_leave returned) before the new one begins (on_join), even if on_leave is slow.
    live: Live = make_live(grace=0.0)
    order: list[str] = []
    leave_started = gevent.event.Event()

    def slow_leave(room: str, p: str, reason: BaseException) -> None:
        order.append(f"leave {p} start")
        leave_started.set()
        gevent.sleep(0.3)  # an application's slow cleanup, the case under test
        order.append(f"leave {p} end")

    live.hooks.leave_fn = slow_leave
    live.hooks.join_fn = lambda jc, client: order.append(f"join {jc.participant}")
    for i in range(others):
        live.join("r", f"other{i}")
    first = live.join("r", "alice")
    first.close()
    assert leave_started.wait(5)
    live.connect("r", "alice")
    wait_until(lambda: order.count("join alice") == 2, what="the second join")
    alice = [e for e in order if "alice" in e]
    assert alice == ["join alice", "leave alice start", "leave alice end", "join alice"]
