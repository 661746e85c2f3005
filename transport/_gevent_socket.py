# Everything wsroom takes from gevent's private internals lives here.
# Checked against gevent 26.9.0 (setup.cfg allows >=24.2): gevent.socket.socket wraps a real,
# non-blocking C-level socket (a subclass of _socket.socket, not of socket.socket) in its
# attribute _sock (gevent/_socket3.py), and puts a falsy stand-in there once it is closed.
# If that attribute were renamed or held something else, raw_socket() would return None and
# wsroom would write through the gevent socket only: still correct, but every write would cost
# a greenlet switch. It also has _wait(watcher), which parks the calling greenlet on the hub
# until the watcher fires, and _read_event, its read watcher (gevent/_socketcommon.py): what its
# own recv waits on. tests/unit/test_private_internals.py fails, naming gevent, when these change.
"""The non-blocking core of a gevent socket, for reads and writes that need not go through
gevent's socket methods."""

from __future__ import annotations

import _socket
from collections.abc import Callable
from functools import partial

__all__ = ["raw_socket", "read_waiter"]


def raw_socket(sock: object) -> _socket.socket | None:
    """The real socket inside the gevent socket ``sock``, or None (closed, or not gevent's).

    A write on it that completes costs no greenlet switch; one that would block raises
    ``BlockingIOError`` instead of waiting, since gevent keeps it non-blocking.
    """
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, _socket.socket) else None


def read_waiter(sock: object) -> Callable[[], None] | None:
    """A call that parks the calling greenlet until ``sock`` has bytes to read (OSError if it is
    closed meanwhile), or None when ``sock`` is not a gevent socket.

    A reader that knows the socket is empty waits with it and then reads the real socket
    once, where gevent's ``recv`` would first try a read that fails with ``EAGAIN``.
    """
    wait = getattr(sock, "_wait", None)
    watcher = getattr(sock, "_read_event", None)
    if not callable(wait) or watcher is None:
        return None
    return partial(wait, watcher)
