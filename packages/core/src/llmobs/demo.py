"""``llmobs demo``: a scripted support agent traced through the recorder, with no network.

Framework packages add their own demo under the entry-point group ``llmobs.demos``: a callable
``run(sessions: int) -> list[str]`` that drives the real framework with its fake models and returns the
trace ids it made. ``llmobs demo`` runs every installed one after the scripted agent.

Each session runs agent → embeddings + retrieval → streaming LLM that asks for a tool → tool → LLM
answer. One session hits a rate limit on its answer call and falls back to another provider, so the
store holds an error to look at. Model latencies are simulated on an explicit clock (the recorder takes
start/end/first-token times from frameworks that report after the fact), so the demo is instant and
reproducible while the traces look like a real day's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from llmobs import content, export
from llmobs import semconv as sc
from llmobs.recorder import ROOT, SpanHandle, get_recorder

QUESTIONS = [
    ("Where is my order #A1043?", "A1043"),
    ("Has order #B2211 shipped yet? It was a birthday gift.", "B2211"),
    ("Can you check order #C7310, please. My email is jane.doe@example.com", "C7310"),
    ("Order #D0042 still says processing after a week.", "D0042"),
]
KB = [
    ("kb-12", "Orders ship within 2 business days; tracking arrives by email.", 0.91),
    ("kb-07", "Delayed orders can be escalated after 5 business days.", 0.84),
    ("kb-31", "Gift orders include a packing slip without prices.", 0.62),
]
SYSTEM = "You are a concise support agent for an online shop. Use tools for order status."
TOOLS = [
    content.tool_definition(
        "get_order_status",
        "Look up the shipping status of an order",
        {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    )
]


DEMO_ENTRY_POINTS = "llmobs.demos"


class RateLimitError(Exception):
    """What a provider's client raises on HTTP 429."""


@dataclass
class Clock:
    """Simulated wall clock in ns: each step advances it by a realistic latency."""

    now: int

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * 1e9)
        return self.now


def _stream(handle: SpanHandle, clock: Clock, rng: random.Random, text: str, ttft_s: float) -> None:
    handle.chunk(at_ns=clock.advance(ttft_s))
    for _ in text.split()[1:]:
        handle.chunk(at_ns=clock.advance(rng.uniform(0.015, 0.045)))


def _llm(
    parent: SpanHandle,
    clock: Clock,
    rng: random.Random,
    *,
    provider: str,
    model: str,
    messages: list,
    answer: str | None,
    tool_call: dict | None = None,
    fail: BaseException | None = None,
) -> None:
    handle = get_recorder().start(
        sc.OP_CHAT, provider=provider, model=model, parent=parent, start_time_ns=clock.advance(0.002)
    )
    handle.set_request(temperature=0.2, max_tokens=512, stream=True, server_address=f"api.{provider}.example")
    handle.set_input(messages, system=[content.text_part(SYSTEM)], tools=TOOLS)
    if fail is not None:
        handle.end(fail, end_time_ns=clock.advance(rng.uniform(0.2, 0.4)))
        return
    input_tokens = 180 + 12 * len(messages) + rng.randint(0, 40)
    if tool_call is not None:
        _stream(handle, clock, rng, "call", rng.uniform(0.25, 0.6))
        parts = [content.tool_call_part("get_order_status", tool_call, id="call_1")]
        finish, output_tokens = sc.FINISH_TOOL_CALL, 18
    else:
        _stream(handle, clock, rng, answer or "", rng.uniform(0.3, 0.9))
        parts = [content.text_part(answer)]
        finish, output_tokens = sc.FINISH_STOP, len((answer or "").split()) * 4 // 3 + 2
    handle.set_usage(input_tokens, output_tokens, cache_read=128 if len(messages) > 2 else None)
    handle.set_output(
        [content.output_message(parts, finish)],
        finish_reasons=[finish],
        response_id=f"chatcmpl-{rng.getrandbits(48):012x}",
        response_model=model,
    )
    handle.end(end_time_ns=clock.advance(0.003))


