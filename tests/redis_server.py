"""A real ``redis-server`` the tests own: started in a folder of theirs on a free port, so they
can kill it and bring it back on the same port with the same data (AOF, fsync always)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = "redis-server"


def redis_server_path() -> str | None:
    """Where ``redis-server`` is, or None when it is not installed."""
    return shutil.which(REDIS_SERVER)


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; ``restart()`` keeps its port and folder, so a client that
    reconnects finds the same server, and the append-only file brings its data back."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "redis.log"

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        binary = redis_server_path()
        if binary is None:
            raise FileNotFoundError(f"{REDIS_SERVER} is not installed")
        argv = [
            binary,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if self.ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING: {self.log_tail()}")
            time.sleep(0.02)

    def ping(self) -> bool:
        """Whether the server answers PING right now."""
        try:
            with self._client() as r:
                return bool(r.ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a word, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Start it again on the same port and folder (killing it first if it still runs)."""
        self.kill()
        self.start()

    def flush(self) -> None:
        """FLUSHALL: every key of every database gone, so one test leaves nothing to the next."""
        with self._client() as r:
            r.flushall()

    def client(self) -> redis.Redis:
        """A redis-py client for this server (the caller closes it)."""
        return self._client()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self._port, db=0, socket_timeout=2, socket_connect_timeout=2
        )
