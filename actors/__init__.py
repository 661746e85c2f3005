"""The actors that own the hub's state: hub, rooms, participants, on a gevent pykka runtime."""

from __future__ import annotations

from .runtime import ActorCrashed, GeventActor, GeventFuture
from .state import OfflineQueue, RoomState

__all__ = ["ActorCrashed", "GeventActor", "GeventFuture", "OfflineQueue", "RoomState"]
