# Everything wsroom takes from simple-websocket's private internals lives here.
# Checked against simple-websocket 1.1.0 (setup.cfg allows >=1.0,<1.2) and wsproto 1.3.2.
# What it relies on, and what would break:
# - Server.__init__ takes the keywords subprotocols, thread_class and event_class, and Base.__init__
#   answers the handshake in the constructor: it feeds the request (rebuilt from the environ) to
#   self.ws, a wsproto WSConnection, and calls self._handle_events(), whose result becomes
#   self.connected. If _handle_events were renamed or no longer called there, simple-websocket's
#   own version would answer instead: it always accepts permessage-deflate (so compression=False
#   would not hold).
# - Base.__init__ then starts its reader as thread_class(target=self._thread), renames it through
#   its .name and calls .start(). If it started its reader some other way, simple-websocket would
#   read the socket alongside wsroom's reader and steal its frames.
# - self.sock is the connection's socket, self.choose_subprotocol(request) picks the subprotocol.
# - wsproto: after the handshake, WSConnection.connection is the wsproto Connection that frames
#   and parses the rest (an attribute wsproto does not document).
# - Server.__init__ takes the environ's "werkzeug.socket" as it is (no dup()); for gevent.pywsgi it
#   digs the socket out of wsgi.input (.rfile.raw._sock) and dup()s it. request_socket() finds that
#   same socket and hands it over as "werkzeug.socket", so a connection holds one descriptor.
# tests/unit/test_private_internals.py fails, naming the library, when any of this changes.
"""simple-websocket's server, cut down to the socket and the opening handshake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gevent.event
import simple_websocket
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import Extension, PerMessageDeflate

__all__ = ["ServerSocket", "request_socket"]


def request_socket(environ: dict[str, Any]) -> Any:
    """The request's own socket (the server's, not a duplicate), or None when not found.

    Werkzeug and Gunicorn put it in the environ; gevent.pywsgi keeps it behind ``wsgi.input``,
    where simple-websocket finds it and ``dup()``s it (two descriptors per connection).
    """
    for key in ("werkzeug.socket", "gunicorn.socket"):
        if key in environ:
            return environ[key]
    if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent"):
        return None
    stream = _gevent_stream(environ)
    raw = getattr(stream, "raw", None)
    return getattr(raw, "_sock", None)


def _gevent_stream(environ: dict[str, Any]) -> Any:
    # gevent.pywsgi's Input wraps the handler's buffered reader (``rfile``) on the socket.
    stream: Any = environ.get("wsgi.input")
    if not hasattr(stream, "raw") and hasattr(stream, "rfile"):
        stream = stream.rfile
    return stream


def _release_gevent_stream(environ: dict[str, Any]) -> None:
    """Close gevent.pywsgi's reader on the socket (not the socket): while it is open, the socket's
    ``close()`` is deferred (a reader holds a reference), so the descriptor would outlive the
    connection until the handler ends. After the upgrade nothing reads the request stream again
    (the handler is told to close the connection)."""
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent"):
        stream = _gevent_stream(environ)
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class _ReaderInCaller:
    """Stands in for simple-websocket's reader thread: wsroom reads in the handler greenlet."""

    def __init__(self, target: Any = None) -> None:
        self.name = "wsroom-reader"

    def start(self) -> None:
        pass


class ServerSocket(simple_websocket.Server):  # type: ignore[misc]
    """simple-websocket's server, used for the socket and the opening handshake only.

    Every later read and write is wsroom's (``transport.connection``): whole-frame ``sendall``
    from one writer, reads in the caller's greenlet. permessage-deflate is offered only when
    ``compression`` is True, since simple-websocket always accepts it.
    """

    def __init__(
        self, environ: dict[str, Any], *, compression: bool, subprotocols: Sequence[str] = ()
    ) -> None:
        # Set first: the handshake, and so _handle_events, runs inside super().__init__().
        self._extensions: list[Extension] = [PerMessageDeflate()] if compression else []
        sock = request_socket(environ)
        if sock is not None:
            # Handed over as Werkzeug's key, which simple-websocket takes as it is: the
            # connection keeps the server's own socket (one descriptor), and whoever closes it
            # closes the very object the server will close again (a no-op), never a number a
            # newer socket may have been given meanwhile.
            _release_gevent_stream(environ)
            environ = {**environ, "werkzeug.socket": sock}
        super().__init__(
            environ,
            subprotocols=list(subprotocols),
            thread_class=_ReaderInCaller,
            event_class=gevent.event.Event,
        )

    def _handle_events(self) -> bool:
        out = b""
        for event in self.ws.events():
            if isinstance(event, Request):
                self.subprotocol = self.choose_subprotocol(event)
                out += self.ws.send(
                    AcceptConnection(subprotocol=self.subprotocol, extensions=self._extensions)
                )
        if out:
            self.sock.sendall(out)
        return True

    @property
    def protocol(self) -> Connection:
        """The wsproto connection that frames and parses everything after the handshake."""
        connection: Connection | None = self.ws.connection
        if connection is None:  # pragma: no cover - the handshake failed in __init__
            raise RuntimeError("the WebSocket handshake did not complete")
        return connection
