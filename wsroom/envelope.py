"""The wire unit and its codec: strict decoding with a path in every error, encoding once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import cattrs

from .errors import BadEnvelope

__all__ = [
    "RESERVED_PREFIX",
    "Envelope",
    "decode",
    "decode_object",
    "encode",
    "encode_reserved",
    "envelope_of",
    "error_frame",
]

RESERVED_PREFIX = "wsroom."
"""Type names starting with this belong to the hub, in both directions."""


@attrs.frozen
class Envelope:
    """One message on the wire: ``{"type": ..., "payload": ...}``."""

    type: str = attrs.field(validator=attrs.validators.instance_of(str))
    payload: Any = None


def _strict_str(value: object, _type: type) -> str:
    # cattrs converts by default (5 becomes "5"); a wire envelope must already be a string.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict_str)
    return converter


_converter = _make_converter()


def _make_dumps() -> Callable[[Any], str]:
    """Compact, strict JSON (no NaN or Infinity, UTF-8 as it is), its C encoder made once.

    ``JSONEncoder.encode`` makes a C encoder, a float formatter and a dict for the circular
    check on every call: a third of the cost of an envelope. Made once without that check, a
    payload that contains itself ends in ``RecursionError`` instead, which ``encode`` refuses
    as it refuses any payload that is not JSON.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the _json accelerator
        return encoder.encode
    chunks = make(
        None,  # no markers: no circular check
        encoder.default,
        json.encoder.encode_basestring,
        None,  # no indent
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def dumps(obj: Any) -> str:
        return "".join(chunks(obj, 0))

    return dumps


_dumps = _make_dumps()


def decode(text: str | bytes) -> Envelope:
    """Parse one inbound frame; raise ``BadEnvelope`` saying where and why it is wrong."""
    if not isinstance(text, str):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise BadEnvelope(f"invalid JSON: {exc} @ $") from None
    return envelope_of(decode_object(text))


def decode_object(text: str) -> dict[str, Any]:
    """Parse one inbound frame as a JSON object, its keys unchecked (``BadEnvelope`` if it is no
    object): for the hub's own frames on a resume connection, read before ``envelope_of``."""
    try:
        obj = _loads(text)
    except ValueError as exc:
        raise BadEnvelope(f"invalid JSON: {exc} @ $") from None
    except RecursionError:
        raise BadEnvelope("invalid JSON: nested too deeply @ $") from None
    if not isinstance(obj, dict):
        raise BadEnvelope(f"expected a JSON object, got {_json_kind(obj)} @ $")
    return obj


def envelope_of(obj: dict[str, Any]) -> Envelope:
    """The user's envelope in a parsed frame, checked as ``decode`` checks it."""
    kind = obj.get("type")
    if type(kind) is str and kind and not kind.startswith(RESERVED_PREFIX):
        # The usual frame, built without cattrs (once per inbound message): what the converter
        # would build. Anything else goes through it, for its error's wording.
        return Envelope(kind, obj.get("payload"))
    try:
        envelope = _converter.structure(obj, Envelope)
    except cattrs.ClassValidationError as exc:
        raise BadEnvelope("; ".join(cattrs.transform_error(exc, path="$"))) from None
    if not envelope.type:
        raise BadEnvelope("type must not be empty @ $.type")
    if envelope.type.startswith(RESERVED_PREFIX):
        raise BadEnvelope(f"type {envelope.type!r} is reserved for the hub @ $.type")
    return envelope


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Made once: json.loads with any keyword builds a new decoder on every call.
_decoder = json.JSONDecoder(parse_constant=_refuse_constant)
_scan = _decoder.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__


def _loads(text: str) -> Any:
    """``_decoder.decode``, without its two whitespace searches for a frame that is one JSON
    value and nothing around it (what clients send); any other text, and any error, goes the
    decoder's whole way, for its error's wording."""
    try:
        obj, end = _scan(text, 0)
    except (StopIteration, ValueError):
        return _decoder.decode(text)
    if end != len(text):
        return _decoder.decode(text)
    return obj


def encode(envelope: Envelope) -> str:
    """Encode a user's envelope once, for any number of receivers."""
    if not isinstance(envelope, Envelope):
        raise BadEnvelope(f"expected an Envelope, got {type(envelope).__name__}")
    if not envelope.type:
        raise BadEnvelope("type must not be empty @ $.type")
    if envelope.type.startswith(RESERVED_PREFIX):
        raise BadEnvelope(f"type {envelope.type!r} is reserved for the hub @ $.type")
    return encode_reserved(envelope)


def encode_reserved(envelope: Envelope) -> str:
    """Encode without the reserved-name check: for the hub's own ``wsroom.*`` envelopes."""
    try:
        # Built here, the payload by identity: only json walks it (cattrs walking it cost 40x).
        return _dumps({"type": envelope.type, "payload": envelope.payload})
    except (TypeError, ValueError) as exc:
        raise BadEnvelope(f"payload is not JSON: {exc} @ $.payload") from None
    except RecursionError:
        raise BadEnvelope(
            "payload is not JSON: it contains itself, or is nested too deeply @ $.payload"
        ) from None


def error_frame(code: str, detail: str) -> str:
    """The ``wsroom.error`` frame the hub answers a bad inbound frame with."""
    return encode_reserved(Envelope("wsroom.error", {"code": code, "detail": detail}))


def _json_kind(obj: object) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"
