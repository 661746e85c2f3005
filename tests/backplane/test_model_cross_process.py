"""The delivery model of tests/test_delivery_model.py across three hub processes on one Redis,
with hub processes killed (SIGKILL) or stopped (SIGTERM) and Redis killed and restarted along
the way: whatever the joins, drops, reconnects and replacements, on whichever process, every
envelope the hub accepted for a member reaches it exactly once, in order.

Seeded and reproducible: the seed comes from WSROOM_SEED (default below) and every failure
names it. Only the order of operations is the seed's; timings are the machine's.

Two things the model holds still for, because the contract does not say what they give:
- Before a process is killed or stopped, its members have read everything sent to them so far,
  and nothing is sent to them until the survivors see them OFFLINE. (What a process had not yet
  written when it died is lost with it; once seen dead, its members' envelopes are queued.)
- While Redis is down, nothing is called (tests/backplane/test_faults.py covers calls then);
  the model resumes once every process answers again.
"""

from __future__ import annotations

import os
import random
from typing import Any

import gevent
import pytest
from conftest import wait_until

from .support import BACK_WITHIN, DEAD_AFTER, HEARTBEAT, SLACK, Cluster, Node, WsClient

DEFAULT_SEED = 20_240_611
OPS = 260
USERS = 6
GRACE = 300.0  # longer than the run: no membership ends in it
NOTICED_WITHIN = DEAD_AFTER + HEARTBEAT + SLACK


def seed_from_env() -> int:
    return int(os.environ.get("WSROOM_SEED", DEFAULT_SEED))


class Model:
    """What the hub was asked and said, and what each user's clients received."""

    def __init__(self, cluster: Cluster, redis: Any, rng: random.Random) -> None:
        self.c = cluster
        self.redis = redis
        self.rng = rng
        self.users = [f"u{i}" for i in range(USERS)]
        self.expected: dict[str, list[int]] = {u: [] for u in self.users}
        self.history: dict[str, list[WsClient]] = {u: [] for u in self.users}
        self.online: dict[str, tuple[WsClient, Node]] = {}
        self.members: set[str] = set()
        self.seq = 0
        self.faults: dict[str, int] = {"kill": 0, "stop": 0, "redis": 0}
        self.trace: list[str] = []  # what was done, for the failure message

    # -- what a user received: its connections in order, each read to its end first ------

    def received(self, user: str) -> list[int]:
        return [p for ws in self.history[user] for p in ws.payloads("m")]

    def node(self) -> Node:
        return self.rng.choice(self.c.live)

    # -- operations ----------------------------------------------------------------------

    def connect(self, user: str) -> None:
        """A first join, a reconnect inside grace, or a replacement, on a random process."""
        node = self.node()
        old = self.online.get(user)
        self.trace.append(f"connect {user} on {node.name}{' (replaces)' if old else ''}")
        new = self.c.connect(node, "r", user)
        if old is not None:
            # The old connection is read to its end (its 4001) before the new one.
            new.reading.clear()
            assert old[0].wait_closed() == (4001, "replaced"), user
            new.reading.set()
        hello = new.wait_hello()
        assert hello == {"reconnect": user in self.members}, (user, hello)
        self.c.wait_presence("r", user, "ONLINE")
        self.history[user].append(new)
        self.online[user] = (new, node)
        self.members.add(user)

    def disconnect(self, user: str) -> None:
        ws, _ = self.online.pop(user)
        self.trace.append(f"disconnect {user}")
        ws.close()
        # Seen through one random process only: presence is global.
        checker = self.node()
        wait_until(lambda: checker.members("r").get(user) == "OFFLINE", what=f"{user} offline")

    def broadcast(self) -> None:
        self.seq += 1
        # Sorted before drawing: a set's order would change with the hash seed.
        skip = [u for u in sorted(self.members) if self.rng.random() < 0.2]
        node = self.node()
        self.trace.append(f"broadcast {self.seq} via {node.name} exclude {skip}")
        report = node.broadcast("r", "m", self.seq, exclude=skip)
        to = self.members - set(skip)
        want_sent = sum(1 for u in to if u in self.online)
        assert report == {"sent": want_sent, "queued": len(to) - want_sent, "dropped": []}
        for u in to:
            self.expected[u].append(self.seq)

    def send_to(self, user: str) -> None:
        self.seq += 1
        node = self.node()
        self.trace.append(f"send_to {user} {self.seq} via {node.name}")
        delivery = node.send_to("r", user, "m", self.seq)
        assert delivery == ("SENT" if user in self.online else "QUEUED"), (user, self.seq)
        self.expected[user].append(self.seq)

    def settle(self, users: list[str]) -> None:
        """Wait until these users have read everything sent to them so far."""
        for u in users:
            wait_until(
                lambda u=u: len(self.received(u)) >= len(self.expected[u]),
                timeout=15,
                what=f"{u} to read its backlog",
            )

    def take_down_process(self, kill: bool) -> None:
        """SIGKILL (or SIGTERM) a random process serving someone; its members go OFFLINE;
        start another in its place."""
        serving = [n for n in self.c.live if any(m is n for _, m in self.online.values())]
        node = self.rng.choice(serving or self.c.live)
        users = sorted(u for u, (_, n) in self.online.items() if n is node)
        self.settle(users)
        self.trace.append(f"{'kill' if kill else 'stop'} {node.name} serving {users}")
        if kill:
            self.c.kill(node)
            self.faults["kill"] += 1
        else:
            # hub.stop() over the control API first, so that what its hooks did then can still
            # be read (no on_leave(HubStopped) for a process that leaves); then SIGTERM.
            node.stop_hub()
            node.events()
            assert node.terminate() == 0
            self.faults["stop"] += 1
        for u in users:
            ws, _ = self.online.pop(u)
            self.c.wait_presence("r", u, "OFFLINE", timeout=NOTICED_WITHIN)
            if not kill:
                assert ws.wait_closed()[0] == 1001, u
        self.c.add()

    def restart_redis(self) -> None:
        """Kill Redis, keep it away a while, bring it back; wait for every process.

        Away for up to DEAD_AFTER + 1.5 s: no process beats while Redis is away, which must
        not make the others take a live process for a dead one."""
        away = self.rng.uniform(0.5, DEAD_AFTER + 1.5)
        self.trace.append(f"redis away {away:.2f}s")
        self.redis.kill()
        gevent.sleep(away)
        self.redis.restart()
        self.faults["redis"] += 1

        def answering(node: Node) -> bool:
            try:
                node.rooms()
            except Exception:  # noqa: BLE001 -- BackplaneUnavailable until it is back
                return False
            return True

        for node in self.c.live:
            wait_until(lambda node=node: answering(node), timeout=BACK_WITHIN, what="service back")

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        rng = self.rng
        fault_at = dict.fromkeys(rng.sample(range(20, OPS - 20), 5), "")
        kinds = ["kill", "kill", "stop", "redis", "redis"]
        rng.shuffle(kinds)
        for at, kind in zip(sorted(fault_at), kinds, strict=True):
            fault_at[at] = kind
        for step in range(OPS):
            self.trace.append(f"#{step}")
            kind = fault_at.get(step)
            if kind in ("kill", "stop"):
                self.take_down_process(kill=kind == "kill")
                continue
            if kind == "redis":
                self.restart_redis()
                continue
            op = rng.random()
            user = rng.choice(self.users)
            if op < 0.22:
                self.connect(user)
            elif op < 0.37 and user in self.online:
                self.disconnect(user)
            elif op < 0.67 and self.members:
                self.broadcast()
            elif self.members:
                self.send_to(rng.choice(sorted(self.members)))

        # Everyone back, and read to the end.
        for user in sorted(self.members - set(self.online)):
            self.connect(user)
        self.settle(sorted(self.members))
        gevent.sleep(0.3)  # a duplicate would come now
        for user in sorted(self.online):
            self.online[user][0].close()

    def check(self) -> None:
        for user in self.users:
            got, want = self.received(user), self.expected[user]
            assert got == want, f"{user}: {difference(got, want)}"
        assert self.c.leaves() == []
        # The run did what it is for: many deliveries, reconnects, every kind of fault.
        assert sum(map(len, self.expected.values())) > 300
        reconnects = [e for e in self.c.events("join") if e[3] is True]
        assert len(reconnects) >= 20, len(reconnects)
        assert self.faults == {"kill": 2, "stop": 1, "redis": 2}, self.faults


