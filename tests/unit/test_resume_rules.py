"""Resume without loss: the outbound log and the inbound order, without sockets."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from wsroom.actors.resume import (
    Ack,
    InboundOrder,
    Numbered,
    OutboundLog,
    Replay,
    ResumeRefusal,
    Verdict,
    quick_ack,
    read_numbered,
    read_resume,
    resumed_frame,
)
from wsroom.envelope import Envelope
from wsroom.errors import BadEnvelope
from wsroom.wire import OutFrame, frame_of, numbered, numbered_wire


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
    # first_seq is where the stream goes on without a hole: "b" (2) lies before the gap, so it
    # is let go with it; the client gets 4 next and knows 2 and 3 are lost.
    assert replay.reason is ResumeRefusal.OVERFLOW and replay.first_seq == 4
    assert replay.frames == ((4, "d"),)
    assert out.resume(3).ok  # resuming from the new start is whole again


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
    assert replay.frames == ((3, "c"),)


def test_inbound_envelopes_are_handled_once_in_order() -> None:
    order = InboundOrder()
    assert [order.check(n) for n in (1, 2, 3)] == [Verdict.HANDLE] * 3
    # after a reconnect the client sends again what it had not seen acknowledged
    assert order.check(2) is Verdict.DUPLICATE and order.check(3) is Verdict.DUPLICATE
    assert order.check(4) is Verdict.HANDLE
    assert order.check(6) is Verdict.GAP and order.handled == 4


def test_a_resume_from_before_an_acknowledged_seq_replays_what_is_kept() -> None:
    out = log()
    for f in "abcd":
        out.append(f)
    out.ack(2)
    replay = out.resume(1)
    assert replay.frames == ((3, "c"), (4, "d")) and replay.first_seq == 3


def test_unknown_still_gives_what_is_kept_from_its_oldest() -> None:
    out = log()
    for f in "abc":
        out.append(f)
    out.ack(1)
    replay = out.resume(9)
    assert not replay.ok and replay.reason is ResumeRefusal.UNKNOWN
    assert replay.first_seq == 2 and replay.frames == ((2, "b"), (3, "c"))
    assert out.acked == 1  # a count that is not ours acknowledges nothing


def test_restart_numbers_what_is_kept_from_one_and_forgets_the_gaps() -> None:
    out = log(max_frames=2)
    out.append("a")
    out.append("b")
    assert out.append("c") is None
    out.ack(1)
    out.restart()
    assert out.after(0) == [(1, "b")] and out.next_seq == 2 and out.lost_upto == 0
    assert out.append("d") == 2 and out.resume(0).ok


def test_a_duplicate_does_not_move_the_count_and_a_gap_is_refused() -> None:
    order = InboundOrder(5)
    assert order.check(5) is Verdict.DUPLICATE
    assert order.check(7) is Verdict.GAP
    assert order.check(6) is Verdict.HANDLE and order.handled == 6


def test_the_protocol_frames_are_read_strictly() -> None:
    assert read_resume('{"type":"wsroom.resume","payload":{"last_seq":12}}') == 12
    for text in (
        '{"type":"wsroom.resume","payload":{"last_seq":-1}}',
        '{"type":"wsroom.resume","payload":{"last_seq":true}}',
        '{"type":"wsroom.resume"}',
        '{"type":"chat","payload":{"last_seq":1}}',
        "not json",
    ):
        assert read_resume(text) is None, text
    assert read_numbered('{"type":"wsroom.ack","payload":{"seq":3}}') == Ack(3)
    item = read_numbered('{"type":"chat","payload":1,"cseq":4}')
    assert isinstance(item, Numbered) and item.cseq == 4
    assert item.envelope == Envelope("chat", 1)
    bad = read_numbered('{"type":"","cseq":5}')  # counted, but no envelope
    assert isinstance(bad, Numbered) and isinstance(bad.envelope, BadEnvelope)
    for text, where in (
        ('{"type":"chat"}', "$.cseq"),
        ('{"type":"chat","cseq":0}', "$.cseq"),
        ('{"type":"wsroom.ack","payload":{"seq":"3"}}', "$.payload"),
        ('{"type":"wsroom.resume","payload":{"last_seq":1}}', "$.type"),
    ):
        with pytest.raises(BadEnvelope, match=re.escape(where)):
            read_numbered(text)


def test_the_seq_is_spliced_into_the_shared_frame() -> None:
    for pad in (0, 100, 70_000):
        frame = frame_of(Envelope("t", {"x": "y" * pad}))
        stamped = numbered(frame, 42)
        assert json.loads(stamped.text) == {"type": "t", "payload": {"x": "y" * pad}, "seq": 42}
        assert stamped.wire == OutFrame(stamped.text).wire and stamped.seq == 42
    assert frame.wire == OutFrame(frame.text).wire  # the shared frame is untouched


def test_the_resumed_answer_says_what_the_hub_has_of_the_client() -> None:
    ok = json.loads(resumed_frame(Replay(True, first_seq=5), 7).text)
    assert ok == {"type": "wsroom.resumed", "payload": {"ok": True, "cseq": 7}}
    refusal = Replay(False, reason=ResumeRefusal.EXPIRED, first_seq=1)
    assert json.loads(resumed_frame(refusal, 0).text)["payload"] == {
        "ok": False,
        "reason": "expired",
        "first_seq": 1,
        "cseq": 0,
    }


def test_the_usual_ack_is_read_without_a_decoder_and_anything_else_goes_the_full_way() -> None:
    for seq in (0, 7, 123_456_789, 10**17):
        text = json.dumps({"type": "wsroom.ack", "payload": {"seq": seq}}, separators=(",", ":"))
        assert quick_ack(text) == seq
    for text in (
        '{"type": "wsroom.ack", "payload": {"seq": 3}}',  # spaces: valid, for read_numbered
        '{"payload":{"seq":3},"type":"wsroom.ack"}',  # another key order: likewise
        '{"type":"wsroom.ack","payload":{"seq":3},"x":1}',
        '{"type":"wsroom.ack","payload":{"seq":03}}',  # not JSON
        '{"type":"wsroom.ack","payload":{"seq":-1}}',
        '{"type":"wsroom.ack","payload":{"seq":+1}}',
        '{"type":"wsroom.ack","payload":{"seq":1.0}}',
        '{"type":"wsroom.ack","payload":{"seq":1e3}}',
        '{"type":"wsroom.ack","payload":{"seq":"3"}}',
        '{"type":"wsroom.ack","payload":{"seq":}}',
        '{"type":"wsroom.ack","payload":{"seq":\u0661}}',  # a digit, but not ASCII
        '{"type":"wsroom.ack","payload":{"seq":1234567890123456789}}',  # past 18 digits
        '{"type":"wsroom.ack","payload":{"seq":3}} ',
        '{"type":"wsroom.acks","payload":{"seq":3}}',
        '{"type":"chat","payload":{"seq":3},"cseq":1}',
    ):
        assert quick_ack(text) is None, text
    # What it leaves is still read, or refused, by the full reader.
    assert read_numbered('{"type": "wsroom.ack", "payload": {"seq": 3}}') == Ack(3)
    assert read_numbered('{"type":"wsroom.ack","payload":{"seq":1234567890123456789}}') == Ack(
        1234567890123456789
    )


class _ModelLog:
    """The outbound log as first written (each frame kept with its seq): the reference the
    log with implicit seqs and gap markers must agree with."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self.entries: list[tuple[int, str]] = []
        self.next_seq, self.acked, self.lost_upto = 1, 0, 0

    def size(self) -> int:
        return sum(len(f) for _, f in self.entries)

    def append(self, frame: str) -> int | None:
        seq = self.next_seq
        self.next_seq += 1
        if len(self.entries) >= self.max_frames or (
            self.entries and self.size() + len(frame) > self.max_bytes
        ):
            self.lost_upto = seq
            return None
        self.entries.append((seq, frame))
        return seq

    def ack(self, seq: int) -> bool:
        if seq >= self.next_seq or seq < 0:
            return False
        if seq > self.acked:
            self.acked = seq
            self.entries = [e for e in self.entries if e[0] > seq]
        return True

    def resume(self, last_seq: int) -> tuple[bool, tuple[tuple[int, str], ...], Any, int]:
        if last_seq < 0 or last_seq >= self.next_seq:
            first = self.entries[0][0] if self.entries else self.next_seq
            return False, tuple(self.entries), ResumeRefusal.UNKNOWN, first
        floor = max(self.acked, self.lost_upto)
        if last_seq >= floor:
            self.ack(last_seq)
            return True, tuple(self.entries), None, last_seq + 1
        self.ack(floor)
        return False, tuple(self.entries), ResumeRefusal.OVERFLOW, floor + 1

    def restart(self) -> None:
        self.entries = [(i, f) for i, (_, f) in enumerate(self.entries, 1)]
        self.next_seq, self.acked, self.lost_upto = len(self.entries) + 1, 0, 0


