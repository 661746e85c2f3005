"""Outbox: a connection's outbound buffer bounded by messages and by bytes."""

from __future__ import annotations

import pytest

from wsroom.transport.outbox import Outbox


@pytest.mark.parametrize("bounds", [(0, 10), (10, 0), (-1, 10), (1, -5)])
def test_bounds_must_be_positive(bounds: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        Outbox(*bounds)


def test_pop_order_and_size() -> None:
    box = Outbox(10, 100)
    assert box.pop() is None
    assert box.push("aa") and box.push("bbb") and box.push("c")
    assert len(box) == 3
    assert box.size == 6
    assert box.pop() == "aa"
    assert box.size == 4
    assert box.pop() == "bbb"
    assert box.pop() == "c"
    assert box.pop() is None
    assert box.size == 0
    assert len(box) == 0


def test_bound_by_messages() -> None:
    box = Outbox(3, 1000)
    assert all(box.push(f"m{i}") for i in range(3))
    assert not box.push("m3")
    assert len(box) == 3
    assert box.size == 6  # the refused frame is not counted
    box.pop()
    assert box.push("m4")
    assert box.take_all() == ["m1", "m2", "m4"]


def test_bound_by_bytes() -> None:
    box = Outbox(100, 10)
    assert box.push("12345")
    assert box.push("1234")  # 9
    assert box.push("1")  # exactly 10
    assert not box.push("1")  # 11
    assert box.size == 10
    assert box.pop() == "12345"
    assert not box.push("123456")  # 11
    assert box.push("12345")  # 10
    assert box.size == 10


def test_empty_outbox_accepts_one_oversize_frame() -> None:
    box = Outbox(5, 10)
    big = "x" * 50
    assert box.push(big)
    assert box.size == 50
    assert not box.push("y")  # nothing else fits next to it
    assert not box.push("z" * 50)
    assert box.pop() == big
    assert box.size == 0
    assert box.push("z" * 50)  # empty again: the next oversize frame is taken


def test_single_message_bound() -> None:
    box = Outbox(1, 1000)
    assert box.push("a")
    assert not box.push("b")


def test_take_all_empties_in_order() -> None:
    box = Outbox(10, 100)
    for f in ("a", "b", "c"):
        box.push(f)
    assert box.take_all() == ["a", "b", "c"]
    assert len(box) == 0
    assert box.size == 0
    assert box.pop() is None
    assert box.take_all() == []
    assert box.push("d" * 100)
    assert box.size == 100


def test_size_stays_consistent_after_mixed_operations() -> None:
    box = Outbox(4, 20)
    pushed: list[str] = []
    for i in range(50):
        frame = "x" * (i % 7)
        if box.push(frame):
            pushed.append(frame)
        if i % 3 == 0:
            got = box.pop()
            if got is not None:
                assert got == pushed.pop(0)
        assert box.size == sum(map(len, pushed))
        assert len(box) == len(pushed) <= 4


def test_byte_bound_counts_utf8_bytes() -> None:
    box = Outbox(100, 10)
    assert box.push("a")
    # 5 characters, 10 UTF-8 bytes: 1 + 10 = 11 bytes > max_bytes
    assert not box.push("\u00e9" * 5)


def test_an_empty_outbox_holds_no_deque() -> None:
    # Most outboxes are empty for most of their connection's life: 760 bytes each at 10,000.
    box = Outbox(10, 100)
    assert box._frames is None
    assert box.push("a") and box.push("b")
    assert box.pop() == "a" and box.pop() == "b"
    assert box._frames is None and not box
    assert box.push("c")
    assert box.take_all() == ["c"]
    assert box._frames is None and box.take_all() == []
