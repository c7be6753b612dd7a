"""Analysis results into the store, as ``gen_ai.evaluation.result`` events on the evaluated spans.

Each event carries ``llmobs.evaluation.source = llmobs.analyze``. A run first removes the events an
earlier run wrote on the spans it analyses, then adds its own, so running the analysis again replaces
its results instead of piling them up; events from anyone else (an application's own evaluations, a
judge run elsewhere) are kept. Writes go in short ``BEGIN IMMEDIATE`` transactions of a few hundred
spans, so applications writing to the same store wait at most that long.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmobs import semconv as sc
from llmobs.store import schema

if TYPE_CHECKING:
    from llmobs.analyze.evaluators import EvaluationResult

#: Spans updated per write transaction.
CHUNK = 400

SpanKey = tuple[str, str]  # (trace id, span id)


def is_ours(event: Any) -> bool:
    return (
        isinstance(event, dict) and event.get("name") == sc.EVENT_EVALUATION_RESULT
        and (event.get("attributes") or {}).get(sc.EVALUATION_SOURCE) == sc.EVALUATION_SOURCE_ANALYZE
    )


def write(path: str | Path, analysed: Iterable[SpanKey], results: Mapping[SpanKey, list[EvaluationResult]], *,
          progress: Callable[[int], None] | None = None) -> int:
    """Replace this analysis' events on every ``analysed`` span with ``results``; returns events written."""
    keys = list(dict.fromkeys([*analysed, *results]))
    conn = schema.open_writer(Path(path))
    written = 0
    try:
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            written += schema.write(conn, lambda c, chunk=chunk: _write_chunk(c, chunk, results))
            if progress is not None:
                progress(len(chunk))
    finally:
        conn.close()
    return written


def _write_chunk(conn: sqlite3.Connection, keys: list[SpanKey],
                 results: Mapping[SpanKey, list[EvaluationResult]]) -> int:
    updates = []
    written = 0
    for trace_id, span_id in keys:
        row = conn.execute("SELECT events, end_ns FROM spans WHERE trace_id = ? AND span_id = ?",
                           (trace_id, span_id)).fetchone()
        if row is None:  # deleted by retention since it was read
            continue
        try:
            events = json.loads(row[0])
        except ValueError:
            events = []
        kept = [e for e in events if not is_ours(e)] if isinstance(events, list) else []
        new = [{"name": sc.EVENT_EVALUATION_RESULT, "time_ns": row[1], "attributes": r.attributes()}
               for r in results.get((trace_id, span_id), ())]
        if not new and len(kept) == len(events):
            continue  # nothing of ours before, nothing now
        written += len(new)
        updates.append((json.dumps(kept + new, ensure_ascii=False, separators=(",", ":")), trace_id, span_id))
    conn.executemany("UPDATE spans SET events = ? WHERE trace_id = ? AND span_id = ?", updates)
    return written
