"""RoomState: grace periods, offline queues, expiry and broadcasts to waiting members."""

from __future__ import annotations

import random

import pytest
from roomstate_support import FakeClock, P, join
from roomstate_support import make_state as _make_state

from wsroom.actors.state import Leave, RoomState
from wsroom.errors import (
    Disconnected,
    GraceExpired,
    ParticipantNotFound,
    ParticipantOffline,
)
from wsroom.types import Delivery, Presence, ReconnectPolicy


def make_state(grace: float = 10.0, queued: int = 3) -> tuple[RoomState[str], FakeClock]:
    return _make_state(grace, queued, now=1000.0)


# -- going offline ---------------------------------------------------------------------------


def test_disconnect_with_grace_keeps_member_offline() -> None:
    state, clock = make_state(grace=10)
    t = join(state, "a", "c1")
    assert state.disconnect(P("a"), t.gen, 1006, "gone") is None
    assert state.presence() == {"a": Presence.OFFLINE}
    assert state.has_members
    assert state.live == {}
    assert state.next_deadline() == clock.now + 10


def test_offline_queue_fills_then_refuses_newest() -> None:
    state, _ = make_state(grace=10, queued=3)
    t = join(state, "a", "c1")
    state.disconnect(P("a"), t.gen, 1006, "")
    for i in range(3):
        assert state.route(P("a"), f"m{i}") is Delivery.QUEUED
    with pytest.raises(ParticipantOffline):
        state.route(P("a"), "m3")
    with pytest.raises(ParticipantOffline):
        state.route(P("a"), "m4")
    assert list(state.members[P("a")].queue) == ["m0", "m1", "m2"]  # oldest kept
    t2 = state.begin_join(P("a"), "c2")
    assert state.complete_join(P("a"), t2.gen) == ["m0", "m1", "m2"]


def test_queueing_off_refuses_at_once() -> None:
    state, _ = make_state(grace=10, queued=0)
    t = join(state, "a", "c1")
    state.disconnect(P("a"), t.gen, 1006, "", ["unsent"])
    with pytest.raises(ParticipantOffline):
        state.route(P("a"), "m")
    assert len(state.members[P("a")].queue) == 0


def test_grace_zero_leaves_at_once_with_disconnected() -> None:
    state, _ = make_state(grace=0, queued=5)
    t = join(state, "a", "c1")
    leave = state.disconnect(P("a"), t.gen, 1001, "going away", ["unsent"])
    assert leave == Leave(P("a"), Disconnected(1001, "going away"))
    assert leave is not None and isinstance(leave.reason, Disconnected)
    assert (leave.reason.code, leave.reason.reason) == (1001, "going away")
    assert state.is_empty
    assert not state.has_members
    assert state.presence() == {}
    assert state.next_deadline() is None
    with pytest.raises(ParticipantNotFound):
        state.route(P("a"), "m")
    # a new connection is a first join
    assert state.begin_join(P("a"), "c2").reconnect is False


def test_grace_zero_keeps_others() -> None:
    state, _ = make_state(grace=0)
    ta = join(state, "a", "ca")
    join(state, "b", "cb")
    assert state.disconnect(P("a"), ta.gen, 1000, "") is not None
    assert state.presence() == {"b": Presence.ONLINE}
    assert state.has_members


# -- reconnecting ----------------------------------------------------------------------------


def test_reconnect_inside_grace_flushes_unsent_then_queued_in_order() -> None:
    state, clock = make_state(grace=10, queued=10)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "", ["u1", "u2"])
    assert state.route(P("a"), "q1") is Delivery.QUEUED
    assert state.route(P("a"), "q2") is Delivery.QUEUED
    clock.now += 9.99
    t2 = state.begin_join(P("a"), "c2")
    assert (t2.reconnect, t2.replaced) == (True, None)
    assert state.next_deadline() is None  # the grace timer is off while on_join runs
    assert state.route(P("a"), "q3") is Delivery.QUEUED  # sent during on_join
    assert state.complete_join(P("a"), t2.gen) == ["u1", "u2", "q1", "q2", "q3"]
    assert state.presence() == {"a": Presence.ONLINE}
    assert len(state.members[P("a")].queue) == 0
    clock.now += 100
    assert state.expire() == []
    assert state.route(P("a"), "live") == "c2"


