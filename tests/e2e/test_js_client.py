"""wsroom.js against a live hub: send/on, reconnect with the grace queue, offline, server gone,
final close codes, clean close, and serving the module itself."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import e2e_support
from e2e_support import Server
from playwright.sync_api import expect

from wsroom.client import RoomClient

browser = e2e_support.browser
new_page = e2e_support.new_page
server = e2e_support.server


HUB = "tests/e2e/js_hub_server.py"

SETUP = """([user, options]) => {
  window.seen = []; window.states = [];
  window.conn = window.wsroom.connect(`/ws/r1?user=${user}`, options);
  window.conn.on("*", (payload, env) => window.seen.push(env));
  window.conn.onState((e) => window.states.push(e));
}"""


def start_page(
    new_page: Callable[..., Any], hub: Server, user: str, state: str = "open", **options: Any
) -> Any:
    page = new_page()
    page.goto(hub.url + "/")
    page.wait_for_function("window.ready === true")
    page.evaluate(SETUP, [user, options])
    wait_state(page, state)
    return page


def wait_state(page: Any, state: str, timeout: float = 10_000) -> None:
    page.wait_for_function("s => window.conn.state === s", arg=state, timeout=timeout)


def seen(page: Any, type_: str) -> list[Any]:
    js = "t => window.seen.filter((e) => e.type === t).map((e) => e.payload)"
    return page.evaluate(js, type_)


def test_serves_the_module_with_a_javascript_content_type(server: Callable[..., Server]) -> None:
    hub = server(HUB)
    with urllib.request.urlopen(hub.url + "/wsroom.js") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/javascript")
        assert b"export function connect" in answer.read()


def test_send_on_and_state_events(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann")
    page.wait_for_function("window.seen.some((e) => e.type === 'hello')")
    assert seen(page, "hello") == [{"you": "ann", "reconnect": False}]
    assert page.evaluate("window.conn.send('echo', {n: 1})") is True
    page.wait_for_function("window.seen.some((e) => e.type === 'echo')")
    assert seen(page, "echo") == [{"n": 1}]
    states = page.evaluate("window.states.map((e) => e.state)")
    assert states[:2] == ["connecting", "open"], states
    # on() returns a function that removes the handler.
    page.evaluate("window.conn.on('echo', () => { window.extra = true; })()")
    page.evaluate("window.conn.send('echo', {n: 2})")
    page.wait_for_function("window.seen.filter((e) => e.type === 'echo').length === 2")
    assert page.evaluate("window.extra") is None


def test_reconnects_with_backoff_and_gets_what_was_queued_in_order_once(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann", minDelay=1500, maxDelay=1500, jitter=0)
    bob = RoomClient(f"ws://127.0.0.1:{hub.port}/ws/r1?user=bob").connect()
    try:
        page.evaluate("window.conn.send('drop')")
        wait_state(page, "reconnecting")
        event = page.evaluate("window.states.at(-1)")
        assert event["code"] == 4008 and event["delay"] == 1500, event
        for n in range(1, 6):
            bob.send("shout", {"n": n})
        # Buffered while disconnected, written on the next open.
        assert page.evaluate("window.conn.send('echo', {n: 'late'})") is False
        wait_state(page, "open")
        page.wait_for_function("window.seen.filter((e) => e.type === 'shout').length >= 5")
        page.wait_for_function("window.seen.some((e) => e.type === 'echo')")
        assert seen(page, "shout") == [{"n": n} for n in range(1, 6)]
        assert seen(page, "hello") == [
            {"you": "ann", "reconnect": False},
            {"you": "ann", "reconnect": True},
        ]
        # on_join's own send arrives before the queue's flush.
        types = page.evaluate("window.seen.map((e) => e.type)")
        assert types.index("shout") > types.index("hello", 1), types
    finally:
        bob.close()


def test_offline_then_online_reconnects_at_once(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann", minDelay=60_000, maxDelay=60_000)
    page.context.set_offline(True)
    wait_state(page, "offline")
    page.context.set_offline(False)
    wait_state(page, "open")  # without waiting out the (one minute) backoff
    page.wait_for_function("window.seen.filter((e) => e.type === 'hello').length === 2")
    assert seen(page, "hello")[1] == {"you": "ann", "reconnect": True}


def test_server_gone_then_back(server: Callable[..., Server], new_page: Callable[..., Any]) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann", minDelay=100, maxDelay=400)
    hub.kill()
    wait_state(page, "reconnecting")
    page.wait_for_function("window.conn.attempt >= 3")  # it keeps trying, backing off
    delays = page.evaluate("window.states.filter((e) => e.delay).map((e) => e.delay)")
    assert all(0 < d <= 400 for d in delays), delays
    hub.start()  # same port
    wait_state(page, "open", timeout=15_000)
    page.evaluate("window.conn.send('echo', {n: 'back'})")
    page.wait_for_function("window.seen.some((e) => e.type === 'echo')")


def test_a_final_close_code_and_a_clean_close_end_it(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann")
    # The same participant connects elsewhere: 4001 replaced is final, no fight between tabs.
    other = RoomClient(f"ws://127.0.0.1:{hub.port}/ws/r1?user=ann").connect()
    try:
        wait_state(page, "closed")
        assert page.evaluate("window.states.at(-1).code") == 4001
        assert page.evaluate("window.conn.send('echo', {})") is False
    finally:
        other.close()

    page2 = start_page(new_page, hub, "cat")
    page2.evaluate("window.conn.close()")
    wait_state(page2, "closed")
    assert page2.evaluate("window.states.at(-1).byClient") is True
    expect(page2.locator("body")).to_be_attached()


def attempts_so_far(page: Any) -> int:
    """Sockets made so far: the first (reported by onState at once), then each retry."""
    js = "window.states.filter((e) => e.connecting || e.state === 'connecting').length"
    return int(page.evaluate(js))


def test_a_refused_first_connect_is_an_error_state_with_the_status_and_no_retry(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB, "--refuse", "mallory")
    page = start_page(new_page, hub, "mallory", state="error", minDelay=50, maxDelay=50)
    event = page.evaluate("window.states.at(-1)")
    assert event["refused"] is True and event["status"] == 403, event
    assert "resolver rejected" in event["reason"], event
    tried = attempts_so_far(page)
    assert tried == 1, page.evaluate("window.states")
    page.wait_for_timeout(500)  # ten retry delays: none is taken
    assert attempts_so_far(page) == tried
    assert page.evaluate("window.conn.state") == "error"
    assert page.evaluate("window.conn.send('echo', {})") is False


def test_nobody_there_gives_up_after_a_bounded_number_of_attempts(
    new_page: Callable[..., Any], server: Callable[..., Server]
) -> None:
    hub = server(HUB)  # serves the page; the socket goes to a port where nobody listens
    page = new_page()
    page.goto(hub.url + "/")
    page.wait_for_function("window.ready === true")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    page.evaluate(
        """([port]) => {
          window.states = [];
          window.conn = window.wsroom.connect(`ws://127.0.0.1:${port}/ws/r1?user=ann`,
            { minDelay: 20, maxDelay: 40, maxFailedOpens: 3 });
          window.conn.onState((e) => window.states.push(e));
        }""",
        [dead],
    )
    wait_state(page, "error")
    event = page.evaluate("window.states.at(-1)")
    assert event["refused"] is False and "after 3 attempts" in event["reason"], event
    assert attempts_so_far(page) == 3
    page.wait_for_timeout(300)
    assert attempts_so_far(page) == 3
    # reconnect() tries again from scratch.
    page.evaluate("window.conn.reconnect()")
    page.wait_for_function("window.states.filter((e) => e.connecting).length >= 3")


def test_a_reconnect_refused_after_a_restart_stops_with_an_error_state(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann", minDelay=100, maxDelay=200)
    hub.kill()
    wait_state(page, "reconnecting")
    hub.argv = [*hub.argv, "--refuse", "ann"]  # back on the same port, with new rules
    hub.start()
    wait_state(page, "error", timeout=15_000)
    event = page.evaluate("window.states.at(-1)")
    assert event["refused"] is True and event["status"] == 403, event
    tried = attempts_so_far(page)
    page.wait_for_timeout(600)
    assert attempts_so_far(page) == tried


def test_a_refusing_close_code_is_final_and_says_refused(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    hub = server(HUB)
    page = start_page(new_page, hub, "ann")
    assert page.evaluate("window.wsroom.isRefusalCode(1008)") is True
    assert page.evaluate("window.wsroom.isRefusalCode(4403)") is True
    assert page.evaluate("window.wsroom.isRefusalCode(4008)") is False
    assert page.evaluate("window.wsroom.isRefusalCode(4001)") is False
    assert page.evaluate("window.wsroom.isFinalCode(4403)") is True
