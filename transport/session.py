"""One connection's session: the checks before the upgrade, the upgrade, its participant actor,
the read loop feeding it, and the report of the end.

``Hub.handle_ws`` calls ``serve_session`` and blocks in it (cooperatively) for the connection's
life; the handler greenlet it runs in is the connection's reader.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import gevent.lock
import pykka

from wsroom.actors import messages as m
from wsroom.actors.participant import ParticipantActor
from wsroom.actors.resume import quick_ack
from wsroom.errors import HandshakeRejected, HubStopped, MissingParticipantID, ResolverRejected
from wsroom.hooks import HookSet, Resolver
from wsroom.types import Identity, ParticipantID, RoomID

from ._simple_websocket import request_socket
from .connection import Connection, ConnectionOptions
from .handshake import UpgradeRules, check_upgrade

__all__ = ["EXHAUSTED", "EXHAUSTED_REASON", "INBOUND_WINDOW", "serve_session"]

logger = logging.getLogger("wsroom.transport")

INBOUND_WINDOW = 64
"""Frames read but not yet handled, per connection; past it the reader stops reading, so a fast
sender meets TCP backpressure instead of growing the participant actor's (unbounded) inbox."""

EXHAUSTED_REASON = "the server is out of file descriptors; try again later"
"""The 503's reason when the process has no descriptor left (never the OS error's text)."""

EXHAUSTED = (errno.EMFILE, errno.ENFILE)
"""The errors of a process (or system) out of file descriptors."""

_WINDOW_POLL = 0.5  # how often a reader waiting for room checks that its participant still runs


def serve_session(
    hub: pykka.ActorRef[Any],
    hooks: HookSet,
    rules: UpgradeRules,
    options: ConnectionOptions,
    environ: dict[str, Any],
    room: RoomID,
    identity: Identity,
    resolve: Resolver,
) -> None:
    """Upgrade this request and serve it as ``room``'s member until the connection ends.

    Before the upgrade it raises ``HubStopped``, ``ResolverRejected`` (chained to what the
    resolver raised), ``MissingParticipantID`` or ``HandshakeRejected``; after it, nothing.
    """
    if not hub.is_alive():
        raise HubStopped()
    try:
        pid = resolve(room, identity)
    except Exception as exc:
        raise ResolverRejected() from exc
    if not pid:
        raise MissingParticipantID()
    local = _local_address(environ) if rules.allowed_hosts is None else None
    check_upgrade(environ, rules, local)
    try:
        conn = Connection(environ, options)
    except OSError as exc:
        if exc.errno in EXHAUSTED:
            raise HandshakeRejected(EXHAUSTED_REASON, 503) from exc
        raise HandshakeRejected("the upgrade failed: the connection broke", 400) from exc
    except Exception as exc:
        raise HandshakeRejected(f"the upgrade failed: {exc}", 400) from exc
    environ["wsroom.upgraded"] = True
    _run(hub, hooks, conn, room, ParticipantID(pid), identity)


def _local_address(environ: dict[str, Any]) -> str | None:
    """The address the connection arrived on (for the default host rule), when known."""
    sock = request_socket(environ)
    try:
        address = sock.getsockname() if sock is not None else None
    except (OSError, AttributeError):
        return None
    return str(address[0]) if isinstance(address, tuple) and address else None


def _run(
    hub: pykka.ActorRef[Any],
    hooks: HookSet,
    conn: Connection,
    room: RoomID,
    pid: ParticipantID,
    identity: Identity,
) -> None:
    window = gevent.lock.Semaphore(INBOUND_WINDOW)
    participant = ParticipantActor(hub, hooks, room, pid, identity, conn, window.release)
    # A resume connection's frames go to the participant's numbering (contract §7).
    inbound = m.NumberedInbound if conn.resume else m.Inbound
    try:
        hub.tell(m.ParticipantStarted(participant))
        participant.tell(m.Start())
    except pykka.ActorDeadError:
        conn.close(1001, "hub stopped")

    def on_text(text: str) -> None:
        # Wait for room in the window, unless the actor is gone (the hub stopped): then the
        # frame has nobody to go to.
        while not window.acquire(timeout=_WINDOW_POLL):
            if not participant.is_alive():
                return
        try:
            participant.tell(inbound(text))
        except pykka.ActorDeadError:
            window.release()
            conn.close(1001, "hub stopped")

    acks = participant.client_acks
    if acks is None:
        code, reason = conn.run(on_text)
    else:
        first = [True]

        def on_numbered_text(text: str) -> None:
            # A resume connection's acks go straight to the room's cell (contract §7): no
            # window slot, no participant greenlet, no message. The first frame is always the
            # participant's (a resume, or an ack of nothing that starts afresh); so is an ack
            # written some other way.
            if first[0]:
                first[0] = False
            else:
                seq = quick_ack(text)
                if seq is not None:
                    acks.note(seq)
                    return
            on_text(text)

        code, reason = conn.run(on_numbered_text)
    try:
        participant.tell(m.Ended(code, reason))
    except pykka.ActorDeadError:
        return
    participant.stop(block=True)
