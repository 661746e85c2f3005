# Everything wsroom takes from gevent's private internals lives here.
# Checked against gevent 26.9.0 (setup.cfg allows >=24.2): gevent.socket.socket wraps a real,
# non-blocking C-level socket (a subclass of _socket.socket, not of socket.socket) in its
# attribute _sock (gevent/_socket3.py), and puts a falsy stand-in there once it is closed.
# If that attribute were renamed or held something else, raw_socket() would return None and
# wsroom would write through the gevent socket only: still correct, but every write would cost
# a greenlet switch. tests/unit/test_private_internals.py fails, naming gevent, when it changes.
"""The non-blocking core of a gevent socket, for writes that need not wait on the hub."""

from __future__ import annotations

import _socket

__all__ = ["raw_socket"]


def raw_socket(sock: object) -> _socket.socket | None:
    """The real socket inside the gevent socket ``sock``, or None (closed, or not gevent's).

    A write on it that completes costs no greenlet switch; one that would block raises
    ``BlockingIOError`` instead of waiting, since gevent keeps it non-blocking.
    """
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, _socket.socket) else None
