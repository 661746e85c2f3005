"""Where a server's CPU went, from a py-spy profile in raw (folded) form: percentages by cost.

    py-spy record --pid PID --duration 10 --nonblocking --format raw --output prof.txt
    python benchmarks/profile_summary.py prof.txt [--top 25]

``run.py --scenarios E --py-spy DIR`` records such a file (with ``--native``) for each Python
server during scenario E's fixed-rate phase. Each sample (one stack) is charged to one cost, the
first category matched walking from the innermost frame outwards: native frames (system calls,
the JSON scanner, greenlet switches, gevent's compiled queues) when the profile has them, else
the innermost Python frame, which then also carries the C work it called. Idle
samples (the event loop waiting) are not in py-spy's output unless ``--idle``: the percentages
are of the CPU the server used. Also printed: the innermost frames (self time, by line) and the
functions on the stack (inclusive time), each as a share of all samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Native frames (``py-spy record --native``: C functions, system calls), tried first on the frames
# that are not Python's; an unmatched native frame is skipped for the Python frame that called it.
NATIVE: list[tuple[str, str]] = [
    ("socket send (syscall)", r"^(sock_send\w*|__libc_send\w*|__send\w*|send|sendto|sendmsg) \("),
    ("socket recv (syscall)", r"^(sock_recv\w*|__libc_recv\w*|__recv\w*|recv|recvfrom) \("),
    ("event loop: libev, epoll_ctl", r"^(epoll_\w+|ev_\w+|epoll_poll|\w*ev_run\w*) \("),
    ("greenlet switches", r"greenlet|slp_switch|g_switch|switch_to"),
    ("JSON decode", r"^(scanner_call|scan_once\w*|_parse_\w+|_match_number\w*|scanstring\w*) \("),
    ("JSON encode", r"^(encoder_\w+|py_encode_basestring\w*|escape_unicode\w*) \("),
    (
        "allocation and garbage collection",
        r"^(_?PyObject_(Malloc|Free|GC_\w+)|_PyObject_GC_\w+|gc_collect\w*|collect|malloc|free|"
        r"pymalloc_\w+|_int_malloc|_int_free|subtype_dealloc|\w+_dealloc) \(",
    ),
    ("gevent compiled code (queues, waiters, events, hub switch)", r"__pyx_\w*gevent|gevent.*\.so"),
]
# Python frames, tried in order on each frame, innermost first.
PYTHON: list[tuple[str, str]] = [
    ("socket recv (syscall)", r"^\w*\.?(recv|recv_into) \(.*(gevent|socket)"),
    ("socket send (syscall)", r"^\w*\.?(send|sendall) \(.*(gevent|socket)"),
    ("frame cutting (transport/frames.py)", r"\(.*transport/frames\.py"),
    ("frame parsing (wsproto / simple-websocket)", r"\(.*(wsproto|simple_websocket)/"),
    ("JSON decode", r"\(.*json/(decoder|__init__)\.py"),
    ("JSON encode", r"\(.*json/encoder\.py"),
    ("cattrs / attrs", r"\(.*(cattrs?|attr|attrs)/|<cattrs|structure_|unstructure_"),
    (
        "envelope codec and frame building (wsroom/envelope.py, wire.py)",
        r"\(.*wsroom/(envelope|wire)\.py",
    ),
    (
        "pykka tell/ask, futures, mailboxes (pykka, actors/runtime.py)",
        r"\(.*(pykka/|actors/runtime\.py)",
    ),
    ("broadcast loop and room state (actors/room.py, state.py)", r"\(.*actors/(room|state)\.py"),
    (
        "connection: push, outbox, reader (transport/connection.py, outbox.py)",
        r"\(.*transport/(connection|outbox|_gevent_socket)\.py",
    ),
    ("session, inbound window (transport/session.py)", r"\(.*transport/session\.py"),
    (
        "participant actor, hook dispatch (actors/participant.py, hookcall.py)",
        r"\(.*actors/(participant|hookcall)\.py",
    ),
    ("hub facade (wsroom/hub.py, client.py)", r"\(.*wsroom/(hub|client)\.py"),
    ("the benchmark's hooks (servers/*.py)", r"\(.*servers/\w+\.py"),
    ("logging", r"\(.*logging/"),
    ("event loop: gevent's hub (Python part)", r"^Hub\.run \(.*gevent/hub\.py"),
    ("gevent (Python part: sockets, queues, timers)", r"\(.*gevent/"),
    ("socket.io / engine.io", r"\(.*(socketio|engineio)/"),
    ("other Python", r"."),
]
IDLE = re.compile(r"^epoll_wait \(")
_NATIVE = [(name, re.compile(rx)) for name, rx in NATIVE]
_PYTHON = [(name, re.compile(rx)) for name, rx in PYTHON]
_IS_PYTHON = re.compile(r"\.py:\d+\)$|\(<[^>]*>:\d+\)$")


def read(path: Path) -> list[tuple[list[str], int]]:
    """The samples of a raw py-spy file: (frames outermost first, count)."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [
            f
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        out.append((frames, int(count)))
    return out


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, rx in _PYTHON if _IS_PYTHON.search(frame) else _NATIVE:
            if rx.search(frame):
                return name
    return "other Python"


def short(frame: str) -> str:
    """'recv (/x/y/gevent/_socket3.py:123)' -> 'recv (gevent/_socket3.py:123)'"""
    m = re.match(r"^(.*) \((.*)\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    parts = path.split("/")
    return f"{m.group(1)} ({'/'.join(parts[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    samples = read(args.profile)
    total = sum(n for _, n in samples)
    if not total:
        raise SystemExit(f"no samples in {args.profile}")
    # A sample whose innermost frame is epoll_wait is the event loop waiting: idle, not CPU
    # (py-spy --native cannot tell idle threads apart, since it stops the process to sample).
    idle = sum(n for frames, n in samples if frames and IDLE.search(frames[-1]))
    samples = [(f, n) for f, n in samples if not (f and IDLE.search(f[-1]))]
    total -= idle
    if not total:
        raise SystemExit(f"only idle samples in {args.profile}")
    cats: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, n in samples:
        cats[category(frames)] += n
        if frames:
            leaf[short(frames[-1])] += n
        for f in {re.sub(r":\d+\)$", ")", short(f)) for f in frames}:
            incl[f] += n
    print(f"{total} samples from {args.profile} ({idle} idle in epoll_wait left out)")
    print("\n| where the CPU went (innermost matching frame) | share |\n|---|---:|")
    for name, n in cats.most_common():
        print(f"| {name} | {100 * n / total:.1f} % |")
    print(f"\n| innermost frame (self), top {args.top} | share |\n|---|---:|")
    for name, n in leaf.most_common(args.top):
        print(f"| `{name}` | {100 * n / total:.1f} % |")
    print(f"\n| function on the stack (inclusive), top {args.top} | share |\n|---|---:|")
    for name, n in incl.most_common(args.top):
        print(f"| `{name}` | {100 * n / total:.1f} % |")


if __name__ == "__main__":
    main()
