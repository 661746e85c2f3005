"""The emitter: the hub's API for processes that serve no sockets (a task queue worker, a cron
script, a view in an ordinary web worker), through the same backplane.

Plain blocking Redis calls: no gevent loop, no monkey-patching, no actor.
"""

from __future__ import annotations

from collections.abc import Iterable

from .envelope import Envelope, encode
from .types import BroadcastReport, Delivery, ParticipantID, Presence, RoomID

__all__ = ["Emitter", "emitter"]


class Emitter:
    """``send_to``, ``broadcast``, ``close_room``, ``rooms`` and ``members`` with the hub's
    results and errors, from any process that can reach the hub's Redis.

    ``close_room`` ends the memberships at once; a hub process runs their ``on_leave``.
    Every call raises ``BackplaneUnavailable`` when Redis cannot be reached within ``timeout``.
    """

    def __init__(self, url: str, timeout: float = 8.0) -> None:
        try:
            from .backplane.store import Store, connect
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "wsroom.emitter needs the redis client: pip install 'wsroom[redis]'"
            ) from exc
        self._store = Store(connect(url, gevent_sockets=False), timeout)

    def send_to(
        self, room: RoomID | str, participant: ParticipantID | str, envelope: Envelope
    ) -> Delivery:
        """Deliver to one member: ``SENT`` if live (on whichever process), ``QUEUED`` if offline."""
        return self._store.send_to(RoomID(room), ParticipantID(participant), encode(envelope))

    def broadcast(
        self, room: RoomID | str, envelope: Envelope, exclude: Iterable[ParticipantID | str] = ()
    ) -> BroadcastReport:
        """Deliver to every member of ``room`` but ``exclude``."""
        skip = frozenset(ParticipantID(p) for p in exclude)
        return self._store.broadcast(RoomID(room), encode(envelope), skip)

    def close_room(self, room: RoomID | str) -> None:
        """Close every connection of ``room`` with 4000 and end every membership."""
        self._store.close_room(RoomID(room), 4000, "room closed", run_here=False)

    def rooms(self) -> list[RoomID]:
        """Every room with a member."""
        return self._store.rooms()

    def members(self, room: RoomID | str) -> dict[ParticipantID, Presence]:
        """Every member of ``room``, ``ONLINE`` or ``OFFLINE``."""
        return self._store.members(RoomID(room))

    def close(self) -> None:
        """Let go of the Redis connections."""
        self._store.client.connection_pool.disconnect()


def emitter(url: str, timeout: float = 8.0) -> Emitter:
    """An ``Emitter`` for the backplane at ``url`` (``redis://host:6379/0``)."""
    return Emitter(url, timeout)
