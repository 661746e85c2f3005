"""Scenario R's question without Node: server CPU per delivery, resume clients against plain.

A quick check for work on the resume path (contract §7), not a replacement for ``run.py
--scenarios R``: ``servers/wsroom_server.py`` pinned to core 0, and in this process (core 1)
``--members`` raw WebSocket clients and one sender. Plain clients only read; resume clients
offer wsroom.resume.1, start afresh with an ack of nothing, check that ``seq`` is contiguous and
acknowledge as wsroom.js does (every 16 envelopes, or 500 ms after the first one not
acknowledged). Each round the sender sends ``--count`` broadcasts back to back; the server's CPU
(``/proc/<pid>/task/*/schedstat``) is taken from the first send until every member has every
envelope, plus 0.7 s for the last acks. Plain and resume servers alternate ``--repeat`` times,
and the lowest figure of each mode is reported: the machine's other work only ever adds.

    python benchmarks/resume_cpu.py --members 1000 --count 100 --repeat 3 --max-queued 1024

``--client-work`` (microseconds per envelope) slows the clients down, as a busy Node load
generator is; ``--max-queued`` is the server's ``max_queued_per_conn``, which also bounds a
resume member's unacknowledged envelopes: a client that falls further behind is closed with 4008.
"""

from __future__ import annotations

import argparse
import base64
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parent / "servers" / "wsroom_server.py"
ACK_EVERY = 16  # wsroom.js: ackEvery
ACK_DELAY = 0.5  # wsroom.js: ackDelay, in seconds


def masked(text: bytes) -> bytes:
    """A client's text frame (masked with a zero key: the payload reads as it is)."""
    n = len(text)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + text


class Client:
    """One member: reads its frames, counts broadcasts, checks and acknowledges ``seq``."""

    def __init__(self, port: int, name: str, resume: bool, work: float) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        offer = "Sec-WebSocket-Protocol: wsroom.resume.1, wsroom.plain.1\r\n" if resume else ""
        sock.sendall(
            f"GET /ws?id={name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{offer}\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise SystemExit(f"upgrade refused: {head!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.resume = resume
        if resume:
            sock.sendall(masked(b'{"type":"wsroom.ack","payload":{"seq":0}}'))  # a fresh start
        sock.setblocking(False)
        self.sock = sock
        self.work = work
        self.got = 0  # broadcasts received
        self.seq = 0  # the last seq received
        self.acked = 0
        self.gaps = 0
        self.first_unacked: float | None = None

    def ack(self) -> None:
        self.acked = self.seq
        self.first_unacked = None
        self.sock.send(masked(b'{"type":"wsroom.ack","payload":{"seq":%d}}' % self.seq))

    def read(self, now: float) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise SystemExit("the server closed a connection")
        buf = self.buf + data if self.buf else data
        i, n = 0, len(buf)
        while n - i >= 2:
            length = buf[i + 1]
            start = i + 2
            if length == 126:
                if n - i < 4:
                    break
                length, start = int.from_bytes(buf[i + 2 : i + 4], "big"), i + 4
            end = start + length
            if end > n:
                break
            if buf[i] == 0x88:
                raise SystemExit(f"closed by the server: {buf[start:end]!r}")
            if buf[start + 9 : start + 14] == b"bcast":
                self.got += 1
                if self.work:
                    until = time.perf_counter() + self.work
                    while time.perf_counter() < until:
                        pass
            k = buf.rfind(b',"seq":', start, end) if self.resume else -1
            if k >= 0:
                seq = int(buf[k + 7 : end - 1])
                self.gaps += seq != self.seq + 1
                self.seq = seq
                if self.seq - self.acked >= ACK_EVERY:
                    self.ack()
                elif self.first_unacked is None:
                    self.first_unacked = now
            i = end
        self.buf = buf[i:]


def server_cpu(pid: int) -> float:
    """Seconds on CPU of every thread of ``pid``, to the nanosecond."""
    task = Path(f"/proc/{pid}/task")
    return sum(int((t / "schedstat").read_text().split()[0]) for t in task.iterdir()) / 1e9


def run(args: argparse.Namespace, resume: bool) -> float:
    """One server: warm-up round, then ``--rounds``; the lowest microseconds per delivery."""
    cmd = ["taskset", "-c", "0", sys.executable, str(SERVER), "--port", "0"]
    cmd += ["--max-queued", str(args.max_queued)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        work = args.client_work / 1e6
        members = [Client(port, str(i), resume, work) for i in range(args.members)]
        sender = Client(port, "sender", resume, 0.0)
        sel = selectors.DefaultSelector()
        for c in [*members, sender]:
            sel.register(c.sock, selectors.EVENT_READ, c)
        time.sleep(1.0)  # the joins settle
        best, cseq = float("inf"), 0
        for r in range(args.rounds + 1):
            burst = []
            for k in range(args.count):
                cseq += 1
                text = b'{"type":"bcast","payload":{"n":%d,"pad":"%s"}%s}' % (
                    k,
                    b"x" * 48,
                    b',"cseq":%d' % cseq if resume else b"",
                )
                burst.append(masked(text))
            cpu0 = server_cpu(server.pid)
            sender.sock.setblocking(True)
            sender.sock.sendall(b"".join(burst))
            sender.sock.setblocking(False)
            want, settle, give_up = args.members * args.count * (r + 1), None, time.monotonic() + 60
            while settle is None or time.monotonic() < settle:
                now = time.monotonic()
                if now > give_up:
                    raise SystemExit(f"timed out: {sum(c.got for c in members)} of {want}")
                if settle is None and sum(c.got for c in members) >= want:
                    settle = now + 0.7
                for key, _ in sel.select(0.05):
                    key.data.read(now)
                for c in members if resume else ():
                    if c.first_unacked is not None and now - c.first_unacked >= ACK_DELAY:
                        c.ack()
            if r:  # round 0 warms up
                per = (server_cpu(server.pid) - cpu0) / (args.members * args.count) * 1e6
                best = min(best, per)
        if any(c.gaps for c in members):
            raise SystemExit("seq gaps")
        return best
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--count", type=int, default=100, help="broadcasts per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--repeat", type=int, default=3, help="servers per mode, alternating")
    parser.add_argument("--max-queued", type=int, default=1024)
    parser.add_argument("--client-work", type=float, default=0.0, metavar="US")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    figures: dict[str, list[float]] = {"plain": [], "resume": []}
    for _ in range(args.repeat):
        for mode in figures:
            figures[mode].append(run(args, mode == "resume"))
            print(f"{mode}: {figures[mode][-1]:.2f} us per delivery", flush=True)
    plain, resume = min(figures["plain"]), min(figures["resume"])
    print(f"lowest: plain {plain:.2f}, resume {resume:.2f} us per delivery; {resume / plain:.2f}x")


if __name__ == "__main__":
    main()
