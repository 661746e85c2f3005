"""The examples as programs: a port in use is one line on stderr and a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from e2e_support import ROOT


@pytest.mark.parametrize("name", ["chat", "game"])
def test_a_port_in_use_is_one_line_and_a_non_zero_exit(name: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, f"examples/{name}/app.py", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert done.returncode != 0
    assert done.stdout == ""
    expected = f"{name}: cannot listen on 127.0.0.1:{port}: Address already in use; pass --port"
    assert done.stderr.splitlines() == [expected], done.stderr
