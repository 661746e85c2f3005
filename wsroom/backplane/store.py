"""The shared state's operations: one call of a Lua script each, with a bounded wait.

Synchronous and loop-agnostic: the hub gives it a client on gevent sockets, the emitter a plain
one. Every call carries a call id, so retrying after a lost reply never applies a change twice,
and every call gives up with ``BackplaneUnavailable`` once ``timeout`` seconds have passed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import redis

from wsroom.errors import (
    BackplaneUnavailable,
    ParticipantNotFound,
    ParticipantOffline,
    RoomNotFound,
    WsroomError,
)
from wsroom.types import BroadcastReport, Delivery, ParticipantID, Presence, RoomID

from .scripts import SCRIPTS

__all__ = ["Joined", "Store", "connect", "room_stream", "stream_room"]

logger = logging.getLogger("wsroom.backplane")

_ERRORS: dict[str, type[WsroomError]] = {
    "RoomNotFound": RoomNotFound,
    "ParticipantNotFound": ParticipantNotFound,
    "ParticipantOffline": ParticipantOffline,
}
_READ_ONLY = frozenset({"members", "rooms", "heartbeat"})
"""Scripts that change nothing (or the same thing however often): no call id, no kept answer."""
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError)


def room_stream(room: str) -> str:
    """The key of a room's stream."""
    return f"wsroom:r:{{{room}}}:s"


def stream_room(key: str) -> str:
    """The room a stream key belongs to."""
    return key[len("wsroom:r:{") : -len("}:s")]


def connect(url: str, *, gevent_sockets: bool, socket_timeout: float = 2.0) -> redis.Redis:
    """A client for ``url`` that answers text, times out, and leaves retrying to ``Store``."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 2.0),
        "retry": None,
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }
    if gevent_sockets:
        from ._redis_gevent import GeventConnection

        kwargs["connection_class"] = GeventConnection
    pool = redis.ConnectionPool.from_url(url, **kwargs)
    return redis.Redis(connection_pool=pool)


@attrs.frozen
class Joined:
    """``begin_join``'s answer: the connection's generation, whether it is a reconnect, and the
    room stream's last entry at that moment (where this process starts reading the room)."""

    gen: int
    reconnect: bool
    tail: str


