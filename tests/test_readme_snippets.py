"""Every code block of the README runs as it stands and does what the README says it does.

Each ```python block is a whole program: it is run in a subprocess with the port text ``8080``
replaced by a free port (the only change), two real clients connect, one says ``hi``, the other
must receive the documented ``chat`` envelope, and SIGTERM must stop it with 1001 for both.
``examples/quickstart.py`` must be the quick start block, character for character.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websocket
from conftest import read_close, recv_json, send_json, wait_until

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)

# What each block serves, in README order: the URL path of a room (a new block needs a line here).
PATHS = ["/ws", "/ws/lobby"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def connect_when_up(url: str, proc: subprocess.Popen[str]) -> websocket.WebSocket:
    """Connect once the program listens (it may print nothing), failing early if it died."""

    def attempt() -> websocket.WebSocket | None:
        assert proc.poll() is None, f"the snippet exited: {proc.communicate()[1]}"
        try:
            return websocket.create_connection(url, timeout=10)
        except (OSError, websocket.WebSocketException):
            return None

    ws: websocket.WebSocket = wait_until(attempt, timeout=30, what=f"{url} to answer")
    return ws


@pytest.fixture
def run_snippet() -> Iterator[Callable[[str, int], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def run(code: str, port: int) -> subprocess.Popen[str]:
        assert "8080" in code, "a snippet that serves says which port"
        path = Path(tempfile.mkdtemp()) / "snippet.py"
        path.write_text(code.replace("8080", str(port)))
        proc = subprocess.Popen(
            [sys.executable, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=path.parent,  # as a user would: outside the checkout, the installed package
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_the_readme_has_the_blocks_this_test_knows() -> None:
    assert len(PYTHON_BLOCKS) == len(PATHS), "a new README block needs its line in PATHS"


def test_quickstart_file_is_the_readme_quick_start_block() -> None:
    assert (ROOT / "examples" / "quickstart.py").read_text() == PYTHON_BLOCKS[0]


@pytest.mark.parametrize("index", range(len(PATHS)), ids=["quickstart", "flask"])
def test_a_readme_block_runs_relays_say_and_stops_on_sigterm(
    index: int, run_snippet: Callable[[str, int], subprocess.Popen[str]]
) -> None:
    port = free_port()
    proc = run_snippet(PYTHON_BLOCKS[index], port)
    base = f"ws://127.0.0.1:{port}{PATHS[index]}"
    ann = connect_when_up(f"{base}?user=ann", proc)
    bob = websocket.create_connection(f"{base}?user=bob", timeout=10)
    if index == 0:  # the quick start greets each member
        assert recv_json(ann) == {"type": "welcome", "payload": {"you": "ann", "reconnect": False}}
        assert recv_json(bob)["type"] == "welcome"
    send_json(ann, "say", "hi")
    assert recv_json(bob) == {"type": "chat", "payload": {"from": "ann", "text": "hi"}}
    proc.send_signal(signal.SIGTERM)
    assert read_close(ann)[0] == 1001
    assert read_close(bob)[0] == 1001
    assert proc.wait(timeout=15) == 0


def test_the_quickstart_on_a_port_in_use_says_so_in_one_line(
    run_snippet: Callable[[str, int], subprocess.Popen[str]],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_snippet(PYTHON_BLOCKS[0], port)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert err.strip() == f"quickstart: port {port}: Address already in use", err
    assert out == ""  # not even the "listening on" line
