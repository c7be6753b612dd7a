"""`llmobs demo` then `traces`, `show`, `stats`: the demo's traces with correct parenting, TTFT, tokens, cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from llmobs import semconv as sc
from llmobs.pricing import find_price

LLMOBS = Path(sys.executable).with_name("llmobs")
DEMO_MODELS = {"qwen-plus", "gpt-4o-mini", "deepseek-chat", "text-embedding-3-small"}


def llmobs(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    out = subprocess.run([str(LLMOBS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"llmobs {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    printed = llmobs("demo", cwd=cwd)
    return cwd, printed


def test_demo_writes_the_default_store_and_says_where_to_look(demo):
    cwd, printed = demo
    assert (cwd / ".llmobs" / "llmobs.db").is_file()
    assert str((cwd / ".llmobs" / "llmobs.db").resolve()) in printed
    for hint in ("llmobs traces", "llmobs show", "llmobs stats"):
        assert hint in printed


def test_demo_drives_each_installed_framework_with_its_own_fake_models(demo):
    """The workspace installs every framework package: the demo runs each one's real framework too."""
    import sqlite3

    cwd, printed = demo
    with sqlite3.connect(cwd / ".llmobs" / "llmobs.db") as conn:
        rows = conn.execute("SELECT json_extract(attributes, '$.\"gen_ai.framework\"'), COUNT(DISTINCT trace_id),"
                            " COUNT(*) FROM spans GROUP BY 1").fetchall()  # fmt: skip
    by_framework = {framework: (traces, spans) for framework, traces, spans in rows}
    for package, framework in (("langchain", "langchain"), ("llamaindex", "llama_index"), ("promptflow", "promptflow")):
        assert f"traces from {package} with its own fake models" in printed, printed
        traces, spans = by_framework.get(framework, (0, 0))
        assert traces >= 3 and spans > traces, (framework, by_framework)


def scripted(traces: list[dict]) -> list[dict]:
    """The scripted agent's traces (framework packages' demos add their own)."""
    return [t for t in traces if t["service"] == "llmobs-demo" and t["name"] == "invoke_agent support-agent"]


def test_traces_lists_every_session_and_the_failure(demo):
    cwd, _ = demo
    traces = scripted(json.loads(llmobs("traces", "--limit", "1000", "--json", cwd=cwd)))
    assert len(traces) == 6
    assert all(t["name"] == "invoke_agent support-agent" and t["kind"] == "AGENT" for t in traces)
    assert sorted(t["error_count"] for t in traces) == [0, 0, 0, 0, 0, 1]
    assert {t["session_id"] for t in traces} == {"sess-0001", "sess-0002", "sess-0003"}
    errors = scripted(json.loads(llmobs("traces", "--errors", "--limit", "1000", "--json", cwd=cwd)))
    assert len(errors) == 1 and errors[0]["error_count"] == 1
    table = llmobs("traces", cwd=cwd)
    assert traces[0]["trace_id"][:12] in table


def test_show_gives_the_agent_tree_with_ttft_tokens_and_cost(demo):
    cwd, _ = demo
    (failed,) = scripted(json.loads(llmobs("traces", "--errors", "--limit", "1000", "--json", cwd=cwd)))
    spans = json.loads(llmobs("show", failed["trace_id"][:10], "--json", cwd=cwd))
    by_id = {s["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["parent_span_id"] is None]
    assert root["name"] == "invoke_agent support-agent"
    children = defaultdict(list)
    for s in spans:
        if s["parent_span_id"]:
            assert s["parent_span_id"] in by_id, "every parent is in the trace"
            children[by_id[s["parent_span_id"]]["name"]].append(s["name"])
    assert children["invoke_agent support-agent"] == [
        "retrieval kb",
        "chat qwen-plus",
        "execute_tool get_order_status",
        "chat gpt-4o-mini",
        "chat deepseek-chat",
    ]
    assert children["retrieval kb"] == ["embeddings text-embedding-3-small"]
    chats = {s["name"]: s for s in spans if s["operation"] == sc.OP_CHAT}
    failed_call = chats["chat gpt-4o-mini"]
    assert failed_call["status"] == "ERROR" and failed_call["error_type"] == "RateLimitError"
    assert failed_call["ttft_ns"] is None and failed_call["input_tokens"] is None
    for name in ("chat qwen-plus", "chat deepseek-chat"):
        chat = chats[name]
        assert 0 < chat["ttft_ns"] < chat["duration_ns"]
        assert chat["total_tokens"] == chat["input_tokens"] + chat["output_tokens"] > 0
        assert chat["cost_usd"] > 0
        assert chat["session_id"] == root["session_id"]
    assert root["attributes"][sc.USER_TIME_TO_FIRST_TOKEN_NS] > chats["chat qwen-plus"]["ttft_ns"]
    tree = llmobs("show", failed["trace_id"], cwd=cwd)
    assert "RateLimitError" in tree and "└─" in tree


def test_stats_per_model_match_the_spans_and_the_price_table(demo):
    cwd, _ = demo
    stats = {s["model"]: s for s in json.loads(llmobs("stats", "--json", cwd=cwd)) if s["model"] in DEMO_MODELS}
    expected = defaultdict(lambda: {"calls": 0, "errors": 0, "in": 0, "out": 0, "cost": 0.0})
    for trace in scripted(json.loads(llmobs("traces", "--limit", "1000", "--json", cwd=cwd))):
        for span in json.loads(llmobs("show", trace["trace_id"], "--json", cwd=cwd)):
            if span["operation"] not in sc.INFERENCE_OPERATIONS:
                continue
            e = expected[span["request_model"]]
            e["calls"] += 1
            e["errors"] += span["status"] == "ERROR"
            e["in"] += span["input_tokens"] or 0
            e["out"] += span["output_tokens"] or 0
            cache = span["attributes"].get(sc.USAGE_CACHE_READ_INPUT_TOKENS, 0)
            if span["input_tokens"]:
                e["cost"] += sum(
                    find_price(span["request_model"]).cost(span["input_tokens"], span["output_tokens"] or 0, cache)
                )
    assert set(stats) == set(expected) == DEMO_MODELS
    for model, e in expected.items():
        s = stats[model]
        assert s["calls"] == e["calls"] and s["errors"] == e["errors"], model
        assert s["input_tokens"] == e["in"] and s["output_tokens"] == e["out"], model
        assert s["cost_usd"] == pytest.approx(e["cost"]), model
    assert stats["gpt-4o-mini"]["error_rate"] == pytest.approx(1 / 6)
    assert stats["qwen-plus"]["p50_ttft_s"] > 0 and stats["text-embedding-3-small"]["p50_ttft_s"] is None
