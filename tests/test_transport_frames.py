"""Frames on the wire: the envelope codec's answers, binary and oversized messages,
fragmentation, and permessage-deflate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import websocket
import websockets.sync.client
from conftest import Live, read_close, recv_json, send_json, wait_until

import wsroom

ABNF = websocket.ABNF


def echo_hooks(live: Live) -> None:
    """on_message answers the sender with an ``echo`` of the payload."""
    live.hooks.message_fn = lambda room, p, env: live.hub.send_to(
        room, p, wsroom.Envelope("echo", env.payload)
    )


# -- bad envelopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("not json", "$", "json"),
        ('{"type": "t", ', "$", "json"),
        ("[1, 2]", "$", "array"),
        ('"just a string"', "$", "string"),
        ("null", "$", "null"),
        ("42", "$", "number"),
        ('{"payload": 1}', "$.type", "missing"),
        ('{"type": 5, "payload": 1}', "$.type", "str"),
        ('{"type": null}', "$.type", "str"),
        ('{"type": ["a"]}', "$.type", "str"),
        ('{"type": ""}', "$.type", "empty"),
        ('{"type": "wsroom.x"}', "$.type", "reserved"),
        ('{"type": "wsroom.ack", "payload": {"seq": 1}}', "$.type", "reserved"),
    ],
)
def test_bad_envelope_is_answered_and_the_connection_stays_usable(
    make_live: Callable[..., Live], text: str, where: str, why: str
) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    ws.send(text)
    answer = recv_json(ws)
    assert answer["type"] == "wsroom.error", answer
    assert set(answer) == {"type", "payload"}
    assert answer["payload"]["code"] == "bad_envelope"
    detail = answer["payload"]["detail"]
    assert isinstance(detail, str)
    assert f"@ {where}" in detail, f"{where!r} not named in {detail!r}"
    assert why in detail.lower(), f"{why!r} not said in {detail!r}"
    # Still open, and the next good frame is handled; the bad one never reached on_message.
    send_json(ws, "good", {"n": 1})
    wait_until(lambda: live.hooks.messages, what="the good message")
    assert [(p, e) for _, p, e in live.hooks.messages] == [
        ("alice", wsroom.Envelope("good", {"n": 1}))
    ]
    assert live.hub.members("r") == {"alice": wsroom.Presence.ONLINE}


def test_many_bad_envelopes_each_get_an_answer_in_order(make_live: Callable[..., Live]) -> None:
    live = make_live()
    echo_hooks(live)
    ws = live.join("r", "alice")
    for i in range(20):
        ws.send("[]" if i % 2 else json.dumps({"type": "t", "payload": i}))
    got = [recv_json(ws) for _ in range(20)]
    for i, frame in enumerate(got):
        if i % 2:
            assert frame["type"] == "wsroom.error"
        else:
            assert frame == {"type": "echo", "payload": i}


def test_absent_payload_is_none(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    ws.send('{"type": "ping"}')
    wait_until(lambda: live.hooks.messages, what="the message")
    assert live.hooks.messages[0][2] == wsroom.Envelope("ping", None)


def test_extra_keys_are_ignored(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    ws.send('{"type": "t", "payload": {"a": [1, 2]}, "id": 7, "seq": 3, "meta": {"x": 1}}')
    wait_until(lambda: live.hooks.messages, what="the message")
    assert live.hooks.messages[0][2] == wsroom.Envelope("t", {"a": [1, 2]})


@pytest.mark.parametrize("payload", [None, 0, 1.5, "s", True, [1, [2]], {"k": {"v": None}}])
def test_any_json_payload_round_trips(make_live: Callable[..., Live], payload: Any) -> None:
    live = make_live()
    echo_hooks(live)
    ws = live.join("r", "alice")
    send_json(ws, "t", payload)
    assert recv_json(ws) == {"type": "echo", "payload": payload}


def test_unicode_payload_round_trips(make_live: Callable[..., Live]) -> None:
    live = make_live()
    echo_hooks(live)
    ws = live.join("r", "alice")
    text = "h\u00e9llo \u4e16\u754c \U0001f600 \u2028"
    ws.send(json.dumps({"type": "t", "payload": text}, ensure_ascii=False))
    assert recv_json(ws) == {"type": "echo", "payload": text}


# -- binary and oversized -----------------------------------------------------------------


def test_binary_frame_closes_with_1003(make_live: Callable[..., Live]) -> None:
    live = make_live(grace=30.0, queued=4)
    ws = live.join("r", "alice")
    ws.send_binary(b'{"type": "t"}')
    code, _ = read_close(ws)
    assert code == 1003
    assert live.hooks.messages == []
    wait_until(
        lambda: live.hub.members("r") == {"alice": wsroom.Presence.OFFLINE},
        what="alice to be offline",
    )


def _message_of_size(size: int, filler: str = "x") -> str:
    """A valid envelope whose UTF-8 encoding is exactly ``size`` bytes."""
    base = '{"type":"t","payload":""}'
    room = size - len(base)
    width = len(filler.encode())
    assert room >= 0 and room % width == 0
    text = '{"type":"t","payload":"' + filler * (room // width) + '"}'
    assert len(text.encode()) == size
    return text


def test_message_at_max_message_size_passes(make_live: Callable[..., Live]) -> None:
    live = make_live(max_message_size=1024)
    ws = live.join("r", "alice")
    text = _message_of_size(1024)
    ws.send(text)
    wait_until(lambda: live.hooks.messages, what="the message")
    assert live.hooks.messages[0][2] == wsroom.Envelope("t", json.loads(text)["payload"])
    send_json(ws, "after")
    wait_until(lambda: len(live.hooks.messages) == 2, what="the next message")


def test_message_over_max_message_size_closes_with_1009(make_live: Callable[..., Live]) -> None:
    live = make_live(max_message_size=1024)
    ws = live.join("r", "alice")
    ws.send(_message_of_size(1025))
    code, _ = read_close(ws)
    assert code == 1009
    assert live.hooks.messages == []


def test_max_message_size_counts_utf8_bytes(make_live: Callable[..., Live]) -> None:
    # 1,049 bytes on the wire but only 537 characters: over a 1,024-byte limit.
    live = make_live(max_message_size=1024)
    ws = live.join("r", "alice")
    text = _message_of_size(1049, "\u00e9")
    assert len(text) < 1024 < len(text.encode())
    ws.send(text)
    code, _ = read_close(ws)
    assert code == 1009
    assert live.hooks.messages == []


def test_fragmented_message_over_the_limit_closes_with_1009(
    make_live: Callable[..., Live],
) -> None:
    # Every fragment is small; the message they make is not.
    live = make_live(max_message_size=1024)
    ws = live.join("r", "alice")
    ws.send_frame(ABNF.create_frame('{"type":"t","payload":"', ABNF.OPCODE_TEXT, fin=0))
    for _ in range(4):
        ws.send_frame(ABNF.create_frame("y" * 300, ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame('"}', ABNF.OPCODE_CONT, fin=1))
    code, _ = read_close(ws)
    assert code == 1009
    assert live.hooks.messages == []


def test_fragmented_message_is_reassembled_and_delivered_once(
    make_live: Callable[..., Live],
) -> None:
    live = make_live()
    echo_hooks(live)
    ws = live.join("r", "alice")
    parts = ['{"type": "frag", ', '"payload": {"text": "h\u00e9', "llo", '", "n": [1, 2, 3]}}']
    # Bytes: websocket-client encodes only OPCODE_TEXT strings as UTF-8, not continuations.
    ws.send_frame(ABNF.create_frame(parts[0].encode(), ABNF.OPCODE_TEXT, fin=0))
    for part in parts[1:-1]:
        ws.send_frame(ABNF.create_frame(part.encode(), ABNF.OPCODE_CONT, fin=0))
    # A ping between fragments is allowed by RFC 6455 and must not disturb the message.
    ws.ping(b"mid")
    ws.send_frame(ABNF.create_frame(parts[-1].encode(), ABNF.OPCODE_CONT, fin=1))
    send_json(ws, "after", 2)
    expected = {"text": "h\u00e9llo", "n": [1, 2, 3]}
    frames = [ws.recv_frame() for _ in range(3)]
    assert [f.opcode for f in frames].count(ABNF.OPCODE_PONG) == 1
    texts = [json.loads(f.data) for f in frames if f.opcode == ABNF.OPCODE_TEXT]
    assert texts == [{"type": "echo", "payload": expected}, {"type": "echo", "payload": 2}]
    assert [e for _, _, e in live.hooks.messages] == [
        wsroom.Envelope("frag", expected),
        wsroom.Envelope("after", 2),
    ]


def test_frames_from_the_hub_are_text_json_objects(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    live.hub.send_to("r", "alice", wsroom.Envelope("a", {"x": 1}))
    live.hub.broadcast("r", wsroom.Envelope("b"))
    for expected in ({"type": "a", "payload": {"x": 1}}, {"type": "b", "payload": None}):
        opcode, data = ws.recv_data(control_frame=False)
        assert opcode == ABNF.OPCODE_TEXT
        assert json.loads(data) == expected


def test_client_ping_is_answered_with_pong(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    ws.ping(b"hello")
    frame = ws.recv_frame()
    assert frame.opcode == ABNF.OPCODE_PONG
    assert frame.data == b"hello"


def test_client_close_is_answered_and_reported_as_1000(make_live: Callable[..., Live]) -> None:
    live = make_live()
    ws = live.join("r", "alice")
    ws.send_close(1000, b"bye")
    assert read_close(ws)[0] == 1000
    wait_until(lambda: live.hooks.leaves, what="on_leave")
    assert live.hooks.leaves_of("alice") == [wsroom.Disconnected(1000, "bye")]


# -- permessage-deflate -------------------------------------------------------------------


def test_deflate_is_not_negotiated_by_default(make_live: Callable[..., Live]) -> None:
    live = make_live()
    echo_hooks(live)
    with websockets.sync.client.connect(
        live.url("r", "alice"), compression="deflate", open_timeout=5
    ) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send(json.dumps({"type": "t", "payload": "plain"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "echo", "payload": "plain"}


def test_deflate_is_negotiated_when_compression_is_on(make_live: Callable[..., Live]) -> None:
    live = make_live(compression=True)
    live.hooks.message_fn = lambda room, p, env: live.hub.broadcast(
        room, wsroom.Envelope("echo", env.payload)
    )
    with websockets.sync.client.connect(
        live.url("r", "alice"), compression="deflate", open_timeout=5
    ) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        big = "abc" * 20000  # compresses well; must come back whole
        for payload in ("small", big, {"n": list(range(100))}):
            ws.send(json.dumps({"type": "t", "payload": payload}))
            assert json.loads(ws.recv(timeout=5)) == {"type": "echo", "payload": payload}


def test_deflate_client_and_plain_client_share_a_room(make_live: Callable[..., Live]) -> None:
    live = make_live(compression=True)
    live.hooks.message_fn = lambda room, p, env: live.hub.broadcast(
        room, wsroom.Envelope("echo", env.payload)
    )
    plain = live.join("r", "bob")
    with websockets.sync.client.connect(
        live.url("r", "alice"), compression="deflate", open_timeout=5
    ) as ws:
        wait_until(lambda: "alice" in live.hub.members("r"), what="alice to join")
        ws.send(json.dumps({"type": "t", "payload": "x" * 5000}))
        assert json.loads(ws.recv(timeout=5))["payload"] == "x" * 5000
        assert recv_json(plain)["payload"] == "x" * 5000


def test_large_frames_round_trip_compressed(make_live: Callable[..., Live]) -> None:
    live = make_live(compression=True)
    with websockets.sync.client.connect(
        live.url("r", "alice"), compression="deflate", open_timeout=5, max_size=None
    ) as ws:
        wait_until(lambda: "alice" in live.hub.members("r"), what="alice to join")
        blobs = ["".join(f"{i:07d}," for i in range(k * 128 * 1024)) for k in (1, 2)]
        for k, blob in enumerate(blobs):
            live.hub.send_to("r", "alice", wsroom.Envelope("big", {"k": k, "blob": blob}))
            live.hub.send_to("r", "alice", wsroom.Envelope("small", k))
        for k, blob in enumerate(blobs):
            big = json.loads(ws.recv(timeout=10))
            assert big == {"type": "big", "payload": {"k": k, "blob": blob}}
            assert json.loads(ws.recv(timeout=10)) == {"type": "small", "payload": k}
