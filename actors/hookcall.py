"""Running user hooks so that nothing they raise can reach an actor loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
from greenlet import GreenletExit

__all__ = ["call_hook", "spawn_hook"]

logger = logging.getLogger("wsroom.actors")


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
