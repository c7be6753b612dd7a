"""``SQLiteSpanExporter``: finished spans into the local trace store, plus its retention.

Meant to sit behind the SDK's ``BatchSpanProcessor``, whose worker thread calls :meth:`export`, so a
batch is written directly: converted cheaply (typed columns plus one ``json`` encoding of the
attributes) and inserted with ``executemany`` in one transaction. It never raises into the SDK;
what it cannot write is counted in :mod:`llmobs.selfstats`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_TYPE
from opentelemetry.trace import StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.content.serialize import valid_text
from llmobs.store import schema

# Inherited connections are never used nor closed in a forked child: closing one could checkpoint or
# unlock on the parent's behalf. Keeping a reference stops garbage collection from closing them.
_inherited: list[sqlite3.Connection] = []


@dataclass(frozen=True)
class Retention:
    """How much history the store keeps; ``None`` disables a limit.

    Applied by the writer once when it opens the store and then at most every ``check_every_s``.
    Age deletes whole traces whose first span started before the cutoff; size deletes whole oldest
    traces until the live pages fit in ``max_bytes``. Freed pages are handed back to the file system
    by ``PRAGMA incremental_vacuum`` (stores are created with ``auto_vacuum = INCREMENTAL``); the file
    shrinks at the next WAL checkpoint.
    """

    max_age_days: float | None = 7
    max_bytes: int | None = 512 * 1024 * 1024
    check_every_s: float = 60


DEFAULT_RETENTION = Retention()
#: Size enforcement gives up after this many delete rounds, so one check stays bounded.
_SIZE_ROUNDS = 8
#: Spans whose traces one retention transaction deletes at most.
_DELETE_CHUNK = 5000
#: WAL pages at which the writer checkpoints by itself, in export(); below it the background checkpointer
#: keeps the WAL short (SQLite's default, 1000, would often beat it to the work).
WRITER_AUTOCHECKPOINT = 2000
#: Attribute JSON committed (bytes) after which the background checkpointer is woken: a busy writer's every
#: batch (a checkpoint that keeps up lets the WAL restart), but not a quiet application's every few spans.
CHECKPOINT_AFTER_BYTES = 256 * 1024
#: How often an idle checkpointer thread checks that its exporter still exists.
_IDLE_CHECK_S = 30.0


class SQLiteSpanExporter(SpanExporter):
    """Writes span batches into the SQLite trace store at ``path`` (default: :func:`default_path`).

    Thread-safe; the connection is opened on first export and reopened in a forked child. Committed pages
    are copied from the WAL into the database (a checkpoint, whose fsyncs were about 40% of an export's
    time) by a :class:`_Checkpointer` thread, so exports only pay for it when the WAL outgrows
    :data:`WRITER_AUTOCHECKPOINT` pages.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 retention: Retention | None = DEFAULT_RETENTION) -> None:
        self.path = Path(path).expanduser() if path is not None else schema.default_path()
        self.retention = retention
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        self._uncheckpointed = 0  # attribute JSON bytes committed since the checkpointer was last woken
        self._pid = os.getpid()
        self._retention_due = 0.0
        self._shut_down = False
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := ref()) is not None and m())

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = span_rows(spans)
        if rows and not self.write_rows(rows):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if len(rows) == len(spans) else SpanExportResult.FAILURE

    def write_rows(self, rows: list[tuple[Any, ...]], *, wait: bool = True) -> bool | None:
        """Commit rows made by :func:`span_row` (or :func:`span_rows`) in one transaction; False (counted as
        dropped) if it failed. With ``wait=False``, None at once, nothing written nor counted, while another
        writer holds the lock."""
        done = self._write(rows, wait)
        if done is False:
            selfstats.count("store.dropped_spans", len(rows))
        return done

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every export is committed before it returns."""
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._shut_down = True
            self._close()

    def _write(self, rows: list[tuple[Any, ...]], wait: bool = True) -> bool | None:
        with self._lock:
            if self._shut_down:
                return False
            try:
                conn = self._connection()
                if wait:
                    schema.write(conn, lambda c: _insert(c, rows))
                elif not schema.try_write(conn, lambda c: _insert(c, rows))[0]:
                    return None
            except Exception as exc:
                selfstats.failure("store.write_failed", exc)
                self._close()  # reopen on the next batch, in case the connection itself is broken
                return False
            if self._checkpointer is not None:
                self._uncheckpointed += sum(len(row[_ATTRIBUTES]) for row in rows)
                if self._uncheckpointed >= CHECKPOINT_AFTER_BYTES:
                    self._uncheckpointed = 0
                    self._checkpointer.poke()
            self._maybe_apply_retention(conn)
            return True

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked without the at-fork hook running (e.g. from C code)
            self._forget_connection()
        if self._conn is None:
            self._conn = schema.open_writer(self.path)
            self._retention_due = 0.0
            try:
                self._conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")
                self._checkpointer = _Checkpointer(self.path, self)
            except Exception as exc:  # no thread to spare: the writer checkpoints by itself, as SQLite does
                self._conn.execute("PRAGMA wal_autocheckpoint = 1000")
                selfstats.failure("store.checkpointer_failed", exc)
        return self._conn

    def _close(self) -> None:
        if self._pid != os.getpid():
            self._forget_connection()
            return
        if self._checkpointer is not None:  # first, so the writer's close is the last one (and cleans up)
            self._checkpointer.stop()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork time
        self._forget_connection()

    def _forget_connection(self) -> None:
        if self._conn is not None:
            _inherited.append(self._conn)
        if self._checkpointer is not None:  # its thread is not in this process; its connection is the parent's
            _inherited.append(self._checkpointer)
        self._conn = None
        self._checkpointer = None
        self._pid = os.getpid()

    def _maybe_apply_retention(self, conn: sqlite3.Connection) -> None:
        if self.retention is None or time.monotonic() < self._retention_due:
            return
        self._retention_due = time.monotonic() + self.retention.check_every_s
        try:
            apply_retention(conn, self.retention)
        except Exception as exc:  # the batch is already committed; retention retries next time
            selfstats.failure("store.retention_failed", exc)


class _Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own thread and connection when the writer has committed
    :data:`CHECKPOINT_AFTER_BYTES` more.

    A passive checkpoint never blocks the writer nor waits for readers; SQLite releases the GIL for the whole
    of it, so its page copies and fsyncs overlap the next batch's conversion and insert. The WAL restarts
    from its beginning once a checkpoint has caught up before the writer's next transaction; when it has
    not, the writer's own checkpoint at :data:`WRITER_AUTOCHECKPOINT` pages finishes the job.
    """

    def __init__(self, path: Path, owner: object) -> None:
        self.path = path
        self.runs = 0  # checkpoints completed (for tests)
        self._owner = weakref.ref(owner)  # an exporter dropped without shutdown() ends the thread too
        self._due = threading.Event()
        self._stopping = False
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="llmobs-store-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._due.set()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, after the checkpoint in progress (if any)."""
        self._stopping = True
        self._due.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            if not self._due.wait(_IDLE_CHECK_S):
                if self._owner() is None:
                    break
                continue
            self._due.clear()
            if self._stopping:
                break
            try:
                if self._conn is None:  # mode=rw: never creates a file the writer did not
                    self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=0,
                                                 isolation_level=None, check_same_thread=False)
                    self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.runs += 1
            except Exception as exc:  # the writer's own checkpoints still run; try again after the next commit
                if not schema.is_locked(exc):
                    selfstats.failure("store.checkpoint_failed", exc)
                self._close()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def apply_retention(conn: sqlite3.Connection, retention: Retention) -> int:
    """Delete expired and, if the store is too big, oldest whole traces; return spans deleted.

    Age and size apply independently: a failure of one is counted and the other still runs.
    """
    deleted = 0
    for limit in (_delete_expired, _delete_oversize):
        try:
            deleted += limit(conn, retention)
        except Exception as exc:
            selfstats.failure("store.retention_failed", exc)
    if deleted:
        # executescript steps the pragma to completion; execute() would free a single page.
        schema.retry_locked(lambda: conn.executescript("PRAGMA incremental_vacuum"))
    return deleted


