"""The hub actor: the map of rooms, their creation and reaping, and the shutdown."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
import pykka

from wsroom.envelope import Envelope, encode
from wsroom.errors import HubStopped, RoomClosed, RoomNotFound
from wsroom.hooks import HookSet
from wsroom.types import ParticipantID, ReconnectPolicy, RoomID

from . import messages as m
from .room import RoomActor
from .runtime import GeventActor

__all__ = ["Encoded", "HubActor"]

logger = logging.getLogger("wsroom.actors")


@attrs.frozen
class Encoded:
    """An envelope the caller already encoded (the facade encodes in the caller's greenlet)."""

    frame: str


def _frame(envelope: Envelope | Encoded) -> str:
    return envelope.frame if isinstance(envelope, Encoded) else encode(envelope)


class HubActor(GeventActor):
    """Owns the room map. Never waits on a room: requests are forwarded and the room's future
    is the answer (the runtime's futures unwrap a future answered with a future)."""

    def __init__(self, hooks: HookSet, policy: ReconnectPolicy) -> None:
        super().__init__()
        self.hooks = hooks
        self.policy = policy
        self._rooms: dict[RoomID, pykka.ActorRef[Any]] = {}
        self._active: dict[RoomID, None] = {}
        self._participants: set[pykka.ActorRef[Any]] = set()
        # on_leave greenlets of reaped rooms, handed to the next room of the same id.
        self._leaving: dict[RoomID, dict[ParticipantID, Any]] = {}
        self._stopped = False

    # -- the public API, also reachable as hub.proxy ------------------------------------------

    def send_to(
        self, room: RoomID, participant: ParticipantID, envelope: Envelope | Encoded
    ) -> Any:
        """Deliver to one member: a future of ``Delivery``."""
        return self._room(room).ask(m.SendTo(participant, _frame(envelope)), block=False)

    def broadcast(
        self,
        room: RoomID,
        envelope: Envelope | Encoded,
        exclude: Iterable[ParticipantID] = (),
    ) -> Any:
        """Deliver to every member but ``exclude``: a future of ``BroadcastReport``."""
        msg = m.Broadcast(_frame(envelope), frozenset(exclude))
        return self._room(room).ask(msg, block=False)

    def close_room(self, room: RoomID) -> Any:
        """Close a room: a future of None once every connection was told to close."""
        ref = self._room(room)
        future = ref.ask(m.CloseRoom(4000, "room closed", RoomClosed), block=False)
        return future.map(lambda _greenlets: None)

    def rooms(self) -> list[RoomID]:
        """The rooms that have at least one member."""
        self._check_running()
        return list(self._active)

    def members(self, room: RoomID) -> Any:
        """A future of every member's presence."""
        return self._room(room).ask(m.Members(), block=False)

    # -- internal messages ----------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.OpenRoom):
            return self._open_room(message.room)
        if isinstance(message, m.RoomActive):
            if message.room in self._rooms:
                self._active[message.room] = None
        elif isinstance(message, m.RoomGone):
            if self._rooms.get(message.room) == message.ref:
                del self._rooms[message.room]
                self._active.pop(message.room, None)
                message.ref.stop(block=False)
                if message.leaving:
                    self._leaving[message.room] = message.leaving
        elif isinstance(message, m.ParticipantStarted):
            if self._stopped:
                message.ref.tell(m.Shutdown())
            self._participants.add(message.ref)
        elif isinstance(message, m.ParticipantEnded):
            self._participants.discard(message.ref)
        elif isinstance(message, m.StopHub):
            return self._stop_hub()
        return None

    def _open_room(self, room: RoomID) -> pykka.ActorRef[Any]:
        self._check_running()
        ref = self._rooms.get(room)
        if ref is None:
            leaving = self._leaving.pop(room, {})
            ref = RoomActor.start(room, self.actor_ref, self.hooks, self.policy, leaving)
            self._rooms[room] = ref
        return ref

    def _room(self, room: RoomID) -> pykka.ActorRef[Any]:
        self._check_running()
        if room not in self._active:
            raise RoomNotFound()
        return self._rooms[room]

    def _check_running(self) -> None:
        if self._stopped:
            raise HubStopped()

    def _stop_hub(self) -> tuple[list[Any], list[pykka.ActorRef[Any]], list[pykka.ActorRef[Any]]]:
        """Close every room (1001, ``on_leave(HubStopped)``) and tell every participant to end.

        Answers the rooms' futures (each gives the ``on_leave`` greenlets), the room refs and
        the participant refs, for the facade to wait on.
        """
        self._stopped = True
        closing = [
            ref.ask(m.CloseRoom(1001, "hub stopped", HubStopped, must_exist=False), block=False)
            for ref in self._rooms.values()
        ]
        rooms = list(self._rooms.values())
        self._rooms.clear()
        self._active.clear()
        for ref in self._participants:
            ref.tell(m.Shutdown())
        return closing, rooms, list(self._participants)
