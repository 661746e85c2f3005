"""``make_handler`` (the Go ``NewHandler``), ``serve``, and the upgrade-aware gevent handler."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import gevent
import gevent.event
from gevent.pywsgi import LoggingLogAdapter, WSGIHandler, WSGIServer

from wsroom.errors import (
    HandshakeRejected,
    HubStopped,
    MissingParticipantID,
    ResolverRejected,
    WsroomError,
)
from wsroom.types import Identity, RoomID

from ._wsgi_types import Environ, StartResponse, WSGIApp

if TYPE_CHECKING:
    from wsroom.hooks import Resolver
    from wsroom.hub import Hub

__all__ = [
    "REFUSALS",
    "UpgradeAwareHandler",
    "make_handler",
    "refusal_response",
    "run_until_signal",
    "serve",
]

logger = logging.getLogger("wsroom.transport")

T = TypeVar("T")

_STATUS_TEXT = {
    400: "Bad Request",
    403: "Forbidden",
    426: "Upgrade Required",
    503: "Service Unavailable",
}


REFUSALS = (ResolverRejected, MissingParticipantID, HandshakeRejected, HubStopped)
"""What ``hub.handle_ws`` raises to refuse an upgrade; ``refusal_response`` answers each."""


def refusal_response(exc: WsroomError) -> tuple[str, list[tuple[str, str]], bytes]:
    """The HTTP answer to a refused upgrade: status line, headers, a one-line text body.

    ``make_handler`` and the Flask ``handle`` both answer with it, so their refusals match.
    """
    extra: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, (ResolverRejected, MissingParticipantID)):
        status, text = 403, str(exc)
    elif isinstance(exc, HandshakeRejected):
        status, text, extra = exc.status, exc.reason, exc.headers
    elif isinstance(exc, HubStopped):
        status, text = 503, str(exc)
    else:
        raise exc
    body = f"{text}\n".encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    return f"{status} {_STATUS_TEXT.get(status, 'Error')}", headers, body


def _value(source: T | Callable[[Environ], T], environ: Environ) -> T:
    return source(environ) if callable(source) else source


def make_handler(
    hub: Hub,
    room: RoomID | str | Callable[[Environ], RoomID | str],
    identity: Identity | Callable[[Environ], Identity],
    resolve: Resolver,
) -> WSGIApp:
    """A WSGI app that upgrades each request and serves it as a member of ``room``.

    ``room`` and ``identity`` may be values or callables of the environ. Refusals are plain
    HTTP answers with a one-line body: 403 (resolver), 400 / 426 / 403 (handshake), 503 (stopped).
    """

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            hub.handle_ws(environ, _value(room, environ), _value(identity, environ), resolve)
        except REFUSALS as exc:
            status, headers, body = refusal_response(exc)
            start_response(status, headers)
            return [body]
        # The 101 went out on the socket itself; the server must write nothing more.
        return []

    return app


class UpgradeAwareHandler(WSGIHandler):  # type: ignore[misc]
    """A pywsgi handler that closes the HTTP connection after an upgrade.

    Without it gevent reads the client's leftover WebSocket frames as a new HTTP request.
    """

    def handle_one_response(self) -> None:
        try:
            super().handle_one_response()
        finally:
            if self.environ is not None and self.environ.get("wsroom.upgraded"):
                self.close_connection = True


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """Start a gevent WSGI server for ``app`` (ready to accept when this returns)."""
    server = WSGIServer(
        (host, port),
        app,
        handler_class=UpgradeAwareHandler,
        log=LoggingLogAdapter(logging.getLogger("wsroom.transport.access"), logging.DEBUG),
        error_log=LoggingLogAdapter(logging.getLogger("wsroom.transport"), logging.ERROR),
    )
    server.start()
    return server


def run_until_signal(
    server: WSGIServer,
    hub: Hub,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    timeout: float = 5.0,
) -> int:
    """Block until one of ``signals`` arrives, then stop the hub (every connection closed with
    1001, ``on_leave(..., HubStopped())`` per member) and the server; return the signal.

    The usual end of a program's main(): ``run_until_signal(serve(app), hub)``.
    """
    received = gevent.event.AsyncResult()
    handlers = [gevent.signal_handler(signum, received.set, signum) for signum in signals]
    try:
        signum: int = received.get()
    finally:
        for handler in handlers:
            handler.cancel()
    logger.info("signal %d: stopping the hub and the server", signum)
    try:
        hub.stop(timeout=timeout)
    except Exception:  # whatever happened, the server must stop too
        logger.exception("the hub failed to stop; stopping the server anyway")
    finally:
        server.stop(timeout=timeout)
    return signum