def _delete_expired(conn: sqlite3.Connection, retention: Retention) -> int:
    if retention.max_age_days is None:
        return 0
    now = time.time_ns()
    max_age_ns = retention.max_age_days * 86400e9
    # An age reaching before the epoch ("keep forever" as a huge number of days) has nothing to delete,
    # and its cutoff would not fit SQLite's 64-bit integers.
    return _delete_traces_started_before(conn, int(now - max_age_ns)) if 0 <= max_age_ns < now else 0


def _delete_oversize(conn: sqlite3.Connection, retention: Retention) -> int:
    deleted = 0
    if retention.max_bytes is not None:
        for _ in range(_SIZE_ROUNDS):
            cutoff = _size_cutoff(conn, retention.max_bytes)
            removed = 0 if cutoff is None else _delete_traces_started_before(conn, cutoff + 1)
            if not removed:
                break
            deleted += removed
    return deleted


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database pages in use (free pages excluded)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def _delete_traces_started_before(conn: sqlite3.Connection, cutoff_ns: int) -> int:
    """Delete every trace with a span that started before the cutoff, in short transactions.

    Chunks keep each write lock brief, so other writer processes never wait out their busy timeout.
    """
    deleted = 0
    while True:
        removed = schema.write(conn, lambda c: c.execute(
            "DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE start_ns < ? LIMIT ?)",
            (cutoff_ns, _DELETE_CHUNK),
        ).rowcount)
        if not removed:
            return deleted
        deleted += removed


