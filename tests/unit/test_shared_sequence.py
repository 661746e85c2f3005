"""A resume membership's sequence between processes (contract §7 on a backplane): what a process
hands over when a connection leaves it, and how the next one rebuilds the log and answers the
resume, without Redis or sockets."""

from __future__ import annotations

from wsroom.actors.local_room import continue_held, continue_sequence, hand_over
from wsroom.actors.resume import OutboundLog, ResumeRefusal
from wsroom.wire import OutFrame


def frames(*names: str) -> list[OutFrame]:
    return [OutFrame(f'{{"type":"{n}"}}') for n in names]


def texts(log: OutboundLog[OutFrame], after: int = 0) -> list[tuple[int, str]]:
    return [(seq, f.text) for seq, f in log.after(after)]


def log_of(*names: str, acked: int = 0) -> OutboundLog[OutFrame]:
    log: OutboundLog[OutFrame] = OutboundLog(8, 1 << 20, OutFrame.size_of)
    for frame in frames(*names):
        log.append(frame)
    log.ack(acked)
    return log


def rebuild(queue: list[OutFrame], seq: dict[str, int] | None, last: int | None,
            expired: bool = False) -> tuple[OutboundLog[OutFrame], object, int]:
    return continue_sequence(queue, seq, last, expired=expired, max_frames=8, max_bytes=1 << 20)


def test_the_unacknowledged_frames_are_handed_over_numbered_from_the_first_kept() -> None:
    meta, unsent = hand_over(log_of("a", "b", "c", "d", acked=1), handled=5)
    assert meta == {"q": 2, "f": 1, "c": 5}
    assert unsent == [f'{{"type":"{n}"}}' for n in "bcd"]
    # Nothing unacknowledged: the queue's numbering starts at the next seq.
    assert hand_over(log_of("a", "b", acked=2), handled=0)[0] == {"q": 3, "f": 2, "c": 0}


def test_what_precedes_the_last_hole_is_let_go() -> None:
    log: OutboundLog[OutFrame] = OutboundLog(2, 1 << 20, OutFrame.size_of)
    for frame in frames("a", "b", "c"):  # c (seq 3) finds no room
        log.append(frame)
    meta, unsent = hand_over(log, handled=0)
    assert (meta, unsent) == ({"q": 4, "f": 3, "c": 0}, [])


def test_the_next_process_resumes_from_inside_the_handed_over_frames() -> None:
    meta, unsent = hand_over(log_of("a", "b", "c", "d", acked=1), handled=5)
    queue = [OutFrame(t) for t in unsent] + frames("e")  # e queued while offline: seq 5
    log, answer, handled = rebuild(queue, meta, last=2)
    assert answer.ok and answer.first_seq == 3 and handled == 5  # type: ignore[attr-defined]
    assert [s for s, _ in log.after(2)] == [3, 4, 5]
    assert log.next_seq == 6


def test_frames_lost_past_the_queue_give_overflow_and_the_seq_after_them() -> None:
    log, answer, _ = rebuild(frames("a", "b"), {"q": 1, "f": 0, "c": 0, "l": 2}, last=0)
    assert not answer.ok  # type: ignore[attr-defined]
    assert answer.reason is ResumeRefusal.OVERFLOW  # type: ignore[attr-defined]
    assert answer.first_seq == 5 and log.next_seq == 5  # type: ignore[attr-defined]
    assert len(log) == 0


def test_a_sequence_lost_with_its_process_is_unknown_and_goes_on_after_last_seq() -> None:
    log, answer, handled = rebuild(frames("x"), {"d": 1, "c": 3}, last=7)
    assert answer.reason is ResumeRefusal.UNKNOWN  # type: ignore[attr-defined]
    assert answer.first_seq == 8 and handled == 3  # type: ignore[attr-defined]
    assert texts(log, 7) == [(8, '{"type":"x"}')]


def test_a_membership_never_numbered_is_numbered_from_one() -> None:
    log, answer, _ = rebuild(frames("a", "b"), None, last=0)
    assert answer.ok and [s for s, _ in log.after(0)] == [1, 2]  # type: ignore[attr-defined]
    _, answer, _ = rebuild(frames("a"), None, last=4)
    assert answer.reason is ResumeRefusal.UNKNOWN  # type: ignore[attr-defined]
    _, answer, _ = rebuild([], None, last=4, expired=True)
    assert answer.reason is ResumeRefusal.EXPIRED  # type: ignore[attr-defined]


def test_a_fresh_start_renumbers_what_is_kept_from_one() -> None:
    log, answer, handled = rebuild(frames("a", "b"), {"q": 6, "f": 5, "c": 9}, last=None)
    assert answer is None and handled == 0
    assert [s for s, _ in log.after(0)] == [1, 2]


def test_a_held_backlog_takes_only_what_queued_after_the_log() -> None:
    log = log_of("a", "b", "c")  # next seq 4
    assert continue_held(log, frames("d", "e"), {"q": 4, "h": 1})
    assert [s for s, _ in log.after(0)] == [1, 2, 3, 4, 5]
    assert not continue_held(log, [], {"q": 6, "h": 1, "l": 1})  # one lost: a hole
    assert log.next_seq == 7


def test_a_sequence_lost_with_its_process_is_unknown_even_from_nothing_seen() -> None:
    _, answer, _ = rebuild(frames("x"), {"d": 1, "c": 0}, last=0)
    assert answer.reason is ResumeRefusal.UNKNOWN and answer.first_seq == 1  # type: ignore[attr-defined]
