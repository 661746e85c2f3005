"""wsroom works in a process gevent never monkey-patched (the test process itself is patched,
so the check runs a script in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "transport_unpatched.py"


@pytest.mark.parametrize("front", ["wsgi", "flask"])
def test_hub_serves_a_client_in_an_unpatched_process(front: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), front],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=SCRIPT.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["front"] == front
    # Nothing patched the process: not the script, and not importing or running wsroom.
    assert report["patched_socket"] is False
    assert report["patched_anything"] is False
    assert report["socket_is_stdlib"] is True
    # A real OS thread with a blocking client talked to the hub over a real socket.
    client = report["client"]
    assert client["thread"] is True
    assert client["welcome"] == {"type": "welcome", "payload": "alice"}
    assert client["echoes"] == list(range(50))
    assert report["joins"] == ["alice"]
    assert report["messages"] == list(range(50))
    assert report["leaves"] == ["alice:Disconnected"]
