"""The opening handshake: refusals as plain HTTP answers, the origin rule, handle_ws's errors.

Each refusal is checked over a raw HTTP connection against both front ends: ``make_handler``
and ``wsroom.transport.flask.handle`` inside a Flask view declared ``websocket=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
import websocket
from conftest import Live, Recorder, identity_from_query, recv_json, send_json, wait_until
from transport_util import http_get, upgrade_headers

import wsroom
from wsroom.transport import serve
from wsroom.transport.flask import handle


def resolve_or_reject(room: str, identity: wsroom.Identity) -> str:
    """Like the usual resolver, but ``mallory`` makes it raise."""
    if identity.user_id == "mallory":
        raise PermissionError("mallory is banned")
    return identity.user_id


def _flask_live(grace: float, queued: int, **options: Any) -> Live:
    hooks = Recorder()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(grace, queued), **options)
    app = flask.Flask("wsroom-test")

    @app.route("/ws/<room>", websocket=True)
    def ws(room: str) -> flask.Response:
        return handle(hub, room, identity_from_query(flask.request.environ), resolve_or_reject)

    return Live(hub, hooks, serve(app, port=0))


@pytest.fixture(params=["make_handler", "flask"])
def front(request: pytest.FixtureRequest, make_live: Callable[..., Live]) -> Iterator[Any]:
    """Start a hub behind one of the two front ends: ``front(**new_hub_options) -> Live``."""
    started: list[Live] = []

    def start(grace: float = 0.0, queued: int = 0, **options: Any) -> Live:
        if request.param == "make_handler":
            return make_live(grace=grace, queued=queued, resolve=resolve_or_reject, **options)
        live = _flask_live(grace, queued, **options)
        started.append(live)
        return live

    start.kind = request.param  # type: ignore[attr-defined]
    yield start
    for live in started:
        for ws in live.clients:
            try:
                ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001 -- already closed by the test
                pass
        live.hub.stop()
        live.server.stop(timeout=1)


def assert_one_line(body: str, *words: str) -> None:
    """A refusal's body: one line of text that names the reason."""
    assert body.endswith("\n"), body
    line = body[:-1]
    assert line and "\n" not in line and "<" not in line, f"not one line of text: {body!r}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"


# -- refusals -----------------------------------------------------------------------------


def test_resolver_raising_is_403(front: Any) -> None:
    live = front()
    answer = http_get(live.port, "/ws/lobby?user=mallory", upgrade_headers(live.port))
    assert answer.status == 403, answer
    assert answer.headers["content-type"].startswith("text/plain")
    assert_one_line(answer.body, "resolver rejected")
    assert "lobby" not in _rooms(live)


def test_resolver_returning_empty_id_is_403(front: Any) -> None:
    live = front()
    answer = http_get(live.port, "/ws/lobby?user=", upgrade_headers(live.port))
    assert answer.status == 403, answer
    assert_one_line(answer.body, "empty participant id")


def test_plain_get_is_400(front: Any) -> None:
    live = front()
    answer = http_get(live.port, "/ws/lobby?user=alice")
    assert answer.status == 400, answer
    if front.kind == "make_handler":
        # Under Flask, Werkzeug's router itself refuses a non-upgrade to a websocket=True route,
        # with its own HTML page, before the view (and wsroom) runs.
        assert_one_line(answer.body, "upgrade")
    assert live.hooks.joins == []


def test_upgrade_without_connection_upgrade_is_400(front: Any) -> None:
    live = front()
    answer = http_get(
        live.port, "/ws/lobby?user=alice", upgrade_headers(live.port, Connection="keep-alive")
    )
    assert answer.status == 400, answer


def test_upgrade_with_bad_key_is_400(make_live: Callable[..., Live]) -> None:
    live = make_live()
    headers = upgrade_headers(live.port, **{"Sec-WebSocket-Key": "not-a-key"})
    answer = http_get(live.port, "/ws/lobby?user=alice", headers)
    assert answer.status == 400, answer
    assert_one_line(answer.body, "Sec-WebSocket-Key")


@pytest.mark.parametrize("version", ["8", "14", ""])
def test_bad_or_missing_version_is_426(front: Any, version: str) -> None:
    live = front()
    headers = upgrade_headers(live.port, **{"Sec-WebSocket-Version": version})
    assert ("Sec-WebSocket-Version" in headers) == bool(version)
    answer = http_get(live.port, "/ws/lobby?user=alice", headers)
    assert answer.status == 426, answer
    assert answer.headers.get("sec-websocket-version") == "13", answer
    assert_one_line(answer.body, "version")
    assert live.hooks.joins == []


