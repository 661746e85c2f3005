"""Contract §2: the Hub's calls, its pykka proxy, and stop()."""

from __future__ import annotations

import http.client

import gevent
import pykka
import pytest
from conftest import Live, read_close, recv_json, wait_until

import wsroom
from wsroom import Envelope, Presence


def test_the_proxy_answers_with_futures_of_the_same_values(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    alice = live.join("r", "alice")
    proxy = live.hub.proxy
    future = proxy.send_to("r", "alice", Envelope("p", 1))
    assert isinstance(future, pykka.Future)
    assert future.get(timeout=5) is wsroom.Delivery.SENT
    assert recv_json(alice) == {"type": "p", "payload": 1}
    assert proxy.broadcast("r", Envelope("b", 2), ["zed"]).get(timeout=5) == wsroom.BroadcastReport(
        1, 0, ()
    )
    assert recv_json(alice)["payload"] == 2
    assert proxy.rooms().get(timeout=5) == ["r"]
    assert proxy.members("r").get(timeout=5) == {"alice": Presence.ONLINE}
    assert proxy.close_room("r").get(timeout=5) is None
    assert read_close(alice)[0] == 4000


def test_the_proxy_raises_the_same_errors(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.join("r", "alice")
    proxy = live.hub.proxy
    with pytest.raises(wsroom.RoomNotFound):
        proxy.send_to("nope", "alice", Envelope("x")).get(timeout=5)
    with pytest.raises(wsroom.ParticipantNotFound):
        proxy.send_to("r", "bob", Envelope("x")).get(timeout=5)
    with pytest.raises(wsroom.RoomNotFound):
        proxy.members("nope").get(timeout=5)
    with pytest.raises(wsroom.RoomNotFound):
        proxy.close_room("nope").get(timeout=5)
    with pytest.raises(wsroom.BadEnvelope):
        proxy.broadcast("r", Envelope("x", {1, 2})).get(timeout=5)


def test_proxy_sends_fired_without_waiting_arrive_in_order(make_live) -> None:
    live: Live = make_live()
    ws = live.join("r", "alice")
    futures = [live.hub.proxy.send_to("r", "alice", Envelope("n", i)) for i in range(300)]
    assert all(f.get(timeout=5) is wsroom.Delivery.SENT for f in futures)
    assert [recv_json(ws)["payload"] for _ in range(300)] == list(range(300))


def test_go_error_texts() -> None:
    assert str(wsroom.RoomNotFound()) == "wsroom: room not found"
    assert str(wsroom.ParticipantNotFound()) == "wsroom: participant not found"
    assert str(wsroom.ParticipantOffline()) == "wsroom: participant offline"
    assert str(wsroom.ResolverRejected()) == "wsroom: resolver rejected participant"
    assert str(wsroom.MissingParticipantID()) == "wsroom: empty participant id"
    for cls in (
        wsroom.RoomNotFound,
        wsroom.ParticipantNotFound,
        wsroom.ParticipantOffline,
        wsroom.ResolverRejected,
        wsroom.MissingParticipantID,
        wsroom.HubStopped,
        wsroom.BadEnvelope,
        wsroom.HandshakeRejected,
    ):
        assert issubclass(cls, wsroom.WsroomError)


def test_stop_closes_with_1001_leaves_once_per_member_and_stops_every_actor(make_live) -> None:
    before = set(pykka.ActorRegistry.get_all())
    live: Live = make_live(grace=30.0, queued=8)
    a = live.join("r1", "alice")
    b = live.join("r2", "bob")
    live.join("r2", "carol").close()
    wait_until(lambda: live.hub.members("r2").get("carol") == Presence.OFFLINE)
    live.hub.stop()
    assert read_close(a) == (1001, "hub stopped")
    assert read_close(b) == (1001, "hub stopped")
    assert sorted(p for _, p, _ in live.hooks.leaves) == ["alice", "bob", "carol"]
    assert all(isinstance(r, wsroom.HubStopped) for _, _, r in live.hooks.leaves)
    assert set(pykka.ActorRegistry.get_all()) <= before
    live.hub.stop()  # a second call does nothing
    assert len(live.hooks.leaves) == 3
    gevent.sleep(0.05)
    assert len(live.hooks.leaves) == 3


def test_calls_on_a_stopped_hub_raise_hub_stopped(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.join("r", "alice")
    live.hub.stop()
    for call in (
        lambda: live.hub.send_to("r", "alice", Envelope("x")),
        lambda: live.hub.broadcast("r", Envelope("x")),
        lambda: live.hub.close_room("r"),
        live.hub.rooms,
        lambda: live.hub.members("r"),
        lambda: live.hub.handle_ws({}, "r", wsroom.Identity("a"), lambda r, i: "a"),
    ):
        with pytest.raises(wsroom.HubStopped):
            call()
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=5)
    conn.request(
        "GET",
        "/ws/r?user=zed",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    response = conn.getresponse()
    assert response.status == 503
    assert b"hub stopped" in response.read()


def test_stop_from_inside_a_hook_does_not_deadlock(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.hooks.message_fn = lambda room, p, e: live.hub.stop()
    ws = live.join("r", "alice")
    ws.send('{"type": "stop"}')
    assert read_close(ws)[0] == 1001
    wait_until(lambda: live.hooks.leaves_of("alice"))
    assert isinstance(live.hooks.leaves_of("alice")[0], wsroom.HubStopped)
    with pytest.raises(wsroom.HubStopped):
        live.hub.rooms()


def test_new_hub_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        wsroom.ReconnectPolicy(-1, 0)
    with pytest.raises(ValueError):
        wsroom.ReconnectPolicy(1, -1)
    with pytest.raises(ValueError):
        wsroom.new_hub(wsroom.Hooks(), wsroom.ReconnectPolicy(), max_message_size=0)
    with pytest.raises(TypeError):
        wsroom.new_hub(wsroom.Hooks(), wsroom.ReconnectPolicy(), no_such_option=1)
    with pytest.raises(TypeError):
        wsroom.new_hub(object(), wsroom.ReconnectPolicy())


def _live_greenlets() -> set[object]:
    import gc

    import greenlet

    return {
        g
        for g in gc.get_objects()
        if isinstance(g, greenlet.greenlet) and not g.dead and g is not greenlet.getcurrent()
    }


def test_stop_leaves_no_greenlet_behind_once_clients_answer_the_close(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    before = _live_greenlets()
    socks = [live.join("r", f"u{i}") for i in range(5)]
    live.hooks.message_fn = lambda room, p, e: None
    live.hub.stop()
    for ws in socks:
        assert read_close(ws)[0] == 1001
    wait_until(
        lambda: not {g for g in _live_greenlets() - before if "serve_forever" not in repr(g)},
        what="every greenlet of the hub to end",
    )


def test_calls_from_another_os_thread_are_refused_clearly(make_live) -> None:
    from gevent import monkey

    live: Live = make_live()
    start_thread = monkey.get_original("_thread", "start_new_thread")
    outcome: list[BaseException | object] = []

    def call_from_a_real_thread() -> None:
        try:
            outcome.append(live.hub.rooms())
        except BaseException as exc:  # noqa: BLE001 -- the test inspects it
            outcome.append(exc)

    start_thread(call_from_a_real_thread, ())
    wait_until(lambda: outcome, what="the other thread's call")
    assert isinstance(outcome[0], wsroom.WrongThread)
    assert isinstance(outcome[0], wsroom.WsroomError)
    assert live.hub.rooms() == []  # the hub's own thread still works
