"""The chat example as deployed: ``gunicorn -c examples/chat/gunicorn.conf.py``, gevent workers.

With one worker and no backplane it is the plain chat behind gunicorn: a worker's SIGTERM
closes its connections with 1001 at once (not after gunicorn's graceful timeout), nothing is
logged as an error, and the master's new worker takes the next connections. With four workers
on the backplane they are one chat: a dozen clients spread over the workers all hear each other,
and a worker's SIGTERM is a graceful restart: its clients get 1001, are shown away to the
others, come back on another worker inside their grace period as the same members, and get
every message said while they were away, in order, once.

Real processes and sockets throughout: gunicorn is started as a user would (from the example's
folder, so the checkout's source folders do not shadow the installed package), clients are
websocket-client, and which worker serves a page is the ``worker`` field of its ``hello``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import read_close, recv_json, send_json, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat"
CONF = CHAT / "gunicorn.conf.py"
GRACE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Gunicorn:
    """A gunicorn master running the chat, its output in a file (a pipe could fill up)."""

    def __init__(self, workdir: Path, workers: int, backplane: str | None) -> None:
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "gunicorn.log"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "WSROOM_CHAT_PORT": str(self.port),
            "WSROOM_CHAT_WORKERS": str(workers),
            "WSROOM_CHAT_GRACE": str(GRACE),
            # gunicorn's control socket goes here, not in the user's home, one per master
            "XDG_RUNTIME_DIR": str(workdir),
        }
        env.pop("WSROOM_BACKPLANE", None)
        if backplane:
            env["WSROOM_BACKPLANE"] = backplane
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                cwd=CHAT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> tuple[int, str, int] | None:
        """``GET /healthz``: status, body and the answering worker, or None while nothing
        answers."""
        assert self.proc.poll() is None, f"gunicorn exited:\n{self.log()}"
        try:
            with urllib.request.urlopen(f"http://{self.base}/healthz", timeout=5) as answer:
                worker = int(answer.headers["X-Chat-Worker"])
                return answer.status, answer.read().decode(), worker
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), int(exc.headers["X-Chat-Worker"])
        except OSError:
            return None

    def wait_healthy(self, workers: int = 1) -> set[int]:
        """Wait until ``workers`` distinct workers have answered ``/healthz`` with 200 ``ok``
        (a worker that still loads the app answers nothing, and the others take every
        connection meanwhile; one that is stopping answers 503); return their process ids."""
        seen: set[int] = set()

        def enough() -> bool:
            answer = self.health()
            if answer is not None and answer[:2] == (200, "ok\n"):
                seen.add(answer[2])
            return len(seen) >= workers

        wait_until(enough, timeout=60, what=f"{workers} workers to say ok on /healthz")
        return seen

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(workers: int, backplane: str | None = None) -> Gunicorn:
        g = Gunicorn(tmp_path, workers, backplane)
        started.append(g)
        g.wait_healthy(workers)
        return g

    yield start
    for g in started:
        g.stop()
        print(f"--- gunicorn on port {g.port} ---\n{g.log()}")  # shown when the test failed


class Page:
    """One chat page's connection: a participant id (its tab's session id), a name, and what it
    was shown: the chat messages' texts in arrival order, and the newest presence list (lists
    made by two workers may cross on the way: the highest version wins, as on the real page)."""

    def __init__(self, server: Gunicorn, name: str) -> None:
        self.server = server
        self.name = name
        self.sid = f"{name}-{uuid.uuid4().hex[:10]}"
        self.ws: websocket.WebSocket | None = None
        self.hello: dict[str, Any] = {}
        self.said: list[str] = []
        self.seen: set[int] = set()  # the chat's seq of each message shown
        self.version = 0
        self.people: dict[str, str] = {}  # participant id -> "online" | "away"

    def connect(self) -> dict[str, Any]:
        """Connect (again), retrying what a browser's client retries: no answer yet, or a 503
        from a worker that is stopping. Returns the ``hello``, which comes first."""
        url = f"ws://{self.server.base}/ws/lobby?name={self.name}&sid={self.sid}"

        def attempt() -> websocket.WebSocket | None:
            try:
                return websocket.create_connection(url, timeout=10)
            except websocket.WebSocketBadStatusException as exc:
                assert exc.status_code == 503, exc
                return None
            except OSError:
                return None

        self.ws = wait_until(attempt, timeout=20, what=f"{self.name} to connect")
        envelope = recv_json(self.ws)
        assert envelope["type"] == "hello", envelope
        self.hello = envelope["payload"]
        self.version = 0
        if not self.hello["reconnect"]:
            # As the page does: what was said while the join was under way (the hello comes
            # from on_join, before the join is complete) is asked for.
            send_json(self.ws, "sync", {"after": max(self.seen, default=0)})
        return self.hello

    @property
    def worker(self) -> int:
        return int(self.hello["worker"])

    def say(self, text: str) -> None:
        assert self.ws is not None
        send_json(self.ws, "say", {"text": text, "cid": uuid.uuid4().hex[:12]})

    def read_until(self, shown: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        """Read envelopes until ``shown()`` holds; fail after ``timeout`` seconds."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while not shown():
            left = deadline - time.monotonic()
            assert left > 0, f"{self.name}: timed out waiting for {what}"
            self.ws.settimeout(left)
            envelope = recv_json(self.ws)
            payload = envelope["payload"]
            if envelope["type"] == "message":
                self._shown(payload)
            elif envelope["type"] == "messages":
                for entry in payload:
                    self._shown(entry)
            elif envelope["type"] == "presence" and payload["version"] >= self.version:
                self.version = payload["version"]
                self.people = {p["id"]: p["state"] for p in payload["people"]}

    def _shown(self, entry: dict[str, Any]) -> None:
        if entry["kind"] == "message" and entry["seq"] not in self.seen:
            self.seen.add(entry["seq"])
            self.said.append(entry["text"])

    def messages_after(self, mark: int, count: int) -> list[str]:
        """The texts of the ``count`` chat messages after the first ``mark`` shown."""
        self.read_until(lambda: len(self.said) >= mark + count, f"{count} messages")
        return self.said[mark:]

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001 -- already closed by the server
                pass


