"""OTLP/HTTP trace payloads: requests (protobuf or JSON) into SDK spans or store rows, and the spec's responses.

Received spans become ordinary SDK ``ReadableSpan`` objects (:func:`decode`, for re-export) or, for the
receiver's own store, rows made by the store's one span-to-row mapping
(:func:`llmobs.store.exporter.span_row`) straight from the protobuf (:func:`decode_rows`); both read the
same attributes the same way. Attribute values are reduced to what an SDK span can hold (scalars and
homogeneous arrays; a key-value list becomes JSON text, bytes base64, non-finite doubles their name), so
whatever arrives can be stored, listed and served as strict JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llmobs.store import exporter as store_exporter

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: Content types accepted on /v1/traces, by the encoding they mean.
CONTENT_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}

_KINDS = (SpanKind.INTERNAL, SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER,
          SpanKind.CONSUMER)
_STATUS = (StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR)
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")

#: ``(attributes, span name, scope name) -> (span name, attributes)`` applied to every span (normalisation,
#: which may rename a span, e.g. Promptflow's ``openai_chat`` as ``chat <model>``).
SpanAttributes = Callable[[dict[str, Any], str, str], tuple[str, dict[str, Any]]]
#: ``(event name, attributes) -> attributes, or None to drop the event``.
EventAttributes = Callable[[str, dict[str, Any]], dict[str, Any] | None]
ResourceAttributes = Callable[[dict[str, Any]], dict[str, Any]]


#: HTTP status of a refused OTLP request → the gRPC code of the google.rpc.Status body (OTLP/HTTP spec).
GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 500: 13, 503: 14}


class PayloadError(ValueError):
    """The request body is not an OTLP trace export request (HTTP 400)."""


class BodyError(ValueError):
    """A request body that cannot be read: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def inflate(body: bytes, coding: str | None, limit: int) -> bytes:
    """``body`` decoded by its Content-Encoding (identity, gzip, deflate), never past ``limit`` bytes.

    Bounded: a small compression bomb cannot inflate past the limit. Raises :class:`BodyError`
    (415 unknown coding, 400 corrupt or truncated, 413 over the limit).
    """
    coding = (coding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise BodyError(415, f"unsupported Content-Encoding {coding[:40]!r}: use gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise BodyError(400, f"corrupt {coding} body") from None
    if len(out) > limit:
        raise BodyError(413, f"decompressed body over the {limit} byte limit")
    if not inflater.eof:
        raise BodyError(400, f"truncated {coding} body")
    return out


@dataclass
class Decoded:
    """The spans of one request, and the spans rejected as invalid (with the first reason)."""

    spans: list[ReadableSpan] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def parse(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    """The request in ``body`` (``encoding`` is :data:`PROTOBUF` or :data:`JSON`); PayloadError if malformed."""
    request = ExportTraceServiceRequest()
    try:
        if encoding == PROTOBUF:
            request.ParseFromString(body)
        else:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise PayloadError("the JSON body is not an object")
            json_format.ParseDict(_ids_as_base64(document), request, ignore_unknown_fields=True)
    except PayloadError:
        raise
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(f"not an OTLP trace export request: {_brief(exc)}") from None
    return request


def decode(request: ExportTraceServiceRequest, span_attributes: SpanAttributes,
           event_attributes: EventAttributes, resource_attributes: ResourceAttributes) -> Decoded:
    """SDK spans for every valid span of ``request``; a span with invalid ids is rejected, not stored."""
    out = Decoded()
    for resource, resource_spans in _resources(request, resource_attributes, out):
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            for span in scope_spans.spans:
                try:
                    _decode_span(span, resource, scope, span_attributes, event_attributes, out)
                except Exception as exc:  # a span the normalisers cannot read is rejected, not the request
                    out.reject(f"span attributes could not be read ({type(exc).__name__})")
    return out


def _resources(request: ExportTraceServiceRequest, resource_attributes: ResourceAttributes,
               out: Decoded | DecodedRows) -> Iterator[tuple[Resource, Any]]:
    """Each resource of ``request`` with its spans; the spans of one whose attributes cannot be read (e.g.
    RecursionError on an absurdly nested key) are rejected, not the request."""
    for resource_spans in request.resource_spans:
        spans = sum(len(scope_spans.spans) for scope_spans in resource_spans.scope_spans)
        resource = _resource(resource_spans, resource_attributes, out, spans)
        if resource is not None:
            yield resource, resource_spans


def _resource(resource_spans: Any, resource_attributes: ResourceAttributes, out: Decoded | DecodedRows,
              spans: int) -> Resource | None:
    """The normalised resource of ``resource_spans``; None, its ``spans`` rejected, if it cannot be read."""
    try:
        return Resource(resource_attributes(_attributes(resource_spans.resource.attributes)))
    except Exception as exc:
        for _ in range(spans):
            out.reject(f"resource attributes could not be read ({type(exc).__name__})")
        return None


def _id_problem(trace_id: bytes, span_id: bytes, parent_id: bytes) -> str | None:
    """Why a span's ids make it unstorable, or None."""
    if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        return "invalid trace or span id"
    if parent_id and (len(parent_id) != 8 or not any(parent_id)):
        return "invalid parent span id"
    return None


def _decode_span(span: Any, resource: Resource, scope: InstrumentationScope, span_attributes: SpanAttributes,
                 event_attributes: EventAttributes, out: Decoded) -> None:
    trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_span_id
    problem = _id_problem(trace_id, span_id, parent_id)
    if problem is not None:
        out.reject(problem)
        return
    trace_int = int.from_bytes(trace_id, "big")
    flags = TraceFlags(span.flags & 0xFF)
    parent = SpanContext(trace_int, int.from_bytes(parent_id, "big"), True, flags) if parent_id else None
    start = span.start_time_unix_nano
    events = []
    for event in span.events:
        attrs = event_attributes(event.name, _attributes(event.attributes))
        if attrs is not None:
            events.append(Event(event.name, attrs, event.time_unix_nano or start))
    code = _STATUS[span.status.code] if 0 <= span.status.code < len(_STATUS) else StatusCode.UNSET
    name, attributes = span_attributes(_attributes(span.attributes), span.name, scope.name)
    out.spans.append(ReadableSpan(
        name,
        context=SpanContext(trace_int, int.from_bytes(span_id, "big"), False, flags),
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=events,
        kind=_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else SpanKind.INTERNAL,
        status=Status(code, span.status.message or None) if code is StatusCode.ERROR else Status(code),
        start_time=start,
        end_time=max(span.end_time_unix_nano, start),
        instrumentation_scope=scope,
    ))


@dataclass
class DecodedRows:
    """The store rows of one request; spans rejected as invalid (with the first reason) and spans whose
    row could not be made (counted by the store as dropped: the request is not stored in full)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""
    failed: int = 0

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def decode_rows(request: ExportTraceServiceRequest, span_attributes: SpanAttributes,
                event_attributes: EventAttributes, resource_attributes: ResourceAttributes,
                share: tuple[int, int] | None = None) -> DecodedRows:
    """Store rows for every valid span of ``request``: what :func:`decode` and then the store's exporter make
    of it, read straight from the protobuf without SDK spans in between (the receiver's hot path).

    ``share=(start, stop)`` keeps to those spans, counted across the request in its order (as
    :func:`span_count` counts them), so several processes can each decode and store a part of one request."""
    out = DecodedRows()
    span_row = store_exporter.span_row
    for resource_spans, groups in _share(request, share):
        resource = _resource(resource_spans, resource_attributes, out, sum(len(spans) for _, spans in groups))
        if resource is None:
            continue
        columns = None
        for scope, spans in groups:
            for span in spans:
                try:
                    parts = _span_parts(span, scope, span_attributes, event_attributes, out)
                except Exception as exc:
                    out.reject(f"span attributes could not be read ({type(exc).__name__})")
                    continue
                if parts is None:
                    continue
                try:
                    if columns is None:
                        columns = store_exporter.resource_columns(resource.attributes)
                    out.rows.append(span_row(*parts[:5], columns, *parts[5:]))
                except Exception as exc:  # as the exporter counts a span it cannot convert
                    store_exporter.convert_failed(exc)
                    out.failed += 1
    return out


def span_count(request: ExportTraceServiceRequest) -> int:
    """How many spans ``request`` holds."""
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def _share(request: ExportTraceServiceRequest,
           share: tuple[int, int] | None) -> Iterator[tuple[Any, list[tuple[str, Any]]]]:
    """Each resource of ``request`` with its (scope name, spans) groups, cut to the spans ``share`` says (all when
    None); resources and scopes with no span there are left out."""
    if share is None:
        for resource_spans in request.resource_spans:
            yield resource_spans, [(s.scope.name, s.spans) for s in resource_spans.scope_spans]
        return
    start, stop = share
    seen = 0
    for resource_spans in request.resource_spans:
        if seen >= stop:
            return
        groups = []
        for scope_spans in resource_spans.scope_spans:
            size = len(scope_spans.spans)
            low, high = max(start - seen, 0), min(stop - seen, size)
            if low < high:
                groups.append((scope_spans.scope.name, scope_spans.spans[low:high]))
            seen += size
        if groups:
            yield resource_spans, groups


def _span_parts(span: Any, scope: str, span_attributes: SpanAttributes, event_attributes: EventAttributes,
                out: DecodedRows) -> tuple[Any, ...] | None:
    """:func:`~llmobs.store.exporter.span_row`'s arguments but the resource; None if the span is rejected."""
    trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_span_id
    problem = _id_problem(trace_id, span_id, parent_id)
    if problem is not None:
        out.reject(problem)
        return None
    start = span.start_time_unix_nano
    events = None
    if len(span.events):
        events = []
        for event in span.events:
            attrs = event_attributes(event.name, _attributes(event.attributes))
            if attrs is not None:
                events.append((event.name, event.time_unix_nano or start, attrs))
    code = span.status.code
    status = _STATUS_NAMES[code] if 0 <= code < len(_STATUS_NAMES) else "UNSET"
    name, attributes = span_attributes(_attributes(span.attributes), span.name, scope)
    return (trace_id.hex(), span_id.hex(), parent_id.hex() if parent_id else None, name, attributes,
            start, max(span.end_time_unix_nano, start), status, events, scope)


_STATUS_NAMES = tuple(code.name for code in _STATUS)


_SCALARS = frozenset({"string_value", "int_value", "bool_value"})


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        # The hot path of ingest: a non-default value of a oneof field is the one set, which reads far
        # faster than asking WhichOneof. Strings are nearly every attribute, then integers.
        text = value.string_value
        if text:
            out[pair.key] = text
            continue
        number = value.int_value
        if number:
            out[pair.key] = number
            continue
        kind = value.WhichOneof("value")
        if kind in _SCALARS:
            out[pair.key] = getattr(value, kind)
        elif kind is not None:
            converted = _value(value)
            if converted is not None:
                out[pair.key] = converted
    return out


def _value(value: AnyValue) -> Any:
    """An attribute value an SDK span can hold (None: unset, skipped)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value" or kind == "bool_value":
        return getattr(value, kind)
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "array_value":
        converted = [(v, _value(v)) for v in value.array_value.values]
        items = [v for _, v in converted if v is not None]
        types = {type(v) for v in items}
        if len(types) <= 1 and not types & {list}:
            return items
        # Mixed or nested: each element as JSON text of its plain value. Not of its converted value: that
        # would encode a nested array once per level, doubling its escapes each time (2**depth bytes).
        return [v if isinstance(v, str) else json.dumps(_plain(raw)) for raw, v in converted if v is not None]
    if kind == "kvlist_value":
        return json.dumps(_plain_kvlist(value.kvlist_value.values), ensure_ascii=False)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _plain(value: AnyValue) -> Any:
    """Nested values as plain JSON data (inside a key-value list)."""
    if value.WhichOneof("value") == "kvlist_value":
        return _plain_kvlist(value.kvlist_value.values)
    if value.WhichOneof("value") == "array_value":
        return [_plain(v) for v in value.array_value.values]
    return _value(value)


def _plain_kvlist(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: _plain(pair.value) for pair in pairs}


def _ids_as_base64(document: Mapping[str, Any]) -> Any:
    """OTLP/JSON writes ids as hex where protobuf's JSON mapping expects base64: convert them
    (an invalid id becomes empty, so its span is rejected rather than the whole request)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _hex_to_base64(v) if k in _ID_FIELDS else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(document)


def _hex_to_base64(value: Any) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except (TypeError, ValueError, binascii.Error):
        return ""


def response(encoding: str, rejected: int = 0, message: str = "") -> bytes:
    """The success body: an ExportTraceServiceResponse, with partial success when spans were rejected."""
    reply = ExportTraceServiceResponse()
    if rejected:
        reply.partial_success.rejected_spans = rejected
        reply.partial_success.error_message = message
    if encoding == PROTOBUF:
        return reply.SerializeToString()
    return json_format.MessageToJson(reply, indent=None).encode()


def error(encoding: str, code: int, message: str) -> bytes:
    """An error body: a google.rpc.Status in the request's encoding (``code`` is the gRPC code)."""
    status = status_pb2.Status(code=code, message=message)
    if encoding == PROTOBUF:
        return status.SerializeToString()
    return json_format.MessageToJson(status, indent=None).encode()


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
