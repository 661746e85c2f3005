"""``make_handler`` (the Go ``NewHandler``), ``serve``, and the upgrade-aware gevent handler."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import gevent
import gevent.event
import gevent.monkey
import gevent.socket
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
from .admission import (
    ClientGone,
    EveryInterval,
    RequestRefused,
    ServerLimits,
    plain_response,
    read_head,
)
from .session import EXHAUSTED, EXHAUSTED_REASON

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
    "upgraded_response",
]

logger = logging.getLogger("wsroom.transport")

T = TypeVar("T")

_STATUS_TEXT = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
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


def upgraded_response(environ: Environ) -> Iterable[bytes]:
    """What a WSGI app returns once the connection it upgraded has ended: nothing to write.

    The 101 went out on the socket itself. gevent.pywsgi under ``serve`` is told by
    ``UpgradeAwareHandler`` to close the connection; gunicorn would still write a status line
    on the finished socket (and log the failure as an error), so under gunicorn the request
    ends with ``StopIteration``, which each of its workers takes as "close the connection".
    """
    if "gunicorn.socket" in environ:
        raise StopIteration
    return []


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
        return upgraded_response(environ)

    return app


# A handler used outside serve() (on a WSGIServer of one's own) applies these head limits.
_HANDLER_LIMITS = ServerLimits(max_connections=1)

_FULL_REASON = "the server is at its connection limit; try again later"
_LOG_INTERVAL = 10.0  # seconds between two log lines about the same kind of refusal
_REFUSAL_READ = 1.0  # seconds a refused connection may take to send its request head
_LINGER_BYTES = 1 << 20  # at most this much is read (and dropped) after a refusal
_ACCEPT_PAUSE = 0.1  # seconds without accepting while no descriptor is left to answer with

# The OS's close(): under gevent.monkey, os.close waits for the loop's next turn to close, and
# the reserve descriptor must be free before the accept() that follows at once.
_close_fd: Callable[[int], None] = gevent.monkey.get_original("os", "close")


class UpgradeAwareHandler(WSGIHandler):  # type: ignore[misc]
    """A pywsgi handler that bounds the request before the upgrade and closes the HTTP
    connection after it.

    The request's head must arrive within ``handshake_timeout`` (else 408), with at most
    ``max_headers`` fields in ``max_header_bytes`` (else 431): limits of the server's
    ``wsroom_limits`` when ``serve()`` made it, else the defaults. A malformed request gets 400
    with a one-line reason, and a client that hangs up mid-request is no error: both are logged
    at DEBUG only. After an upgrade the connection is closed; without that gevent would read
    the client's leftover WebSocket frames as a new HTTP request.
    """

    _head_timer: gevent.Timeout | None = None

    def _limits(self) -> ServerLimits:
        limits: ServerLimits = getattr(self.server, "wsroom_limits", None) or _HANDLER_LIMITS
        return limits

    def handle_one_request(self) -> Any:
        limits = self._limits()
        # Held by the handler only, not by a local of this frame, which lasts as long as the
        # connection: handle_one_response lets it go once the head is in (four objects fewer
        # per connection for the garbage collector).
        self._head_timer = gevent.Timeout(limits.handshake_timeout)
        self._head_timer.start()
        try:
            result = super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not self._head_timer:
                raise
            result = self._refusal(
                RequestRefused(
                    408, f"the request did not arrive within {limits.handshake_timeout:g} s"
                )
            )
        finally:
            self._drop_head_timer()
        if isinstance(result, tuple):
            # A refusal before the application ran: gevent's own (414) or ours. gevent would
            # send it unguarded; a client already gone is no error.
            status, body = result
            self.status = status
            try:
                self.socket.sendall(body)
            except OSError:
                return None
            _linger(self.socket)
            return None
        return result

    def _drop_head_timer(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None:
            timer.close()

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # gevent's name for it
        # The head is read here under the budget, then parsed by gevent's own parser.
        head = read_head(fp.readline, self._limits())
        return super().MessageClass(io.BytesIO(head), *args)

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes] | None:
        if isinstance(ex, ClientGone):
            logger.debug("%s hung up in the middle of its request", self.client_address)
            return None
        refusal = ex if isinstance(ex, RequestRefused) else RequestRefused(400, _malformed(ex))
        return self._refusal(refusal)

    def _refusal(self, refusal: RequestRefused) -> tuple[str, bytes]:
        logger.debug(
            "refused a request from %s: %d %s", self.client_address, refusal.status, refusal.reason
        )
        return str(refusal.status), plain_response(refusal.status, refusal.reason)

    def handle_one_response(self) -> None:
        # The head is in: the application's time (the resolver, the upgrade) is not bounded here.
        self._drop_head_timer()
        try:
            super().handle_one_response()
        finally:
            if self.environ is not None and self.environ.get("wsroom.upgraded"):
                self.close_connection = True


def _malformed(ex: BaseException) -> str:
    # gevent's messages quote the client's input; keep the reason one short line.
    detail = " ".join(str(getattr(ex, "formatted_message", "") or ex).split())[:160]
    return f"malformed request: {detail or type(ex).__name__}"


class _Server(WSGIServer):  # type: ignore[misc]
    """gevent's WSGI server with a connection cap and an answer for an exhausted process.

    Over ``max_connections`` a connection is answered 503 (gevent's own pool would stop
    accepting instead, leaving clients waiting in the backlog). When accept() fails for want of
    descriptors, one kept in reserve is let go to accept the waiting client and answer it 503
    (else it would wait unanswered and gevent would print a traceback per attempt). Either
    refusal is logged once per interval with a count, never a traceback per client.
    """

    def __init__(self, listener: Any, application: Any, limits: ServerLimits, **kw: Any) -> None:
        super().__init__(listener, application, **kw)
        self.wsroom_limits = limits
        self.active = 0
        self._full_log = EveryInterval(_LOG_INTERVAL)
        self._exhausted_log = EveryInterval(_LOG_INTERVAL)
        self._reserve: int | None = _open_reserve()
        self._resume: Any = None

    def handle(self, sock: Any, address: Any) -> None:
        if self.active >= self.wsroom_limits.max_connections:
            count = self._full_log.note()
            if count:
                logger.warning(
                    "connection limit (%d) reached: %d connection(s) answered 503 since the "
                    "last report",
                    self.wsroom_limits.max_connections,
                    count,
                )
            _refuse(sock, 503, _FULL_REASON)
            return
        self.active += 1
        try:
            super().handle(sock, address)
        finally:
            self.active -= 1

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
        self._shed_one()
        return None

    def _shed_one(self) -> None:
        """Out of descriptors: answer one waiting client 503 with the reserve descriptor."""
        count = self._exhausted_log.note()
        if count:
            logger.warning(
                "out of file descriptors: %d connection(s) answered 503 since the last report",
                count,
            )
        if self._reserve is None:
            self._reserve = _open_reserve()
        if self._reserve is None:
            self._pause_accepting()
            return
        _close_fd(self._reserve)
        self._reserve = None
        try:
            fd, _ = self.socket._accept()
        except OSError:
            self._reserve = _open_reserve()
            self._pause_accepting()
            return
        listener = self.socket
        sock = gevent.socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
        # Until this answer is out no descriptor is left in reserve: pause accepting meanwhile.
        self._pause_accepting()
        gevent.spawn(self._refuse_exhausted, sock)

    def _refuse_exhausted(self, sock: Any) -> None:
        try:
            _refuse(sock, 503, EXHAUSTED_REASON)
        finally:
            sock.close()
            self._reserve = _open_reserve()

    def _pause_accepting(self) -> None:
        # Public BaseServer calls: stop watching the listener, watch it again a moment later
        # (returning from do_read without accepting would only wake the loop again at once).
        self.stop_accepting()
        if self._resume is not None:
            self._resume.close()
        self._resume = self.loop.timer(_ACCEPT_PAUSE)
        self._resume.start(self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self.started:
            self.start_accepting()

    def close(self) -> None:
        super().close()
        if self._resume is not None:
            self._resume.close()
            self._resume = None
        if self._reserve is not None:
            _close_fd(self._reserve)
            self._reserve = None


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _linger(sock: Any) -> None:
    """After a refusal: stop sending, and read what the client still sends (briefly, within a
    bound) so that closing does not reset the connection before the answer is read."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    left = _LINGER_BYTES
    with gevent.Timeout(_REFUSAL_READ, False):
        while left > 0:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            left -= len(chunk)


