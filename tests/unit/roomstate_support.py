"""Shared helpers for the RoomState tests: a clock the test moves, and a joined member."""

from __future__ import annotations

from wsroom.actors.state import JoinTicket, RoomState
from wsroom.types import ParticipantID, ReconnectPolicy


class FakeClock:
    """A monotonic clock that only moves when the test sets ``now``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def P(name: str) -> ParticipantID:
    return ParticipantID(name)


def make_state(
    grace: float = 10.0, queued: int = 4, now: float = 100.0
) -> tuple[RoomState[str], FakeClock]:
    clock = FakeClock(now)
    return RoomState(ReconnectPolicy(grace, queued), clock), clock


def join(state: RoomState[str], pid: str, conn: str) -> JoinTicket[str]:
    """Begin and complete a join: ``pid`` is a live member on ``conn``."""
    ticket = state.begin_join(P(pid), conn)
    assert state.complete_join(P(pid), ticket.gen) is not None
    return ticket
