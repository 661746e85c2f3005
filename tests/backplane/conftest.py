"""Fixtures for the backplane tests: a real Redis server the tests own, and hub processes.

Without ``redis-server`` (or redis-py) the tests skip, saying why; with ``WSROOM_REQUIRE_REDIS=1``
(as in CI) they fail instead, so a missing server can never pass for a green run.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import wait_until

from .support import BACKPLANE_TIMEOUT, DEAD_AFTER, HEARTBEAT, Cluster, Node

if TYPE_CHECKING:
    from redis_server import RedisServer


def _redis_missing() -> str | None:
    """Why Redis cannot be run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is missing (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is missing (pip install 'wsroom[redis]')"
    return None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session, in a folder of its own, on a free port."""
    missing = _redis_missing()
    if missing is not None:
        if os.environ.get("WSROOM_REQUIRE_REDIS") == "1":
            pytest.fail(f"{missing} and WSROOM_REQUIRE_REDIS=1")
        pytest.skip(f"{missing}; set WSROOM_REQUIRE_REDIS=1 to make this a failure")
    from redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, up (a fault test may have left it down) and empty."""
    if not redis_server.running:
        redis_server.start()
    wait_until(redis_server.ping, timeout=10, what="redis to answer PING")
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def hub_procs(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start hub processes: ``hub_procs(n, url, grace=..., queued=...)`` gives a Cluster of ``n``
    node.py processes on free ports against the backplane ``url`` (None: each a plain
    single-process hub). Every process is killed at teardown; their logs are printed then
    (pytest shows them when the test failed)."""
    clusters: list[Cluster] = []
    names = itertools.count()

    def start(
        n: int,
        url: str | None,
        *,
        grace: float = 5.0,
        queued: int = 64,
        dead_after: float | None = DEAD_AFTER,
        heartbeat: float | None = HEARTBEAT,
        backplane_timeout: float | None = BACKPLANE_TIMEOUT,
        extra: tuple[str, ...] = (),
    ) -> Cluster:
        argv = ["--grace", str(grace), "--queued", str(queued), *extra]
        if url is not None:
            argv += ["--backplane", url]
            for flag, value in (
                ("--dead-after", dead_after),
                ("--heartbeat", heartbeat),
                ("--backplane-timeout", backplane_timeout),
            ):
                if value is not None:
                    argv += [flag, str(value)]

        def spawn_many(count: int) -> list[Node]:
            nodes = []
            for _ in range(count):  # started together: their imports overlap
                name = f"node{next(names)}"
                nodes.append(Node(argv, tmp_path / f"{name}.log", name))
            for node in nodes:
                node.wait_ready()
            return nodes

        cluster = Cluster(spawn_many(n), lambda: spawn_many(1)[0])
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.shutdown()
        for node in cluster.nodes:
            tail: Any = node.log_tail()
            if tail:
                print(f"--- {node.name} (port {node.port}) log ---\n{tail}")
