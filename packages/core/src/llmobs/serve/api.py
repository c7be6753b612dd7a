"""The JSON API under ``/api`` that the console's pages use, and that scripts can use the same way.

Handlers are plain functions from a :class:`~llmobs.store.TraceStore` and query parameters to
``(status, JSON data)``. Span views add a ``detail`` object that spells out what the console shows
(messages, tool call, documents, sampling) with attribute names resolved here, through
``llmobs.semconv``, so the browser code never spells an attribute name.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from llmobs import semconv as sc
from llmobs.store import SpanRecord, TraceStore
from llmobs.store.queries import TraceQuery

Params = Mapping[str, list[str]]
Response = tuple[int, Any]

MAX_LIMIT = 500
_SESSION_TRACES = 200
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CURSOR = re.compile(r"^(\d{1,20})-([0-9a-f]{32})$")
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


class BadRequest(ValueError):
    """A query parameter that cannot be used (HTTP 400)."""


# name, query parameters, what it returns — served at /api and kept in the README.
ENDPOINTS = (
    ("GET /api/traces", "service, model, status (ok|error), session, since, until, q, limit, after",
     "traces, newest first: {traces: [...], next}; pass next as after= for the next page"),
    ("GET /api/traces/{trace_id}", "", "every span of the trace with a detail view: {trace_id, spans}"),
    ("GET /api/sessions", "limit, after", "sessions, most recently active first: {sessions, next}"),
    ("GET /api/sessions/{session_id}", "", "the session's traces in order with each turn's input and output"),
    ("GET /api/stats", "since", "per-model inference statistics (as `llmobs stats`)"),
    ("GET /api/timeseries", "by (model|service), since, until, buckets",
     "inference statistics per model or service per time bucket: {series: [{key, points}]}"),
    ("GET /api/facets", "", "the services and models in the store"),
)


def handle(store: TraceStore, path: str, params: Params) -> Response:
    """Route one GET request under /api."""
    parts = [urllib.parse.unquote(p) for p in path.split("/") if p][1:]  # after "api"
    try:
        if not parts:
            return 200, {"endpoints": [{"endpoint": e, "parameters": p, "returns": r} for e, p, r in ENDPOINTS],
                         "times": "since/until: ns since the epoch, or a duration back from now (15m, 1h, 7d)"}
        route = _ROUTES.get((parts[0], len(parts)))
        if route is None:
            return 404, {"error": "no such endpoint; see /api"}
        return route(store, params, *parts[1:])
    except BadRequest as exc:
        return 400, {"error": str(exc)}


# --- traces ---------------------------------------------------------------------------------------


def traces(store: TraceStore, params: Params) -> Response:
    status = _param(params, "status")
    if status not in (None, "ok", "error"):
        raise BadRequest("status must be ok or error")
    query = TraceQuery(
        service=_param(params, "service"), model=_param(params, "model"), status=status,
        session=_param(params, "session"), since_ns=_time(params, "since"), until_ns=_time(params, "until"),
        text=_param(params, "q"),
    )
    page = store.search_traces(query, _limit(params, 50), after=_cursor(params))
    return 200, {"traces": [t.to_dict() for t in page.traces],
                 "next": f"{page.next[0]}-{page.next[1]}" if page.next else None}


def trace(store: TraceStore, params: Params, trace_id: str) -> Response:
    if not _TRACE_ID.match(trace_id):
        raise BadRequest("a trace id is up to 32 hex digits")
    try:
        spans = store.get_trace(trace_id)
    except KeyError as exc:
        return 404, {"error": exc.args[0]}
    return 200, {"trace_id": spans[0].trace_id, "spans": [span_view(s) for s in spans]}


def span_view(span: SpanRecord) -> dict[str, Any]:
    """A stored span as the API serves it: its record plus ``detail``, the parts the console renders."""
    attrs = dict(span.attributes)
    for event in span.events:  # content recorded on an event (EVENT_ONLY capture) shows the same way
        if event.get("name") == sc.EVENT_INFERENCE_DETAILS:
            for key, value in (event.get("attributes") or {}).items():
                attrs.setdefault(key, value)
    view = span.to_dict()
    view["detail"] = {
        "input_messages": _parsed(attrs.get(sc.INPUT_MESSAGES)),
        "output_messages": _parsed(attrs.get(sc.OUTPUT_MESSAGES)),
        "system_instructions": _parsed(attrs.get(sc.SYSTEM_INSTRUCTIONS)),
        "tool_definitions": _parsed(attrs.get(sc.TOOL_DEFINITIONS)),
        "input_value": attrs.get(sc.INPUT_VALUE),
        "output_value": attrs.get(sc.OUTPUT_VALUE),
        "tool_name": attrs.get(sc.TOOL_NAME),
        "tool_call_id": attrs.get(sc.TOOL_CALL_ID),
        "tool_arguments": _parsed(attrs.get(sc.TOOL_CALL_ARGUMENTS)),
        "tool_result": _parsed(attrs.get(sc.TOOL_CALL_RESULT)),
        "retrieval_query": attrs.get(sc.RETRIEVAL_QUERY_TEXT),
        "documents": _parsed(attrs.get(sc.RETRIEVAL_DOCUMENTS)),
        "agent_name": attrs.get(sc.AGENT_NAME),
        "finish_reasons": attrs.get(sc.RESPONSE_FINISH_REASONS),
        "cache_read_tokens": attrs.get(sc.USAGE_CACHE_READ_INPUT_TOKENS),
        "reasoning_tokens": attrs.get(sc.USAGE_REASONING_OUTPUT_TOKENS),
        "cost_input_usd": attrs.get(sc.COST_INPUT_USD),
        "cost_output_usd": attrs.get(sc.COST_OUTPUT_USD),
        "user_ttft_ns": attrs.get(sc.USER_TIME_TO_FIRST_TOKEN_NS),
        "sampling_reason": attrs.get(sc.SAMPLING_REASON),
        "status_reason": attrs.get(sc.STATUS_REASON),
        "framework": attrs.get(sc.FRAMEWORK),
        "request": {k.rsplit(".", 1)[-1]: v for k, v in attrs.items() if k in _REQUEST_PARAMETERS},
    }
    return view


_REQUEST_PARAMETERS = frozenset({
    sc.REQUEST_TEMPERATURE, sc.REQUEST_MAX_TOKENS, sc.REQUEST_TOP_P, sc.REQUEST_TOP_K, sc.REQUEST_SEED,
    sc.REQUEST_STREAM, sc.REQUEST_STOP_SEQUENCES, sc.REQUEST_CHOICE_COUNT,
})  # fmt: skip


# --- sessions -------------------------------------------------------------------------------------


def sessions(store: TraceStore, params: Params) -> Response:
    after = None
    raw = _param(params, "after")
    if raw is not None:
        last, _, session = raw.partition("-")
        if not last.isdigit():
            raise BadRequest("after must be a next value from a previous page")
        after = (int(last), session)
    limit = _limit(params, 50)
    found = store.sessions(limit, after=after)
    more = len(found) == limit
    return 200, {"sessions": [s.to_dict() for s in found],
                 "next": f"{found[-1].last_ns}-{found[-1].session_id}" if found and more else None}


def session(store: TraceStore, params: Params, session_id: str) -> Response:
    page = store.search_traces(TraceQuery(session=session_id), _SESSION_TRACES)
    if not page.traces:
        return 404, {"error": f"no session {session_id!r} in the store"}
    turns = []
    for summary in reversed(page.traces):  # oldest first: a conversation reads top down
        spans = store.get_trace(summary.trace_id)
        turn = summary.to_dict()
        turn["input"], turn["output"] = _turn(spans)
        turns.append(turn)
    return 200, {"session_id": session_id, "turns": turns, "truncated": page.next is not None}


def _turn(spans: list[SpanRecord]) -> tuple[Any, Any]:
    """What the user said and what they got back in one trace: the root's input and output values,
    else the first model call's last user message and the last model call's answer."""
    root = next((s for s in spans if s.parent_span_id is None), spans[0])
    said, answered = root.attributes.get(sc.INPUT_VALUE), root.attributes.get(sc.OUTPUT_VALUE)
    calls = [span_view(s)["detail"] for s in spans if s.operation in sc.INFERENCE_OPERATIONS]
    if said is None and calls:
        users = [m for m in calls[0]["input_messages"] or [] if isinstance(m, dict) and m.get("role") == sc.ROLE_USER]
        said = users[-1] if users else None
    if answered is None and calls:
        outputs = calls[-1]["output_messages"]
        answered = outputs[0] if isinstance(outputs, list) and outputs else None
    return said, answered


# --- statistics -----------------------------------------------------------------------------------


def stats(store: TraceStore, params: Params) -> Response:
    return 200, {"models": [m.to_dict() for m in store.model_stats(since_ns=_time(params, "since"))]}


def timeseries(store: TraceStore, params: Params) -> Response:
    by = _param(params, "by") or "model"
    if by not in ("model", "service"):
        raise BadRequest("by must be model or service")
    until = _time(params, "until") or time.time_ns()
    since = _time(params, "since") or until - 3600 * 10**9
    if since >= until:
        raise BadRequest("since must be before until")
    buckets = min(_limit(params, 30, name="buckets"), 240)
    width = -(-(until - since) // buckets)
    series: dict[str | None, list[dict[str, Any]]] = {}
    for point in store.timeseries(by=by, since_ns=since, until_ns=until, buckets=buckets):
        # the bucket's index: ns timestamps lose precision as JavaScript numbers
        series.setdefault(point.key, []).append({**point.to_dict(), "bucket": (point.start_ns - since) // width})
    return 200, {"by": by, "since_ns": since, "until_ns": until, "buckets": buckets, "bucket_ns": width,
                 "series": [{"key": key, "points": points} for key, points in series.items()]}


def facets(store: TraceStore, params: Params) -> Response:
    return 200, store.facets()


_ROUTES: dict[tuple[str, int], Callable[..., Response]] = {
    ("traces", 1): traces,
    ("traces", 2): trace,
    ("sessions", 1): sessions,
    ("sessions", 2): session,
    ("stats", 1): stats,
    ("timeseries", 1): timeseries,
    ("facets", 1): facets,
}


# --- parameters -----------------------------------------------------------------------------------


def _param(params: Params, name: str) -> str | None:
    values = params.get(name)
    value = values[-1].strip() if values else ""
    return value or None


def _limit(params: Params, default: int, name: str = "limit") -> int:
    raw = _param(params, name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _time(params: Params, name: str) -> int | None:
    """ns since the epoch, or a duration back from now (``15m``, ``1h``, ``7d``)."""
    raw = _param(params, name)
    if raw is None:
        return None
    if raw.isdigit() and len(raw) <= 20:
        return int(raw)
    match = _DURATION.match(raw)
    if match is None:
        raise BadRequest(f"{name} must be ns since the epoch or a duration such as 15m, 1h, 7d")
    return time.time_ns() - int(float(match[1]) * _UNITS[match[2]] * 1e9)


def _cursor(params: Params) -> tuple[int, str] | None:
    raw = _param(params, "after")
    if raw is None:
        return None
    match = _CURSOR.match(raw)
    if match is None:
        raise BadRequest("after must be a next value from a previous page")
    return int(match[1]), match[2]


def _parsed(value: Any) -> Any:
    """A JSON attribute as data; text that is not JSON (e.g. a cut plain string) as it is."""
    if isinstance(value, str) and value[:1] in ("[", "{", '"'):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value
