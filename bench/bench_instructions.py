"""Instructions per traced call, counted by callgrind: llmobs against the anchors, without timing noise.

``bench_openai.py`` times calls through a loopback server; on a shared machine the client's own round trip
varies by more than the costs compared. This bench counts the work instead. Each variant runs in its own
process under ``valgrind --tool=callgrind`` twice, making N1 and then N2 calls (after the same warm-up) of
the real ``openai`` client over a stub transport that answers at once with what ``llmobs_openai.testing``'s
server would send (``--loopback``: over that server itself, in its own process and not counted, so that the
client's socket and connection-pool work is counted too); ``(I2 - I1) / (N2 - N1)`` is the variant's
instructions per call, its imports and warm-up cancelled out. Added = variant - ``bare``. Hash randomisation
is off; reruns of a variant still differ by up to ≈ 2 % (≈ 60 k instructions on a LangChain ``chain`` invoke;
more over the loopback server, where the socket's reads split differently from run to run), so small
differences of added work need repeated runs.

Variants and providers as in ``bench_openai.py``'s workers, ``llmobs_provider`` by default (``--metrics
sdk_provider``: an application's own SDK meter provider, through which every variant's metrics go): ``bare``
(``httpx.Client``), ``llmobs`` (``llmobs_openai.http_client``), ``openllmetry`` and ``openai_v2`` instrumented
on the bare client; content capture on for every one. Scenarios: ``call`` (a chat completion) and ``stream`` (a
streamed one of 50 content chunks and the usage chunk, read to the end). Instructions are not time: this
measures how much work is added, to tell small changes apart; ``bench_openai.py`` stays the latency bench.

``--suite langchain`` counts ``bench_langchain.py``'s invokes the same way — ``chain`` (``prompt | chat |
parser``), ``stream`` (the same, streamed) and ``agent`` (the LangGraph tool-calling loop) — on the same
providers, for ``bare``, ``noop`` (a callback handler that does nothing: LangChain's own callback cost),
``sdk_floor`` (one bare SDK span per run), ``lean_floor`` (one bare span per run as llmobs' recorder makes
them), ``llmobs``, ``llmobs_no_content`` (capture mode NO_CONTENT),
``openllmetry`` and ``openinference``; added = variant - ``bare``, as in ``bench_langchain.py``.

``--l2``: counted by cachegrind instead, its last level sized as this machine's per-core L2 (1 MiB), so that
the report also gives the L2 misses of a simulated core per call. By time llmobs' added work costs about twice
what its instructions would say, and those misses are why: each call's code and data, evicted by the client's own
milliseconds of work, are fetched again. Their ratio to an anchor's follows ``bench_openai.py``'s time ratio far
more closely than the instructions' does, without its noise.

Needs ``valgrind`` (Debian package ``valgrind``). About a minute per variant and scenario on two cores.

    .venv/bin/python bench/bench_instructions.py [--suite openai|langchain] [--quick] [--scenarios ...]
        [--variants ...] [--metrics llmobs_provider|sdk_provider] [--loopback] [--l2] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bench_openai
import harness

VARIANTS = ("bare", "llmobs", "openllmetry", "openai_v2")
SCENARIOS = ("call", "stream")
LANGCHAIN_VARIANTS = (
    "bare", "noop", "sdk_floor", "lean_floor", "llmobs", "llmobs_no_content", "openllmetry", "openinference",
)
LANGCHAIN_SCENARIOS = ("chain", "stream", "agent")
#: Variants that make no span: every other one must.
UNTRACED = frozenset({"bare", "noop"})
WARMUP = 20
#: (N1, N2) calls per run; ``--quick``: fewer.
CALLS = {"call": (20, 120), "stream": (5, 25), "chain": (20, 100), "agent": (5, 25)}
QUICK_CALLS = {"call": (2, 6), "stream": (1, 3), "chain": (2, 6), "agent": (1, 3)}
SUITES = {"openai": (VARIANTS, SCENARIOS), "langchain": (LANGCHAIN_VARIANTS, LANGCHAIN_SCENARIOS)}
#: The meter provider unless ``--metrics`` says otherwise: one as ``llmobs.configure()`` installs it.
DEFAULT_METRICS = bench_openai.METRICS_SETUPS[0]
_COLLECTED = re.compile(r"Collected : (\d+)")
_RUN_TIMEOUT_S = 1200


# --- the child: calls of one variant ---------------------------------------------------------------


def child(suite: str, variant: str, scenario: str, calls: int, own_metrics: bool = True,
          port: int | None = None) -> int:
    """Warm up, then make ``calls`` calls of ``scenario`` with ``variant``; the spans those calls recorded.
    ``own_metrics``: the meter provider is one as llmobs installs it, else an application's SDK provider;
    ``port``: the loopback server's, else the stub transport answers."""
    if suite == "langchain":
        return _langchain_child(variant, scenario, calls, own_metrics)
    call, exporter = openai_call(variant, scenario, own_metrics, port)
    finisher = sys.modules.get("llmobs.finisher")
    if finisher is not None:
        # Under valgrind a call takes some 50 times as long, and calls would reach the finisher's delay before a
        # batch fills: the steady traffic timed by bench_openai.py is modelled by batches alone.
        finisher._default.delay_s = 3600.0
    return _spans_of(call, calls, exporter)


