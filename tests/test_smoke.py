from __future__ import annotations

from conftest import Live, read_close, recv_json, send_json

import wsroom


def test_join_message_broadcast_and_leave(make_live) -> None:
    live: Live = make_live(grace=0.0)
    live.hooks.message_fn = lambda room, p, env: live.hub.broadcast(
        room, wsroom.Envelope("echo", env.payload)
    )
    a = live.join("r1", "alice")
    b = live.join("r1", "bob")
    send_json(a, "say", {"text": "hi"})
    assert recv_json(a) == {"type": "echo", "payload": {"text": "hi"}}
    assert recv_json(b) == {"type": "echo", "payload": {"text": "hi"}}
    live.hub.close_room("r1")
    assert read_close(a)[0] == 4000
    assert read_close(b)[0] == 4000
