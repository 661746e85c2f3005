"""wsroom: a WebSocket room hub on gevent and pykka actors.

Rooms, targeted sends, broadcasts with an exclude list, reconnect grace periods with a bounded
queue per participant, and the hooks ``on_join`` / ``on_message`` / ``on_leave``.
"""

from __future__ import annotations

from .envelope import Envelope
from .errors import (
    BadEnvelope,
    CloseConnection,
    Disconnected,
    GraceExpired,
    HandshakeRejected,
    HubStopped,
    LeaveReason,
    MissingParticipantID,
    ParticipantNotFound,
    ParticipantOffline,
    ResolverRejected,
    RoomClosed,
    RoomNotFound,
    WrongThread,
    WsroomError,
)
from .hooks import Client, Hooks
from .hub import Hub, new_hub
from .types import (
    BroadcastReport,
    Delivery,
    Identity,
    JoinContext,
    ParticipantID,
    Presence,
    ReconnectPolicy,
    RoomID,
)

__all__ = [
    "BadEnvelope",
    "BroadcastReport",
    "Client",
    "CloseConnection",
    "Delivery",
    "Disconnected",
    "Envelope",
    "GraceExpired",
    "HandshakeRejected",
    "Hooks",
    "Hub",
    "HubStopped",
    "Identity",
    "JoinContext",
    "LeaveReason",
    "MissingParticipantID",
    "ParticipantID",
    "ParticipantNotFound",
    "ParticipantOffline",
    "Presence",
    "ReconnectPolicy",
    "ResolverRejected",
    "RoomClosed",
    "RoomID",
    "RoomNotFound",
    "WrongThread",
    "WsroomError",
    "new_hub",
]

__version__ = "0.1.0"
