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
from collections.abc import Callable
from typing import Any, Literal

import gevent
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.events import CloseConnection as CloseEvent
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from wsroom.wire import PLAIN_PROTOCOL, RESUME_PROTOCOL, OutFrame, numbered, numbered_wire

from ._gevent_socket import raw_socket, read_waiter
from ._simple_websocket import ServerSocket
from .frames import (
    BAD_FRAME,
    BAD_UTF8,
    FAST,
    PING,
    PONG,
    TOO_BIG,
    TOO_FRAGMENTED,
    InboundFrames,
    pong_frame,
)
from .lifecycle import ControlBudget, KeepAlive, Lifecycle, Phase, Tick
from .outbox import Outbox

__all__ = ["CONTROL_BURST", "CONTROL_RATE", "Connection", "ConnectionOptions"]

logger = logging.getLogger("wsroom.transport")

_RECV_BYTES = 65536
# The subprotocols a hub chooses from, in the client's order of preference.
_RESUMABLE = (RESUME_PROTOCOL, PLAIN_PROTOCOL)
_PLAIN = (PLAIN_PROTOCOL,)
_SLOW_CONSUMER = (4008, "slow consumer")

CONTROL_RATE = 1000.0
"""Pings and pongs a peer may send a second, on average (``CONTROL_BURST`` at once); past it
the connection is closed with 1008 ``too many control frames``. Browsers send none of their own,
libraries one every few seconds; a heartbeat after every read stays far below."""
CONTROL_BURST = 1000.0

# The reader gives every other greenlet its turn after this much work, whatever the frames are
# (a flood of empty frames must not freeze the hub): one unit per frame handed on cheaply, more
# for what goes through wsproto or reads a whole buffer. Checked once per batch, so the fast
# path pays one addition and one comparison per batch of frames.
_YIELD_AFTER = 64
_BATCH = 16  # frames taken from the stream at a time, so a batch of slow frames stays short
_RAW_WORK = 4  # a frame through wsproto's generators costs several fast ones
_RECV_WORK = 4  # a recv that fills 64 KB of payload to skip, or of frames to cut
_CLOSING_PAUSE = 0.002  # after each read once a close was asked for: 32 MB/s of input at most
# What InboundFrames refuses, and the close it calls for; the reader stops reading at once.
_REFUSED: dict[int, tuple[int, str]] = {
    BAD_UTF8: (1007, "invalid UTF-8 in a text frame"),
    TOO_FRAGMENTED: (1008, "too many fragments in one message"),
    BAD_FRAME: (1002, "expected a continuation frame"),
}


def _next_loop_turn(pause: float) -> None:
    """Let the loop go round once (after ``pause`` seconds): every greenlet ready and every
    socket with I/O waiting gets its turn first. Not sleep(0): that lets only greenlets already
    woken run, and a reader repeating it holds off every socket's I/O for up to gevent's switch
    interval. Not idle(): that waits until nothing else is ready, so a fast honest sender
    would stall its own pipeline in a busy hub."""
    hub = gevent.get_hub()
    with hub.loop.timer(pause) as timer:
        hub.wait(timer)


