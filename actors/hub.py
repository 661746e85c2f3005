"""The hub actor: the map of rooms, their creation and reaping, and the shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import gevent
import pykka

from wsroom.envelope import Envelope
from wsroom.errors import HubStopped, RoomClosed, RoomNotFound
from wsroom.hooks import HookSet
from wsroom.types import ParticipantID, ReconnectPolicy, RoomID
from wsroom.wire import frame_of

from . import messages as m
from .room import RoomActor
from .runtime import Ask, GeventActor, TellOnlyActor, handles, tell_quietly
from .shared_room import SharedRoomActor

__all__ = ["CLOSE_ROOM", "HubActor"]

logger = logging.getLogger("wsroom.actors")


class HubActor(GeventActor):
    """Owns the room map and the shutdown. Never waits on a room inside its mailbox."""

    def __init__(self, hooks: HookSet, policy: ReconnectPolicy, link: Any = None) -> None:
        super().__init__()
        self.hooks = hooks
        self.policy = policy
        # The backplane's link (``wsroom.backplane.Link``), or None for a hub of one process:
        # with it, rooms are shared and the API's calls go to Redis, not to a room actor.
        self.link = link
        self._rooms: dict[RoomID, pykka.ActorRef[Any]] = {}
        self._active: dict[RoomID, None] = {}  # rooms with a member, in order of creation
        self._participants: set[TellOnlyActor] = set()  # participant actors (not in pykka's)
        # on_leave greenlets of reaped rooms, handed to the next room of the same id.
        self._leaving: dict[RoomID, dict[ParticipantID, Any]] = {}
        self._stopping: gevent.Greenlet[Any, Any] | None = None

    # -- hub.proxy: the public calls as futures (the facade asks FindRoom instead) ------------
    # Each answers with the room actor's future rather than wait on it in this mailbox; the
    # runtime's future unwraps it.

    def send_to(self, room: RoomID, participant: ParticipantID, envelope: Envelope) -> Any:
        """Deliver to one member: a future of ``Delivery``."""
        if self.link is not None:
            self._check_running()
            return self.link.store.send_to(room, participant, frame_of(envelope).text)
        return self._ask_room(room, m.SendTo(participant, frame_of(envelope)))

    def broadcast(
        self, room: RoomID, envelope: Envelope, exclude: Iterable[ParticipantID] = ()
    ) -> Any:
        """Deliver to every member but ``exclude``: a future of ``BroadcastReport``."""
        if self.link is not None:
            self._check_running()
            return self.link.store.broadcast(room, frame_of(envelope).text, exclude)
        return self._ask_room(room, m.Broadcast(frame_of(envelope), frozenset(exclude)))

    def close_room(self, room: RoomID) -> Any:
        """Close a room: a future of None once every connection was told to close."""
        if self.link is not None:
            self._check_running()
            return self.link.close_room(room)
        future = self._ask_room(room, CLOSE_ROOM)
        return future.map(lambda _greenlets: None)

    def rooms(self) -> list[RoomID]:
        """The rooms that have at least one member."""
        self._check_running()
        if self.link is not None:
            rooms: list[RoomID] = self.link.store.rooms()
            return rooms
        return list(self._active)

    def members(self, room: RoomID) -> Any:
        """A future of every member's presence."""
        if self.link is not None:
            self._check_running()
            return self.link.store.members(room)
        return self._ask_room(room, m.Members())

    def _ask_room(self, room: RoomID, message: Ask) -> Any:
        return self._find_room(m.FindRoom(room)).ask(message, block=False)

    # -- rooms ----------------------------------------------------------------------------

    @handles(m.FindRoom)
    def _find_room(self, msg: m.FindRoom) -> pykka.ActorRef[Any]:
        self._check_running()
        if msg.room not in self._active:
            raise RoomNotFound()
        return self._rooms[msg.room]

    @handles(m.OpenRoom)
    def _open_room(self, msg: m.OpenRoom) -> pykka.ActorRef[Any]:
        self._check_running()
        ref = self._rooms.get(msg.room)
        if ref is None:
            if self.link is not None:
                ref = SharedRoomActor.start(
                    msg.room, self.actor_ref, self.hooks, self.policy, self.link
                )
            else:
                leaving = self._leaving.pop(msg.room, {})
                ref = RoomActor.start(msg.room, self.actor_ref, self.hooks, self.policy, leaving)
            self._rooms[msg.room] = ref
        return ref

    @handles(m.RoomActive)
    def _room_active(self, msg: m.RoomActive) -> None:
        if msg.room in self._rooms:
            self._active[msg.room] = None

    @handles(m.RoomGone)
    def _room_gone(self, msg: m.RoomGone) -> None:
        if self._rooms.get(msg.room) != msg.ref:
            return
        del self._rooms[msg.room]
        self._active.pop(msg.room, None)
        msg.ref.stop(block=False)
        if msg.leaving:
            self._leaving[msg.room] = msg.leaving

    @handles(m.ParticipantStarted)
    def _participant_started(self, msg: m.ParticipantStarted) -> None:
        if self._stopping is not None:
            msg.ref.tell(m.Shutdown())
        self._participants.add(msg.ref)

    @handles(m.ParticipantEnded)
    def _participant_ended(self, msg: m.ParticipantEnded) -> None:
        self._participants.discard(msg.ref)

    def _check_running(self) -> None:
        if self._stopping is not None:
            raise HubStopped()

    # -- shutdown -------------------------------------------------------------------------

    @handles(m.StopHub)
    def _stop_hub(self, msg: m.StopHub) -> gevent.Greenlet[Any, Any]:
        """Close every room (1001, ``on_leave(HubStopped)``) and answer the greenlet that waits
        for it, then tells every participant to end and stops every actor, this one last.

        The waiting happens outside this mailbox, so hooks still running (``on_leave`` may call
        the hub) get their ``HubStopped`` answers instead of a deadlock.
        """
        if self._stopping is not None:
            return self._stopping
        closing = [
            ref.ask(m.CloseRoom(1001, "hub stopped", HubStopped, must_exist=False), block=False)
            for ref in self._rooms.values()
        ]
        rooms = list(self._rooms.values())
        participants = list(self._participants)
        self._rooms.clear()
        self._active.clear()
        # The participants are told to shut down by the wind-down, once the rooms have closed
        # (and closed their members' connections): their 10,000 wake-ups would otherwise be
        # scheduled ahead of the rooms' on_leave calls.
        self._stopping = gevent.spawn(
            _wind_down, closing, [participants, rooms, [self.actor_ref]], msg, self.link
        )
        return self._stopping


