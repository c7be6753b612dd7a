"""The trace context written into requests is exactly what the configured OpenTelemetry propagators write."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs import get_recorder
from llmobs import semconv as sc
from llmobs_openai import propagation

USER = [{"role": "user", "content": "Hello?"}]
PARENTS = {
    "ambient": None,
    "sampled, with trace state": {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=abc,other=x1",
    },
    "not sampled": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
    "not sampled, with trace state": {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "tracestate": "congo=t61rcWkgMzE",
    },
}


def _expected(handle) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=handle.context)
    return carrier


@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
@pytest.mark.parametrize("with_baggage", [False, True], ids=["", "baggage"])
def test_the_headers_are_what_the_propagators_would_inject(parent, with_baggage):
    assert propagation._w3c_only(propagate.get_global_textmap()), "the default propagators: written directly"
    token = context.attach(baggage.set_baggage("tenant", "acme")) if with_baggage else None
    try:
        handle = get_recorder().start(sc.OP_CHAT, parent=parent, model="m")
        headers = httpx.Headers({"content-type": "application/json"})
        propagation.inject(headers, handle)
        expected = _expected(handle)
        handle.end()
    finally:
        if token is not None:
            context.detach(token)
    sampled = parent is None or parent["traceparent"].endswith("1")
    assert int(expected["traceparent"][-2:], 16) & 1 == sampled
    assert ("baggage" in expected) is with_baggage
    assert dict(headers) == {"content-type": "application/json", **expected}


@pytest.mark.parametrize("with_baggage", [False, True], ids=["", "baggage"])
def test_a_request_of_a_span_that_failed_to_start_gets_no_trace_context(with_baggage):
    from llmobs.recorder import SpanHandle

    token = context.attach(baggage.set_baggage("tenant", "acme")) if with_baggage else None
    try:
        headers = httpx.Headers()
        propagation.inject(headers, SpanHandle.non_recording(get_recorder(), sc.OP_CHAT))
    finally:
        if token is not None:
            context.detach(token)
    assert dict(headers) == ({"baggage": "tenant=acme"} if with_baggage else {}), "the baggage only, as propagators"


class _Vendor(TextMapPropagator):
    """A propagator of some vendor's own header."""

    def extract(self, carrier, context=None, getter=None):
        return context

    def inject(self, carrier, context=None, setter=None):
        carrier["x-vendor-trace"] = f"{trace.get_current_span(context).get_span_context().span_id:x}"

    @property
    def fields(self):
        return {"x-vendor-trace"}


def test_other_configured_propagators_write_their_headers_too(client, server, spans):
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), _Vendor()]))
    try:
        client.chat.completions.create(model="m", messages=USER)
    finally:
        propagate.set_global_textmap(previous)
    (span,) = spans()
    sent = server.requests[-1]["headers"]
    assert sent["x-vendor-trace"] == f"{span.context.span_id:x}"
    c = span.context
    assert sent["traceparent"] == f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"


def test_the_application_trace_context_replaces_nothing_but_is_passed_on(client, server, spans):
    theirs = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1,b=2"}
    client.chat.completions.create(model="m", messages=USER, extra_headers=theirs)
    (span,) = spans()
    sent = server.requests[-1]["headers"]
    assert sent["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{span.context.span_id:016x}-01"
    assert sent["tracestate"] == "a=1,b=2"


def test_a_trace_state_without_a_traceparent_leaves_the_ambient_span_the_parent(client, server, spans):
    with trace.get_tracer("app").start_as_current_span("outer") as outer:
        client.chat.completions.create(model="m", messages=USER, extra_headers={"tracestate": "a=1"})
    chat = next(s for s in spans() if s.name == "chat m")
    assert chat.parent.span_id == outer.get_span_context().span_id
    assert server.requests[-1]["headers"]["tracestate"] == "a=1", "the application's header is left as it was"
