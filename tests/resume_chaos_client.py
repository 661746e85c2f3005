"""A resume client in a process of its own, for the chaos test that kills it: what it received
and sent is kept in a file, line by line, and a new process started on the same file takes the
membership over where the killed one stopped.

    python resume_chaos_client.py URL STATE_FILE TOTAL

Lines: ``d <seq> <n>`` (an envelope from the hub, written before it is acknowledged), ``s <n>``
(an envelope about to be sent, with cseq n), ``g <reason> <last_seq> <first_seq>`` (a gap).
It sends ``up`` 1..TOTAL, receives ``down`` until it has TOTAL, waits until the hub has
acknowledged every ``up``, and exits 0.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from wsroom.client import Gap, ResumeState, RoomClient


def main() -> None:
    url, path, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    last_seq = sent = received = 0
    if path.exists():
        for line in path.read_text().splitlines():
            kind, *rest = line.split()
            if kind == "d" and len(rest) == 2:
                last_seq, received = int(rest[0]), received + 1
            elif kind == "s" and rest:
                sent = int(rest[0])
    # Everything it sent may be missing at the hub: the hub's answer drops what it has.
    pending = [(n, "up", n) for n in range(1, sent + 1)]
    # The first process starts afresh; the next ones take over where it stopped.
    state: Any = ResumeState(last_seq, sent + 1, pending) if path.exists() else True
    log = path.open("a", buffering=1)  # a line per write(): a kill never leaves half of one

    def on_gap(gap: Gap, _client: RoomClient) -> None:
        log.write(f"g {gap.reason} {gap.last_seq} {gap.first_seq}\n")

    client = RoomClient(
        url, resume=state, auto_ack=False, on_gap=on_gap, min_delay=0.01, max_delay=0.1
    ).connect()

    def send_all() -> None:
        for n in range(sent + 1, total + 1):
            log.write(f"s {n}\n")
            client.send("up", n)
            if n % 8 == 0:
                time.sleep(0.002)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    while received < total:
        envelope = client.recv(timeout=30)
        if envelope.type == "down":
            log.write(f"d {client.taken_seq} {envelope.payload}\n")
            client.ack()
            received += 1
    sender.join(30)
    deadline = time.monotonic() + 30
    while client.resume_state().pending and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    log.close()


if __name__ == "__main__":
    main()
