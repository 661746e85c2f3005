"""``new_hub`` and the ``Hub`` facade: blocking calls that are asks to the hub actor."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import gevent.lock
import gevent.monkey
import pykka

from wsroom.actors import messages as m
from wsroom.actors.hub import Encoded, HubActor
from wsroom.actors.participant import INBOUND_WINDOW, ParticipantActor
from wsroom.actors.runtime import GeventActor
from wsroom.transport.connection import Connection, ConnectionOptions
from wsroom.transport.handshake import check_upgrade

from .envelope import Envelope, encode
from .errors import (
    HandshakeRejected,
    HubStopped,
    MissingParticipantID,
    ResolverRejected,
    RoomNotFound,
    WrongThread,
)
from .hooks import HookSet, Resolver
from .types import (
    BroadcastReport,
    Delivery,
    Identity,
    ParticipantID,
    Presence,
    ReconnectPolicy,
    RoomID,
)

__all__ = ["Hub", "HubOptions", "new_hub"]

logger = logging.getLogger("wsroom")

# The real OS thread id, even under gevent.monkey (where threading.get_ident names greenlets).
_os_thread_id: Callable[[], int] = gevent.monkey.get_original("_thread", "get_ident")


class HubOptions:
    """The keyword options of ``new_hub``, checked once: ``allowed_origins`` here, the
    per-connection limits (and their defaults) in ``ConnectionOptions``."""

    __slots__ = ("allowed_origins", "connection")

    def __init__(self, *, allowed_origins: Sequence[str] | None = None, **connection: Any) -> None:
        if isinstance(allowed_origins, str):
            raise TypeError("allowed_origins takes a list of patterns, not one string")
        self.allowed_origins = None if allowed_origins is None else tuple(allowed_origins)
        self.connection = ConnectionOptions(**connection)


def new_hub(hooks: HookSet, policy: ReconnectPolicy, **options: Any) -> Hub:
    """Start a hub: its actor runs in this process's gevent loop until ``stop()``.

    Options (keyword only): ``max_message_size=65536``, ``ping_interval=25.0``,
    ``outbox_max_messages=1024``, ``outbox_max_bytes=4 MiB``, ``allowed_origins=None``,
    ``compression=False``, ``close_timeout=5.0``.
    """
    return Hub(hooks, policy, HubOptions(**options))


class Hub:
    """The room hub. Its methods block the calling greenlet (cooperatively) until answered;
    ``hub.proxy`` offers the same calls as pykka futures."""

    def __init__(self, hooks: HookSet, policy: ReconnectPolicy, options: HubOptions) -> None:
        for name in ("on_join", "on_message", "on_leave"):
            if not callable(getattr(hooks, name, None)):
                raise TypeError(f"hooks has no callable {name}()")
        self.hooks = hooks
        self.policy = policy
        self.options = options
        # The OS thread whose gevent loop runs the actors: gevent's primitives belong to it.
        self._thread = _os_thread_id()
        self._ref: pykka.ActorRef[HubActor] = HubActor.start(hooks, policy)
        #: The hub actor's pykka proxy: the same calls, answered with futures.
        self.proxy: Any = self._ref.proxy()

    # -- the API -------------------------------------------------------------------------

    def send_to(
        self, room: RoomID | str, participant: ParticipantID | str, envelope: Envelope
    ) -> Delivery:
        """Deliver ``envelope`` to one member: ``SENT`` if live, ``QUEUED`` if offline."""
        frame = encode(envelope)
        return self._to_room(  # type: ignore[no-any-return]
            room,
            m.SendTo(ParticipantID(participant), frame),
            lambda: self.proxy.send_to(room, participant, Encoded(frame)),
        )

    def broadcast(
        self, room: RoomID | str, envelope: Envelope, exclude: Iterable[ParticipantID | str] = ()
    ) -> BroadcastReport:
        """Deliver ``envelope`` to every member but ``exclude``, encoded once for all."""
        frame = encode(envelope)
        skip = frozenset(ParticipantID(p) for p in exclude)
        return self._to_room(  # type: ignore[no-any-return]
            room, m.Broadcast(frame, skip), lambda: self.proxy.broadcast(room, Encoded(frame), skip)
        )

    def close_room(self, room: RoomID | str) -> None:
        """Close every connection with 4000, end every membership with ``RoomClosed``."""
        self._call(lambda: self.proxy.close_room(room))

    def rooms(self) -> list[RoomID]:
        """Every room that has a member."""
        return self._call(lambda: self.proxy.rooms())  # type: ignore[no-any-return]

    def members(self, room: RoomID | str) -> dict[ParticipantID, Presence]:
        """Every member of ``room``, ``ONLINE`` or ``OFFLINE`` (inside its grace period)."""
        return self._call(lambda: self.proxy.members(room))  # type: ignore[no-any-return]

    def _to_room(self, room: RoomID | str, msg: Any, via_hub: Callable[[], Any]) -> Any:
        """Ask ``room``'s actor directly when the caller is a hook of one of its participants,
        else through the hub actor.

        A participant holds its room's ref (the hub gave it at the join), so its hooks skip a
        mailbox hop on the commonest path: a reply or a broadcast from ``on_message``.
        """
        context = getattr(gevent.getcurrent(), "wsroom_room", None)
        if context is not None and context[0] is self._ref and context[1] == room:
            if not self._ref.is_alive():
                raise HubStopped()
            own: pykka.ActorRef[Any] = context[2]
            try:
                return own.ask(msg, block=False).get()
            except pykka.ActorDeadError:
                pass  # that room was reaped; the hub knows whether a new one stands there
        return self._call(via_hub)

    def _check_thread(self) -> None:
        if _os_thread_id() != self._thread:
            raise WrongThread(
                "wsroom: hub called from another OS thread; call it from a greenlet of the thread "
                "that created it (gevent.monkey.patch_all() makes threads greenlets)"
            )

    def _call(self, call: Callable[[], Any]) -> Any:
        self._check_thread()
        try:
            return call().get()
        except pykka.ActorDeadError:
            # The hub actor is gone (stopped), or a room was reaped under the request.
            if self._ref.is_alive():
                raise RoomNotFound() from None
            raise HubStopped() from None

    # -- connections ---------------------------------------------------------------------

    def handle_ws(
        self,
        environ: dict[str, Any],
        room: RoomID | str,
        identity: Identity,
        resolve: Resolver,
    ) -> None:
        """Upgrade this request and serve the connection until it ends (blocks cooperatively).

        Before the upgrade it raises ``HubStopped``, ``ResolverRejected`` (chained to what the
        resolver raised), ``MissingParticipantID`` or ``HandshakeRejected``; after it, nothing.
        """
        self._check_thread()
        if not self._ref.is_alive():
            raise HubStopped()
        try:
            pid = resolve(RoomID(room), identity)
        except Exception as exc:
            raise ResolverRejected() from exc
        if not pid:
            raise MissingParticipantID()
        check_upgrade(environ, self.options.allowed_origins)
        try:
            conn = Connection(environ, self.options.connection)
        except Exception as exc:
            raise HandshakeRejected(f"the upgrade failed: {exc}", 400) from exc
        environ["wsroom.upgraded"] = True
        self._serve(conn, RoomID(room), ParticipantID(pid), identity)

    def _serve(
        self, conn: Connection, room: RoomID, pid: ParticipantID, identity: Identity
    ) -> None:
        window = gevent.lock.Semaphore(INBOUND_WINDOW)
        participant = ParticipantActor.start(
            self._ref, self.hooks, room, pid, identity, conn, window
        )
        try:
            self._ref.tell(m.ParticipantStarted(participant))
            participant.tell(m.Start())
        except pykka.ActorDeadError:
            conn.close(1001, "hub stopped")

        def on_text(text: str) -> None:
            # Wait for room in the window, unless the actor is gone (the hub stopped): then the
            # frame has nobody to go to.
            while not window.acquire(timeout=0.5):
                if not participant.is_alive():
                    return
            try:
                participant.tell(m.Frame(text))
            except pykka.ActorDeadError:
                window.release()
                conn.close(1001, "hub stopped")

        code, reason = conn.run(on_text)
        try:
            participant.tell(m.Ended(code, reason))
        except pykka.ActorDeadError:
            return
        participant.stop(block=True)

    # -- shutdown ------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection with 1001, run ``on_leave(..., HubStopped())`` once per member,
        stop every actor. A second call does nothing. From inside a hook, it runs in the
        background (an actor cannot wait for itself)."""
        if not self._ref.is_alive():
            return
        self._check_thread()
        if GeventActor.in_actor():
            gevent.spawn(self.stop, timeout)
            return
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.01)

        try:
            answer: tuple[list[Any], list[Any], list[Any]] = self._ref.ask(  # type: ignore[assignment]
                m.StopHub(), timeout=left()
            )
        except (pykka.ActorDeadError, HubStopped):
            return
        closing, rooms, participants = answer
        hooks: list[gevent.Greenlet[Any, Any]] = []
        for future in closing:
            try:
                hooks.extend(future.get(timeout=left()))
            except Exception:
                logger.exception("a room failed to close")
        current = gevent.getcurrent()
        gevent.joinall([g for g in hooks if g is not current], timeout=left())
        # Each participant finishes the hook it is in, then stops; its socket completes the
        # close handshake on its own (bounded by close_timeout).
        for ref in [*participants, *rooms, self._ref]:
            try:
                ref.stop(block=True, timeout=left())
            except pykka.Timeout:
                logger.warning("%s did not stop within the timeout", ref)
                ref.stop(block=False)