def difference(got: list[int], want: list[int]) -> str:
    """What went wrong in a user's stream, in a line."""
    got_set, want_set = set(got), set(want)
    missing = [x for x in want if x not in got_set]
    extra = [x for x in got if x not in want_set]
    twice = sorted({x for x in got if got.count(x) > 1})
    pairs = enumerate(zip(got, want, strict=False))
    first = next((i for i, (g, w) in pairs if g != w), min(len(got), len(want)))
    return (
        f"got {len(got)}, want {len(want)}; missing {missing[:10]}, not sent {extra[:10]}, "
        f"twice {twice[:10]}; first difference at {first}: got {got[first : first + 5]}, "
        f"want {want[first : first + 5]}"
    )


@pytest.mark.timeout(180)
def test_every_accepted_envelope_arrives_once_in_order_across_processes_and_faults(
    hub_procs, redis_server: Any, redis_url: str
) -> None:
    seed = seed_from_env()
    cluster: Cluster = hub_procs(3, redis_url, grace=GRACE, queued=10_000)
    model = Model(cluster, redis_server, random.Random(seed))
    try:
        model.run()
        model.check()
    except AssertionError as exc:
        steps = [s for s in model.trace if not s.startswith("#")]
        last = "\n  ".join(steps[-12:])
        fault_words = ("kill ", "stop ", "redis ")
        faults = [
            f"{model.trace[i - 1]} {s}"
            for i, s in enumerate(model.trace)
            if s.startswith(fault_words)
        ]
        pytest.fail(
            f"seed={seed} (rerun with WSROOM_SEED={seed}): {exc}\n"
            f"faults so far: {faults}\nlast steps:\n  {last}"
        )
