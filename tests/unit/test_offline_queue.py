"""OfflineQueue: a bounded FIFO that refuses the newest item when full."""

from __future__ import annotations

from wsroom.actors.state import OfflineQueue


def test_fifo_order_and_drain() -> None:
    q = OfflineQueue(3)
    assert len(q) == 0 and list(q) == [] and q.drain() == []  # nothing queued yet
    assert q.offer("a") and q.offer("b")
    assert len(q) == 2
    assert list(q) == ["a", "b"]
    assert q.drain() == ["a", "b"]
    assert len(q) == 0
    assert q.drain() == []


def test_full_refuses_newest_and_keeps_oldest() -> None:
    q = OfflineQueue(2)
    assert q.offer("1")
    assert q.offer("2")
    assert not q.offer("3")
    assert not q.offer("4")
    assert list(q) == ["1", "2"]
    q.drain()
    assert q.offer("5")


def test_limit_zero_refuses_everything() -> None:
    q = OfflineQueue(0)
    assert not q.offer("x")
    assert q.extend(["x", "y"]) == 0
    assert len(q) == 0


def test_extend_stops_when_full() -> None:
    q = OfflineQueue(3)
    q.offer("a")
    assert q.extend(["b", "c", "d", "e"]) == 2
    assert q.drain() == ["a", "b", "c"]


def test_extend_accepts_iterators() -> None:
    q = OfflineQueue(10)
    assert q.extend(f"m{i}" for i in range(4)) == 4
    assert q.drain() == ["m0", "m1", "m2", "m3"]


def test_bound_is_by_message_count_not_size() -> None:
    q = OfflineQueue(2)
    assert q.offer("x" * 1_000_000)
    assert q.offer("")
    assert not q.offer("y")