class ConnectionOptions:
    """The per-connection limits: the options of ``new_hub`` other than ``allowed_origins``."""

    __slots__ = (
        "close_timeout",
        "compression",
        "max_message_size",
        "outbox_max_bytes",
        "outbox_max_messages",
        "ping_interval",
        "resume",
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
        #: Whether the subprotocol of resume without loss (contract §7) is accepted: set by the
        #: hub, which knows whether its policy and rooms can keep a membership's envelopes.
        self.resume = True


class Connection:
    """The transport side of one participant's connection.

    ``push`` and ``close`` are called by whoever delivers (the room actor, ``Client.send``, the
    participant); ``run`` by the WSGI handler greenlet, which it blocks until the connection is
    over.
    """

    def __init__(self, environ: dict[str, Any], options: ConnectionOptions) -> None:
        self.options = options
        server = ServerSocket(
            environ,
            compression=options.compression,
            subprotocols=_RESUMABLE if options.resume else _PLAIN,
        )
        #: Whether the client opted in to resume without loss (contract §7): its participant
        #: then numbers, acknowledges and resumes.
        self.resume = server.subprotocol == RESUME_PROTOCOL
        # Past the handshake only the socket and the wsproto connection are needed; the
        # handshake objects (h11 state, simple-websocket's buffers) are let go.
        self._ws = server.protocol
        self._sock: socket.socket = server.sock
        self._flush_after = False  # push what the kernel holds once the writer is done
        self.life = Lifecycle()
        self._keepalive = KeepAlive(options.ping_interval)
        self.outbox: Outbox[OutFrame] = Outbox(
            options.outbox_max_messages, options.outbox_max_bytes, OutFrame.size_of
        )
        # Control frames, ahead of data. Bounded by construction: one slot for the pong that
        # answers the latest ping (RFC 6455 §5.5.3 allows skipping older ones), one for the
        # keep-alive's ping, and the queue for the close frames (ours, the reply to the peer's:
        # at most two, so a list: an empty one is 56 bytes, an empty deque 760, for the
        # connection's whole life).
        self._pong: bytes | None = None
        self._ping: bytes | None = None
        self._control: list[bytes] = []
        # A compressed text message wsproto is putting together, and its size on the wire.
        self._ws_parts: list[str] = []
        self._ws_size = 0
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

    def push_numbered(self, frame: OutFrame, seq: int) -> bool:
        """``push`` for a resume connection (contract §7): ``frame`` stamped with its ``seq``.

        Written at once, the stamped bytes are built only to be written (``numbered_wire``);
        a frame that must wait in the outbox waits as a ``NumberedFrame`` of its own.
        """
        if self._direct:
            # _write_now's steps, inline: this runs once per member of every broadcast.
            data = numbered_wire(frame, seq)
            try:
                sent = self._raw.send(data)
            except OSError:  # full (BlockingIOError), or broken: the writer will find out
                return self.push(numbered(frame, seq))
            if sent < len(data):
                self._partial = memoryview(data)[sent:]
                self._wake_writer()
            return True
        return self.push(numbered(frame, seq))

    def flush(self) -> None:
        """Send at once what was pushed, without waiting for the peer to acknowledge an earlier
        segment (Nagle's algorithm, left on for the fan-out's sake, would hold a small frame up
        to the peer's delayed ACK, 40 ms): for a frame the peer must act on now, such as the
        hub asking a resume client for an ack (contract §7)."""
        if self._writer is not None:
            self._flush_after = True
        else:
            _push_pending(self._sock)

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

    def _send_control(self, data: bytes, slot: str = "") -> None:
        # ``slot`` "pong" or "ping": a frame of which only the latest matters; it replaces one
        # still waiting, so unread pings never grow the server.
        if not data:
            return
        if self._writer is None and self._write_now(data):
            if slot == "ping":
                self._keepalive.ping_written()
            return
        if slot == "pong":
            self._pong = data
        elif slot == "ping":
            self._ping = data
        else:
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
                elif self._pong is not None:
                    pong, self._pong = self._pong, None
                    sock.sendall(pong)
                elif self._ping is not None:
                    ping, self._ping = self._ping, None
                    sock.sendall(ping)
                    self._keepalive.ping_written()
                elif control:
                    sock.sendall(control.pop(0))
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
                    if self._flush_after:
                        self._flush_after = False
                        _push_pending(sock)
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
        life = self.life
        keepalive = self._keepalive
        budget = ControlBudget(CONTROL_RATE, CONTROL_BURST)
        frames = InboundFrames(self.options.max_message_size, fast=self._prebuilt)
        work = 0
        # Reads go to the real socket. After a read that took less than it could, the socket is
        # most likely empty: the reader waits for the next bytes before reading again, instead
        # of a read that fails (a system call and an exception per message in a request and
        # response exchange).
        raw = self._raw
        wait_readable = read_waiter(sock) if raw is not None else None
        drained = False
        while True:
            keepalive.reader_busy = False
            if wait_readable is None:
                data = sock.recv(_RECV_BYTES)
            else:
                if drained:
                    wait_readable()
                    work = 0  # every other greenlet had its turn while this one waited
                try:
                    data = raw.recv(_RECV_BYTES)
                except BlockingIOError:
                    drained = True
                    continue
                drained = len(data) < _RECV_BYTES
            if not data:
                return None
            keepalive.received()
            keepalive.reader_busy = True  # until the next recv (on_text may wait for room)
            frames.push(data)
            # Closing: what still comes is skipped until the peer's close frame; a peer that
            # floods on meanwhile gets a pause after every read, a trickle of the loop.
            work += _RECV_WORK if life.is_open else _YIELD_AFTER
            while True:
                if work >= _YIELD_AFTER:
                    # A recv with data waiting never switches greenlets: without this, one
                    # client's flood would run the loop alone for as long as it lasts.
                    work = 0
                    _next_loop_turn(0.0 if life.is_open else _CLOSING_PAUSE)
                batch = frames.pull(_BATCH)
                if not batch and not frames.taken:
                    break
                work += frames.taken
                ping: bytes | None = None
                for kind, payload in batch:
                    if kind is FAST:
                        if not life.is_open:
                            continue
                        try:
                            text = payload.decode()
                        except UnicodeDecodeError:
                            self.close(1007, "invalid UTF-8 in a text frame")
                            return None
                        on_text(text)
                    elif kind is PING or kind is PONG:
                        if not budget.spend():
                            self.close(1008, "too many control frames")
                            return None
                        if kind is PING:
                            ping = payload
                    elif kind is TOO_BIG:
                        self.close(1009, "message too big")
                    elif kind in _REFUSED:
                        self.close(*_REFUSED[kind])
                        return None
                    else:
                        work += _RAW_WORK
                        outcome = self._through_wsproto(payload, on_text)
                        if outcome is not False:
                            return outcome
                del batch  # not kept through the wait for more bytes: objects in flight
                if ping is not None and life.is_open:
                    # One pong for the batch's latest ping (RFC 6455 5.5.3 allows it): a ping
                    # flood then costs a write per batch, not one per ping, and what it leaves
                    # in both sides' buffers stays small ahead of our close frame.
                    self._send_control(pong_frame(ping), "pong")
                if frames.taken < _BATCH:
                    break  # the batch ended for want of bytes: the next pull would find none

    def _through_wsproto(
        self, frame: bytes, on_text: Callable[[str], None]
    ) -> Literal[False] | tuple[int, str] | None:
        # One whole frame that InboundFrames left to wsproto (binary, compressed, malformed,
        # close): False to read on, else what _read_loop returns (None: stop; a code and a
        # reason: the peer's close).
        ws = self._ws
        life = self.life
        ws.receive_data(frame)
        for event in ws.events():
            if isinstance(event, TextMessage):  # compressed connections only
                if not life.is_open:
                    continue
                # The limit is in bytes on the wire, not characters of the decoded text.
                chunk = event.data
                self._ws_size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
                if self._ws_size > self.options.max_message_size:
                    self.close(1009, "message too big")
                    self._ws_parts.clear()
                    continue
                self._ws_parts.append(chunk)
                if event.message_finished:
                    parts = self._ws_parts
                    text = parts[0] if len(parts) == 1 else "".join(parts)
                    parts.clear()
                    self._ws_size = 0
                    on_text(text)
            elif isinstance(event, BytesMessage):
                self.close(1003, "binary frames are not accepted")
            elif isinstance(event, Ping):  # well-formed pings never come this way; answer anyway
                self._send_control(ws.send(event.response()), "pong")
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
        return False

    def _keepalive_tick(self, interval: float) -> None:
        # A loop-timer callback, every ``interval``.
        if not self.life.is_open:
            return
        tick = self._keepalive.tick()
        if tick is Tick.DEAD and self._unread():
            # The answer is in, only not read yet (timers run before the reader after the loop
            # was held up): a peer that answered is never judged dead.
            self._keepalive.received()
        elif tick is Tick.DEAD:
            self.close(1008, "ping timeout", linger=min(interval, 1.0))
        elif tick is Tick.PING and self._ws.state is ConnectionState.OPEN:
            self._send_control(self._ws.send(Ping()), "ping")

    def _unread(self) -> bool:
        # Whether bytes from the peer wait in the socket, without reading them.
        raw = self._raw
        if raw is None:
            return False
        try:
            return bool(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # BlockingIOError: nothing waits; anything else: the reader will see
            return False

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


def _push_pending(sock: socket.socket) -> None:
    """Make the kernel send what Nagle's algorithm holds back (setting ``TCP_NODELAY`` pushes
    pending data out) and leave the algorithm on: it coalesces a fast fan-out's small frames,
    which halves its CPU per delivery."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    except OSError:  # not TCP (a Unix socket under gunicorn), or gone
        pass
