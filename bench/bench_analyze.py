"""llmobs analyze over a store of N model calls on the TF-IDF path: time per analysis, per call, per stage.

The store is generated once, before timing, by the corpus generator the analysis tests use
(``packages/core/tests/analyze_corpus.py``: eight topics, planted quality problems and failures, one
call per trace with an agent span around it and sometimes a retrieval, a tool or a parser), recorded
through the real recorder into a real SQLite file. ``--batch`` is the number of model calls (default
10 000, the issue's goal: at most 60 s on 2 cores).

Variants, each one whole analysis of the store per call:

* ``read_evaluate`` — the same-run floor: read the calls and failures from the store, run the built-in
  quality checks and classify the failures (no vectors, no clustering, no write);
* ``analyze`` — ``llmobs.analyze.analyze`` in full: read, checks, classification, TF-IDF + SVD
  embeddings, clustering (density-based above 3 000 calls), summaries, the write-back of the results
  as evaluation events (replacing the previous round's, as a re-run does). The HTML report is rendered
  from it too, timed apart (``report_s``).

The warm-up round also pays scikit-learn's import; the timed rounds do not.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import harness

CORE_TESTS = Path(__file__).resolve().parents[1] / "packages" / "core" / "tests"
DEFAULTS = harness.Defaults(rounds=3, batch=10_000, quick_rounds=1, quick_batch=300)


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__.split("\n\n")[0] + " (--batch: model calls in the store)", DEFAULTS)
    p.add_argument("--dir", help="where the database file goes (default: the system temporary directory)")
    args = p.parse_args(argv)
    rounds, calls = harness.resolve(args)
    if str(CORE_TESTS) not in sys.path:
        sys.path.insert(0, str(CORE_TESTS))
    import analyze_corpus

    from llmobs.analyze import analyze, problems, records
    from llmobs.analyze import evaluators as ev
    from llmobs.analyze import report as html_report

    last: dict = {}

    def full() -> None:
        result = analyze(store, embedder="tfidf")
        started = time.perf_counter()
        html_report.render(result.to_dict())
        last.update(result.timings, report_s=time.perf_counter() - started, clusters=len(result.clusters),
                    method=result.method, calls=len(result.calls), events=result.events_written)

    def floor() -> None:
        corpus = records.load(store)
        checks = ev.collect()
        for call in corpus.calls:
            ev.evaluate(call, checks)
        for failure in corpus.failures:
            problems.classify(failure)

    with tempfile.TemporaryDirectory(prefix="llmobs-bench-analyze-", dir=args.dir) as tmp:
        store = Path(tmp) / "analyze.db"
        started = time.perf_counter()
        analyze_corpus.build(store, calls, seed=1)
        built_s = time.perf_counter() - started
        bench = harness.Bench("analyze", baseline="read_evaluate", unit="call")
        bench.add("read_evaluate", floor, batch=1, units=calls, description="read + quality checks + classes")
        bench.add("analyze", full, batch=1, units=calls, description="the whole analysis, TF-IDF path")
        bench.compare("analyze / read_evaluate", "analyze", "read_evaluate")
        report = bench.run(rounds, 1, progress=not args.quick and sys.stderr.isatty())
    seconds = report["variants"]["analyze"]["median_ns"] * calls / 1e9
    report["run"].update(calls=calls, store_build_s=built_s, analysis_s=seconds, last_analysis=last)
    print(harness.table(report, extra={"per analysis": lambda row: f"{row['median_ns'] * calls / 1e9:.2f} s"}))
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in last.items() if k.endswith(("_s",)) or isinstance(v, float))
    print(f"{calls:,} model calls: one analysis takes {seconds:.1f} s (median of {rounds});"
          f" {last.get('clusters')} topics by {last.get('method')} clustering; stages: {stages}")
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
