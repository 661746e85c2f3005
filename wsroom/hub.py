"""``new_hub`` and the ``Hub`` facade: the public calls, each a blocking ask of an actor."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import gevent.monkey
import pykka

from wsroom.actors import messages as m
from wsroom.actors.hookcall import hook_room
from wsroom.actors.hub import CLOSE_ROOM, HubActor
from wsroom.actors.runtime import Ask, GeventActor
from wsroom.transport.connection import ConnectionOptions
from wsroom.transport.handshake import UpgradeRules
from wsroom.transport.session import serve_session

from .envelope import Envelope
from .errors import HubStopped, RoomNotFound, WrongThread
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
from .wire import frame_of

__all__ = ["Hub", "HubOptions", "new_hub"]

logger = logging.getLogger("wsroom")

# The real OS thread id, even under gevent.monkey (where threading.get_ident names greenlets).
_os_thread_id: Callable[[], int] = gevent.monkey.get_original("_thread", "get_ident")


class HubOptions:
    """The keyword options of ``new_hub``, checked once: whom the hub upgrades
    (``allowed_origins``, ``allowed_hosts``, ``trust_forwarded_proto``) in ``UpgradeRules``, the
    per-connection limits (and their defaults) in ``ConnectionOptions``."""

    __slots__ = ("connection", "rules")

    def __init__(
        self,
        *,
        allowed_origins: Sequence[str] | None = None,
        allowed_hosts: Sequence[str] | None = None,
        trust_forwarded_proto: bool = False,
        **connection: Any,
    ) -> None:
        self.rules = UpgradeRules(
            allowed_origins, allowed_hosts, trust_forwarded_proto, socket.gethostname()
        )
        self.connection = ConnectionOptions(**connection)

    @property
    def allowed_origins(self) -> tuple[str, ...] | None:
        """The origin patterns (None: same origin only)."""
        return self.rules.allowed_origins


def new_hub(
    hooks: HookSet,
    policy: ReconnectPolicy,
    *,
    backplane: str | None = None,
    heartbeat_interval: float = 1.0,
    dead_after: float = 5.0,
    backplane_timeout: float = 8.0,
    **options: Any,
) -> Hub:
    """Start a hub: its actor runs in this process's gevent loop until ``stop()``.

    Options (keyword only): ``max_message_size=65536``, ``ping_interval=25.0``,
    ``outbox_max_messages=1024``, ``outbox_max_bytes=4 MiB``, ``allowed_origins=None``,
    ``allowed_hosts=None``, ``trust_forwarded_proto=False``, ``compression=False``,
    ``close_timeout=5.0``.

    ``backplane="redis://host:6379/0"`` makes the hub one of many processes serving the same
    rooms (needs the extra ``wsroom[redis]``): a process silent for ``dead_after`` seconds (it
    beats every ``heartbeat_interval``) is dead to the others, and a call that cannot reach
    Redis within ``backplane_timeout`` seconds raises ``BackplaneUnavailable``.
    """
    link = None
    if backplane is not None:
        try:
            from .backplane.link import Link
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "new_hub(backplane=...) needs the redis client: pip install 'wsroom[redis]'"
            ) from exc
        link = Link(
            backplane,
            hooks,
            timeout=backplane_timeout,
            heartbeat_interval=heartbeat_interval,
            dead_after=dead_after,
        )
    return Hub(hooks, policy, HubOptions(**options), link)


class Hub:
    """The room hub. Its methods block the calling greenlet (cooperatively) until answered;
    ``hub.proxy`` offers the same calls as pykka futures."""

    def __init__(
        self, hooks: HookSet, policy: ReconnectPolicy, options: HubOptions, link: Any = None
    ) -> None:
        for name in ("on_join", "on_message", "on_leave"):
            if not callable(getattr(hooks, name, None)):
                raise TypeError(f"hooks has no callable {name}()")
        self.hooks = hooks
        self.policy = policy
        self.options = options
        # The OS thread whose gevent loop runs the actors: gevent's primitives belong to it.
        self._thread = _os_thread_id()
        self._link = link
        # Resume without loss (contract §7) needs a grace period and room to keep envelopes.
        options.connection.resume = policy.grace_period > 0 and policy.max_queued_per_conn > 0
        self._ref: pykka.ActorRef[HubActor] = HubActor.start(hooks, policy, link)
        #: The hub actor's pykka proxy: the same calls, answered with futures.
        self.proxy: Any = self._ref.proxy()

    # -- the API -------------------------------------------------------------------------

    def send_to(
        self, room: RoomID | str, participant: ParticipantID | str, envelope: Envelope
    ) -> Delivery:
        """Deliver ``envelope`` to one member: ``SENT`` if live, ``QUEUED`` if offline."""
        if self._link is not None:
            self._check_shared()
            return self._link.store.send_to(  # type: ignore[no-any-return]
                RoomID(room), ParticipantID(participant), frame_of(envelope).text
            )
        message = m.SendTo(ParticipantID(participant), frame_of(envelope))
        return self._ask_room(RoomID(room), message)  # type: ignore[no-any-return]

    def broadcast(
        self, room: RoomID | str, envelope: Envelope, exclude: Iterable[ParticipantID | str] = ()
    ) -> BroadcastReport:
        """Deliver ``envelope`` to every member but ``exclude``, encoded once for all."""
        # ParticipantID is a NewType: the strings are the ids, no call per id needed.
        skip: frozenset[ParticipantID] = frozenset(exclude)  # type: ignore[arg-type]
        if self._link is not None:
            self._check_shared()
            return self._link.store.broadcast(  # type: ignore[no-any-return]
                RoomID(room), frame_of(envelope).text, skip
            )
        return self._ask_room(RoomID(room), m.Broadcast(frame_of(envelope), skip))  # type: ignore[no-any-return]

    def close_room(self, room: RoomID | str) -> None:
        """Close every connection with 4000, end every membership with ``RoomClosed``."""
        if self._link is not None:
            self._check_shared()
            self._link.close_room(RoomID(room))
            return
        self._ask_room(RoomID(room), CLOSE_ROOM)

    def rooms(self) -> list[RoomID]:
        """Every room that has a member."""
        if self._link is not None:
            self._check_shared()
            return self._link.store.rooms()  # type: ignore[no-any-return]
        return self._ask(lambda: self.proxy.rooms())  # type: ignore[no-any-return]

    def members(self, room: RoomID | str) -> dict[ParticipantID, Presence]:
        """Every member of ``room``, ``ONLINE`` or ``OFFLINE`` (inside its grace period)."""
        if self._link is not None:
            self._check_shared()
            return self._link.store.members(RoomID(room))  # type: ignore[no-any-return]
        return self._ask_room(RoomID(room), m.Members())  # type: ignore[no-any-return]

    def _ask_room(self, room: RoomID, message: Ask) -> Any:
        """Ask ``room``'s actor: directly from a hook of one of its participants (the rule is
        ``hook_room``'s), else after asking the hub actor which actor that room is."""
        here = hook_room.get()
        if here is not None and here.hub is self._ref and here.room == room:
            if not self._ref.is_alive():
                raise HubStopped()
            try:
                return here.ref.ask(message)
            except pykka.ActorDeadError:
                pass  # that room was reaped; the hub knows whether a new one stands there
        return self._ask_room_through_hub(room, message)

    def _ask_room_through_hub(self, room: RoomID, message: Ask) -> Any:
        # Apart from _ask_room: the closures' cells would otherwise be made on every call,
        # hook calls included, and live in flight while the room answers.
        ref: pykka.ActorRef[Any] = self._ask(lambda: self._ref.ask(m.FindRoom(room), block=False))
        return self._ask(lambda: ref.ask(message, block=False))

    def _check_shared(self) -> None:
        # With a backplane the calls go to Redis from the caller's greenlet, not to an actor.
        self._check_thread()
        if not self._ref.is_alive():
            raise HubStopped()

    def _check_thread(self) -> None:
        if _os_thread_id() != self._thread:
            raise WrongThread(
                "wsroom: hub called from another OS thread; call it from a greenlet of the thread "
                "that created it (gevent.monkey.patch_all() makes threads greenlets)"
            )

    def _ask(self, call: Callable[[], Any]) -> Any:
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
        serve_session(
            self._ref,
            self.hooks,
            self.options.rules,
            self.options.connection,
            environ,
            RoomID(room),
            identity,
            resolve,
        )

    # -- shutdown ------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection with 1001, run ``on_leave(..., HubStopped())`` once per member,
        stop every actor. A second call does nothing. From inside a hook, it runs in the
        background (an actor cannot wait for itself).

        It returns within about ``timeout`` seconds whatever the hub's size, and raises nothing:
        what is not done by then (a hook still running, a peer that has not answered its close)
        goes on in the background and is logged.
        """
        if not self._ref.is_alive():
            return
        self._check_thread()
        deadline = time.monotonic() + timeout
        try:
            winding_down: gevent.Greenlet[Any, Any] = self._ref.ask(
                m.StopHub(timeout, gevent.getcurrent()), timeout=timeout
            )
        except pykka.ActorDeadError:
            return
        except pykka.Timeout:
            logger.warning("the hub actor did not answer stop() within %.1fs", timeout)
            return
        except Exception:  # stop() ends a program: it must not raise
            logger.exception("stop() failed")
            return
        if not GeventActor.in_actor():
            # The wind-down keeps the same deadline itself; what it has not finished by then
            # goes on without the caller.
            winding_down.join(timeout=max(deadline - time.monotonic(), 0.0))