@pytest.fixture
def pages() -> Iterator[list[Page]]:
    made: list[Page] = []
    yield made
    for page in made:
        page.close()


def test_the_chat_under_gunicorn_one_worker_stops_with_1001_and_a_new_worker_serves(
    gunicorn: Callable[..., Gunicorn], pages: list[Page]
) -> None:
    server = gunicorn(workers=1)
    ann, bob = Page(server, "ann"), Page(server, "bob")
    pages += [ann, bob]
    ann.connect()
    bob.connect()
    assert ann.worker == bob.worker != server.proc.pid  # a worker's, not the master's

    ann.say("hi")
    assert bob.messages_after(0, 1) == ["hi"]

    os.kill(ann.worker, signal.SIGTERM)
    for page in (ann, bob):
        assert page.ws is not None
        assert read_close(page.ws, timeout=5)[0] == 1001  # well inside graceful_timeout

    (new,) = server.wait_healthy()  # the master's new worker
    assert new != ann.worker
    hello = ann.connect()
    assert ann.worker == new
    assert hello["reconnect"] is False  # no backplane: the new worker knew nobody

    assert server.stop() == 0
    log = server.log()
    assert "Traceback" not in log and "[ERROR]" not in log, log


def test_the_chat_under_gunicorn_four_workers_on_the_backplane_are_one_chat_and_restart_losslessly(
    gunicorn: Callable[..., Gunicorn], pages: list[Page], redis_url: str
) -> None:
    server = gunicorn(workers=4, backplane=redis_url)
    people = [Page(server, f"user{i:02d}") for i in range(12)]
    pages += people
    for page in people:
        page.connect()
    workers = {page.worker for page in people}
    assert len(workers) > 1, f"every connection landed on one worker: {workers}"

    # One chat across the workers.
    speaker = people[0]
    speaker.say("hello everyone")
    for page in people:
        assert page.messages_after(0, 1) == ["hello everyone"], page.name
    everyone = {p.sid: "online" for p in people}
    speaker.read_until(lambda: speaker.people == everyone, "all twelve online")

    # A graceful restart of one worker that serves some, not all, of the pages.
    victim = next(w for w in workers if w != speaker.worker)
    gone = [p for p in people if p.worker == victim]
    stayed = [p for p in people if p.worker != victim]
    os.kill(victim, signal.SIGTERM)
    for page in gone:
        assert page.ws is not None
        assert read_close(page.ws, timeout=10)[0] == 1001, page.name
    shown_away = {**everyone, **{p.sid: "away" for p in gone}}
    speaker.read_until(lambda: speaker.people == shown_away, "the restarted worker's members away")

    said = ["while you were away 1", "while you were away 2"]
    for text in said:
        speaker.say(text)
    for page in stayed:
        assert page.messages_after(1, 2) == said, page.name

    for page in gone:
        mark = len(page.said)
        hello = page.connect()
        assert hello["reconnect"] is True, page.name  # the same member, on another worker
        assert page.worker != victim
        assert page.messages_after(mark, 2) == said, page.name  # what was queued, in order, once

    speaker.read_until(lambda: speaker.people == everyone, "everyone back online")
    assert server.stop() == 0
