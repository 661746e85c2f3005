"""A pykka actor runtime on native gevent primitives, and the one way its actors take messages.

pykka 4 keeps three hooks for new runtimes (``_create_actor_inbox``, ``_create_future``,
``_start_actor_loop``); this module fills them with a ``Mailbox``, a ``GeventFuture`` and a
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

``TellOnlyActor`` is the runtime's other kind of actor, for one per connection: told, never
asked, it has a greenlet only while it has messages to handle (no pykka involved), lent by
``DrainWorkers``.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import sys
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import gevent
import gevent.hub
import pykka
from gevent.exceptions import ConcurrentObjectUseError
from gevent.hub import Waiter
from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from wsroom.errors import WsroomError

if TYPE_CHECKING:
    from pykka._actor import ActorInbox
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

__all__ = [
    "ActorCrashed",
    "Ask",
    "DrainWorkers",
    "GeventActor",
    "GeventFuture",
    "Mailbox",
    "Tell",
    "TellOnlyActor",
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


def _handler_table(cls: type) -> dict[type, Callable[[Any, Any], Any]]:
    """The message type → handler table of a class, from its ``@handles`` methods (the MRO's
    last definition wins)."""
    table: dict[type, Callable[[Any, Any], Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            for kind in getattr(attr, "wsroom_handles", ()):
                table[kind] = attr
    return table


def tell_quietly(ref: pykka.ActorRef[Any] | TellOnlyActor, message: Any) -> bool:
    """Tell ``ref``; False (and nothing else) when that actor is already gone.

    For reports whose addressee may have ended meanwhile (a reaped room, a stopped hub): there
    is nothing left to report to, which is no error.
    """
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


_PENDING: Any = object()
"""A ``GeventFuture``'s value until it is set."""


