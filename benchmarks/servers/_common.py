"""What every Python benchmark server shares: its arguments, the fd limit, the ready line."""

from __future__ import annotations

import argparse
import resource
import sys

ROOM = "bench"


def raise_nofile(limit: int = 65536) -> None:
    """5,000 idle connections need more than the default 1,024 descriptors (2 per socket)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    # Scenarios F, G, H: the Redis that makes several processes one hub (wsroom's backplane,
    # python-socketio's RedisManager); without it a server is on its own, as in A to E.
    parser.add_argument("--redis", default=None, metavar="URL")
    # wsroom_server.py only: ReconnectPolicy.max_queued_per_conn, which also bounds a resume
    # member's log of unacknowledged envelopes (scenario R may raise it; see the README).
    parser.add_argument("--max-queued", type=int, default=64)
    return parser.parse_args()


def ready(port: int) -> None:
    """Tell run.py the server accepts connections."""
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
