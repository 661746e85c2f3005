"""Rules for what a request may cost before the upgrade (sans-I/O: no socket, an injected clock).

``serve()`` and ``UpgradeAwareHandler`` (``transport/wsgi.py``) apply them: how long a request's
head may take, how large it may be, how many connections the server holds, and how often a
refusal is logged. Each refusal is a plain HTTP answer with a one-line reason.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable

__all__ = [
    "ClientGone",
    "EveryInterval",
    "RequestRefused",
    "ServerLimits",
    "default_max_connections",
    "plain_response",
    "read_head",
]

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

_PARSER_MAX_HEADERS = 100  # http.client, which parses the head for gevent, refuses more

FD_MARGIN = 64
"""Descriptors the default connection cap leaves for everything else (listener, logs, files)."""


def default_max_connections() -> int:
    """The default cap: this process's open-file limit less ``FD_MARGIN`` (at least 1), so a
    full server answers 503 before the process runs out of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - FD_MARGIN)


class ServerLimits:
    """What one connection may cost before the upgrade, and how many the server holds.

    ``handshake_timeout``: seconds from the connection's start (or its previous answer) to the
    end of the request's head; ``max_header_bytes`` and ``max_headers``: the head's size (after
    the request line, which gevent caps at 8 KiB) and its number of fields; ``max_connections``:
    connections served at once (None: ``default_max_connections()``).
    """

    __slots__ = ("handshake_timeout", "max_connections", "max_header_bytes", "max_headers")

    def __init__(
        self,
        *,
        handshake_timeout: float = 10.0,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        max_connections: int | None = None,
    ) -> None:
        if not (isinstance(handshake_timeout, (int, float)) and handshake_timeout > 0):
            raise ValueError(f"handshake_timeout must be > 0 seconds, got {handshake_timeout!r}")
        if not math.isfinite(handshake_timeout):
            raise ValueError("handshake_timeout must be finite")
        self.handshake_timeout = float(handshake_timeout)
        self.max_header_bytes = _count("max_header_bytes", max_header_bytes)
        self.max_headers = _count("max_headers", max_headers, most=_PARSER_MAX_HEADERS)
        self.max_connections = _count(
            "max_connections",
            default_max_connections() if max_connections is None else max_connections,
        )


def _count(name: str, value: int, most: int | None = None) -> int:
    """``value`` if it is an int from 1 to ``most``, else ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if most is not None and value > most:
        raise ValueError(f"{name} must be at most {most}, got {value}")
    return value


class RequestRefused(ValueError):
    """A request refused before the application ran: its HTTP status and one-line reason.

    A ``ValueError``, so gevent.pywsgi routes it to the handler's client-error path.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientGone(ValueError):
    """The client hung up in the middle of its request's head: there is no one to answer."""


def read_head(readline: Callable[[int], bytes], limits: ServerLimits) -> bytes:
    """Read a request's header lines, up to and including the blank line that ends them.

    ``readline(n)`` reads one line of at most ``n`` bytes. Raises ``RequestRefused`` (431) past
    ``max_header_bytes`` or ``max_headers``, ``ClientGone`` at end of input before the blank
    line. No line is ever read past the budget left, so a trickled head holds at most
    ``max_header_bytes``.
    """
    left = limits.max_header_bytes
    count = 0
    lines: list[bytes] = []
    while True:
        line = readline(left + 1)
        if not line:
            raise ClientGone("the client hung up in the middle of its request")
        if len(line) > left:
            raise RequestRefused(
                431, f"request headers are larger than {limits.max_header_bytes} bytes"
            )
        left -= len(line)
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)
        if not line.endswith(b"\n"):
            raise ClientGone("the client hung up in the middle of its request")
        if line[:1] not in (b" ", b"\t"):  # a continuation line is part of its field
            count += 1
            if count > limits.max_headers:
                raise RequestRefused(431, f"more than {limits.max_headers} request headers")


def plain_response(status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP/1.1 answer with a one-line text body that closes the connection."""
    body = f"{reason}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class EveryInterval:
    """Counts events and says when a summary line is due: at most once per ``interval``.

    ``note()`` returns the number of events to report (this one included) when a line is due,
    else 0; a refusal storm then costs one log line per interval, not one per client.
    """

    __slots__ = ("_clock", "_interval", "_last", "_pending")

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._pending = 0

    def note(self) -> int:
        self._pending += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return 0
        self._last = now
        count, self._pending = self._pending, 0
        return count