def openai_call(variant: str, scenario: str, own_metrics: bool = True,
                port: int | None = None) -> tuple[Callable[[], Any], Any]:
    """One ``scenario`` call of the real ``openai`` client, traced as ``variant`` says, and the exporter that
    counts its spans (also ``bench_footprint.py``'s); ``own_metrics`` and ``port`` as ``child``'s."""
    tracer_provider, meter_provider, exporter = bench_openai._providers(own_metrics=own_metrics)
    client = bench_openai._ours(port) if variant == "llmobs" else bench_openai._bare(port)
    if variant not in ("bare", "llmobs"):
        bench_openai._anchor_switch(variant, tracer_provider, meter_provider).on()
    make = bench_openai._call if scenario == "call" else bench_openai._stream
    return lambda: make(client), exporter


def _spans_of(call: Callable[[], Any], calls: int, exporter: Any) -> int:
    """Make ``WARMUP`` calls, then ``calls`` more: the spans ``exporter`` counted for the latter."""
    for _ in range(WARMUP):
        call()
    bench_openai.settle()
    exporter.count = 0
    for _ in range(calls):
        call()
    bench_openai.settle()  # the calls' spans still queued to be finished in the background: theirs
    return exporter.count


def _langchain_child(variant: str, scenario: str, calls: int, own_metrics: bool) -> int:
    if variant == "llmobs_no_content":
        os.environ["LLMOBS_CAPTURE"] = "no_content"
    import bench_langchain

    _, _, exporter = bench_openai._providers(own_metrics=own_metrics)
    run = bench_langchain.scenarios()[scenario]
    chosen = bench_langchain.variant("llmobs" if variant == "llmobs_no_content" else variant, 9)  # port unused
    chosen.on()
    return _spans_of(lambda: run(dict(chosen.config)), calls, exporter)


# --- the parent: callgrind runs ----------------------------------------------------------------------


#: ``--l2``: cachegrind with its last level sized as this machine's per-core L2 (1 MiB, 8-way, 64-byte lines; the
#: L1s 32 KiB, 8-way), so that its last-level misses are the L2 misses of a simulated core.
_L2_CACHEGRIND = ["--tool=cachegrind", "--cache-sim=yes", "--branch-sim=no", "--I1=32768,8,64", "--D1=32768,8,64",
                  "--LL=1048576,8,64", "--cachegrind-out-file=/dev/null"]  # fmt: skip
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_LL_MISSES = re.compile(r"LL misses:\s+([\d,]+)")


