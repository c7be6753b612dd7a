"""Headers read and written in one pass over httpx's (and httpx2's) header list mean what httpx's own lookups and
assignments mean: case-insensitive names, repeated headers joined, a header replaced rather than doubled."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from llmobs import get_recorder
from llmobs import semconv as sc
from llmobs_openai import headers, propagation

LIBRARIES = pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
NAMES = (b"content-encoding", b"content-type", b"x-repeated")
RAW = [("Content-Type", "text/event-stream"), ("X-Repeated", "a"), ("x-other", "z"), ("x-repeated", "b")]


@LIBRARIES
def test_values_are_httpx_lookups_in_one_pass(http):
    sent = http.Headers(RAW)
    assert headers._triples(sent) is not None, "httpx keeps its header list: the one-pass path is taken"
    expected = [sent.get(name.decode()) for name in NAMES]
    assert expected == [None, "text/event-stream", "a, b"]
    assert headers.values(sent, NAMES) == expected


def test_any_other_mapping_is_read_through_its_own_lookup():
    assert headers.values({"content-type": "application/json"}, NAMES) == [None, "application/json", None]


@LIBRARIES
def test_an_absent_header_is_appended_as_httpx_would_set_it(http):
    ours, theirs = http.Headers(RAW), http.Headers(RAW)
    headers.add(ours, {"traceparent": "00-ab-cd-01", "tracestate": "k=v"}, absent=True)
    theirs["traceparent"], theirs["tracestate"] = "00-ab-cd-01", "k=v"
    assert ours.raw == theirs.raw
    assert ours["TraceParent"] == "00-ab-cd-01"


@LIBRARIES
def test_a_header_that_may_be_there_replaces_every_copy(http):
    sent = http.Headers([("tracestate", "a=1"), ("x", "y"), ("TraceState", "b=2")])
    headers.add(sent, {"tracestate": "k=v"}, absent=False)
    assert sent.get_list("tracestate") == ["k=v"]


@LIBRARIES
@pytest.mark.parametrize(
    "theirs",
    [{}, {"tracestate": "a=1"}, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}],
    ids=["none", "trace state only", "traceparent"],
)
def test_a_request_leaves_with_one_trace_context_whatever_it_came_with(http, theirs):
    sent = http.Headers({"content-type": "application/json", **theirs})
    parent, carried = propagation.incoming(sent)
    assert carried is bool(theirs)
    assert parent == (theirs if "traceparent" in theirs else None)
    parent_state = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "p=q"}
    handle = get_recorder().start(sc.OP_CHAT, parent=parent_state, model="m")
    propagation.inject(sent, handle, carried)
    written = handle.inject({})
    handle.end()
    assert sent.get_list("traceparent") == [written["traceparent"]]
    assert sent.get_list("tracestate") == ["p=q"]
    assert sent["content-type"] == "application/json"
