"""``llmobs analyze``: the command line over :func:`llmobs.analyze.analyze`.

Prints a summary (or, with ``--json``, the whole analysis as JSON) on stdout, progress bars on stderr
only when it is a terminal and ``--json`` is off, and writes the HTML report with ``--out``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from llmobs import strict_json

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since(text: str) -> int:
    """``30m``, ``24h``, ``7d``, ``2w`` ago, or an ISO date/time, as ns since the epoch."""
    match = _DURATION.match(text.strip())
    if match:
        return time.time_ns() - int(float(match.group(1)) * _UNITS[match.group(2)] * 1e9)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (30m, 24h, 7d) or an ISO date: {text!r}") from None
    return int(moment.timestamp() * 1e9)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=since, metavar="WHEN", help="only calls since WHEN: 24h, 7d, or an ISO date")
    parser.add_argument("--service", metavar="S", help="only calls of service S")
    parser.add_argument("--out", type=Path, metavar="PATH", help="write the HTML report there")
    parser.add_argument("--embedder", choices=("auto", "tfidf", "minilm"), default="auto",
                        help="text vectors: the packaged MiniLM model when installed (auto), else TF-IDF + SVD")
    parser.add_argument("--no-write", action="store_true",
                        help="do not write the results back to the store as evaluation events")
    parser.add_argument("--otlp", action="store_true",
                        help="also export the results as OTLP log events (standard OTEL_EXPORTER_OTLP_* settings)")
    parser.add_argument("--judge-url", default=os.environ.get("LLMOBS_JUDGE_URL"), metavar="URL",
                        help="OpenAI-compatible base URL of an LLM judge (default: $LLMOBS_JUDGE_URL)")
    parser.add_argument("--judge-model", default=os.environ.get("LLMOBS_JUDGE_MODEL"), metavar="MODEL",
                        help="the judge's model (default: $LLMOBS_JUDGE_MODEL); key: $LLMOBS_JUDGE_API_KEY")
    parser.add_argument("--judge-limit", type=int, default=50, metavar="N", help="calls judged at most (default 50)")


def run(args: argparse.Namespace) -> int:
    from llmobs import plugins
    from llmobs.store import StoreError, default_path

    try:
        from llmobs.analyze import analysis, report
        from llmobs.analyze.embedding import AnalysisUnavailable
        from llmobs.analyze.progress import Progress
    except ImportError as exc:
        return _fail(f"llmobs analyze needs the analysis extra: pip install 'llmobs[analysis]' ({exc})")

    path = Path(args.store).expanduser() if args.store else default_path()
    judge_plugin = None
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            return _fail("an LLM judge needs both --judge-url and --judge-model")
        from llmobs.analyze.judge import JudgeEvaluator, JudgePlugin

        judge_plugin = JudgePlugin(JudgeEvaluator(args.judge_url, args.judge_model, limit=args.judge_limit))
        plugins.register(judge_plugin, name="llmobs.analyze.judge")
    progress = Progress.for_terminal(quiet=args.json)
    try:
        result = analysis.analyze(path, since_ns=args.since, service=args.service, embedder=args.embedder,
                                  write=not args.no_write, progress=progress)
    except (FileNotFoundError, StoreError, AnalysisUnavailable) as exc:
        progress.close()
        return _fail(str(exc))
    except ImportError as exc:
        progress.close()
        return _fail(f"llmobs analyze needs the analysis extra: pip install 'llmobs[analysis]' ({exc})")
    finally:
        if judge_plugin is not None:
            plugins.unregister(judge_plugin)
    data = result.to_dict()
    if args.otlp:
        from llmobs.analyze import otlp

        data["otlp_events"] = otlp.export(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.render(data), encoding="utf-8")
    if args.json:
        print(strict_json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(summary(data))
    if args.out:
        print(f"\nreport: {args.out}")
    return 0


def summary(data: dict) -> str:
    from llmobs.cli import render

    totals = data["totals"]
    if not totals["calls"]:
        filtered = data["since_ns"] or data["service"]
        return "no model calls to analyse" + (" (none match the filters)" if filtered else "")
    lines = [
        f"{totals['calls']:,} model calls · {totals['errors']:,} errors · {totals['flagged_calls']:,} flagged by"
        f" quality checks · {totals['clusters']} topics ({data['embedder']}, {data['clustering']})"
        f" · {totals['events_written']:,} evaluation events written",
        "",
    ]
    rows = [
        [(c["label"], None), (render.count(c["calls"]), None), (f"{c['error_rate']:.1%}", None),
         (render.duration(_ns(c["p95_latency_s"])), None), (render.duration(_ns(c["p95_ttft_s"])), None),
         (render.count(c["input_tokens"] + c["output_tokens"]), None), (render.cost(c["cost_usd"]), None),
         (f"{c['flag_rate']:.1%}", None)]
        for c in data["clusters"]
    ]
    lines.append(render.table(("TOPIC", "CALLS", "ERRORS", "P95", "TTFT P95", "TOKENS", "COST", "FLAGGED"), rows,
                              right=(1, 2, 3, 4, 5, 6, 7)))
    if data["quality"]:
        lines += ["", "quality: " + ", ".join(f"{name} {q['failed']}/{q['evaluated']}"
                                              for name, q in data["quality"].items() if q["failed"]) or "no flags"]
    if data["problems"]:
        lines += ["problems: " + ", ".join(f"{name} {p['count']}" for name, p in data["problems"].items())]
    return "\n".join(lines)


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def _fail(message: str) -> int:
    print(f"llmobs: {message}", file=sys.stderr)
    return 1
