"""The plain values of the public API: ids, identities, policies and reports."""

from __future__ import annotations

import enum
from typing import Any, NewType

import attrs

__all__ = [
    "BroadcastReport",
    "Delivery",
    "Identity",
    "JoinContext",
    "ParticipantID",
    "Presence",
    "ReconnectPolicy",
    "RoomID",
]

RoomID = NewType("RoomID", str)
ParticipantID = NewType("ParticipantID", str)


@attrs.frozen
class Identity:
    """Who a connection says it is, before the resolver turns it into a participant."""

    user_id: str = ""
    session_id: str = ""


@attrs.frozen
class JoinContext:
    """What ``on_join`` learns about a join; ``reconnect`` is True inside the grace period."""

    room: RoomID
    participant: ParticipantID
    identity: Identity
    reconnect: bool


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class ReconnectPolicy:
    """How long a disconnected member is kept (seconds) and how many envelopes wait for it."""

    grace_period: float = attrs.field(default=0.0, validator=_non_negative)
    max_queued_per_conn: int = attrs.field(default=0, validator=_non_negative)


class Delivery(enum.Enum):
    """What ``send_to`` did with an envelope."""

    SENT = "sent"
    """Handed to a live connection's outbox."""
    QUEUED = "queued"
    """The participant is offline; kept for its reconnect."""


class Presence(enum.Enum):
    """A member's state as ``members()`` reports it."""

    ONLINE = "online"
    OFFLINE = "offline"
    """Disconnected, inside its grace period."""


@attrs.frozen
class BroadcastReport:
    """What one broadcast did: live deliveries, queued ones, and who had no room left."""

    sent: int = 0
    queued: int = 0
    dropped: tuple[ParticipantID, ...] = ()
