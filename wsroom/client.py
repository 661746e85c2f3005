"""A synchronous Python client for a wsroom hub: for bots, scripts and tests.

Needs the ``client`` extra (``pip install "wsroom[client]"``, which brings ``websocket-client``);
``import wsroom`` never imports this module.

    from wsroom.client import connect

    with connect("ws://127.0.0.1:8080/ws/lobby?user=bot") as client:
        client.send("chat", {"text": "hello"})
        for envelope in client:          # until the connection is closed for good
            handle(envelope.type, envelope.payload)

One background thread per client reads frames and reconnects after a drop, with exponential
backoff and jitter, unless the server's close code says not to (see ``FINAL_CODES``). It works
in a plain threaded program and in a gevent program alike: after ``gevent.monkey.patch_all()``
the thread is a greenlet and every wait is cooperative.

Failures, and what ``connect()`` does with each:

- the server answers the handshake with a 4xx (403 from a resolver that refused, 400, 426):
  ``ConnectRefused(status, reason)`` at once, and no retry, on a first connect as on a reconnect
  (retrying would get the same answer);
- nobody answers, or a 5xx (a server starting, restarting or full): retried with backoff until
  ``connect(timeout)`` runs out, then ``ConnectTimeout``; an established client keeps retrying;
- a failed ``connect()`` stops its thread before it raises: nothing is left running.

Resume without loss (contract §7): ``RoomClient(url, resume=True)`` offers the subprotocol
``wsroom.resume.1``. When the hub takes it, the client does the rest by itself: it acknowledges
what it receives (in batches), asks to resume after every reconnect and drops what it already
has, numbers what it sends and sends again what the hub had not acknowledged, so every envelope
arrives once, in order, in both directions, across drops inside the grace period. When the hub
cannot fill a gap (its log overflowed, the grace period expired) the client says so: a ``Gap``
in ``client.gaps`` and to ``on_gap``. A hub that does not offer it is spoken to as before.
A process that must survive its own death persists what it received and sent, acknowledges
by hand (``auto_ack=False``, ``ack(seq)``) and starts again with ``resume=ResumeState(...)``.
"""

from __future__ import annotations

import enum
import json
import logging
import queue
import random
import select
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import websocket

from .envelope import Envelope
from .wire import PLAIN_PROTOCOL, RESUME_PROTOCOL

__all__ = [
    "FINAL_CODES",
    "ClientClosed",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionState",
    "Gap",
    "ResumeState",
    "RoomClient",
    "connect",
    "is_final_code",
]

logger = logging.getLogger("wsroom.client")

FINAL_CODES = frozenset({1000, 1003, 1008, 1009, 4000, 4001})
"""Close codes after which reconnecting would not help: a normal close asked for by the server,
binary frame, join refused, message too big, room closed, replaced by a newer connection."""


def is_final_code(code: int) -> bool:
    """Whether a close code from the server ends the client for good (4xxx but 4008 too)."""
    return code in FINAL_CODES or (4000 <= code <= 4999 and code != 4008)


class ConnectionState(enum.Enum):
    """Where a client is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class ClientClosed(Exception):
    """The client is closed for good (by ``close()``, a final close code, or no reconnect)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"wsroom client closed ({code} {reason})".rstrip())
        self.code = code
        self.reason = reason


class ConnectRefused(ClientClosed):
    """The server refused the WebSocket handshake with an HTTP 4xx; retrying would not help.

    ``status`` is the HTTP status, ``reason`` the one line the server gave (its body, or the
    status text). As a ``ClientClosed`` its ``code`` is 1006: no socket was ever open.
    """

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(1006, reason)
        self.status = status
        self.args = (f"wsroom: connection refused: HTTP {status} {reason}".rstrip(),)


class ConnectTimeout(TimeoutError):
    """No connection could be opened within the timeout (no server, or it kept failing)."""

    def __init__(self, url: str, timeout: float | None, last_error: str) -> None:
        super().__init__(f"wsroom: could not connect to {url} within {timeout}s ({last_error})")
        self.url = url
        self.last_error = last_error


