"""How a user enables it: ``instrument()`` before or after ``start_trace()``, with or without a provider of
their own, and ``PF_DISABLE_TRACING``. The global provider can be set once per process, so each set-up
runs in a fresh interpreter and reads what reached the embedded store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from promptflow.tracing import trace

import llmobs_promptflow
from llmobs import semconv as sc

FLOW = """
from promptflow.tracing import start_trace, trace
import llmobs, llmobs_promptflow

@trace
def lookup(city):
    return {"city": city}

@trace
def plan(city):
    return lookup(city)["city"].upper()
"""
RUN_AND_REPORT = """
plan("Faro")
llmobs.flush()
from llmobs.store import TraceStore
with TraceStore() as store:
    (summary,) = store.list_traces()
    spans = store.get_trace(summary.trace_id)
print(json.dumps([{"name": s.name, "service": s.service, "kind": s.span_kind, "scope": s.scope,
                   "collection": s.resource.get("collection")} for s in spans]))
"""


def run(tmp_path, body: str, **env: str) -> tuple[list[dict], str]:
    """Run FLOW + ``body`` + RUN_AND_REPORT in a fresh interpreter; (stored spans, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_", "PF_"))}
    script = "import json\n" + FLOW + textwrap.dedent(body) + RUN_AND_REPORT
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**clean, "PF_DISABLE_TRACING": "false", "LLMOBS_CONFIG_WATCH": "false", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_instrument_first_installs_llmobs_and_keeps_the_service_name(tmp_path):
    spans, _ = run(tmp_path, """
        assert llmobs_promptflow.instrument()
        start_trace(collection="trips")
    """, LLMOBS_SERVICE_NAME="trip-planner")  # fmt: skip
    assert {s["name"] for s in spans} == {"plan", "lookup"}
    assert {(s["service"], s["collection"], s["scope"]) for s in spans} == {("trip-planner", "trips", "promptflow")}
    assert {s["name"]: s["kind"] for s in spans} == {"plan": sc.KIND_CHAIN, "lookup": sc.KIND_TASK}


def test_start_trace_first_gets_llmobs_exporters_on_its_bare_provider(tmp_path):
    spans, _ = run(tmp_path, """
        start_trace(collection="trips")
        assert llmobs_promptflow.instrument()
    """, OTEL_SERVICE_NAME="trip-planner")  # fmt: skip
    assert {(s["name"], s["service"], s["collection"]) for s in spans} == {
        ("plan", "trip-planner", "trips"),
        ("lookup", "trip-planner", "trips"),
    }


def test_an_application_provider_keeps_its_service_name_and_exporters(tmp_path):
    spans, _ = run(tmp_path, """
        from opentelemetry import trace as otel
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        otel.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "shop-api"})))
        llmobs.configure(exporters=["store"])
        assert llmobs_promptflow.instrument()
        start_trace()
    """)  # fmt: skip
    assert {s["service"] for s in spans} == {"shop-api"} and len(spans) == 2


def test_an_explicit_service_name_wins(tmp_path):
    spans, _ = run(tmp_path, """
        start_trace()
        assert llmobs_promptflow.instrument(service_name="planner-v2")
    """, OTEL_SERVICE_NAME="ignored")  # fmt: skip
    assert {s["service"] for s in spans} == {"planner-v2"}


def test_without_a_service_name_promptflows_stays(tmp_path):
    spans, _ = run(tmp_path, """
        start_trace()
        assert llmobs_promptflow.instrument()
    """)  # fmt: skip
    assert {s["service"] for s in spans} == {sc.PF_SERVICE_NAME}


@trace
def greet(name: str) -> str:
    return f"hello {name}"


def test_tracing_disabled_is_said_clearly_and_nothing_is_traced(monkeypatch, caplog, spans):
    monkeypatch.delenv("PF_DISABLE_TRACING")
    assert not llmobs_promptflow.tracing_enabled()
    with caplog.at_level(logging.WARNING, logger="llmobs"):
        assert llmobs_promptflow.instrument()
    assert llmobs_promptflow.DISABLED_MESSAGE in caplog.text
    assert "PF_DISABLE_TRACING=false" in llmobs_promptflow.DISABLED_MESSAGE
    greet("nobody")
    assert spans.all() == []


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_tracing_enabled_follows_promptflow(monkeypatch, caplog, value):
    monkeypatch.setenv("PF_DISABLE_TRACING", value)
    assert llmobs_promptflow.tracing_enabled()
    with caplog.at_level(logging.WARNING, logger="llmobs"):
        assert llmobs_promptflow.instrument()
    assert "disabled" not in caplog.text


def test_the_integration_can_be_turned_off_in_settings(settings):
    settings(disabled_integrations=frozenset({"promptflow"}))
    assert llmobs_promptflow.instrument() is False
    assert not llmobs_promptflow.is_instrumented()
