"""RoomState with resume members (contract §7): one numbered sequence for what is sent and what
waits offline, the answers to a resume, and the inbound count handed from one connection to
the next. Without sockets: connections are recording fakes."""

from __future__ import annotations

from typing import Any

import pytest
from roomstate_support import P, make_state

from wsroom.actors.resume import InboundOrder, NumberedJoin, ResumeRefusal
from wsroom.actors.state import NumberedSink, RoomState
from wsroom.errors import ParticipantOffline
from wsroom.types import Delivery
from wsroom.wire import NumberedFrame, OutFrame


class FakeConn:
    """Records what is pushed to it; refuses pushes past ``room`` frames (a full outbox)."""

    def __init__(self, room: int = 1000) -> None:
        self.frames: list[OutFrame] = []
        self.room = room
        self.closed: int | None = None

    def push(self, frame: OutFrame) -> bool:
        if len(self.frames) >= self.room:
            self.closed = 4008
            return False
        self.frames.append(frame)
        return True

    offer = push

    def close(self, code: int, reason: str = "") -> None:
        self.closed = code

    def take_unsent(self) -> list[OutFrame]:
        return []

    def seqs(self) -> list[int]:
        return [f.seq for f in self.frames if isinstance(f, NumberedFrame)]


def frame(n: int) -> OutFrame:
    return OutFrame(f'{{"type":"t","payload":{n}}}')


def resume(last_seq: int | None, handled: int = 0) -> NumberedJoin:
    return NumberedJoin(last_seq, InboundOrder(handled), 1 << 20)


def numbered_join(
    state: RoomState[Any], pid: str, conn: FakeConn, last_seq: int | None = None
) -> tuple[Any, list[Any], NumberedJoin]:
    nj = resume(last_seq)
    ticket = state.begin_join(P(pid), conn, nj)
    backlog = state.complete_join(P(pid), ticket.gen)
    assert backlog is not None
    for f in backlog:
        conn.offer(f)
    return ticket, backlog, nj


def send(state: RoomState[Any], pid: str, n: int) -> Delivery | bool:
    target = state.route(P(pid), frame(n))
    return target if isinstance(target, Delivery) else target.push(frame(n))


def test_a_live_resume_member_gets_every_frame_numbered_from_one() -> None:
    state, _ = make_state(queued=8)
    conn = FakeConn()
    ticket, backlog, _ = numbered_join(state, "a", conn)
    assert ticket.answer is None and backlog == []  # a fresh start asks nothing
    assert isinstance(state.live[P("a")], NumberedSink)
    for n in range(3):
        assert send(state, "a", n) is True
    assert conn.seqs() == [1, 2, 3]
    assert conn.frames[0].text == '{"type":"t","payload":0,"seq":1}'


def test_offline_frames_take_the_next_seqs_and_a_resume_replays_from_last_seq() -> None:
    state, _ = make_state(queued=8)
    conn = FakeConn()
    ticket, _, _ = numbered_join(state, "a", conn)
    for n in range(3):
        send(state, "a", n)
    state.ack(P("a"), ticket.gen, 1)
    state.disconnect(P("a"), ticket.gen, 1006, "")
    assert send(state, "a", 3) is Delivery.QUEUED
    conn2 = FakeConn()
    ticket2, _, _ = numbered_join(state, "a", conn2, last_seq=2)
    assert ticket2.reconnect and ticket2.answer is not None and ticket2.answer.ok
    assert conn2.seqs() == [3, 4]  # 3 was sent and not seen, 4 waited offline
    send(state, "a", 4)
    assert conn2.seqs() == [3, 4, 5]


def test_a_full_log_offline_refuses_and_the_resume_says_overflow_from_where_it_goes_on() -> None:
    state, _ = make_state(queued=3)
    conn = FakeConn()
    ticket, _, _ = numbered_join(state, "a", conn)
    send(state, "a", 0)  # seq 1, never acknowledged
    state.disconnect(P("a"), ticket.gen, 1006, "")
    assert send(state, "a", 1) is Delivery.QUEUED  # 2
    assert send(state, "a", 2) is Delivery.QUEUED  # 3
    queued, dropped = state.queue_for_waiting(frame(3), frozenset())  # 4: lost
    assert (queued, dropped) == (0, [P("a")])
    assert state.overflowed == []  # offline: the resume will say so
    conn2 = FakeConn()
    ticket2, _, _ = numbered_join(state, "a", conn2, last_seq=1)
    answer = ticket2.answer
    assert answer is not None and not answer.ok
    assert answer.reason is ResumeRefusal.OVERFLOW and answer.first_seq == 5
    assert conn2.seqs() == []
    send(state, "a", 5)
    assert conn2.seqs() == [5]  # contiguous from first_seq