@dataclass(frozen=True)
class Gap:
    """Envelopes from the hub that are lost (resume connections only): the client had everything
    up to ``last_seq`` and gets ``first_seq`` next. ``reason`` is the hub's (``overflow``: its
    log was full; ``expired``: the grace period ran out; ``unknown``: it has no record), or
    ``missing`` when a numbered envelope skipped some, or ``not offered`` when a reconnect
    reached a hub that no longer numbers (``first_seq`` 0)."""

    reason: str
    last_seq: int
    first_seq: int


@dataclass(frozen=True)
class ResumeState:
    """Where a resume membership stands, to start a client where another one (a process that
    died) stopped: ``last_seq``, the last envelope from the hub it has for good; ``next_cseq``,
    the number its next envelope takes; ``pending``, its envelopes ``(cseq, type, payload)`` the
    hub may not have (those it has are dropped on the hub's word, not sent twice)."""

    last_seq: int = 0
    next_cseq: int = 1
    pending: Sequence[tuple[int, str, Any]] = ()


@dataclass
class _Pending:
    cseq: int
    type: str
    payload: Any
    text: str


def _numbered_text(cseq: int, type: str, payload: Any) -> str:
    return json.dumps({"type": type, "payload": payload, "cseq": cseq}, separators=(",", ":"))


class _End:
    """The marker queued after the last envelope of a closed client."""


_END = _End()

StateCallback = Callable[[ConnectionState, "RoomClient"], None]
GapCallback = Callable[[Gap, "RoomClient"], None]


