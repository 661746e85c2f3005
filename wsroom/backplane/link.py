"""One hub process's link to the backplane: its identity, its heartbeat, the reader of the room
streams it serves, and the keeper that ends memberships nobody else will.

Two greenlets. The reader owns the subscriptions (room → actor, position): one blocking XREAD
over every subscribed room's stream, entries told in order to each room's actor. The keeper
beats, expires grace periods (whichever process claims a deadline runs its ``on_leave``,
exactly once), declares silent processes dead (their members go OFFLINE for their grace) and
runs the hook calls handed to any hub (an emitter's ``close_room``, a stopping process's
members going OFFLINE).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import gevent
import gevent.event
import gevent.queue
import redis

from wsroom.actors import messages as m
from wsroom.actors.hookcall import call_hook, log_hook_error, spawn_hook
from wsroom.actors.runtime import tell_quietly
from wsroom.errors import Disconnected, GraceExpired, RoomClosed
from wsroom.hooks import HookSet
from wsroom.types import ParticipantID, Presence, RoomID

from .store import Store, connect, room_stream, stream_room

__all__ = ["Link"]

logger = logging.getLogger("wsroom.backplane")

_READ_BLOCK_MS = 1000
_READ_COUNT = 512
_IDLE_TICK = 1.0
"""Seconds between the keeper's rounds when no grace period ends sooner (an idle process costs
Redis about three calls a second: a beat, an expiry check, the handed events)."""
_MIN_TICK = 0.02


class Link:
    """The backplane as one process sees it; started by ``new_hub(backplane=...)``."""

    def __init__(
        self,
        url: str,
        hooks: HookSet,
        *,
        timeout: float = 8.0,
        heartbeat_interval: float = 1.0,
        dead_after: float = 5.0,
    ) -> None:
        if heartbeat_interval <= 0 or dead_after <= heartbeat_interval:
            raise ValueError("need 0 < heartbeat_interval < dead_after")
        if timeout <= 0:
            raise ValueError("backplane_timeout must be > 0")
        self.url = url
        self.hooks = hooks
        self.proc = f"{os.getpid()}.{os.urandom(6).hex()}"
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.store = Store(connect(url, gevent_sockets=True), timeout, sleep=gevent.sleep)
        self._reader_client = connect(
            url, gevent_sockets=True, socket_timeout=_READ_BLOCK_MS / 1000 + 5
        )
        self._wake_key = f"wsroom:proc:{self.proc}:wake"
        self._commands: gevent.queue.SimpleQueue[tuple[str, RoomID, Any, str]] = (
            gevent.queue.SimpleQueue()
        )
        self._stopped = gevent.event.Event()
        self._next_deadline: float | None = None  # Redis ms of the earliest grace end known
        self._kick = gevent.event.Event()
        self.store.heartbeat(self.proc)  # fails fast (BackplaneUnavailable) on a wrong url
        self._greenlets = [gevent.spawn(self._read_loop), gevent.spawn(self._keep_loop)]

    # -- the room actors' calls ---------------------------------------------------------------

    def subscribe(self, room: RoomID, ref: Any, start: str) -> None:
        """Deliver ``room``'s stream entries after ``start`` to ``ref``, in order."""
        self._commands.put(("sub", room, ref, start))
        self._wake()

    def unsubscribe(self, room: RoomID, ref: Any) -> None:
        self._commands.put(("unsub", room, ref, ""))

    def wake_keeper(self) -> None:
        """A grace period began here: the keeper looks again at when the next one ends."""
        self._kick.set()

    def close_room(self, room: RoomID) -> None:
        """Close ``room`` everywhere (4000 on every process, through its stream); this process
        runs every member's ``on_leave(RoomClosed)``, one after another in one greenlet."""
        leaves = self.store.close_room(room, 4000, "room closed", run_here=True)
        if leaves:
            hooks = self.hooks

            def run() -> None:
                for pid in leaves:
                    exc = call_hook(hooks.on_leave, room, pid, RoomClosed())
                    if exc is not None:
                        log_hook_error("on_leave", exc)

            gevent.spawn(run)

    def _wake(self) -> None:
        try:
            self.store.client.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
        except redis.RedisError:
            pass  # the reader sees the subscription at its next turn anyway

    # -- the reader ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        subs: dict[RoomID, list[Any]] = {}  # room -> [actor ref, last id]
        wake_last = "0-0"  # not "$": a wake between two reads would be missed
        failing = False
        client = self._reader_client
        while not self._stopped.is_set():
            while not self._commands.empty():
                op, room, ref, start = self._commands.get()
                if op == "sub":
                    subs[room] = [ref, start]
                elif op == "evict":
                    for held in subs.values():
                        tell_quietly(held[0], m.Evicted())
                elif subs.get(room, [None])[0] is ref:
                    del subs[room]
            streams: dict[Any, Any] = {room_stream(r): s[1] for r, s in subs.items()}
            streams[self._wake_key] = wake_last
            try:
                answer: Any = client.xread(streams, count=_READ_COUNT, block=_READ_BLOCK_MS)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if not failing:
                    logger.warning("backplane reader: %s; retrying", exc)
                    failing = True
                self._stopped.wait(0.2)
                continue
            except Exception:
                logger.exception("backplane reader failed; retrying")
                self._stopped.wait(0.5)
                continue
            if failing:
                logger.warning("backplane reader: connected again")
                failing = False
            for key, entries in answer or ():
                if key == self._wake_key:
                    wake_last = entries[-1][0]
                    continue
                sub = subs.get(RoomID(stream_room(key)))
                if sub is None or not entries:
                    continue
                sub[1] = entries[-1][0]
                tell_quietly(sub[0], m.StreamEntries(entries))

    # -- the keeper ---------------------------------------------------------------------------

    def _keep_loop(self) -> None:
        last_beat = time.monotonic()  # the first beat was __init__'s
        wait = _IDLE_TICK
        healthy_since = last_beat
        failing = False
        while not self._stopped.is_set():
            now = time.monotonic()
            self._kick.clear()  # before the round: a kick during it makes the next one prompt
            try:
                if now - last_beat >= self.heartbeat_interval:
                    if self.store.heartbeat(self.proc):
                        self._declared_dead()
                    done = time.monotonic()
                    # Declare others dead only after beating on time for a whole dead_after
                    # ourselves: after an outage, even one shorter than backplane_timeout that
                    # no call failed for, or a stall of this process, others' beats are old too.
                    if done - now > self.heartbeat_interval or (
                        now - last_beat > 2 * self.heartbeat_interval
                    ):
                        healthy_since = done
                    last_beat = now
                    if now - healthy_since >= self.dead_after:
                        self._reap_dead()
                wait = self._expire()
                self._handed_events()
                if failing:
                    logger.warning("backplane keeper: connected again")
                    failing = False
            except Exception as exc:  # noqa: BLE001 -- the keeper must outlive any outage
                if not failing:
                    logger.warning("backplane keeper: %s; retrying", exc)
                    failing = True
                healthy_since = time.monotonic()
            self._kick.wait(min(wait, self.heartbeat_interval))

    def _declared_dead(self) -> None:
        # The others took this process for dead (it stalled longer than dead_after): its members
        # are OFFLINE in Redis and their news goes to queues. Its connections close with 1012 so
        # the clients reconnect, anywhere, and get what was queued; nothing is run twice.
        logger.warning(
            "this process was declared dead by the others (stalled over %.1fs?); closing its "
            "connections so their clients reconnect",
            self.dead_after,
        )
        self._commands.put(("evict", RoomID(""), None, ""))
        self._wake()

    def _expire(self) -> float:
        """Run the due grace expiries; answer the seconds until the next one (at most
        ``_IDLE_TICK``: another process may add an earlier one, and ``wake_keeper`` wakes
        the keeper only for this process's own)."""
        answer = self.store.expire()
        for room, pid, code, reason in answer["leaves"]:
            expired = GraceExpired()
            expired.__cause__ = Disconnected(int(code), str(reason))
            spawn_hook("on_leave", self.hooks.on_leave, RoomID(room), ParticipantID(pid), expired)
        nxt = answer.get("next")
        if nxt is None:
            return _IDLE_TICK
        return min(max((float(nxt) - float(answer["now"])) / 1000, _MIN_TICK), _IDLE_TICK)

    def _reap_dead(self) -> None:
        answer = self.store.reap_dead(self.dead_after, self.proc)
        on_presence = getattr(self.hooks, "on_presence", None)
        for room, pid in answer["offline"]:
            logger.info("member %r of room %r went offline with its process", pid, room)
            if on_presence is not None:
                spawn_hook(
                    "on_presence", on_presence, RoomID(room), ParticipantID(pid), Presence.OFFLINE
                )
        for room, pid, code, reason in answer["left"]:
            spawn_hook(
                "on_leave",
                self.hooks.on_leave,
                RoomID(room),
                ParticipantID(pid),
                Disconnected(int(code), str(reason)),
            )
        if answer["offline"] or answer["left"]:
            self._kick.set()

    def _handed_events(self) -> None:
        # Hook calls another process could not run: an emitter's close_room, a stopping
        # process's members going OFFLINE (or, without grace, ending).
        on_presence = getattr(self.hooks, "on_presence", None)
        for event in self.store.take_events():
            kind, room, pid = event[0], RoomID(event[1]), ParticipantID(event[2])
            if kind == "closed":
                spawn_hook("on_leave", self.hooks.on_leave, room, pid, RoomClosed())
            elif kind == "left":
                reason = Disconnected(int(event[3]), str(event[4]))
                spawn_hook("on_leave", self.hooks.on_leave, room, pid, reason)
            elif kind == "offline" and on_presence is not None:
                spawn_hook("on_presence", on_presence, room, pid, Presence.OFFLINE)

    # -- the end ------------------------------------------------------------------------------

    def stop(self) -> None:
        """This process leaves the backplane: no more beats, reads or reaping."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._kick.set()
        # No goodbye in Redis: the survivors declare this process dead once its beats stop,
        # which also ends whatever its rooms could not report while Redis was away.
        gevent.killall(self._greenlets, block=True, timeout=2.0)
        try:
            self.store.client.delete(self._wake_key)
        except redis.RedisError:
            pass
        for client in (self.store.client, self._reader_client):
            client.connection_pool.disconnect()
