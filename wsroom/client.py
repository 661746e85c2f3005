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
"""

from __future__ import annotations

import enum
import json
import logging
import queue
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import websocket

from .envelope import Envelope

__all__ = [
    "FINAL_CODES",
    "ClientClosed",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionState",
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


class _End:
    """The marker queued after the last envelope of a closed client."""


_END = _End()

StateCallback = Callable[[ConnectionState, "RoomClient"], None]


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
    ) -> None:
        if min_delay < 0 or max_delay < min_delay or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 <= min_delay <= max_delay, factor >= 1, 0 <= jitter <= 1")
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
        self._inbox: queue.Queue[Envelope | _End] = queue.Queue()
        self._ws: Any = None
        self._thread: threading.Thread | None = None
        self._final: ClientClosed | None = None
        self._deadline: float | None = None  # of the first connect: bounds each attempt
        self._last_error = "no attempt yet"

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

    # -- traffic --------------------------------------------------------------------------

    def send(self, type: str, payload: Any = None, timeout: float | None = 10.0) -> None:
        """Send one envelope; while reconnecting, wait up to ``timeout`` for the socket."""
        if not isinstance(type, str) or not type:
            raise ValueError("type must be a non-empty string")
        text = json.dumps({"type": type, "payload": payload}, separators=(",", ":"))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._state is ConnectionState.CLOSED:
                    raise self._final or ClientClosed(1006)
                ws = self._ws if self._state is ConnectionState.OPEN else None
                if ws is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"not connected within {timeout}s")
                    self._cond.wait(left)
                    continue
            try:
                ws.send(text)
                return
            except (OSError, websocket.WebSocketException):
                # The socket died under us: the reader notices and reconnects; try again.
                with self._cond:
                    if self._ws is ws:
                        self._cond.wait(0.05)

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
        try:
            ws = websocket.create_connection(
                url,
                timeout=timeout,
                header=self.header,
                subprotocols=self.subprotocols,
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
        with self._cond:
            if self._stop.is_set():
                _shutdown(ws)
                return None
            self._ws = ws
            self.connections += 1
            self.attempt = 0
        self._set_state(ConnectionState.OPEN)
        return ws

    def _read(self, ws: Any) -> tuple[int, str]:
        while True:
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
