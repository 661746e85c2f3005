"""The shared rules (the Lua scripts in ``wsroom.backplane.scripts``) called directly on a real
Redis, without hubs or sockets: generations, exactly-once claims, handover order, counts."""

from __future__ import annotations

import json

import pytest
from conftest import wait_until

import wsroom
from wsroom.backplane.store import Store, connect, room_stream

R = wsroom.RoomID("room")
ALICE, BOB = wsroom.ParticipantID("alice"), wsroom.ParticipantID("bob")


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(connect(redis_url, gevent_sockets=False), timeout=3.0)


def live(store: Store, pid: wsroom.ParticipantID, proc: str = "A", grace: float = 5.0,
         maxq: int = 4) -> int:
    joined = store.begin_join(R, pid, proc, grace, maxq)
    answer = store.complete_join(R, pid, joined.gen)
    assert answer["ok"]
    return joined.gen


def frames_queued(store: Store, pid: str) -> list[str]:
    return list(store.client.lrange(f"wsroom:r:{{{R}}}:q:{pid}", 0, -1))


def last_id(store: Store) -> str:
    entries = store.client.xrevrange(room_stream(R), count=1)
    return entries[0][0] if entries else "0-0"


def test_a_first_join_is_a_member_only_once_on_join_returned(store: Store) -> None:
    joined = store.begin_join(R, ALICE, "A", 5.0, 4)
    assert not joined.reconnect
    with pytest.raises(wsroom.RoomNotFound):
        store.members(R)
    store.complete_join(R, ALICE, joined.gen)
    assert store.members(R) == {ALICE: wsroom.Presence.ONLINE}
    assert store.rooms() == [R]


def test_a_stale_disconnect_cannot_evict_a_newer_connection(store: Store) -> None:
    old = live(store, ALICE)
    new = store.begin_join(R, ALICE, "B", 5.0, 4)
    store.handover(R, ALICE, "A", old, last_id(store), [])
    assert store.complete_join(R, ALICE, new.gen)["ok"]
    answer = store.go_offline(R, ALICE, old, "A", "0-0", 1006, "", [])
    assert answer == {"stale": True}
    assert store.members(R) == {ALICE: wsroom.Presence.ONLINE}


def test_report_counts_live_queued_and_dropped_with_exclude(store: Store) -> None:
    live(store, ALICE)
    gen = live(store, BOB, maxq=1)
    store.go_offline(R, BOB, gen, "A", last_id(store), 1006, "", [])
    report = store.broadcast(R, "1", [])
    assert report == wsroom.BroadcastReport(sent=1, queued=1, dropped=())
    report = store.broadcast(R, "2", [ALICE])
    assert report == wsroom.BroadcastReport(sent=0, queued=0, dropped=(BOB,))
    with pytest.raises(wsroom.ParticipantOffline):
        store.send_to(R, BOB, "3")
    assert frames_queued(store, BOB) == ["1"]


def test_going_offline_queues_what_the_connection_missed_in_stream_order(store: Store) -> None:
    live(store, ALICE)
    gen = live(store, BOB, maxq=10)
    seen = last_id(store)  # the process delivered everything up to here to bob
    store.broadcast(R, "b1", [])
    store.send_to(R, BOB, "s2")
    store.send_to(R, ALICE, "not-bob")
    store.broadcast(R, "b3", [BOB])
    store.go_offline(R, BOB, gen, "A", seen, 1006, "", ["unsent0"])
    store.broadcast(R, "b4", [])
    assert frames_queued(store, BOB) == ["unsent0", "b1", "s2", "b4"]


def test_a_replaced_connection_hands_over_before_the_new_one_goes_live(store: Store) -> None:
    gen = live(store, BOB, maxq=10)
    seen = last_id(store)
    store.broadcast(R, "before", [])  # counted sent to the old connection
    new = store.begin_join(R, BOB, "B", 5.0, 10)
    assert new.reconnect
    store.broadcast(R, "after", [])  # queued for the new one
    assert store.complete_join(R, BOB, new.gen) == {"wait": True}
    store.handover(R, BOB, "A", gen, seen, ["unsent"])
    answer = store.complete_join(R, BOB, new.gen)
    assert answer["ok"] and answer["frames"] == ["unsent", "before", "after"]
    kinds = [fields["k"] for _, fields in store.client.xrange(room_stream(R))]
    assert kinds == ["b", "r", "b", "h"]