def test_origin_not_matching_host_is_403(front: Any) -> None:
    live = front()
    headers = upgrade_headers(live.port, Origin="http://evil.com")
    answer = http_get(live.port, "/ws/lobby?user=alice", headers)
    assert answer.status == 403, answer
    assert_one_line(answer.body, "origin")


def test_origin_matching_host_is_accepted(front: Any) -> None:
    live = front()
    headers = upgrade_headers(live.port, Origin=f"http://127.0.0.1:{live.port}")
    answer = http_get(live.port, "/ws/lobby?user=alice", headers)
    assert answer.status == 101, answer
    assert answer.headers["upgrade"].lower() == "websocket"


def test_no_origin_header_is_accepted(front: Any) -> None:
    live = front()
    ws = live.join("lobby", "alice", suppress_origin=True)
    assert ws.getstatus() == 101
    send_json(ws, "hello", 1)
    wait_until(lambda: live.hooks.messages, what="the message")


def test_allowed_origins_pattern_accepts_a_subdomain(front: Any) -> None:
    live = front(allowed_origins=["https://*.example.com"])
    ws = live.join("lobby", "alice", origin="https://a.example.com")
    assert ws.getstatus() == 101


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.com",
        "http://a.example.com",  # scheme is part of the pattern
        "https://a.example.com.evil.com",
        "https://example.com",
        "same-host",  # a pattern list replaces the same-host default
    ],
)
def test_allowed_origins_pattern_refuses_others(front: Any, origin: str) -> None:
    live = front(allowed_origins=["https://*.example.com"])
    if origin == "same-host":
        origin = f"http://127.0.0.1:{live.port}"
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port, Origin=origin))
    assert answer.status == 403, (origin, answer)
    assert_one_line(answer.body, "origin")


def test_allowed_origins_star_allows_every_origin(front: Any) -> None:
    live = front(allowed_origins=["*"])
    for i, origin in enumerate(["https://evil.com", "null", "http://localhost:1"]):
        answer = http_get(
            live.port, f"/ws/lobby?user=u{i}", upgrade_headers(live.port, Origin=origin)
        )
        assert answer.status == 101, (origin, answer)


def test_allowed_origins_no_origin_header_is_accepted(front: Any) -> None:
    live = front(allowed_origins=["https://*.example.com"])
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port))
    assert answer.status == 101, answer


def test_stopped_hub_refuses(front: Any) -> None:
    live = front()
    live.hub.stop()
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port))
    assert answer.status == 503, answer
    assert_one_line(answer.body, "hub stopped")


def test_refused_request_then_accepted_one_on_the_same_server(front: Any) -> None:
    live = front()
    assert http_get(live.port, "/ws/lobby?user=", upgrade_headers(live.port)).status == 403
    ws = live.join("lobby", "alice")
    live.hub.send_to("lobby", "alice", wsroom.Envelope("hi", 1))
    assert recv_json(ws) == {"type": "hi", "payload": 1}


def _rooms(live: Live) -> list[str]:
    return list(live.hub.rooms())


# -- what hub.handle_ws raises ------------------------------------------------------------


class Raised:
    """A WSGI app calling ``hub.handle_ws`` directly and recording what it raised."""

    def __init__(self, hub: wsroom.Hub, resolve: Callable[[str, wsroom.Identity], str]) -> None:
        self.hub = hub
        self.resolve = resolve
        self.errors: list[BaseException] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            self.hub.handle_ws(environ, "lobby", identity_from_query(environ), self.resolve)
        except Exception as exc:  # noqa: BLE001 -- recorded for the test to check
            self.errors.append(exc)
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return []
        return []


@pytest.fixture
def raw_hub() -> Iterator[Callable[..., tuple[Raised, int]]]:
    hubs: list[tuple[wsroom.Hub, Any]] = []

    def start(
        resolve: Callable[[str, wsroom.Identity], str] = resolve_or_reject, **options: Any
    ) -> tuple[Raised, int]:
        hub = wsroom.new_hub(Recorder(), wsroom.ReconnectPolicy(0, 0), **options)
        app = Raised(hub, resolve)
        server = serve(app, port=0)
        hubs.append((hub, server))
        return app, server.server_port

    yield start
    for hub, server in hubs:
        hub.stop()
        server.stop(timeout=1)


