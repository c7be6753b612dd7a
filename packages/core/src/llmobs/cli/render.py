"""Plain-text rendering of store records: aligned tables and the span tree.

No third-party dependency: columns are padded by hand and the tree uses Unicode box drawing.
ANSI colour is opt-in per call; the CLI enables it only for a terminal without ``NO_COLOR``.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Sequence
from typing import IO

from llmobs import semconv as sc
from llmobs.store import ModelStats, SpanRecord, TraceSummary

_RED, _GREEN, _DIM, _BOLD = "31", "32", "2", "1"
#: Table id column width: enough to be unique in practice, and accepted by ``llmobs show``.
SHORT_ID = 12
#: Levels of the span tree shown by indentation; deeper spans show their depth as a number.
MAX_INDENT = 32

Cell = tuple[str, str | None]  # text, ANSI style
# C0 controls, DEL and C1 controls: span data comes from any process, and printed raw they would drive
# the terminal (retitle, clear, recolour, overwrite a line with CR or fake one with LF).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def use_color(stream: IO[str]) -> bool:
    """Colour only for a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def duration(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.0f}ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def count(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def cost(usd: float | None) -> str:
    if usd is None:
        return "-"
    if usd == 0 or usd >= 1:
        return f"${usd:,.2f}"
    if usd < 0.0001:
        return "<$0.0001"
    whole, fraction = f"{usd:.4f}".split(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"  # $0.50, $0.0032


def timestamp(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def status(value: str, error_type: str | None = None) -> Cell:
    if value == "ERROR":
        return (f"ERROR {error_type}" if error_type else "ERROR", _RED)
    return ("OK", _GREEN) if value == "OK" else ("-", _DIM)


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\x1b``-style escapes, so span data cannot drive the
    terminal or break a table's lines; other characters (CJK, emoji, accents) are kept as they are."""
    return text if text.isprintable() else text.translate(_CONTROLS)


def width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters count two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, right: Sequence[int] = (),
          color: bool = False) -> str:
    """Columns padded to their widest cell; the columns numbered in ``right`` are right-aligned.

    Widths are terminal columns: a CJK character takes two (a Chinese topic label stays aligned).
    Cells are made ``printable``: a control character in span data is shown escaped, never sent raw.
    """
    rows = [[(printable(text), style) for text, style in row] for row in rows]
    widths = [max([width(h), *(width(row[i][0]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[Cell]) -> str:
        out = []
        for i, (text, style) in enumerate(cells):
            pad = " " * (widths[i] - width(text))
            padded = pad + text if i in right else text + pad
            out.append(_paint(padded, style, color))
        return "  ".join(out).rstrip()

    return "\n".join([line([(h, _BOLD) for h in headers]), *(line(row) for row in rows)])


def traces_table(traces: Sequence[TraceSummary], *, color: bool = False) -> str:
    rows = [
        [
            (t.trace_id[:SHORT_ID], _DIM), (timestamp(t.start_ns), None), (t.name, None), (t.kind or "-", None),
            (count(t.span_count), None), (duration(t.duration_ns), None), (count(t.total_tokens), None),
            (cost(t.cost_usd), None), status(t.status),
        ]
        for t in traces
    ]
    headers = ("TRACE", "WHEN", "ROOT", "KIND", "SPANS", "DURATION", "TOKENS", "COST", "STATUS")
    return table(headers, rows, right=(4, 5, 6, 7), color=color)


def trace_tree(spans: Sequence[SpanRecord], *, color: bool = False) -> str:
    """A header line, then one line per span indented under its parent, siblings by start time.

    Spans whose parent is not in the store are shown at the top level, like the root.
    """
    rows = [
        [
            (prefix + s.name, None), (s.span_kind or "-", None), (duration(s.duration_ns), None),
            (duration(s.ttft_ns) if s.ttft_ns is not None else "", None), (_tokens(s), None),
            (cost(s.cost_usd) if s.cost_usd is not None else "", None), status(s.status, s.error_type),
        ]
        for prefix, s in _tree_lines(spans)
    ]
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    service = next((s.service for s in spans if s.service), "-")
    header = (
        f"trace {printable(spans[0].trace_id)}  service {printable(service)}  {timestamp(start)}"
        f"  {len(spans)} spans  {duration(end - start)}"
    )
    headers = ("SPAN", "KIND", "DURATION", "TTFT", "TOKENS IN→OUT", "COST", "STATUS")
    out = _paint(header, _BOLD, color) + "\n\n" + table(headers, rows, right=(2, 3, 4, 5), color=color)
    evaluations = _evaluations(spans, color)
    return out + ("\n\n" + evaluations if evaluations else "")


def _evaluations(spans: Sequence[SpanRecord], color: bool) -> str:
    """One line per ``gen_ai.evaluation.result`` event (``llmobs analyze``'s or the application's own)."""
    lines = []
    for s in spans:
        for event in s.events:
            if not isinstance(event, dict) or event.get("name") != sc.EVENT_EVALUATION_RESULT:
                continue
            attrs = event.get("attributes") or {}
            label = str(attrs.get(sc.EVALUATION_SCORE_LABEL, ""))
            score = attrs.get(sc.EVALUATION_SCORE_VALUE)
            text = f"{attrs.get(sc.EVALUATION_NAME, '?')}: {label or '-'}"
            if isinstance(score, int | float) and not isinstance(score, bool):
                text += f" ({score:g})"
            explanation = attrs.get(sc.EVALUATION_EXPLANATION)
            if explanation:
                text += f" — {str(explanation)[:160]}"
            bad = label == sc.EVAL_LABEL_FAIL or attrs.get(sc.EVALUATION_NAME) == sc.EVAL_PROBLEM_CLASS
            style = _RED if bad else None
            lines.append(f"  {printable(s.name)}  " + _paint(printable(text), style, color))
    return (_paint("EVALUATIONS", _BOLD, color) + "\n" + "\n".join(lines)) if lines else ""


def stats_table(stats: Sequence[ModelStats], *, color: bool = False) -> str:
    """One line per (provider, model), then the totals over all of them."""
    rows = [
        [
            (m.provider or "-", None), (m.model or "-", None), (count(m.calls), None),
            (_percent(m.error_rate), _RED if m.errors else None),
            (duration(_ns(m.p50_duration_s)), None), (duration(_ns(m.p95_duration_s)), None),
            (duration(_ns(m.p50_ttft_s)), None), (duration(_ns(m.p95_ttft_s)), None),
            (count(m.input_tokens), None), (count(m.output_tokens), None), (cost(m.cost_usd), None),
        ]
        for m in stats
    ]
    calls = sum(m.calls for m in stats)
    errors = sum(m.errors for m in stats)
    rows.append([
        ("total", _BOLD), ("", None), (count(calls), _BOLD), (_percent(errors / calls if calls else 0.0), _BOLD),
        ("", None), ("", None), ("", None), ("", None),
        (count(sum(m.input_tokens for m in stats)), _BOLD), (count(sum(m.output_tokens for m in stats)), _BOLD),
        (cost(sum(m.cost_usd for m in stats)), _BOLD),
    ])
    headers = ("PROVIDER", "MODEL", "CALLS", "ERRORS", "P50", "P95", "TTFT P50", "TTFT P95", "IN", "OUT", "COST")
    return table(headers, rows, right=tuple(range(2, 11)), color=color)


def _tree_lines(spans: Sequence[SpanRecord]) -> list[tuple[str, SpanRecord]]:
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    tops = []
    for s in spans:  # already in start order, so siblings stay in start order
        if s.parent_span_id in by_id and s.parent_span_id != s.span_id:
            children.setdefault(s.parent_span_id, []).append(s)
        else:
            tops.append(s)
    lines: list[tuple[str, SpanRecord]] = []
    seen: set[str] = set()
    # Iterative depth-first walk (agent recursion can nest deeper than Python's recursion limit).
    stack: list[tuple[SpanRecord, int, str, str]] = [(s, 0, "", "") for s in reversed(tops)]
    while stack:
        span, depth, prefix, child_prefix = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        lines.append((prefix, span))
        kids = children.get(span.span_id, [])
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], depth + 1, *_branch(child_prefix, depth + 1, i == len(kids) - 1)))
    # A parent cycle (corrupt data) leaves spans unreachable: still show them, at the top level.
    lines.extend(("", s) for s in spans if s.span_id not in seen)
    return lines


def _branch(indent: str, depth: int, last: bool) -> tuple[str, str]:
    """A child's line prefix and its own children's indent.

    Past ``MAX_INDENT`` levels the indent stops growing and the depth is written as a number instead:
    every line is padded to the widest, so unbounded indentation made a deep trace's output quadratic.
    """
    if depth > MAX_INDENT:
        return f"{indent}[{depth}] " + ("└─ " if last else "├─ "), indent
    return indent + ("└─ " if last else "├─ "), indent + ("   " if last else "│  ")


def _tokens(s: SpanRecord) -> str:
    if s.input_tokens is None and s.output_tokens is None:
        return ""
    return f"{count(s.input_tokens)}→{count(s.output_tokens)}"


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def _paint(text: str, style: str | None, color: bool) -> str:
    return f"\x1b[{style}m{text}\x1b[0m" if color and style else text
