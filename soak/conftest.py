"""Soak scenarios: a hub in its own process (``soak/server.py``), measured from outside.

Run with ``tox -e soak``; each scenario prints its figures and asserts the issue's bar. They are
long and use thousands of sockets, so they are not part of the default test run.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER = Path(__file__).with_name("server.py")


class SoakServer:
    """A running ``soak/server.py``: its port, its stats, and its end."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def url(self, room: str, user: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{room}?user={user}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def terminate(self, timeout: float = 30.0) -> str:
        """SIGTERM, then wait; the server's last line (``STOPPED ...``)."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        return out.strip().splitlines()[-1] if out.strip() else ""


@pytest.fixture
def soak_server() -> Iterator[Callable[..., SoakServer]]:
    """Start ``soak/server.py`` with ``grace``, ``queued`` and any ``new_hub`` options."""
    started: list[SoakServer] = []

    def start(grace: float = 0.0, queued: int = 0, **options: Any) -> SoakServer:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                "--grace",
                str(grace),
                "--queued",
                str(queued),
                "--options",
                json.dumps(options),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"soak server did not start: {line!r}"
        server = SoakServer(proc, int(line.split()[1]))
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture(autouse=True, scope="session")
def _many_descriptors() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def report(name: str, **figures: Any) -> None:
    """Print one scenario's figures on one line (``tox -e soak`` shows them)."""
    shown = ", ".join(f"{key}={value}" for key, value in figures.items())
    sys.stdout.write(f"\nSOAK {name}: {shown}\n")
