"""The chat's application state in Redis, for many processes on one backplane.

With ``--backplane`` the hub is one hub across processes, and so must be what the chat itself
keeps: a member may say something on one worker, drop, and come back on another. Per room it
keeps a capped list of the history (``…:history``), a counter for its ``seq`` numbers, its
history id (``…:epoch``) and a hash of names (``…:names``, which is also the chat's own list of
members); presence comes from ``hub.members(room)``, which the backplane makes global. Keys
carry the room in braces (``wsroom-chat:{lobby}:history``) so a room's keys share one Redis
Cluster slot, and each change that must be whole is a Lua script.

Presence lists go out through a ``wsroom.Emitter`` rather than this process's hub: a process
that is stopping runs ``on_presence`` for its members (they go OFFLINE as it leaves) while its
own hub no longer serves calls, and the others must still hear of it. Each process broadcasts
the lists it computes, so two of them may reach a page out of order: every list carries a
version, taken (``INCR``) before the list is read, and a page keeps the highest it has seen.
The last change's list has the highest version and was read after that change, so the list a
page ends with is the current one.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

import wsroom
from wsroom.actors import GeventActor

PREFIX = "wsroom-chat"

# KEYS: history, seq, epoch. ARGV: the entry as a JSON object without its seq, the page's cid
# for it ("" for none), its author, how many entries a room keeps, an epoch for a new room.
# A cid already in the history by the same author returns that entry instead of a copy.
_APPEND = """
if ARGV[2] ~= '' then
  for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    local e = cjson.decode(raw)
    if e.cid == ARGV[2] and e.from == ARGV[3] then return raw end
  end
end
redis.call('SET', KEYS[3], ARGV[5], 'NX')
local seq = redis.call('INCR', KEYS[2])
local raw = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[1], raw)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
return raw
"""

# KEYS: names, history, seq, epoch, presence version. ARGV: the member who left.
# Answers {members left, its name}; the last one out takes the room's keys with it.
_LEAVE = """
local name = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) end
return {left, name}
"""


def _key(room: str, what: str) -> str:
    return f"{PREFIX}:{{{room}}}:{what}"


class RedisChatState(GeventActor):
    """The chat's state in Redis, with the same calls as the in-process ``ChatState``.

    An actor too, so that a process's presence lists leave in the order it made them; the
    order across processes is the versions' business.
    """

    def __init__(self, url: str, keep: int) -> None:
        super().__init__()
        self.keep = keep  # entries of history per room
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.emitter = wsroom.emitter(url)  # the hub's send_to, broadcast and members
        self._append_script = self.redis.register_script(_APPEND)
        self._leave_script = self.redis.register_script(_LEAVE)

    def on_stop(self) -> None:
        self.redis.close()
        self.emitter.close()

    def server_id(self) -> str:
        """One id for all the processes: it changes only when Redis lost the chat's data."""
        key = f"{PREFIX}:server"
        self.redis.set(key, uuid.uuid4().hex[:12], nx=True)
        return str(self.redis.get(key) or "")

    def joined(self, room: str, pid: str, name: str, first: bool) -> dict[str, Any] | None:
        """As ``ChatState.joined``: the name is recorded; a first join is a notice for all."""
        self.redis.hset(_key(room, "names"), pid, name)
        if not first:
            self.send_roster(room, pid)
            return None
        self._broadcast_roster(room, {pid: "online"})
        return self._append(room, {"kind": "joined", "from": pid, "name": name})

    def set_presence(self, room: str, pid: str, state: str) -> None:
        """A member is "online" or "away"; a member that already left stays gone."""
        if self.redis.hexists(_key(room, "names"), pid):
            self._broadcast_roster(room, {pid: state})

    def left(self, room: str, pid: str) -> dict[str, Any] | None:
        """A membership ended: off the list, and a notice; an empty room forgets its history."""
        keys = [_key(room, k) for k in ("names", "history", "seq", "epoch", "presence-version")]
        remaining, name = self._leave_script(keys=keys, args=[pid])
        if not remaining:
            return None
        self._broadcast_roster(room, {})
        if name is None:
            return None
        return self._append(room, {"kind": "left", "from": pid, "name": name})

    def send_roster(self, room: str, pid: str) -> None:
        """The presence list for one member (a first join asks for it with its ``sync``)."""
        try:
            self.emitter.send_to(room, pid, wsroom.Envelope("presence", self._roster(room, {})))
        except wsroom.WsroomError:
            pass  # gone meanwhile: its next join gets a list of its own

    def post(self, room: str, pid: str, text: str, cid: str = "") -> dict[str, Any]:
        """A message, once per ``cid`` (see ``ChatState.post``)."""
        name = self.redis.hget(_key(room, "names"), pid) or "anonymous"
        entry: dict[str, Any] = {"kind": "message", "from": pid, "name": name, "text": text}
        if cid:
            entry["cid"] = cid
        return self._append(room, entry, cid)

    def epoch_of(self, room: str) -> str:
        return str(self.redis.get(_key(room, "epoch")) or "")

    def since(self, room: str, after: int) -> list[dict[str, Any]]:
        entries = (json.loads(raw) for raw in self.redis.lrange(_key(room, "history"), 0, -1))
        return [e for e in entries if e["seq"] > after]

    def _append(self, room: str, entry: dict[str, Any], cid: str = "") -> dict[str, Any]:
        keys = [_key(room, k) for k in ("history", "seq", "epoch")]
        body = json.dumps({"ts": time.time(), **entry})
        args = [body, cid, entry["from"], self.keep, uuid.uuid4().hex[:12]]
        stored: dict[str, Any] = json.loads(self._append_script(keys=keys, args=args))
        return stored

    def _broadcast_roster(self, room: str, changed: dict[str, str]) -> None:
        try:
            self.emitter.broadcast(room, wsroom.Envelope("presence", self._roster(room, changed)))
        except wsroom.WsroomError:
            pass  # the room emptied meanwhile, or Redis is away

    def _roster(self, room: str, changed: dict[str, str]) -> dict[str, Any]:
        """The presence list, versioned. ``changed`` is the news a hook brings about one member,
        which ``hub.members`` may not show yet (a first join is a member once ``on_join``
        returns)."""
        version = self.redis.incr(_key(room, "presence-version"))  # before reading: see above
        names: dict[str, str] = self.redis.hgetall(_key(room, "names"))
        try:
            members = self.emitter.members(room)
        except wsroom.RoomNotFound:
            members = {}
        people = []
        for pid, name in names.items():
            away = members.get(wsroom.ParticipantID(pid)) is wsroom.Presence.OFFLINE
            state = changed.get(pid, "away" if away else "online")
            people.append({"id": pid, "name": name, "state": state})
        people.sort(key=lambda p: (p["name"].lower(), p["id"]))
        return {"version": version, "people": people}