class RoomClient:
    """One logical connection to a hub, surviving drops. Thread-safe.

    ``url`` is a string or a callable returning one (called before every attempt).
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        reconnect: bool = True,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        max_attempts: int | None = None,
        connect_timeout: float = 10.0,
        header: Mapping[str, str] | Sequence[str] | None = None,
        subprotocols: Sequence[str] | None = None,
        should_reconnect: Callable[[int], bool] | None = None,
        on_state: StateCallback | None = None,
        resume: bool | ResumeState = False,
        on_gap: GapCallback | None = None,
        auto_ack: bool = True,
        ack_every: int = 16,
        ack_delay: float = 0.5,
        max_pending: int = 1024,
    ) -> None:
        """``resume``, ``on_gap``, ``auto_ack``, ``ack_every``, ``ack_delay`` (seconds) and
        ``max_pending`` are for resume connections: see the module's docstring. ``send()``
        waits while ``max_pending`` envelopes are not yet acknowledged."""
        if min_delay < 0 or max_delay < min_delay or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 <= min_delay <= max_delay, factor >= 1, 0 <= jitter <= 1")
        if ack_every < 1 or ack_delay < 0 or max_pending < 1:
            raise ValueError("need ack_every >= 1, ack_delay >= 0, max_pending >= 1")
        self.url = url
        self.reconnect = reconnect
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.factor = factor
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.header = header
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.should_reconnect = should_reconnect or (lambda code: not is_final_code(code))
        self.on_state = on_state
        #: How many times a socket has opened (1 after the first connect; +1 per reconnect).
        self.connections = 0
        #: Failed attempts since the last open.
        self.attempt = 0
        #: ``(code, reason)`` of the last socket that ended, or None.
        self.last_close: tuple[int, str] | None = None
        self._state = ConnectionState.CONNECTING
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # A numbered envelope waits with its seq, for taken_seq.
        self._inbox: queue.Queue[Envelope | tuple[Envelope, int] | _End] = queue.Queue()
        self._ws: Any = None
        self._thread: threading.Thread | None = None
        self._final: ClientClosed | None = None
        self._deadline: float | None = None  # of the first connect: bounds each attempt
        self._last_error = "no attempt yet"
        # Resume without loss (contract §7).
        self.resume = bool(resume)
        self.on_gap = on_gap
        self.auto_ack = auto_ack
        self.ack_every = ack_every
        self.ack_delay = ack_delay
        self.max_pending = max_pending
        #: The gaps the hub reported (or a skipped seq showed), oldest first.
        self.gaps: list[Gap] = []
        #: The ``seq`` of the numbered envelope ``recv()`` returned last (0: none).
        self.taken_seq = 0
        start = resume if isinstance(resume, ResumeState) else ResumeState()
        # Whether a connection resumes (a membership numbered before, here or in the process
        # that saved the state) or starts afresh (this client's first).
        self._resumes = isinstance(resume, ResumeState)
        self._numbered = False  # this membership numbers its envelopes (the hub took it)
        self._ready = False  # the current socket may carry numbered envelopes (resume answered)
        self._numbered_ws: Any = None  # the socket that negotiated it
        self._received = start.last_seq  # the last seq put in the inbox
        self._done = start.last_seq  # the last seq acknowledged (or to be)
        self._ack_sent = start.last_seq
        self._next_cseq = start.next_cseq
        self._pending: deque[_Pending] = deque(
            _Pending(c, t, p, _numbered_text(c, t, p)) for c, t, p in start.pending
        )
        self._send_lock = threading.Lock()  # numbering and writing, in one order

    # -- life ---------------------------------------------------------------------------

    def connect(self, timeout: float | None = 10.0) -> RoomClient:
        """Start the client and wait until its first socket is open (up to ``timeout``).

        Raises ``ConnectRefused`` at once on an HTTP 4xx, ``ConnectTimeout`` (a
        ``TimeoutError``) when nothing opened in time, ``ClientClosed`` when it gave up
        otherwise (``reconnect=False`` and the first attempt failed, or a final close code).
        On any failure the client is closed and its thread has ended.
        """
        if self._thread is None:
            if timeout is not None:
                self._deadline = time.monotonic() + timeout
            self._thread = threading.Thread(target=self._run, name="wsroom-client", daemon=True)
            self._thread.start()
        try:
            self.wait_state(ConnectionState.OPEN, timeout)
        except TimeoutError:
            self.close()
            raise ConnectTimeout(self._url_text(), timeout, self._last_error) from None
        except ClientClosed:
            self.close()  # the thread has finished its work: wait for it to end
            raise
        finally:
            self._deadline = None
        return self

    def close(self, code: int = 1000, reason: str = "", timeout: float = 2.0) -> None:
        """Close for good: send a close frame, stop reconnecting, wait for the reader to end."""
        with self._cond:
            if self._stop.is_set():
                ws = None  # already ending (a final code, a refusal): only wait for the thread
            else:
                self._stop.set()
                self._final = ClientClosed(code, reason)
                ws = self._ws
        if ws is not None:
            try:
                ws.send_close(code, reason.encode())
            except (OSError, websocket.WebSocketException):
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive() and ws is not None:
                _shutdown(ws)  # the server never answered the close
                thread.join(timeout)
        else:
            self._finish()

    def __enter__(self) -> RoomClient:
        return self if self._thread is not None else self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is ConnectionState.OPEN

    @property
    def ended(self) -> ClientClosed | None:
        """Why the client ended (``ConnectRefused`` for a refused reconnect), or None."""
        with self._cond:
            return self._final if self._state is ConnectionState.CLOSED else None

    def wait_state(self, state: ConnectionState, timeout: float | None = 10.0) -> None:
        """Wait until the client is in ``state``; ``ClientClosed`` if it closes first."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._state is state or self._state is ConnectionState.CLOSED, timeout
            )
            if self._state is state:
                return
            if not ok:
                raise TimeoutError(f"client not {state.value} within {timeout}s")
            raise self._final or ClientClosed(1006)

    def wait_reconnected(self, after: int, timeout: float | None = 10.0) -> None:
        """Wait until the socket has opened more than ``after`` times and is open."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    (self.connections > after and self._state is ConnectionState.OPEN)
                    or self._state is ConnectionState.CLOSED
                ),
                timeout,
            )
            if self._state is ConnectionState.CLOSED:
                raise self._final or ClientClosed(1006)
            if not ok:
                raise TimeoutError(f"no reconnect within {timeout}s")

    @property
    def numbered(self) -> bool:
        """Whether the hub took the resume subprotocol: envelopes are numbered both ways."""
        return self._numbered

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the last numbered envelope received (0: none yet)."""
        return self._received

    def resume_state(self) -> ResumeState:
        """Where this membership stands, for a client that takes over (``resume=``)."""
        with self._cond:
            pending = tuple((p.cseq, p.type, p.payload) for p in self._pending)
            return ResumeState(self._done, self._next_cseq, pending)

    def ack(self, seq: int | None = None) -> None:
        """With ``auto_ack=False``: the application has every envelope up to ``seq`` (default:
        ``taken_seq``, the one ``recv()`` returned last) for good; the hub may let them go
        (acknowledged in batches, like automatic acks)."""
        if seq is None:
            seq = self.taken_seq
        with self._cond:
            if seq > self._done:
                self._done = min(seq, self._received)
        if self._done - self._ack_sent >= self.ack_every:
            self._send_ack()

    def reconnect_now(self) -> None:
        """Drop the current socket now and connect again (after a network change, or when the
        application's own heartbeat says the socket went silent)."""
        with self._cond:
            ws = self._ws
        if ws is not None:
            _shutdown(ws)

    # -- traffic --------------------------------------------------------------------------

    def send(self, type: str, payload: Any = None, timeout: float | None = 10.0) -> None:
        """Send one envelope; while reconnecting, wait up to ``timeout`` for the socket.

        On a resume connection it is numbered and kept until the hub acknowledges it, so it is
        written when the socket is back (then it waits only while ``max_pending`` are kept)."""
        if not isinstance(type, str) or not type:
            raise ValueError("type must be a non-empty string")
        text = json.dumps({"type": type, "payload": payload}, separators=(",", ":"))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._state is ConnectionState.CLOSED:
                    raise self._final or ClientClosed(1006)
                numbered = self._numbered
                if numbered:
                    ws = None
                    room = len(self._pending) < self.max_pending
                else:
                    ws = self._ws if self._state is ConnectionState.OPEN else None
                    room = ws is not None
                if not room:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        if numbered:
                            raise TimeoutError(f"{self.max_pending} envelopes unacknowledged")
                        raise TimeoutError(f"not connected within {timeout}s")
                    self._cond.wait(left)
                    continue
            if numbered:
                if self._send_numbered(type, payload):
                    return
                continue  # the hub stopped numbering meanwhile: the plain way
            assert ws is not None
            try:
                ws.send(text)
                return
            except (OSError, websocket.WebSocketException):
                # The socket died under us: the reader notices and reconnects; try again.
                with self._cond:
                    if self._ws is ws:
                        self._cond.wait(0.05)

    def _send_numbered(self, type: str, payload: Any) -> bool:
        # Numbered and written in one order (a later cseq never overtakes an earlier one), and
        # kept until acknowledged: a socket that is not ready gets it after the resume.
        with self._send_lock:
            with self._cond:
                if not self._numbered:
                    return False
                cseq = self._next_cseq
                self._next_cseq += 1
                item = _Pending(cseq, type, payload, _numbered_text(cseq, type, payload))
                self._pending.append(item)
                ws = self._ws if self._ready else None
            if ws is not None:
                try:
                    ws.send(item.text)
                except (OSError, websocket.WebSocketException):
                    pass  # the reader notices, reconnects, and it is sent again
        return True

    def recv(self, timeout: float | None = None) -> Envelope:
        """The next envelope. ``TimeoutError`` after ``timeout``; ``ClientClosed`` once the
        client is closed and every envelope received before has been taken."""
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no envelope within {timeout}s") from None
        if isinstance(item, _End):
            self._inbox.put(item)
            raise self._final or ClientClosed(1006)
        if isinstance(item, tuple):
            item, self.taken_seq = item
        return item

    def wait_for(
        self,
        type: str,
        timeout: float | None = 10.0,
        predicate: Callable[[Envelope], bool] | None = None,
    ) -> Envelope:
        """Receive until an envelope of ``type`` (and matching ``predicate``) arrives;
        the envelopes skipped on the way are dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            envelope = self.recv(left)
            if envelope.type == type and (predicate is None or predicate(envelope)):
                return envelope

    def __iter__(self) -> Iterator[Envelope]:
        """Every envelope, until the client is closed for good."""
        while True:
            try:
                yield self.recv()
            except ClientClosed:
                return

    # -- the reader thread ---------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        with self._cond:
            self._state = state
            self._cond.notify_all()
        if self.on_state is not None:
            try:
                self.on_state(state, self)
            except Exception:
                logger.exception("on_state callback failed")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ws = self._open()
                if isinstance(ws, ConnectRefused):
                    logger.warning("%s: %s; not retrying", self._url_text(), ws)
                    with self._cond:
                        self._final = ws
                    break
                if ws is None:
                    if not self._retry(1006, self._last_error):
                        break
                    continue
                code, reason = self._read(ws)
                with self._cond:
                    self._ws = None
                    self._ready = False
                    self.last_close = (code, reason)
                _shutdown(ws)
                if not self._retry(code, reason):
                    break
        finally:
            self._finish()

    def _url_text(self) -> str:
        return self.url() if callable(self.url) else self.url

    def _open(self) -> Any:
        """One attempt: the open socket, a ``ConnectRefused`` for a 4xx, or None to retry."""
        url = self._url_text()
        timeout = self.connect_timeout
        if self._deadline is not None:  # a first connect: no attempt outlives connect()
            timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        header: Any = self.header
        subprotocols = self.subprotocols
        if self.resume:
            # With the plain protocol by name: a hub that cannot resume chooses that one.
            if subprotocols:
                subprotocols = [*subprotocols, RESUME_PROTOCOL, PLAIN_PROTOCOL]
            else:
                # By hand: websocket-client fails a handshake that chose none of the offered
                # subprotocols (a hub older than resume chooses none).
                offer = f"Sec-WebSocket-Protocol: {RESUME_PROTOCOL}, {PLAIN_PROTOCOL}"
                header = _with_header(header, offer)
        try:
            ws = websocket.create_connection(
                url,
                timeout=timeout,
                header=header,
                subprotocols=subprotocols,
                enable_multithread=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            reason = _reason_of(exc)
            if 400 <= exc.status_code < 500:
                return ConnectRefused(exc.status_code, reason)
            self._last_error = f"HTTP {exc.status_code} {reason}".rstrip()
            logger.info("connect to %s failed: %s", url, self._last_error)
            return None
        except (OSError, websocket.WebSocketException) as exc:
            self._last_error = repr(exc)
            logger.debug("connect to %s failed: %r", url, exc)
            return None
        ws.settimeout(None)
        negotiated = self.resume and _protocol_of(ws) == RESUME_PROTOCOL
        with self._cond:
            if self._stop.is_set():
                _shutdown(ws)
                return None
            self._ws = ws
            self.connections += 1
            self.attempt = 0
        if negotiated:
            self._ask_resume(ws)
        elif self.resume:
            self._not_numbered(ws)
        self._set_state(ConnectionState.OPEN)
        return ws

    def _ask_resume(self, ws: Any) -> None:
        # The first frame: a resume from the last seq acknowledged, after which what is numbered
        # waits for the answer (it says where both sequences go on); or, on this client's first
        # connection, a fresh start: an ack of nothing, so the hub need not wait for a frame,
        # and both sequences count from 1.
        with self._send_lock:
            with self._cond:
                self._numbered = True
                self._numbered_ws = ws
                resumes = self._resumes
                self._resumes = True
                self._ready = not resumes
                if resumes:
                    # What was received after it comes again, and is dropped as seen.
                    first = {"type": "wsroom.resume", "payload": {"last_seq": self._done}}
                    resend = []
                else:
                    first = {"type": "wsroom.ack", "payload": {"seq": 0}}
                    self._received = self._done = self._ack_sent = 0
                    for i, item in enumerate(self._pending, 1):
                        item.cseq = i
                        item.text = _numbered_text(i, item.type, item.payload)
                    self._next_cseq = len(self._pending) + 1
                    resend = [item.text for item in self._pending]
                    self._cond.notify_all()
            try:
                ws.send(json.dumps(first, separators=(",", ":")))
                for text in resend:
                    ws.send(text)
            except (OSError, websocket.WebSocketException):
                pass  # the reader notices

    def _not_numbered(self, ws: Any) -> None:
        # A hub that does not (or no longer) offer resume: what it may not have is sent again
        # as plain envelopes, and a membership that was numbered is told of a possible gap.
        with self._send_lock:
            with self._cond:
                was = self._numbered
                self._numbered = False
                self._numbered_ws = None
                pending = list(self._pending)
                self._pending.clear()
                self._cond.notify_all()
            for item in pending:
                text = json.dumps({"type": item.type, "payload": item.payload})
                try:
                    ws.send(text)
                except (OSError, websocket.WebSocketException):
                    break
        if was:
            self._report(Gap("not offered", self._done, 0))

    def _resumed(self, ws: Any, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        handled = payload.get("cseq", 0)
        handled = handled if type(handled) is int and handled >= 0 else 0
        gap = None
        if not payload.get("ok"):
            first = payload.get("first_seq", 1)
            first = first if type(first) is int and first >= 1 else 1
            gap = Gap(str(payload.get("reason", "unknown")), self._done, first)
        with self._send_lock:
            with self._cond:
                if gap is not None:
                    self._received = self._done = self._ack_sent = gap.first_seq - 1
                pending = self._pending
                while pending and pending[0].cseq <= handled:
                    pending.popleft()
                if pending and pending[0].cseq != handled + 1:
                    # The hub counts from elsewhere (a new membership): number them again.
                    for i, item in enumerate(pending, handled + 1):
                        item.cseq = i
                        item.text = _numbered_text(i, item.type, item.payload)
                self._next_cseq = handled + 1 + len(pending)
                resend = [item.text for item in pending]
                self._ready = self._ws is ws
                self._cond.notify_all()
            for text in resend:
                try:
                    ws.send(text)
                except (OSError, websocket.WebSocketException):
                    break
        if gap is not None:
            self._report(gap)

    def _report(self, gap: Gap) -> None:
        logger.info("wsroom: envelopes lost (%s): after %d, next %d", *vars(gap).values())
        with self._cond:
            self.gaps.append(gap)
        if self.on_gap is not None:
            try:
                self.on_gap(gap, self)
            except Exception:
                logger.exception("on_gap callback failed")

    def _acked_by_hub(self, payload: Any) -> None:
        if isinstance(payload, dict) and payload.get("ask") is True:
            # The hub's log for us is half full: acknowledge now, not at the batch's count.
            self._send_ack()
            return
        handled = payload.get("cseq") if isinstance(payload, dict) else None
        if type(handled) is not int:
            return
        with self._cond:
            pending = self._pending
            while pending and pending[0].cseq <= handled:
                pending.popleft()
            self._cond.notify_all()

    def _send_ack(self) -> None:
        with self._cond:
            ws = self._numbered_ws if self._ready else None
            done = self._done
            if ws is None or done <= self._ack_sent:
                return
            self._ack_sent = done
        try:
            # Compact, as wsroom.js writes it: the hub's reader takes such an ack by itself.
            ack = {"type": "wsroom.ack", "payload": {"seq": done}}
            ws.send(json.dumps(ack, separators=(",", ":")))
        except (OSError, websocket.WebSocketException):
            pass

    def _numbered_frame(
        self, ws: Any, obj: dict[str, Any]
    ) -> Envelope | tuple[Envelope, int] | None:
        """One frame of a resume connection: the protocol's are handled here; what to deliver
        is returned (with its seq if numbered; None: nothing)."""
        kind = obj.get("type")
        if kind == "wsroom.ack":
            self._acked_by_hub(obj.get("payload"))
            return None
        if kind == "wsroom.resumed":
            self._resumed(ws, obj.get("payload"))
            return None
        seq = obj.get("seq")
        if type(seq) is not int:
            return Envelope(obj["type"], obj.get("payload"))  # the connection's own (on_join's)
        gap = None
        with self._cond:
            if seq <= self._received:
                return None  # had it before the reconnect
            if seq > self._received + 1:
                gap = Gap("missing", self._received, seq)
            self._received = seq
            if self.auto_ack:
                self._done = seq
            due = self._done - self._ack_sent >= self.ack_every
        if gap is not None:
            self._report(gap)
        if due:
            self._send_ack()
        return Envelope(obj["type"], obj.get("payload")), seq

    def _read(self, ws: Any) -> tuple[int, str]:
        while True:
            if self._ready and self._done > self._ack_sent and not _readable(ws, self.ack_delay):
                self._send_ack()  # a quiet moment: acknowledge what came
            try:
                opcode, frame = ws.recv_data_frame(control_frame=False)
            except (OSError, websocket.WebSocketException):
                return 1006, ""
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data: bytes = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                return code, data[2:].decode("utf-8", "replace")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            try:
                obj = json.loads(frame.data)
                envelope = Envelope(obj["type"], obj.get("payload"))
                if self._numbered_ws is ws:
                    numbered = self._numbered_frame(ws, obj)
                    if numbered is None:
                        continue
                    self._inbox.put(numbered)
                    continue
            except (ValueError, TypeError, KeyError, AttributeError):
                logger.warning("dropped a frame that is not an envelope: %.200r", frame.data)
                continue
            self._inbox.put(envelope)

    def _retry(self, code: int, reason: str) -> bool:
        """After a failed attempt or a drop: wait the backoff and say whether to go on."""
        if self._stop.is_set():
            return False
        if not self.reconnect or not self.should_reconnect(code):
            with self._cond:
                self._final = ClientClosed(code, reason)
            return False
        if self.max_attempts is not None and self.attempt >= self.max_attempts:
            with self._cond:
                self._final = ClientClosed(code, reason or "gave up reconnecting")
            return False
        delay = min(self.max_delay, self.min_delay * self.factor**self.attempt)
        delay *= 1 - self.jitter * random.random()
        self.attempt += 1
        self._set_state(ConnectionState.RECONNECTING)
        return not self._stop.wait(delay)

    def _finish(self) -> None:
        with self._cond:
            if self._state is ConnectionState.CLOSED:
                return
            self._stop.set()
        self._inbox.put(_END)
        self._set_state(ConnectionState.CLOSED)


def _reason_of(exc: websocket.WebSocketBadStatusException) -> str:
    """The server's one-line reason: the first line of its body, else the status text."""
    body = exc.resp_body or b""
    text = body.decode("utf-8", "replace").strip().splitlines()
    if text:
        return text[0][:200]
    return str(exc.status_message or "")