def test_unsent_frames_are_bounded_by_the_queue_limit_oldest_kept() -> None:
    state, _ = make_state(grace=10, queued=2)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 4008, "slow consumer", ["u1", "u2", "u3"])
    with pytest.raises(ParticipantOffline):
        state.route(P("a"), "q1")
    t2 = state.begin_join(P("a"), "c2")
    assert state.complete_join(P("a"), t2.gen) == ["u1", "u2"]


def test_requeue_puts_frames_at_the_head() -> None:
    state, _ = make_state(grace=10, queued=5)
    t1 = join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")  # replaces c1
    assert t2.replaced == "c1"
    assert state.route(P("a"), "q1") is Delivery.QUEUED
    state.requeue(P("a"), ["old1", "old2"])
    assert list(state.members[P("a")].queue) == ["old1", "old2", "q1"]
    assert state.complete_join(P("a"), t2.gen) == ["old1", "old2", "q1"]
    assert t1.gen < t2.gen


def test_requeue_respects_limit_keeping_head() -> None:
    state, _ = make_state(grace=10, queued=3)
    join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")
    state.route(P("a"), "q1")
    state.route(P("a"), "q2")
    state.requeue(P("a"), ["o1", "o2"])
    assert state.complete_join(P("a"), t2.gen) == ["o1", "o2", "q1"]


def test_requeue_for_unknown_or_in_flight_first_join_is_ignored() -> None:
    state, _ = make_state()
    state.requeue(P("nobody"), ["x"])
    t = state.begin_join(P("a"), "c1")
    state.requeue(P("a"), ["x"])
    assert state.complete_join(P("a"), t.gen) == []


def test_reconnect_after_expiry_is_a_first_join() -> None:
    state, clock = make_state(grace=5)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "")
    state.route(P("a"), "q")
    clock.now += 5
    assert len(state.expire()) == 1
    t2 = state.begin_join(P("a"), "c2")
    assert (t2.reconnect, t2.replaced) == (False, None)
    assert state.complete_join(P("a"), t2.gen) == []  # the queue was dropped


# -- expiry ----------------------------------------------------------------------------------


def test_expire_not_before_deadline() -> None:
    state, clock = make_state(grace=10)
    t = join(state, "a", "c1")
    state.disconnect(P("a"), t.gen, 1006, "abnormal")
    clock.now += 9.999
    assert state.expire() == []
    assert state.presence() == {"a": Presence.OFFLINE}


@pytest.mark.parametrize("after", [10.0, 10.5, 1e6])
def test_expire_at_or_after_deadline(after: float) -> None:
    state, clock = make_state(grace=10, queued=5)
    t = join(state, "a", "c1")
    state.disconnect(P("a"), t.gen, 1006, "abnormal")
    state.route(P("a"), "q1")
    clock.now += after
    leaves = state.expire()
    assert [leave.pid for leave in leaves] == ["a"]
    reason = leaves[0].reason
    assert isinstance(reason, GraceExpired)
    assert reason.__cause__ == Disconnected(1006, "abnormal")
    assert isinstance(reason.__cause__, Disconnected)
    assert state.is_empty
    assert not state.has_members
    assert state.next_deadline() is None
    assert state.expire() == []  # exactly once
    with pytest.raises(ParticipantNotFound):
        state.route(P("a"), "q2")


def test_expire_in_deadline_order_and_only_due_ones() -> None:
    state, clock = make_state(grace=10)
    gens = {p: join(state, p, f"c{p}").gen for p in "abc"}
    start = clock.now
    state.disconnect(P("b"), gens["b"], 1000, "")
    clock.now = start + 1
    state.disconnect(P("a"), gens["a"], 1000, "")
    clock.now = start + 2
    state.disconnect(P("c"), gens["c"], 1000, "")
    assert state.next_deadline() == start + 10
    clock.now = start + 11.5
    assert [leave.pid for leave in state.expire()] == ["b", "a"]
    assert state.next_deadline() == start + 12
    assert state.presence() == {"c": Presence.OFFLINE}
    clock.now = start + 12
    assert [leave.pid for leave in state.expire()] == ["c"]
    assert state.is_empty


def test_next_deadline_ignores_stale_entries() -> None:
    state, clock = make_state(grace=10)
    start = clock.now
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "")  # deadline start+10
    clock.now = start + 1
    t2 = join(state, "a", "c2")  # reconnect: that deadline is stale now
    assert state.next_deadline() is None
    clock.now = start + 5
    state.disconnect(P("a"), t2.gen, 1006, "")  # deadline start+15
    assert state.next_deadline() == start + 15
    clock.now = start + 10
    assert state.expire() == []
    assert state.presence() == {"a": Presence.OFFLINE}
    clock.now = start + 15
    assert [leave.pid for leave in state.expire()] == ["a"]


