"""Fixtures for the end-to-end tests: example servers as subprocesses, headless Chromium.

Test modules import the fixtures they use from here (``from e2e_support import ...``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


class Server:
    """A server script run as a subprocess on a free port; it prints its address first."""

    def __init__(self, argv: list[str], port: int = 0) -> None:
        self.argv = argv
        self.port = port
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"(https?|ws)://[\d.]+:(\d+)", line)
            if match:
                self.port = int(match.group(2))
                self.url = f"http://127.0.0.1:{self.port}"
                return
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.argv} did not start: {line!r}")

    def kill(self) -> None:
        """Stop the process at once (the server "goes away")."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def server() -> Iterator[Callable[..., Server]]:
    """Start servers: ``server("examples/chat/app.py", "--grace", "20")``."""
    started: list[Server] = []

    def start(*argv: str) -> Server:
        s = Server(list(argv))
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("WSROOM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and WSROOM_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Pages, each in its own context (its own storage, its own network switch). On failure
    every page is saved as a screenshot under test-output/."""
    pages: list[Any] = []
    contexts: list[Any] = []
    failed_before = request.session.testsfailed

    def make(viewport: tuple[int, int] = (1100, 700)) -> Any:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.console_log = []  # type: ignore[attr-defined]
        page.on("console", lambda msg: page.console_log.append(msg.text))
        pages.append(page)
        return page

    yield make
    if request.session.testsfailed > failed_before:
        OUTPUT.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for i, page in enumerate(pages):
            try:
                page.screenshot(path=str(OUTPUT / f"{name}-page{i}.png"))
                print(f"screenshot: {OUTPUT / f'{name}-page{i}.png'}; console: {page.console_log}")
            except Exception as exc:  # noqa: BLE001 -- a closed page has nothing to show
                print(f"no screenshot of page {i}: {exc!r}")
    for context in contexts:
        try:
            context.close()
        except Exception:  # noqa: BLE001 -- already closed by the test
            pass
