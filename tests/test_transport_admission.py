"""Before the upgrade: one file descriptor per connection, bounded request heads, a handshake
timeout, a connection cap, an exhausted process answered with 503, and quiet client errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Live, wait_until
from transport_util import RawWS, http_get, upgrade_headers

from wsroom.transport import session


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_each_connection_holds_one_descriptor_in_the_server(
    make_live: Callable[..., Live],
) -> None:
    live = make_live()
    before = _open_fds()
    clients = [RawWS(live.port, f"/ws/lobby?user=u{i}") for i in range(50)]
    assert all(c.status == 101 for c in clients)
    wait_until(lambda: len(live.hub.members("lobby")) == 50, what="50 members")
    during = _open_fds() - before
    # 50 client sockets (this process) + 50 server sockets; a dup() per connection makes it 150.
    assert during <= 100 + 5, f"{during} descriptors for 50 connections (client and server ends)"
    for c in clients:
        c.sock.close()
    wait_until(lambda: _open_fds() - before <= 5, what="the descriptors to be released")


def test_an_upgrade_failing_for_want_of_descriptors_is_503_with_a_plain_reason(
    make_live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = make_live()

    def exhausted(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(session, "Connection", exhausted)
    answer = http_get(live.port, "/ws/lobby?user=alice", upgrade_headers(live.port))
    assert answer.status == 503, answer
    assert answer.body == "the server is out of file descriptors; try again later\n"
    assert live.hooks.joins == []
