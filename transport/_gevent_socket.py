# Everything wsroom takes from gevent's private internals lives here.
# Checked against gevent 26.9.0 (setup.cfg allows >=24.2): gevent.socket.socket wraps a real,
# non-blocking C-level socket (a subclass of _socket.socket, not of socket.socket) in its
# attribute _sock (gevent/_socket3.py), and puts a falsy stand-in there once it is closed.
# If that attribute were renamed or held something else, raw_socket() would return None and
# wsroom would write through the gevent socket only: still correct, but every write would cost
# a greenlet switch. It also has _read_event, its read watcher (gevent/_socketcommon.py): what
# its own recv waits on, with the waiting greenlet's switch as the callback. Its close cancels
# that wait through the hub's cancel_wait, which throws into the callback's __self__ (gevent's
# _hub_primitives.py: "The callback should be greenlet.switch()"). tests/unit/
# test_private_internals.py fails, naming gevent, when these change.
"""The non-blocking core of a gevent socket, for reads and writes that need not go through
gevent's socket methods."""

from __future__ import annotations

import _socket
from collections.abc import Callable
from typing import Any

from gevent import get_hub, getcurrent
from gevent.exceptions import ConcurrentObjectUseError

__all__ = ["raw_socket", "read_waiter"]


def raw_socket(sock: object) -> _socket.socket | None:
    """The real socket inside the gevent socket ``sock``, or None (closed, or not gevent's).

    A write on it that completes costs no greenlet switch; one that would block raises
    ``BlockingIOError`` instead of waiting, since gevent keeps it non-blocking.
    """
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, _socket.socket) else None


def read_waiter(sock: object) -> Callable[[], None] | None:
    """A call that parks the greenlet that made it until ``sock`` has bytes to read (OSError
    if it is closed meanwhile), or None when ``sock`` is not a gevent socket.

    A reader that knows the socket is empty waits with it and then reads the real socket
    once, where gevent's ``recv`` would first try a read that fails with ``EAGAIN``.
    """
    watcher = getattr(sock, "_read_event", None)
    if watcher is None or not callable(getattr(watcher, "start", None)):
        return None
    return _ReadWaiter(watcher)


class _ReadWaiter:
    """gevent's ``sock._wait(sock._read_event)``, without its per-call objects.

    gevent's wait makes a ``Waiter``, its bound ``switch`` and an argument tuple per call, and
    they live as long as the wait: one wait per message in a request and response exchange,
    so three more objects in flight per connection for the garbage collector to count. This
    one starts the watcher with the waiting greenlet's own ``switch``, made once. gevent's
    socket ``close`` still reaches it: it throws into the ``__self__`` of the watcher's
    callback, which is that greenlet.
    """

    __slots__ = ("_hub", "_wake", "_watcher")

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher
        self._hub = get_hub()
        self._wake = getcurrent().switch

    def __call__(self) -> None:
        watcher = self._watcher
        if watcher.callback is not None:
            raise ConcurrentObjectUseError(f"socket already waited on by {watcher.callback!r}")
        watcher.start(self._wake)
        try:
            self._hub.switch()
        finally:
            watcher.stop()