def test_next_deadline_ignores_entries_of_removed_members() -> None:
    state, clock = make_state(grace=10)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "")
    t2 = state.begin_join(P("a"), "c2")
    state.fail_join(P("a"), t2.gen, ValueError())
    assert state.next_deadline() is None
    # a fresh member under the same id does not inherit the old deadline
    t3 = join(state, "a", "c3")
    clock.now += 100
    assert state.expire() == []
    assert state.presence() == {"a": Presence.ONLINE}
    assert t3.gen > t2.gen


def test_cause_is_the_last_close() -> None:
    state, clock = make_state(grace=10)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "first")
    t2 = join(state, "a", "c2")
    state.disconnect(P("a"), t2.gen, 4008, "slow consumer")
    clock.now += 10
    [leave] = state.expire()
    assert leave.reason.__cause__ == Disconnected(4008, "slow consumer")


# -- broadcasts to waiting members -----------------------------------------------------------


def test_queue_for_waiting_counts_queued_and_lists_dropped() -> None:
    state, _ = make_state(grace=10, queued=1)
    join(state, "live", "c-live")
    t = join(state, "off", "c-off")
    state.disconnect(P("off"), t.gen, 1006, "")
    t = join(state, "full", "c-full")
    state.disconnect(P("full"), t.gen, 1006, "")
    state.route(P("full"), "earlier")
    t = join(state, "excl", "c-excl")
    state.disconnect(P("excl"), t.gen, 1006, "")
    state.begin_join(P("first"), "c-first")  # first join in flight: not a member
    join(state, "recon", "c-recon1")
    state.begin_join(P("recon"), "c-recon2")  # reconnect in flight: queued for
    queued, dropped = state.queue_for_waiting("b1", frozenset({P("excl")}))
    assert queued == 2
    assert dropped == ["full"]
    assert list(state.members[P("off")].queue) == ["b1"]
    assert list(state.members[P("recon")].queue) == ["b1"]
    assert list(state.members[P("full")].queue) == ["earlier"]
    assert list(state.members[P("excl")].queue) == []
    assert list(state.members[P("live")].queue) == []
    assert list(state.members[P("first")].queue) == []


def test_queue_for_waiting_with_everyone_live() -> None:
    state, _ = make_state()
    join(state, "a", "ca")
    join(state, "b", "cb")
    assert state.queue_for_waiting("b1", frozenset()) == (0, [])


def test_queue_for_waiting_with_queueing_off_drops_every_offline_member() -> None:
    state, _ = make_state(grace=10, queued=0)
    for p in "abc":
        t = join(state, p, f"c{p}")
        if p != "b":
            state.disconnect(P(p), t.gen, 1006, "")
    queued, dropped = state.queue_for_waiting("x", frozenset())
    assert (queued, sorted(dropped)) == (0, ["a", "c"])


# -- many members, random interleavings, checked against a simple model ----------------------


class _Model:
    """The contract's rules written as plainly as possible."""

    def __init__(self, grace: float, limit: int) -> None:
        self.grace = grace
        self.limit = limit
        # pid -> dict(gen, conn, joined, live, deadline, queue)
        self.m: dict[str, dict[str, object]] = {}

    def presence(self) -> dict[str, Presence]:
        return {
            p: Presence.ONLINE if e["conn"] is not None else Presence.OFFLINE
            for p, e in self.m.items()
            if e["joined"]
        }

    def live(self) -> dict[str, object]:
        return {p: e["conn"] for p, e in self.m.items() if e["live"]}

    def deadline(self) -> float | None:
        ds = [e["deadline"] for e in self.m.values() if e["deadline"] is not None]
        return min(ds) if ds else None  # type: ignore[type-var]


def _check(state: RoomState[str], model: _Model) -> None:
    assert state.presence() == model.presence()
    assert state.live == model.live()
    assert state.has_members == any(e["joined"] for e in model.m.values())
    assert state.is_empty == (not model.m)
    assert state.next_deadline() == model.deadline()
    for p, e in model.m.items():
        assert list(state.members[P(p)].queue) == e["queue"]


