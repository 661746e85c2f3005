"""InboundFrames: cutting the inbound stream at frame boundaries, and the fast text path."""

from __future__ import annotations

import os
import random

import pytest

from wsroom.transport.frames import (
    BAD_FRAME,
    BAD_UTF8,
    FAST,
    MAX_FRAGMENTS,
    PING,
    PONG,
    RAW,
    TOO_BIG,
    TOO_FRAGMENTED,
    InboundFrames,
    pong_frame,
    unmask,
)


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
    alphabet = "ab\u00e9\u20ac\U0001f600"  # 1 to 4 bytes each: cuts fall inside characters
    stream = b"".join(
        frame(
            rng.choice([1, 1, 1, 9, 10]),
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))).encode(),
        )
        for _ in range(200)
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
        frame(9, b"unmasked ping", mask=False),
        frame(10, b"pong with rsv1", rsv=0x40),
        frame(8, b"\x03\xe8bye"),
    ]
    assert InboundFrames(1000).feed(b"".join(odd)) == [(RAW, f) for f in odd]


def test_pings_and_pongs_come_out_on_their_own_cheap_path() -> None:
    stream = frame(9, b"are you there") + frame(10, b"yes") + frame(9, b"")
    assert InboundFrames(1000).feed(stream) == [(PING, b"are you there"), (PONG, b""), (PING, b"")]
    assert pong_frame(b"are you there") == b"\x8a\x0dare you there"


def test_a_fragmented_text_message_is_assembled_here_pings_and_all() -> None:
    first = frame(1, b"frag", fin=False)
    ping = frame(9, b"")
    middle = frame(0, b"", fin=False)
    last = frame(0, b"ment")
    after = frame(1, b"after")
    frames = InboundFrames(1000)
    out = frames.feed(first + ping + middle + last + after)
    assert out == [(PING, b""), (FAST, b"fragment"), (FAST, b"after")]
    assert frames.taken == 5  # five frames consumed for three items


def test_inside_a_fragmented_text_message_only_continuations_may_come() -> None:
    for intruder in (frame(1, b"new"), frame(2, b"bin"), frame(0, b"rsv", rsv=0x40)):
        out = InboundFrames(1000).feed(frame(1, b"frag", fin=False) + intruder + frame(1, b"x"))
        assert out == [(BAD_FRAME, b"")]


def test_binary_and_orphan_fragments_go_to_wsproto() -> None:
    stream = [frame(2, b"bin", fin=False), frame(0, b"ary"), frame(0, b"orphan")]
    assert InboundFrames(1000).feed(b"".join(stream)) == [(RAW, f) for f in stream]


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


def test_pull_gives_at_most_the_items_asked_for_and_keeps_the_rest() -> None:
    frames = InboundFrames(1000)
    frames.push(frame(9, b"") * 150 + frame(1, b"last"))
    sizes = []
    while batch := frames.pull(64):
        sizes.append(len(batch))
        last = batch[-1]
    assert sizes == [64, 64, 23]
    assert last == (FAST, b"last")


def test_a_fragment_that_would_take_its_message_over_the_limit_is_refused_from_its_header() -> None:
    frames = InboundFrames(1000)
    assert frames.feed(frame(1, b"a" * 600, fin=False)) == []
    second = frame(0, b"b" * 500)  # 1100 in all: refused before any of its payload is in
    assert frames.feed(second[:8]) == [(TOO_BIG, b"")]
    assert frames.feed(second[8:]) == []
    assert len(frames._buf) == 0


def test_a_message_of_endless_empty_fragments_is_cut_off() -> None:
    frames = InboundFrames(1000)
    out = frames.feed(frame(1, b"", fin=False) + frame(0, b"", fin=False) * (MAX_FRAGMENTS + 50))
    assert out == [(TOO_FRAGMENTED, b"")]
    assert frames.feed(frame(1, b"ignored")) == []  # nothing comes out after a refusal


def test_the_fragment_count_starts_afresh_with_each_message() -> None:
    frames = InboundFrames(1000)
    for _ in range(3):
        stream = frame(1, b"", fin=False) + frame(0, b"", fin=False) * (MAX_FRAGMENTS - 2)
        assert frames.feed(stream + frame(0, b"{}")) == [(FAST, b"{}")]


def test_invalid_utf8_is_found_while_the_frame_is_still_arriving() -> None:
    frames = InboundFrames(100_000)
    bad = frame(1, b"a" * 1001 + b"\xff" + b"a" * 50_000)
    assert frames.feed(bad[:500]) == []  # all valid so far
    assert frames.feed(bad[500:2000]) == [(BAD_UTF8, b"")]
    assert frames.feed(bad[2000:] + frame(1, b"more")) == []


def test_a_character_cut_by_a_tcp_chunk_is_not_mistaken_for_invalid_utf8() -> None:
    payload = ("\u20ac" * 5000).encode()  # 3 bytes each
    whole = frame(1, payload)
    for cut in (9, 10, 11, 12, 13):
        frames = InboundFrames(100_000)
        assert frames.feed(whole[:cut]) == []
        assert frames.feed(whole[cut:]) == [(FAST, payload)]


def test_utf8_is_checked_across_fragments_and_at_the_message_end() -> None:
    euro = "\u20ac".encode()
    ok = InboundFrames(1000)
    first, second = frame(1, b"x" + euro[:1], fin=False), frame(0, euro[1:] + b"y")
    assert ok.feed(first + second) == [(FAST, b"x" + euro + b"y")]

    bad = InboundFrames(10_000)
    assert bad.feed(frame(1, b"x" + euro[:2], fin=False)) == []
    fragment = frame(0, euro[2:] + b"\xc0\xaf" + b"z" * 5000, fin=False)
    assert bad.feed(fragment[:100]) == [(BAD_UTF8, b"")]  # the fragment has not ended

    cut_short = InboundFrames(1000)  # a message may not end inside a character
    assert cut_short.feed(frame(1, b"x", fin=False) + frame(0, euro[:2]))[-1] == (BAD_UTF8, b"")


def test_with_compression_payloads_are_not_checked_here() -> None:
    # Compressed payloads are not UTF-8 until wsproto inflates them.
    frames = InboundFrames(1000, fast=False)
    deflated = frame(1, b"\xff\xfe\x00", rsv=0x40)
    assert frames.feed(deflated) == [(RAW, deflated)]
