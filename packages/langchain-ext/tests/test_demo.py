"""The LangChain demo `llmobs demo` runs: real LangGraph, retrieval, tools and streaming on scripted models."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from opentelemetry.trace import StatusCode

from llmobs import semconv as sc
from llmobs.demo import DEMO_ENTRY_POINTS
from llmobs_langchain import demo

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_demo_is_registered_for_llmobs_demo():
    entry_points = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][DEMO_ENTRY_POINTS]
    assert entry_points == {"langchain": "llmobs_langchain.demo:run"}
    installed = [e for e in importlib.metadata.entry_points(group=DEMO_ENTRY_POINTS) if e.name == "langchain"]
    assert all(e.load() is demo.run for e in installed)  # once the workspace is synced


def test_demo_traces_sessions_of_two_turns(recorded):
    trace_ids = demo.run(2)
    assert len(trace_ids) == 4 and len(set(trace_ids)) == 4
    for trace_id in trace_ids:
        spans = [s for s in recorded.all() if format(s.context.trace_id, "032x") == trace_id]
        names = [s.name for s in spans]
        (request,) = [s for s in spans if s.parent is None]
        assert request.name == "POST /support/chat"
        (agent,) = [s for s in spans if s.name == f"invoke_agent {demo.AGENT}"]
        assert recorded.parent(agent) == request
        assert {"retrieval VectorStoreRetriever", "execute_tool search_help_centre", f"chat {demo.MODEL}"} <= set(names)
        assert len({s.attributes.get(sc.SESSION_ID) for s in spans}) == 1
        for chat in (s for s in spans if s.name == f"chat {demo.MODEL}"):
            assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
            assert chat.attributes[sc.COST_USD] > 0
    failed = [s for s in recorded.all() if s.status.status_code is StatusCode.ERROR]
    assert failed == []  # sessions 1 and 2 look up orders that exist


def test_demo_has_a_failed_order_lookup_in_the_third_session(recorded):
    demo.run(3)
    (failed,) = [s for s in recorded.all() if s.status.status_code is StatusCode.ERROR]
    assert failed.name == "execute_tool get_order_status" and failed.attributes[sc.ERROR_TYPE] == "LookupError"
