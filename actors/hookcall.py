"""Running user hooks so that nothing they raise can reach an actor loop, and the context
that tells a hook's hub calls which room they run for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import attrs
import gevent
import pykka
from greenlet import GreenletExit

from wsroom.types import RoomID

__all__ = ["HookRoom", "call_hook", "hook_room", "log_hook_error", "spawn_hook"]

logger = logging.getLogger("wsroom.actors")


@attrs.frozen
class HookRoom:
    """The room whose participant runs the hook in progress, and that room's actor."""

    hub: pykka.ActorRef[Any]
    room: RoomID
    ref: pykka.ActorRef[Any]


hook_room: ContextVar[HookRoom | None] = ContextVar("wsroom_hook_room", default=None)
"""Set in a participant actor's context once it has joined (its drain greenlets all run in
that one context), so ``on_join`` and ``on_message`` (which run there, one at a time) reach
their own room's actor directly: one mailbox hop less on the commonest path, a reply or a
broadcast from ``on_message``. Everything else
(``on_leave`` and ``on_presence`` in greenlets of their own, application code, greenlets a hook
spawns; gevent gives each greenlet its own context) goes through the hub actor, which knows
whether the room still exists. The two routes give the same answers."""


def call_hook(fn: Callable[..., Any], *args: Any) -> BaseException | None:
    """Call a hook; return what it raised (the caller decides how to log it), or None.

    ``BaseException`` is caught too (``gevent.Timeout``, ``SystemExit`` from user code): one
    escaping an actor's greenlet would stop every actor in the process.
    """
    try:
        fn(*args)
    except GreenletExit:
        raise
    except BaseException as exc:  # noqa: BLE001 -- see docstring
        return exc
    return None


def log_hook_error(name: str, exc: BaseException) -> None:
    """Log an exception a hook raised, with its traceback."""
    logger.error("%s raised %r", name, exc, exc_info=(type(exc), exc, exc.__traceback__))


def spawn_hook(name: str, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet[Any, Any]:
    """Run a hook in a greenlet of its own (so it may call back into the actor that spawned it)."""

    def run() -> None:
        exc = call_hook(fn, *args)
        if exc is not None:
            log_hook_error(name, exc)

    return gevent.spawn(run)
