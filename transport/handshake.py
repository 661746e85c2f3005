"""Upgrade checks, the host rule and the origin rule (before the upgrade; no socket is touched
here: the caller says which local address the connection arrived on)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from wsroom.errors import HandshakeRejected

__all__ = ["UpgradeRules", "check_upgrade", "host_allowed", "origin_allowed", "request_scheme"]

logger = logging.getLogger("wsroom.transport")


def _header_tokens(environ: dict[str, Any], key: str) -> set[str]:
    return {t.strip().lower() for t in str(environ.get(key, "")).split(",") if t.strip()}


class UpgradeRules:
    """The hub's rules for whom it upgrades: ``allowed_origins``, ``allowed_hosts``,
    ``trust_forwarded_proto`` (options of ``new_hub``), and this machine's ``hostname``."""

    __slots__ = ("allowed_hosts", "allowed_origins", "hostname", "trust_forwarded_proto")

    def __init__(
        self,
        allowed_origins: Sequence[str] | None = None,
        allowed_hosts: Sequence[str] | None = None,
        trust_forwarded_proto: bool = False,
        hostname: str = "",
    ) -> None:
        for name, value in (("allowed_origins", allowed_origins), ("allowed_hosts", allowed_hosts)):
            if isinstance(value, str):
                raise TypeError(f"{name} takes a list of patterns, not one string")
        self.allowed_origins = None if allowed_origins is None else tuple(allowed_origins)
        self.allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)
        self.trust_forwarded_proto = bool(trust_forwarded_proto)
        self.hostname = hostname.strip().lower().rstrip(".")


def check_upgrade(
    environ: dict[str, Any],
    rules: UpgradeRules | Sequence[str] | None,
    local_address: str | None = None,
) -> None:
    """Raise ``HandshakeRejected`` (with its HTTP status) unless this is an acceptable upgrade.

    ``rules`` may be just the ``allowed_origins`` list (or None); ``local_address`` is the IP
    the connection arrived on, when known (the default host rule needs it).
    """
    if not isinstance(rules, UpgradeRules):
        rules = UpgradeRules(rules)
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
    host = str(environ.get("HTTP_HOST", "")).strip()
    if not host_allowed(host, rules.allowed_hosts, local_address, rules.hostname):
        what = f"host {_printable(host)}" if host else "a request without a Host header"
        raise HandshakeRejected(f"{what} is not allowed (see allowed_hosts)", 400)
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not origin_allowed(
        str(origin),
        host,
        rules.allowed_origins,
        request_scheme(environ, rules.trust_forwarded_proto),
    ):
        raise HandshakeRejected(f"origin {_printable(str(origin))} is not allowed", 403)


def _printable(text: str) -> str:
    # A reason is one line: a header's value is shown without control characters, and short.
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def request_scheme(environ: dict[str, Any], trust_forwarded_proto: bool = False) -> str:
    """``http`` or ``https``: how the client reached the server. ``X-Forwarded-Proto`` counts
    only when trusted (a TLS-terminating proxy sets it; a client could forge it otherwise)."""
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    if trust_forwarded_proto:
        forwarded = str(environ.get("HTTP_X_FORWARDED_PROTO", "")).split(",")[0].strip()
        scheme = forwarded or scheme
    scheme = scheme.lower()
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _split_host(host: str) -> tuple[str, str]:
    """``(name, port)`` of a Host header value, lowercased, without a final dot."""
    host = host.strip().lower()
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            name, rest = host[: end + 1], host[end + 1 :]
            port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, port = host.split(":")
    return name.rstrip("."), port


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def host_allowed(
    host: str,
    allowed: Sequence[str] | None,
    local_address: str | None = None,
    hostname: str = "",
) -> bool:
    """The host rule (the ``Host`` header, its port aside).

    A list of patterns: an exact name, ``.example.com`` for that domain and its subdomains, or
    ``*`` for any host. None (the default): for a connection that arrived on a loopback address,
    only loopback names (``localhost``, ``*.localhost``, ``127.*``, ``[::1]``), the local
    address itself and this machine's ``hostname`` (so a DNS-rebinding page, whose Host is its
    own name, is refused); any host otherwise.
    """
    if allowed is not None and "*" in allowed:
        return True
    name, _ = _split_host(host)
    if allowed is None:
        if local_address is None or not _is_loopback(local_address):
            return True
        if not name:
            return False
        return (
            name == "localhost"
            or name.endswith(".localhost")
            or _is_loopback(name)
            or name == local_address.lower()
            or name.strip("[]") == local_address.lower()
            or (bool(hostname) and name == hostname)
        )
    if not name:
        return False
    for pattern in allowed:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("."):
            if name == pattern[1:] or name.endswith(pattern):
                return True
        elif name == pattern:
            return True
    return False


def origin_allowed(
    origin: str, host: str, allowed: Sequence[str] | None, scheme: str = "http"
) -> bool:
    """The origin rule. By default (None) the same origin: the origin's scheme is the request's
    (``http`` for ws, ``https`` for wss) and its host and port are the ``Host`` header's (a
    default port written or not). Else any pattern matches (``*`` within a host part)."""
    origin = origin.strip().lower()
    if allowed is None:
        if not host:
            return False
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme != scheme or parts.path or parts.query or parts.fragment:
            return False
        origin_name, origin_port = _split_host(parts.netloc)
        host_name, host_port = _split_host(host)
        default = _DEFAULT_PORTS.get(scheme, "")
        return bool(origin_name) and (origin_name, origin_port or default) == (
            host_name,
            host_port or default,
        )
    return any(p == "*" or _pattern(p).fullmatch(origin) for p in allowed)


def _pattern(pattern: str) -> re.Pattern[str]:
    # fnmatch's "*" would cross "/" and ":"; an origin pattern's "*" stays inside one host part.
    return re.compile(fnmatch.translate(pattern.lower()).replace(".*", r"[^/:]*"))
