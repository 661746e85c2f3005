"""gunicorn settings for the chat: several gevent workers, one hub across them on Redis.

    WSROOM_BACKPLANE=redis://127.0.0.1:6379/0 gunicorn -c examples/chat/gunicorn.conf.py

Environment: ``WSROOM_BACKPLANE`` (without it each worker is a hub of its own: right for one
worker only), ``WSROOM_CHAT_WORKERS`` (4), ``WSROOM_CHAT_HOST`` / ``WSROOM_CHAT_PORT``
(127.0.0.1:8080), ``WSROOM_CHAT_GRACE`` (30 s), and for a server behind a proxy
``WSROOM_CHAT_ALLOWED_HOSTS`` / ``WSROOM_CHAT_TRUST_FORWARDED_PROTO`` (see ``app.py``).

No sticky sessions are needed, here or in a load balancer in front of several machines: every
connection is one WebSocket, served whole by whichever worker accepted it, and the backplane
makes every worker see every room, member and offline queue. (Socket.IO's long-polling
fallback is several HTTP requests per connection, which must all reach the same process;
Flask-SocketIO therefore needs sticky sessions behind gunicorn, wsroom does not.)

A worker told to stop (SIGTERM, as ``kill -TERM <worker>``, a ``kill -HUP`` of the master that
replaces the workers, or the master's own SIGTERM) stops its hub: its connections are closed
with 1001, and with a backplane their members stay members, OFFLINE for their grace period,
while the pages reconnect to another worker and get what was queued for them meanwhile.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import gevent

HERE = Path(__file__).resolve().parent

chdir = str(HERE)  # app.py sits next to this file
wsgi_app = "app:app_from_env()"
bind = "{}:{}".format(
    os.environ.get("WSROOM_CHAT_HOST", "127.0.0.1"), os.environ.get("WSROOM_CHAT_PORT", "8080")
)
workers = int(os.environ.get("WSROOM_CHAT_WORKERS", "4"))
# "gevent", not "gevent_pywsgi": wsroom finds the connection's socket in gunicorn's environ.
worker_class = "gevent"
# Connections per worker, each an open WebSocket (one file descriptor apiece: raise the
# process's limit, ulimit -n, to match).
worker_connections = 10000
# Each worker builds its own hub after the fork (a hub's actors and gevent loop do not survive
# one); the default, said out loud.
preload_app = False
# The time a stopping worker gets before gunicorn kills it: enough for hub.stop() (5 s) to
# close every connection, and for each close handshake (close_timeout, 5 s).
graceful_timeout = 15


def _chat(worker: Any) -> Any:
    """The worker's ``app.Chat``, or None when its app did not load."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    return extensions.get("wsroom_chat")


def post_worker_init(worker: Any) -> None:
    """Let SIGTERM stop the hub too. gunicorn's own handler only stops accepting and then waits
    ``graceful_timeout`` for the requests under way to end, which a WebSocket never does by
    itself: the hub's stop ends them (1001) at once."""
    chat = _chat(worker)
    if chat is None:
        return
    gunicorns = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if callable(gunicorns):
            gunicorns(signum, frame)
        gevent.spawn(chat.stop)  # stop() waits: not inside a signal handler

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_int(worker: Any) -> None:
    """SIGINT or SIGQUIT (Ctrl-C, or a fast shutdown): gunicorn exits right after this hook."""
    chat = _chat(worker)
    if chat is not None:
        chat.stop()


def worker_exit(server: Any, worker: Any) -> None:
    """However the worker ended; a hub already stopped does nothing more."""
    chat = _chat(worker)
    if chat is not None:
        chat.stop()
