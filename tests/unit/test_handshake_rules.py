"""The upgrade checks and the origin rule, on plain WSGI environ dicts."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from wsroom.errors import HandshakeRejected, WsroomError
from wsroom.transport.handshake import check_upgrade, origin_allowed

KEY = base64.b64encode(b"0123456789abcdef").decode()


def upgrade_environ(**overrides: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "HTTP_HOST": "chat.example.com",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": KEY,
    }
    for key, value in overrides.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


def rejection(environ: dict[str, Any], allowed: list[str] | None = None) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        check_upgrade(environ, allowed)
    assert isinstance(info.value, WsroomError)
    assert info.value.reason and "\n" not in info.value.reason
    return info.value


# -- check_upgrade ---------------------------------------------------------------------------


def test_a_good_upgrade_passes() -> None:
    check_upgrade(upgrade_environ(), None)
    check_upgrade(upgrade_environ(HTTP_ORIGIN="https://chat.example.com"), None)
    check_upgrade(upgrade_environ(HTTP_ORIGIN=None), ["https://other.example"])


def test_header_tokens_are_case_insensitive_and_listed() -> None:
    check_upgrade(
        upgrade_environ(HTTP_UPGRADE="WebSocket", HTTP_CONNECTION="keep-alive, UPGRADE"), None
    )
    check_upgrade(upgrade_environ(HTTP_UPGRADE="h2c, websocket"), None)


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "OPTIONS", "get"])
def test_non_get_is_400(method: str) -> None:
    assert rejection(upgrade_environ(REQUEST_METHOD=method)).status == 400


@pytest.mark.parametrize("value", [None, "", "h2c", "web socket"])
def test_missing_upgrade_is_400(value: str | None) -> None:
    assert rejection(upgrade_environ(HTTP_UPGRADE=value)).status == 400


@pytest.mark.parametrize("value", [None, "", "keep-alive", "close"])
def test_missing_connection_upgrade_is_400(value: str | None) -> None:
    assert rejection(upgrade_environ(HTTP_CONNECTION=value)).status == 400


@pytest.mark.parametrize("version", [None, "", "8", "12", "14", "13, 8"])
def test_bad_version_is_426_with_version_header(version: str | None) -> None:
    err = rejection(upgrade_environ(HTTP_SEC_WEBSOCKET_VERSION=version))
    assert err.status == 426
    assert ("Sec-WebSocket-Version", "13") in err.headers


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"0123456789abcdefg").decode(),  # 17 bytes
        KEY[:-2],  # bad padding
    ],
)
def test_bad_key_is_400(key: str | None) -> None:
    err = rejection(upgrade_environ(HTTP_SEC_WEBSOCKET_KEY=key))
    assert err.status == 400
    assert err.headers == ()


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://chat.example.com.evil.example", "null"]
)
def test_bad_origin_is_403(origin: str) -> None:
    assert rejection(upgrade_environ(HTTP_ORIGIN=origin)).status == 403


def test_origin_against_patterns() -> None:
    allowed = ["https://*.example.com"]
    check_upgrade(upgrade_environ(HTTP_ORIGIN="https://app.example.com"), allowed)
    assert rejection(upgrade_environ(HTTP_ORIGIN="https://example.org"), allowed).status == 403


def test_method_is_checked_before_version_and_origin() -> None:
    err = rejection(
        upgrade_environ(
            REQUEST_METHOD="POST", HTTP_SEC_WEBSOCKET_VERSION="8", HTTP_ORIGIN="https://evil"
        )
    )
    assert err.status == 400


# -- origin_allowed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("https://chat.example.com", "chat.example.com", True),
        ("http://chat.example.com", "chat.example.com", True),
        ("https://CHAT.Example.com", "chat.example.COM", True),
        ("http://localhost:8080", "localhost:8080", True),
        ("http://localhost:8080", "localhost:9090", False),
        ("http://localhost", "localhost:8080", False),
        ("https://evil.example", "chat.example.com", False),
        ("https://sub.chat.example.com", "chat.example.com", False),
        ("null", "chat.example.com", False),
        ("", "chat.example.com", False),
        ("https://chat.example.com", "", False),
    ],
)
def test_default_rule_is_same_host(origin: str, host: str, ok: bool) -> None:
    assert origin_allowed(origin, host, None) is ok


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("https://app.example.com", True),
        ("https://a.b.example.com", True),
        ("https://APP.EXAMPLE.COM", True),
        ("https://.example.com", True),
        ("https://example.com", False),
        ("http://app.example.com", False),
        ("https://app.example.com:8443", False),  # '*' does not reach the port
        ("https://evil.com/.example.com", False),  # '*' does not cross '/'
        ("https://evil.com:1.example.com", False),  # '*' does not cross ':'
        ("https://app.example.com.evil.org", False),
        ("https://app.example.community", False),
    ],
)
def test_wildcard_pattern_stays_inside_the_host(origin: str, ok: bool) -> None:
    assert origin_allowed(origin, "ignored", ["https://*.example.com"]) is ok


def test_wildcard_for_the_port() -> None:
    allowed = ["http://localhost:*"]
    assert origin_allowed("http://localhost:3000", "x", allowed)
    assert origin_allowed("http://localhost:", "x", allowed)
    assert not origin_allowed("http://localhost:3000/path", "x", allowed)
    assert not origin_allowed("http://localhost:3000:4000", "x", allowed)


def test_several_wildcards() -> None:
    allowed = ["https://*.example.*"]
    assert origin_allowed("https://a.example.com", "x", allowed)
    assert origin_allowed("https://a.example.org", "x", allowed)
    assert not origin_allowed("https://a.example.org:443", "x", allowed)
    assert not origin_allowed("https://a.example.org/x", "x", allowed)


def test_exact_patterns_and_lists() -> None:
    allowed = ["https://one.example", "https://two.example"]
    assert origin_allowed("https://one.example", "x", allowed)
    assert origin_allowed("https://two.example", "x", allowed)
    assert not origin_allowed("https://three.example", "x", allowed)
    # a pattern's dot is literal
    assert not origin_allowed("https://oneXexample", "x", ["https://one.example"])


def test_star_allows_everything() -> None:
    for origin in ["https://anything.example", "null", "", "http://localhost:1"]:
        assert origin_allowed(origin, "chat.example.com", ["*"])
    assert origin_allowed("https://x", "y", ["https://nope", "*"])


def test_empty_list_allows_nothing() -> None:
    assert not origin_allowed("https://chat.example.com", "chat.example.com", [])


def test_check_upgrade_with_star_allows_any_origin() -> None:
    check_upgrade(upgrade_environ(HTTP_ORIGIN="https://evil.example"), ["*"])