def run_session(index: int, clock: Clock, rng: random.Random, *, fail_answer: bool) -> str:
    """One user question end to end; returns the trace id."""
    question, order_id = QUESTIONS[index % len(QUESTIONS)]
    session_id = f"sess-{index // 2 + 1:04d}"
    agent = get_recorder().start(
        sc.OP_INVOKE_AGENT,
        "support-agent",
        parent=ROOT,
        framework="llmobs-demo",
        session_id=session_id,
        user_id=f"user-{index % 3 + 1}",
        start_time_ns=clock.advance(0),
    )
    agent.set_request(agent_name="support-agent")
    agent.set_input(value=question)

    retrieval = get_recorder().start(sc.OP_RETRIEVAL, "kb", parent=agent, start_time_ns=clock.advance(0.001))
    retrieval.set_request(data_source_id="kb", top_k=3)
    retrieval.set_input(value=question)
    embedding = get_recorder().start(
        sc.OP_EMBEDDINGS,
        provider=sc.PROVIDER_OPENAI,
        model="text-embedding-3-small",
        parent=retrieval,
        start_time_ns=clock.advance(0.001),
    )
    embedding.set_usage(len(question.split()) + 3)
    embedding.end(end_time_ns=clock.advance(rng.uniform(0.05, 0.12)))
    retrieval.set_output(value=[{"id": i, "score": s, "content": c} for i, c, s in KB])
    retrieval.end(end_time_ns=clock.advance(rng.uniform(0.01, 0.03)))

    context = "\n".join(c for _, c, _ in KB)
    messages = [content.message(sc.ROLE_USER, [content.text_part(f"{question}\n\nContext:\n{context}")])]
    _llm(agent, clock, rng, provider=sc.PROVIDER_DASHSCOPE, model="qwen-plus", messages=messages,
         answer=None, tool_call={"order_id": order_id})  # fmt: skip

    tool = get_recorder().start(
        sc.OP_EXECUTE_TOOL, "get_order_status", parent=agent, start_time_ns=clock.advance(0.001)
    )
    tool.set_request(tool_name="get_order_status", tool_call_id="call_1", tool_type="function")
    status = {"order_id": order_id, "status": rng.choice(["shipped", "processing", "out_for_delivery"])}
    tool.set_input(value={"order_id": order_id})
    tool.set_output(value=status)
    tool.end(end_time_ns=clock.advance(rng.uniform(0.04, 0.15)))

    messages = [
        *messages,
        content.message(
            sc.ROLE_ASSISTANT, [content.tool_call_part("get_order_status", {"order_id": order_id}, "call_1")]
        ),
        content.message(sc.ROLE_TOOL, [content.tool_call_response_part(status, id="call_1")]),
    ]
    answer = f"Your order {order_id} is {status['status'].replace('_', ' ')}. Tracking details are in your email."
    if fail_answer:
        _llm(agent, clock, rng, provider=sc.PROVIDER_OPENAI, model="gpt-4o-mini", messages=messages, answer=None,
             fail=RateLimitError("429 Too Many Requests: rate limit reached for gpt-4o-mini"))  # fmt: skip
        _llm(agent, clock, rng, provider=sc.PROVIDER_DEEPSEEK, model="deepseek-chat", messages=messages, answer=answer)
    else:
        _llm(agent, clock, rng, provider=sc.PROVIDER_OPENAI, model="gpt-4o-mini", messages=messages, answer=answer)
    agent.set_output(value=answer)
    agent.end(end_time_ns=clock.advance(0.002))
    return agent.trace_id


def _framework_demos(sessions: int) -> dict[str, list[str]]:
    """Run each installed framework package's demo; one that fails is reported, not fatal."""
    results: dict[str, list[str]] = {}
    for entry in importlib.metadata.entry_points(group=DEMO_ENTRY_POINTS):
        try:
            results[entry.name] = list(entry.load()(sessions))
        except Exception as exc:
            print(f"  ! the {entry.name} demo failed: {type(exc).__name__}: {exc}")
    return results


def main(args: argparse.Namespace | None = None) -> int:
    """Run the demo into the embedded store and say where to look next."""
    sessions = max(int(getattr(args, "sessions", 3) or 3), 1)
    store = getattr(args, "store", None)
    overrides: dict = {"exporters": ["store"]}
    if store:
        overrides["store"] = str(store)
    if not os.environ.get("OTEL_SERVICE_NAME"):
        overrides["service_name"] = "llmobs-demo"
    settings = export.configure(**overrides)
    rng = random.Random(42)
    clock = Clock(time.time_ns() - int(60e9) * sessions)
    trace_ids = []
    for index in range(sessions * 2):
        clock.advance(rng.uniform(5, 50))
        trace_ids.append(run_session(index, clock, rng, fail_answer=index == 1))
    framework_traces = _framework_demos(sessions)
    export.flush()
    path = Path(settings.store_path()).resolve()
    where = f" --store {store}" if store else ""
    print(f"llmobs demo: {len(trace_ids)} traces ({sessions} sessions, one rate-limited call) → {path}")
    for name, ids in framework_traces.items():
        print(f"  + {len(ids)} traces from {name} with its own fake models")
    print("Look next:")
    print(f"  llmobs{where} traces                 # newest traces")
    print(f"  llmobs{where} show {trace_ids[1][:12]}    # the trace with the failed call, as a tree")
    print(f"  llmobs{where} stats                  # per model: calls, errors, latency/TTFT percentiles, tokens, cost")
    return 0
