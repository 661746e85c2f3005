"""Without ``backplane=`` nothing of Redis is imported: a hub of one process costs what it did."""

from __future__ import annotations

import subprocess
import sys
import tempfile

PROGRAM = """
import sys
import wsroom
from wsroom.transport import make_handler, serve
hub = wsroom.new_hub(wsroom.Hooks(), wsroom.ReconnectPolicy(1.0, 4))
server = serve(make_handler(hub, "lobby", wsroom.Identity(), lambda r, i: "p"), port=0)
hub.stop()
server.stop()
loaded = sorted(
    m for m in sys.modules if m == "redis" or m.startswith(("redis.", "wsroom.backplane"))
)
assert not loaded, loaded
print("ok")
"""


def test_a_hub_without_backplane_imports_no_redis() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
