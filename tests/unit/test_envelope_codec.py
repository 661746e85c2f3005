"""The envelope codec, the public errors' texts and the validated value types."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import wsroom
from wsroom.envelope import (
    _converter,
    decode,
    decode_object,
    encode,
    encode_reserved,
    envelope_of,
    error_frame,
)
from wsroom.errors import (
    BadEnvelope,
    CloseConnection,
    Disconnected,
    GraceExpired,
    MissingParticipantID,
    ParticipantNotFound,
    ParticipantOffline,
    ResolverRejected,
    RoomNotFound,
    WsroomError,
)
from wsroom.types import ReconnectPolicy

# -- decode ----------------------------------------------------------------------------------


def test_decode_minimal_and_full() -> None:
    assert decode('{"type":"chat","payload":{"text":"hi"}}') == wsroom.Envelope(
        "chat", {"text": "hi"}
    )
    assert decode(b'{"type":"chat","payload":[1,2]}') == wsroom.Envelope("chat", [1, 2])


def test_decode_payload_absent_is_none() -> None:
    env = decode('{"type":"ping"}')
    assert env.type == "ping"
    assert env.payload is None
    assert decode('{"type":"ping","payload":null}').payload is None


def test_decode_ignores_extra_keys() -> None:
    env = decode('{"type":"t","payload":1,"seq":4,"extra":{"x":1}}')
    assert env == wsroom.Envelope("t", 1)


@pytest.mark.parametrize(
    "payload", [0, 5, -1.5, "5", True, False, [], {}, [1, "2", None], {"a": {"b": [5, "5"]}}]
)
def test_decode_payload_is_the_json_value_unchanged(payload: Any) -> None:
    env = decode(json.dumps({"type": "t", "payload": payload}))
    assert env.payload == payload
    assert type(env.payload) is type(payload)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "@ $"),
        ("not json", "@ $"),
        ('{"type": ', "@ $"),
        ("[]", "@ $"),
        ('"chat"', "@ $"),
        ("5", "@ $"),
        ("null", "@ $"),
        ("true", "@ $"),
        ("{}", "@ $.type"),
        ('{"payload": 1}', "@ $.type"),
        ('{"type": 5}', "@ $.type"),
        ('{"type": null}', "@ $.type"),
        ('{"type": ["chat"]}', "@ $.type"),
        ('{"type": {"a": 1}}', "@ $.type"),
        ('{"type": true}', "@ $.type"),
        ('{"type": ""}', "@ $.type"),
        ('{"type": "wsroom.ack"}', "@ $.type"),
        ('{"type": "wsroom."}', "@ $.type"),
    ],
)
def test_decode_errors_say_where(text: str, fragment: str) -> None:
    with pytest.raises(BadEnvelope) as info:
        decode(text)
    message = str(info.value)
    assert message.endswith(fragment), message
    if fragment == "@ $":
        assert not message.endswith("@ $.type")
    assert isinstance(info.value, WsroomError)
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None


def test_decode_is_strict_about_the_type_string() -> None:
    with pytest.raises(BadEnvelope, match=r"\$\.type"):
        decode('{"type": 5}')
    with pytest.raises(BadEnvelope):
        decode('{"type": 5.0}')
    assert decode('{"type": "5"}').type == "5"


def test_decode_names_the_kind_of_non_object() -> None:
    for text, kind in [
        ("[1]", "an array"),
        ('"s"', "a string"),
        ("null", "null"),
        ("false", "a boolean"),
        ("3.5", "a number"),
    ]:
        with pytest.raises(BadEnvelope, match=kind):
            decode(text)


def test_decode_invalid_utf8_bytes() -> None:
    with pytest.raises(BadEnvelope, match=r"@ \$$"):
        decode(b'{"type":"\xff\xfe"}')


def test_decode_unicode_type_and_payload() -> None:
    env = decode('{"type":"\u00e9v\u00e9nement","payload":"\U0001f600"}')
    assert env == wsroom.Envelope("\u00e9v\u00e9nement", "\U0001f600")


def test_wsroom_prefix_is_reserved_only_as_a_prefix() -> None:
    assert decode('{"type":"my.wsroom.x"}').type == "my.wsroom.x"
    assert decode('{"type":"wsroomx"}').type == "wsroomx"


def test_decode_deep_nesting_is_a_bad_envelope() -> None:
    text = '{"type":"t","payload":' + "[" * 30_000 + "]" * 30_000 + "}"
    assert len(text) < 65536
    with pytest.raises(BadEnvelope):
        decode(text)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_decode_rejects_non_json_numbers(literal: str) -> None:
    with pytest.raises(BadEnvelope):
        decode('{"type":"t","payload":' + literal + "}")


# -- encode ----------------------------------------------------------------------------------


def test_encode_is_compact_json_with_both_keys() -> None:
    assert encode(wsroom.Envelope("chat", {"a": 1})) == '{"type":"chat","payload":{"a":1}}'
    assert encode(wsroom.Envelope("ping")) == '{"type":"ping","payload":null}'


def test_encode_keeps_unicode_and_round_trips() -> None:
    env = wsroom.Envelope("t", {"text": "h\u00e9\U0001f600", "n": [1, 2.5, None, True]})
    text = encode(env)
    assert "\u00e9" in text
    assert decode(text) == env


def test_payload_is_kept_by_identity() -> None:
    payload = {"deep": [{"x": 1}]}
    env = wsroom.Envelope("t", payload)
    assert env.payload is payload
    assert json.loads(encode(env))["payload"] == payload


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "t"},
        {"type": "t", "payload": None},
        {"type": "t", "payload": {"a": [1, 2.5, "é", None, True]}, "extra": 1},
        {"payload": 1, "type": "t"},
    ],
)
def test_the_quick_decoding_builds_what_the_converter_builds(obj: dict[str, Any]) -> None:
    assert envelope_of(dict(obj)) == _converter.structure(obj, wsroom.Envelope)


@pytest.mark.parametrize("type_", ["", "wsroom.error", "wsroom.x", "wsroom."])
def test_encode_refuses_empty_and_reserved_types(type_: str) -> None:
    with pytest.raises(BadEnvelope, match=r"@ \$\.type"):
        encode(wsroom.Envelope(type_, None))


def test_encode_refuses_non_envelopes() -> None:
    with pytest.raises(BadEnvelope):
        encode({"type": "t", "payload": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [object(), {1, 2}, b"bytes", float("nan"), float("inf"), {"x": [object()]}, {(1, 2): "k"}],
)
def test_encode_refuses_non_json_payloads(payload: Any) -> None:
    with pytest.raises(BadEnvelope, match=r"@ \$\.payload"):
        encode(wsroom.Envelope("t", payload))


def test_encode_refuses_circular_payload() -> None:
    payload: list[Any] = []
    payload.append(payload)
    with pytest.raises(BadEnvelope):
        encode(wsroom.Envelope("t", payload))


def test_encode_reserved_allows_hub_types() -> None:
    assert json.loads(encode_reserved(wsroom.Envelope("wsroom.resumed", {"ok": True}))) == {
        "type": "wsroom.resumed",
        "payload": {"ok": True},
    }


def test_error_frame_shape() -> None:
    text = error_frame("bad_envelope", "type must not be empty @ $.type")
    assert json.loads(text) == {
        "type": "wsroom.error",
        "payload": {"code": "bad_envelope", "detail": "type must not be empty @ $.type"},
    }
    assert list(json.loads(text)) == ["type", "payload"]


def test_envelope_type_must_be_str() -> None:
    with pytest.raises(TypeError):
        wsroom.Envelope(5)  # type: ignore[arg-type]


def test_envelope_is_frozen() -> None:
    env = wsroom.Envelope("t", 1)
    with pytest.raises(AttributeError):
        env.type = "u"  # type: ignore[misc]


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "text"),
    [
        (RoomNotFound, "wsroom: room not found"),
        (ParticipantNotFound, "wsroom: participant not found"),
        (ParticipantOffline, "wsroom: participant offline"),
        (ResolverRejected, "wsroom: resolver rejected participant"),
        (MissingParticipantID, "wsroom: empty participant id"),
    ],
)
def test_fixed_error_texts(cls: type[WsroomError], text: str) -> None:
    assert str(cls()) == text
    assert issubclass(cls, WsroomError)
    assert getattr(wsroom, cls.__name__) is cls
    with pytest.raises(cls) as info:
        raise cls()
    assert str(info.value) == text


def test_resolver_rejected_keeps_its_text_when_chained() -> None:
    try:
        try:
            raise KeyError("who?")
        except KeyError as exc:
            raise ResolverRejected() from exc
    except ResolverRejected as err:
        assert str(err) == "wsroom: resolver rejected participant"
        assert isinstance(err.__cause__, KeyError)


def test_leave_reasons() -> None:
    d = Disconnected(1006, "gone")
    assert (d.code, d.reason) == (1006, "gone")
    assert d == Disconnected(1006, "gone")
    assert d != Disconnected(1006, "")
    assert Disconnected().code == 1005
    assert isinstance(GraceExpired(), wsroom.LeaveReason)
    for cls in (wsroom.RoomClosed, wsroom.HubStopped, GraceExpired, Disconnected):
        assert issubclass(cls, wsroom.LeaveReason)
        assert issubclass(cls, WsroomError)


@pytest.mark.parametrize("args", [(-1, 0), (0, -1), (-0.001, 5), (1.0, -3)])
def test_reconnect_policy_rejects_negatives(args: tuple[float, int]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(*args)


def test_reconnect_policy_accepts_zero_and_positive() -> None:
    assert ReconnectPolicy(0, 0) == ReconnectPolicy(0.0, 0)
    policy = ReconnectPolicy(30.0, 64)
    assert (policy.grace_period, policy.max_queued_per_conn) == (30.0, 64)


@pytest.mark.parametrize("code", [1005, 1006, 999, 5000, 0, 1004, 1015, 2999, 1016, -1])
def test_close_connection_rejects_unsendable_codes(code: int) -> None:
    with pytest.raises(ValueError):
        CloseConnection(code)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1008, 1011, 3000, 4000, 4001, 4999])
def test_close_connection_accepts_sendable_codes(code: int) -> None:
    exc = CloseConnection(code, "bye")
    assert (exc.code, exc.reason) == (code, "bye")
    assert isinstance(exc, WsroomError)
    assert CloseConnection(code).reason == ""


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"t"}',
        ' {"type":"t"} ',
        '{"type":"t"}\n',
        '{"type":"t"} x',
        "",
        "  ",
        '{"type":',
        "[1]",
    ],
)
def test_the_quick_json_reading_says_what_the_plain_decoder_says(text: str) -> None:
    plain = json.JSONDecoder()
    try:
        expected: Any = plain.decode(text)
    except ValueError as exc:
        with pytest.raises(BadEnvelope, match=re.escape(f"invalid JSON: {exc} @ $")):
            decode_object(text)
        return
    if isinstance(expected, dict):
        assert decode_object(text) == expected
    else:
        with pytest.raises(BadEnvelope, match="expected a JSON object"):
            decode_object(text)


def test_encode_refuses_a_payload_nested_past_the_recursion_limit() -> None:
    payload: Any = []
    for _ in range(100_000):
        payload = [payload]
    with pytest.raises(BadEnvelope, match=r"nested too deeply @ \$\.payload"):
        encode(wsroom.Envelope("t", payload))
