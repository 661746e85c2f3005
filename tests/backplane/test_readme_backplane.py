"""The README's backplane snippet (the emitter) runs as it stands, in a plain process, and
does what it says: the members of a room on a hub of the backplane get the envelope."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from conftest import recv_json, wait_until

from .shared import joined, pair

__all__ = ["pair"]

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_emitter_snippet_reaches_a_member(pair: Any, redis_url: str) -> None:
    (snippet,) = re.findall(r"```py\n(.*?)```", README, re.S)
    a, b = pair()
    alice = a.join(user="alice")
    b.connect(user="bob")
    wait_until(joined(a, "bob"))
    code = snippet.replace("redis://127.0.0.1:6379/0", redis_url)
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir(), timeout=30
    )
    assert recv_json(alice) == {"type": "news", "payload": {"text": "deploy at 5"}}