CLOSE_ROOM = m.CloseRoom(4000, "room closed", RoomClosed)
"""``close_room``'s request: 4000 to every connection, ``RoomClosed`` to every member."""


def _wind_down(
    closing: list[Any],
    stages: Sequence[Sequence[pykka.ActorRef[Any] | TellOnlyActor]],
    msg: m.StopHub,
    link: Any = None,
) -> None:
    """Wait for the rooms' ``on_leave`` hooks, then stop the actors stage by stage (the
    participants, which report to rooms; the rooms; this hub actor), within the time.

    One deadline for all of it: past it nothing more is waited for (the actors left are told
    to stop and end on their own), so 10,000 members cost no more than ``msg.timeout``. A
    stage's actors are all told at once and their waits overlap, instead of one round trip per
    actor. Nothing escapes: this greenlet ends normally, whatever failed.
    """
    deadline = time.monotonic() + msg.timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 0.0)

    hooks: list[gevent.Greenlet[Any, Any]] = []
    for future in closing:
        try:
            hooks.extend(future.get(timeout=left()))
        except pykka.Timeout:
            logger.warning("a room did not close within the stop timeout")
        except (RoomNotFound, pykka.ActorDeadError):
            pass  # reaped meanwhile: nothing was left to close
        except Exception:
            logger.exception("a room failed to close")
    running = [g for g in hooks if g is not msg.caller]
    if running and left() > 0:
        gevent.joinall(running, timeout=left())
    late = sum(1 for g in running if not g.dead)
    if late:
        logger.warning("%d on_leave hooks still running at the stop timeout", late)
    participants = stages[0]
    for ref in participants:
        tell_quietly(ref, m.Shutdown())
    # Each participant finishes the hook it is in, then stops; its socket completes the close
    # handshake on its own (bounded by close_timeout).
    stuck = 0
    for stage in stages:
        stopping: list[tuple[pykka.ActorRef[Any] | TellOnlyActor, Any]] = []
        for ref in stage:
            try:
                stopping.append((ref, ref.stop(block=False)))
            except pykka.ActorDeadError:
                pass
        for ref, future in stopping:
            if not ref.is_alive():
                continue
            try:
                future.get(timeout=left())
            except pykka.Timeout:
                stuck += 1
            except Exception:
                logger.exception("%s failed to stop", ref)
    if stuck:
        logger.warning(
            "%d actors did not stop within the stop timeout; they end on their own", stuck
        )
    if link is not None:
        link.stop()