class GeventFuture(pykka.Future[T]):
    """A pykka future for the greenlets of one gevent hub: its value and who waits for it.

    Every ask of an actor makes one, so it is kept small: a waiting greenlet parks on a gevent
    ``Waiter``, which ``set`` wakes from the loop's next turn. (gevent's ``AsyncResult`` also
    serves other OS threads and links; an ask cost about 15 % more with it.) Set it from the
    hub's own thread, as every actor does.

    A method reached through ``hub.proxy`` answers with the room actor's future rather than wait
    on it inside the hub's mailbox; ``get()`` then waits for that inner future too.
    """

    def __init__(self) -> None:
        # pykka's own fields are made only for a get hook (set_get_hook): its __init__ makes a
        # sentinel object per future, one more in flight per ask for the garbage collector.
        self._get_hook = None
        self._value: Any = _PENDING
        # Who waits: none, one (an ask's usual case, without a list), or a list of them.
        self._waiters: Waiter[Any] | list[Waiter[Any]] | None = None

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            # Only then is pykka's own get() of use; otherwise it raises NotImplementedError
            # for the runtime to catch, which would cost a raise on every ask.
            return super().get(timeout=timeout)
        if self._value is _PENDING:
            self._wait(timeout)
        value = self._value
        while isinstance(value, pykka.Future):
            value = value.get(timeout=timeout)
        if type(value) is _Raise:
            raise value.exc
        return value

    def _wait(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            raise pykka.Timeout(f"{timeout} seconds")
        waiter: Waiter[Any] = Waiter()
        waiters = self._waiters
        if waiters is None:
            self._waiters = waiter
        elif type(waiters) is list:
            waiters.append(waiter)
        else:
            self._waiters = [waiters, waiter]
        if timeout is None:
            waiter.get()
            return
        timer = waiter.hub.loop.timer(timeout)
        timer.start(waiter.switch, None)  # whether a value came is read from _value
        try:
            waiter.get()
        finally:
            timer.close()
        if self._value is _PENDING:  # the timer woke it, not a value
            waiters = self._waiters
            if waiters is waiter:
                self._waiters = None
            elif type(waiters) is list and waiter in waiters:
                waiters.remove(waiter)
            raise pykka.Timeout(f"{timeout} seconds")

    def set(self, value: Any | None = None) -> None:
        if self._value is not _PENDING or self._get_hook is not None:
            raise queue.Full
        self._value = value
        waiters = self._waiters
        if waiters is None:
            return
        self._waiters = None
        if type(waiters) is list:
            for waiter in waiters:
                waiter.hub.loop.run_callback(waiter.switch, None)
        else:
            waiters.hub.loop.run_callback(waiters.switch, None)  # type: ignore[union-attr]

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        exc_value = exc_info[1]
        if exc_value is None:
            assert exc_info[0] is not None
            exc_value = exc_info[0]()
        self.set(_Raise(exc_value))

    def set_get_hook(self, func: GetHookFunc[T]) -> None:
        if self._value is not _PENDING:
            raise queue.Full
        pykka.Future.__init__(self)  # the fields pykka's get() reads for a hook
        super().set_get_hook(func)

    def ready(self) -> bool:
        """Whether a value or an exception has been set."""
        return self._value is not _PENDING


class _Dispatcher:
    """The one way both kinds of actor take a message: the ``@handles`` table of the class,
    tells fenced (a failure goes to ``on_tell_failed``), ``after_message`` after each."""

    _dispatch: ClassVar[dict[type, Callable[[Any, Any], Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._dispatch = _handler_table(cls)

    def _dispatch_tell(self, message: Any) -> None:
        handler = self._dispatch.get(type(message))
        try:
            if handler is None:
                logger.error("%s has no handler for %r", type(self).__name__, message)
                return
            handler(self, message)
        except Exception as exc:  # noqa: BLE001 -- a tell's failure must not end the actor
            self.on_tell_failed(message, exc)
        finally:
            self.after_message()

    def after_message(self) -> None:
        """Called after every dispatched message, answered or not (for news to announce)."""

    def on_tell_failed(self, message: Any, exc: Exception) -> None:
        """A tell's handler raised: a bug of ours, never the sender's. Logged with its traceback."""
        logger.error("%s failed to handle %r", self, message, exc_info=exc)


class Mailbox:
    """A ``GeventActor``'s inbox: a deque, and its loop's greenlet while it waits on it.

    ``gevent.queue.SimpleQueue`` serves many getters and putters, bounds and timeouts: per
    message it schedules an unlock callback and wakes a ``Waiter`` made for the get. An actor's
    inbox has one reader, never waits to put and never times out a get, so a put only has to
    schedule that one greenlet's ``switch``. Like gevent's queues, it is for the greenlets of
    one thread (a put from another would wake nothing). pykka calls ``put``, ``get`` and
    ``empty`` (its ``ActorInbox``).
    """

    __slots__ = ("_hub", "_items", "_reader")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._reader: RawGreenlet | None = None  # parked in get(), until a put wakes it
        self._hub: gevent.hub.Hub | None = None

    def put(self, item: Any, /) -> None:
        """Queue ``item``; wake the reader if it waits (never blocks: the inbox is unbounded)."""
        self._items.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            assert self._hub is not None
            self._hub.loop.run_callback(reader.switch)

    def get(self) -> Any:
        """The oldest item, waiting for one if none is queued."""
        items = self._items
        while not items:
            if self._reader is not None:
                raise ConcurrentObjectUseError("an actor's inbox has one reader")
            self._reader = getcurrent()
            self._hub = hub = gevent.get_hub()
            try:
                hub.switch()
            finally:
                self._reader = None
        return items.popleft()

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return not self._items


class GeventActor(_Dispatcher, pykka.Actor):
    """A pykka actor whose loop is a greenlet and whose inbox is a ``Mailbox``.

    Its ``on_receive`` dispatches ``Ask`` and ``Tell`` messages to the methods marked with
    ``@handles``; a subclass with its own ``on_receive`` (any pykka actor) works as well.
    """

    _dispatch: ClassVar[dict[type, Callable[[Any, Any], Any]]] = {}

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Ask):
            self._dispatch_tell(message)
            return None
        try:
            handler = self._dispatch.get(type(message))
            if handler is None:
                raise TypeError(f"{type(self).__name__} has no handler for {message!r}")
            return handler(self, message)
        finally:
            self.after_message()

    # -- the runtime hooks pykka 4 keeps for new actor types -----------------------------------

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        return Mailbox()

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


class DrainWorkers:
    """The greenlets that run ``TellOnlyActor`` drains, kept between drains for any actor.

    ``gevent.spawn`` costs about 10 µs (a ``Greenlet`` object, the spawner's stack recorded for
    its tree, links), as much as the rest of an inbound frame's trip to ``on_message``; waking a
    parked raw greenlet costs about 1. A greenlet per connection would cost memory on every idle
    connection, so drains borrow one: up to ``keep`` idle workers wait here (3 to 7 KB each),
    one finishing when as many wait already ends. One set per gevent hub (a greenlet runs only
    in its own thread), kept for the life of the process, as the hub is.
    """

    __slots__ = ("_hub", "_idle", "keep")

    def __init__(self, hub: gevent.hub.Hub, keep: int = 128) -> None:
        self._hub = hub
        self._idle: list[RawGreenlet] = []
        self.keep = keep

    @classmethod
    def of_this_thread(cls) -> DrainWorkers:
        """The workers of the calling thread's gevent hub."""
        global _LAST_WORKERS
        hub = gevent.get_hub()
        last = _LAST_WORKERS
        if last is not None and last._hub is hub:
            return last  # one process, one hub: the usual case, without a lookup
        workers = _WORKERS.get(hub)
        if workers is None:
            workers = _WORKERS[hub] = cls(hub)
        _LAST_WORKERS = workers
        return workers

    @property
    def idle(self) -> int:
        """Workers waiting for a drain."""
        return len(self._idle)

    def run(self, func: Callable[[Any], None], arg: Any) -> RawGreenlet:
        """Run ``func(arg)`` in a worker from the loop's next turn; return that worker.

        ``func`` must not raise (a drain fences its handlers); what escapes is logged. One
        argument, a long-lived function: the hand-off allocates only the loop's callback and
        its argument tuple, which matters because a drain waiting its turn is in flight.
        """
        idle = self._idle
        worker = idle.pop() if idle else self._new()
        self._hub.loop.run_callback(worker.wsroom_switch, func, arg)
        return worker

    def _new(self) -> RawGreenlet:
        worker = RawGreenlet(self._work, parent=self._hub)
        worker.wsroom_actor = True  # what it runs is an actor's drain (GeventActor.in_actor)
        worker.wsroom_switch = worker.switch  # made once, not per hand-off
        return worker

    def _work(self, func: Callable[[Any], None], arg: Any) -> None:
        hub = self._hub
        idle = self._idle
        me = getcurrent()
        while True:
            try:
                func(arg)
            except GreenletExit:
                return
            except BaseException:  # a worker goes on: one job's bug must not end it
                logger.exception("a drain worker's job failed")
            func = arg = None  # type: ignore[assignment]  # hold no actor while parked
            if len(idle) >= self.keep:
                return
            idle.append(me)
            func, arg = hub.switch()


_WORKERS: dict[gevent.hub.Hub, DrainWorkers] = {}
_LAST_WORKERS: DrainWorkers | None = None


_STOP = object()
"""The stop request in a ``TellOnlyActor``'s inbox: what was told before it is handled first."""


class TellOnlyActor(_Dispatcher):
    """An actor that is only ever told, whose greenlet exists only while it has work.

    A pykka actor parks one greenlet on its inbox for its whole life (about 9 KB with its
    suspended frames and queue): one per connection at 10,000 connections is the largest cost
    after the socket's own. Here ``tell`` starts a drain when none runs, in a greenlet lent by
    ``DrainWorkers``, with that message; what is told meanwhile waits in a deque. The drain
    handles the messages in order until none is left and then gives the greenlet back.

    It is its own reference (``actor_ref`` is itself; usable in sets) and keeps pykka's
    contract for tells: the ``@handles`` dispatch, ``on_tell_failed`` and ``after_message`` as
    ``GeventActor``'s, messages told before ``stop`` handled and later ones dropped,
    ``pykka.ActorDeadError`` from ``tell`` once stopped. A ``BaseException`` escaping a handler
    fails that one message as ``ActorCrashed`` (``GreenletExit`` ends the actor). The drain
    greenlet counts as an actor for ``GeventActor.in_actor``, and runs in one
    ``contextvars.Context`` kept across drains, as a permanent greenlet's context would be.
    """

    def __init__(self) -> None:
        # A drain starts with one message: the inbox exists only for those told while a drain
        # runs (an empty deque is 760 bytes, and one per drain would be one more object in
        # flight for the garbage collector to count).
        self._first: Any = None  # the message the drain about to run starts with
        self._inbox: deque[Any] | None = None
        self._context = contextvars.Context()
        self._greenlet: RawGreenlet | None = None  # the drain's worker, while it runs
        self._stopping = False  # a stop was requested
        self._stopped = False
        self._stop_futures: list[GeventFuture[bool]] | None = None

    @property
    def actor_ref(self) -> TellOnlyActor:
        """Itself: what others hold to tell it (pykka's ``actor_ref`` for this kind)."""
        return self

    def is_alive(self) -> bool:
        """False once a stop was handled (or the drain was killed)."""
        return not self._stopped

    def tell(self, message: Tell) -> None:
        """Queue ``message``; ``pykka.ActorDeadError`` once the actor has stopped."""
        if self._stopped:
            raise pykka.ActorDeadError(f"{self} is dead")
        self._post(message)

    def stop(self, block: bool = True, timeout: float | None = None) -> Any:
        """Stop after the messages told so far: True once done by this request, False if it had
        already stopped; with ``block=False`` a future of that. ``pykka.Timeout`` past
        ``timeout``. From its own handler it never waits (it would wait on itself)."""
        future: GeventFuture[bool] = GeventFuture()
        if self._stopped:
            future.set(False)
        else:
            if self._stop_futures is None:
                self._stop_futures = []
            self._stop_futures.append(future)
            if not self._stopping:
                self._stopping = True
                if self._greenlet is None:
                    self._end()  # idle: nothing to handle first, no greenlet to spawn
                else:
                    self._post(_STOP)
        if not block:
            return future
        if gevent.getcurrent() is self._greenlet:
            return True
        return future.get(timeout=timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x}>"

    # -- the drain --------------------------------------------------------------------------

    def _post(self, message: Any) -> None:
        if self._greenlet is None:
            self._first = message
            self._greenlet = DrainWorkers.of_this_thread().run(_drain_in_context, self)
        else:
            inbox = self._inbox
            if inbox is None:
                self._inbox = inbox = deque()
            inbox.append(message)

    def _drain(self) -> None:
        message, self._first = self._first, None
        ended = True  # unless the inbox runs dry: a stop request, or the greenlet was killed
        try:
            while message is not _STOP:
                self._handle(message)
                inbox = self._inbox
                if not inbox:
                    ended = False
                    break
                message = inbox.popleft()
        finally:
            self._greenlet = None
            self._inbox = None
            if ended:
                self._end()

    def _handle(self, message: Any) -> None:
        try:
            self._dispatch_tell(message)
        except GreenletExit:
            raise
        except BaseException as exc:  # noqa: BLE001 -- pykka would stop every actor
            crashed = ActorCrashed(repr(exc))
            crashed.__cause__ = exc
            self.on_tell_failed(message, crashed)

    def _end(self) -> None:
        # What was told after the stop is dropped with the inbox, as pykka drops it.
        self._stopped = True
        futures, self._stop_futures = self._stop_futures or [], None
        for future in futures:
            future.set(True)


def _drain_in_context(actor: TellOnlyActor) -> None:
    # A function, not a bound method: nothing is allocated per drain to name it.
    actor._context.run(TellOnlyActor._drain, actor)
