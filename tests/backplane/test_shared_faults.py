"""Redis going away and coming back, with two hubs in this test process: nothing accepted is
lost or repeated, calls fail in bounded time, connections stay open."""

from __future__ import annotations

import time
from typing import Any

import gevent
from conftest import read_close, recv_json, wait_until

import wsroom

from .shared import joined, pair

__all__ = ["pair"]  # the fixture, imported for pytest


def test_calls_fail_in_bounded_time_while_redis_is_down_and_sockets_stay_open(
    pair: Any, redis_server: Any
) -> None:
    a, b = pair(backplane_timeout=2.0)
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    redis_server.kill()
    try:
        for call in (
            lambda: a.hub.broadcast("lobby", wsroom.Envelope("x")),
            lambda: b.hub.send_to("lobby", "alice", wsroom.Envelope("x")),
            lambda: a.hub.members("lobby"),
            lambda: b.hub.rooms(),
        ):
            started = time.monotonic()
            try:
                call()
            except wsroom.BackplaneUnavailable:
                pass
            else:
                raise AssertionError("a call succeeded with Redis down")
            assert time.monotonic() - started < 4.0
        assert alice.connected and bob.connected
    finally:
        redis_server.start()
    wait_until(lambda: _works(a), timeout=20, what="the hub to work again")
    assert a.hub.broadcast("lobby", wsroom.Envelope("back")).sent == 2
    assert recv_json(alice)["type"] == "back"
    assert recv_json(bob)["type"] == "back"


def _works(live: Any) -> bool:
    try:
        live.hub.rooms()
    except wsroom.BackplaneUnavailable:
        return False
    return True


def test_redis_restart_mid_stream_loses_and_repeats_nothing(pair: Any, redis_server: Any) -> None:
    a, b = pair(backplane_timeout=1.0)
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    accepted_b: list[int] = []
    accepted_s: list[int] = []

    def broadcasts() -> None:
        for i in range(400):
            try:
                a.hub.broadcast("lobby", wsroom.Envelope("b", i))
                accepted_b.append(i)
            except wsroom.BackplaneUnavailable:
                pass
            gevent.sleep(0.003)

    def sends() -> None:
        for i in range(400):
            try:
                b.hub.send_to("lobby", "alice", wsroom.Envelope("s", i))
                accepted_s.append(i)
            except wsroom.BackplaneUnavailable:
                pass
            gevent.sleep(0.003)

    workers = [gevent.spawn(broadcasts), gevent.spawn(sends)]
    wait_until(lambda: len(accepted_b) > 100, what="the stream to run")
    redis_server.kill()
    gevent.sleep(0.5)
    redis_server.start()
    gevent.joinall(workers, raise_error=True)
    assert len(accepted_b) > 150 and len(accepted_s) > 150

    def read(ws: Any, n: int) -> list[tuple[str, int]]:
        ws.settimeout(20)
        return [(e["type"], e["payload"]) for e in (recv_json(ws) for _ in range(n))]

    got_bob = read(bob, len(accepted_b))
    assert got_bob == [("b", i) for i in accepted_b]
    got_alice = read(alice, len(accepted_b) + len(accepted_s))
    assert [p for t, p in got_alice if t == "b"] == accepted_b
    assert [p for t, p in got_alice if t == "s"] == accepted_s


def test_a_redis_that_lost_its_data_sends_clients_back_and_service_resumes(
    pair: Any, redis_server: Any
) -> None:
    # A Redis restarted without its append-only file knows no member: the processes learn it
    # at their next heartbeat and close their connections (1012) so the clients join again.
    a, b = pair()
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    redis_server.flush()
    assert read_close(alice)[0] == 1012
    assert read_close(bob)[0] == 1012
    alice = a.join(user="alice")
    bob = b.connect(user="bob")
    wait_until(joined(a, "bob"))
    assert a.hub.broadcast("lobby", wsroom.Envelope("again")).sent == 2
    assert recv_json(bob)["type"] == "again"