def test_grace_expiry_is_claimed_by_exactly_one_caller(store: Store, redis_url: str) -> None:
    other = Store(connect(redis_url, gevent_sockets=False), timeout=3.0)
    gen = live(store, ALICE, grace=0.05)
    store.go_offline(R, ALICE, gen, "A", last_id(store), 1001, "bye", [])
    leaves: list[list[object]] = []

    def claimed() -> bool:
        leaves.extend(store.expire()["leaves"])
        leaves.extend(other.expire()["leaves"])
        return bool(leaves)

    wait_until(claimed, timeout=3)
    assert leaves == [[R, ALICE, 1001, "bye"]]
    assert store.expire()["leaves"] == [] and other.expire()["leaves"] == []
    assert store.rooms() == []


def test_a_silent_process_is_reaped_once_and_its_members_go_offline(store: Store) -> None:
    store.heartbeat("dead")
    live(store, ALICE, proc="dead")
    live(store, BOB, proc="alive")
    store.heartbeat("alive")
    wait_until(lambda: store.reap_dead(0.1, "alive")["offline"], timeout=3)
    assert store.members(R) == {ALICE: wsroom.Presence.OFFLINE, BOB: wsroom.Presence.ONLINE}
    assert store.reap_dead(0.1, "alive")["offline"] == []
    assert store.heartbeat("dead") is True  # it learns it was declared dead
    assert store.heartbeat("dead") is False


def test_a_retried_call_takes_effect_once(store: Store) -> None:
    live(store, ALICE)
    script = store._scripts["broadcast"]
    args = ["call-1", R, "x", "[]"]
    first = json.loads(script(keys=[], args=args, client=store.client))
    again = json.loads(script(keys=[], args=args, client=store.client))
    assert first == again
    assert store.client.xlen(room_stream(R)) == 1


def test_an_emitters_close_leaves_the_on_leave_calls_to_one_hub(store: Store) -> None:
    live(store, ALICE)
    assert store.close_room(R, 4000, "room closed", run_here=False) == []
    assert store.take_events() == [["closed", R, ALICE]]
    assert store.take_events() == []
    with pytest.raises(wsroom.RoomNotFound):
        store.close_room(R, 4000, "room closed", run_here=True)


def test_unreachable_redis_raises_backplane_unavailable_in_bounded_time() -> None:
    from redis_server import free_port

    dead = Store(connect(f"redis://127.0.0.1:{free_port()}/0", gevent_sockets=False), 0.5)
    with pytest.raises(wsroom.BackplaneUnavailable):
        dead.rooms()
    assert isinstance(wsroom.BackplaneUnavailable(), wsroom.WsroomError)


def test_a_held_flush_queues_what_the_stream_carried_meanwhile_once(store: Store) -> None:
    gen = live(store, BOB, maxq=10)
    tail = last_id(store)  # the connection went live here; its flush then filled the outbox
    store.broadcast(R, "during", [])
    store.hold(R, BOB, gen, tail, ["rest1", "rest2"])
    store.broadcast(R, "after", [])
    answer = store.complete_join(R, BOB, gen)
    assert answer["ok"] and answer["frames"] == ["rest1", "rest2", "during", "after"]


def test_replacing_a_connection_that_was_not_live_hands_over_no_duplicates(store: Store) -> None:
    gen = live(store, BOB, maxq=10)
    tail = last_id(store)
    store.hold(R, BOB, gen, tail, ["rest"])  # waiting: its traffic goes to the queue
    store.broadcast(R, "queued", [])
    new = store.begin_join(R, BOB, "B", 5.0, 10)
    store.handover(R, BOB, "A", gen, tail, ["unsent"])
    answer = store.complete_join(R, BOB, new.gen)
    assert answer["frames"] == ["unsent", "rest", "queued"]


# -- a resume membership's numbering (contract §7 on a backplane) -------------------------------


