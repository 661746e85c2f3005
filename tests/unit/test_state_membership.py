"""RoomState: joins, replacements, stale events, routing and closing (no I/O, fake clock)."""

from __future__ import annotations

import pytest
from roomstate_support import P, join, make_state

from wsroom.actors.state import JoinTicket, Leave
from wsroom.errors import (
    Disconnected,
    ParticipantNotFound,
    ParticipantOffline,
    RoomClosed,
)
from wsroom.types import Delivery, Presence

# -- first joins -----------------------------------------------------------------------------


def test_new_state_is_empty() -> None:
    state, _ = make_state()
    assert state.is_empty
    assert not state.has_members
    assert state.presence() == {}
    assert state.next_deadline() is None
    assert not state.closed


def test_first_join_completes_into_an_online_member() -> None:
    state, _ = make_state()
    ticket = state.begin_join(P("a"), "c1")
    assert ticket == JoinTicket(ticket.gen, reconnect=False, replaced=None)
    assert state.complete_join(P("a"), ticket.gen) == []
    assert state.has_members
    assert not state.is_empty
    assert state.presence() == {"a": Presence.ONLINE}
    assert state.live == {"a": "c1"}
    assert state.route(P("a"), "f") == "c1"


def test_join_in_flight_is_not_a_member() -> None:
    state, _ = make_state()
    state.begin_join(P("a"), "c1")
    assert not state.has_members
    assert not state.is_empty  # not reapable: the join is in flight
    assert state.presence() == {}
    assert state.live == {}
    with pytest.raises(ParticipantNotFound):
        state.route(P("a"), "f")


def test_join_in_flight_is_omitted_next_to_real_members() -> None:
    state, _ = make_state()
    join(state, "a", "ca")
    state.begin_join(P("b"), "cb")
    assert state.presence() == {"a": Presence.ONLINE}
    with pytest.raises(ParticipantNotFound):
        state.route(P("b"), "f")


def test_route_to_stranger_raises_not_found() -> None:
    state, _ = make_state()
    join(state, "a", "ca")
    with pytest.raises(ParticipantNotFound):
        state.route(P("zed"), "f")


def test_generations_increase() -> None:
    state, _ = make_state()
    g1 = state.begin_join(P("a"), "c1").gen
    g2 = state.begin_join(P("b"), "c2").gen
    g3 = state.begin_join(P("a"), "c3").gen
    assert g1 < g2 < g3


# -- failed joins ----------------------------------------------------------------------------


def test_fail_of_first_join_leaves_no_trace() -> None:
    state, _ = make_state()
    ticket = state.begin_join(P("a"), "c1")
    assert state.fail_join(P("a"), ticket.gen, ValueError("no")) is None
    assert state.is_empty
    assert not state.has_members
    assert state.presence() == {}
    # and a later join is a first join again
    assert state.begin_join(P("a"), "c2").reconnect is False


def test_fail_of_reconnect_returns_leave_with_that_reason() -> None:
    state, _ = make_state()
    join(state, "a", "c1")
    ticket = state.begin_join(P("a"), "c2")
    assert ticket.reconnect is True
    reason = ValueError("rejected")
    leave = state.fail_join(P("a"), ticket.gen, reason)
    assert leave == Leave(P("a"), reason)
    assert leave is not None and leave.reason is reason
    assert state.is_empty
    assert not state.has_members
    with pytest.raises(ParticipantNotFound):
        state.route(P("a"), "f")


def test_fail_of_reconnect_inside_grace_drops_queue_and_membership() -> None:
    state, _ = make_state(grace=10, queued=4)
    t1 = join(state, "a", "c1")
    state.disconnect(P("a"), t1.gen, 1006, "")
    assert state.route(P("a"), "q1") is Delivery.QUEUED
    t2 = state.begin_join(P("a"), "c2")
    assert (t2.reconnect, t2.replaced) == (True, None)
    leave = state.fail_join(P("a"), t2.gen, RuntimeError("x"))
    assert leave is not None and isinstance(leave.reason, RuntimeError)
    assert state.is_empty
    assert state.next_deadline() is None


def test_stale_fail_join_is_ignored() -> None:
    state, _ = make_state()
    t1 = state.begin_join(P("a"), "c1")
    t2 = state.begin_join(P("a"), "c2")
    assert state.fail_join(P("a"), t1.gen, ValueError()) is None
    assert state.complete_join(P("a"), t2.gen) == []
    assert state.presence() == {"a": Presence.ONLINE}


# -- replacement and staleness ---------------------------------------------------------------


def test_begin_join_for_online_member_replaces_it() -> None:
    state, _ = make_state()
    t1 = join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")
    assert t2.reconnect is True
    assert t2.replaced == "c1"
    assert t2.gen > t1.gen
    # while the new on_join runs: still a member, ONLINE, but not live (frames are queued)
    assert state.presence() == {"a": Presence.ONLINE}
    assert state.live == {}
    assert state.route(P("a"), "during") is Delivery.QUEUED
    assert state.complete_join(P("a"), t2.gen) == ["during"]
    assert state.live == {"a": "c2"}


def test_second_connection_during_first_join_replaces_it_without_reconnect() -> None:
    state, _ = make_state()
    t1 = state.begin_join(P("a"), "c1")
    t2 = state.begin_join(P("a"), "c2")
    assert (t2.reconnect, t2.replaced) == (False, "c1")
    assert state.complete_join(P("a"), t1.gen) is None  # stale
    assert not state.has_members
    assert state.complete_join(P("a"), t2.gen) == []
    assert state.presence() == {"a": Presence.ONLINE}


