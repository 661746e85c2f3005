"""InboundFrames: cutting the inbound stream at frame boundaries, and the fast text path."""

from __future__ import annotations

import os
import random

import pytest

from wsroom.transport.frames import FAST, RAW, TOO_BIG, InboundFrames, unmask


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    key = os.urandom(4)
    b0 = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, bit | n])
    elif n < 65536:
        head = bytes([b0, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, bit | 127]) + n.to_bytes(8, "big")
    return head + (key + unmask(payload, key) if mask else payload)


def feed_in_pieces(
    frames: InboundFrames, data: bytes, rng: random.Random
) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 300)
        out += frames.feed(data[pos : pos + step])
        pos += step
    return out


@pytest.mark.parametrize("size", [0, 1, 3, 125, 126, 127, 65535, 65536, 70000])
def test_a_final_masked_text_frame_comes_out_unmasked(size: int) -> None:
    payload = os.urandom(size)
    assert InboundFrames(100_000).feed(frame(1, payload)) == [(FAST, payload)]


def test_the_result_does_not_depend_on_how_the_stream_is_cut() -> None:
    rng = random.Random(7)
    stream = b"".join(
        frame(rng.choice([1, 1, 1, 9, 10]), os.urandom(rng.randint(0, 125))) for _ in range(200)
    )
    whole = InboundFrames(1000).feed(stream)
    assert len(whole) == 200
    for seed in range(5):
        assert feed_in_pieces(InboundFrames(1000), stream, random.Random(seed)) == whole


def test_everything_but_the_common_text_frame_goes_to_wsproto_whole() -> None:
    odd = [
        frame(1, b"unmasked", mask=False),
        frame(1, b"rsv1", rsv=0x40),
        frame(2, b"binary"),
        frame(9, b"ping"),
        frame(8, b"\x03\xe8bye"),
    ]
    assert InboundFrames(1000).feed(b"".join(odd)) == [(RAW, f) for f in odd]


def test_a_fragmented_message_goes_to_wsproto_until_its_last_fragment() -> None:
    first = frame(1, b"frag", fin=False)
    ping = frame(9, b"")
    intruder = frame(1, b"new message inside a fragmented one")  # wsproto refuses it
    last = frame(0, b"ment")
    after = frame(1, b"after")
    out = InboundFrames(1000).feed(first + ping + intruder + last + after)
    assert out == [(RAW, first), (RAW, ping), (RAW, intruder), (RAW, last), (FAST, b"after")]


def test_an_oversized_data_frame_is_reported_and_skipped_not_buffered() -> None:
    frames = InboundFrames(1024)
    big = frame(1, b"x" * 5000)
    assert frames.feed(big[:20]) == [(TOO_BIG, b"")]
    assert frames.feed(big[20:]) == []
    assert frames.feed(frame(1, b"next")) == [(FAST, b"next")]
    assert len(frames._buf) == 0


def test_a_huge_announced_length_costs_nothing() -> None:
    frames = InboundFrames(1024)
    header = bytes([0x81, 0x80 | 127]) + (2**62).to_bytes(8, "big") + os.urandom(4)
    assert frames.feed(header + b"y" * 100_000) == [(TOO_BIG, b"")]
    assert len(frames._buf) == 0


def test_a_long_control_frame_gives_wsproto_its_header_only() -> None:
    frames = InboundFrames(1024)
    long_ping = frame(9, b"p" * 200)
    out = frames.feed(long_ping + frame(1, b"ok"))
    assert out[0] == (RAW, long_ping[:8])  # 2 bytes, 2 of length, 4 of mask
    assert out[1:] == [(FAST, b"ok")]


def test_with_the_fast_path_off_every_frame_goes_to_wsproto() -> None:
    text = frame(1, b"compressed peers take this road")
    assert InboundFrames(1000, fast=False).feed(text) == [(RAW, text)]


def test_unmask_is_its_own_inverse() -> None:
    rng = random.Random(3)
    for n in (0, 1, 4, 5, 1000):
        data = rng.randbytes(n)
        key = rng.randbytes(4)
        assert unmask(unmask(data, key), key) == data
        assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