def _with_header(header: Any, line: str) -> Any:
    """``header`` (a mapping, a list of lines, or None) with one more line."""
    if isinstance(header, Mapping):
        name, _, value = line.partition(": ")
        return {**header, name: value}
    return [*(header or ()), line]


def _protocol_of(ws: Any) -> str | None:
    """The subprotocol the server chose, however it was offered."""
    chosen = ws.getsubprotocol()
    if chosen:
        return str(chosen)
    headers = ws.getheaders() or {}
    value = headers.get("sec-websocket-protocol")
    return str(value).strip() if value else None


def _readable(ws: Any, timeout: float) -> bool:
    """Whether the socket has bytes to read within ``timeout`` (an SSL socket's buffered ones
    count as none: an ack sent early is harmless)."""
    try:
        readable, _, _ = select.select([ws.sock], [], [], timeout)
    except (OSError, ValueError, TypeError):
        return True  # closed under us: the read finds out
    return bool(readable)


def _shutdown(ws: Any) -> None:
    try:
        ws.shutdown()
    except (OSError, websocket.WebSocketException):
        pass


def connect(
    url: str | Callable[[], str], timeout: float | None = 10.0, **options: Any
) -> RoomClient:
    """Make a ``RoomClient`` and wait until it is connected; options as ``RoomClient`` takes.

    Raises ``ConnectRefused`` (HTTP 4xx, at once) or ``ConnectTimeout`` (nothing opened within
    ``timeout``); either way no thread is left behind."""
    return RoomClient(url, **options).connect(timeout)
