"""``TraceStore``: the read side of the trace store, for the CLI and for tests.

Each method reads one consistent WAL snapshot, so it never blocks (nor is blocked by) writers.
Aggregates count a call, a token or a dollar once: only inference spans (``semconv.INFERENCE_OPERATIONS``)
carry them, never the agent or chain spans that may repeat their children's totals. An inference span
directly under another is the same call seen again — by the server that ran it (llmobs-vllm under a
client's chat span) or by a transport under a framework's span (llmobs-openai under LangChain's or
Promptflow's) — when the parent reports tokens, or when neither reports any and both name the same model:
the parent counts. A parent without tokens over a child of the same model that has them leaves the count
to the child. A parent of another model without tokens (a router choosing a model) is a call of its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from llmobs import semconv as sc
from llmobs.store import schema

T = TypeVar("T")

_INFERENCE = tuple(sorted(sc.INFERENCE_OPERATIONS))
assert all(op.replace("_", "").isalpha() for op in _INFERENCE)  # safe as SQL literals
_OPERATIONS = ", ".join(f"'{op}'" for op in _INFERENCE)
_NO_TOKENS = "spans.input_tokens IS NULL AND spans.output_tokens IS NULL"
_SAME_MODEL = "COALESCE({0}.request_model, {0}.response_model) IS COALESCE(spans.request_model, spans.response_model)"
#: The spans whose calls, tokens and cost aggregates count (see the module docstring).
_COUNTED = (
    f"operation IN ({_OPERATIONS}) AND NOT EXISTS (SELECT 1 FROM spans AS p WHERE p.trace_id = spans.trace_id"
    f" AND p.span_id = spans.parent_span_id AND p.operation IN ({_OPERATIONS})"
    f" AND (p.input_tokens IS NOT NULL OR p.output_tokens IS NOT NULL OR ({_NO_TOKENS} AND {_SAME_MODEL.format('p')})))"
    f" AND NOT ({_NO_TOKENS} AND EXISTS (SELECT 1 FROM spans AS c WHERE c.trace_id = spans.trace_id"
    f" AND c.parent_span_id = spans.span_id AND c.operation IN ({_OPERATIONS})"
    f" AND (c.input_tokens IS NOT NULL OR c.output_tokens IS NOT NULL) AND {_SAME_MODEL.format('c')}))"
)
_HEX = frozenset(string.hexdigits.lower())


@dataclass(frozen=True)
class SpanRecord:
    """One stored span: the typed columns plus its decoded attributes, events and resource."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    span_kind: str | None
    operation: str | None
    service: str | None
    provider: str | None
    request_model: str | None
    response_model: str | None
    start_ns: int
    end_ns: int
    duration_ns: int
    status: str
    error_type: str | None
    ttft_ns: int | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    session_id: str | None
    user_id: str | None
    adjusted_count: float
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TraceSummary:
    """One trace as listed: its root span (or earliest span if the root is not stored) and totals."""

    trace_id: str
    name: str
    kind: str | None
    service: str | None
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    session_id: str | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelStats:
    """Inference totals for one (provider, model), weighted by each span's sampling adjusted count.

    ``model`` is the request model (the one the application chose), else the response model.
    Percentiles are in seconds; the TTFT ones cover only spans that recorded a TTFT.
    """

    provider: str | None
    model: str | None
    calls: float
    errors: float
    error_rate: float
    p50_duration_s: float | None
    p95_duration_s: float | None
    p50_ttft_s: float | None
    p95_ttft_s: float | None
    input_tokens: float
    output_tokens: float
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TraceQuery:
    """Filters of :meth:`TraceStore.search_traces`; a trace matches when all given filters hold.

    ``service``, ``model``, ``session`` and ``text`` match when any span of the trace matches (``text``:
    a case-insensitive substring of a span's name or attributes, which hold its inputs and outputs);
    ``status`` is ``"error"`` (some span failed) or ``"ok"`` (none did); the time range bounds the
    trace's start, in ns since the epoch (``since_ns`` inclusive, ``until_ns`` exclusive).
    """

    service: str | None = None
    model: str | None = None
    status: str | None = None
    session: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    text: str | None = None

    def conditions(self) -> list[tuple[str, list[Any]]]:
        """SQL conditions on single spans, most selective first; a matching trace has, for each
        condition, at least one span passing it."""
        conditions: list[tuple[str, list[Any]]] = []
        if self.session is not None:
            conditions.append(("session_id = ?", [self.session]))
        if self.model is not None:
            conditions.append(("(request_model = ? OR response_model = ?)", [self.model, self.model]))
        if self.service is not None:
            conditions.append(("service = ?", [self.service]))
        if self.status == "error":
            conditions.append(("status = 'ERROR'", []))
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(("(name LIKE ? ESCAPE '\\' OR attributes LIKE ? ESCAPE '\\')", [pattern, pattern]))
        return conditions

    def time_bounds(self) -> tuple[str, list[Any]]:
        """Conditions on span starts implied by the range on trace starts."""
        where, params = [], []
        if self.since_ns is not None:  # every span of a trace starts at or after the trace
            where.append("start_ns >= ?")
            params.append(self.since_ns)
        if self.until_ns is not None:  # a trace started before until_ns has its first span there
            where.append("start_ns < ?")
            params.append(self.until_ns)
        return " AND ".join(where) or "1", params

    def accepts(self, start_ns: int, errors: int) -> bool:
        """The conditions on the whole trace: its start and its error count."""
        return (
            (self.since_ns is None or start_ns >= self.since_ns)
            and (self.until_ns is None or start_ns < self.until_ns)
            and (self.status != "ok" or not errors)
        )


