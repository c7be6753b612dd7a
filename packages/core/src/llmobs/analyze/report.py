"""The self-contained HTML report of an analysis: one file, no network (inline CSS, SVG and a few lines
of JS), readable offline and safe to mail around.

Every piece of span text (questions, answers, names, error messages, cluster terms) is HTML-escaped
here, once, at the point it is written into the page; the script only toggles classes on elements
that already exist, and never inserts text.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

#: Most points drawn on the cluster map (a seeded, even sample beyond that).
MAP_POINTS = 5000
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac",
           "#86bcb6", "#d37295", "#8cd17d", "#499894", "#f1ce63", "#a0cbe8", "#ffbe7d")
UNCLUSTERED = "#c8c8c8"

_CSS = """
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bad: #d92d20; --accent: #3056d3; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC", sans-serif;
       color: var(--fg); margin: 0; background: #f6f7f9; }
header { background: #101828; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { color: #c0c6d4; font-size: 13px; }
main { padding: 20px 28px 40px; display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 10px; }
.totals { display: flex; gap: 26px; flex-wrap: wrap; }
.totals div b { display: block; font-size: 22px; }
.totals div span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: var(--bad); font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.text { max-width: 460px; overflow-wrap: anywhere; white-space: pre-wrap; }
.muted { color: var(--muted); }
svg { max-width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
#map circle { opacity: .75; transition: opacity .15s; }
#map.focus circle { opacity: .08; }
#map.focus circle.on { opacity: .95; }
tr[data-cluster] { cursor: pointer; }
tr[data-cluster].on { background: #eef2ff; }
details summary { cursor: pointer; color: var(--accent); }
.bar { fill: var(--accent); }
.bar.bad { fill: var(--bad); }
"""

_JS = """
(function () {
  var map = document.getElementById("map");
  var rows = document.querySelectorAll("tr[data-cluster]");
  var current = null;
  function focus(id) {
    current = current === id ? null : id;
    map.classList.toggle("focus", current !== null);
    map.querySelectorAll("circle").forEach(function (c) {
      c.classList.toggle("on", c.getAttribute("data-cluster") === current);
    });
    rows.forEach(function (r) { r.classList.toggle("on", r.getAttribute("data-cluster") === current); });
  }
  rows.forEach(function (r) { r.addEventListener("click", function () { focus(r.getAttribute("data-cluster")); }); });
  map.querySelectorAll("circle").forEach(function (c) {
    c.addEventListener("click", function () { focus(c.getAttribute("data-cluster")); });
  });
})();
"""


def e(value: Any) -> str:
    """HTML-escape anything (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def render(data: dict[str, Any], *, title: str = "llmobs analysis") -> str:
    """The report page for ``Analysis.to_dict()``."""
    totals = data["totals"]
    colours = {c["id"]: (PALETTE[i % len(PALETTE)] if c["id"] >= 0 else UNCLUSTERED)
               for i, c in enumerate(data["clusters"])}
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    scope = []
    if data.get("service"):
        scope.append(f"service {e(data['service'])}")
    if data.get("since_ns"):
        scope.append(f"since {e(time.strftime('%Y-%m-%d %H:%M', time.localtime(data['since_ns'] / 1e9)))}")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{e(title)}</h1><div class='meta'>{e(data['store'])} · {' · '.join(scope) or 'all traces'}"
        f" · embeddings {e(data['embedder'])} · clustering {e(data['clustering'])} · generated {e(generated)}</div>"
        "</header><main>",
        _totals(totals),
        _map(data["points"], data["clusters"], colours),
        _clusters(data["clusters"], colours),
        _histogram("Latency", "latency", data["latency"]),
        _histogram("Time to first token", "ttft", data["ttft"]),
        _models(data["models"]),
        _problems(data["problems"]),
        _quality(data["quality"], totals["calls"]),
        _cluster_examples(data["clusters"], colours),
        f"</main><script>{_JS}</script></body></html>",
    ]
    return "".join(parts)


def _totals(totals: dict[str, Any]) -> str:
    calls = totals["calls"] or 1
    items = [
        ("calls", f"{totals['calls']:,}"),
        ("errors", f"{totals['errors']:,} ({totals['errors'] / calls:.1%})"),
        ("flagged by quality checks", f"{totals['flagged_calls']:,} ({totals['flagged_calls'] / calls:.1%})"),
        ("failures classified", f"{totals['failures']:,}"),
        ("topics", f"{totals['clusters']:,}"),
    ]
    cells = "".join(f"<div><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in items)
    return f"<section class='wide' data-test='totals'><div class='totals'>{cells}</div></section>"


def _map(points: Sequence[dict[str, Any]], clusters: Sequence[dict[str, Any]], colours: dict[int, str]) -> str:
    width, height, pad = 640, 440, 14
    shown = list(points)
    if len(shown) > MAP_POINTS:
        step = len(shown) / MAP_POINTS
        shown = [shown[int(i * step)] for i in range(MAP_POINTS)]
    labels = {c["id"]: c["label"] for c in clusters}
    circles = []
    for p in shown:
        x = pad + (p["x"] + 1) / 2 * (width - 2 * pad)
        y = pad + (1 - (p["y"] + 1) / 2) * (height - 2 * pad)
        colour = colours.get(p["cluster"], UNCLUSTERED)
        stroke = " stroke='#d92d20' stroke-width='1.5'" if p["error"] else ""
        flags = f" · {', '.join(p['flags'])}" if p["flags"] else ""
        error = " · error" if p["error"] else ""
        tip = f"{labels.get(p['cluster'], 'unclustered')} · trace {p['trace_id'][:12]}{error}{flags}"
        circles.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.2' fill='{colour}'{stroke}"
                       f" data-cluster='{p['cluster']}'><title>{e(tip)}</title></circle>")
    note = f"{len(shown):,} of {len(points):,} calls" if len(shown) < len(points) else f"{len(points):,} calls"
    return (
        "<section data-test='cluster-map'><h2>Topic map</h2>"
        f"<p class='muted'>Each dot is a model call, coloured by topic; red rings failed. {e(note)}."
        " Click a dot or a topic to focus it.</p>"
        f"<svg id='map' viewBox='0 0 {width} {height}' role='img' aria-label='cluster map'>"
        f"<rect x='0' y='0' width='{width}' height='{height}' fill='#fbfbfc' stroke='#e4e7ec'/>"
        + "".join(circles) + "</svg></section>"
    )


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _clusters(clusters: Sequence[dict[str, Any]], colours: dict[int, str]) -> str:
    rows = []
    for c in clusters:
        rows.append(
            f"<tr data-cluster='{c['id']}'><td><span class='swatch' style='background:{colours[c['id']]}'></span>"
            f"{e(c['label'])}</td><td class='num'>{c['calls']:,}</td>"
            f"<td class='num{' bad' if c['error_rate'] > 0.05 else ''}'>{c['error_rate']:.1%}</td>"
            f"<td class='num'>{_fmt_s(c['p95_latency_s'])}</td><td class='num'>{_fmt_s(c['p95_ttft_s'])}</td>"
            f"<td class='num'>{c['input_tokens'] + c['output_tokens']:,}</td><td class='num'>${c['cost_usd']:.4f}</td>"
            f"<td class='num{' bad' if c['flag_rate'] > 0.1 else ''}'>{c['flag_rate']:.1%}</td></tr>"
        )
    return (
        "<section data-test='clusters'><h2>Topics</h2><table><thead><tr><th>topic (characteristic terms)</th>"
        "<th class='num'>calls</th><th class='num'>errors</th><th class='num'>p95 latency</th>"
        "<th class='num'>p95 TTFT</th><th class='num'>tokens</th><th class='num'>cost</th>"
        "<th class='num'>flagged</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _histogram(title: str, test: str, dist: dict[str, Any]) -> str:
    width, height, pad_l, pad_b = 600, 200, 36, 28
    if not dist["count"]:
        return f"<section data-test='{test}'><h2>{e(title)}</h2><p class='muted'>no data</p></section>"
    counts, edges = dist["counts"], dist["edges"]
    top = max(counts) or 1
    bar_w = (width - pad_l) / len(counts)
    bars = []
    for i, n in enumerate(counts):
        h = (height - pad_b - 8) * n / top
        x = pad_l + i * bar_w
        bars.append(f"<rect class='bar' x='{x:.1f}' y='{height - pad_b - h:.1f}' width='{max(bar_w - 1, 1):.1f}'"
                    f" height='{h:.1f}'><title>{e(_fmt_s(edges[i]))}–{e(_fmt_s(edges[i + 1]))}: {n}</title></rect>")
    ticks = []
    for i in range(0, len(edges), max(1, len(edges) // 5)):
        x = pad_l + i * bar_w
        ticks.append(f"<text x='{x:.1f}' y='{height - 10}'>{e(_fmt_s(edges[i]))}</text>")
    ticks.append(f"<text x='4' y='14'>{top}</text>")
    stats = (f"p50 {_fmt_s(dist['p50'])} · p95 {_fmt_s(dist['p95'])} · p99 {_fmt_s(dist['p99'])}"
             f" · {dist['count']:,} calls")
    return (
        f"<section data-test='{test}'><h2>{e(title)}</h2><p class='muted'>{e(stats)} (log scale)</p>"
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='{e(title)} histogram'>"
        f"<line x1='{pad_l}' y1='{height - pad_b}' x2='{width}' y2='{height - pad_b}' stroke='#d0d5dd'/>"
        + "".join(bars) + "".join(ticks) + "</svg></section>"
    )


def _hbars(rows: Sequence[tuple[str, float, str, bool]], width: int = 600) -> str:
    """Horizontal bars: (label, value, value text, bad)."""
    if not rows:
        return "<p class='muted'>none</p>"
    top = max(v for _, v, _, _ in rows) or 1
    line_h, label_w = 22, 200
    out = [f"<svg viewBox='0 0 {width} {line_h * len(rows) + 4}' role='img'>"]
    for i, (label, value, text, bad) in enumerate(rows):
        y = i * line_h + 2
        w = max((width - label_w - 190) * value / top, 1 if value else 0)
        out.append(f"<text x='0' y='{y + 14}'>{e(label[:32])}</text>"
                   f"<rect class='bar{' bad' if bad else ''}' x='{label_w}' y='{y + 3}' width='{w:.1f}' height='14'/>"
                   f"<text x='{label_w + w + 6:.1f}' y='{y + 14}'>{e(text)}</text>")
    out.append("</svg>")
    return "".join(out)


def _models(models: Sequence[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{e(m['provider'] or '-')}</td><td>{e(m['model'] or '-')}</td><td class='num'>{m['calls']:,}</td>"
        f"<td class='num'>{m['errors']:,}</td><td class='num'>{m['input_tokens']:,}</td>"
        f"<td class='num'>{m['output_tokens']:,}</td><td class='num'>${m['cost_usd']:.4f}</td>"
        f"<td class='num'>{_fmt_s(m['p95_latency_s'])}</td></tr>"
        for m in models
    )
    bars = _hbars([(m["model"] or "-", m["input_tokens"] + m["output_tokens"],
                    f"{m['input_tokens'] + m['output_tokens']:,} tokens · ${m['cost_usd']:.4f}", False)
                   for m in models])
    return (
        "<section data-test='models'><h2>Tokens and cost by model</h2>" + bars +
        "<table><thead><tr><th>provider</th><th>model</th><th class='num'>calls</th><th class='num'>errors</th>"
        "<th class='num'>input</th><th class='num'>output</th><th class='num'>cost</th><th class='num'>p95</th>"
        "</tr></thead><tbody>" + rows + "</tbody></table></section>"
    )


def _problems(problems: dict[str, dict[str, Any]]) -> str:
    bars = _hbars([(name, p["count"], f"{p['count']:,}", True) for name, p in problems.items()])
    examples = "".join(
        f"<tr><td>{e(name)}</td><td class='mono'>{e(x['trace_id'][:16])}</td><td>{e(x['name'])}</td>"
        f"<td class='mono'>{e(x['error_type'])}</td><td class='text'>{e(x['message'])}</td></tr>"
        for name, p in problems.items() for x in p["examples"][:2]
    )
    return (
        "<section data-test='problems'><h2>Failures by problem class</h2>" + bars +
        ("<details><summary>examples</summary><table><thead><tr><th>class</th><th>trace</th><th>span</th>"
         "<th>error type</th><th>message</th></tr></thead><tbody>" + examples + "</tbody></table></details>"
         if examples else "") + "</section>"
    )


def _quality(quality: dict[str, dict[str, Any]], calls: int) -> str:
    ordered = sorted(quality.items(), key=lambda kv: -kv[1]["failed"])
    bars = _hbars([(name, q["failed"], f"{q['failed']:,} of {q['evaluated']:,} ({q['fail_rate']:.1%})",
                    q["failed"] > 0) for name, q in ordered], width=1240)
    examples = "".join(
        f"<tr><td>{e(name)}</td><td class='mono'>{e(x['trace_id'][:16])}</td>"
        f"<td class='text'>{e(x['question'])}</td>"
        f"<td class='text'>{e(x['output'])}</td><td class='text'>{e(x['note'])}</td></tr>"
        for name, q in ordered for x in q["examples"][:2]
    )
    return (
        "<section class='wide' data-test='quality'><h2>Quality flags</h2>" + bars +
        ("<details><summary>examples</summary><table><thead><tr><th>check</th><th>trace</th><th>question</th>"
         "<th>answer</th><th>why</th></tr></thead><tbody>" + examples + "</tbody></table></details>"
         if examples else "") + "</section>"
    )


def _cluster_examples(clusters: Sequence[dict[str, Any]], colours: dict[int, str]) -> str:
    blocks = []
    for c in clusters[:12]:
        rows = "".join(
            f"<tr><td class='mono'>{e(x['trace_id'][:16])}</td><td>{e(x['model'])}</td>"
            f"<td class='text'>{e(x['question'])}</td><td class='text'>{e(x['output'])}</td>"
            f"<td class='{'bad' if x['error_type'] or x['note'] else ''}'>{e(x['error_type'] or x['note'])}</td></tr>"
            for x in c["examples"]
        )
        flags = ", ".join(f"{k} {v}" for k, v in c["flags"].items())
        blocks.append(
            f"<details data-test='cluster-examples'><summary><span class='swatch' style='background:"
            f"{colours[c['id']]}'></span>{e(c['label'])} — {c['calls']:,} calls"
            f"{' · ' + e(flags) if flags else ''}</summary><table><thead><tr><th>trace</th><th>model</th>"
            "<th>question</th><th>answer</th><th>problem</th></tr></thead><tbody>" + rows + "</tbody></table></details>"
        )
    return "<section class='wide'><h2>Top topics with example traces</h2>" + "".join(blocks) + "</section>"
