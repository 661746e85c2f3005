"""wsroom.js with ``resume: true`` (contract §7) in headless Chromium: the network cut under it
(the server's side of its socket shut down) in the middle of two streams, and nothing lost or
repeated either way; a gap the hub cannot fill, reported; a hub without resume, spoken to
plainly."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import e2e_support
from e2e_support import Server
from test_js_client import HUB, seen, start_page, wait_state

from wsroom.client import RoomClient

browser = e2e_support.browser
new_page = e2e_support.new_page
server = e2e_support.server


def get(hub: Server, path: str) -> Any:
    with urllib.request.urlopen(hub.url + path) as answer:
        return json.loads(answer.read())


def opens(page: Any) -> int:
    return int(page.evaluate("window.states.filter((e) => e.state === 'open').length"))


SEND_UPS = """([count]) => {
  let n = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 2 && n < count; i++) window.conn.send("up", ++n);
    if (n >= count) clearInterval(timer);
  }, 4);
}"""


def test_a_cut_network_loses_and_repeats_nothing_either_way(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB, "--queued", "2048")
    page = start_page(
        new_page, hub, "ann", resume=True, minDelay=30, maxDelay=100, bufferLimit=1000
    )
    page.wait_for_function("window.conn._ready === true")
    assert page.evaluate("window.conn._numbered") is True
    page.evaluate("window.conn.send('stream', {count: 500})")
    page.evaluate(SEND_UPS, [300])
    for k in range(1, 5):
        # A cut every hundred ticks or so, with both streams in flight.
        page.wait_for_function(
            "k => window.seen.filter((e) => e.type === 'tick').length >= k", arg=k * 100
        )
        before = opens(page)
        assert get(hub, "/cut?user=ann") is True
        page.wait_for_function(
            "n => window.states.filter((e) => e.state === 'open').length > n", arg=before
        )
    page.wait_for_function(
        "window.seen.filter((e) => e.type === 'tick').length >= 500", timeout=30_000
    )
    assert seen(page, "tick") == list(range(1, 501))
    page.wait_for_function("window.conn._pending.length === 0", timeout=30_000)
    assert get(hub, "/ups?user=ann") == list(range(1, 301))
    assert page.evaluate("window.conn.gaps") == []
    hellos = seen(page, "hello")
    assert len(hellos) == 5 and [h["reconnect"] for h in hellos] == [False] + [True] * 4


def test_a_gap_the_hub_cannot_fill_is_reported(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB, "--queued", "4")
    page = start_page(new_page, hub, "ann", resume=True, minDelay=1500, maxDelay=1500, jitter=0)
    page.evaluate(
        "() => { window.gapEvents = []; window.conn.onGap((g) => window.gapEvents.push(g)); }"
    )
    page.wait_for_function("window.conn._ready === true")
    before = opens(page)
    assert get(hub, "/cut?user=ann") is True
    wait_state(page, "reconnecting")
    page.wait_for_function(  # the hub has seen it go: ann is inside its grace period
        """async (url) => (await (await fetch(url)).json()).ann === "offline" """,
        arg=hub.url + "/members?room=r1",
    )
    bob = RoomClient(f"ws://127.0.0.1:{hub.port}/ws/r1?user=bob").connect()
    try:
        for n in range(1, 11):  # ten for a log of four: seq 5 to 10 are lost
            bob.send("shout", {"n": n})
        page.wait_for_function(
            "n => window.states.filter((e) => e.state === 'open').length > n", arg=before
        )
        page.wait_for_function("window.gapEvents.length === 1")
        assert page.evaluate("window.gapEvents[0]") == {
            "reason": "overflow",
            "lastSeq": 0,
            "firstSeq": 11,
        }
        assert page.evaluate("window.conn.gaps.length") == 1
        assert seen(page, "shout") == []  # what was before the gap went with it
        bob.send("shout", {"n": 11})
        page.wait_for_function("window.seen.some((e) => e.type === 'shout')")
        assert seen(page, "shout") == [{"n": 11}]
    finally:
        bob.close()


def test_a_hub_without_resume_is_spoken_to_plainly(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB, "--queued", "0")
    page = start_page(new_page, hub, "ann", resume=True)
    page.wait_for_function("window.seen.some((e) => e.type === 'hello')")
    assert page.evaluate("window.conn._numbered") is False
    page.evaluate("window.conn.send('echo', {n: 1})")
    page.wait_for_function("window.seen.some((e) => e.type === 'echo')")
    assert seen(page, "echo") == [{"n": 1}]
