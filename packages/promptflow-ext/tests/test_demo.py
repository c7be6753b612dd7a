"""The ``llmobs demo`` entry: a travel-desk flow through Promptflow's traced client, two traces a session."""

from __future__ import annotations

import json
import os

import pytest

from llmobs import semconv as sc
from llmobs_promptflow import demo

# Promptflow 1.18 serialises OpenAI responses with pydantic's deprecated .dict(): its warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")


def test_demo_makes_two_traces_per_session(spans, monkeypatch):
    monkeypatch.delenv("PF_DISABLE_TRACING")
    trace_ids = demo.run(2)
    assert "PF_DISABLE_TRACING" not in os.environ  # put back as found
    assert len(trace_ids) == len(set(trace_ids)) == 4
    traces = {format(tid, "032x"): members for tid, members in spans.traces().items()}
    assert set(trace_ids) <= set(traces)
    sessions = [{s.attributes.get(sc.SESSION_ID) for s in traces[t]} for t in trace_ids]
    assert sessions == [{"pf-sess-0001"}, {"pf-sess-0001"}, {"pf-sess-0002"}, {"pf-sess-0002"}]
    for trace_id in trace_ids:
        members = traces[trace_id]
        (root,) = [s for s in members if s.parent is None]
        assert root.name == "travel-desk" and root.attributes[sc.OUTPUT_VALUE].startswith("From the travel guide:")
        names = sorted(s.name for s in members if s.attributes.get(sc.FRAMEWORK) == "promptflow")
        assert names == sorted(["travel_desk", "embed", f"embeddings {demo.EMBED_MODEL}", "retrieve", "answer",
                                f"chat {demo.CHAT_MODEL}"])  # fmt: skip
        (chat,) = [s for s in members if s.name == f"chat {demo.CHAT_MODEL}"]
        assert chat.attributes[sc.USAGE_INPUT_TOKENS] > 0 and chat.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
        assert json.loads(chat.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"].startswith("From the")
