"""A mass leave in one room actor, without sockets: its work is O(n), and it lets others run.

10,000 members closing at once once froze the server for about 113 s: each leave rebuilt the
lists of running hooks (O(n²)), and the room worked through its whole inbox without yielding,
so the ``on_leave`` greenlets it spawned never ran. The same at 2,000 fake connections here;
the 10,000-socket scenario is ``soak/test_ten_thousand.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pykka
import pytest

from wsroom.actors import messages as m
from wsroom.actors import room as room_module
from wsroom.actors.participant import ParticipantActor
from wsroom.actors.room import RoomActor
from wsroom.actors.runtime import GeventActor, handles
from wsroom.errors import HubStopped
from wsroom.types import ParticipantID, ReconnectPolicy, RoomID

MEMBERS = 2000


class FakeConn:
    """The connection entry points the room uses, with nothing behind them."""

    closing = False
    disconnects = 0  # how many of its kind the room has handled a disconnect of

    def offer(self, frame: Any) -> bool:
        return True

    push = offer

    def take_unsent(self) -> list[Any]:
        FakeConn.disconnects += 1  # the room takes what is unsent once per disconnect
        return []

    def close(self, code: int, reason: str = "") -> None:
        self.closing = True

    def when_drained(self, callback: Any) -> None:
        callback()


class QuietHub(GeventActor):
    """Stands in for the hub actor: takes the room's news and does nothing with it."""

    @handles(m.RoomActive, m.RoomGone)
    def _news(self, _msg: Any) -> None:
        return None


class Hooks:
    def __init__(self) -> None:
        self.left: list[str] = []

    def on_join(self, *_args: Any) -> None:
        pass

    def on_message(self, *_args: Any) -> None:
        pass

    def on_leave(self, room: str, pid: str, reason: BaseException) -> None:
        self.left.append(pid)


class CountingGreenlet(gevent.Greenlet):  # type: ignore[type-arg]
    """A greenlet that counts how often anyone asks whether it is dead: the room's
    bookkeeping of running hooks, made visible."""

    reads = 0

    @property
    def dead(self) -> bool:
        CountingGreenlet.reads += 1
        return bool(super().dead)


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[pykka.ActorRef[Any], Hooks]]:
    def spawn_counted(name: str, fn: Any, *args: Any) -> gevent.Greenlet:  # type: ignore[type-arg]
        return CountingGreenlet.spawn(fn, *args)

    monkeypatch.setattr(room_module, "spawn_hook", spawn_counted)
    CountingGreenlet.reads = 0
    hub = QuietHub.start()
    hooks = Hooks()
    ref = RoomActor.start(RoomID("big"), hub, hooks, ReconnectPolicy(0.0, 0))
    yield ref, hooks
    for actor in (ref, hub):
        if actor.is_alive():
            actor.stop()


def _fill(ref: pykka.ActorRef[Any]) -> list[tuple[ParticipantID, int]]:
    members = []
    for i in range(MEMBERS):
        pid = ParticipantID(f"p{i}")
        admission: Any = ref.ask(m.BeginJoin(pid, FakeConn()))
        assert ref.ask(m.CompleteJoin(pid, admission.ticket.gen)) is None
        members.append((pid, admission.ticket.gen))
    return members


def test_a_mass_leave_does_work_linear_in_the_members(
    room: tuple[pykka.ActorRef[Any], Hooks],
) -> None:
    ref, hooks = room
    members = _fill(ref)
    for pid, gen in members:
        ref.tell(m.Disconnect(pid, gen, 1000, ""))
    with gevent.Timeout(10.0):
        while len(hooks.left) < MEMBERS:
            gevent.sleep(0.01)
    assert sorted(hooks.left) == sorted(pid for pid, _ in members)
    # Rebuilding the list of running hooks on every leave asked each hook whether it was dead
    # about n²/2 times (2 million here); the room now lets each hook drop itself as it ends.
    assert CountingGreenlet.reads <= 2 * MEMBERS, CountingGreenlet.reads


def test_a_long_inbox_does_not_keep_other_greenlets_waiting(
    room: tuple[pykka.ActorRef[Any], Hooks],
) -> None:
    ref, hooks = room
    members = _fill(ref)
    FakeConn.disconnects = 0
    for pid, gen in members:
        ref.tell(m.Disconnect(pid, gen, 1000, ""))
    handled_when_probed: list[int] = []
    # Queued behind the room's wake-up: it runs when the room lets others run.
    gevent.spawn(lambda: handled_when_probed.append(FakeConn.disconnects))
    gevent.sleep(0)
    with gevent.Timeout(10.0):
        while not handled_when_probed or len(hooks.left) < MEMBERS:
            gevent.sleep(0.01)
    assert handled_when_probed[0] < MEMBERS // 4, (
        f"the room handled {handled_when_probed[0]} of {MEMBERS} leaves before anyone else ran"
    )


def test_per_connection_actors_stay_out_of_pykkas_global_registry() -> None:
    # pykka's registry is one list searched from the front on every stop: 10,000 participant
    # actors stopping in reverse order cost 4.5 s of CPU in it (0.9 s without it).
    before = len(pykka.ActorRegistry.get_all())
    hub = QuietHub.start()
    ref = ParticipantActor(hub, Hooks(), RoomID("r"), ParticipantID("p"), None, None, None)
    try:
        assert len(pykka.ActorRegistry.get_all()) == before + 1  # the hub actor only
    finally:
        ref.stop()
        hub.stop()
    assert not ref.is_alive()


def test_stop_finds_a_room_emptied_just_before_it_and_waits_for_its_leaves(
    room: tuple[pykka.ActorRef[Any], Hooks],
) -> None:
    # The last member left and the room told the hub it is gone, but the hub took StopHub
    # first: its CloseRoom (must_exist=False) reaches a room already closed. That is nothing
    # to close, not a failure: the answer is the room's on_leave greenlets still running.
    ref, hooks = room
    pid = ParticipantID("last")
    admission: Any = ref.ask(m.BeginJoin(pid, FakeConn()))
    ref.ask(m.CompleteJoin(pid, admission.ticket.gen))
    ref.tell(m.Disconnect(pid, admission.ticket.gen, 1000, ""))
    running = ref.ask(m.CloseRoom(1001, "hub stopped", HubStopped, must_exist=False), timeout=5)
    assert isinstance(running, list)
    gevent.joinall(running, timeout=5)
    assert hooks.left == ["last"]