def test_stale_complete_join_after_newer_begin_returns_none() -> None:
    state, _ = make_state()
    t1 = join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")
    t3 = state.begin_join(P("a"), "c3")
    assert t3.replaced == "c2"
    assert state.complete_join(P("a"), t2.gen) is None
    assert state.complete_join(P("a"), t1.gen) is None
    assert state.live == {}
    assert state.complete_join(P("a"), t3.gen) == []
    assert state.live == {"a": "c3"}


def test_stale_disconnect_cannot_evict_newer_connection() -> None:
    state, clock = make_state(grace=0.0)
    t1 = join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")
    # the replaced connection's close arrives while the new on_join runs...
    assert state.disconnect(P("a"), t1.gen, 4001, "replaced") is None
    assert state.presence() == {"a": Presence.ONLINE}
    assert state.complete_join(P("a"), t2.gen) == []
    # ...or after it completed
    assert state.disconnect(P("a"), t1.gen, 4001, "replaced") is None
    assert state.live == {"a": "c2"}
    assert state.presence() == {"a": Presence.ONLINE}
    assert state.next_deadline() is None
    clock.now += 1000
    assert state.expire() == []
    assert state.route(P("a"), "f") == "c2"


def test_second_disconnect_of_same_generation_is_ignored() -> None:
    state, _ = make_state(grace=10)
    t1 = join(state, "a", "c1")
    assert state.disconnect(P("a"), t1.gen, 1006, "") is None
    deadline = state.next_deadline()
    assert state.disconnect(P("a"), t1.gen, 1000, "again") is None
    assert state.next_deadline() == deadline
    assert state.members[P("a")].last_close == Disconnected(1006, "")


def test_disconnect_of_unknown_participant_is_ignored() -> None:
    state, _ = make_state()
    assert state.disconnect(P("nobody"), 1, 1000, "") is None
    assert state.is_empty


def test_disconnect_of_first_join_in_flight_leaves_no_trace() -> None:
    state, _ = make_state(grace=10)
    t1 = state.begin_join(P("a"), "c1")
    assert state.disconnect(P("a"), t1.gen, 1006, "") is None
    assert state.is_empty
    assert state.next_deadline() is None
    assert state.complete_join(P("a"), t1.gen) is None
    assert state.is_empty


def test_disconnect_during_reconnect_in_flight_starts_grace() -> None:
    state, clock = make_state(grace=10)
    join(state, "a", "c1")
    t2 = state.begin_join(P("a"), "c2")
    assert state.disconnect(P("a"), t2.gen, 1006, "") is None
    assert state.presence() == {"a": Presence.OFFLINE}
    assert state.next_deadline() == clock.now + 10
    assert state.complete_join(P("a"), t2.gen) is None  # its on_join returned too late


# -- closing the room ------------------------------------------------------------------------


def test_close_all_returns_conns_and_one_leave_per_joined_member() -> None:
    state, _ = make_state(grace=10)
    join(state, "a", "ca")
    tb = join(state, "b", "cb")
    state.disconnect(P("b"), tb.gen, 1006, "")  # offline, in grace
    state.begin_join(P("c"), "cc")  # first join in flight
    join(state, "d", "cd1")
    state.begin_join(P("d"), "cd2")  # reconnect in flight
    conns, leaves = state.close_all(RoomClosed)
    assert sorted(conns) == ["ca", "cc", "cd2"]
    assert sorted(leave.pid for leave in leaves) == ["a", "b", "d"]
    assert all(isinstance(leave.reason, RoomClosed) for leave in leaves)
    assert len({id(leave.reason) for leave in leaves}) == 3  # one reason per leave
    assert state.closed
    assert state.is_empty
    assert not state.has_members
    assert state.presence() == {}
    assert state.live == {}
    assert state.next_deadline() is None
    with pytest.raises(RuntimeError):
        state.begin_join(P("e"), "ce")


def test_close_all_of_empty_state() -> None:
    state, _ = make_state()
    assert state.close_all(RoomClosed) == ([], [])
    assert state.closed


def test_events_after_close_are_ignored() -> None:
    state, clock = make_state(grace=10)
    t = join(state, "a", "ca")
    state.close_all(RoomClosed)
    assert state.disconnect(P("a"), t.gen, 4000, "room closed") is None
    assert state.complete_join(P("a"), t.gen) is None
    assert state.fail_join(P("a"), t.gen, ValueError()) is None
    clock.now += 100
    assert state.expire() == []
    with pytest.raises(ParticipantNotFound):
        state.route(P("a"), "f")


def test_route_to_live_member_does_not_touch_queue() -> None:
    state, _ = make_state(queued=1)
    join(state, "a", "ca")
    for _ in range(5):
        assert state.route(P("a"), "f") == "ca"
    assert len(state.members[P("a")].queue) == 0


def test_offline_with_queueing_off_raises_offline() -> None:
    state, _ = make_state(grace=10, queued=0)
    t = join(state, "a", "ca")
    state.disconnect(P("a"), t.gen, 1006, "")
    with pytest.raises(ParticipantOffline):
        state.route(P("a"), "f")
    assert state.presence() == {"a": Presence.OFFLINE}


def test_connection_of_answers_only_for_the_current_generation() -> None:
    state, _ = make_state()
    old = join(state, "a", "c1")
    new = state.begin_join(P("a"), "c2")
    assert state.connection_of(P("a"), old.gen) is None
    assert state.connection_of(P("a"), new.gen) == "c2"
    assert state.connection_of(P("zed"), new.gen) is None