@pytest.mark.parametrize("seed", range(60))
def test_random_interleavings_match_model(seed: int) -> None:
    rng = random.Random(seed)
    grace = rng.choice([0.0, 3.0, 10.0])
    limit = rng.choice([0, 1, 3])
    clock = FakeClock(0.0)
    state: RoomState[str] = RoomState(ReconnectPolicy(grace, limit), clock)
    model = _Model(grace, limit)
    pids = ["a", "b", "c", "d", "e"]
    gens: dict[str, list[int]] = {p: [] for p in pids}  # every gen ever issued, per pid
    frame_no = 0
    left: list[str] = []

    def new_frame() -> str:
        nonlocal frame_no
        frame_no += 1
        return f"f{frame_no}"

    for _step in range(250):
        op = rng.random()
        pid = rng.choice(pids)
        entry = model.m.get(pid)
        if op < 0.2:  # a new connection
            conn = f"{pid}-{frame_no}-{len(gens[pid])}"
            ticket = state.begin_join(P(pid), conn)
            assert all(ticket.gen > g for gs in gens.values() for g in gs)
            gens[pid].append(ticket.gen)
            if entry is None:
                assert (ticket.reconnect, ticket.replaced) == (False, None)
                model.m[pid] = dict(
                    gen=ticket.gen, conn=conn, joined=False, live=False, deadline=None, queue=[]
                )
            else:
                assert ticket.reconnect == entry["joined"]
                assert ticket.replaced == entry["conn"]
                entry.update(gen=ticket.gen, conn=conn, live=False, deadline=None)
        elif op < 0.4 and gens[pid]:  # on_join returned (maybe a stale one)
            gen = rng.choice(gens[pid][-2:])
            backlog = state.complete_join(P(pid), gen)
            if entry is None or entry["gen"] != gen or entry["conn"] is None:
                assert backlog is None
            else:
                assert backlog == entry["queue"]
                entry.update(joined=True, live=True, queue=[])
        elif op < 0.45 and gens[pid]:  # on_join raised
            gen = rng.choice(gens[pid][-2:])
            reason = ValueError(gen)
            leave = state.fail_join(P(pid), gen, reason)
            if entry is None or entry["gen"] != gen:
                assert leave is None
            else:
                del model.m[pid]
                assert leave == (Leave(P(pid), reason) if entry["joined"] else None)
                if leave:
                    left.append(pid)
        elif op < 0.65 and gens[pid]:  # a connection ended (maybe a stale one)
            gen = rng.choice(gens[pid][-2:])
            unsent = [new_frame() for _ in range(rng.randint(0, 2))]
            leave = state.disconnect(P(pid), gen, 1006, str(gen), unsent)
            if entry is None or entry["gen"] != gen or entry["conn"] is None:
                assert leave is None
            elif not entry["joined"]:
                assert leave is None
                del model.m[pid]
            elif grace <= 0:
                assert leave == Leave(P(pid), Disconnected(1006, str(gen)))
                del model.m[pid]
                left.append(pid)
            else:
                assert leave is None
                entry.update(
                    conn=None,
                    live=False,
                    deadline=clock.now + grace,
                    queue=(unsent + entry["queue"])[:limit],  # type: ignore[operator]
                )
        elif op < 0.8:  # send_to
            item = new_frame()
            if entry is not None and entry["live"]:
                assert state.route(P(pid), item) == entry["conn"]
            elif entry is None or not entry["joined"]:
                with pytest.raises(ParticipantNotFound):
                    state.route(P(pid), item)
            elif len(entry["queue"]) < limit:  # type: ignore[arg-type]
                assert state.route(P(pid), item) is Delivery.QUEUED
                entry["queue"].append(item)  # type: ignore[attr-defined]
            else:
                with pytest.raises(ParticipantOffline):
                    state.route(P(pid), item)
        elif op < 0.9:  # broadcast
            item = new_frame()
            exclude = frozenset(P(p) for p in rng.sample(pids, rng.randint(0, 2)))
            queued, dropped = state.queue_for_waiting(item, exclude)
            want_queued, want_dropped = 0, []
            for p, e in model.m.items():
                if e["live"] or not e["joined"] or p in exclude:
                    continue
                if len(e["queue"]) < limit:  # type: ignore[arg-type]
                    e["queue"].append(item)  # type: ignore[attr-defined]
                    want_queued += 1
                else:
                    want_dropped.append(p)
            assert (queued, dropped) == (want_queued, want_dropped)
        else:  # time passes
            clock.now += rng.choice([0.5, 1.0, 3.0, 7.0])
            due = sorted(
                (e["deadline"], e["gen"], p)
                for p, e in model.m.items()
                if e["deadline"] is not None and e["deadline"] <= clock.now  # type: ignore[operator]
            )
            leaves = state.expire()
            assert [leave.pid for leave in leaves] == [p for _, _, p in due]
            for leave in leaves:
                assert isinstance(leave.reason, GraceExpired)
                assert isinstance(leave.reason.__cause__, Disconnected)
                del model.m[leave.pid]
                left.append(leave.pid)
        _check(state, model)

    # the end: closing leaves each remaining member exactly once
    conns, leaves = state.close_all(GraceExpired)
    assert sorted(conns) == sorted(e["conn"] for e in model.m.values() if e["conn"] is not None)
    assert sorted(leave.pid for leave in leaves) == sorted(
        p for p, e in model.m.items() if e["joined"]
    )
    assert state.is_empty and state.closed