def _size_cutoff(conn: sqlite3.Connection, max_bytes: int) -> int | None:
    """The start time up to which traces should go to fit in ``max_bytes``; None if they fit.

    Spans are taken to be of similar size: the oldest share of them over the limit goes, plus 10% — but
    never more than leaves the newest 90% of the limit, so a store far over it keeps the traces that fit.
    """
    used = used_bytes(conn)
    total = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] if used > max_bytes else 0
    if not total:
        return None
    share = min((used - max_bytes) / used * 1.1, 1 - 0.9 * max_bytes / used)
    offset = min(total, math.ceil(total * share)) - 1
    row = conn.execute("SELECT start_ns FROM spans ORDER BY start_ns LIMIT 1 OFFSET ?", (offset,)).fetchone()
    return None if row is None else row[0]  # None: another writer's retention got there first


def span_rows(spans: Sequence[ReadableSpan]) -> list[tuple[Any, ...]]:
    """SDK spans as rows for :meth:`SQLiteSpanExporter.write_rows` (what :meth:`~SQLiteSpanExporter.export`
    does before writing); a span that cannot be converted is counted and skipped."""
    resources: dict[int, tuple[str, Any]] = {}
    rows = []
    append = rows.append
    for span in spans:
        try:
            append(_row(span, resources))
        except Exception as exc:
            convert_failed(exc)
    return rows


def convert_failed(exc: BaseException) -> None:
    """Count a span that could not be turned into a row (it is dropped)."""
    selfstats.count("store.dropped_spans")
    selfstats.failure("store.convert_failed", exc)