def numbered_live(store: Store, pid: wsroom.ParticipantID, proc: str = "A", maxq: int = 4) -> int:
    joined = store.begin_join(R, pid, proc, 5.0, maxq)
    assert store.complete_join(R, pid, joined.gen, numbered=True)["ok"]
    return joined.gen


def rejoin_numbered(store: Store, pid: wsroom.ParticipantID, proc: str = "B") -> dict[str, object]:
    joined = store.begin_join(R, pid, proc, 5.0, 4)
    return store.complete_join(R, pid, joined.gen, numbered=True)


def test_a_handed_over_sequence_numbers_the_queue_and_counts_what_was_lost(store: Store) -> None:
    live(store, ALICE)
    gen = numbered_live(store, BOB)
    meta = {"q": 3, "f": 2, "c": 7}  # seq 3 and 4 unacknowledged
    store.go_offline(R, BOB, gen, "A", last_id(store), 1006, "", ["u3", "u4"], meta=meta)
    store.send_to(R, BOB, "s5")
    store.broadcast(R, "b6", [])  # the queue (4) is full: seq 7 onwards are lost
    assert store.broadcast(R, "b7", []).dropped == (BOB,)
    with pytest.raises(wsroom.ParticipantOffline):
        store.send_to(R, BOB, "s8")
    answer = rejoin_numbered(store, BOB)
    assert answer["frames"] == ["u3", "u4", "s5", "b6"]
    assert answer["n"] == {"q": 3, "f": 2, "c": 7, "l": 2}


def test_a_plain_join_ends_the_numbering_and_a_numbered_one_takes_it(store: Store) -> None:
    gen = numbered_live(store, BOB)
    store.go_offline(R, BOB, gen, "A", last_id(store), 1006, "", [], meta={"q": 1, "f": 0, "c": 0})
    joined = store.begin_join(R, BOB, "B", 5.0, 4)
    assert store.complete_join(R, BOB, joined.gen)["ok"]  # plain
    store.go_offline(R, BOB, joined.gen, "B", last_id(store), 1006, "", [])
    assert rejoin_numbered(store, BOB)["n"] is None
    # Held by the process that joined: {} until it hands the sequence over.
    assert json.loads(store.client.hget(f"wsroom:r:{{{R}}}:m", BOB))["n"] == {}


def test_a_process_that_dies_holding_a_sequence_leaves_it_lost(store: Store) -> None:
    store.heartbeat("dead")
    numbered_live(store, ALICE, proc="dead")
    store.heartbeat("alive")
    wait_until(lambda: store.reap_dead(0.1, "alive")["offline"], timeout=3)
    assert rejoin_numbered(store, ALICE, proc="alive")["n"] == {"d": 1}


def test_a_replacement_elsewhere_takes_the_old_connections_sequence(store: Store) -> None:
    gen = numbered_live(store, BOB, maxq=10)
    seen = last_id(store)
    store.broadcast(R, "before", [])  # seq 4 on the old connection, unacknowledged
    new = store.begin_join(R, BOB, "B", 5.0, 10)
    store.broadcast(R, "after", [])  # queued for the new one: seq 5
    assert store.complete_join(R, BOB, new.gen, numbered=True) == {"wait": True}
    store.handover(R, BOB, "A", gen, seen, ["u3"], meta={"q": 3, "f": 2, "c": 1})
    answer = store.complete_join(R, BOB, new.gen, numbered=True)
    assert answer["frames"] == ["u3", "before", "after"]
    assert answer["n"] == {"q": 3, "f": 2, "c": 1, "l": 0}


def test_an_expiry_is_remembered_for_a_late_resume(store: Store) -> None:
    live(store, ALICE)
    gen = numbered_live(store, BOB)
    store.go_offline(R, BOB, gen, "A", last_id(store), 1006, "", [], meta={"q": 1, "f": 0, "c": 0})
    store.client.zadd("wsroom:deadlines", {json.dumps([R, BOB, gen]): 0})  # due now
    assert store.expire()["leaves"] == [[R, BOB, 1006, ""]]
    joined = store.begin_join(R, BOB, "B", 5.0, 4)
    assert store.complete_join(R, BOB, joined.gen, numbered=True)["expired"] is True
