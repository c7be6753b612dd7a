"""What ``llmobs analyze`` reads from the store: model calls with their text, and the failures.

Reads go through a read-only connection in one snapshot (the same way :class:`llmobs.store.TraceStore`
reads), so analysis never blocks applications that are writing. Content may have been captured on the
span (``SPAN_ONLY``) or on the inference details event (``EVENT_ONLY``); both are read. A call whose
output was not captured has ``output`` None, and the evaluators that need the text skip it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmobs import semconv as sc
from llmobs.analyze.text import asks_for_json
from llmobs.store import schema

#: Operations whose spans are model calls that produce text (embeddings are inference but not analysed).
LLM_OPERATIONS = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_GENERATE_CONTENT)


@dataclass(frozen=True)
class Document:
    content: str
    score: float | None = None


@dataclass(frozen=True)
class Retrieval:
    """The retrieval a model call was given: the query and the documents found."""

    span_id: str
    query: str
    documents: tuple[Document, ...]


@dataclass
class LLMCall:
    """One stored model call as the analysis sees it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str | None
    provider: str | None
    model: str | None
    start_ns: int
    end_ns: int
    duration_ns: int
    ttft_ns: int | None
    status: str
    error_type: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    adjusted_count: float
    #: The text of the last user message (the question), "" when not captured.
    question: str
    #: Every input text (system instructions and all messages), for checks on what was asked.
    prompt: str
    #: The answer's text; None when the output was not captured.
    output: str | None
    has_tool_calls: bool
    finish_reasons: tuple[str, ...]
    json_requested: bool
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    retrieval: Retrieval | None = None

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    def text(self) -> str:
        """What the call was about, for embedding: the question, then the answer."""
        return f"{self.question}\n{self.output or ''}".strip()


@dataclass
class Failure:
    """A failed span where the failure started (no failed child), with what its error says."""

    trace_id: str
    span_id: str
    name: str
    operation: str | None
    span_kind: str | None
    provider: str | None
    model: str | None
    error_type: str | None
    message: str
    http_status: int | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    calls: list[LLMCall]
    failures: list[Failure]


_CALL_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, service, provider, COALESCE(request_model, response_model),"
    " start_ns, end_ns, duration_ns, ttft_ns, status, error_type, input_tokens, output_tokens, cost_usd,"
    " adjusted_count, attributes, events"
)


def load(path: str | Path, *, since_ns: int | None = None, service: str | None = None) -> Corpus:
    """Model calls and origin failures started at or after ``since_ns`` (from ``service``, if given)."""
    conn = schema.open_reader(Path(path))
    try:
        def read() -> Corpus:
            conn.execute("BEGIN")
            try:
                if not schema.has_schema(conn):
                    return Corpus([], [])
                return _read(conn, since_ns, service)
            finally:
                conn.execute("COMMIT")

        return schema.retry_locked(read)
    finally:
        conn.close()