class Store:
    """The hub's shared state in Redis, through the scripts in ``scripts.py``."""

    def __init__(self, client: redis.Redis, timeout: float, sleep: Any = time.sleep) -> None:
        self.client = client
        self.timeout = timeout
        self._sleep = sleep
        self._scripts = {name: client.register_script(text) for name, text in SCRIPTS.items()}

    def run(self, name: str, *args: Any) -> Any:
        """Run one script; retry on a lost connection until ``timeout``, then raise
        ``BackplaneUnavailable``. The call id makes a retry return the first run's answer."""
        call_id = "" if name in _READ_ONLY else os.urandom(9).hex()
        argv = [call_id, *args]
        script = self._scripts[name]
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            try:
                answer = json.loads(script(keys=[], args=argv, client=self.client))
            except _UNREACHABLE as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackplaneUnavailable(
                        f"wsroom: backplane unreachable for {self.timeout:.1f}s ({exc})"
                    ) from exc
                self._sleep(min(pause, left))
                pause = min(pause * 2, 0.5)
                continue
            except redis.ResponseError as exc:
                if "LOADING" in str(exc) or "BUSY" in str(exc):
                    if time.monotonic() > deadline:
                        raise BackplaneUnavailable(f"wsroom: backplane not ready ({exc})") from exc
                    self._sleep(pause)
                    continue
                raise
            if isinstance(answer, dict) and "err" in answer:
                raise _ERRORS[answer["err"]]()
            return answer

    # -- the API's calls ------------------------------------------------------------------

    def broadcast(
        self, room: RoomID, text: str, exclude: Iterable[ParticipantID] = ()
    ) -> BroadcastReport:
        """Publish once to the room's stream; queue for the members without a live connection."""
        answer = self.run("broadcast", room, text, json.dumps(sorted(exclude)))
        return BroadcastReport(
            sent=int(answer["sent"]),
            queued=int(answer["queued"]),
            dropped=tuple(ParticipantID(p) for p in _list(answer["dropped"])),
        )

    def send_to(self, room: RoomID, pid: ParticipantID, text: str) -> Delivery:
        """Publish to one member (``SENT``) or queue for it (``QUEUED``)."""
        return Delivery[self.run("send_to", room, pid, text)["delivery"]]

    def close_room(self, room: RoomID, code: int, text: str, run_here: bool) -> list[ParticipantID]:
        """End every membership; answer the members whose ``on_leave`` the caller runs (none when
        ``run_here`` is False: a hub process picks them up from the events list)."""
        answer = self.run("close_room", room, code, text, "1" if run_here else "0")
        return [ParticipantID(p) for p in _list(answer["leaves"])]

    def members(self, room: RoomID) -> dict[ParticipantID, Presence]:
        """Every member of the room and its presence."""
        answer = self.run("members", room)["members"]
        return {ParticipantID(p): Presence[v] for p, v in (answer or {}).items()}

    def rooms(self) -> list[RoomID]:
        """Every room with a member."""
        return sorted(RoomID(r) for r in _list(self.run("rooms")["rooms"]))

    # -- a hub process's calls --------------------------------------------------------------

    def begin_join(
        self, room: RoomID, pid: ParticipantID, proc: str, grace: float, max_queued: int
    ) -> Joined:
        answer = self.run("begin_join", room, pid, proc, round(grace * 1000), max_queued)
        return Joined(int(answer["gen"]), bool(answer["reconnect"]), str(answer["tail"]))

    def complete_join(
        self, room: RoomID, pid: ParticipantID, gen: int, numbered: bool = False
    ) -> dict[str, Any]:
        """``on_join`` returned: live, with the queue to flush (``frames``); a ``numbered``
        (resume) connection also gets the queue's numbering (``n``, see ``scripts.py``; None when
        the membership was not numbered) and whether its first join follows an expiry."""
        answer: dict[str, Any] = self.run("complete_join", room, pid, gen, "1" if numbered else "0")
        if "frames" in answer:
            answer["frames"] = _list(answer["frames"])
            seq = answer.get("n")
            answer["n"] = seq if isinstance(seq, dict) else ({} if seq == [] else None)
        return answer

    def hold(
        self,
        room: RoomID,
        pid: ParticipantID,
        gen: int,
        after: str,
        rest: Sequence[str],
        meta: dict[str, int] | None = None,
    ) -> None:
        """The outbox filled while flushing: ``rest``, then what the stream carried for it after
        ``after``, go back to the queue, which takes its sends again until the next flush."""
        self.run("hold", room, pid, gen, after, _meta(meta), *rest)

    def fail_join(self, room: RoomID, pid: ParticipantID, gen: int) -> bool:
        """``on_join`` raised: True when that ended a membership (a reconnect's)."""
        return bool(self.run("fail_join", room, pid, gen).get("joined"))

    def go_offline(
        self,
        room: RoomID,
        pid: ParticipantID,
        gen: int,
        proc: str,
        after: str,
        code: int,
        reason: str,
        unsent: Sequence[str],
        handoff: bool = False,
        meta: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Connection ``gen`` ended: OFFLINE for the grace period (or the membership ends), with
        ``unsent`` and what it missed after ``after`` at its queue's head. With ``handoff`` (this
        process is leaving) the hook calls it causes go to the events list for another hub.
        ``meta`` comes from a resume connection: its sequence, ``unsent`` being its
        unacknowledged frames (see ``scripts.py``)."""
        answer: dict[str, Any] = self.run(
            "go_offline",
            room,
            pid,
            gen,
            proc,
            after,
            code,
            reason,
            "1" if handoff else "0",
            _meta(meta),
            *unsent,
        )
        return answer

    def handover(
        self,
        room: RoomID,
        pid: ParticipantID,
        proc: str,
        old_gen: int,
        after: str,
        unsent: Sequence[str],
        meta: dict[str, int] | None = None,
    ) -> None:
        """A replaced connection hands over what it never wrote (``meta``: as for
        ``go_offline``)."""
        self.run("handover", room, pid, proc, old_gen, after, _meta(meta), *unsent)

    def drop_handovers(self, room: RoomID, pid: ParticipantID) -> None:
        self.run("drop_handovers", room, pid)

    def heartbeat(self, proc: str) -> bool:
        """This process is alive; True when it was not on the list (new, or declared dead)."""
        return bool(self.run("heartbeat", proc)["revived"])

    def expire(self, limit: int = 200) -> dict[str, Any]:
        answer: dict[str, Any] = self.run("expire", limit)
        answer["leaves"] = _list(answer["leaves"])
        return answer

    def reap_dead(self, dead_after: float, proc: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.run("reap_dead", int(dead_after * 1000), proc)
        answer["offline"] = _list(answer["offline"])
        answer["left"] = _list(answer["left"])
        return answer

    def leave_proc(self, proc: str) -> None:
        self.run("leave_proc", proc)

    def take_events(self, limit: int = 200) -> list[list[Any]]:
        """Hook calls handed to any hub: ``["closed", room, pid]`` (``on_leave(RoomClosed)``),
        ``["offline", room, pid]`` (``on_presence(OFFLINE)``), ``["left", room, pid, code,
        reason]`` (``on_leave(Disconnected)``)."""
        return _list(self.run("take_events", limit)["events"])


def _meta(meta: dict[str, int] | None) -> str:
    return "" if meta is None else json.dumps(meta, separators=(",", ":"))


def _list(value: Any) -> list[Any]:
    # cjson encodes an empty Lua table as {}: an empty list here.
    return list(value) if isinstance(value, list) else []
