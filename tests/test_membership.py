"""Contract §4: membership, replacement, grace periods, offline queues, closing rooms."""

from __future__ import annotations

from typing import Any

import gevent
import pytest
import websocket
from conftest import Live, read_close, recv_json, wait_until

import wsroom
from wsroom import Envelope, Presence


def env(n: Any, type_: str = "m") -> Envelope:
    return Envelope(type_, n)


def go_offline(live: Live, ws: websocket.WebSocket, room: str, user: str) -> None:
    ws.close()
    wait_until(lambda: live.hub.members(room).get(user) == Presence.OFFLINE, what=f"{user} offline")


def test_rooms_exist_from_the_first_join_until_the_last_member_is_gone(make_live) -> None:
    live: Live = make_live(grace=0.0)
    assert live.hub.rooms() == []
    a = live.join("r1", "alice")
    b = live.join("r2", "bob")
    assert sorted(live.hub.rooms()) == ["r1", "r2"]
    a.close()
    wait_until(lambda: live.hub.rooms() == ["r2"])
    with pytest.raises(wsroom.RoomNotFound):
        live.hub.members("r1")
    b.close()
    wait_until(lambda: live.hub.rooms() == [])


def test_a_second_connection_replaces_the_first_with_4001(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    first = live.join("r", "alice")
    second = live.connect("r", "alice")
    assert read_close(first) == (4001, "replaced")
    wait_until(lambda: len(live.hooks.joins) == 2)
    assert [jc.reconnect for jc in live.hooks.joins] == [False, True]
    live.hub.send_to("r", "alice", env("to-second"))
    assert recv_json(second) == {"type": "m", "payload": "to-second"}
    assert live.hub.members("r") == {"alice": Presence.ONLINE}
    gevent.sleep(0.05)
    assert live.hooks.leaves == []


def test_offline_members_get_sends_queued_and_flushed_in_order_after_on_join(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.hooks.join_fn = lambda jc, client: client.send(
        env("welcome-back" if jc.reconnect else "hi", "join")
    )
    ws = live.join("r", "alice")
    assert recv_json(ws)["type"] == "join"
    go_offline(live, ws, "r", "alice")
    assert live.hub.send_to("r", "alice", env(1)) is wsroom.Delivery.QUEUED
    report = live.hub.broadcast("r", env(2))
    assert report == wsroom.BroadcastReport(sent=0, queued=1, dropped=())
    assert live.hub.send_to("r", "alice", env(3)) is wsroom.Delivery.QUEUED
    back = live.connect("r", "alice")
    assert recv_json(back) == {"type": "join", "payload": "welcome-back"}
    assert [recv_json(back)["payload"] for _ in range(3)] == [1, 2, 3]
    wait_until(lambda: live.hub.members("r") == {"alice": Presence.ONLINE})
    assert live.hub.send_to("r", "alice", env("live")) is wsroom.Delivery.SENT
    assert recv_json(back)["payload"] == "live"
    assert live.hooks.leaves == []


def test_a_full_queue_refuses_the_newest_envelope(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=2)
    live.join("r", "bob")
    ws = live.join("r", "alice")
    go_offline(live, ws, "r", "alice")
    assert live.hub.send_to("r", "alice", env(1)) is wsroom.Delivery.QUEUED
    assert live.hub.broadcast("r", env(2), exclude=["bob"]) == wsroom.BroadcastReport(0, 1, ())
    with pytest.raises(wsroom.ParticipantOffline) as err:
        live.hub.send_to("r", "alice", env(3))
    assert str(err.value) == "wsroom: participant offline"
    report = live.hub.broadcast("r", env(4))
    assert report.dropped == ("alice",) and report.queued == 0 and report.sent == 1
    back = live.connect("r", "alice")
    assert [recv_json(back)["payload"] for _ in range(2)] == [1, 2]
    live.hub.send_to("r", "alice", env("after"))
    assert recv_json(back)["payload"] == "after"


def test_queueing_off_means_participant_offline(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=0)
    ws = live.join("r", "alice")
    go_offline(live, ws, "r", "alice")
    with pytest.raises(wsroom.ParticipantOffline):
        live.hub.send_to("r", "alice", env(1))


def test_grace_expiry_calls_on_leave_with_grace_expired_and_drops_the_queue(make_live) -> None:
    live: Live = make_live(grace=0.3, queued=8)
    ws = live.join("r", "alice")
    live.join("r", "bob")
    ws.close(status=1000, reason=b"brb")
    wait_until(lambda: live.hub.members("r").get("alice") == Presence.OFFLINE)
    live.hub.send_to("r", "alice", env("lost"))
    wait_until(lambda: live.hooks.leaves_of("alice"), timeout=5)
    [reason] = live.hooks.leaves_of("alice")
    assert isinstance(reason, wsroom.GraceExpired)
    assert reason.__cause__ == wsroom.Disconnected(1000, "brb")
    with pytest.raises(wsroom.ParticipantNotFound):
        live.hub.send_to("r", "alice", env(1))
    again = live.connect("r", "alice")
    wait_until(lambda: len(live.hooks.joins) == 3)
    assert live.hooks.joins[-1].reconnect is False
    live.hub.send_to("r", "alice", env("fresh"))
    assert recv_json(again)["payload"] == "fresh"  # the dropped queue is not replayed


def test_a_reconnect_inside_the_grace_period_is_not_a_leave(make_live) -> None:
    live: Live = make_live(grace=0.5, queued=8)
    ws = live.join("r", "alice")
    go_offline(live, ws, "r", "alice")
    live.join("r", "alice")
    gevent.sleep(0.8)  # past the first grace period: its timer must not fire any more
    assert live.hooks.leaves == []
    assert live.hub.members("r") == {"alice": Presence.ONLINE}


def test_grace_zero_leaves_at_once_and_later_sends_fail(make_live) -> None:
    live: Live = make_live(grace=0.0, queued=8)
    ws = live.join("r", "alice")
    live.join("r", "bob")
    ws.close(status=4321, reason=b"gone")
    wait_until(lambda: live.hooks.leaves_of("alice"))
    assert live.hooks.leaves_of("alice") == [wsroom.Disconnected(4321, "gone")]
    with pytest.raises(wsroom.ParticipantNotFound) as err:
        live.hub.send_to("r", "alice", env(1))
    assert str(err.value) == "wsroom: participant not found"


def test_grace_zero_last_member_gone_means_room_not_found(make_live) -> None:
    live: Live = make_live(grace=0.0)
    ws = live.join("r", "alice")
    ws.close()
    wait_until(lambda: live.hooks.leaves_of("alice"))
    with pytest.raises(wsroom.RoomNotFound) as err:
        live.hub.send_to("r", "alice", env(1))
    assert str(err.value) == "wsroom: room not found"


def test_close_room_closes_everyone_with_4000_and_ends_every_membership(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    a = live.join("r", "alice")
    b = live.join("r", "bob")
    go_offline(live, live.join("r", "carol"), "r", "carol")
    other = live.join("elsewhere", "dave")
    live.hub.close_room("r")
    assert read_close(a) == (4000, "room closed")
    assert read_close(b) == (4000, "room closed")
    wait_until(lambda: len(live.hooks.leaves) == 3)
    assert sorted(p for _, p, _ in live.hooks.leaves) == ["alice", "bob", "carol"]
    assert all(isinstance(r, wsroom.RoomClosed) for _, _, r in live.hooks.leaves)
    assert live.hub.rooms() == ["elsewhere"]
    with pytest.raises(wsroom.RoomNotFound):
        live.hub.close_room("r")
    live.hub.send_to("elsewhere", "dave", env("still here"))
    assert recv_json(other)["payload"] == "still here"


def test_close_room_returns_every_blocked_handle_ws(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    returned: list[str] = []
    hub = live.hub

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        user = environ["QUERY_STRING"]
        hub.handle_ws(environ, "r", wsroom.Identity(user), lambda room, ident: ident.user_id)
        returned.append(user)
        return []

    from wsroom.transport import serve

    server = serve(app, port=0)
    try:
        clients = [
            websocket.create_connection(f"ws://127.0.0.1:{server.server_port}/?{u}", timeout=5)
            for u in ("u1", "u2")
        ]
        wait_until(lambda: len(hub.members("r")) == 2 if "r" in hub.rooms() else False)
        hub.close_room("r")
        for ws in clients:
            assert read_close(ws)[0] == 4000
        wait_until(lambda: sorted(returned) == ["u1", "u2"], what="handle_ws to return")
    finally:
        server.stop(timeout=1)


def test_close_room_from_inside_a_hook(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    live.hooks.message_fn = lambda room, p, e: live.hub.close_room(room)
    a = live.join("r", "alice")
    b = live.join("r", "bob")
    a.send('{"type": "close-it"}')
    assert read_close(a)[0] == 4000
    assert read_close(b)[0] == 4000
    wait_until(lambda: len(live.hooks.leaves) == 2)
    assert live.hub.rooms() == []


def test_a_room_can_be_joined_again_after_it_was_closed(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    a = live.join("r", "alice")
    live.hub.close_room("r")
    assert read_close(a)[0] == 4000
    again = live.join("r", "alice")
    assert live.hooks.joins[-1].reconnect is False
    live.hub.send_to("r", "alice", env("new room"))
    assert recv_json(again)["payload"] == "new room"


def test_send_to_and_broadcast_errors(make_live) -> None:
    live: Live = make_live(grace=30.0, queued=8)
    with pytest.raises(wsroom.RoomNotFound):
        live.hub.send_to("nope", "alice", env(1))
    with pytest.raises(wsroom.RoomNotFound):
        live.hub.broadcast("nope", env(1))
    live.join("r", "alice")
    with pytest.raises(wsroom.ParticipantNotFound):
        live.hub.send_to("r", "zed", env(1))
    with pytest.raises(wsroom.BadEnvelope):
        live.hub.send_to("r", "alice", Envelope("x", object()))
    with pytest.raises(wsroom.BadEnvelope):
        live.hub.broadcast("r", Envelope("wsroom.mine", None))


def test_broadcast_excludes_and_reports(make_live) -> None:
    live: Live = make_live()
    socks = {u: live.join("r", u) for u in ("a", "b", "c")}
    report = live.hub.broadcast("r", env("hey"), exclude=["b"])
    assert report == wsroom.BroadcastReport(sent=2, queued=0, dropped=())
    assert recv_json(socks["a"])["payload"] == "hey"
    assert recv_json(socks["c"])["payload"] == "hey"
    live.hub.send_to("r", "b", env("only b"))
    assert recv_json(socks["b"])["payload"] == "only b"  # b never got "hey"


def test_on_presence_reports_going_away_and_coming_back_but_not_joins_or_leaves(make_live) -> None:
    live: Live = make_live(grace=0.4, queued=8)
    seen: list[tuple[str, str, Presence]] = []
    live.hooks.on_presence = lambda room, p, presence: seen.append((room, p, presence))  # type: ignore[method-assign]
    ws = live.join("r", "alice")
    live.join("r", "bob")
    go_offline(live, ws, "r", "alice")
    wait_until(lambda: seen == [("r", "alice", Presence.OFFLINE)])
    live.join("r", "alice")
    wait_until(lambda: len(seen) == 2)
    assert seen[1] == ("r", "alice", Presence.ONLINE)
    live.join("r", "alice")  # a replacement: online all along, no change to report
    live.join("r", "carol").close()  # away, then its grace ends: a leave, not a presence change
    wait_until(lambda: live.hooks.leaves_of("carol"))
    assert seen[2:] == [("r", "carol", Presence.OFFLINE)]


def test_hooks_without_on_presence_still_work(make_live) -> None:
    class ThreeHooks:
        def __init__(self) -> None:
            self.left: list[str] = []

        def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
            pass

        def on_message(self, room: str, p: str, env: Envelope) -> None:
            pass

        def on_leave(self, room: str, p: str, reason: BaseException) -> None:
            self.left.append(p)

    hooks = ThreeHooks()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(0.2, 4))
    from wsroom.transport import make_handler, serve

    server = serve(make_handler(hub, "r", wsroom.Identity("x"), lambda r, i: i.user_id), port=0)
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.server_port}/", timeout=5)
        wait_until(lambda: "r" in hub.rooms())
        ws.close()
        wait_until(lambda: hooks.left == ["x"])
    finally:
        hub.stop()
        server.stop(timeout=1)


def test_a_backlog_larger_than_the_outbox_is_flushed_in_order_not_cut(make_live) -> None:
    # The queue may hold more than the outbox takes at once: the flush waits for the writer to
    # drain instead of declaring a healthy reconnect a slow consumer (4008), and live sends
    # made meanwhile wait behind the backlog.
    live: Live = make_live(grace=30.0, queued=200, outbox_max_messages=8)
    ws = live.join("r", "alice")
    go_offline(live, ws, "r", "alice")
    pad = "p" * 64 * 1024  # 150 of these are more than the kernel's socket buffers hold
    for i in range(150):
        assert live.hub.send_to("r", "alice", env([i, pad])) is wsroom.Delivery.QUEUED
    back = live.connect("r", "alice")
    wait_until(lambda: live.hub.members("r") == {"alice": Presence.ONLINE})
    assert live.hub.send_to("r", "alice", env("live")) is wsroom.Delivery.QUEUED  # behind it
    got = [recv_json(back)["payload"] for _ in range(151)]
    assert [p[0] for p in got[:150]] == list(range(150))
    assert got[150] == "live"
    assert live.hooks.leaves == []
    live.hub.send_to("r", "alice", env("after"))
    assert recv_json(back)["payload"] == "after"