def _counts(suite: str, variant: str, scenario: str, calls: int, env: dict[str, str],
            l2: bool = False, metrics: str = DEFAULT_METRICS, port: int | None = None) -> tuple[int, int | None]:
    """Instructions for one child process making ``calls`` calls, counted by callgrind; with ``l2``, by
    cachegrind, with the misses of a simulated L2 (else None); ``metrics``: the meter provider's setup;
    ``port``: the loopback server's, else the stub transport answers."""
    tool = _L2_CACHEGRIND if l2 else ["--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        ["valgrind", *tool, sys.executable, __file__, "--child", suite, variant, scenario, str(calls),
         "--metrics", metrics, *(["--port", str(port)] if port is not None else [])],
        capture_output=True, text=True, timeout=_RUN_TIMEOUT_S, env=env,
    )  # fmt: skip
    found = (_REFS if l2 else _COLLECTED).search(done.stderr)
    misses = _LL_MISSES.search(done.stderr) if l2 else None
    if done.returncode != 0 or found is None or (l2 and misses is None):
        raise RuntimeError(f"{variant} {scenario} x{calls} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    spans = int(done.stdout.strip().splitlines()[-1])
    if not records_as_it_should(suite, variant, spans, calls):
        raise RuntimeError(f"{variant} recorded {spans} spans for {calls} {scenario} calls")
    return int(found.group(1).replace(",", "")), int(misses.group(1).replace(",", "")) if misses else None


def records_as_it_should(suite: str, variant: str, spans: int, calls: int) -> bool:
    """No span for an untraced variant; else one per OpenAI-API call, or whole spans per LangChain invoke."""
    if variant in UNTRACED:
        return spans == 0
    return spans == calls if suite == "openai" else spans > 0 and spans % calls == 0


def child_environment(variant: str) -> dict[str, str]:
    """The environment of ``variant``'s child processes: its anchor's (``bench_openai``), hash randomisation off
    (also ``bench_footprint.py``'s). RuntimeError (why) if it cannot be prepared."""
    try:
        env = bench_openai._worker_environment(variant)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(str(exc)) from exc
    env["PYTHONHASHSEED"] = "0"
    return env


def measure(suite: str, variant: str, scenario: str, n1: int, n2: int, l2: bool = False,
            metrics: str = DEFAULT_METRICS, port: int | None = None) -> dict[str, Any]:
    """Instructions per call of one variant and scenario (with ``l2``, simulated L2 misses too) on the meter
    provider ``metrics`` names, over the loopback server on ``port`` or the stub transport, or why they could
    not be measured."""
    try:
        env = child_environment(variant)
    except RuntimeError as exc:
        return {"unavailable": str(exc)}
    try:
        (first, first_misses), (second, second_misses) = (
            _counts(suite, variant, scenario, n, env, l2, metrics, port) for n in (n1, n2)
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"unavailable": str(exc)}
    row = {"per_call": (second - first) / (n2 - n1), "calls": [n1, n2], "instructions": [first, second]}
    if first_misses is not None and second_misses is not None:
        row["l2_misses_per_call"] = (second_misses - first_misses) / (n2 - n1)
        row["l2_misses"] = [first_misses, second_misses]
    return row


_GOALS = {
    "openai": "goal (bench_openai.py, in time): llmobs added per call <= 0.5 x the best anchor's",
    "langchain": "goal (bench_langchain.py, in time): llmobs added <= 0.2 x OpenLLMetry's added",
}
#: What llmobs' added work is compared with: the anchors, and one bare SDK span per run.
_COMPARED = ("openllmetry", "openinference", "openai_v2", "sdk_floor", "lean_floor")


#: What a report compares, by row key: instructions always, simulated L2 misses with ``--l2``.
_MEASURES = (("instructions", "per_call"), ("L2 misses", "l2_misses_per_call"))


def summary(results: dict[str, dict[str, dict[str, Any]]], suite: str) -> list[str]:
    lines = []
    for scenario, rows in results.items():
        unit = "invoke" if suite == "langchain" else "call" if scenario == "call" else "streamed call"
        l2 = any("l2_misses_per_call" in row for row in rows.values())
        lines.append(f"{scenario}: instructions{' and simulated L2 misses' if l2 else ''} per {unit}")
        per = "per " + unit.split()[-1]
        lines.append(f"  {'variant':<18} {per:>12} {'added':>12}" + (f" {'L2 misses':>10} {'added':>8}" if l2 else ""))
        for variant, row in rows.items():
            if "per_call" not in row:
                lines.append(f"  {variant:<18} unavailable: {row['unavailable']}")
                continue
            line = f"  {variant:<18} {row['per_call']:12,.0f} {_added(rows, variant, 'per_call'):>12}"
            if l2:
                line += f" {row['l2_misses_per_call']:10,.0f} {_added(rows, variant, 'l2_misses_per_call'):>8}"
            lines.append(line)
        for anchor in _COMPARED:
            ratios = []
            for name, key in _MEASURES:
                ratio = _added_ratio(rows, anchor, key)
                if ratio is not None:
                    ratios.append(f"{name} {ratio:.2f}")
            if ratios:
                lines.append(f"  llmobs added / {anchor} added: {', '.join(ratios)}")
    lines.append(_GOALS[suite])
    return lines


def _added(rows: dict[str, dict[str, Any]], variant: str, key: str) -> str:
    """``variant``'s ``key`` over bare's, formatted; empty for bare itself or when either is missing."""
    bare, value = rows.get("bare", {}).get(key), rows[variant].get(key)
    return "" if variant == "bare" or bare is None or value is None else f"{value - bare:,.0f}"


def _added_ratio(rows: dict[str, dict[str, Any]], anchor: str, key: str) -> float | None:
    """llmobs' added ``key`` over ``anchor``'s, when both are measured and the anchor adds something."""
    bare, ours, theirs = (rows.get(v, {}).get(key) for v in ("bare", "llmobs", anchor))
    if None in (bare, ours, theirs) or theirs <= bare:
        return None
    return (ours - bare) / (theirs - bare)


def chosen(scenarios: str | None, variants: str | None, known_scenarios: Sequence[str],
           known_variants: Sequence[str]) -> tuple[list[str], list[str]]:
    """The comma-separated scenarios and variants asked for (default: all known), ``bare`` always first;
    SystemExit naming any unknown one (also ``bench_footprint.py``'s)."""
    scenario_list = [s for s in (scenarios or ",".join(known_scenarios)).split(",") if s]
    variant_list = ["bare"] + [v for v in (variants or ",".join(known_variants)).split(",") if v and v != "bare"]
    unknown = (set(scenario_list) - set(known_scenarios)) | (set(variant_list) - set(known_variants))
    if unknown:
        raise SystemExit(f"unknown scenario or variant: {', '.join(sorted(unknown))}")
    return scenario_list, variant_list


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="openai",
                        help="openai: OpenAI-API calls (default); langchain: bench_langchain.py's invokes")
    parser.add_argument("--quick", action="store_true", help="few calls, for a smoke run")
    parser.add_argument("--scenarios", help="comma-separated (default: all of the suite's)")
    parser.add_argument("--variants", help="comma-separated (default: all of the suite's); bare is always run")
    parser.add_argument("--l2", action="store_true",
                        help="count with cachegrind, also the misses of a simulated 1 MiB L2 (about twice as long)")
    parser.add_argument("--metrics", choices=bench_openai.METRICS_SETUPS, default=DEFAULT_METRICS,
                        help="the meter provider: as llmobs installs it (default), or an application's SDK provider")
    parser.add_argument("--loopback", action="store_true",
                        help="openai suite: the loopback server (in its own process) instead of the stub transport")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--child", nargs=4, metavar=("SUITE", "VARIANT", "SCENARIO", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        suite, variant, scenario, calls = args.child
        print(child(suite, variant, scenario, int(calls), own_metrics=args.metrics == DEFAULT_METRICS, port=args.port))
        return {}
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions needs valgrind on PATH (Debian: apt-get install valgrind)")
    if args.loopback and args.suite != "openai":
        raise SystemExit("--loopback is for the openai suite: LangChain's invokes make no HTTP call")
    known_variants, known_scenarios = SUITES[args.suite]
    scenarios, variants = chosen(args.scenarios, args.variants, known_scenarios, known_variants)
    counts = QUICK_CALLS if args.quick else CALLS
    jobs = [(v, s) for s in scenarios for v in variants]
    server, port = bench_openai._server() if args.loopback else (None, None)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            done = pool.map(
                lambda job: measure(args.suite, *job, *counts[job[1]], l2=args.l2, metrics=args.metrics, port=port),
                jobs,
            )
            results: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in scenarios}
            for (variant, scenario), row in zip(jobs, done, strict=True):
                results[scenario][variant] = row
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    transport = "loopback server" if args.loopback else "stub"
    print(f"meter provider: {args.metrics}; transport: {transport}")
    print("\n".join(summary(results, args.suite)))
    report = {"bench": "instructions", "suite": args.suite, "metrics": args.metrics, "transport": transport,
              "scenarios": results, "run": harness.machine_info()}
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
