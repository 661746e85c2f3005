"""wsroom: a WebSocket room hub on gevent and pykka actors.

Rooms, targeted sends, broadcasts with an exclude list, reconnect grace periods with a bounded
queue per participant, and the hooks ``on_join`` / ``on_message`` / ``on_leave``.
"""

from __future__ import annotations

from .envelope import Envelope
from .errors import (
    BackplaneUnavailable,
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

# setup.cfg maps the folders actors/ and transport/ into the package only when it is installed.
# Run from a checkout's root, Python imports the source folder wsroom/ without them, and the bare
# "No module named 'wsroom.actors'" would not say why or what to do.
try:
    from .emitter import Emitter, emitter
    from .hooks import Client, Hooks
    from .hub import Hub, new_hub
except ModuleNotFoundError as exc:
    if exc.name not in ("wsroom.actors", "wsroom.transport"):
        raise
    raise ImportError(
        f"wsroom was imported from the source folder {__path__[0]} of a checkout,"
        " which lacks wsroom.actors and wsroom.transport: their folders actors/ and transport/"
        " are mapped into the package only by installation. Install the checkout with"
        " `pip install -e .`, or, if wsroom is installed, run from another directory so that"
        " the installed copy is imported.",
        name=exc.name,
    ) from exc

__all__ = [
    "BackplaneUnavailable",
    "BadEnvelope",
    "BroadcastReport",
    "Client",
    "CloseConnection",
    "Delivery",
    "Disconnected",
    "Emitter",
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
    "emitter",
    "new_hub",
]

__version__ = "0.1.0"