def test_a_resume_after_expiry_is_expired_and_unknown_once_forgotten() -> None:
    state, clock = make_state(grace=10, queued=8)
    ticket, _, _ = numbered_join(state, "a", FakeConn())
    numbered_join(state, "b", FakeConn())  # keeps the room
    state.disconnect(P("a"), ticket.gen, 1006, "")
    clock.now += 11
    assert [leave.pid for leave in state.expire()] == [P("a")]
    ticket2, _, _ = numbered_join(state, "a", FakeConn(), last_seq=4)
    assert not ticket2.reconnect
    answer = ticket2.answer
    assert answer is not None and answer.reason is ResumeRefusal.EXPIRED
    assert answer.first_seq == 1
    ticket3, _, _ = numbered_join(state, "c", FakeConn(), last_seq=4)
    assert ticket3.answer is not None and ticket3.answer.reason is ResumeRefusal.UNKNOWN
    ticket4, _, _ = numbered_join(state, "d", FakeConn(), last_seq=0)
    assert ticket4.answer is not None and ticket4.answer.ok  # nothing seen, nothing missed


def test_the_inbound_count_goes_from_one_connection_to_the_next() -> None:
    state, _ = make_state(queued=8)
    ticket, _, nj = numbered_join(state, "a", FakeConn())
    for cseq in (1, 2, 3):
        nj.inbound.check(cseq)
    state.disconnect(P("a"), ticket.gen, 1006, "")
    nj.inbound.handled = 99  # its participant is done: the room took 3 at the disconnect
    _, _, nj2 = numbered_join(state, "a", FakeConn(), last_seq=0)
    assert nj2.inbound.handled == 3
    nj2.inbound.check(4)
    # replaced while online: taken from the connection it replaces, at the replacement
    ticket3 = state.begin_join(P("a"), FakeConn(), nj3 := resume(0))
    assert ticket3.replaced is not None and nj3.inbound.handled == 4
    # a fresh start counts from 1 again
    state.begin_join(P("a"), FakeConn(), nj4 := resume(None))
    assert nj4.inbound.handled == 0


def test_a_stale_connections_ack_is_ignored() -> None:
    state, _ = make_state(queued=8)
    conn = FakeConn()
    ticket, _, _ = numbered_join(state, "a", conn)
    for n in range(3):
        send(state, "a", n)
    conn2 = FakeConn()
    numbered_join(state, "a", conn2, last_seq=0)  # replaces: 1..3 again
    assert conn2.seqs() == [1, 2, 3]
    state.ack(P("a"), ticket.gen, 3)  # the old connection's, late
    member = state.members[P("a")]
    assert member.log is not None and len(member.log) == 3


def test_a_fresh_start_numbers_what_is_kept_from_one() -> None:
    state, _ = make_state(queued=8)
    ticket, _, _ = numbered_join(state, "a", FakeConn())
    for n in range(3):
        send(state, "a", n)
    state.ack(P("a"), ticket.gen, 1)
    state.disconnect(P("a"), ticket.gen, 1006, "")
    conn = FakeConn()
    ticket2, _, _ = numbered_join(state, "a", conn, last_seq=None)
    assert ticket2.reconnect and ticket2.answer is None
    assert conn.seqs() == [1, 2]
    assert [f.text for f in conn.frames] == [
        '{"type":"t","payload":1,"seq":1}',
        '{"type":"t","payload":2,"seq":2}',
    ]


def test_plain_and_resume_connections_of_one_member_hand_the_queue_over() -> None:
    state, _ = make_state(queued=8)
    ticket = state.begin_join(P("a"), FakeConn())
    state.complete_join(P("a"), ticket.gen)
    state.disconnect(P("a"), ticket.gen, 1006, "")
    send(state, "a", 0)
    send(state, "a", 1)
    # plain -> resume: the queue is numbered from 1; a resume from 0 misses nothing
    conn = FakeConn()
    ticket2, _, _ = numbered_join(state, "a", conn, last_seq=0)
    assert ticket2.answer is not None and ticket2.answer.ok and conn.seqs() == [1, 2]
    state.disconnect(P("a"), ticket2.gen, 1006, "")
    send(state, "a", 2)
    # resume -> plain: what the log kept (never acknowledged) goes out unnumbered
    ticket3 = state.begin_join(P("a"), FakeConn())
    backlog = state.complete_join(P("a"), ticket3.gen)
    assert backlog is not None
    assert [f.text for f in backlog] == [frame(n).text for n in range(3)]
    assert state.members[P("a")].log is None


