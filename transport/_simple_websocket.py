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

__all__ = ["ServerSocket"]


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
