"""The harness itself, on what exists without a backplane: a Redis server the tests can kill and
bring back with its data, and node.py as a plain single-process hub driven over its control API
and real sockets. If these fail, the cross-process tests' failures say nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until

import wsroom

from .support import NodeError, env


def test_redis_server_keeps_its_data_across_a_kill_and_restart(
    redis_server: object, tmp_path: Path
) -> None:
    from redis_server import RedisServer

    server = RedisServer(tmp_path / "own")
    server.start()
    try:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with server.client() as r:
            r.set("k", "v")
        server.kill()
        assert not server.ping()
        server.restart()
        assert server.port == port and server.ping()
        with server.client() as r:
            assert r.get("k") == b"v"  # the AOF, fsynced on every write
        server.flush()
        with server.client() as r:
            assert r.get("k") is None
    finally:
        server.stop()
    assert not server.running


def test_a_single_process_node_serves_clients_and_its_control_api(hub_procs) -> None:
    [node] = hub_procs(1, None, grace=0.5, queued=2)
    assert node.rooms() == []
    a = node.connect("r", "a")
    assert a.wait_hello() == {"reconnect": False}
    b = node.connect("r", "b")
    b.wait_hello()
    wait_until(lambda: node.members_or_none("r") == {"a": "ONLINE", "b": "ONLINE"})
    assert node.rooms() == ["r"]

    # Hub calls over the control API: results as JSON, errors as the wsroom classes.
    assert node.send_to("r", "a", "m", 1) == "SENT"
    assert node.broadcast("r", "m", 2, exclude=["a"]) == {"sent": 1, "queued": 0, "dropped": []}
    assert a.wait_payloads("m", 1) == [1]
    assert b.wait_payloads("m", 1) == [2]
    with pytest.raises(wsroom.RoomNotFound):
        node.send_to("nope", "a", "m")
    with pytest.raises(wsroom.ParticipantNotFound):
        node.send_to("r", "zed", "m")
    with pytest.raises(wsroom.RoomNotFound):
        node.members("nope")
    with pytest.raises(NodeError):
        node.call("no_such_method")
    answer = node.call_raw("send_to", "r", "zed", env("m"))
    assert answer == {"error": "ParticipantNotFound", "detail": "wsroom: participant not found"}

    # Hook-driven calls: a broadcast excluding its sender, a targeted send, an echo, an error.
    a.send("bcast", "x")
    assert b.wait_payloads("b", 1) == ["x"]
    a.send("to", {"to": "b", "data": "y"})
    assert b.wait_payloads("t", 1) == ["y"]
    b.send("echo", "z")
    assert b.wait_payloads("echo", 1) == ["z"]
    a.send("to", {"to": "zed", "data": 0})
    wait_until(lambda: ["error", "r", "a", "ParticipantNotFound"] in node.events())
    assert a.payloads("b") == []  # excluded from its own broadcast

    # Presence and leaves as events; the queue while offline; a reconnect.
    a.close()
    wait_until(lambda: node.members("r").get("a") == "OFFLINE")
    assert node.send_to("r", "a", "q", 1) == "QUEUED"
    a2 = node.connect("r", "a")
    assert a2.wait_hello() == {"reconnect": True}
    assert a2.wait_payloads("q", 1) == [1]
    assert a2.types()[:2] == ["hello", "q"]
    b.close()
    wait_until(lambda: ["leave", "r", "b", "GraceExpired", "Disconnected"] in node.events())
    events = node.events()
    assert ["join", "r", "a", False] in events and ["join", "r", "a", True] in events
    assert ["presence", "r", "a", "OFFLINE"] in events
    assert ["presence", "r", "a", "ONLINE"] in events
    assert ["message", "r", "a", "bcast", "x"] in events

    # SIGTERM: hub.stop() (single process: 1001 and on_leave(HubStopped)), then exit 0.
    assert node.terminate() == 0
    assert a2.wait_closed()[0] == 1001


def test_close_room_over_the_control_api(hub_procs) -> None:
    [node] = hub_procs(1, None, grace=30.0, queued=8)
    a = node.connect("r", "a")
    a.wait_hello()
    wait_until(lambda: "r" in node.rooms())
    assert node.call("close_room", "r") is None
    assert a.wait_closed() == (4000, "room closed")
    wait_until(lambda: ["leave", "r", "a", "RoomClosed", None] in node.events())
    with pytest.raises(wsroom.RoomNotFound):
        node.close_room("r")
