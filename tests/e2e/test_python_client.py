"""wsroom.client against a live hub: send/recv, reconnect inside the grace period with the
queue flushed in order, final codes, the server going away, and use without gevent."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import e2e_support
import pytest
from conftest import Live, identity_from_query, room_from_path, wait_until

import wsroom
from wsroom.client import (
    ClientClosed,
    ConnectionState,
    ConnectRefused,
    ConnectTimeout,
    RoomClient,
    connect,
    is_final_code,
)
from wsroom.transport import make_handler, serve

server = e2e_support.server


def dropping_hooks(live: Live) -> None:
    """``drop`` closes the sender with 4008 (not final); ``echo`` answers; ``hello`` on join."""

    def on_message(room: str, pid: str, env: wsroom.Envelope) -> None:
        if env.type == "drop":
            raise wsroom.CloseConnection(4008, "dropped for the test")
        if env.type == "echo":
            live.hub.send_to(room, pid, env)

    def on_join(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        client.send(wsroom.Envelope("hello", {"reconnect": jc.reconnect}))

    live.hooks.message_fn = on_message
    live.hooks.join_fn = on_join


@pytest.fixture
def clients() -> Any:
    made: list[RoomClient] = []

    def make(url: str, **options: Any) -> RoomClient:
        client = RoomClient(url, **options)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.close(timeout=1)


def test_send_receive_and_close(make_live: Callable[..., Live], clients: Any) -> None:
    live = make_live(grace=10.0, queued=64)
    dropping_hooks(live)
    client = clients(live.url("r1", "ann"))
    assert client.state is ConnectionState.OPEN and client.connections == 1
    assert client.recv(5) == wsroom.Envelope("hello", {"reconnect": False})
    client.send("echo", {"n": 1})
    assert client.wait_for("echo", 5).payload == {"n": 1}
    with pytest.raises(TimeoutError):
        client.recv(0.05)
    client.close()
    assert client.state is ConnectionState.CLOSED
    assert list(client) == []  # iteration ends once closed
    with pytest.raises(ClientClosed):
        client.send("echo", {})
    wait_until(lambda: live.hub.members("r1")["ann"] is wsroom.Presence.OFFLINE, what="grace")


def test_reconnects_inside_grace_and_gets_the_queue_in_order(
    make_live: Callable[..., Live], clients: Any
) -> None:
    live = make_live(grace=10.0, queued=64)
    dropping_hooks(live)
    states: list[ConnectionState] = []
    client = clients(
        live.url("r1", "ann"),
        min_delay=0.5,
        max_delay=0.5,
        jitter=0.0,
        on_state=lambda s, c: states.append(s),
    )
    other = clients(live.url("r1", "bob"))
    client.wait_for("hello", 5)
    client.send("drop")
    client.wait_state(ConnectionState.RECONNECTING, 5)
    assert client.last_close == (4008, "dropped for the test")
    wait_until(lambda: live.hub.members("r1")["ann"] is wsroom.Presence.OFFLINE, what="offline")
    for n in range(20):
        assert live.hub.send_to("r1", "ann", wsroom.Envelope("n", n)) is wsroom.Delivery.QUEUED
    client.wait_reconnected(1, 10)
    assert client.connections == 2
    assert client.recv(5) == wsroom.Envelope("hello", {"reconnect": True})  # on_join first
    assert [client.recv(5).payload for _ in range(20)] == list(range(20))  # then the queue
    assert states == [ConnectionState.OPEN, ConnectionState.RECONNECTING, ConnectionState.OPEN]
    # Sending while disconnected waits for the socket (up to its timeout).
    client.send("echo", "after")
    assert client.wait_for("echo", 5).payload == "after"
    assert other.is_open


def test_a_final_close_code_ends_the_client(make_live: Callable[..., Live], clients: Any) -> None:
    live = make_live(grace=10.0, queued=64)
    first = clients(live.url("r1", "ann"))
    clients(live.url("r1", "ann"))  # the same participant again: the first is replaced
    first.wait_state(ConnectionState.CLOSED, 5)
    assert first.last_close is not None and first.last_close[0] == 4001
    with pytest.raises(ClientClosed) as info:
        first.recv(1)
    assert info.value.code == 4001
    assert is_final_code(4000) and is_final_code(1008) and not is_final_code(4008)
    assert not is_final_code(1001) and not is_final_code(1006)


def test_server_gone_then_back_on_the_same_port(
    make_live: Callable[..., Live], clients: Any
) -> None:
    live = make_live(grace=10.0, queued=64)
    client = clients(live.url("r1", "ann"), min_delay=0.05, max_delay=0.2)
    live.server.stop(timeout=1)
    live.hub.stop()
    client.wait_state(ConnectionState.RECONNECTING, 5)
    wait_until(lambda: client.attempt >= 3, what="several attempts, backing off")
    hub = wsroom.new_hub(wsroom.Hooks(), wsroom.ReconnectPolicy(10, 64))
    app = make_handler(hub, room_from_path, identity_from_query, lambda r, i: i.user_id)
    again = serve(app, port=live.port)
    try:
        client.wait_reconnected(1, 10)
        wait_until(lambda: "ann" in hub.members("r1"), what="ann back in a new hub")
    finally:
        client.close()
        hub.stop()
        again.stop(timeout=1)


def test_connect_without_reconnect_raises_when_nobody_listens() -> None:
    client = RoomClient("ws://127.0.0.1:9/ws/r1?user=ann", reconnect=False)
    with pytest.raises(ClientClosed):
        client.connect(5)


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wsroom-client" and t.is_alive()]


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def refuse_bob(room: str, identity: wsroom.Identity) -> str:
    if identity.user_id == "bob":
        raise ValueError("bob is not welcome")
    return identity.user_id


def test_a_refused_connect_raises_at_once_with_the_status_and_leaves_no_thread(
    make_live: Callable[..., Live],
) -> None:
    live = make_live(grace=10.0, queued=64, resolve=refuse_bob)
    before = client_threads()
    started = time.monotonic()
    with pytest.raises(ConnectRefused) as info:
        connect(live.url("r1", "bob"), timeout=10)
    took = time.monotonic() - started
    assert took < 2.0, f"a refusal took {took:.1f}s"
    assert info.value.status == 403
    assert "resolver rejected" in info.value.reason, info.value.reason
    assert "403" in str(info.value)
    assert isinstance(info.value, ClientClosed)  # one except clause catches every ending
    assert client_threads() == before


def test_no_server_raises_after_the_connect_timeout_and_leaves_no_thread() -> None:
    before = client_threads()
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as info:
        connect(f"ws://127.0.0.1:{free_port()}/ws/r1?user=ann", timeout=1.0, min_delay=0.05)
    took = time.monotonic() - started
    assert 0.9 <= took < 3.0, took
    assert isinstance(info.value, TimeoutError)
    assert "Connection refused" in str(info.value) or "Errno" in str(info.value), info.value
    wait_until(lambda: client_threads() == before, what="the client thread to end")


def test_a_reconnect_refused_with_a_4xx_stops_and_says_why(
    make_live: Callable[..., Live], clients: Any
) -> None:
    welcome = {"ann": True}

    def resolve(room: str, identity: wsroom.Identity) -> str:
        if not welcome.get(identity.user_id):
            raise ValueError("no longer welcome")
        return identity.user_id

    live = make_live(grace=10.0, queued=64, resolve=resolve)
    dropping_hooks(live)
    states: list[ConnectionState] = []
    client = clients(live.url("r1", "ann"), min_delay=0.05, on_state=lambda s, c: states.append(s))
    client.wait_for("hello", 5)
    welcome["ann"] = False
    client.send("drop")  # 4008: not final, so the client tries again, and is refused
    client.wait_state(ConnectionState.CLOSED, 5)
    assert isinstance(client.ended, ConnectRefused) and client.ended.status == 403
    with pytest.raises(ConnectRefused):
        client.recv(1)
    assert client.attempt <= 1, "a refusal is not retried"
    assert states[-1] is ConnectionState.CLOSED
    wait_until(lambda: client._thread is not None and not client._thread.is_alive(), what="end")


def test_works_in_a_plain_threaded_program_and_import_wsroom_stays_light(
    server: Callable[..., e2e_support.Server],
) -> None:
    hub = server("tests/e2e/js_hub_server.py")
    script = textwrap.dedent(
        f"""
        import sys
        import wsroom
        assert "websocket" not in sys.modules, "import wsroom pulled in websocket-client"
        import socket, threading
        assert socket.socket.__module__ == "socket", "no monkey-patching here"
        from wsroom.client import connect
        with connect("ws://127.0.0.1:{hub.port}/ws/r1?user=plain") as c:
            assert c.wait_for("hello", 5).payload == {{"you": "plain", "reconnect": False}}
            c.send("echo", [1, 2, 3])
            assert c.wait_for("echo", 5).payload == [1, 2, 3]
            c.send("drop")
            c.wait_reconnected(1, 10)
            assert c.wait_for("hello", 5).payload["reconnect"] is True
        print("ok")
        """
    )
    # Outside the checkout, so the installed package is imported, not the source folder.
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
