"""One hub process for the cross-process tests, run as a script (never imported by them).

    python node.py [--backplane URL] --grace G --queued Q [--dead-after S] [--heartbeat S]
                   [--backplane-timeout S]

It prints ``PORT <n>`` as its first line of standard output once it serves, and nothing else
there (logs go to standard error). One gevent server carries both:

- ``/ws/<room>?user=<pid>``: the hub (the participant id is the user);
- ``GET /events``: the hook events recorded so far, as a JSON list;
- ``POST /call`` with ``{"method": ..., "args": [...], "kwargs": {...}}``: a hub call, answered
  ``{"ok": <result>}`` or ``{"error": "<ExceptionClassName>", "detail": "<str>"}``.

Inbound envelopes drive hub calls from inside ``on_message`` (``bcast``, ``to``, ``echo``), so the
tests also see what a hook's own calls do across processes. SIGTERM stops the hub and exits 0.
Without ``--backplane`` it is a plain single-process hub, which is how the harness is checked.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import enum  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import make_handler, serve  # noqa: E402

Event = list[Any]


class NodeHooks:
    """Records every hook call as a JSON-able event; some inbound types make hub calls."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.hub: wsroom.Hub | None = None

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        self.events.append(["join", jc.room, jc.participant, jc.reconnect])
        # Sent inside on_join: it must arrive before anything queued during the grace period,
        # and it tells a client its join is under way without asking the hub.
        client.send(wsroom.Envelope("hello", {"reconnect": jc.reconnect}))

    def on_message(self, room: str, participant: str, envelope: wsroom.Envelope) -> None:
        self.events.append(["message", room, participant, envelope.type, envelope.payload])
        hub = self.hub
        assert hub is not None
        try:
            if envelope.type == "bcast":
                hub.broadcast(room, wsroom.Envelope("b", envelope.payload), exclude=[participant])
            elif envelope.type == "to":
                target = envelope.payload["to"]
                hub.send_to(room, target, wsroom.Envelope("t", envelope.payload.get("data")))
            elif envelope.type == "echo":
                hub.send_to(room, participant, wsroom.Envelope("echo", envelope.payload))
        except Exception as exc:  # noqa: BLE001 -- recorded for the test to assert on
            self.events.append(["error", room, participant, type(exc).__name__])

    def on_leave(self, room: str, participant: str, reason: BaseException) -> None:
        cause = reason.__cause__
        self.events.append(
            [
                "leave",
                room,
                participant,
                type(reason).__name__,
                None if cause is None else type(cause).__name__,
            ]
        )

    def on_presence(self, room: str, participant: str, presence: wsroom.Presence) -> None:
        self.events.append(["presence", room, participant, presence.name])


def to_json(value: Any) -> Any:
    """A hub result as JSON: enums by name, a BroadcastReport as a dict, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, wsroom.BroadcastReport):
        return {"sent": value.sent, "queued": value.queued, "dropped": list(value.dropped)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """An argument from JSON: ``{"type": ..., "payload": ...}`` becomes an Envelope."""
    if isinstance(value, dict) and "type" in value and set(value) <= {"type", "payload"}:
        return wsroom.Envelope(value["type"], value.get("payload"))
    return value


def identity_from_query(environ: dict[str, Any]) -> wsroom.Identity:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return wsroom.Identity(query.get("user", [""])[0], query.get("session", [""])[0])


def room_from_path(environ: dict[str, Any]) -> str:
    return str(environ.get("PATH_INFO", "/ws/lobby")).rsplit("/", 1)[-1] or "lobby"


def resolve_user(room: str, identity: wsroom.Identity) -> str:
    return identity.user_id


def make_app(hub: wsroom.Hub, hooks: NodeHooks) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: WebSocket upgrades under /ws/, the control API beside them."""
    ws_app = make_handler(hub, room_from_path, identity_from_query, resolve_user)
    calls: dict[str, Callable[..., Any]] = {
        "send_to": hub.send_to,
        "broadcast": hub.broadcast,
        "close_room": hub.close_room,
        "rooms": hub.rooms,
        "members": hub.members,
        "stop": hub.stop,
    }

    def answer(start_response: Any, status: str, body: Any) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/ws/"):
            return ws_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/events" and method == "GET":
            return answer(start_response, "200 OK", list(hooks.events))
        if path == "/call" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            call = calls.get(request.get("method", ""))
            if call is None:
                return answer(start_response, "400 Bad Request", {"error": "no such method"})
            args = [from_json(a) for a in request.get("args", [])]
            kwargs = {k: from_json(v) for k, v in request.get("kwargs", {}).items()}
            try:
                result = call(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- every error is an answer to the test
                return answer(
                    start_response, "200 OK", {"error": type(exc).__name__, "detail": str(exc)}
                )
            return answer(start_response, "200 OK", {"ok": to_json(result)})
        return answer(start_response, "404 Not Found", {"error": "not found"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backplane", default=None, help="redis://host:port/db; none: one process")
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--queued", type=int, required=True)
    parser.add_argument("--dead-after", type=float, default=None)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--backplane-timeout", type=float, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )

    options: dict[str, Any] = {}
    if args.backplane is not None:
        options["backplane"] = args.backplane
    for name, value in (
        ("heartbeat_interval", args.heartbeat),
        ("dead_after", args.dead_after),
        ("backplane_timeout", args.backplane_timeout),
    ):
        if value is not None:
            options[name] = value

    hooks = NodeHooks()
    hub = wsroom.new_hub(hooks, wsroom.ReconnectPolicy(args.grace, args.queued), **options)
    hooks.hub = hub
    server = serve(make_app(hub, hooks), port=args.port)
    stopping = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    print(f"PORT {server.server_port}", flush=True)
    stopping.wait()
    hub.stop()
    server.stop(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
