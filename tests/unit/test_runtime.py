"""The pykka runtime on gevent: asks, tells, futures, and failures that stay local."""

from __future__ import annotations

import contextvars
import gc
import logging
import queue
import weakref
from collections.abc import Iterator
from typing import Any

import attrs
import gevent
import gevent.event
import pykka
import pytest

from wsroom.actors.runtime import (
    ActorCrashed,
    Ask,
    DrainWorkers,
    GeventActor,
    GeventFuture,
    Mailbox,
    Tell,
    TellOnlyActor,
    handles,
    tell_quietly,
)
from wsroom.errors import RoomNotFound


class Echo(GeventActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        kind = message.get("kind") if isinstance(message, dict) else None
        if kind == "boom":
            raise ValueError("boom")
        if kind == "timeout":
            raise gevent.Timeout()
        if kind == "sleep":
            gevent.sleep(message["seconds"])
            return "slept"
        if kind == "forward":
            # answer with another actor's future instead of waiting on it
            return message["to"].ask(message["message"], block=False)
        if kind == "seen":
            return list(self.seen)
        self.seen.append(message)
        return ("echo", message)

    def add(self, a: int, b: int) -> int:
        return a + b

    def in_actor_now(self) -> bool:
        return self.in_actor()

    def loop(self) -> gevent.Greenlet[Any, Any]:
        return self.greenlet


@pytest.fixture
def actors() -> Iterator[list[pykka.ActorRef[Any]]]:
    started: list[pykka.ActorRef[Any]] = []
    yield started
    for ref in started:
        if ref.is_alive():
            ref.stop(timeout=2)


def start(actors: list[pykka.ActorRef[Any]]) -> pykka.ActorRef[Any]:
    ref = Echo.start()
    actors.append(ref)
    return ref


def test_ask_round_trip(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    assert ref.ask("hi", timeout=2) == ("echo", "hi")
    future = ref.ask({"x": 1}, block=False)
    assert isinstance(future, GeventFuture)
    assert future.get(timeout=2) == ("echo", {"x": 1})
    assert future.ready()


def test_tells_are_handled_in_order(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    for i in range(50):
        ref.tell(i)
    assert ref.ask({"kind": "seen"}, timeout=2) == list(range(50))


def test_proxy_calls(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    proxy = ref.proxy()
    assert proxy.add(2, 3).get(timeout=2) == 5
    assert proxy.in_actor_now().get(timeout=2) is True
    assert GeventActor.in_actor() is False


def test_actor_loop_is_a_greenlet(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    loop = ref.proxy().loop().get(timeout=2)
    assert isinstance(loop, gevent.Greenlet)
    assert loop is not gevent.getcurrent()
    assert not loop.dead
    ref.stop(timeout=2)
    loop.join(timeout=2)
    assert loop.dead


def test_future_answered_with_a_future_unwraps(actors: list[pykka.ActorRef[Any]]) -> None:
    front = start(actors)
    back = start(actors)
    answer = front.ask({"kind": "forward", "to": back, "message": "deep"}, timeout=2)
    assert answer == ("echo", "deep")
    # and through two levels
    answer = front.ask(
        {
            "kind": "forward",
            "to": back,
            "message": {"kind": "forward", "to": front, "message": "deeper"},
        },
        timeout=2,
    )
    assert answer == ("echo", "deeper")


def test_future_holding_a_future_unwraps_on_get() -> None:
    inner: GeventFuture[Any] = GeventFuture()
    outer: GeventFuture[Any] = GeventFuture()
    outer.set(inner)
    gevent.spawn_later(0.01, inner.set, 42)
    assert outer.get(timeout=2) == 42


def test_get_timeout_raises_pykka_timeout() -> None:
    future: GeventFuture[Any] = GeventFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    assert not future.ready()
    future.set("late")
    assert future.get(timeout=0) == "late"


def test_future_wakes_every_waiter_and_forgets_one_that_timed_out() -> None:
    future: GeventFuture[Any] = GeventFuture()
    got: list[Any] = []

    def wait(timeout: float | None) -> None:
        try:
            got.append(future.get(timeout=timeout))
        except pykka.Timeout:
            got.append("timeout")

    waiting = [gevent.spawn(wait, None), gevent.spawn(wait, 0.01), gevent.spawn(wait, 5)]
    gevent.joinall(waiting[1:2], timeout=2)
    assert got == ["timeout"]
    assert future._waiters is not None and len(future._waiters) == 2  # the late one let go
    gevent.get_hub().loop.run_callback(future.set, "v")  # set from the loop, as a timer would
    gevent.joinall(waiting, timeout=2)
    assert sorted(got) == ["timeout", "v", "v"]
    assert future._waiters is None


def test_future_with_one_waiter_wakes_it_or_forgets_it() -> None:
    future: GeventFuture[Any] = GeventFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    assert future._waiters is None  # the one that timed out is let go
    waiting = gevent.spawn(future.get, timeout=5)
    gevent.sleep(0)
    assert future._waiters is not None
    future.set("v")
    assert waiting.get(timeout=2) == "v"
    assert future._waiters is None


def test_future_get_hook_of_a_pending_future_waits_for_it() -> None:
    a: GeventFuture[int] = GeventFuture()
    mapped = a.map(lambda v: v * 2)
    gevent.spawn_later(0.01, a.set, 21)
    assert mapped.get(timeout=2) == 42
    with pytest.raises(queue.Full):
        mapped.set(1)  # a future with a hook takes no value of its own


def test_mailbox_hands_items_in_order_and_wakes_its_parked_reader() -> None:
    box = Mailbox()
    assert box.empty()
    box.put(1)
    box.put(2)
    assert not box.empty()
    assert [box.get(), box.get()] == [1, 2]
    got: list[int] = []
    reader = gevent.spawn(lambda: got.extend(box.get() for _ in range(3)))
    gevent.sleep(0)  # parked on the empty inbox
    assert not got
    box.put(3)
    box.put(4)
    gevent.sleep(0)
    assert got == [3, 4]  # parked again
    gevent.get_hub().loop.run_callback(box.put, 5)  # a put from the loop itself, as a timer's
    reader.join(timeout=2)
    assert got == [3, 4, 5]
    assert box.empty()


def test_mailbox_has_one_reader_and_lets_a_killed_one_go() -> None:
    box = Mailbox()
    first = gevent.spawn(box.get)
    gevent.sleep(0)
    second = gevent.spawn(box.get)
    second.join(timeout=2)
    assert isinstance(second.exception, gevent.exceptions.ConcurrentObjectUseError)
    first.kill(timeout=2)
    box.put("after")  # nobody waits: queued, no wake-up into the dead greenlet
    gevent.sleep(0)
    assert box.get() == "after"


def test_ask_timeout_raises_pykka_timeout(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    with pytest.raises(pykka.Timeout):
        ref.ask({"kind": "sleep", "seconds": 0.1}, timeout=0.02)
    assert ref.ask("after", timeout=2) == ("echo", "after")


def test_future_exception_is_raised_by_get() -> None:
    future: GeventFuture[Any] = GeventFuture()
    try:
        raise KeyError("k")
    except KeyError:
        future.set_exception()
    with pytest.raises(KeyError):
        future.get(timeout=1)
    assert future.ready()


def test_future_set_twice_is_refused() -> None:
    future: GeventFuture[Any] = GeventFuture()
    future.set(1)
    with pytest.raises(queue.Full):
        future.set(2)
    assert future.get(timeout=1) == 1


def test_future_combinators_work() -> None:
    a: GeventFuture[int] = GeventFuture()
    b: GeventFuture[int] = GeventFuture()
    a.set(1)
    b.set(2)
    assert pykka.get_all([a, b], timeout=1) == [1, 2]
    c: GeventFuture[int] = GeventFuture()
    c.set(20)
    assert c.map(lambda v: v + 1).get(timeout=1) == 21


def test_ordinary_exception_reaches_the_caller_and_actor_lives(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    ref = start(actors)
    with pytest.raises(ValueError, match="boom"):
        ref.ask({"kind": "boom"}, timeout=2)
    assert ref.is_alive()
    assert ref.ask("still here", timeout=2) == ("echo", "still here")


def test_base_exception_in_one_actor_does_not_stop_others(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    crashing = start(actors)
    other = start(actors)
    with pytest.raises(ActorCrashed) as info:
        crashing.ask({"kind": "timeout"}, timeout=2)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, gevent.Timeout)
    assert other.is_alive()
    assert other.ask("still answering", timeout=2) == ("echo", "still answering")
    # only that one message failed: the actor itself keeps working too
    assert crashing.is_alive()
    assert crashing.ask("again", timeout=2) == ("echo", "again")


def test_base_exception_in_a_tell_does_not_stop_others(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    crashing = start(actors)
    other = start(actors)
    crashing.tell({"kind": "timeout"})
    gevent.sleep(0.01)
    assert other.is_alive()
    assert other.ask("fine", timeout=2) == ("echo", "fine")


def test_many_actors_interleave_cooperatively(actors: list[pykka.ActorRef[Any]]) -> None:
    refs = [start(actors) for _ in range(20)]
    futures = [ref.ask({"kind": "sleep", "seconds": 0.05}, block=False) for ref in refs]
    with gevent.Timeout(0.5):  # 20 x 50 ms serially would take a second
        assert pykka.get_all(futures, timeout=2) == ["slept"] * 20


def test_stopped_actor_refuses_messages(actors: list[pykka.ActorRef[Any]]) -> None:
    ref = start(actors)
    ref.stop(timeout=2)
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", timeout=1)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")


# -- the one dispatcher: Ask and Tell messages, @handles ---------------------------------------


@attrs.frozen
class Double(Ask):
    n: int


@attrs.frozen
class Record(Tell):
    n: int


@attrs.frozen
class Unhandled(Tell):
    pass


@attrs.frozen
class UnhandledAsk(Ask):
    pass


class Counter(GeventActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.after = 0
        self.failed: list[Any] = []

    @handles(Double)
    def _double(self, msg: Double) -> int:
        if msg.n < 0:
            raise ValueError("negative")
        return msg.n * 2

    @handles(Record)
    def _record(self, msg: Record) -> None:
        if msg.n < 0:
            raise ValueError("negative")
        self.seen.append(msg.n)

    def after_message(self) -> None:
        self.after += 1

    def on_tell_failed(self, message: Any, exc: Exception) -> None:
        self.failed.append((message, exc))

    def state(self) -> tuple[list[int], int, list[Any]]:
        return list(self.seen), self.after, list(self.failed)


def test_asks_are_answered_and_their_errors_reach_the_caller(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    ref = Counter.start()
    actors.append(ref)
    assert ref.ask(Double(21), timeout=2) == 42
    with pytest.raises(ValueError, match="negative"):
        ref.ask(Double(-1), timeout=2)
    with pytest.raises(TypeError, match="no handler"):
        ref.ask(UnhandledAsk(), timeout=2)
    assert ref.is_alive()


def test_a_failing_tell_is_reported_and_the_actor_lives_on(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    ref = Counter.start()
    actors.append(ref)
    ref.tell(Record(1))
    ref.tell(Record(-1))
    ref.tell(Unhandled())  # logged, not fatal
    ref.tell(Record(2))
    seen, after, failed = ref.proxy().state().get(timeout=2)
    assert seen == [1, 2]
    assert [(m, type(e)) for m, e in failed] == [(Record(-1), ValueError)]
    assert after == 4  # called after every dispatched message, failed ones included
    assert ref.is_alive()


def test_tell_quietly_says_whether_the_actor_was_there(
    actors: list[pykka.ActorRef[Any]],
) -> None:
    ref = Counter.start()
    assert tell_quietly(ref, Record(1)) is True
    ref.stop(timeout=2)
    assert tell_quietly(ref, Record(2)) is False


class Refuser(GeventActor):
    """Answers every ``Double`` with RoomNotFound (an answer); a ``Record`` trips a bug."""

    @handles(Double)
    def _double(self, message: Double) -> int:
        raise RoomNotFound()

    @handles(Record)
    def _record(self, message: Record) -> None:
        raise KeyError("a bug")

    def refuse(self) -> None:
        raise RoomNotFound()


def test_an_answer_raised_to_the_caller_is_not_logged(
    actors: list[pykka.ActorRef[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ref = Refuser.start()
    actors.append(ref)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RoomNotFound) as info:
        ref.ask(Double(1), timeout=2)
    assert info.value.__traceback__ is not None
    with pytest.raises(RoomNotFound):
        ref.proxy().refuse().get()
    with pytest.raises(RoomNotFound):
        pykka.get_all([ref.ask(Double(2), block=False)])
    assert ref.is_alive()
    assert [r for r in caplog.records if r.levelno >= logging.INFO or r.exc_info] == []


def test_a_bug_in_a_tell_handler_is_logged_as_an_error(
    actors: list[pykka.ActorRef[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ref = Refuser.start()
    actors.append(ref)
    caplog.set_level(logging.DEBUG)
    ref.tell(Record(1))
    with pytest.raises(RoomNotFound):  # answered after the tell: the tell has been handled
        ref.ask(Double(1), timeout=2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(errors) == 1 and errors[0].name == "wsroom.actors"
    assert "KeyError" in repr(errors[0].exc_info)
    assert ref.is_alive()


# -- TellOnlyActor: a greenlet only while there is work ------------------------------------


@attrs.frozen
class Nap(Tell):
    seconds: float


@attrs.frozen
class Crash(Tell):
    exc: BaseException


@attrs.frozen
class Probe(Tell):
    pass


@attrs.frozen
class StopMe(Tell):
    pass


_mark: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_mark", default=None)


class Lean(TellOnlyActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.after = 0
        self.failed: list[tuple[Any, Exception]] = []
        self.probes: list[tuple[bool, str | None]] = []

    @handles(Record)
    def _record(self, msg: Record) -> None:
        if msg.n < 0:
            raise ValueError("negative")
        self.seen.append(msg.n)
        _mark.set(f"after {msg.n}")

    @handles(Nap)
    def _nap(self, msg: Nap) -> None:
        gevent.sleep(msg.seconds)

    @handles(Crash)
    def _crash(self, msg: Crash) -> None:
        raise msg.exc

    @handles(Probe)
    def _probe(self, _msg: Probe) -> None:
        self.probes.append((GeventActor.in_actor(), _mark.get()))

    @handles(StopMe)
    def _stop_me(self, _msg: StopMe) -> None:
        assert self.stop(block=True, timeout=1) is True  # never waits on itself

    def after_message(self) -> None:
        self.after += 1

    def on_tell_failed(self, message: Any, exc: Exception) -> None:
        self.failed.append((message, exc))


def drained(actor: TellOnlyActor) -> None:
    """Wait until the actor's drain greenlet has ended."""
    with gevent.Timeout(2):
        while actor._greenlet is not None:
            gevent.sleep(0.001)


def test_tell_only_actor_handles_tells_in_order_and_failures_stay_local() -> None:
    actor = Lean()
    assert actor.actor_ref is actor
    for n in (1, 2, -1):
        actor.tell(Record(n))
    actor.tell(Unhandled())  # logged, not fatal
    actor.tell(Record(3))
    assert actor.seen == []  # nothing runs in the teller's greenlet
    drained(actor)
    assert actor.seen == [1, 2, 3]
    assert [(m, type(e)) for m, e in actor.failed] == [(Record(-1), ValueError)]
    assert actor.after == 5
    assert actor.is_alive()


def test_tell_only_actor_has_a_greenlet_only_while_it_has_work() -> None:
    workers = DrainWorkers.of_this_thread()
    actors = [Lean() for _ in range(50)]
    assert all(a._greenlet is None for a in actors)
    for actor in actors:
        actor.tell(Nap(0.01))
    busy = {a._greenlet for a in actors}
    assert None not in busy and len(busy) == 50  # one worker each while they nap at once
    for actor in actors:
        drained(actor)
    assert all(a._greenlet is None and a._inbox is None for a in actors)
    assert workers.idle >= 50  # given back, for the next drain of any actor
    # a later tell borrows one of them, which still handles it
    actors[0].tell(Record(7))
    assert actors[0]._greenlet in busy
    drained(actors[0])
    assert actors[0].seen == [7]


def test_drain_workers_keep_at_most_keep_idle_and_hold_no_actor() -> None:
    workers = DrainWorkers(gevent.get_hub(), keep=4)
    done: list[int] = []
    lent = [workers.run(lambda n: (gevent.sleep(0.001), done.append(n)), n) for n in range(10)]
    with gevent.Timeout(2):
        while len(done) < 10:
            gevent.sleep(0.001)
        while sum(1 for g in lent if g.dead) < 6:
            gevent.sleep(0.001)
    assert sorted(done) == list(range(10))
    assert workers.idle == 4  # the other six ended
    # an idle worker keeps no reference to what it ran
    actor = Lean()
    ref = weakref.ref(actor)
    workers.run(actor._dispatch_tell, Record(1))
    with gevent.Timeout(2):
        while not actor.seen:
            gevent.sleep(0.001)
    gevent.sleep(0)
    del actor
    gc.collect()
    assert ref() is None


def test_drain_worker_logs_what_escapes_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    workers = DrainWorkers(gevent.get_hub(), keep=1)

    def boom(_: object) -> None:
        raise KeyError("bug")

    first = workers.run(boom, None)
    gevent.sleep(0)
    gevent.sleep(0)
    assert "a drain worker's job failed" in caplog.text
    seen: list[int] = []
    assert workers.run(seen.append, 1) is first  # the same worker, still alive
    gevent.sleep(0)
    assert seen == [1]


def test_tell_only_actor_drain_is_an_actor_and_keeps_its_context() -> None:
    actor = Lean()
    actor.tell(Record(1))
    drained(actor)
    actor.tell(Probe())  # a new drain greenlet: the context set by the last one is still there
    drained(actor)
    assert actor.probes == [(True, "after 1")]
    assert _mark.get() is None  # the teller's context is untouched


def test_tell_only_actor_fences_base_exceptions() -> None:
    actor = Lean()
    other = Lean()
    actor.tell(Crash(gevent.Timeout()))
    actor.tell(Crash(SystemExit(3)))
    actor.tell(Record(1))
    other.tell(Record(2))
    drained(actor)
    drained(other)
    assert [type(e) for _, e in actor.failed] == [ActorCrashed, ActorCrashed]
    assert isinstance(actor.failed[0][1].__cause__, gevent.Timeout)
    assert isinstance(actor.failed[1][1].__cause__, SystemExit)
    assert actor.seen == [1] and actor.is_alive()
    assert other.seen == [2] and other.is_alive()


def test_tell_only_actor_stop_handles_what_came_before_and_refuses_after() -> None:
    actor = Lean()
    actor.tell(Nap(0.02))
    actor.tell(Record(1))
    future = actor.stop(block=False)
    actor.tell(Record(2))  # told after the stop: dropped, as pykka drops it
    assert actor.is_alive()
    assert future.get(timeout=2) is True
    assert not actor.is_alive()
    assert actor.seen == [1]
    with pytest.raises(pykka.ActorDeadError):
        actor.tell(Record(3))
    assert tell_quietly(actor, Record(4)) is False
    assert actor.stop(timeout=1) is False  # already stopped
    assert actor.seen == [1]


def test_tell_only_actor_stop_while_idle_and_from_its_own_handler() -> None:
    idle = Lean()
    assert idle.stop(block=True, timeout=1) is True
    assert not idle.is_alive() and idle._greenlet is None
    busy = Lean()
    busy.tell(StopMe())
    busy.tell(Record(1))
    drained(busy)
    assert not busy.is_alive()
    assert busy.failed == []  # the handler's own stop did not wait on itself
    assert busy.seen == [1]  # told before the handler asked to stop: handled first


def test_tell_only_actor_stop_times_out_like_pykka() -> None:
    slow = Lean()
    slow.tell(Nap(0.2))
    with pytest.raises(pykka.Timeout):
        slow.stop(block=True, timeout=0.01)
    assert slow.is_alive()  # still finishing its message; the stop stays requested
    drained(slow)
    assert not slow.is_alive()


def test_tell_only_actor_ends_when_its_drain_is_killed() -> None:
    actor = Lean()
    actor.tell(Nap(5))
    actor.tell(Record(1))
    greenlet = actor._greenlet
    assert greenlet is not None
    gevent.sleep(0)
    gevent.kill(greenlet)  # GreenletExit is not fenced
    with gevent.Timeout(2):
        while actor.is_alive():
            gevent.sleep(0.001)
    assert greenlet.dead  # a killed worker is not lent again
    assert actor.seen == [] and actor.failed == []
    with pytest.raises(pykka.ActorDeadError):
        actor.tell(Record(2))