def test_a_full_log_while_live_is_a_slow_consumer_and_a_loss_while_held_is_reported() -> None:
    state, _ = make_state(queued=2)
    conn = FakeConn()
    numbered_join(state, "a", conn)
    sink = state.live[P("a")]
    assert send(state, "a", 0) is True and send(state, "a", 1) is True
    assert send(state, "a", 2) is False  # nothing acknowledged: the log is full
    assert conn.closed == 4008 and isinstance(sink, NumberedSink) and not sink.kept
    # held (its backlog waits for the outbox): a loss then would be a hole in a live stream
    state2, _ = make_state(queued=1)
    conn2 = FakeConn()
    numbered_join(state2, "b", conn2)
    state2.hold(P("b"), [])
    assert send(state2, "b", 0) is Delivery.QUEUED
    with pytest.raises(ParticipantOffline):
        state2.route(P("b"), frame(1))
    assert state2.take_overflowed() == [state2.members[P("b")]]


def test_a_held_flush_goes_on_from_where_the_outbox_filled() -> None:
    state, _ = make_state(queued=8)
    ticket, _, _ = numbered_join(state, "a", FakeConn())
    state.disconnect(P("a"), ticket.gen, 1006, "")
    for n in range(4):
        send(state, "a", n)
    conn = FakeConn()
    ticket2 = state.begin_join(P("a"), conn, resume(0))
    backlog = state.complete_join(P("a"), ticket2.gen)
    assert backlog is not None and [f.seq for f in backlog] == [1, 2, 3, 4]
    state.hold(P("a"), backlog[2:])  # the outbox took two
    assert send(state, "a", 4) is Delivery.QUEUED  # behind the backlog, numbered 5
    rest = state.complete_join(P("a"), ticket2.gen)
    assert rest is not None and [f.seq for f in rest] == [3, 4, 5]


def test_acks_noted_for_a_connection_make_room_before_its_next_frame() -> None:
    state, _ = make_state(queued=4)
    conn = FakeConn()
    _, _, nj = numbered_join(state, "a", conn)
    for n in range(4):
        assert send(state, "a", n) is True
    nj.acks.note(3)
    nj.acks.note(2)  # older news changes nothing: acks are cumulative
    for n in range(4, 7):
        assert send(state, "a", n) is True  # 3 let go: room for 5, 6, 7
    assert send(state, "a", 7) is False and conn.closed == 4008  # 8: no ack made room
    assert conn.seqs() == [1, 2, 3, 4, 5, 6, 7]


def test_acks_noted_before_a_disconnect_or_a_replacement_count_and_later_ones_do_not() -> None:
    state, _ = make_state(queued=8)
    ticket, _, nj = numbered_join(state, "a", FakeConn())
    for n in range(4):
        send(state, "a", n)
    nj.acks.note(2)  # read just before the connection ended
    state.disconnect(P("a"), ticket.gen, 1006, "")
    nj.acks.note(4)  # after it: not the member's connection any more
    ticket2, _, nj2 = numbered_join(state, "a", conn2 := FakeConn(), last_seq=1)
    answer = ticket2.answer
    assert answer is not None and answer.reason is ResumeRefusal.OVERFLOW  # 2 was acknowledged
    assert answer.first_seq == 3 and conn2.seqs() == [3, 4]
    nj2.acks.note(3)
    ticket3 = state.begin_join(P("a"), FakeConn(), nj3 := resume(3))  # replaces conn2
    assert ticket3.replaced is conn2 and ticket3.answer is not None and ticket3.answer.ok
    nj2.acks.note(4)  # the replaced connection's, late: ignored
    log = state.members[P("a")].log
    assert log is not None and log.acked == 3 and len(log) == 1
    assert nj3.acks.pending == 0


def test_an_ack_noted_before_the_hubs_answer_counts_for_nothing() -> None:
    state, _ = make_state(queued=8)
    nj = resume(None)
    nj.acks.note(5)  # the client cannot have seen anything of this stream yet
    ticket = state.begin_join(P("a"), FakeConn(), nj)
    state.complete_join(P("a"), ticket.gen)
    for n in range(6):
        send(state, "a", n)
    log = state.members[P("a")].log
    assert log is not None and log.acked == 0 and len(log) == 6
