"""The Redis backplane: many hub processes serving the same rooms (contract §8).

Imported only when ``new_hub(backplane=...)`` or ``wsroom.emitter`` is used; it needs the
extra ``wsroom[redis]``. ``scripts`` holds every shared rule (Lua, atomic in Redis), ``store``
the calls on them, ``link`` one hub process's heartbeat, stream reader and reaper.
"""

from __future__ import annotations

from .store import Store, connect

__all__ = ["Store", "connect"]
