"""What the application plugs in: the three hooks, and the client handle ``on_join`` gets."""

from __future__ import annotations

from typing import Protocol

from .envelope import Envelope
from .errors import CloseConnection
from .types import Identity, JoinContext, ParticipantID, Presence, RoomID
from .wire import OutFrame, frame_of

__all__ = ["Client", "HookSet", "Hooks", "Resolver"]


class Hooks:
    """No-op hooks to subclass; any object with the same three methods works too.

    Hooks run in greenlets of the hub, never inside a room's mailbox, so they may call any hub
    method (their own room included) and may block cooperatively.
    """

    def on_join(self, jc: JoinContext, client: Client) -> None:
        """A connection joined (``jc.reconnect`` inside the grace period). Raise
        ``CloseConnection`` (or anything, for 1008) to refuse it."""

    def on_message(self, room: RoomID, participant: ParticipantID, envelope: Envelope) -> None:
        """One inbound envelope, in frame order, one at a time per participant."""

    def on_leave(self, room: RoomID, participant: ParticipantID, reason: BaseException) -> None:
        """A membership ended, exactly once: ``Disconnected``, ``GraceExpired``, ``RoomClosed``,
        ``HubStopped``, or the exception a rejected reconnect's ``on_join`` raised."""

    def on_presence(self, room: RoomID, participant: ParticipantID, presence: Presence) -> None:
        """Optional: a member went ``OFFLINE`` (its connection ended; it is inside its grace
        period) or is back ``ONLINE`` (its reconnect's ``on_join`` returned). Not called for a
        first join or a leave: ``on_join`` and ``on_leave`` say those."""


class HookSet(Protocol):
    """The shape of a hooks object (``on_presence`` is optional and looked up by name)."""

    def on_join(self, jc: JoinContext, client: Client) -> None: ...

    def on_message(self, room: RoomID, participant: ParticipantID, envelope: Envelope) -> None: ...

    def on_leave(self, room: RoomID, participant: ParticipantID, reason: BaseException) -> None: ...


class Resolver(Protocol):
    """Turns a room and an identity into a participant id, before the upgrade."""

    def __call__(self, room: RoomID, identity: Identity, /) -> ParticipantID | str: ...


class _Sink(Protocol):
    """A connection's entry points (``wsroom.transport.connection.Connection``)."""

    @property
    def closing(self) -> bool: ...

    def push(self, frame: OutFrame) -> bool: ...

    def close(self, code: int, reason: str = "", linger: float | None = None) -> None: ...


class Client:
    """One connection, as ``on_join`` sees it: send to it directly, or close it."""

    __slots__ = ("_sink",)

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink

    def send(self, envelope: Envelope) -> bool:
        """Write ``envelope`` to this connection, ahead of anything queued for a reconnect.

        Returns False when the connection is closing or its outbox is full (then it is closed
        with 4008 ``slow consumer``). Raises ``BadEnvelope`` for an envelope that cannot be encoded.
        """
        frame = frame_of(envelope)
        if self._sink.closing:
            return False
        return self._sink.push(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close this connection with ``code``; the membership then follows the usual rules."""
        CloseConnection(code, reason)  # validates the code
        self._sink.close(code, reason)
