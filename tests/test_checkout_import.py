"""``import wsroom`` run in a checkout's root, where the source folder ``wsroom/`` comes first.

setup.cfg maps ``actors/`` and ``transport/`` into the package only on installation, so the
source folder alone has no ``wsroom.actors``: the import must fail with a message that says why
and what to do. In tox the package is installed as a wheel, so that failure is what tox sees;
an editable install maps both folders of this checkout in, and then the import works.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import wsroom.actors

REPO = Path(__file__).resolve().parent.parent
EDITABLE_HERE = Path(wsroom.actors.__file__).resolve().parent == REPO / "actors"
EXPLANATION = "are mapped into the package only by installation"


def import_in_repo_root(*flags: str, path: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.pop("PYTHONSAFEPATH", None)  # it would keep the current directory off sys.path
    return subprocess.run(
        [sys.executable, *flags, "-c", "import wsroom"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_says_what_to_do(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, "import wsroom from the checkout's root should have failed"
    assert "ImportError" in result.stderr, result.stderr
    assert EXPLANATION in result.stderr, result.stderr
    assert "pip install -e ." in result.stderr, result.stderr


def test_import_in_the_repo_root() -> None:
    path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    result = import_in_repo_root(path=path)
    if EDITABLE_HERE:
        assert result.returncode == 0, result.stderr
    else:
        assert_says_what_to_do(result)


def test_uninstalled_checkout_says_what_to_do() -> None:
    # -S skips site, so no editable install's .pth maps the folders in, while PYTHONPATH still
    # reaches the dependencies: the failure path, whichever way the package is installed.
    result = import_in_repo_root("-S", path=[str(REPO), *site.getsitepackages()])
    assert_says_what_to_do(result)
