"""The quick start runs as a program and ends cleanly on SIGTERM (run_until_signal)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import websocket
from conftest import read_close

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_relays_messages_and_stops_on_sigterm_with_1001() -> None:
    env = {**os.environ, "PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(re.search(r":(\d+)/ws", line).group(1))  # type: ignore[union-attr]
        ann = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?user=ann", timeout=10)
        bob = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?user=bob", timeout=10)
        assert json.loads(ann.recv())["type"] == "welcome"
        assert json.loads(bob.recv())["type"] == "welcome"
        ann.send(json.dumps({"type": "chat", "payload": {"text": "hi"}}))
        assert json.loads(bob.recv()) == {"type": "chat", "payload": {"text": "hi"}}
        proc.send_signal(signal.SIGTERM)
        assert read_close(ann)[0] == 1001
        assert read_close(bob)[0] == 1001
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
