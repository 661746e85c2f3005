"""Chaos for resume without loss across processes (contract §7 on the backplane): the chaos of
``tests/test_resume_chaos.py``, with two hub processes on one Redis behind the proxy, each new
connection going to the other one. Every cut is followed by a resume on the other process: what
was unacknowledged must come from Redis, and ``on_message`` run once per client envelope
wherever the envelope arrived.

Seeded like the one-process chaos (``WSROOM_CHAOS_SEED``); ``WSROOM_CHAOS_SHARED_CUTS``
(default 40) scales the run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import gevent
from conftest import Live, wait_until
from test_resume_chaos import TOTAL, Paced, Proxy

import wsroom
from wsroom.client import RoomClient

from .shared import pair

__all__ = ["pair"]  # the fixture, used by name

SEED = int(os.environ.get("WSROOM_CHAOS_SEED", "1"))
CUTS = int(os.environ.get("WSROOM_CHAOS_SHARED_CUTS", "40"))


def ups_seen(lives: tuple[Live, ...], user: str) -> list[Any]:
    return [
        e.payload
        for live in lives
        for _, p, e in live.hooks.messages
        if p == user and e.type == "up"
    ]


def test_every_envelope_once_in_order_both_ways_through_cuts_across_processes(
    pair: Callable[..., tuple[Live, Live]],
) -> None:
    lives = pair(grace=30, queued=4096, close_timeout=0.5)
    a, _ = lives
    proxy = Proxy(*(live.port for live in lives))
    rnd = random.Random(SEED)
    servers: dict[int, wsroom.Client] = {}

    def keep_client(index: int) -> Callable[[wsroom.JoinContext, wsroom.Client], None]:
        def keep(jc: wsroom.JoinContext, client: wsroom.Client) -> None:
            servers[index] = client
            servers[-1] = client  # the newest, wherever it is

        return keep

    for i, live in enumerate(lives):
        live.hooks.join_fn = keep_client(i)
    client = RoomClient(
        f"ws://127.0.0.1:{proxy.port}/ws/r?user=a", resume=True, min_delay=0.005, max_delay=0.05
    ).connect()
    received: list[Any] = []
    reader = gevent.spawn(lambda: received.extend(e.payload for e in client if e.type == "down"))

    def send_down(n: int) -> None:
        while True:
            try:
                a.hub.send_to("r", "a", wsroom.Envelope("down", n))
                return
            except (wsroom.RoomNotFound, wsroom.ParticipantNotFound):
                gevent.sleep(0.01)

    ups = Paced(lambda n: client.send("up", n, timeout=30))
    downs = Paced(send_down)
    kinds: dict[str, int] = {"reset": 0, "silent": 0, "server": 0}
    midstream = 0
    try:
        for _ in range(CUTS):
            for stream in (ups, downs):
                stream.allow(rnd.randint(1, 2 * TOTAL // CUTS))
            gevent.sleep(rnd.random() * 0.004)
            at = client.connections
            wait_until(lambda: client._ready and proxy.pairs, what="a resumed connection")
            midstream += 0 < len(received) < TOTAL
            pair_ = proxy.pairs[-1]
            kind = rnd.choice(list(kinds))
            kinds[kind] += 1
            if kind == "reset":
                pair_.reset()
            elif kind == "silent":
                pair_.silent = True
                client.reconnect_now()
            else:
                wait_until(
                    lambda: -1 in servers and not servers[-1]._sink.closing,
                    what="the hub's side of the connection",
                )
                servers[-1].close(4008, "cut by the test")
            wait_until(lambda: client.connections > at, what=f"a reconnect after {kind}")  # noqa: B023
        for stream in (ups, downs):
            stream.allow(TOTAL)
        wait_until(
            lambda: len(received) >= TOTAL and len(ups_seen(lives, "a")) >= TOTAL,
            timeout=60,
            what="both streams",
        )
        assert received == list(range(1, TOTAL + 1))
        for live in lives:  # each process's share in order
            share = ups_seen((live,), "a")
            assert share == sorted(share)
        assert sorted(ups_seen(lives, "a")) == list(range(1, TOTAL + 1))  # on_message once each
        assert client.gaps == []
        assert all(kinds.values()), kinds
        assert client.connections > CUTS
        assert midstream > CUTS // 2, midstream
        joins = [e for live in lives for e in live.hooks.events if e[0] == "join"]
        assert [e[2] for e in joins].count(False) == 1
        assert all(any(e[0] == "join" for e in live.hooks.events) for live in lives)
    finally:
        client.close()
        reader.kill(block=False)
        ups.greenlet.kill(block=False)
        downs.greenlet.kill(block=False)
        proxy.close()