def test_the_log_agrees_with_a_log_that_keeps_each_seq_through_losses_and_holes() -> None:
    # Losses, acks, resumes, fresh starts, reads, and seqs skipped from outside, at random.
    rng = random.Random(20_10)
    for bounds in ((0, 100), (1, 100), (3, 100), (5, 9), (8, 1000)):
        out, model = log(*bounds), _ModelLog(*bounds)
        for step in range(3000):
            op = rng.random()
            if op < 0.55:
                frame = "x" * rng.randint(1, 4)
                assert out.append(frame) == model.append(frame), step
            elif op < 0.8:
                seq = rng.randint(-1, model.next_seq + 1)
                if rng.random() < 0.7:  # mostly acks of what was sent, in order
                    seq = rng.randint(model.acked, model.next_seq - 1)
                assert out.ack(seq) == model.ack(seq), step
            elif op < 0.9:
                seq = rng.randint(-1, model.next_seq + 1)
                got = out.resume(seq)
                assert (got.ok, got.frames, got.reason, got.first_seq) == model.resume(seq), step
            elif op < 0.92:
                out.restart()
                model.restart()
            elif op < 0.94:
                # Seqs lost elsewhere (a sequence continued from another process's queue).
                jump = rng.randint(1, 3)
                out.next_seq += jump
                out.lost_upto = out.next_seq - 1
                model.next_seq += jump
                model.lost_upto = model.next_seq - 1
            else:
                seq = rng.randint(0, model.next_seq)
                assert out.after(seq) == [e for e in model.entries if e[0] > seq], step
            assert (out.next_seq, out.acked, out.lost_upto) == (
                model.next_seq,
                model.acked,
                model.lost_upto,
            ), step
            assert len(out) == len(model.entries) and out.size == model.size(), step
            assert out.frames() == [f for _, f in model.entries], step
            first = model.entries[0][0] if model.entries else model.next_seq
            assert out.first_seq == first, step


def test_the_stamped_bytes_are_a_frame_of_their_own_whatever_the_header() -> None:
    # Payload sizes around the header's steps (126 and 65,536 bytes), before and after the seq.
    for n in (0, 90, 110, 117, 118, 119, 125, 65_500, 65_520, 65_526, 65_530):
        frame = OutFrame('{"type":"t","payload":"%s"}' % ("y" * n))
        for seq in (1, 9, 10, 99, 100, 123_456, 10**15):
            expected = OutFrame(f'{frame.text[:-1]},"seq":{seq}}}')
            assert numbered_wire(frame, seq) == expected.wire, (n, seq)
            stamped = numbered(frame, seq)
            assert stamped.wire == expected.wire and stamped.size == expected.size
            assert stamped.text == expected.text and stamped.seq == seq
        assert frame.wire == OutFrame(frame.text).wire  # the shared frame is untouched
    # Members that count alike share one set of bytes; the others get their own, right.
    frame = OutFrame('{"type":"t","payload":1}')
    first = numbered_wire(frame, 5)
    assert numbered_wire(frame, 5) is first
    for seq in (6, 5, 100, 5):
        assert numbered_wire(frame, seq) == OutFrame(f'{frame.text[:-1]},"seq":{seq}}}').wire
