"""The console's queries (TraceStore.search_traces, sessions, timeseries, facets) and the JSON API on them."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.serve import api, create_server
from llmobs.store import SQLiteSpanExporter, TraceStore
from llmobs.store.queries import TraceQuery

S = 10**9
T0 = time.time_ns() - 3600 * S


class Seeder:
    """Writes llmobs traces into a store file, one provider per service."""

    def __init__(self, path):
        self.exporter = SQLiteSpanExporter(path)
        self.recorders = {}

    def recorder(self, service):
        if service not in self.recorders:
            provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: service}))
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            self.recorders[service] = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
        return self.recorders[service]

    def trace(self, at_s, *, service="app", model="gpt-4o-mini", session=None, error=False, question="hi",
              weight=None, ttft_s=0.2, tool=False):
        start = T0 + int(at_s * S)
        recorder = self.recorder(service)
        attributes = {sc.SAMPLING_ADJUSTED_COUNT: weight, sc.SAMPLING_REASON: "ratio"} if weight else None
        root = recorder.start("invoke_agent", "helper", parent=ROOT, session_id=session, start_time_ns=start,
                              attributes=attributes)
        root.set_input(value=question)
        llm = recorder.start("chat", provider="openai", model=model, parent=root, start_time_ns=start + S // 10,
                             attributes=attributes)
        llm.set_input([content.message("user", [content.text_part(question)])])
        llm.first_token(at_ns=start + S // 10 + int(ttft_s * S))
        llm.set_usage(100, 20)
        llm.set_output([content.output_message([content.text_part(f"answer to {question}")], "stop")])
        llm.end(end_time_ns=start + S)
        if tool:
            call = recorder.start("execute_tool", "lookup", parent=root, start_time_ns=start + S)
            call.set_input(value={"id": 1})
            call.end("Boom" if error else None, end_time_ns=start + 2 * S)
        root.set_output(value=f"answer to {question}")
        root.end(end_time_ns=start + 2 * S)
        return root.trace_id


@pytest.fixture
def seeded(tmp_path, settings):
    settings()
    path = tmp_path / "api.db"
    seed = Seeder(path)
    ids = {
        "a": seed.trace(10, session="s1", question="refund please"),
        "b": seed.trace(20, session="s1", question="and shipping?", tool=True, error=True),
        "c": seed.trace(30, service="other", model="qwen-plus", weight=4.0),
        "d": seed.trace(40, model="qwen-plus", session="s2", tool=True),
        "e": seed.trace(50, question="refund again", tool=True, error=True),
        "f": seed.trace(60, service="other"),
        "g": seed.trace(70, session="s2", question="last one"),
    }
    seed.exporter.shutdown()
    with TraceStore(path) as store:
        yield store, ids


def page_ids(page):
    return [t.trace_id for t in page.traces]


def test_search_pages_through_everything_newest_first(seeded):
    store, ids = seeded
    everything = page_ids(store.search_traces(limit=100))
    assert everything == [ids[k] for k in "gfedcba"]
    seen, after = [], None
    while True:
        page = store.search_traces(limit=3, after=after)
        seen += page_ids(page)
        if page.next is None:
            break
        after = page.next
    assert seen == everything
    assert store.search_traces(limit=7).next is None


@pytest.mark.parametrize(("query", "expected"), [
    (TraceQuery(service="other"), "fc"),
    (TraceQuery(model="qwen-plus"), "dc"),
    (TraceQuery(session="s2"), "gd"),
    (TraceQuery(status="error"), "eb"),
    (TraceQuery(status="ok"), "gfdca"),
    (TraceQuery(text="REFUND"), "ea"),
    (TraceQuery(text="refund", status="error"), "e"),  # the error and the text are on different spans
    (TraceQuery(text="100%_"), ""),  # LIKE wildcards are literal
    (TraceQuery(since_ns=T0 + 35 * S, until_ns=T0 + 61 * S), "fed"),
    (TraceQuery(service="app", model="gpt-4o-mini", session="s1", status="ok"), "a"),
])
def test_search_filters(seeded, query, expected):
    store, ids = seeded
    assert page_ids(store.search_traces(query, 100)) == [ids[k] for k in expected]
    assert page_ids(store.search_traces(query, 1)) == [ids[k] for k in expected[:1]]


def test_list_traces_is_unchanged(seeded):
    store, ids = seeded
    assert [t.trace_id for t in store.list_traces(3)] == [ids[k] for k in "gfe"]


def test_sessions_and_facets(seeded):
    store, _ = seeded
    sessions = store.sessions()
    assert [(s.session_id, s.trace_count, s.error_count) for s in sessions] == [("s2", 2, 0), ("s1", 2, 1)]
    assert sessions[1].input_tokens == 200 and sessions[1].cost_usd > 0 and sessions[1].service == "app"
    assert [s.session_id for s in store.sessions(1, after=(sessions[0].last_ns, "s2"))] == ["s1"]
    assert store.facets() == {"services": ["app", "other"], "models": ["gpt-4o-mini", "qwen-plus"]}


def test_timeseries_weights_by_adjusted_count(seeded):
    store, _ = seeded
    points = store.timeseries(by="model", since_ns=T0, until_ns=T0 + 80 * S, buckets=8)
    qwen = {p.start_ns: p.stats for p in points if p.key == "qwen-plus"}
    assert sorted(qwen) == [T0 + 30 * S, T0 + 40 * S]
    assert qwen[T0 + 30 * S].calls == 4.0 and qwen[T0 + 30 * S].input_tokens == 400.0
    assert qwen[T0 + 40 * S].p50_ttft_s == pytest.approx(0.2)
    by_service = store.timeseries(by="service", since_ns=T0, until_ns=T0 + 80 * S, buckets=1)
    assert {p.key: p.stats.calls for p in by_service} == {"app": 5.0, "other": 5.0}
    with pytest.raises(ValueError):
        store.timeseries(by="nope", since_ns=0, until_ns=1)


def test_api_traces_trace_and_errors(seeded):
    store, ids = seeded
    status, body = api.handle(store, "/api/traces", {"limit": ["2"], "status": ["error"]})
    assert status == 200 and [t["trace_id"] for t in body["traces"]] == [ids["e"], ids["b"]]
    assert body["next"] is None
    status, body = api.handle(store, "/api/traces", {"limit": ["2"]})
    status, more = api.handle(store, "/api/traces", {"limit": ["2"], "after": [body["next"]]})
    assert [t["trace_id"] for t in more["traces"]] == [ids["e"], ids["d"]]

    status, trace = api.handle(store, f"/api/traces/{ids['b'][:10]}", {})
    assert status == 200 and trace["trace_id"] == ids["b"]
    chat = next(s for s in trace["spans"] if s["operation"] == "chat")
    assert chat["detail"]["input_messages"] == [content.message("user", [content.text_part("and shipping?")])]
    assert chat["detail"]["output_messages"][0]["finish_reason"] == "stop"
    assert chat["ttft_ns"] == 200_000_000 and chat["total_tokens"] == 120
    tool = next(s for s in trace["spans"] if s["operation"] == "execute_tool")
    assert tool["detail"]["tool_arguments"] == {"id": 1} and tool["error_type"] == "Boom"

    for params in ({"limit": ["0"]}, {"limit": ["x"]}, {"status": ["maybe"]}, {"after": ["nope"]},
                   {"since": ["yesterday"]}):
        assert api.handle(store, "/api/traces", params)[0] == 400, params
    assert api.handle(store, "/api/traces/zz", {})[0] == 400
    assert api.handle(store, "/api/traces/" + "f" * 32, {})[0] == 404
    assert api.handle(store, "/api/nothing", {})[0] == 404
    status, index = api.handle(store, "/api", {})
    assert status == 200 and len(index["endpoints"]) == len(api.ENDPOINTS)


def test_api_sessions_stats_timeseries(seeded):
    store, ids = seeded
    status, body = api.handle(store, "/api/sessions", {})
    assert [s["session_id"] for s in body["sessions"]] == ["s2", "s1"]
    status, session = api.handle(store, "/api/sessions/s1", {})
    assert [t["trace_id"] for t in session["turns"]] == [ids["a"], ids["b"]]  # oldest first
    assert (session["turns"][0]["input"], session["turns"][0]["output"]) == ("refund please", "answer to refund please")
    assert api.handle(store, "/api/sessions/none", {})[0] == 404
    status, stats = api.handle(store, "/api/stats", {})
    assert {m["model"]: m["calls"] for m in stats["models"]} == {"gpt-4o-mini": 5.0, "qwen-plus": 5.0}
    since, until = str(T0), str(T0 + 80 * S)
    status, series = api.handle(store, "/api/timeseries", {"by": ["service"], "since": [since], "until": [until],
                                                           "buckets": ["8"]})
    assert status == 200 and series["bucket_ns"] == 10 * S
    other = next(line for line in series["series"] if line["key"] == "other")
    assert [(p["bucket"], p["calls"]) for p in other["points"]] == [(3, 4.0), (6, 1.0)]
    assert api.handle(store, "/api/timeseries", {"by": ["user"]})[0] == 400
    assert api.handle(store, "/api/timeseries", {"since": [until], "until": [since]})[0] == 400
    assert api.handle(store, "/api/facets", {})[1]["services"] == ["app", "other"]


def test_api_over_http_is_strict_json(tmp_path, settings):
    settings()
    seed = Seeder(tmp_path / "h.db")
    seed.trace(1, question="nan?")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(seed.exporter))
    with provider.get_tracer("t").start_as_current_span("odd") as span:
        span.set_attribute("ratio", float("nan"))
    server = create_server(tmp_path / "h.db", port=0).start()
    try:
        with urllib.request.urlopen(f"{server.url}/api/traces/{span.get_span_context().trace_id:032x}") as r:
            assert r.headers["Content-Type"].startswith("application/json")
            body = json.loads(r.read(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
        assert body["spans"][0]["attributes"]["ratio"] is None
        with urllib.request.urlopen(f"{server.url}/") as r:
            page = r.read().decode()
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert '<script type="module" src="/static/js/main.js">' in page
        with urllib.request.urlopen(f"{server.url}/static/js/main.js") as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
    finally:
        server.close()
        seed.exporter.shutdown()