def _filters(since_ns: int | None, service: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if since_ns is not None:
        where.append("start_ns >= ?")
        params.append(since_ns)
    if service is not None:
        where.append("service = ?")
        params.append(service)
    return (" AND ".join(where) or "1"), params


def _read(conn: sqlite3.Connection, since_ns: int | None, service: str | None) -> Corpus:
    where, params = _filters(since_ns, service)
    ops = ", ".join("?" * len(LLM_OPERATIONS))
    rows = conn.execute(
        f"SELECT {_CALL_COLUMNS} FROM spans WHERE (operation IN ({ops}) OR (operation IS NULL AND span_kind = ?))"
        f" AND {where} ORDER BY start_ns, span_id",
        (*LLM_OPERATIONS, sc.KIND_LLM, *params),
    ).fetchall()
    calls = [_call(row) for row in rows]
    # One model call traced on both sides (a vLLM server span under the client's chat span) is one call:
    # keep the outermost, which carries the application's content.
    keys = {(c.trace_id, c.span_id) for c in calls}
    calls = [c for c in calls if (c.trace_id, c.parent_span_id) not in keys]
    _attach_retrievals(conn, calls)
    failures = _failures(conn, where, params)
    return Corpus(calls, failures)


def _call(row: tuple[Any, ...]) -> LLMCall:
    (trace_id, span_id, parent, name, service, provider, model, start, end, duration, ttft, status, error_type,
     tokens_in, tokens_out, cost, adjusted, attributes, events) = row
    attrs = _json(attributes, {})
    event_list = _json(events, [])
    content = dict(attrs)
    for event in event_list:  # EVENT_ONLY capture puts the content on the inference details event
        if isinstance(event, dict) and event.get("name") == sc.EVENT_INFERENCE_DETAILS:
            for key, value in (event.get("attributes") or {}).items():
                content.setdefault(key, value)
    inputs = _messages(content.get(sc.INPUT_MESSAGES))
    system = _messages(content.get(sc.SYSTEM_INSTRUCTIONS), parts_only=True)
    outputs = _messages(content.get(sc.OUTPUT_MESSAGES))
    question = next((_text(m) for m in reversed(inputs) if m.get("role") == sc.ROLE_USER), "")
    if not question and not inputs:
        question = _plain(content.get(sc.INPUT_VALUE))
    prompt = "\n".join([*(_text(m) for m in system), *(_text(m) for m in inputs)]) or question
    output: str | None
    if sc.OUTPUT_MESSAGES in content:
        output = "\n".join(_text(m) for m in outputs if m.get("role", sc.ROLE_ASSISTANT) == sc.ROLE_ASSISTANT)
    elif sc.OUTPUT_VALUE in content:
        output = _plain(content.get(sc.OUTPUT_VALUE))
    elif status != "ERROR" and tokens_out == 0:
        output = ""  # the provider reported no output tokens: empty even though no content was captured
    else:
        output = None
    has_tool_calls = any(
        isinstance(p, dict) and p.get("type") == sc.PART_TOOL_CALL for m in outputs for p in m.get("parts") or ()
    )
    finish = content.get(sc.RESPONSE_FINISH_REASONS)
    reasons: list[str] = [str(r) for r in finish] if isinstance(finish, list | tuple) else []
    if isinstance(finish, str):
        parsed = _json(finish, finish)
        reasons = [str(r) for r in parsed] if isinstance(parsed, list) else [finish]
    if not reasons:
        reasons = [str(m["finish_reason"]) for m in outputs if m.get("finish_reason")]
    for key in (sc.LEGACY_FINISH_REASON, sc.OI_FINISH_REASON, sc.VLLM_FINISH_REASON):
        if not reasons and content.get(key):
            reasons = [str(content[key])]
    return LLMCall(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, service=service, provider=provider,
        model=model, start_ns=start, end_ns=end, duration_ns=duration, ttft_ns=ttft, status=status,
        error_type=error_type, input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost,
        adjusted_count=adjusted, question=question, prompt=prompt, output=output, has_tool_calls=has_tool_calls,
        finish_reasons=tuple(reasons), json_requested=_json_requested(content, prompt), attributes=attrs,
        events=event_list,
    )


def _json_requested(attrs: Mapping[str, Any], prompt: str) -> bool:
    if attrs.get(sc.OUTPUT_TYPE) == sc.OUTPUT_TYPE_JSON:
        return True
    params = attrs.get(sc.OI_INVOCATION_PARAMETERS)  # OpenInference: the request parameters as JSON
    if isinstance(params, str) and ("json_object" in params or "json_schema" in params):
        return True
    return asks_for_json(prompt)


def _attach_retrievals(conn: sqlite3.Connection, calls: list[LLMCall]) -> None:
    """Give each call the latest retrieval that finished before it started under the same parent (or,
    failing that, anywhere earlier in its trace)."""
    if not calls:
        return
    traces = json.dumps(sorted({c.trace_id for c in calls}))
    rows = conn.execute(
        "SELECT trace_id, span_id, parent_span_id, end_ns, attributes FROM spans"
        " WHERE trace_id IN (SELECT value FROM json_each(?)) AND (operation = ? OR span_kind = ?) ORDER BY end_ns",
        (traces, sc.OP_RETRIEVAL, sc.KIND_RETRIEVER),
    ).fetchall()
    by_trace: dict[str, list[tuple[str | None, int, Retrieval]]] = {}
    for trace_id, span_id, parent, end, attributes in rows:
        attrs = _json(attributes, {})
        docs = _documents(attrs.get(sc.RETRIEVAL_DOCUMENTS, attrs.get(sc.OUTPUT_VALUE)))
        query = _plain(attrs.get(sc.RETRIEVAL_QUERY_TEXT, attrs.get(sc.INPUT_VALUE)))
        by_trace.setdefault(trace_id, []).append((parent, end, Retrieval(span_id, query, tuple(docs))))
    for call in calls:
        earlier = [(parent, r) for parent, end, r in by_trace.get(call.trace_id, ()) if end <= call.start_ns]
        siblings = [r for parent, r in earlier if parent == call.parent_span_id]
        chosen = siblings or [r for _, r in earlier]
        if chosen:
            call.retrieval = chosen[-1]


def _failures(conn: sqlite3.Connection, where: str, params: list[Any]) -> list[Failure]:
    rows = conn.execute(
        "SELECT trace_id, span_id, parent_span_id, name, operation, span_kind, provider,"
        f" COALESCE(request_model, response_model), error_type, attributes, events FROM spans"
        f" WHERE status = 'ERROR' AND {where} ORDER BY start_ns, span_id",
        params,
    ).fetchall()
    failed_parents = {(row[0], row[2]) for row in rows if row[2]}
    failures = []
    for trace_id, span_id, _parent, name, operation, kind, provider, model, error_type, attributes, events in rows:
        if (trace_id, span_id) in failed_parents:
            continue  # a child failed first: that child is where the failure started
        attrs = _json(attributes, {})
        messages = []
        for event in _json(events, []):
            if isinstance(event, dict) and event.get("name") == sc.EVENT_EXCEPTION:
                event_attrs = event.get("attributes") or {}
                error_type = error_type or event_attrs.get(sc.EXCEPTION_TYPE)
                if event_attrs.get(sc.EXCEPTION_MESSAGE):
                    messages.append(str(event_attrs[sc.EXCEPTION_MESSAGE]))
        if attrs.get(sc.STATUS_REASON):
            messages.append(str(attrs[sc.STATUS_REASON]))
        status_code = attrs.get(sc.HTTP_RESPONSE_STATUS_CODE)
        failures.append(Failure(
            trace_id=trace_id, span_id=span_id, name=name, operation=operation, span_kind=kind, provider=provider,
            model=model, error_type=error_type, message="\n".join(messages),
            http_status=_int(status_code), attributes=attrs,
        ))
    return failures


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _json(value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return default if value is None else value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return default


def _messages(value: Any, *, parts_only: bool = False) -> list[dict[str, Any]]:
    """GenAI messages (JSON text or already decoded) as a list of dicts; system instructions (a list of
    parts) become one message."""
    parsed = _json(value, None)
    if isinstance(parsed, str):
        return [{"role": sc.ROLE_USER, "parts": [{"type": sc.PART_TEXT, "content": parsed}]}]
    if not isinstance(parsed, list):
        return []
    if parts_only or (parsed and isinstance(parsed[0], dict) and "parts" not in parsed[0] and "type" in parsed[0]):
        return [{"role": sc.ROLE_SYSTEM, "parts": [p for p in parsed if isinstance(p, dict)]}]
    return [m for m in parsed if isinstance(m, dict)]


def _text(message: Mapping[str, Any]) -> str:
    texts = []
    for part in message.get("parts") or ():
        if isinstance(part, dict) and part.get("type", sc.PART_TEXT) == sc.PART_TEXT:
            content = part.get("content")
            if isinstance(content, str):
                texts.append(content)
    if not texts and isinstance(message.get("content"), str):
        texts.append(message["content"])
    return "\n".join(texts)


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _documents(value: Any) -> list[Document]:
    parsed = _json(value, None)
    if not isinstance(parsed, list):
        return []
    docs = []
    for item in parsed:
        if isinstance(item, str):
            docs.append(Document(item))
        elif isinstance(item, dict):
            content = next((item[k] for k in ("content", "text", "page_content", "document") if k in item), "")
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            score = item.get("score", item.get("relevance_score", metadata.get("score")))
            docs.append(Document(_plain(content), float(score) if isinstance(score, int | float) else None))
    return docs


def texts(calls: Iterable[LLMCall]) -> list[str]:
    return [c.text() for c in calls]
