"""Traces made the way Dify's tracing providers make them, exported by the real OTLP/HTTP exporter.

* :func:`phoenix_workflow` — Dify's Phoenix provider (``arize_phoenix_trace.py``): resource
  ``openinference.project.name``; a root span named after the run with ``dify_trace_id``; the
  ``workflow_<run id>`` CHAIN span with Dify's ids in the JSON ``metadata`` attribute and ``session.id``;
  one span per node named ``<node type>_<title>`` with ``openinference.span.kind`` by node type
  (llm → LLM, knowledge-retrieval → RETRIEVER, tool → TOOL, agent → AGENT, others CHAIN), node inputs
  and outputs as JSON in ``input.value``/``output.value``, ``dify.node.execution_id``; the LLM node adds
  ``llm.provider`` (Dify's plugin provider id), ``llm.model_name``, ``llm.token_count.*`` and the
  flattened ``llm.input_messages``. Each span is sent in its own request (SimpleSpanProcessor), with
  ``api_key`` and ``authorization: Bearer`` headers.
* :func:`arms_workflow` — Dify's Aliyun (ARMS) provider (``aliyun_trace.py``, dify.md §2.3): the trace
  id is the workflow run's UUID; a SERVER ``workflow`` root with ``dify.app_id``; every span with
  ``gen_ai.session.id``, ``gen_ai.user.id``, ``gen_ai.span.kind``, ``gen_ai.framework=dify``,
  ``input.value``/``output.value``; the LLM node with ``gen_ai.operation.name=chat``, the model and
  provider under the older names (``gen_ai.model_name``, ``gen_ai.system``), token counts as strings,
  ``gen_ai.prompt``/``gen_ai.completion``, GenAI messages and TTFT in nanoseconds; a retriever with
  ``retrieval.query``/``retrieval.document``; a tool with ``tool.name``/``tool.description``/
  ``tool.parameters``; an agent with ReAct ``STEP`` rounds and their LLM calls. Sent as one batch.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

# Spans carry the times Dify recorded, a minute ago (stores apply retention by age); nothing asserts on them.
T0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000_000
MS = 1_000_000


@dataclass
class Run:
    """The ids of one Dify run."""

    app_id: str = "5d0f7b9e-app0-4a4f-9d0e-000000000001"
    workflow_id: str = "wf-0001"
    workflow_run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    conversation_id: str = "conv-42"
    message_id: str = "msg-0042"
    user_id: str = "end-user-7"
    prompt: str = "What is the refund window? Reply to jane.doe@example.com"


def exporter(url: str, key: str | None, *, gzip: bool = False) -> OTLPSpanExporter:
    """Phoenix's exporter: ``<endpoint>/v1/traces`` with the key in ``api_key`` and a bearer token."""
    headers = {"api_key": key, "authorization": f"Bearer {key}"} if key is not None else {}
    return OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, timeout=30,
                            compression=Compression.Gzip if gzip else Compression.NoCompression)


def arms_exporter(url: str, key: str | None, *, gzip: bool = False) -> OTLPSpanExporter:
    """ARMS's exporter: ``urljoin(<endpoint>/, "adapt_<license key>/api/otlp/traces")``, no headers."""
    if key is None:
        return exporter(url, None, gzip=gzip)
    return OTLPSpanExporter(endpoint=urljoin(url + "/", f"adapt_{key}/api/otlp/traces"), timeout=30,
                            compression=Compression.Gzip if gzip else Compression.NoCompression)