def test_handle_ws_raises_resolver_rejected_chained_to_the_resolvers_error(raw_hub: Any) -> None:
    boom = LookupError("no such token")

    def resolve(room: str, identity: wsroom.Identity) -> str:
        raise boom

    app, port = raw_hub(resolve)
    assert http_get(port, "/ws/lobby?user=alice", upgrade_headers(port)).status == 500
    [exc] = app.errors
    assert type(exc) is wsroom.ResolverRejected
    assert isinstance(exc, wsroom.WsroomError)
    assert str(exc) == "wsroom: resolver rejected participant"
    assert exc.__cause__ is boom


def test_handle_ws_raises_missing_participant_id(raw_hub: Any) -> None:
    app, port = raw_hub()
    assert http_get(port, "/ws/lobby?user=", upgrade_headers(port)).status == 500
    [exc] = app.errors
    assert type(exc) is wsroom.MissingParticipantID
    assert str(exc) == "wsroom: empty participant id"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"Sec-WebSocket-Version": "7"}, 426),
        ({"Origin": "http://evil.com"}, 403),
    ],
    ids=["not-an-upgrade", "bad-version", "bad-origin"],
)
def test_handle_ws_raises_handshake_rejected(
    raw_hub: Any, headers: dict[str, str], status: int
) -> None:
    app, port = raw_hub()
    sent = upgrade_headers(port, **headers) if headers else {"Host": f"127.0.0.1:{port}"}
    assert http_get(port, "/ws/lobby?user=alice", sent).status == 500
    [exc] = app.errors
    assert type(exc) is wsroom.HandshakeRejected
    assert isinstance(exc, wsroom.WsroomError)
    assert exc.status == status


def test_handle_ws_raises_hub_stopped(raw_hub: Any) -> None:
    app, port = raw_hub()
    app.hub.stop()
    assert http_get(port, "/ws/lobby?user=alice", upgrade_headers(port)).status == 500
    [exc] = app.errors
    assert isinstance(exc, wsroom.HubStopped)


def test_handle_ws_returns_none_once_the_connection_ended(raw_hub: Any) -> None:
    app, port = raw_hub()
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/lobby?user=alice", timeout=5)
    wait_until(lambda: "lobby" in app.hub.rooms(), what="the join")
    ws.close()
    wait_until(lambda: "lobby" not in app.hub.rooms(), what="the leave")
    assert app.errors == []


# -- the scheme, the host rule (DNS rebinding) ---------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    ["https://127.0.0.1:{port}", "chrome-extension://127.0.0.1:{port}", "ws://127.0.0.1:{port}"],
)
def test_an_origin_with_another_scheme_is_403(front: Any, origin: str) -> None:
    live = front()
    origin = origin.format(port=live.port)
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port, Origin=origin))
    assert answer.status == 403, (origin, answer)
    assert_one_line(answer.body, "origin")


def test_a_dns_rebinding_page_is_refused_on_loopback(front: Any) -> None:
    live = front()
    headers = upgrade_headers(live.port, Host="evil.test", Origin="http://evil.test")
    answer = http_get(live.port, "/ws/lobby?user=alice", headers)
    assert answer.status == 400, answer
    assert answer.body == "host evil.test is not allowed (see allowed_hosts)\n"
    assert live.hooks.joins == []


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "LocalHost"])
def test_loopback_names_are_allowed_on_loopback(front: Any, host: str) -> None:
    live = front()
    host = host.format(port=live.port)
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port, Host=host))
    assert answer.status == 101, (host, answer)


def test_allowed_hosts_replaces_the_default(front: Any) -> None:
    live = front(allowed_hosts=["chat.example.com"])
    ok = upgrade_headers(live.port, Host="chat.example.com", Origin="http://chat.example.com")
    assert http_get(live.port, "/ws/lobby?user=alice", ok).status == 101
    local = upgrade_headers(live.port)  # 127.0.0.1 is no longer in the list
    answer = http_get(live.port, "/ws/lobby?user=bob", local)
    assert answer.status == 400, answer
    assert_one_line(answer.body, "allowed_hosts")


def test_a_tls_proxy_forwarding_https_is_trusted_only_when_told(front: Any) -> None:
    headers = upgrade_headers(
        0, Host="chat.example.com", Origin="https://chat.example.com", X_Forwarded_Proto="https"
    )
    plain = front(allowed_hosts=["chat.example.com"])
    assert http_get(plain.port, "/ws/lobby?user=alice", headers).status == 403
    proxied = front(allowed_hosts=["chat.example.com"], trust_forwarded_proto=True)
    assert http_get(proxied.port, "/ws/lobby?user=alice", headers).status == 101
