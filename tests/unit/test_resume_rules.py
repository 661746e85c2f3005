"""Resume without loss: the outbound log and the inbound order, without sockets."""

from __future__ import annotations

from wsroom.actors.resume import InboundOrder, OutboundLog, ResumeRefusal, Verdict


def log(max_frames: int = 4, max_bytes: int = 1000) -> OutboundLog[str]:
    return OutboundLog(max_frames, max_bytes, len)


def test_frames_are_numbered_from_one_contiguously() -> None:
    out = log()
    assert [out.append(f) for f in "abc"] == [1, 2, 3]
    assert len(out) == 3 and out.size == 3


def test_a_cumulative_ack_lets_go_of_everything_up_to_it() -> None:
    out = log()
    for f in "abcd":
        out.append(f)
    assert out.ack(2)
    assert len(out) == 2 and out.acked == 2
    assert out.ack(1)  # stale: nothing changes
    assert len(out) == 2 and out.acked == 2
    assert not out.ack(9)  # never sent
    assert out.acked == 2


def test_a_resume_replays_everything_after_last_seq_in_order() -> None:
    out = log()
    for f in "abcd":
        out.append(f)
    replay = out.resume(2)
    assert replay.ok and replay.frames == ((3, "c"), (4, "d"))
    assert out.acked == 2  # the resume acknowledged what the client says it has
    assert out.resume(4).frames == ()  # it had everything
    assert out.append("e") == 5  # numbering goes on across the reconnect


def test_a_full_log_refuses_and_a_resume_from_before_the_gap_says_overflow() -> None:
    out = log(max_frames=2)
    assert out.append("a") == 1 and out.append("b") == 2
    assert out.append("c") is None  # lost: seq 3
    out.ack(1)
    assert out.append("d") == 4
    replay = out.resume(1)
    assert not replay.ok
    assert replay.reason is ResumeRefusal.OVERFLOW and replay.first_seq == 2


def test_the_byte_bound_counts_and_one_big_frame_still_fits_an_empty_log() -> None:
    out = log(max_frames=10, max_bytes=5)
    assert out.append("xxxxxxxx") == 1  # alone, over the bound: kept whole
    assert out.append("y") is None
    out.ack(1)
    assert out.append("yyy") == 3 and out.append("zz") == 4 and out.append("w") is None


def test_a_resume_from_a_seq_never_sent_is_unknown() -> None:
    out = log()
    out.append("a")
    replay = out.resume(7)
    assert not replay.ok and replay.reason is ResumeRefusal.UNKNOWN and replay.first_seq == 1


def test_a_resume_from_before_an_acknowledged_seq_is_overflow() -> None:
    out = log()
    for f in "abc":
        out.append(f)
    out.ack(2)
    replay = out.resume(0)  # it claims to have lost what it acknowledged
    assert not replay.ok and replay.reason is ResumeRefusal.OVERFLOW and replay.first_seq == 3


def test_inbound_envelopes_are_handled_once_in_order() -> None:
    order = InboundOrder()
    assert [order.check(n) for n in (1, 2, 3)] == [Verdict.HANDLE] * 3
    # after a reconnect the client sends again what it had not seen acknowledged
    assert order.check(2) is Verdict.DUPLICATE and order.check(3) is Verdict.DUPLICATE
    assert order.check(4) is Verdict.HANDLE
    assert order.check(6) is Verdict.GAP and order.handled == 4
