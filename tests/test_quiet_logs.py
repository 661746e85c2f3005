"""Exceptions that answer a caller (RoomNotFound, ParticipantOffline, HubStopped, ...) are
answers, not errors: nothing is logged for them; a real bug still is."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from conftest import Live, read_close, wait_until

import wsroom


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name} {r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.INFO or r.exc_info
    ]


def test_answers_raised_to_callers_log_nothing(
    make_live: Callable[..., Live], caplog: pytest.LogCaptureFixture
) -> None:
    live = make_live(grace=30.0, queued=1)
    live.join("lobby", "alice")
    caplog.set_level(logging.DEBUG)
    hub = live.hub
    with pytest.raises(wsroom.RoomNotFound):
        hub.send_to("nowhere", "alice", wsroom.Envelope("x"))
    with pytest.raises(wsroom.RoomNotFound):
        hub.members("nowhere")
    with pytest.raises(wsroom.ParticipantNotFound):
        hub.send_to("lobby", "bob", wsroom.Envelope("x"))
    with pytest.raises(wsroom.RoomNotFound):
        hub.proxy.send_to("nowhere", "alice", wsroom.Envelope("x")).get()
    with pytest.raises(wsroom.RoomNotFound):
        hub.proxy.broadcast("nowhere", wsroom.Envelope("x")).get()
    assert _loud(caplog) == []


def test_a_shutdown_with_members_logs_no_traceback(
    make_live: Callable[..., Live], caplog: pytest.LogCaptureFixture
) -> None:
    live = make_live(grace=30.0, queued=4)
    clients = [live.join("lobby", f"u{i}") for i in range(20)]
    caplog.set_level(logging.DEBUG)
    live.hub.stop()
    for ws in clients:
        assert read_close(ws)[0] == 1001
    with pytest.raises(wsroom.HubStopped):
        live.hub.send_to("lobby", "u0", wsroom.Envelope("x"))
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert tracebacks == []


def test_a_bug_in_a_hook_is_still_logged_as_an_error(
    make_live: Callable[..., Live], caplog: pytest.LogCaptureFixture
) -> None:
    live = make_live()

    def broken(room: str, participant: str, envelope: wsroom.Envelope) -> None:
        raise ZeroDivisionError("a bug")

    live.hooks.message_fn = broken
    ws = live.join("lobby", "alice")
    caplog.set_level(logging.DEBUG)
    ws.send('{"type": "hello"}')
    assert read_close(ws)[0] == 1011
    wait_until(
        lambda: any(r.levelno >= logging.ERROR and r.exc_info for r in caplog.records),
        what="the bug's traceback",
    )
