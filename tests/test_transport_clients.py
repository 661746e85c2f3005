"""Other clients than websocket-client: the ``websockets`` sync client and Node's ``ws``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import websockets.exceptions
import websockets.sync.client
from conftest import Live, recv_json, wait_until

import wsroom

NODE_DIR = Path(__file__).parent / "node"


def broadcast_echo(live: Live) -> None:
    live.hooks.message_fn = lambda room, p, env: live.hub.broadcast(
        room, wsroom.Envelope("echo", {"from": p, "said": env.payload})
    )


# -- websockets (sync client) ------------------------------------------------------------


def test_websockets_client_join_message_broadcast(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=0.0)
    broadcast_echo(live)
    connect = websockets.sync.client.connect
    with (
        connect(live.url("r", "alice"), open_timeout=5) as alice,
        connect(live.url("r", "bob"), open_timeout=5) as bob,
    ):
        wait_until(lambda: len(live.hooks.joins) == 2, what="two joins")
        alice.send(json.dumps({"type": "say", "payload": "hi"}))
        expected = {"type": "echo", "payload": {"from": "alice", "said": "hi"}}
        assert json.loads(alice.recv(timeout=5)) == expected
        assert json.loads(bob.recv(timeout=5)) == expected
        assert live.hub.send_to("r", "bob", wsroom.Envelope("dm", 1)) is wsroom.Delivery.SENT
        assert json.loads(bob.recv(timeout=5)) == {"type": "dm", "payload": 1}
        report = live.hub.broadcast("r", wsroom.Envelope("all"), exclude=["alice"])
        assert report == wsroom.BroadcastReport(sent=1, queued=0, dropped=())
        assert json.loads(bob.recv(timeout=5)) == {"type": "all", "payload": None}
        bob.close(1000, "done")
        wait_until(lambda: live.hooks.leaves_of("bob"), what="bob's leave")
        assert live.hooks.leaves_of("bob") == [wsroom.Disconnected(1000, "done")]
        live.hub.close_room("r")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            alice.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "room closed")


def test_websockets_client_sees_replaced_4001(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=5.0, queued=4)
    connect = websockets.sync.client.connect
    with connect(live.url("r", "alice"), open_timeout=5) as first:
        wait_until(lambda: live.hooks.joins, what="the join")
        with connect(live.url("r", "alice"), open_timeout=5) as second:
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                first.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
            wait_until(lambda: len(live.hooks.joins) == 2, what="the reconnect")
            assert live.hooks.joins[-1].reconnect is True
            live.hub.send_to("r", "alice", wsroom.Envelope("to-second"))
            assert json.loads(second.recv(timeout=5))["type"] == "to-second"
            assert live.hooks.leaves_of("alice") == [], "a replaced connection is no leave"


# -- Node.js ws ----------------------------------------------------------------------------


def _node_unavailable(why: str) -> None:
    if os.environ.get("WSROOM_REQUIRE_NODE") == "1":
        pytest.fail(f"WSROOM_REQUIRE_NODE=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The path of the Node client script, its ``ws`` dependency installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _node_unavailable("node or npm is not installed")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        result = subprocess.run(
            [npm or "npm", "install", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            _node_unavailable(f"npm install failed: {result.stderr[-2000:]}")
    return NODE_DIR / "client.mjs"


class NodeClient:
    """One ``node client.mjs`` process: ``send`` commands, ``next_event`` reads its output."""

    def __init__(self, script: Path, url: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(script), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with gevent.Timeout(timeout, AssertionError("no output from the Node client")):
            line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"the Node client ended: {self.proc.stderr.read()}")
        event: dict[str, Any] = json.loads(line)
        return event

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def node(node_client: Path) -> Iterator[Callable[[str], NodeClient]]:
    started: list[NodeClient] = []

    def start(url: str) -> NodeClient:
        client = NodeClient(node_client, url)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


@pytest.mark.node
def test_node_ws_client_round_trip(make_live: Callable[..., Live], node: Any) -> None:
    live = make_live(grace=0.0)
    broadcast_echo(live)
    alice = live.join("r", "alice")
    client = node(live.url("r", "nodey"))
    opened = client.next_event()
    assert opened["event"] == "open", opened
    assert opened["extensions"] == "", "permessage-deflate must not be negotiated by default"
    wait_until(lambda: "nodey" in live.hub.members("r"), what="the Node client to join")

    said = {"text": "hi from node", "n": [1, 2]}
    client.command(send={"type": "say", "payload": said})
    expected = {"type": "echo", "payload": {"from": "nodey", "said": said}}
    assert client.next_event() == {"event": "message", "data": expected}
    assert recv_json(alice) == expected

    live.hub.send_to("r", "nodey", wsroom.Envelope("dm", "\u00e9\u4e16\U0001f600"))
    assert client.next_event() == {
        "event": "message",
        "data": {"type": "dm", "payload": "\u00e9\u4e16\U0001f600"},
    }

    client.command(send=[1, 2])  # not an envelope
    answer = client.next_event()["data"]
    assert answer["type"] == "wsroom.error"
    assert answer["payload"]["code"] == "bad_envelope"

    client.command(close=[1000, "bye"])
    assert client.next_event() == {"event": "close", "code": 1000, "reason": "bye"}
    wait_until(lambda: live.hooks.leaves_of("nodey"), what="the Node client's leave")
    assert live.hooks.leaves_of("nodey") == [wsroom.Disconnected(1000, "bye")]


@pytest.mark.node
def test_node_ws_client_negotiates_deflate_when_on(
    make_live: Callable[..., Live], node: Any
) -> None:
    live = make_live(grace=0.0, compression=True)
    broadcast_echo(live)
    client = node(live.url("r", "nodey"))
    opened = client.next_event()
    assert opened["event"] == "open", opened
    assert "permessage-deflate" in opened["extensions"]
    big = "compressible " * 4000  # under max_message_size once inflated
    client.command(send={"type": "say", "payload": big})
    event = client.next_event()
    assert event.get("data") == {"type": "echo", "payload": {"from": "nodey", "said": big}}


@pytest.mark.node
def test_node_ws_client_sees_room_closed_4000(make_live: Callable[..., Live], node: Any) -> None:
    live = make_live(grace=0.0)
    client = node(live.url("r", "nodey"))
    assert client.next_event()["event"] == "open"
    wait_until(lambda: "nodey" in live.hub.members("r"), what="the Node client to join")
    live.hub.close_room("r")
    assert client.next_event() == {"event": "close", "code": 4000, "reason": "room closed"}
    assert isinstance(live.hooks.leaves_of("nodey")[0], wsroom.RoomClosed)
