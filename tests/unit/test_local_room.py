"""What one process holds of a shared room: which entries reach which local connection."""

from __future__ import annotations

from wsroom.actors.local_room import Entry, LocalRoom, format_id, parse_id
from wsroom.types import ParticipantID

ALICE, BOB = ParticipantID("alice"), ParticipantID("bob")


def entry(sid: str, **fields: str) -> Entry:
    return Entry.of(sid, fields)


def test_stream_ids_compare_as_numbers_not_text() -> None:
    assert parse_id("9-0") < parse_id("10-0")
    assert parse_id("10-2") < parse_id("10-10")
    assert format_id(parse_id("1700000000000-3")) == "1700000000000-3"


def test_a_connection_gets_only_entries_after_what_its_queue_held() -> None:
    room = LocalRoom()
    lc = room.attach(ALICE, 1, object(), "5-0", reconnect=False)
    assert list(room.broadcast_targets(entry("6-0", k="b"), frozenset())) == []  # not live yet
    room.go_live(lc, "7-0")
    assert list(room.broadcast_targets(entry("7-0", k="b"), frozenset())) == []
    assert list(room.broadcast_targets(entry("8-0", k="b"), frozenset())) == [lc]
    assert list(room.broadcast_targets(entry("8-0", k="b"), frozenset({"alice"}))) == []


def test_a_send_reaches_its_target_only() -> None:
    room = LocalRoom()
    a = room.attach(ALICE, 1, object(), "0-0", reconnect=False)
    b = room.attach(BOB, 2, object(), "0-0", reconnect=False)
    room.go_live(a, "1-0")
    room.go_live(b, "1-0")
    assert room.target(entry("2-0", k="s", t="bob")) is b
    assert room.target(entry("2-0", k="s", t="carol")) is None


def test_what_a_connection_missed_starts_after_the_later_of_its_start_and_the_read() -> None:
    room = LocalRoom()
    lc = room.attach(ALICE, 1, object(), "3-0", reconnect=False)
    room.last_done = parse_id("2-0")
    assert room.after(lc) == "3-0"
    room.last_done = parse_id("9-1")
    assert room.after(lc) == "9-1"


def test_a_replacement_keeps_both_generations_until_the_old_one_is_detached() -> None:
    room = LocalRoom()
    old = room.attach(ALICE, 1, object(), "1-0", reconnect=False)
    room.go_live(old, "1-0")
    new = room.attach(ALICE, 2, object(), "4-0", reconnect=True)
    assert room.by_gen == {1: old, 2: new}
    assert room.current[ALICE] is new
    assert room.older_than(entry("3-0", k="c")) == [old]
    room.detach(old)
    assert room.current[ALICE] is new and ALICE not in room.live
    room.detach(new)
    assert room.empty
