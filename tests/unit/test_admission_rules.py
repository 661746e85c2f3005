"""What a request may cost before the upgrade: the head's budget, the refusal log's pace."""

from __future__ import annotations

import io

import pytest

from wsroom.transport.admission import (
    ClientGone,
    EveryInterval,
    RequestRefused,
    ServerLimits,
    default_max_connections,
    plain_response,
    read_head,
)


def head(data: bytes, **limits: int) -> bytes:
    return read_head(io.BytesIO(data).readline, ServerLimits(max_connections=1, **limits))


def test_a_head_is_read_up_to_its_blank_line() -> None:
    data = b"Host: x\r\nUpgrade: websocket\r\n\r\nleftover frames"
    assert head(data) == b"Host: x\r\nUpgrade: websocket\r\n\r\n"


def test_the_byte_budget_counts_every_line() -> None:
    data = b"A: 123456\r\nB: 123456\r\n\r\n"  # 11 + 11 + 2 bytes
    assert head(data, max_header_bytes=24) == data
    with pytest.raises(RequestRefused) as info:
        head(data, max_header_bytes=23)
    assert info.value.status == 431 and "23 bytes" in info.value.reason


def test_no_line_is_read_past_the_budget() -> None:
    reads: list[int] = []
    stream = io.BytesIO(b"X: " + b"y" * 100_000 + b"\r\n\r\n")

    def readline(n: int) -> bytes:
        reads.append(n)
        return stream.readline(n)

    with pytest.raises(RequestRefused):
        read_head(readline, ServerLimits(max_connections=1, max_header_bytes=1000))
    assert reads == [1001]


def test_the_field_count_ignores_continuation_lines() -> None:
    data = b"A: 1\r\n  more of A\r\nB: 2\r\n\r\n"
    assert head(data, max_headers=2) == data
    with pytest.raises(RequestRefused) as info:
        head(data, max_headers=1)
    assert info.value.status == 431 and info.value.reason == "more than 1 request headers"


@pytest.mark.parametrize("data", [b"", b"Host: x\r\n", b"Host: x\r\nUpgr"])
def test_end_of_input_before_the_blank_line_is_a_client_gone(data: bytes) -> None:
    with pytest.raises(ClientGone):
        head(data)


@pytest.mark.parametrize(
    "options",
    [
        {"handshake_timeout": 0},
        {"handshake_timeout": -1.0},
        {"handshake_timeout": float("inf")},
        {"max_header_bytes": 0},
        {"max_headers": 101},
        {"max_connections": 0},
        {"max_connections": True},
    ],
)
def test_limits_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerLimits(**options)  # type: ignore[arg-type]


def test_the_default_cap_leaves_room_under_the_open_file_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_max_connections() == max(1, min(soft, 1 << 20) - 64)
    assert ServerLimits().max_connections == default_max_connections()


def test_a_plain_response_has_a_one_line_body_and_closes() -> None:
    raw = plain_response(431, "too big")
    head_, _, body = raw.partition(b"\r\n\r\n")
    assert head_.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close" in head_ and b"Content-Length: 8" in head_
    assert body == b"too big\n"


def test_a_refusal_storm_is_one_line_per_interval() -> None:
    now = [0.0]
    log = EveryInterval(10.0, clock=lambda: now[0])
    assert log.note() == 1  # the first one is reported at once
    assert [log.note() for _ in range(5)] == [0] * 5
    now[0] = 9.9
    assert log.note() == 0
    now[0] = 10.0
    assert log.note() == 7  # the six held back, and this one
    now[0] = 25.0
    assert log.note() == 1
