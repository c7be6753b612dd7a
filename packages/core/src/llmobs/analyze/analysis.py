"""One analysis run: read, evaluate, classify, embed, cluster, summarise, write back.

:func:`analyze` returns an :class:`Analysis`, whose :meth:`Analysis.to_dict` is what ``llmobs analyze
--json`` prints and what the HTML report draws.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmobs import semconv as sc
from llmobs.analyze import evaluators as ev
from llmobs.analyze import problems, records, writeback
from llmobs.analyze.progress import Progress
from llmobs.store.queries import weighted_percentile

#: Example traces kept per cluster, per problem class and per quality flag.
EXAMPLES = 5


@dataclass
class ClusterSummary:
    id: int
    label: str
    terms: list[str]
    calls: int
    errors: int
    error_rate: float
    p50_latency_s: float | None
    p95_latency_s: float | None
    p95_ttft_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    flagged: int
    flag_rate: float
    flags: dict[str, int]
    examples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Analysis:
    store: str
    since_ns: int | None
    service: str | None
    embedder: str
    method: str
    calls: list[records.LLMCall]
    evaluations: dict[tuple[str, str], list[ev.EvaluationResult]]
    classifications: list[tuple[records.Failure, problems.Classification]]
    labels: list[int]
    positions: list[tuple[float, float]]
    clusters: list[ClusterSummary]
    timings: dict[str, float] = field(default_factory=dict)
    events_written: int = 0

    def flags(self, call: records.LLMCall) -> list[str]:
        return [r.name for r in self.evaluations.get((call.trace_id, call.span_id), ()) if r.failed]

    def to_dict(self) -> dict[str, Any]:
        quality: dict[str, dict[str, Any]] = {}
        for call in self.calls:
            for result in self.evaluations.get((call.trace_id, call.span_id), ()):
                entry = quality.setdefault(result.name, {"evaluated": 0, "failed": 0, "examples": []})
                entry["evaluated"] += 1
                if result.failed:
                    entry["failed"] += 1
                    if len(entry["examples"]) < EXAMPLES:
                        entry["examples"].append(_example(call, result.explanation))
        for entry in quality.values():
            entry["fail_rate"] = entry["failed"] / entry["evaluated"] if entry["evaluated"] else 0.0
        problem_counts: dict[str, dict[str, Any]] = {}
        for failure, classification in self.classifications:
            entry = problem_counts.setdefault(classification.problem, {"count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < EXAMPLES:
                entry["examples"].append({"trace_id": failure.trace_id, "span_id": failure.span_id,
                                          "name": failure.name, "error_type": failure.error_type,
                                          "message": failure.message[:300], "evidence": classification.evidence})
        flagged = sum(1 for c in self.calls if self.flags(c))
        return {
            "store": self.store,
            "since_ns": self.since_ns,
            "service": self.service,
            "embedder": self.embedder,
            "clustering": self.method,
            "totals": {
                "calls": len(self.calls),
                "errors": sum(c.failed for c in self.calls),
                "flagged_calls": flagged,
                "failures": len(self.classifications),
                "clusters": len(self.clusters),
                "events_written": self.events_written,
            },
            "clusters": [c.to_dict() for c in self.clusters],
            "quality": dict(sorted(quality.items())),
            "problems": dict(sorted(problem_counts.items(), key=lambda kv: -kv[1]["count"])),
            "models": _models(self.calls),
            "latency": _distribution([c.duration_ns / 1e9 for c in self.calls]),
            "ttft": _distribution([c.ttft_ns / 1e9 for c in self.calls if c.ttft_ns is not None]),
            "points": [
                {"x": round(x, 4), "y": round(y, 4), "cluster": label, "trace_id": c.trace_id, "span_id": c.span_id,
                 "error": c.failed, "flags": self.flags(c)}
                for c, label, (x, y) in zip(self.calls, self.labels, self.positions, strict=True)
            ],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def analyze(store: str | Path, *, since_ns: int | None = None, service: str | None = None,
            embedder: str = "tfidf", method: str = "auto", evaluators: Sequence[Any] | None = None,
            write: bool = True, progress: Progress | None = None, seed: int = 0) -> Analysis:
    """Analyse the model calls in ``store`` (see the package docstring)."""
    from llmobs.analyze import clustering, embedding

    progress = progress or Progress(enabled=False)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    progress.stage("reading", 1)
    corpus = records.load(store, since_ns=since_ns, service=service)
    calls = corpus.calls
    progress.advance()
    lap("read")

    chosen = list(evaluators) if evaluators is not None else ev.collect()
    evaluations = _evaluate(calls, chosen, progress)
    lap("evaluate")

    progress.stage("classifying", len(corpus.failures))
    classifications = [(f, problems.classify(f)) for f in corpus.failures]
    progress.advance(len(classifications))
    lap("classify")

    progress.stage("embedding", len(calls))
    model = embedding.embedder(embedder)
    vectors = model.fit_transform(records.texts(calls)) if calls else None
    progress.advance(len(calls))
    lap("embed")

    progress.stage("clustering", len(calls))
    if vectors is not None:
        result = clustering.cluster(vectors, method=method, seed=seed)
        labels = result.labels
        terms = clustering.characteristic_terms(model.terms(), labels)
        positions = [tuple(map(float, p)) for p in clustering.layout(vectors, labels, seed)]
        used_method = result.method
    else:
        import numpy as np

        labels, terms, positions, used_method = np.zeros(0, dtype=int), {}, [], "none"
    progress.advance(len(calls))
    lap("cluster")

    label_list = [int(x) for x in labels]
    analysis = Analysis(
        store=str(store), since_ns=since_ns, service=service, embedder=model.name, method=used_method,
        calls=calls, evaluations=evaluations, classifications=classifications, labels=label_list,
        positions=positions, clusters=[], timings=timings,
    )
    analysis.clusters = _summaries(analysis, terms)
    lap("summarise")

    if write:
        results = events_of(analysis)
        analysed = [(c.trace_id, c.span_id) for c in calls] + [(f.trace_id, f.span_id) for f in corpus.failures]
        progress.stage("writing", len(set(analysed)))
        analysis.events_written = writeback.write(store, analysed, results, progress=progress.advance)
        lap("write")
    progress.close()
    return analysis


def _evaluate(calls: list[records.LLMCall], chosen: list[Any],
              progress: Progress) -> dict[tuple[str, str], list[ev.EvaluationResult]]:
    """Every evaluator on every call. Evaluators that wait on the network (a ``concurrency`` above 1, such
    as the LLM judge) run over the calls on that many threads; the rest run in line."""
    remote = [e for e in chosen if getattr(e, "concurrency", 1) > 1]
    local = [e for e in chosen if getattr(e, "concurrency", 1) <= 1]
    progress.stage("evaluating", len(calls) * (1 + len(remote)))
    evaluations: dict[tuple[str, str], list[ev.EvaluationResult]] = {}
    for i, call in enumerate(calls):
        evaluations[(call.trace_id, call.span_id)] = ev.evaluate(call, local)
        if i % 200 == 199:
            progress.advance(200)
    progress.advance(len(calls) % 200)
    for evaluator in remote:
        from concurrent.futures import ThreadPoolExecutor

        def one(call: records.LLMCall, evaluator: Any = evaluator) -> list[ev.EvaluationResult]:
            return ev.evaluate(call, [evaluator])

        with ThreadPoolExecutor(max_workers=int(evaluator.concurrency), thread_name_prefix="llmobs-evaluate") as pool:
            for call, results in zip(calls, pool.map(one, calls), strict=True):
                evaluations[(call.trace_id, call.span_id)].extend(results)
                progress.advance()
    return evaluations


def events_of(analysis: Analysis) -> dict[tuple[str, str], list[ev.EvaluationResult]]:
    """What goes back to the store: failed checks and any non-built-in evaluation (a judge's score),
    each call's topic, and each failure's problem class. Passing built-in checks are only counted."""
    builtin = set(sc.QUALITY_EVALUATIONS)
    names = {c.id: c.label for c in analysis.clusters}
    out: dict[tuple[str, str], list[ev.EvaluationResult]] = {}
    for call, label in zip(analysis.calls, analysis.labels, strict=True):
        key = (call.trace_id, call.span_id)
        events = out.setdefault(key, [])
        events.extend(r for r in analysis.evaluations.get(key, ()) if r.failed or r.name not in builtin)
        if label >= 0:
            events.append(ev.EvaluationResult(sc.EVAL_TOPIC, None, names.get(label, str(label)),
                                              f"cluster {label}", sc.EVALUATION_SOURCE_ANALYZE))
    for failure, classification in analysis.classifications:
        out.setdefault((failure.trace_id, failure.span_id), []).append(ev.EvaluationResult(
            sc.EVAL_PROBLEM_CLASS, 0.0, classification.problem, classification.evidence, sc.EVALUATION_SOURCE_ANALYZE,
        ))
    return out


def _summaries(analysis: Analysis, terms: dict[int, list[str]]) -> list[ClusterSummary]:
    groups: dict[int, list[records.LLMCall]] = {}
    for call, label in zip(analysis.calls, analysis.labels, strict=True):
        groups.setdefault(label, []).append(call)
    summaries = []
    for cid, members in sorted(groups.items(), key=lambda kv: (kv[0] < 0, -len(kv[1]))):
        flag_counts: Counter[str] = Counter()
        flagged_calls = []
        for call in members:
            flags = analysis.flags(call)
            flag_counts.update(flags)
            if flags:
                flagged_calls.append(call)
        errors = [c for c in members if c.failed]
        # Examples: the failing and flagged first (what to look at), then ordinary ones.
        by_id = {c.span_id: c for c in members}
        picked = [by_id[s] for s in dict.fromkeys(c.span_id for c in [*errors[:2], *flagged_calls[:2], *members])]
        picked = picked[:EXAMPLES]
        words = terms.get(cid, [])
        summaries.append(ClusterSummary(
            id=cid, label=", ".join(words[:3]) if cid >= 0 and words else ("unclustered" if cid < 0 else f"#{cid}"),
            terms=words, calls=len(members), errors=len(errors), error_rate=len(errors) / len(members),
            p50_latency_s=weighted_percentile(((c.duration_ns / 1e9, 1.0) for c in members), 0.5),
            p95_latency_s=weighted_percentile(((c.duration_ns / 1e9, 1.0) for c in members), 0.95),
            p95_ttft_s=weighted_percentile(((c.ttft_ns / 1e9, 1.0) for c in members if c.ttft_ns is not None), 0.95),
            input_tokens=sum(c.input_tokens or 0 for c in members),
            output_tokens=sum(c.output_tokens or 0 for c in members),
            cost_usd=round(sum(c.cost_usd or 0.0 for c in members), 6),
            flagged=len(flagged_calls), flag_rate=len(flagged_calls) / len(members),
            flags=dict(flag_counts.most_common()),
            examples=[_example(c, "; ".join(analysis.flags(c))) for c in picked],
        ))
    return summaries


def _example(call: records.LLMCall, note: str = "") -> dict[str, Any]:
    return {"trace_id": call.trace_id, "span_id": call.span_id, "model": call.model,
            "question": call.question[:300], "output": (call.output or "")[:300], "error_type": call.error_type,
            "duration_s": call.duration_ns / 1e9, "note": note}


def _models(calls: list[records.LLMCall]) -> list[dict[str, Any]]:
    groups: dict[tuple[str | None, str | None], list[records.LLMCall]] = {}
    for call in calls:
        groups.setdefault((call.provider, call.model), []).append(call)
    rows = []
    for (provider, model), members in groups.items():
        rows.append({
            "provider": provider, "model": model, "calls": len(members),
            "errors": sum(c.failed for c in members),
            "input_tokens": sum(c.input_tokens or 0 for c in members),
            "output_tokens": sum(c.output_tokens or 0 for c in members),
            "cost_usd": round(sum(c.cost_usd or 0.0 for c in members), 6),
            "p95_latency_s": weighted_percentile(((c.duration_ns / 1e9, 1.0) for c in members), 0.95),
        })
    return sorted(rows, key=lambda r: -r["calls"])


def _distribution(values: list[float], bins: int = 24) -> dict[str, Any]:
    """Percentiles and a log-spaced histogram of durations in seconds."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "edges": [], "counts": []}
    import numpy as np

    data = np.asarray(values, dtype=float)
    low = max(float(data.min()), 1e-4)
    high = max(float(data.max()), low * 1.0001)
    edges = np.geomspace(low, high, bins + 1)
    counts, _ = np.histogram(np.clip(data, low, high), bins=edges)
    pct = lambda q: weighted_percentile(((v, 1.0) for v in values), q)  # noqa: E731
    return {"count": len(values), "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
            "edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
