"""Issue 8 at a small scale: stop() is bounded and raises nothing, close frames go out before
any abort clock, and ``run_until_signal`` always stops the server.

The same flaws at 10,000 members are in ``soak/test_ten_thousand.py`` (``tox -e soak``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

import gevent
import pytest
from conftest import Live, wait_until
from transport_util import OP_CLOSE, RawWS, close_code, upgrade_headers

import wsroom
from wsroom.actors import messages as m
from wsroom.actors.hub import HubActor
from wsroom.transport import run_until_signal


def _raw_members(live: Live, room: str, count: int) -> list[RawWS]:
    members = []
    for i in range(count):
        ws = RawWS(live.port, f"/ws/{room}?user=u{i}", headers=upgrade_headers(live.port))
        assert ws.status == 101
        members.append(ws)
    wait_until(lambda: len(live.hooks.joins) == count, what="every member to join")
    return members


def _close_of(ws: RawWS) -> tuple[int, str]:
    op, data = ws.read_message()
    assert op == OP_CLOSE
    return close_code(data)


def test_stop_ends_every_actor_within_its_timeout_while_members_are_inside_hooks(
    make_live: Any,
) -> None:
    # Each participant is inside a long on_message when the hub stops: it finishes that hook
    # before it stops, and the wind-down used to wait for each in turn, 10 ms per participant
    # past the deadline (1.5 s more for 150). All are waited for together now, and nothing is
    # waited for past the deadline.
    live: Live = make_live()
    live.hooks.message_fn = lambda room, p, e: gevent.sleep(3.0)
    members = _raw_members(live, "busy", 150)
    for ws in members:
        ws.send_json("work")
    wait_until(lambda: len(live.hooks.messages) == len(members), what="every hook to start")
    started = time.monotonic()
    live.hub.stop(timeout=0.5)
    assert time.monotonic() - started < 1.0
    wait_until(lambda: not live.hub._ref.is_alive(), timeout=5.0, what="the hub actor to stop")
    took = time.monotonic() - started
    assert took < 1.2, f"the hub actor stopped {took:.2f}s after stop(timeout=0.5)"
    assert {_close_of(ws) for ws in members} == {(1001, "hub stopped")}
    wait_until(lambda: len(live.hooks.leaves) == len(members), what="every on_leave")
    assert all(isinstance(reason, wsroom.HubStopped) for _, _, reason in live.hooks.leaves)


def test_stop_raises_nothing_when_the_hub_actor_cannot_answer_in_time(
    make_live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hub actor that answers stop() late (as under 10,000 leaving members) made pykka.Timeout
    # escape stop(), and run_until_signal then never stopped the server.
    stop_hub = HubActor._dispatch[m.StopHub]

    def late_stop_hub(actor: HubActor, msg: m.StopHub) -> Any:
        gevent.sleep(0.5)  # busy elsewhere: the answer comes after the caller's timeout
        return stop_hub(actor, msg)

    monkeypatch.setitem(HubActor._dispatch, m.StopHub, late_stop_hub)
    live: Live = make_live()
    members = _raw_members(live, "hurried", 20)
    started = time.monotonic()
    live.hub.stop(timeout=0.1)  # raises nothing
    assert time.monotonic() - started < 0.4
    assert {_close_of(ws) for ws in members} == {(1001, "hub stopped")}
    wait_until(lambda: len(live.hooks.leaves) == len(members), what="every on_leave")
    wait_until(lambda: not live.hub._ref.is_alive(), what="the hub actor to stop")


def test_a_close_frame_is_on_the_wire_before_close_returns(make_live: Any) -> None:
    # The abort clock must never run ahead of the close frame: with nothing else being
    # written, close() writes the frame itself instead of waiting for a writer greenlet
    # (10,000 of those may not all be scheduled within close_timeout).
    live: Live = make_live()
    clients: list[wsroom.Client] = []
    live.hooks.join_fn = lambda jc, client: clients.append(client)
    ws = _raw_members(live, "r", 1)[0]
    clients[0].close(4000, "bye")
    ws.sock.settimeout(0.0)  # a peek that never waits (waiting would let a writer run)
    try:
        head = ws.sock.recv(2, socket.MSG_PEEK)
    except BlockingIOError:
        head = b""
    ws.sock.settimeout(10.0)
    assert head[:1] and head[0] & 0x0F == OP_CLOSE, "close() returned before its frame went out"
    assert _close_of(ws) == (4000, "bye")


class _FailingHub:
    def stop(self, timeout: float = 5.0) -> None:
        raise RuntimeError("the hub failed")


def test_run_until_signal_stops_the_server_even_when_the_hub_fails(make_live: Any) -> None:
    live: Live = make_live()
    runner = gevent.spawn(
        run_until_signal, live.server, _FailingHub(), signals=(signal.SIGUSR2,), timeout=1.0
    )
    gevent.sleep(0.05)  # let it install its handler
    os.kill(os.getpid(), signal.SIGUSR2)
    assert runner.get(timeout=5) == signal.SIGUSR2
    assert live.server.closed
