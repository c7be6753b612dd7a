"""llmobs.otlp_wire writes, byte for byte, the request the OTLP exporters' ``encode_spans`` serialises.

Compared on spans made by the SDK (every field a span can carry: events, links, status, trace state,
remote parents, dropped counts, several resources and scopes) and on raw ``ReadableSpan`` objects with
arbitrary attribute values, including those protobuf cannot hold, which both leave out.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from llmobs import otlp_wire, selfstats


def _ours(spans) -> bytes:
    return otlp_wire.request(spans, [otlp_wire.encode_span(span) for span in spans])


def _theirs(spans) -> bytes:
    return encode_spans(spans).SerializeToString()


def _provider(resource: Resource, memory: InMemorySpanExporter, **kwargs) -> TracerProvider:
    provider = TracerProvider(resource=resource, **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def _sdk_spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    first = _provider(Resource.create({"service.name": "naïve-服务", "k": ("a", "b")}, "https://s/1.0"), memory)
    second = _provider(Resource.create({"service.name": "other"}), memory,
                       span_limits=SpanLimits(max_attributes=3, max_events=1, max_links=1))
    scoped = first.get_tracer("scope", "1.0", schema_url="https://opentelemetry.io/schemas/1.30.0",
                              attributes={"scope.attr": 1})
    plain = first.get_tracer("plain")
    limited = second.get_tracer("limited")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1"), ("other", "x")]))
    texts = ["", "ascii", "é" * 300, "中文" * 500, "\U0001f600" * 200, "x" * 70_000]
    for i, text in enumerate(texts):
        tracer = (scoped, plain, limited)[i % 3]
        parent = set_span_in_context(NonRecordingSpan(remote)) if i == 2 else None
        with tracer.start_as_current_span(f"span {text[:20]}", context=parent, kind=SpanKind(i % 5),
                                          links=[Link(remote, {"n": i}), Link(remote)]) as span:
            span.set_attributes({"text": text, "n": i, "neg": -i - 1, "big": 2**62, "f": 1.5, "zero": 0.0,
                                 "flag": True, "off": False, "list": [text[:50], "b"], "ints": [1, -2, 3_000_000_000],
                                 "floats": [0.5, -1e300], "bools": [True, False], "empty": []})
            span.add_event("evt", {"payload": text[:1000], "k": 1})
            span.add_event("second", timestamp=0)
            if i % 2:
                span.set_status(Status(StatusCode.ERROR, text[:100] or None))
            elif i:
                span.set_status(Status(StatusCode.OK))
            links = [Link(span.get_span_context(), {"why": text[:10]}), Link(remote)]
            with plain.start_as_current_span("child", links=links):
                pass
    return list(memory.get_finished_spans())


def test_sdk_spans_encode_as_the_sdk_encodes_them():
    spans = _sdk_spans()
    assert any(span.dropped_attributes and span.dropped_events and span.dropped_links for span in spans)
    assert len({id(span.resource) for span in spans}) == 2
    assert _ours(spans) == _theirs(spans)
    for span in spans:
        assert _ours([span]) == _theirs([span]), span.name


def test_framing_size_bounds_what_a_request_adds_to_its_spans():
    spans = _sdk_spans()
    for count in range(1, len(spans) + 1):
        part = spans[:count]
        encoded = [otlp_wire.encode_span(span) for span in part]
        overhead = len(otlp_wire.request(part, encoded)) - sum(map(len, encoded))
        assert overhead <= otlp_wire.framing_size(part)


def _raw_span(attributes: dict) -> ReadableSpan:
    return ReadableSpan(
        name="raw", context=SpanContext(1, 2, is_remote=False), parent=None, resource=Resource.create({}),
        attributes=attributes, events=(), links=(), kind=SpanKind.CLIENT, status=Status(StatusCode.UNSET),
        start_time=1, end_time=2,
    )


_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
            | st.text() | st.binary(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _values, max_size=6))
def test_any_attribute_values_encode_as_the_sdk_encodes_them(attributes):
    span = _raw_span(attributes)
    assert _ours([span]) == _theirs([span])


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, "lone \ud800 surrogate", object(), [1, object()],
                                   {"k": 2**80}])
def test_a_value_protobuf_cannot_hold_is_left_out_and_counted(value):
    selfstats.reset()
    span = _raw_span({"bad": value, "good": "kept"})
    decoded = ExportTraceServiceRequest.FromString(_ours([span]))
    attributes = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [a.key for a in attributes] == ["good"]
    assert selfstats.snapshot()[otlp_wire.SKIPPED_VALUE] == 1
    assert _ours([span]) == _theirs([span])


def test_edge_numbers_keep_their_value():
    values = {"max": 2**63 - 1, "min": -(2**63), "nan": math.nan, "inf": -math.inf, "tiny": 5e-324}
    decoded = ExportTraceServiceRequest.FromString(_ours([_raw_span(values)]))
    got = {a.key: a.value for a in decoded.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert got["max"].int_value == 2**63 - 1 and got["min"].int_value == -(2**63)
    assert math.isnan(got["nan"].double_value) and got["inf"].double_value == -math.inf
    assert got["tiny"].double_value == 5e-324
