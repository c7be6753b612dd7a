"""OTLP trace export requests written directly as protobuf wire bytes.

The OTLP exporters' ``encode_spans`` builds a protobuf object per span, attribute and value before
serialising them: about 50 µs for a bare SDK span here and 80-110 µs for an LLM span with content, more
than llmobs spends recording it. This module writes the same ``ExportTraceServiceRequest`` straight to
bytes, 3-4x faster; a test parses both encodings and compares them message for message.

Each span is encoded on its own (:func:`encode_span`) and a request is the spans' bytes framed by their
resource and scope (:func:`request`), so a batch can be split by its exact size without encoding twice.
Values are encoded as ``encode_spans`` does, including what it leaves out: an attribute whose value
protobuf cannot hold (an integer past 64 bits, a lone surrogate, an unknown type) is skipped and
counted, the rest of the span is kept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from llmobs import selfstats

_double = struct.Struct("<d").pack
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
#: One-byte varints, for lengths and small numbers.
_SMALL = tuple(bytes((i,)) for i in range(128))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Span.kind: the SDK's ``SpanKind`` value + 1 (0 is SPAN_KIND_UNSPECIFIED in OTLP).
_KINDS = tuple(b"\x30" + _SMALL[value + 1] for value in range(5))
#: Span.flags: the parent's "is remote" bit is known (0x100), and set (0x200) for a remote parent.
_FLAGS_LOCAL = b"\x85\x01" + _fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _fixed32(0x300)
#: Link.flags: the same bits for the linked context.
_LINK_FLAGS_LOCAL = b"\x35" + _fixed32(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _fixed32(0x300)
_EMPTY_STATUS = b"\x7a\x00"
#: Encoded ``KeyValue.key`` fields by attribute name; attribute names are few, so this stays small.
_KEYS: dict[str, bytes] = {}
_KEYS_MAX = 4096
#: Encoded resources and scopes, by identity (both are immutable): (object, encoding) — the object kept so
#: its id is not reused while the entry lives.
_FRAMES: dict[int, tuple[Any, bytes]] = {}
_FRAMES_MAX = 256
#: Drop reason counted for each attribute value left out.
SKIPPED_VALUE = "export.otlp_value_skipped"


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    if n < 16384:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _key(name: str) -> bytes:
    encoded = _KEYS.get(name)
    if encoded is None:
        encoded = _field(b"\x0a", name.encode()) if name else b""  # proto3 leaves out an empty string
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[name] = encoded
    return encoded


def _value(value: Any) -> bytes:
    """An ``AnyValue`` message's body, as ``encode_spans`` would set it; raises what it cannot hold."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(f"integer {value} does not fit in 64 bits")
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _value(item)) for item in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\x0a", _key(str(k)) + _field(b"\x12", _value(v))) for k, v in value.items()]
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _attributes(tag: bytes, attributes: Any) -> bytes:
    """Repeated ``KeyValue`` fields under ``tag``; the common types inline, the rest by :func:`_value`."""
    out = []
    append = out.append
    for name, value in attributes.items():
        kind = type(value)
        try:
            key = _KEYS.get(name) or _key(name)
            if kind is str:
                text = value.encode()
                n = len(text)
                any_value = (b"\x0a" + _SMALL[n] if n < 128 else b"\x0a" + _varint(n)) + text
            elif kind is int and 0 <= value < 128:
                any_value = b"\x18" + _SMALL[value]
            else:
                any_value = _value(value)
        except Exception as exc:
            selfstats.dropped(SKIPPED_VALUE, 1, f"attribute {name!r}: {exc}")
            continue
        n = len(any_value)
        pair = key + b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + any_value
        n = len(pair)
        append(tag + (_SMALL[n] if n < 128 else _varint(n)) + pair)
    return b"".join(out)