def _row(span: ReadableSpan, resources: dict[int, tuple[str, Any]]) -> tuple[Any, ...]:
    ctx = span.context
    try:
        attrs = span.attributes.copy()  # the SDK's BoundedAttributes copies its dict far faster than dict()
    except AttributeError:
        attrs = None
    if not isinstance(attrs, dict):
        attrs = dict(span.attributes)
    resource = span.resource
    cached = resources.get(id(resource))
    if cached is None:
        cached = resources[id(resource)] = resource_columns(resource.attributes if resource is not None else {})
    start = span.start_time or 0
    parent = span.parent
    scope = span.instrumentation_scope
    events = span.events
    return span_row(
        f"{ctx.trace_id:032x}",
        f"{ctx.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        span.name,
        attrs,
        cached,
        start,
        span.end_time or start,
        _STATUS_NAMES.get(span.status.status_code) or span.status.status_code.name,
        [(e.name, e.timestamp, e.attributes) for e in events] if events else None,
        scope.name if scope is not None else None,
    )


def resource_columns(attributes: Any) -> tuple[str, Any]:
    """The ``resource`` JSON and the service name of a resource's attributes, for :func:`span_row`."""
    attrs = dict(attributes)
    return _encode(attrs), attrs.get(sc.SERVICE_NAME)


def span_row(trace_id: str, span_id: str, parent_span_id: str | None, name: str, attrs: dict[str, Any],
        resource: tuple[str, Any], start: int, end: int, status: str,
        events: list[tuple[str, int, Any]] | None, scope: str | None) -> tuple[Any, ...]:
    """One span in :data:`_INSERT` order, from its parts: ids in hex, ``attrs`` (not copied), ``resource`` from
    :func:`resource_columns`, the status code's name, ``events`` as (name, time ns, attributes) or None.
    Numbers are bound as found; the INSERT casts them. A missing value of a :data:`_NULLABLE` column is
    ``""``, which the INSERT stores as NULL: binding ``None`` costs the sqlite3 module an adapter lookup
    (~0.4 us against ~0.1 us for a string, six times a span on average). The one span-to-row mapping, for
    SDK spans (:meth:`SQLiteSpanExporter.export`) and for received OTLP spans alike."""
    get = attrs.get
    error_type = get(sc.ERROR_TYPE)
    if error_type is None and status == "ERROR" and events:
        error_type = next((e[2][EXCEPTION_TYPE] for e in events if e[2] and EXCEPTION_TYPE in e[2]), None)
    ttft = get(sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS)
    if ttft is None:
        ttft = _seconds_to_ns(get(sc.RESPONSE_TIME_TO_FIRST_CHUNK))
    return (
        trace_id,
        span_id,
        "" if parent_span_id is None else parent_span_id,
        name,
        get(sc.SPAN_KIND, ""),
        get(sc.OPERATION_NAME, ""),
        "" if resource[1] is None else resource[1],
        get(sc.PROVIDER_NAME, ""),
        get(sc.REQUEST_MODEL, ""),
        get(sc.RESPONSE_MODEL, ""),
        start,
        end,
        end - start,
        status,
        "" if error_type is None else error_type,
        "" if ttft is None else ttft,
        get(sc.USAGE_INPUT_TOKENS, ""),
        get(sc.USAGE_OUTPUT_TOKENS, ""),
        get(sc.USAGE_TOTAL_TOKENS, ""),
        get(sc.COST_USD, ""),
        get(sc.SESSION_ID) or get(sc.CONVERSATION_ID, ""),
        get(sc.USER_ID, ""),
        get(sc.SAMPLING_ADJUSTED_COUNT, ""),
        _encode(attrs),
        _encode([{"name": n, "time_ns": t, "attributes": dict(a or {})} for n, t, a in events]) if events else "[]",
        resource[0],
        "" if scope is None else scope,
    )


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    try:
        conn.executemany(_INSERT, rows)
    except (sqlite3.ProgrammingError, OverflowError, UnicodeEncodeError):
        # An attribute SQLite cannot bind (a list where a string belongs, an int over 64 bits, text with
        # a lone surrogate): store such values as JSON text, surrogates as U+FFFD. Rows already inserted
        # are simply replaced.
        conn.executemany(_INSERT, [tuple(map(_bindable, row)) for row in rows])