def _provider(resource: dict, id_generator: RandomIdGenerator | None = None
              ) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource(resource), id_generator=id_generator or RandomIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def phoenix_spans(run: Run, project: str = "support-bot") -> list:
    provider, memory = _provider({"openinference.project.name": project, "model_id": project})
    tracer = provider.get_tracer("arize_phoenix_tracer_" + project)
    root = tracer.start_span(run.workflow_run_id, start_time=T0, attributes={
        "openinference.span.kind": "CHAIN", "dify_project_name": project, "dify_trace_id": run.workflow_run_id,
        "input.value": json.dumps({"query": run.prompt}), "output.value": json.dumps({"answer": "30 days"}),
    })
    root.set_status(Status(StatusCode.OK))
    root.end(end_time=T0 + 1)
    metadata = {
        "app_id": run.app_id, "user_id": run.user_id, "created_from": "Dify", "trace_id": "",
        "message_id": run.message_id, "status": "succeeded", "level": "DEFAULT", "trace_entity_type": "workflow",
        "conversation_id": run.conversation_id, "workflow_id": run.workflow_id, "tenant_id": "tenant-1",
        "workflow_run_id": run.workflow_run_id, "workflow_run_elapsed_time": 2.5, "total_tokens": 180,
    }
    workflow = tracer.start_span(f"workflow_{run.workflow_run_id}", context=set_span_in_context(root), start_time=T0,
                                 attributes={
        "openinference.span.kind": "CHAIN", "input.value": json.dumps({"sys.query": run.prompt}),
        "input.mime_type": "application/json", "output.value": json.dumps({"answer": "30 days"}),
        "output.mime_type": "application/json", "metadata": json.dumps(metadata), "session.id": run.conversation_id,
    })
    parent = set_span_in_context(workflow)

    def node(name: str, kind: str, start: int, end: int, inputs: dict, outputs: dict, extra: dict | None = None,
             node_meta: dict | None = None, error: str | None = None) -> None:
        meta = {"node_id": f"exec-{name}", "node_type": name.split("_")[0], "app_id": run.app_id,
                "status": "failed" if error else "succeeded", **(node_meta or {})}
        attrs = {"openinference.span.kind": kind, "input.value": json.dumps(inputs),
                 "output.value": json.dumps(outputs),
                 "input.mime_type": "application/json", "output.mime_type": "application/json",
                 "metadata": json.dumps(meta), "session.id": run.conversation_id,
                 "dify.node.execution_id": f"exec-{name}", "dify.node.loop_id": "", "dify.node.iteration_id": ""}
        attrs.update(extra or {})
        span = tracer.start_span(name, context=parent, start_time=T0 + start * MS, attributes=attrs)
        span.set_status(Status(StatusCode.ERROR, error) if error else Status(StatusCode.OK))
        span.end(end_time=T0 + end * MS)

    node("start_Start", "CHAIN", 0, 1, {"sys.query": run.prompt}, {"sys.query": run.prompt})
    node("knowledge-retrieval_Policies", "RETRIEVER", 1, 120, {"query": run.prompt}, {"result": [
        {"content": "Refunds within 30 days.", "title": "refunds.md",
         "metadata": {"score": 0.91, "document_id": "doc-1", "dataset_id": "ds-1"}},
        {"content": "Shipping takes 5 days.", "title": "shipping.md",
         "metadata": {"score": 0.42, "document_id": "doc-2", "dataset_id": "ds-1"}},
    ]})
    prompts = [{"role": "system", "text": "You answer from the policies."}, {"role": "user", "text": run.prompt}]
    usage = {"prompt_tokens": 150, "completion_tokens": 30, "total_tokens": 180, "time_to_first_token": 0.42,
             "time_to_generate": 0.9}
    node("llm_Answer", "LLM", 120, 1400, {}, {"text": "Refunds are accepted within 30 days.", "usage": usage,
                                              "finish_reason": "stop"}, extra={
        "input.value": json.dumps(prompts), "llm.provider": "langgenius/openai/openai", "llm.model_name": "gpt-4o-mini",
        "llm.token_count.total": 180, "llm.token_count.prompt": 150, "llm.token_count.completion": 30,
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": prompts[0]["text"],
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": prompts[1]["text"],
    }, node_meta={"ls_provider": "langgenius/openai/openai", "ls_model_name": "gpt-4o-mini", "total_tokens": 180,
                  "prompt_tokens": 150, "completion_tokens": 30})
    node("tool_Weather", "TOOL", 1400, 1600, {"city": "Berlin"}, {"text": "sunny"},
         node_meta={"tool_info": {"provider_type": "builtin", "provider_id": "weather"}})
    node("agent_Planner", "AGENT", 1600, 2400, {"query": "plan"}, {"text": "done"})
    node("code_Format", "CHAIN", 2400, 2450, {"x": 1}, {}, error="NameError: y is not defined")
    workflow.set_status(Status(StatusCode.OK))
    workflow.end(end_time=T0 + 2500 * MS)
    provider.shutdown()
    return list(memory.get_finished_spans())


