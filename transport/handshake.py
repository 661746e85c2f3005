"""Upgrade checks and the origin rule (before the upgrade; no socket is touched here)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from wsroom.errors import HandshakeRejected

__all__ = ["check_upgrade", "origin_allowed"]

logger = logging.getLogger("wsroom.transport")


def _header_tokens(environ: dict[str, Any], key: str) -> set[str]:
    return {t.strip().lower() for t in str(environ.get(key, "")).split(",") if t.strip()}


def check_upgrade(environ: dict[str, Any], allowed_origins: Sequence[str] | None) -> None:
    """Raise ``HandshakeRejected`` (with its HTTP status) unless this is an acceptable upgrade."""
    if environ.get("REQUEST_METHOD", "GET") != "GET":
        raise HandshakeRejected("a WebSocket upgrade must be a GET request", 400)
    if "websocket" not in _header_tokens(environ, "HTTP_UPGRADE"):
        raise HandshakeRejected("not a WebSocket upgrade: Upgrade: websocket is missing", 400)
    if "upgrade" not in _header_tokens(environ, "HTTP_CONNECTION"):
        raise HandshakeRejected("not a WebSocket upgrade: Connection: Upgrade is missing", 400)
    version = str(environ.get("HTTP_SEC_WEBSOCKET_VERSION", "")).strip()
    if version != "13":
        raise HandshakeRejected(
            f"unsupported WebSocket version {version or '(none)'}; this server speaks 13",
            426,
            (("Sec-WebSocket-Version", "13"),),
        )
    key = str(environ.get("HTTP_SEC_WEBSOCKET_KEY", "")).strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeRejected("Sec-WebSocket-Key is missing or malformed", 400)
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not origin_allowed(
        str(origin), str(environ.get("HTTP_HOST", "")), allowed_origins
    ):
        raise HandshakeRejected(f"origin {origin} is not allowed", 403)


def origin_allowed(origin: str, host: str, allowed: Sequence[str] | None) -> bool:
    """The origin rule: same host by default, else any pattern (``*`` within a host) matches."""
    origin = origin.strip().lower()
    if allowed is None:
        return bool(host) and urlsplit(origin).netloc == host.strip().lower()
    return any(p == "*" or _pattern(p).fullmatch(origin) for p in allowed)


def _pattern(pattern: str) -> re.Pattern[str]:
    # fnmatch's "*" would cross "/" and ":"; an origin pattern's "*" stays inside one host part.
    return re.compile(fnmatch.translate(pattern.lower()).replace(".*", r"[^/:]*"))
