"""A pykka actor runtime on native gevent primitives.

pykka 4 keeps three hooks for new runtimes (``_create_actor_inbox``, ``_create_future``,
``_start_actor_loop``); this module fills them with a gevent queue, an ``AsyncResult`` and a
greenlet, so an ask costs a greenlet switch instead of an OS thread hand-off.
"""

from __future__ import annotations

import logging
import queue
import sys
from typing import TYPE_CHECKING, Any, TypeVar, cast

import gevent
import gevent.event
import gevent.queue
import pykka
from greenlet import GreenletExit

if TYPE_CHECKING:
    from pykka._actor import ActorInbox
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

__all__ = ["ActorCrashed", "GeventActor", "GeventFuture"]

T = TypeVar("T")

logger = logging.getLogger("wsroom.actors")


class ActorCrashed(RuntimeError):
    """A ``BaseException`` (such as ``gevent.Timeout``) escaped an actor's handler.

    pykka stops every actor in the process when a ``BaseException`` leaves one of them; the
    runtime turns it into this ordinary exception so only the one message fails.
    """


class GeventFuture(pykka.Future[T]):
    """A pykka future backed by ``gevent.event.AsyncResult``.

    An actor method may answer with another future of this runtime (to forward a request
    without blocking on it); ``get()`` then waits for that inner future too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._result: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            # Only then is pykka's own get() of use; otherwise it raises NotImplementedError
            # for the runtime to catch, which would cost a raise on every ask.
            return super().get(timeout=timeout)
        result = self._result
        try:
            value = (
                result.get() if timeout is None or result.ready() else result.get(timeout=timeout)
            )
        except gevent.Timeout:
            raise pykka.Timeout(f"{timeout} seconds") from None
        while isinstance(value, pykka.Future):
            value = value.get(timeout=timeout)
        return value

    def set(self, value: Any | None = None) -> None:
        if self._result.ready() or self._get_hook is not None:
            raise queue.Full
        self._result.set(value)

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        if self._result.ready() or self._get_hook is not None:
            raise queue.Full
        exc_value = exc_info[1]
        if exc_value is None:
            assert exc_info[0] is not None
            exc_value = exc_info[0]()
        self._result.set_exception(exc_value, exc_info=exc_info)

    def set_get_hook(self, func: GetHookFunc[T]) -> None:
        if self._result.ready():
            raise queue.Full
        super().set_get_hook(func)

    def ready(self) -> bool:
        """Whether a value or an exception has been set."""
        return bool(self._result.ready())


class GeventActor(pykka.Actor):
    """A pykka actor whose loop is a greenlet and whose inbox is a gevent queue."""

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        inbox: gevent.queue.SimpleQueue[Any] = gevent.queue.SimpleQueue()
        return cast("ActorInbox", inbox)

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return GeventFuture()

    def _start_actor_loop(self) -> None:
        self._greenlet = gevent.spawn(self._actor_loop)
        self._greenlet.name = f"{type(self).__name__}-loop"
        self._greenlet.wsroom_actor = True

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)
        except Exception:
            raise
        except GreenletExit:
            raise
        except BaseException as exc:
            logger.exception("%r escaped %s; only this message fails", exc, self)
            raise ActorCrashed(repr(exc)) from exc

    @staticmethod
    def in_actor() -> bool:
        """Whether the calling greenlet is some actor's loop (which must never wait on itself)."""
        return bool(getattr(gevent.getcurrent(), "wsroom_actor", False))

    @property
    def greenlet(self) -> gevent.Greenlet[Any, Any]:
        """The greenlet running this actor's loop (to join on shutdown, never to kill)."""
        return self._greenlet
