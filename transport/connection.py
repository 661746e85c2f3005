"""One upgraded WebSocket: its reader (the caller's greenlet) and its writer greenlet.

The pair owns the connection: its ``Lifecycle`` (one explicit phase instead of loose flags),
its keep-alive, its socket and its outbox. Everyone else has two entry points, ``push`` and
``close``, which record a request and wake the writer; only the writer blocks writing, always
with ``sendall``, so no frame is ever cut short or interleaved (simple-websocket's own ``send``
writes once and ignores a partial write). One exception keeps fan-out at the stack's floor: when
no writer runs and nothing waits, ``push`` writes the frame at once without blocking, and a
write the socket takes whole costs no greenlet at all.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, Ping, Pong, TextMessage
from wsproto.events import CloseConnection as CloseEvent
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from wsroom.wire import OutFrame

from ._gevent_socket import raw_socket
from ._simple_websocket import ServerSocket
from .frames import FAST, TOO_BIG, InboundFrames
from .lifecycle import KeepAlive, Lifecycle, Phase, Tick
from .outbox import Outbox

__all__ = ["Connection", "ConnectionOptions"]

logger = logging.getLogger("wsroom.transport")

_RECV_BYTES = 65536
_SLOW_CONSUMER = (4008, "slow consumer")


class ConnectionOptions:
    """The per-connection limits: the options of ``new_hub`` other than ``allowed_origins``."""

    __slots__ = (
        "close_timeout",
        "compression",
        "max_message_size",
        "outbox_max_bytes",
        "outbox_max_messages",
        "ping_interval",
    )

    def __init__(
        self,
        *,
        max_message_size: int = 65536,
        ping_interval: float = 25.0,
        outbox_max_messages: int = 1024,
        outbox_max_bytes: int = 4 * 1024 * 1024,
        compression: bool = False,
        close_timeout: float = 5.0,
    ) -> None:
        for name, value in (
            ("max_message_size", max_message_size),
            ("outbox_max_messages", outbox_max_messages),
            ("outbox_max_bytes", outbox_max_bytes),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if ping_interval < 0 or close_timeout <= 0:
            raise ValueError("ping_interval must be >= 0 and close_timeout > 0")
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.outbox_max_messages = outbox_max_messages
        self.outbox_max_bytes = outbox_max_bytes
        self.compression = bool(compression)
        self.close_timeout = close_timeout


class Connection:
    """The transport side of one participant's connection.

    ``push`` and ``close`` are called by whoever delivers (the room actor, ``Client.send``, the
    participant); ``run`` by the WSGI handler greenlet, which it blocks until the connection is
    over.
    """

    def __init__(self, environ: dict[str, Any], options: ConnectionOptions) -> None:
        self.options = options
        server = ServerSocket(environ, compression=options.compression)
        # Past the handshake only the socket and the wsproto connection are needed; the
        # handshake objects (h11 state, simple-websocket's buffers) are let go.
        self._ws = server.protocol
        self._sock: socket.socket = server.sock
        self.life = Lifecycle()
        self._keepalive = KeepAlive()
        self.outbox: Outbox[OutFrame] = Outbox(
            options.outbox_max_messages, options.outbox_max_bytes, OutFrame.size_of
        )
        self._control: deque[bytes] = deque()  # pongs, pings, a close reply: ahead of data
        # Without an extension, the shared pre-built frame bytes go out as they are; with
        # permessage-deflate each connection must frame (and compress) through wsproto.
        self._prebuilt = not options.compression
        # The socket's non-blocking core, for writes that must not wait.
        self._raw: Any = raw_socket(self._sock)
        self._partial: memoryview | None = None  # the rest of a write the fast path began
        self._on_drain: Callable[[], None] | None = None
        self._abort_timer: Any = None
        self._linger = options.close_timeout  # how long a close waits for the peer's reply
        # Spawned only while something waits to be written (most connections are idle, and
        # most writes complete at once), and gone once all is written.
        self._writer: gevent.Greenlet[Any, Any] | None = None
        # Whether push() may write at once: derived from the phase and the writer, and set only
        # where those change (close, _end, _wake_writer, the writer's end), so the per-member
        # check in a broadcast is one attribute read.
        self._direct = False
        self._refresh_direct()

    # -- the two entry points ------------------------------------------------------------

    def push(self, frame: OutFrame) -> bool:
        """Deliver one message; past the outbox's bounds, close as a slow consumer (4008) and
        return False (the frames not yet written stay for ``take_unsent``)."""
        if self.offer(frame):
            return True
        self.close(*_SLOW_CONSUMER)
        return False

    def close(self, code: int, reason: str = "", linger: float | None = None) -> None:
        """Ask for a close with ``code``: the writer sends the close frame after the frame it is
        writing, then the socket is cut after ``linger`` seconds (default ``close_timeout``)
        unless the peer finished the handshake first. Frames still queued are not written
        (``take_unsent`` has them). Only the first close counts."""
        if not self.life.request_close(code, reason):
            return
        self._refresh_direct()
        self._linger = self.options.close_timeout if linger is None else linger
        if self._writer is None:
            # Nothing is being written: the close frame goes out now, before any abort clock
            # runs (10,000 closes at once must not wait for 10,000 writers to be scheduled,
            # and an abort must never cut a socket whose close frame was never written).
            self._write_close_frame()
            if self._partial is None and not self._control:
                self._arm_abort()
                return
        # A write is under way: the writer sends the close frame after it and then re-arms
        # the clock; armed now as well, so a peer that stopped reading is still cut in time.
        self._wake_writer()
        self._arm_abort()

    def _write_close_frame(self) -> None:
        # The close frame owed, without waiting: what the socket does not take at once is left
        # for the writer, ahead of anything else.
        life = self.life
        life.close_sent()
        if self._ws.state is not ConnectionState.OPEN:
            return
        assert life.close_request is not None
        code, reason = life.close_request
        data = self._ws.send(CloseEvent(code, reason or None))
        if not self._write_now(data):
            self._control.append(data)
            self._wake_writer()

    def _arm_abort(self) -> None:
        # The socket is cut ``linger`` seconds from now unless the peer completes the close
        # handshake first (``_finish`` closes the timer).
        if self._abort_timer is not None:
            self._abort_timer.close()
        self._abort_timer = gevent.get_hub().loop.timer(self._linger)
        self._abort_timer.start(self._abort)

    # -- what the room needs besides ------------------------------------------------------

    def offer(self, frame: OutFrame) -> bool:
        """Deliver one message if the outbox has room; False (nothing queued, nothing closed)
        when it has not: a reconnect's backlog is flushed this way, as the writer drains."""
        if self._direct and self._write_now(frame.wire):
            return True
        if not self.outbox.push(frame):
            return False
        self._wake_writer()
        return True

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, from the writer, when everything queued has been written."""
        self._on_drain = callback
        if self._writer is None and not self.outbox:
            self._drained()

    def take_unsent(self) -> list[OutFrame]:
        """Frames queued but not yet written, for the offline queue."""
        return self.outbox.take_all()

    @property
    def closing(self) -> bool:
        """Whether a close has been asked for (by the server) or the connection is over."""
        return not self.life.is_open

    @property
    def closed_by_server(self) -> bool:
        """Whether the server asked for a close: frames read after that are not handed on,
        while frames a client sent before its own close or hang-up still are."""
        return self.life.close_request is not None

    # -- the write side --------------------------------------------------------------------

    def _refresh_direct(self) -> None:
        self._direct = (
            self._writer is None and self.life.is_open and self._prebuilt and self._raw is not None
        )

    def _end(self) -> None:
        # The read side is over (or the socket broke): no data frame goes out any more.
        self.life.end()
        self._refresh_direct()

    def _write_now(self, data: bytes) -> bool:
        # Only with no writer running (so nothing is queued ahead): write what the socket takes
        # without waiting; the writer finishes the rest first. False: nothing was written.
        raw = self._raw
        if raw is None:
            return False
        try:
            sent = raw.send(data)
        except BlockingIOError:
            return False
        except OSError:
            return False  # broken: the writer will find out and end the connection
        if sent < len(data):
            self._partial = memoryview(data)[sent:]
            self._wake_writer()
        return True

    def _send_control(self, data: bytes) -> None:
        if not data:
            return
        if self._writer is None and self._write_now(data):
            return
        self._control.append(data)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._direct = False
            self._writer = gevent.spawn(self._write_loop)

    def _drained(self) -> None:
        callback, self._on_drain = self._on_drain, None
        if callback is not None:
            callback()

    def _write_loop(self) -> None:
        # The one greenlet that may block writing; it ends when nothing is left to write.
        sock = self._sock
        ws = self._ws
        life = self.life
        outbox = self.outbox
        control = self._control
        try:
            while True:
                if self._partial is not None:
                    rest, self._partial = self._partial, None
                    sock.sendall(rest)
                elif control:
                    sock.sendall(control.popleft())
                elif life.owes_close_frame:
                    life.close_sent()
                    if ws.state is ConnectionState.OPEN:
                        assert life.close_request is not None
                        code, reason = life.close_request
                        sock.sendall(ws.send(CloseEvent(code, reason or None)))
                        # The peer's time to answer counts from when the frame went out.
                        if life.phase is not Phase.ENDED:
                            self._arm_abort()
                elif outbox and life.is_open and ws.state is ConnectionState.OPEN:
                    frame = outbox.pop()
                    assert frame is not None
                    if self._prebuilt:
                        sock.sendall(frame.wire)
                    else:
                        sock.sendall(ws.send(TextMessage(frame.text)))
                else:
                    if not outbox and life.phase is not Phase.ENDED:
                        self._drained()
                    return
        except (OSError, LocalProtocolError) as exc:
            logger.debug("writer stopped: %r", exc)
            self._end()
            self._abort()
        finally:
            self._writer = None
            self._refresh_direct()

    def _abort(self) -> None:
        # The peer did not finish the close handshake in time, or cannot be written to.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the read side ---------------------------------------------------------------------

    def run(self, on_text: Callable[[str], None]) -> tuple[int, str]:
        """Read until the connection is over, handing each whole text message to ``on_text``.

        Returns the close code and reason to report: the server's own close if it asked for
        one, else the peer's, else 1006.
        """
        peer_close: tuple[int, str] | None = None
        interval = self.options.ping_interval
        # Keep-alive runs on a loop timer, never as a socket timeout: the writer shares this
        # socket, and a timeout set for reads would also cut short a write that takes longer.
        keepalive: Any = None
        if interval > 0:
            keepalive = gevent.get_hub().loop.timer(interval, interval)
            keepalive.start(self._keepalive_tick, interval)
        try:
            peer_close = self._read_loop(on_text)
        except (OSError, RemoteProtocolError, LocalProtocolError) as exc:
            logger.debug("reader stopped: %r", exc)
        finally:
            if keepalive is not None:
                keepalive.close()
            self._finish()
        return self.life.outcome(peer_close)

    def _read_loop(self, on_text: Callable[[str], None]) -> tuple[int, str] | None:
        sock = self._sock
        sock.settimeout(None)  # reads and writes both wait as long as it takes
        ws = self._ws
        life = self.life
        keepalive = self._keepalive
        max_size = self.options.max_message_size
        frames = InboundFrames(max_size, fast=self._prebuilt)
        parts: list[str] = []
        size = 0
        while True:
            keepalive.reader_busy = False
            data = sock.recv(_RECV_BYTES)
            if not data:
                return None
            keepalive.reader_busy = True  # until the next recv (on_text may wait for room)
            for kind, payload in frames.feed(data):
                if kind is FAST:
                    if not life.is_open:
                        continue
                    try:
                        text = payload.decode()
                    except UnicodeDecodeError:
                        self.close(1007, "invalid UTF-8 in a text frame")
                        return None
                    on_text(text)
                    continue
                if kind is TOO_BIG:
                    self.close(1009, "message too big")
                    continue
                ws.receive_data(payload)  # whole frames only: wsproto never holds a partial one
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        if not life.is_open:
                            continue
                        # The limit is in bytes on the wire, not characters of the decoded text.
                        chunk = event.data
                        size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
                        if max_size and size > max_size:
                            self.close(1009, "message too big")
                            parts.clear()
                            continue
                        parts.append(event.data)
                        if event.message_finished:
                            text = parts[0] if len(parts) == 1 else "".join(parts)
                            parts.clear()
                            size = 0
                            on_text(text)
                    elif isinstance(event, BytesMessage):
                        self.close(1003, "binary frames are not accepted")
                    elif isinstance(event, Ping):
                        self._send_control(ws.send(event.response()))
                    elif isinstance(event, Pong):
                        keepalive.pong()
                    elif isinstance(event, CloseEvent):
                        if ws.state is ConnectionState.OPEN:
                            # A protocol error found by wsproto: answer with its code and stop.
                            self.close(int(event.code), event.reason or "")
                            return None
                        # The peer's close: no data frame may follow it, only the reply.
                        self._end()
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            self._send_control(ws.send(event.response()))
                        return (int(event.code), event.reason or "")

    def _keepalive_tick(self, interval: float) -> None:
        # A loop-timer callback, every ``interval``.
        if not self.life.is_open:
            return
        tick = self._keepalive.tick()
        if tick is Tick.DEAD:
            self.close(1008, "ping timeout", linger=min(interval, 1.0))
        elif tick is Tick.PING and self._ws.state is ConnectionState.OPEN:
            self._send_control(self._ws.send(Ping()))

    def _finish(self) -> None:
        # Let the writer flush any close reply, then shut the socket whatever happens.
        self._end()
        writer = self._writer
        if writer is not None:
            writer.join(timeout=self.options.close_timeout)
        self._abort()
        if self._abort_timer is not None:
            self._abort_timer.close()
        try:
            self._sock.close()
        except OSError:
            pass
