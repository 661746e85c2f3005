"""The messages the three owners send each other (internal; users go through the facade).

Each is an ``Ask`` (answered; the sender waits) or a ``Tell`` (fire and forget). Asks go one
way only: participant → hub or room, facade → hub or room, hub → room; never back up.
"""

from __future__ import annotations

from typing import Any

import attrs

from wsroom.errors import LeaveReason
from wsroom.types import ParticipantID, RoomID
from wsroom.wire import OutFrame

from .runtime import Ask, Tell

# -- to the hub actor ---------------------------------------------------------------------


@attrs.frozen
class OpenRoom(Ask):
    """The room actor for ``room``, created if there is none (a join is about to begin)."""

    room: RoomID


@attrs.frozen
class FindRoom(Ask):
    """The room actor for ``room`` if it has a member, else ``RoomNotFound``."""

    room: RoomID


@attrs.frozen
class RoomActive(Tell):
    """``room`` has its first member (it now shows in ``rooms()``)."""

    room: RoomID


@attrs.frozen
class RoomGone(Tell):
    """``room`` has no member and no join in flight, or was closed; reap it.

    ``leaving`` holds the ``on_leave`` greenlets still running, by participant: the room made
    next for the same id makes a new join of that participant wait for its leave.
    """

    room: RoomID
    ref: Any
    leaving: dict[ParticipantID, Any] = attrs.field(factory=dict)


@attrs.frozen
class ParticipantStarted(Tell):
    """A participant actor exists (so ``stop`` can close and await it)."""

    ref: Any


@attrs.frozen
class ParticipantEnded(Tell):
    """A participant actor is done."""

    ref: Any


@attrs.frozen
class StopHub(Ask):
    """Close every room and connection, then stop every actor within ``timeout`` seconds.

    Answers the greenlet doing it, for the caller to join; ``caller`` (a hook's greenlet calling
    ``stop()``) is not waited for, since it waits for the shutdown itself.
    """

    timeout: float
    caller: Any = None


# -- to a room actor ----------------------------------------------------------------------


@attrs.frozen
class Admission:
    """The answer to ``BeginJoin``: the ticket, and the previous membership's ``on_leave``
    greenlet if it still runs (the joiner waits for it before its ``on_join``)."""

    ticket: Any
    after: Any = None


@attrs.frozen
class BeginJoin(Ask):
    """``pid`` has a new connection; answer an ``Admission``, or raise ``RoomIsGone``.

    ``resume`` (a ``NumberedJoin``) comes with a resume connection (contract §7)."""

    pid: ParticipantID
    conn: Any
    resume: Any = None


@attrs.frozen
class CompleteJoin(Ask):
    """``on_join`` returned; answer None, or the ``LeaveReason`` if the room closed meanwhile."""

    pid: ParticipantID
    gen: int


@attrs.frozen
class FailJoin(Tell):
    """``on_join`` raised ``reason``."""

    pid: ParticipantID
    gen: int
    reason: BaseException


@attrs.frozen
class Disconnect(Tell):
    """Connection ``gen`` of ``pid`` ended with ``code`` and ``reason``."""

    pid: ParticipantID
    gen: int
    code: int
    reason: str


@attrs.frozen
class SendTo(Ask):
    """Deliver one frame to ``pid``; answer a ``Delivery``."""

    pid: ParticipantID
    frame: OutFrame


@attrs.frozen
class Broadcast(Ask):
    """Deliver one frame to every member but ``exclude``; answer a ``BroadcastReport``."""

    frame: OutFrame
    exclude: frozenset[ParticipantID]


@attrs.frozen
class Members(Ask):
    """Every member's presence."""


@attrs.frozen
class CloseRoom(Ask):
    """Close every connection with ``code`` and end every membership with ``reason``.

    Answers the greenlets running the ``on_leave`` hooks, so ``stop`` can wait for them.
    """

    code: int
    text: str
    reason: type[LeaveReason]
    must_exist: bool = True  # close_room of a room without members is RoomNotFound


@attrs.frozen
class Flush(Tell):
    """From a connection's writer: its outbox drained; hand it more of its backlog."""

    pid: ParticipantID
    gen: int


@attrs.frozen
class Expire(Tell):
    """From the room's own timer: end the memberships whose grace period is over."""


@attrs.frozen
class StreamEntries(Tell):
    """From the backplane's reader: the room stream's next entries, in order (a shared room)."""

    entries: list[Any]


@attrs.frozen
class HandoverLate(Tell):
    """From a shared room's own timer: connection ``gen`` of ``pid`` still waits for a replaced
    connection's handover."""

    pid: ParticipantID
    gen: int


@attrs.frozen
class Evicted(Tell):
    """From the backplane's link: the other processes declared this one dead; drop every
    connection of the room (1012) without reporting it, so its clients reconnect."""


@attrs.frozen
class RetryReports(Tell):
    """From a shared room's own timer: try again the reports the backplane did not take."""


@attrs.frozen
class Start(Tell):
    """Join the room and run ``on_join``."""


@attrs.frozen
class Inbound(Tell):
    """One whole inbound text message, in frame order."""

    text: str


@attrs.frozen
class Ended(Tell):
    """The connection is over; report it to the room and stop."""

    code: int
    reason: str


@attrs.frozen
class Shutdown(Tell):
    """The hub is stopping; close the connection with 1001."""


@attrs.frozen
class NumberedInbound(Tell):
    """One whole inbound text message of a resume connection (contract §7), in frame order."""

    text: str


@attrs.frozen
class FirstFrameLate(Tell):
    """From a resume connection's own timer: no first frame came; the join starts afresh."""


class RoomIsGone(Exception):
    """A room actor refused a join because it is being reaped; the joiner asks the hub again."""
