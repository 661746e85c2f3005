"""Two hubs on one backplane in the test process: the fixture and helpers the in-process
backplane tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Live, Recorder

import wsroom

Start = Callable[..., Live]


class PresenceRecorder(Recorder):
    def on_presence(self, room: str, participant: str, presence: wsroom.Presence) -> None:
        self.events.append(("presence", participant, presence.name))


@pytest.fixture
def pair(make_live: Start, redis_url: str) -> Callable[..., tuple[Live, Live]]:
    def start(grace: float = 5.0, queued: int = 16, **options: Any) -> tuple[Live, Live]:
        kw = {"backplane": redis_url, "heartbeat_interval": 0.3, "dead_after": 1.5, **options}
        a = make_live(grace=grace, queued=queued, hooks=PresenceRecorder(), **kw)
        b = make_live(grace=grace, queued=queued, hooks=PresenceRecorder(), **kw)
        return a, b

    return start


def joined(live: Live, user: str, room: str = "lobby") -> Callable[[], bool]:
    def check() -> bool:
        try:
            return user in live.hub.members(room)
        except wsroom.RoomNotFound:
            return False

    return check


def events(*lives: Live, kind: str) -> list[tuple[Any, ...]]:
    return [e for live in lives for e in live.hooks.events if e[0] == kind]