#: Position in the newest-first trace order: (trace start ns, trace id) of the last trace seen.
TraceCursor = tuple[int, str]


@dataclass(frozen=True)
class TracePage:
    """One page of :meth:`TraceStore.search_traces`; ``next`` continues after it (None: last page)."""

    traces: list[TraceSummary]
    next: TraceCursor | None


@dataclass(frozen=True)
class SessionSummary:
    """One session (``gen_ai.session.id``, or the conversation id): its traces and totals."""

    session_id: str
    trace_count: int
    span_count: int
    error_count: int
    first_ns: int
    last_ns: int
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    user_id: str | None
    service: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SeriesPoint:
    """Inference statistics of one group (a model, or a service) over one time bucket."""

    key: str | None
    start_ns: int
    stats: ModelStats

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "start_ns": self.start_ns, **self.stats.to_dict()}


class TraceStore:
    """Queries over the store at ``path`` (default: :func:`default_path`), safe while writers write.

    Raises :class:`FileNotFoundError` when there is no store file yet.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else schema.default_path()
        self._conn = schema.open_reader(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_traces(self, limit: int = 20, *, errors_only: bool = False,
                    service: str | None = None) -> list[TraceSummary]:
        """The ``limit`` most recently active traces, newest start first.

        ``errors_only`` keeps traces with at least one error span; ``service`` keeps traces with at
        least one span from that service.
        """
        where, params = [], []
        if service is not None:
            where.append("service = ?")
            params.append(service)
        if errors_only:
            where.append("status = 'ERROR'")
        sql = "SELECT trace_id FROM spans" + (" WHERE " + " AND ".join(where) if where else "")

        def read(conn: sqlite3.Connection) -> list[TraceSummary]:
            # Walk the start-time index backwards until enough distinct traces are seen.
            cursor = conn.execute(sql + " ORDER BY start_ns DESC", params)
            ids = _first_distinct((tid for (tid,) in cursor), limit)
            cursor.close()
            summaries = _summaries(conn, ids)
            return sorted(summaries, key=lambda s: s.start_ns, reverse=True)

        return self._read(read, [])

    def get_trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of the trace whose id is ``trace_id`` or starts with it, ordered by start.

        Raises :class:`KeyError` if no stored trace matches or the prefix matches several.
        """
        prefix = trace_id.strip().lower()
        if not prefix or len(prefix) > 32 or not _HEX.issuperset(prefix):
            raise KeyError(f"not a trace id: {trace_id!r} (expected up to 32 hex digits)")

        def read(conn: sqlite3.Connection) -> list[SpanRecord]:
            match = _resolve(conn, prefix)
            if match is None:
                return []
            rows = conn.execute(
                f"SELECT {', '.join(schema.COLUMNS)} FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
                (match,),
            ).fetchall()
            return [_span_record(row) for row in rows]

        spans = self._read(read, [])
        if not spans:
            raise KeyError(f"no trace {trace_id!r} in the store")
        return spans

    def model_stats(self, *, since_ns: int | None = None) -> list[ModelStats]:
        """Per (provider, model) inference statistics, busiest first, weighted by adjusted count."""
        sql = (
            "SELECT provider, COALESCE(request_model, response_model), duration_ns, ttft_ns,"
            " status = 'ERROR', input_tokens, output_tokens, cost_usd, adjusted_count"
            f" FROM spans WHERE {_COUNTED}"
        )
        params: list[Any] = []
        if since_ns is not None:
            sql += " AND start_ns >= ?"
            params.append(since_ns)
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall(), [])
        groups: dict[tuple[str | None, str | None], list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault((row[0], row[1]), []).append(row)
        stats = [_model_stats(key, group) for key, group in groups.items()]
        return sorted(stats, key=lambda s: (-s.calls, s.provider or "", s.model or ""))

    def search_traces(self, query: TraceQuery | None = None, limit: int = 50, *,
                      after: TraceCursor | None = None) -> TracePage:
        """Traces matching ``query``, newest start first, ``limit`` per page; ``after`` is the
        previous page's ``next``.

        Spans passing the most selective filter are walked newest first, and each trace met is checked
        against every filter. By the time the walk reaches time ``t`` every matching trace that started
        at or after ``t`` has been met, so the walk stops once more than ``limit`` of those are known: the
        page is exact without grouping the whole table.
        """
        query = query or TraceQuery()
        conditions = query.conditions()
        driver, params = conditions[0] if conditions else ("1", [])
        bounds, bound_params = query.time_bounds()
        where, params = f"{driver} AND {bounds}", [*params, *bound_params]
        if after is not None:
            where += " AND start_ns <= ?"
            params.append(after[0])
        sql = f"SELECT trace_id, start_ns FROM spans WHERE {where} ORDER BY start_ns DESC"

        def read(conn: sqlite3.Connection) -> TracePage:
            cursor = conn.execute(sql, params)
            seen: set[str] = set()
            kept: list[TraceCursor] = []
            while rows := cursor.fetchmany(256):
                fresh = list(dict.fromkeys(tid for tid, _ in rows if tid not in seen))
                seen.update(fresh)
                for tid, start, errors, *passed in _trace_checks(conn, fresh, conditions[1:]):
                    if all(passed) and query.accepts(start, errors) and (after is None or (start, tid) < after):
                        kept.append((start, tid))
                reached = rows[-1][1]
                if sum(start >= reached for start, _ in kept) > limit:
                    break
            cursor.close()
            kept.sort(reverse=True)
            page = kept[:max(limit, 0)]
            order = {tid: i for i, (_, tid) in enumerate(page)}
            summaries = sorted(_summaries(conn, list(order)), key=lambda s: order[s.trace_id])
            return TracePage(summaries, page[-1] if len(kept) > limit and page else None)

        return self._read(read, TracePage([], None))

    def sessions(self, limit: int = 50, *, after: tuple[int, str] | None = None) -> list[SessionSummary]:
        """Sessions, most recently active first; ``after`` is (last_ns, session_id) of the previous page's end."""
        having, params = "", []
        if after is not None:
            having = " HAVING MAX(start_ns) < ? OR (MAX(start_ns) = ? AND session_id < ?)"
            params += [after[0], after[0], after[1]]
        sql = (
            "SELECT session_id, COUNT(DISTINCT trace_id), COUNT(*), SUM(status = 'ERROR'), MIN(start_ns),"
            f" MAX(start_ns), SUM(CASE WHEN {_COUNTED} THEN input_tokens END),"
            f" SUM(CASE WHEN {_COUNTED} THEN output_tokens END), SUM(CASE WHEN {_COUNTED} THEN cost_usd END),"
            " MAX(user_id), MAX(service) FROM spans WHERE session_id IS NOT NULL GROUP BY session_id"
            f"{having} ORDER BY MAX(start_ns) DESC, session_id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, [*params, limit]).fetchall(), [])
        return [SessionSummary(*row) for row in rows]

    def timeseries(self, *, by: str = "model", since_ns: int, until_ns: int, buckets: int = 30) -> list[SeriesPoint]:
        """Inference statistics per ``by`` (``"model"`` or ``"service"``) in ``buckets`` equal time
        buckets from ``since_ns`` to ``until_ns``, weighted by adjusted count (as :meth:`model_stats`)."""
        if by not in ("model", "service"):
            raise ValueError(f"by must be 'model' or 'service', not {by!r}")
        key = "COALESCE(request_model, response_model)" if by == "model" else "service"
        sql = (
            f"SELECT provider, {key}, duration_ns, ttft_ns, status = 'ERROR', input_tokens, output_tokens,"
            f" cost_usd, adjusted_count, start_ns FROM spans WHERE {_COUNTED} AND start_ns >= ? AND start_ns < ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, [since_ns, until_ns]).fetchall(), [])
        width = max(1, -(-(until_ns - since_ns) // max(buckets, 1)))
        groups: dict[tuple[str | None, int], list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault((row[1], (row[9] - since_ns) // width), []).append(row[:9])
        points = [
            SeriesPoint(key, since_ns + bucket * width, _model_stats((None, key), group))
            for (key, bucket), group in groups.items()
        ]
        return sorted(points, key=lambda p: (p.key or "", p.start_ns))

    def facets(self) -> dict[str, list[str]]:
        """The distinct services and models in the store, for filter choices."""

        def read(conn: sqlite3.Connection) -> dict[str, list[str]]:
            services = conn.execute("SELECT DISTINCT service FROM spans WHERE service IS NOT NULL").fetchall()
            models = conn.execute(
                "SELECT DISTINCT request_model FROM spans WHERE request_model IS NOT NULL UNION SELECT DISTINCT"
                " response_model FROM spans WHERE request_model IS NULL AND response_model IS NOT NULL"
            ).fetchall()
            return {"services": sorted(s for (s,) in services), "models": sorted(m for (m,) in models)}

        return self._read(read, {"services": [], "models": []})

    def _read(self, fn: Callable[[sqlite3.Connection], T], empty: T) -> T:
        """Run ``fn`` in one read transaction; ``empty`` if no writer has created the schema yet."""

        def attempt() -> T:
            self._conn.execute("BEGIN")
            try:
                return fn(self._conn) if schema.has_schema(self._conn) else empty
            finally:
                self._conn.execute("COMMIT")

        return schema.retry_locked(attempt)


def weighted_percentile(values: Iterable[tuple[float, float]], q: float) -> float | None:
    """The smallest value whose cumulative weight reaches ``q`` of the total (None if no weight).

    ``values`` are (value, weight) pairs; with unit weights this is the nearest-rank percentile.
    """
    pairs = sorted((v, w) for v, w in values if w > 0)
    total = sum(w for _, w in pairs)
    if not total:
        return None
    target = q * total * (1 - 1e-12)  # tolerate float rounding in the running sum
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= target:
            return value
    return pairs[-1][0]


def _first_distinct(ids: Iterable[str], limit: int) -> list[str]:
    if limit <= 0:
        return []
    seen: dict[str, None] = {}  # insertion-ordered set
    for tid in ids:
        seen[tid] = None
        if len(seen) >= limit:
            break
    return list(seen)


def _trace_checks(conn: sqlite3.Connection, ids: list[str],
                  conditions: list[tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
    """(trace id, start of its first span, error spans, then per condition whether a span passes it)."""
    if not ids:
        return []
    checks = "".join(f", MAX({sql})" for sql, _ in conditions)
    params = [p for _, condition_params in conditions for p in condition_params]
    return conn.execute(
        f"SELECT trace_id, MIN(start_ns), SUM(status = 'ERROR'){checks} FROM spans"
        " WHERE trace_id IN (SELECT value FROM json_each(?)) GROUP BY trace_id",
        (*params, json.dumps(ids)),
    ).fetchall()


def _summaries(conn: sqlite3.Connection, ids: list[str]) -> list[TraceSummary]:
    if not ids:
        return []
    selected = "trace_id IN (SELECT value FROM json_each(?))"
    id_list = json.dumps(ids)
    totals = {
        row[0]: row[1:] for row in conn.execute(
            "SELECT trace_id, COUNT(*), SUM(status = 'ERROR'), MIN(start_ns), MAX(end_ns),"
            f" SUM(CASE WHEN {_COUNTED} THEN input_tokens END),"
            f" SUM(CASE WHEN {_COUNTED} THEN output_tokens END),"
            f" SUM(CASE WHEN {_COUNTED} THEN total_tokens END),"
            f" SUM(CASE WHEN {_COUNTED} THEN cost_usd END),"
            f" MAX(session_id) FROM spans WHERE {selected} GROUP BY trace_id",
            (id_list,),
        )
    }
    # The root is the parentless span; failing that (root not exported yet), the earliest span.
    roots = conn.execute(
        "SELECT trace_id, name, span_kind, service, duration_ns, status, parent_span_id IS NULL FROM ("
        " SELECT *, ROW_NUMBER() OVER (PARTITION BY trace_id ORDER BY parent_span_id IS NOT NULL, start_ns)"
        f" AS rn FROM spans WHERE {selected}) WHERE rn = 1",
        (id_list,),
    )
    summaries = []
    for tid, name, kind, service, root_duration, root_status, is_root in roots:
        count, errors, start, end, tokens_in, tokens_out, tokens_total, cost, session = totals[tid]
        summaries.append(TraceSummary(
            trace_id=tid, name=name, kind=kind, service=service, start_ns=start,
            duration_ns=root_duration if is_root else end - start, span_count=count, error_count=errors,
            input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_total, cost_usd=cost,
            session_id=session, status="ERROR" if errors else (root_status if is_root else "UNSET"),
        ))
    return summaries


def _resolve(conn: sqlite3.Connection, prefix: str) -> str | None:
    """The one stored trace id starting with ``prefix``; None if none; KeyError if several."""
    upper = prefix + "g"  # sorts after every hex digit
    first = conn.execute(
        "SELECT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? ORDER BY trace_id LIMIT 1",
        (prefix, upper),
    ).fetchone()
    if first is None:
        return None
    other = conn.execute(
        "SELECT trace_id FROM spans WHERE trace_id > ? AND trace_id < ? ORDER BY trace_id LIMIT 1",
        (first[0], upper),
    ).fetchone()
    if other is not None:
        raise KeyError(f"trace id prefix {prefix!r} is ambiguous ({first[0]}, {other[0]}, ...): give more digits")
    return first[0]


def _span_record(row: tuple[Any, ...]) -> SpanRecord:
    fields = dict(zip(schema.COLUMNS, row, strict=True))
    for name in ("attributes", "events", "resource"):
        fields[name] = json.loads(fields[name])
    return SpanRecord(**fields)


def _model_stats(key: tuple[str | None, str | None], rows: list[tuple[Any, ...]]) -> ModelStats:
    calls = errors = tokens_in = tokens_out = cost = 0.0
    durations, ttfts = [], []
    for _, _, duration_ns, ttft_ns, failed, input_tokens, output_tokens, cost_usd, weight in rows:
        calls += weight
        errors += weight * failed
        tokens_in += weight * (input_tokens or 0)
        tokens_out += weight * (output_tokens or 0)
        cost += weight * (cost_usd or 0.0)
        durations.append((duration_ns / 1e9, weight))
        if ttft_ns is not None:
            ttfts.append((ttft_ns / 1e9, weight))
    return ModelStats(
        provider=key[0], model=key[1], calls=calls, errors=errors,
        error_rate=errors / calls if calls else 0.0,
        p50_duration_s=weighted_percentile(durations, 0.50),
        p95_duration_s=weighted_percentile(durations, 0.95),
        p50_ttft_s=weighted_percentile(ttfts, 0.50),
        p95_ttft_s=weighted_percentile(ttfts, 0.95),
        input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost,
    )
