"""A redis-py connection on gevent's sockets, so the hub's Redis calls yield to other greenlets
even in a process that is not monkey-patched.

The one place that relies on redis-py's internals: ``Connection._connect`` (checked against
redis-py 5.0 to 8.1), which returns a connected socket. Under ``gevent.monkey.patch_all()``
the stock class would do too; this one makes the hub independent of patching.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent.socket
import redis

__all__ = ["GeventConnection"]


class GeventConnection(redis.Connection):
    """``redis.Connection`` whose socket is a gevent socket."""

    def _connect(self) -> Any:
        sock = gevent.socket.create_connection(
            (self.host, self.port), timeout=self.socket_connect_timeout
        )
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock
