"""A connection's life as one explicit state, and its keep-alive rule (sans-I/O).

``Connection`` owns one ``Lifecycle`` and one ``KeepAlive`` and does the I/O they call for;
the rules themselves are plain, synchronous and unit-tested without sockets.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = ["ControlBudget", "KeepAlive", "Lifecycle", "LifecycleError", "Phase", "Tick"]


class Phase(enum.Enum):
    """Where a connection is in its life. Only forward moves are allowed (see ``_NEXT``)."""

    OPEN = "open"
    """Data flows both ways."""
    CLOSE_REQUESTED = "close requested"
    """The server asked to close: no more data goes out; the writer owes the close frame."""
    CLOSE_SENT = "close sent"
    """The close frame is written (or could not be): waiting for the peer's, or the abort."""
    ENDED = "ended"
    """The read side is over: control frames still owed are flushed, then the socket is shut."""


_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.OPEN: frozenset({Phase.CLOSE_REQUESTED, Phase.ENDED}),
    Phase.CLOSE_REQUESTED: frozenset({Phase.CLOSE_SENT, Phase.ENDED}),
    Phase.CLOSE_SENT: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}

_CLOSE_REASON_BYTES = 123  # what a close frame has room for (RFC 6455 §5.5)


class LifecycleError(RuntimeError):
    """A move the life of a connection does not allow: a bug of the caller's."""


class Lifecycle:
    """The phase of one connection, the close the server asked for, and the code to report."""

    __slots__ = ("close_request", "owes_close_frame", "phase")

    def __init__(self) -> None:
        self.phase = Phase.OPEN
        #: The code and reason of the server's own close, once one was asked for.
        self.close_request: tuple[int, str] | None = None
        #: A close was asked for and its frame is not written yet: the writer owes it, even
        #: once the read side is over (a reader that refuses a frame asks for a close and stops).
        self.owes_close_frame = False

    @property
    def is_open(self) -> bool:
        """Whether data frames may still go out."""
        return self.phase is Phase.OPEN

    def request_close(self, code: int, reason: str) -> bool:
        """The server closes with ``code``: OPEN → CLOSE_REQUESTED. False when a close is
        already under way or the connection is over (the first close wins)."""
        if self.phase is not Phase.OPEN:
            return False
        reason = reason.encode()[:_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
        self.close_request = (code, reason)
        self.owes_close_frame = True
        self._move(Phase.CLOSE_REQUESTED)
        return True

    def close_sent(self) -> None:
        """The writer wrote the close frame owed (or found the socket closing already)."""
        if not self.owes_close_frame:
            raise LifecycleError("no close frame is owed")
        self.owes_close_frame = False
        if self.phase is Phase.CLOSE_REQUESTED:
            self._move(Phase.CLOSE_SENT)

    def end(self) -> bool:
        """The read side is over, from any phase; False if it already was."""
        if self.phase is Phase.ENDED:
            return False
        self._move(Phase.ENDED)
        return True

    def outcome(self, peer_close: tuple[int, str] | None) -> tuple[int, str]:
        """The code and reason to report for the ended connection: the server's own close if it
        asked for one, else the peer's, else 1006 (no close frame at all)."""
        return self.close_request or peer_close or (1006, "")

    def _move(self, phase: Phase) -> None:
        if phase not in _NEXT[self.phase]:
            raise LifecycleError(f"a connection cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase


class Tick(enum.Enum):
    """What one keep-alive tick asks of the connection."""

    NOTHING = "nothing"
    PING = "ping"
    DEAD = "dead"


class KeepAlive:
    """Dead-peer detection, judged by time: a ping each interval, and a peer from which nothing
    at all (no frame, no byte) has come since a ping written at least half an interval ago is
    dead (so a silent peer goes after about two intervals).

    Only elapsed time counts, never the number of ticks: a loop timer that fires twice back to
    back after the loop was held up sends a ping, then judges nothing until the peer has had
    its time to answer. The peer's time starts when the ping is written, not asked for: a ping
    waiting behind a long frame to a slow reader is the server's delay, so the peer gets two
    intervals from the ask before it is judged. A reader held up by its participant (its
    inbound window full) cannot see an answer, so ticks while it is busy judge nothing.
    """

    __slots__ = ("_clock", "_ping_at", "_written", "interval", "last_received", "reader_busy")

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        #: When bytes last came from the peer (any frame, or part of one).
        self.last_received = clock()
        self._ping_at: float | None = None  # when the last ping was asked for, then written
        self._written = True  # whether it has been written
        self.reader_busy = False

    def received(self) -> None:
        """Bytes came from the peer: it is alive now."""
        self.last_received = self._clock()

    def ping_written(self) -> None:
        """The ping asked for has left: the peer's time to answer starts now."""
        if not self._written:
            self._written = True
            self._ping_at = self._clock()

    def tick(self) -> Tick:
        """The keep-alive timer fired."""
        if self.reader_busy:
            return Tick.NOTHING
        now = self._clock()
        ping_at = self._ping_at
        if ping_at is not None and self.last_received <= ping_at:
            # Unanswered so far. Half an interval, not a whole one: timer callbacks run a little
            # late or early against this clock, and a tick a whole interval on must not miss.
            wait = self.interval / 2 if self._written else 2 * self.interval
            return Tick.DEAD if now - ping_at >= wait else Tick.NOTHING
        self._ping_at = now
        self._written = False
        return Tick.PING


class ControlBudget:
    """How many pings and pongs a peer may send: a bucket of ``burst`` frames refilled at
    ``rate`` a second. Past it the peer floods (wsroom closes it with 1008): no client needs
    more, and each costs the hub a frame parsed and, for a ping, a pong written.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def spend(self) -> bool:
        """One control frame came in; False once the peer is over its budget."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - 1
        self._last = now
        self._tokens = tokens
        return tokens >= 0
