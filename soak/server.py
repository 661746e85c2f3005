"""A hub in a process of its own, for soak scenarios that measure it from outside.

``/ws/<room>?user=U`` joins ``room`` as ``U`` and is greeted with ``{"type": "joined"}``;
``echo`` comes back to its sender, ``bcast`` goes to every other member. ``GET /stats`` answers
JSON: joins, leaves (by reason), when the last ``on_leave`` ran (``last_leave_at``, on the
system-wide monotonic clock, so a client on this machine can compare), RSS in KB, greenlets
alive, open file descriptors. Options of
``new_hub`` come as JSON in ``--options``; SIGTERM or SIGINT stop the hub, then the server.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import greenlet  # noqa: E402

import wsroom  # noqa: E402
from wsroom.transport import make_handler, run_until_signal, serve  # noqa: E402


class SoakHooks(wsroom.Hooks):
    def __init__(self) -> None:
        self.hub: wsroom.Hub | None = None
        self.joins = 0
        self.leaves: collections.Counter[str] = collections.Counter()
        self.last_leave = 0.0

    def on_join(self, jc: wsroom.JoinContext, client: wsroom.Client) -> None:
        self.joins += 1
        client.send(wsroom.Envelope("joined", None))

    def on_message(self, room: str, participant: str, envelope: wsroom.Envelope) -> None:
        assert self.hub is not None
        if envelope.type == "echo":
            self.hub.send_to(room, participant, envelope)
        elif envelope.type == "bcast":
            self.hub.broadcast(room, envelope, exclude=(participant,))

    def on_leave(self, room: str, participant: str, reason: BaseException) -> None:
        self.leaves[type(reason).__name__] += 1
        self.last_leave = time.monotonic()


class GcClock:
    """Seconds spent in the garbage collector, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.spent = [0.0, 0.0, 0.0]
        self._began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.spent[info["generation"]] += time.perf_counter() - self._began


def _traced() -> dict[str, Any]:
    """Where Python's allocations are, by source line, when started with PYTHONTRACEMALLOC=N
    (to see where the KB per connection go)."""
    if not tracemalloc.is_tracing():
        return {}
    snapshot = tracemalloc.take_snapshot()
    top = snapshot.statistics("lineno")[:25]
    return {
        "traced_kb": sum(s.size for s in snapshot.statistics("filename")) // 1024,
        "traced_top": [
            f"{s.size // 1024} KB {s.count} x {s.traceback[0].filename.rsplit('/', 2)[-1]}"
            f":{s.traceback[0].lineno}"
            for s in top
        ],
    }


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=0.0)
    parser.add_argument("--queued", type=int, default=0)
    parser.add_argument("--options", default="{}", help="new_hub options as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    hooks = SoakHooks()
    gc_clock = GcClock()
    hub = wsroom.new_hub(
        hooks, wsroom.ReconnectPolicy(args.grace, args.queued), **json.loads(args.options)
    )
    hooks.hub = hub

    def identity(environ: dict[str, Any]) -> wsroom.Identity:
        return wsroom.Identity(parse_qs(environ.get("QUERY_STRING", "")).get("user", [""])[0])

    def room(environ: dict[str, Any]) -> str:
        return str(environ.get("PATH_INFO", "/ws/lobby")).rsplit("/", 1)[-1] or "lobby"

    ws_app = make_handler(hub, room, identity, lambda _room, ident: ident.user_id)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/stats":
            body = json.dumps(
                {
                    "joins": hooks.joins,
                    "leaves": dict(hooks.leaves),
                    "since_last_leave": time.monotonic() - hooks.last_leave
                    if hooks.last_leave
                    else None,
                    "last_leave_at": hooks.last_leave or None,
                    "rss_kb": _rss_kb(),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "gc_s": [round(spent, 3) for spent in gc_clock.spent],
                    "cpu_s": round(time.process_time(), 2),
                    "greenlets": sum(
                        1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet)
                    ),
                    **_traced(),
                }
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return ws_app(environ, start_response)

    server = serve(app, port=args.port)
    sys.stdout.write(f"READY {server.server_port}\n")
    sys.stdout.flush()
    started = time.monotonic()
    stop_took: list[float] = []

    class TimedHub:
        """The hub as run_until_signal sees it, timing its stop() for the STOPPED line."""

        def stop(self, timeout: float = 5.0) -> None:
            began = time.monotonic()
            try:
                hub.stop(timeout=timeout)
            finally:
                stop_took.append(time.monotonic() - began)

    signum = run_until_signal(server, TimedHub(), timeout=10.0)  # type: ignore[arg-type]
    leaves = json.dumps(dict(hooks.leaves), separators=(",", ":"))
    sys.stdout.write(
        f"STOPPED signal={signum} after={time.monotonic() - started:.1f}s"
        f" stop={stop_took[0]:.2f}s leaves={leaves}\n"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
