"""The upgrade checks and the origin rule, on plain WSGI environ dicts."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from wsroom.errors import HandshakeRejected, WsroomError
from wsroom.transport.handshake import (
    UpgradeRules,
    check_upgrade,
    host_allowed,
    origin_allowed,
    request_scheme,
)

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
    check_upgrade(upgrade_environ(HTTP_ORIGIN="http://chat.example.com"), None)
    tls = upgrade_environ(HTTP_ORIGIN="https://chat.example.com", **{"wsgi.url_scheme": "https"})
    check_upgrade(tls, None)
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
    ("origin", "host", "scheme", "ok"),
    [
        ("https://chat.example.com", "chat.example.com", "https", True),
        ("http://chat.example.com", "chat.example.com", "http", True),
        ("https://CHAT.Example.com", "chat.example.COM", "https", True),
        ("http://localhost:8080", "localhost:8080", "http", True),
        ("http://localhost:80", "localhost", "http", True),  # a default port, written or not
        ("https://chat.example.com", "chat.example.com:443", "https", True),
        ("http://[::1]:8080", "[::1]:8080", "http", True),
        ("http://localhost:8080", "localhost:9090", "http", False),
        ("http://localhost", "localhost:8080", "http", False),
        ("https://evil.example", "chat.example.com", "https", False),
        ("https://sub.chat.example.com", "chat.example.com", "https", False),
        ("null", "chat.example.com", "http", False),
        ("", "chat.example.com", "http", False),
        ("https://chat.example.com", "", "https", False),
        # the scheme counts: a page served over TLS is another origin than a plain one
        ("https://chat.example.com", "chat.example.com", "http", False),
        ("http://chat.example.com", "chat.example.com", "https", False),
        ("https://localhost:8080", "localhost:8080", "http", False),
        ("chrome-extension://localhost:8080", "localhost:8080", "http", False),
        ("ws://localhost:8080", "localhost:8080", "http", False),
        ("http://localhost:8080/path", "localhost:8080", "http", False),
    ],
)
def test_default_rule_is_same_origin(origin: str, host: str, scheme: str, ok: bool) -> None:
    assert origin_allowed(origin, host, None, scheme) is ok


@pytest.mark.parametrize(
    ("environ", "trusted", "scheme"),
    [
        ({}, False, "http"),
        ({"wsgi.url_scheme": "https"}, False, "https"),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, False, "http"),  # not trusted: ignored
        ({"HTTP_X_FORWARDED_PROTO": "https"}, True, "https"),
        ({"HTTP_X_FORWARDED_PROTO": "wss"}, True, "https"),
        ({"HTTP_X_FORWARDED_PROTO": "HTTPS, http"}, True, "https"),  # the first proxy's
        ({"wsgi.url_scheme": "https"}, True, "https"),  # no header: the server's own
    ],
)
def test_request_scheme(environ: dict[str, str], trusted: bool, scheme: str) -> None:
    assert request_scheme(environ, trusted) == scheme


def test_behind_a_tls_proxy_the_forwarded_scheme_is_compared_only_when_trusted() -> None:
    environ = upgrade_environ(
        HTTP_ORIGIN="https://chat.example.com", HTTP_X_FORWARDED_PROTO="https"
    )
    assert rejection(environ).status == 403
    check_upgrade(environ, UpgradeRules(trust_forwarded_proto=True))


# -- host_allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost:8080", True),
        ("LOCALHOST", True),
        ("app.localhost:8080", True),
        ("127.0.0.1:8080", True),
        ("127.0.0.2", True),
        ("[::1]:8080", True),
        ("devbox:8080", True),  # this machine's own name
        ("evil.test", False),  # DNS rebinding: the attacker's name pointed at 127.0.0.1
        ("evil.test:8080", False),
        ("localhost.evil.test", False),
        ("192.168.1.5:8080", False),
        ("", False),
    ],
)
def test_default_host_rule_on_loopback(host: str, ok: bool) -> None:
    assert host_allowed(host, None, "127.0.0.1", "devbox") is ok


@pytest.mark.parametrize("local", [None, "192.168.1.5", "10.0.0.1", "::"])
def test_default_host_rule_elsewhere_allows_any_host(local: str | None) -> None:
    assert host_allowed("chat.example.com", None, local)
    assert host_allowed("evil.test", None, local)


def test_default_host_rule_on_ipv6_loopback_and_a_mapped_address() -> None:
    assert not host_allowed("evil.test", None, "::1")
    assert not host_allowed("evil.test", None, "::ffff:127.0.0.1")
    assert host_allowed("[::1]:9000", None, "::1")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("chat.example.com", True),
        ("chat.example.com:8443", True),  # the port is not part of the rule
        ("CHAT.EXAMPLE.COM.", True),
        ("example.org", True),
        ("a.b.example.org", True),
        ("example.com", False),
        ("evil.chat.example.com", False),
        ("notexample.org", False),
        ("", False),
    ],
)
def test_allowed_hosts_patterns(host: str, ok: bool) -> None:
    allowed = ["chat.example.com", ".example.org"]
    # a list replaces the default, on loopback too
    assert host_allowed(host, allowed, "127.0.0.1") is ok
    assert host_allowed(host, allowed, "192.168.1.5") is ok


def test_allowed_hosts_star_allows_every_host() -> None:
    assert host_allowed("evil.test", ["*"], "127.0.0.1")
    assert host_allowed("", ["*"], "127.0.0.1")


def test_a_host_not_allowed_is_400_before_the_origin_is_checked() -> None:
    rebinding = upgrade_environ(HTTP_HOST="evil.test", HTTP_ORIGIN="http://evil.test")
    check_upgrade(rebinding, None)  # its local address unknown: no host rule applies
    with pytest.raises(HandshakeRejected) as info:
        check_upgrade(rebinding, None, "127.0.0.1")
    assert info.value.status == 400
    assert info.value.reason == "host evil.test is not allowed (see allowed_hosts)"
    check_upgrade(rebinding, UpgradeRules(allowed_hosts=["evil.test"]), "127.0.0.1")


def test_rules_take_lists_not_strings() -> None:
    with pytest.raises(TypeError):
        UpgradeRules(allowed_hosts="example.com")
    with pytest.raises(TypeError):
        UpgradeRules(allowed_origins="https://example.com")


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