def _bindable(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if value is None or isinstance(value, float | bytes):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return valid_text(_encode(value))


def _seconds_to_ns(value: Any) -> int | None:
    try:
        return round(float(value) * 1e9)
    except (TypeError, ValueError, OverflowError):
        return None


#: Columns that may be NULL: their values are bound as ``""`` when missing (see :func:`span_row`).
_NULLABLE = frozenset(schema.COLUMNS) - {
    "trace_id", "span_id", "name", "start_ns", "end_ns", "duration_ns", "status", "attributes", "events", "resource",
}


def _insert_sql() -> str:
    """``INSERT OR REPLACE`` (re-exports are idempotent) that casts attribute numbers to column types and
    stores the ``""`` of a missing value as NULL (so does an empty attribute value: no value either)."""
    slot = {name: f"NULLIF(?{i}, '')" if name in _NULLABLE else f"?{i}" for i, name in enumerate(schema.COLUMNS, 1)}
    values = dict(slot)
    for name in ("ttft_ns", "input_tokens", "output_tokens"):
        values[name] = f"CAST({slot[name]} AS INTEGER)"
    tokens_in, tokens_out = values["input_tokens"], values["output_tokens"]
    values["total_tokens"] = (
        f"COALESCE(CAST({slot['total_tokens']} AS INTEGER), CASE WHEN {slot['input_tokens']} IS NULL"
        f" AND {slot['output_tokens']} IS NULL THEN NULL ELSE IFNULL({tokens_in}, 0) + IFNULL({tokens_out}, 0) END)"
    )
    values["cost_usd"] = f"CAST({slot['cost_usd']} AS REAL)"
    values["adjusted_count"] = f"IFNULL(CAST({slot['adjusted_count']} AS REAL), 1.0)"
    for name in ("span_kind", "operation", "service", "provider", "request_model", "response_model",
                 "error_type", "session_id", "user_id"):
        values[name] = f"CAST({slot[name]} AS TEXT)"
    return (
        f"INSERT OR REPLACE INTO spans ({', '.join(schema.COLUMNS)})"
        f" VALUES ({', '.join(values[name] for name in schema.COLUMNS)})"
    )


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON keeping non-ASCII text; ``json.dumps`` rebuilds its C encoder on every call."""
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False).encode
    if c_make_encoder is None:
        return slow
    fast = c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
    return lambda obj: "".join(fast(obj, 0))


#: The reference encoding (the standard library's); :func:`_encode` gives the same JSON values, faster.
_encode_std = _json_encoder()
#: Types orjson would render its own way (an object, ISO text) where the standard encoder calls ``str``.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _encode(obj: Any) -> str:
    """Compact JSON keeping non-ASCII text, as :data:`_encode_std` writes it, by orjson where it agrees.

    orjson refuses what the standard encoder accepts (integers past 64 bits, non-string keys, lone
    surrogates): those go to the standard encoder. It writes a non-finite float as ``null`` where the
    standard encoder writes ``NaN``/``Infinity``: only JSON with a ``null`` in it needs that checked.
    """
    try:
        out = orjson.dumps(obj, default=_orjson_default, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _encode_std(obj)
    if b"null" in out and _has_non_finite(obj):
        return _encode_std(obj)
    return out.decode()


def _orjson_default(obj: Any) -> Any:
    """What the standard encoder makes of a value orjson does not take natively: subclasses of float
    (NumPy's float64) and of tuple (named tuples) as numbers and arrays, anything else as ``str``."""
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def _has_non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        obj = obj.values()
    elif not isinstance(obj, list | tuple):
        return False
    return any(_has_non_finite(v) for v in obj)


_STATUS_NAMES = {code: code.name for code in StatusCode}
_ATTRIBUTES = schema.COLUMNS.index("attributes")
_INSERT = _insert_sql()