def test_heap_does_not_grow_without_bound_under_churn() -> None:
    state, clock = make_state(grace=10)
    for i in range(200):
        t = join(state, "a", f"c{i}")
        state.disconnect(P("a"), t.gen, 1006, "")
        clock.now += 0.01
        state.next_deadline()
    clock.now += 10
    assert [leave.pid for leave in state.expire()] == ["a"]
    assert state.next_deadline() is None
    assert state.is_empty


# -- presence changes --------------------------------------------------------------------


def test_presence_changes_report_grace_entry_and_return_only() -> None:
    state, clock = make_state(grace=10.0)
    join(state, "a", "c1")
    assert state.take_presence_changes() == []  # a first join is on_join's news
    state.disconnect(P("a"), state.members[P("a")].gen, 1006, "")
    assert state.take_presence_changes() == [(P("a"), Presence.OFFLINE)]
    assert state.take_presence_changes() == []
    join(state, "a", "c2")
    assert state.take_presence_changes() == [(P("a"), Presence.ONLINE)]
    join(state, "a", "c3")  # replaced while online: no change
    assert state.take_presence_changes() == []
    state.disconnect(P("a"), state.members[P("a")].gen, 1006, "")
    assert state.take_presence_changes() == [(P("a"), Presence.OFFLINE)]
    clock.now += 11
    assert len(state.expire()) == 1
    assert state.take_presence_changes() == []  # the expiry is on_leave's news


def test_a_refused_return_is_not_reported_online() -> None:
    state, _ = make_state(grace=10.0)
    join(state, "a", "c1")
    state.disconnect(P("a"), state.members[P("a")].gen, 1006, "")
    state.take_presence_changes()
    ticket = state.begin_join(P("a"), "c2")
    state.fail_join(P("a"), ticket.gen, RuntimeError("no"))
    assert state.take_presence_changes() == []


def test_a_return_replaced_before_its_on_join_returned_is_still_reported_online() -> None:
    state, _ = make_state(grace=10.0)
    join(state, "a", "c1")
    state.disconnect(P("a"), state.members[P("a")].gen, 1006, "")
    state.take_presence_changes()
    first = state.begin_join(P("a"), "c2")
    second = state.begin_join(P("a"), "c3")
    assert first.reconnect and second.reconnect and second.replaced == "c2"
    assert state.complete_join(P("a"), first.gen) is None
    assert state.complete_join(P("a"), second.gen) == []
    assert state.take_presence_changes() == [(P("a"), Presence.ONLINE)]


def test_hold_puts_the_rest_of_a_flush_back_and_queues_new_frames_behind_it() -> None:
    state, _ = make_state(grace=10.0, queued=10)
    join(state, "a", "c1")
    state.disconnect(P("a"), state.members[P("a")].gen, 1006, "")
    for frame in ("f1", "f2", "f3"):
        state.route(P("a"), frame)
    ticket = state.begin_join(P("a"), "c2")
    backlog = state.complete_join(P("a"), ticket.gen)
    assert backlog == ["f1", "f2", "f3"]
    state.hold(P("a"), backlog[1:])  # the outbox took f1 only
    assert P("a") not in state.live
    assert state.route(P("a"), "f4") is Delivery.QUEUED
    assert state.presence() == {P("a"): Presence.ONLINE}
    assert state.complete_join(P("a"), ticket.gen) == ["f2", "f3", "f4"]  # the outbox drained
    assert state.live[P("a")] == "c2"
    assert state.take_presence_changes() == [(P("a"), Presence.OFFLINE), (P("a"), Presence.ONLINE)]