def _refuse(sock: Any, status: int, reason: str) -> None:
    """Read the request's head (briefly, so the answer is not lost to a reset), answer
    ``status`` with ``reason``; the caller closes the socket."""
    seen = b""
    with gevent.Timeout(_REFUSAL_READ, False):
        while b"\r\n\r\n" not in seen and len(seen) < 65536:
            try:
                chunk = sock.recv(8192)
            except OSError:
                return
            if not chunk:
                break
            seen += chunk
    with gevent.Timeout(_REFUSAL_READ, False):
        try:
            sock.sendall(plain_response(status, reason))
        except OSError:
            return
    _linger(sock)


def serve(
    app: WSGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    handshake_timeout: float = 10.0,
    max_connections: int | None = None,
    max_header_bytes: int = 32768,
    max_headers: int = 100,
) -> WSGIServer:
    """Start a gevent WSGI server for ``app`` (ready to accept when this returns).

    Before the upgrade a request's head must arrive within ``handshake_timeout`` seconds (else
    408) with at most ``max_headers`` fields in ``max_header_bytes`` (else 431); at most
    ``max_connections`` connections are served at once (None: the open-file limit less 64),
    others get 503, as does a client the process has no descriptor left for.
    """
    limits = ServerLimits(
        handshake_timeout=handshake_timeout,
        max_connections=max_connections,
        max_header_bytes=max_header_bytes,
        max_headers=max_headers,
    )
    server = _Server(
        (host, port),
        app,
        limits,
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