def phoenix_message_spans(run: Run, project: str = "support-bot") -> list:
    """A chat app's message trace: root ``Dify``, ``message`` CHAIN, ``llm`` LLM with the TTFT in metadata."""
    provider, memory = _provider({"openinference.project.name": project, "model_id": project})
    tracer = provider.get_tracer("arize_phoenix_tracer_" + project)
    root = tracer.start_span("Dify", start_time=T0, attributes={
        "openinference.span.kind": "CHAIN", "dify_project_name": project, "dify_trace_id": run.message_id})
    root.end(end_time=T0 + 1)
    metadata = {"app_id": run.app_id, "created_from": "Dify", "message_id": run.message_id,
                "trace_entity_type": "message", "conversation_model": "chat", "message_tokens": 20,
                "answer_tokens": 9, "total_tokens": 29, "gen_ai_server_time_to_first_token": 0.25,
                "llm_streaming_time_to_generate": 0.6, "is_streaming_request": True, "user_id": "",
                "end_user_id": run.user_id, "model_provider": "langgenius/openai/openai", "model_id": "gpt-4o"}
    common = {"metadata": json.dumps(metadata), "session.id": run.conversation_id}
    message = tracer.start_span("message", context=set_span_in_context(root), start_time=T0, attributes={
        "openinference.span.kind": "CHAIN", "input.value": "Hi there", "input.mime_type": "text/plain",
        "output.value": "Hello! How can I help?", "output.mime_type": "text/plain", **common})
    llm = tracer.start_span("llm", context=set_span_in_context(message), start_time=T0, attributes={
        "openinference.span.kind": "LLM", "input.value": json.dumps({"query": "Hi there"}),
        "output.value": "Hello! How can I help?", "llm.token_count.total": 29, "llm.token_count.prompt": 20,
        "llm.token_count.completion": 9, "llm.model_name": "gpt-4o", "llm.provider": "langgenius/openai/openai",
        "llm.invocation_parameters": json.dumps({"temperature": 0.2, "max_tokens": 512}),
        "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Hi there", **common})
    llm.end(end_time=T0 + 900 * MS)
    message.end(end_time=T0 + 900 * MS)
    provider.shutdown()
    return list(memory.get_finished_spans())


class _RunIds(RandomIdGenerator):
    """ARMS: the trace id is the workflow run's UUID."""

    def __init__(self, trace_id: int) -> None:
        self._trace_id = trace_id

    def generate_trace_id(self) -> int:
        return self._trace_id


