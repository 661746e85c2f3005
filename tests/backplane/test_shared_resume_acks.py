"""A client's acks on a backplane (contract §7): the reader notes them, the process's shared room
applies them before the member's next frame, so a client that acknowledges is never a slow
consumer, and one that stops acknowledging is."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Live, read_close, recv_json, recv_numbered

from .shared import pair
from .test_shared_resume import down, online, rconnect, send_n

__all__ = ["pair"]  # the fixture, used by name


def test_acks_make_room_in_a_shared_rooms_log(pair: Callable[..., tuple[Live, Live]]) -> None:
    a, b = pair(grace=30, queued=4)
    ws, _ = rconnect(a, "u")
    online(a, "u")
    seq = 0
    for ack in (
        '{"type":"wsroom.ack","payload":{"seq":%d}}',  # the reader's own
        '{"type": "wsroom.ack", "payload": {"seq": %d}}',  # the participant's
    ):
        for n in range(4):
            down(b, "u", n)  # through Redis, fanned out by a
        assert [recv_numbered(ws)["seq"] for _ in range(4)] == list(range(seq + 1, seq + 5))
        seq += 4
        ws.send(ack % seq)
        # Read in order: once this envelope is acknowledged, the ack before it was noted.
        send_n(ws, seq // 4, "after the ack")
        assert recv_json(ws) == {"type": "wsroom.ack", "payload": {"cseq": seq // 4}}
    for n in range(5):  # no ack this time: no room for the fifth
        down(b, "u", n)
    assert [recv_numbered(ws)["seq"] for _ in range(4)] == list(range(seq + 1, seq + 5))
    assert read_close(ws) == (4008, "slow consumer")
