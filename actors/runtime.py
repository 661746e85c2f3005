"""A pykka actor runtime on native gevent primitives, and the one way its actors take messages.

pykka 4 keeps three hooks for new runtimes (``_create_actor_inbox``, ``_create_future``,
``_start_actor_loop``); this module fills them with a gevent queue, an ``AsyncResult`` and a
greenlet, so an ask costs a greenlet switch instead of an OS thread hand-off.

Messages say what they are: an ``Ask`` is answered (what its handler raises goes back to the
caller), a ``Tell`` is not (what its handler raises is logged and the actor lives on). Each
actor marks its handlers with ``@handles``; ``GeventActor.on_receive`` is the one dispatcher.

Every reliance on pykka's private internals lives in this module (checked against pykka 4.5.0;
``tests/unit/test_private_internals.py`` fails loudly when an upgrade breaks one of them):
the three runtime hooks, ``Actor._handle_receive`` (to fence ``BaseException``, and to hand an
ask's refusal back as a value: pykka's loop logs every exception it returns to a caller at INFO
with its traceback), ``Future._get_hook`` (pykka's own ``get()`` is of use only when a hook is
set), and the types imported below for annotations only.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import gevent
import gevent.event
import gevent.queue
import pykka
from greenlet import GreenletExit

from wsroom.errors import WsroomError

if TYPE_CHECKING:
    from pykka._actor import ActorInbox
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

__all__ = [
    "ActorCrashed",
    "Ask",
    "GeventActor",
    "GeventFuture",
    "Tell",
    "handles",
    "tell_quietly",
]

T = TypeVar("T")
Handler = TypeVar("Handler", bound=Callable[..., Any])

logger = logging.getLogger("wsroom.actors")


class ActorCrashed(RuntimeError):
    """A ``BaseException`` (such as ``gevent.Timeout``) escaped an actor's handler.

    pykka stops every actor in the process when a ``BaseException`` leaves one of them; the
    runtime turns it into this ordinary exception so only the one message fails.
    """


class _Raise:
    """An ask's answer that is an exception for the caller: carried as a value, so pykka's loop
    does not log it, and raised by ``GeventFuture.get()``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


ANSWERS: tuple[type[Exception], ...] = (WsroomError, pykka.ActorDeadError)
"""Exceptions that answer an ask (``RoomNotFound``, ``ParticipantOffline``, ``HubStopped``, a
room already gone, ...): the caller raises them; they are never logged as failures."""


class Ask:
    """Base of the messages whose sender waits for the answer (or the exception)."""

    __slots__ = ()


class Tell:
    """Base of the messages nobody waits for: a failure is logged and never ends the actor
    (pykka would stop an actor whose tell raised)."""

    __slots__ = ()


def handles(*types: type[Ask | Tell]) -> Callable[[Handler], Handler]:
    """Mark an actor method as the handler of these message types."""

    def mark(method: Handler) -> Handler:
        method.__dict__["wsroom_handles"] = types
        return method

    return mark


def tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> bool:
    """Tell ``ref``; False (and nothing else) when that actor is already gone.

    For reports whose addressee may have ended meanwhile (a reaped room, a stopped hub): there
    is nothing left to report to, which is no error.
    """
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


class GeventFuture(pykka.Future[T]):
    """A pykka future backed by ``gevent.event.AsyncResult``.

    A method reached through ``hub.proxy`` answers with the room actor's future rather than wait
    on it inside the hub's mailbox; ``get()`` then waits for that inner future too.
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
        if type(value) is _Raise:
            raise value.exc
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
    """A pykka actor whose loop is a greenlet and whose inbox is a gevent queue.

    Its ``on_receive`` dispatches ``Ask`` and ``Tell`` messages to the methods marked with
    ``@handles``; a subclass with its own ``on_receive`` (any pykka actor) works as well.
    """

    _dispatch: ClassVar[dict[type, Callable[[Any, Any], Any]]] = {}
    registered: ClassVar[bool] = True
    """Whether ``start`` lists the actor in ``pykka.ActorRegistry``. That registry is one global
    list, searched from the front on every stop: an actor per connection makes 10,000 stops
    cost O(n²) (seconds), so such actors opt out; their owner keeps track of them."""

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Any]:
        """Start the actor (pykka's ``start``, minus the registry when ``registered`` is off)."""
        if cls.registered:
            return super().start(*args, **kwargs)
        actor = cls(*args, **kwargs)
        actor._start_actor_loop()
        return actor.actor_ref

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, Callable[[Any, Any], Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for kind in getattr(attr, "wsroom_handles", ()):
                    table[kind] = attr
        cls._dispatch = table

    def on_receive(self, message: Any) -> Any:
        handler = self._dispatch.get(type(message))
        if isinstance(message, Ask):
            try:
                if handler is None:
                    raise TypeError(f"{type(self).__name__} has no handler for {message!r}")
                return handler(self, message)
            finally:
                self.after_message()
        try:
            if handler is None:
                logger.error("%s has no handler for %r", type(self).__name__, message)
                return None
            return handler(self, message)
        except Exception as exc:  # noqa: BLE001 -- a tell's failure must not end the actor
            self.on_tell_failed(message, exc)
            return None
        finally:
            self.after_message()

    def after_message(self) -> None:
        """Called after every dispatched message, answered or not (for news to announce)."""

    def on_tell_failed(self, message: Any, exc: Exception) -> None:
        """A tell's handler raised: a bug of ours, never the sender's. Logged with its traceback."""
        logger.error("%s failed to handle %r", self, message, exc_info=exc)

    # -- the runtime hooks pykka 4 keeps for new actor types -----------------------------------

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
        except ANSWERS as exc:
            # An answer, not a failure: returned as a value, which pykka does not log. (A tell's
            # failure never gets here: the dispatcher fences it; a deferred proxy call's answer
            # has no one to go to.)
            return _Raise(exc)
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