def encode_span(span: ReadableSpan) -> bytes:
    """The span as a ``ScopeSpans.spans`` field (tag and length included)."""
    context = span.context
    parent = span.parent
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    append = parts.append
    state = context.trace_state
    if state:
        append(_field(b"\x1a", ",".join([f"{k}={v}" for k, v in state.items()]).encode()))
    if parent is not None:
        append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        append(_field(b"\x2a", span.name.encode()))
    append(_KINDS[span.kind.value])
    if span.start_time:
        append(b"\x39" + _fixed64(span.start_time))
    if span.end_time:
        append(b"\x41" + _fixed64(span.end_time))
    attributes = span.attributes
    if attributes:
        append(_attributes(b"\x4a", attributes))
    if span.dropped_attributes:
        append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body = [b"\x09" + _fixed64(event.timestamp)] if event.timestamp else []
        if event.name:
            body.append(_field(b"\x12", event.name.encode()))
        if event.attributes:
            body.append(_attributes(b"\x1a", event.attributes))
        if event.dropped_attributes:
            body.append(b"\x20" + _varint(event.dropped_attributes))
        append(_field(b"\x5a", b"".join(body)))
    if span.dropped_events:
        append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        body = [b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big"),
                b"\x12\x08" + link.context.span_id.to_bytes(8, "big")]
        if link.attributes:
            body.append(_attributes(b"\x22", link.attributes))
        if link.dropped_attributes:
            body.append(b"\x28" + _varint(link.dropped_attributes))
        body.append(_LINK_FLAGS_REMOTE if link.context.is_remote else _LINK_FLAGS_LOCAL)
        append(_field(b"\x6a", b"".join(body)))
    if span.dropped_links:
        append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        code = status.status_code.value
        if code or status.description:
            body = _field(b"\x12", status.description.encode()) if status.description else b""
            append(_field(b"\x7a", body + b"\x18" + _SMALL[code] if code else body))
        else:
            append(_EMPTY_STATUS)
    append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return _field(b"\x12", b"".join(parts))


def _frame(obj: Any, encode: Callable[[Any], bytes]) -> bytes:
    cached = _FRAMES.get(id(obj))
    if cached is not None and cached[0] is obj:
        return cached[1]
    encoded = encode(obj)
    if len(_FRAMES) >= _FRAMES_MAX:
        _FRAMES.clear()
    _FRAMES[id(obj)] = (obj, encoded)
    return encoded


def _resource(resource: Any) -> bytes:
    """``ResourceSpans.resource``; its ``schema_url`` goes after the scopes (see :func:`request`)."""
    return _field(b"\x0a", _attributes(b"\x0a", resource.attributes)) if resource.attributes else b"\x0a\x00"


def _scope(scope: Any) -> bytes:
    """``ScopeSpans.scope``; its ``schema_url`` goes after the spans (see :func:`request`)."""
    if scope is None:
        return b"\x0a\x00"
    body = _field(b"\x0a", scope.name.encode()) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", scope.version.encode())
    if scope.attributes:
        body += _attributes(b"\x1a", scope.attributes)
    return _field(b"\x0a", body)


def _schema_url(resource_or_scope: Any) -> bytes:
    """``ResourceSpans.schema_url`` or ``ScopeSpans.schema_url`` (both field 3); nothing without one."""
    schema = getattr(resource_or_scope, "schema_url", None)
    return _field(b"\x1a", schema.encode()) if schema else b""


def framing_size(spans: Sequence[ReadableSpan]) -> int:
    """An upper bound of what :func:`request` adds to the spans' own bytes: resources, scopes, their framing."""
    resources: set[int] = set()
    groups: set[tuple[int, int]] = set()
    size = 0
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        if id(resource) not in resources:
            resources.add(id(resource))
            size += 6 + len(_frame(resource, _resource)) + len(_schema_url(resource))
        if (id(resource), id(scope)) not in groups:
            groups.add((id(resource), id(scope)))
            size += 6 + len(_frame(scope, _scope)) + len(_schema_url(scope))
    return size


def request(spans: Sequence[ReadableSpan], encoded: Sequence[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans``, whose :func:`encode_span` bytes are ``encoded``:
    grouped by resource, then scope, in order of first appearance, as ``encode_spans`` groups them."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span, data in zip(spans, encoded, strict=True):
        resource, scope = span.resource, span.instrumentation_scope
        by_scope = groups.get(id(resource))
        if by_scope is None:
            by_scope = groups[id(resource)] = (resource, {})
        entry = by_scope[1].get(id(scope))
        if entry is None:
            entry = by_scope[1][id(scope)] = (scope, [])
        entry[1].append(data)
    out = []
    for resource, scopes in groups.values():
        body = [_frame(resource, _resource)]
        for scope, datas in scopes.values():
            body.append(_field(b"\x12", _frame(scope, _scope) + b"".join(datas) + _schema_url(scope)))
        body.append(_schema_url(resource))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)