def arms_spans(run: Run, app_name: str = "support-bot") -> list:
    provider, memory = _provider({"service.name": app_name}, _RunIds(uuid.UUID(run.workflow_run_id).int))
    tracer = provider.get_tracer("dify_trace_aliyun")
    common = {"gen_ai.session.id": run.conversation_id, "gen_ai.user.id": run.user_id, "gen_ai.framework": "dify"}

    def span(name: str, kind: str, parent, start: int, end: int, attrs: dict, server: bool = False,
             error: str | None = None):
        s = tracer.start_span(name, context=set_span_in_context(parent) if parent is not None else None,
                              kind=SpanKind.SERVER if server else SpanKind.INTERNAL, start_time=T0 + start * MS,
                              attributes={**common, "gen_ai.span.kind": kind, **attrs})
        s.set_status(Status(StatusCode.ERROR, error) if error else Status(StatusCode.OK))
        s.end(end_time=T0 + end * MS)
        return s

    # Parents end after their children in the real export too; the SDK needs the parent object first.
    root = tracer.start_span("workflow", kind=SpanKind.SERVER, start_time=T0, attributes={
        **common, "gen_ai.span.kind": "CHAIN", "dify.app_id": run.app_id,
        "input.value": json.dumps({"sys.query": run.prompt}), "output.value": json.dumps({"answer": "30 days"}),
    })
    span("Policies", "RETRIEVER", root, 1, 120, {
        "input.value": run.prompt, "retrieval.query": run.prompt,
        "output.value": "[...]", "retrieval.document": json.dumps([
            {"content": "Refunds within 30 days.", "metadata": {"dataset_id": "ds-1", "doc_id": "c1",
                                                                "document_id": "doc-1"}, "score": 0.91}]),
    })
    span("Answer", "LLM", root, 120, 1400, {
        "gen_ai.operation.name": "chat", "gen_ai.model_name": "qwen-plus", "gen_ai.system": "langgenius/tongyi/tongyi",
        "gen_ai.usage.input_tokens": "150", "gen_ai.usage.output_tokens": "30", "gen_ai.usage.total_tokens": "180",
        "gen_ai.prompt": json.dumps([{"role": "user", "text": run.prompt}]),
        "gen_ai.completion": "Refunds are accepted within 30 days.", "gen_ai.response.finish_reason": "stop",
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": run.prompt}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "Refunds are accepted within 30 days."}], "finish_reason": "stop"}]),
        "gen_ai.response.time_to_first_token": 420_000_000,
        "input.value": json.dumps({"prompts": [{"role": "user", "text": run.prompt}]}),
        "output.value": "Refunds are accepted within 30 days.",
    })
    span("Weather", "TOOL", root, 1400, 1600, {
        "tool.name": "weather", "tool.description": "Current weather",
        "tool.parameters": json.dumps({"city": "Berlin"}),
        "input.value": json.dumps({"city": "Berlin"}), "output.value": "sunny",
    })
    agent = tracer.start_span("Planner", context=set_span_in_context(root), start_time=T0 + 1600 * MS, attributes={
        **common, "gen_ai.span.kind": "AGENT", "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Planner",
        "input.value": "plan", "output.value": "done",
    })
    for number in (1, 2):
        step = tracer.start_span(f"ROUND {number}", context=set_span_in_context(agent),
                                 start_time=T0 + (1600 + 300 * number) * MS, attributes={
            **common, "gen_ai.span.kind": "STEP", "gen_ai.operation.name": "react", "gen_ai.react.round": number,
            "input.value": "thought", "output.value": "action",
        })
        span(f"Planner LLM {number}", "LLM", step, 1600 + 300 * number, 1700 + 300 * number, {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "qwen-plus", "gen_ai.provider.name": "tongyi",
            "gen_ai.usage.input_tokens": "40", "gen_ai.usage.output_tokens": "8",
            "input.value": "thought", "output.value": "action",
        })
        step.end(end_time=T0 + (1750 + 300 * number) * MS)
    agent.end(end_time=T0 + 2400 * MS)
    root.end(end_time=T0 + 2500 * MS)
    provider.shutdown()
    return list(memory.get_finished_spans())


def send_phoenix(url: str, key: str | None, run: Run, **options) -> list[SpanExportResult]:
    """The Phoenix provider's way: one export request per span (SimpleSpanProcessor)."""
    out = exporter(url, key, **options)
    try:
        return [out.export([span]) for span in phoenix_spans(run)]
    finally:
        out.shutdown()


def send_phoenix_message(url: str, key: str | None, run: Run) -> list[SpanExportResult]:
    out = exporter(url, key)
    try:
        return [out.export([span]) for span in phoenix_message_spans(run)]
    finally:
        out.shutdown()


def send_arms(url: str, key: str | None, run: Run, **options) -> SpanExportResult:
    """The ARMS provider's way: the trace's spans in one export request, the key in the URL path."""
    out = arms_exporter(url, key, **options)
    try:
        return out.export(arms_spans(run))
    finally:
        out.shutdown()
