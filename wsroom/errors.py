"""The exceptions a user can catch, and the leave reasons passed to ``on_leave``."""

from __future__ import annotations

__all__ = [
    "BackplaneUnavailable",
    "BadEnvelope",
    "CloseConnection",
    "Disconnected",
    "GraceExpired",
    "HandshakeRejected",
    "HubStopped",
    "LeaveReason",
    "MissingParticipantID",
    "ParticipantNotFound",
    "ParticipantOffline",
    "ResolverRejected",
    "RoomClosed",
    "RoomNotFound",
    "WrongThread",
    "WsroomError",
]


# RFC 6455 §7.4: the codes an endpoint may put in a close frame below the private range.
_SENDABLE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


class WsroomError(Exception):
    """Base of every error the library raises."""


class _FixedText(WsroomError):
    """An error whose text is fixed, matching the Go package word for word."""

    text = ""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.text,)))

    def __str__(self) -> str:
        return self.text


class RoomNotFound(_FixedText):
    """The room does not exist (never joined, emptied, or closed)."""

    text = "wsroom: room not found"


class ParticipantNotFound(_FixedText):
    """The participant is not a member of the room."""

    text = "wsroom: participant not found"


class ParticipantOffline(_FixedText):
    """The participant is offline and its queue is full, or queueing is off."""

    text = "wsroom: participant offline"


class ResolverRejected(_FixedText):
    """The resolver raised; the original exception is the ``__cause__``."""

    text = "wsroom: resolver rejected participant"


class MissingParticipantID(_FixedText):
    """The resolver returned an empty participant id."""

    text = "wsroom: empty participant id"


class BadEnvelope(WsroomError, ValueError):
    """An envelope that cannot be decoded or encoded; the text says where and why."""


class HandshakeRejected(WsroomError):
    """The request is no acceptable WebSocket upgrade.

    ``status`` is the HTTP status the transport answers with, ``reason`` a one-line text and
    ``headers`` any extra response headers (``Sec-WebSocket-Version`` for a bad version).
    """

    def __init__(
        self, reason: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers


class BackplaneUnavailable(WsroomError):
    """The backplane (Redis) could not be reached within the hub's bounded wait
    (``backplane_timeout``); the call did not take effect, or its effect is unknown."""


class WrongThread(WsroomError, RuntimeError):
    """A hub method was called from an OS thread other than the one running the hub's gevent
    loop. Hub calls must come from greenlets of that thread (monkey-patched threads are)."""


class LeaveReason(WsroomError):
    """Base of the reasons passed to ``on_leave``."""


class Disconnected(LeaveReason):
    """The connection ended with ``code`` and ``reason`` and no grace period kept the member."""

    def __init__(self, code: int = 1005, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"wsroom: disconnected ({self.code}{' ' + self.reason if self.reason else ''})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Disconnected)
            and (other.code, other.reason) == (self.code, self.reason)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.reason))


class GraceExpired(LeaveReason):
    """The grace period ran out before a reconnect; ``__cause__`` is the ``Disconnected``."""

    def __str__(self) -> str:
        return "wsroom: grace period expired"


class RoomClosed(LeaveReason):
    """The room was closed with ``close_room``."""

    def __str__(self) -> str:
        return "wsroom: room closed"


class HubStopped(LeaveReason):
    """The hub is stopped: raised by calls after ``stop``, and passed to ``on_leave`` by it."""

    def __str__(self) -> str:
        return "wsroom: hub stopped"


class CloseConnection(WsroomError):
    """Raise from a hook to close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str = "") -> None:
        if not (code in _SENDABLE_CODES or 3000 <= code <= 4999):
            raise ValueError(f"close code {code} may not be sent")
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"close connection ({self.code}{' ' + self.reason if self.reason else ''})"
