"""The Python code a traced OpenAI-API call runs: bytecodes executed, and how many distinct ones (its footprint).

``bench_instructions.py`` counts machine instructions, and by that count llmobs adds about a third of what
openai-v2 adds per call; by time (``bench_openai.py``) it adds about two thirds. The same recorder code timed
in a tight loop runs at the SDK's own speed per instruction, so the difference is in how the code is run in a
call: once each, between milliseconds of the client's own work, with what it touches cold again every time.
Code that runs once per call costs time per *distinct* bytecode (fetching it, its inline caches, the objects
it names; predicting its branches afresh), not only per bytecode executed; a loop pays that once. This bench
counts both, so a change can be judged by the one that time follows:

* ``executed``: bytecodes run per call (each iteration of a loop counted);
* ``distinct``: distinct bytecodes run per call (a loop's body counted once) — the footprint;
* ``code objects``: distinct functions (and comprehensions) entered per call;
* ``in call``: distinct bytecodes run during the call itself, before the work llmobs queued to finish with
  other calls' (``llmobs.finisher``), which a batch runs warm: the part that runs cold, once per call.

Counted with ``sys.settrace`` opcode events in a child process per variant, after ``WARMUP`` calls, one call at
a time, averaged over the calls made; added = variant − ``bare``, as in ``bench_instructions.py`` (the same
variants, the same stub transport and providers). Only Python bytecode is seen: work in C (the JSON parser,
dict operations) is not. Deterministic up to hash randomisation, which is off; seconds per variant.

    .venv/bin/python bench/bench_footprint.py [--quick] [--scenarios call,stream] [--variants ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from types import CodeType, FrameType
from typing import Any

import bench_instructions
import harness

VARIANTS = bench_instructions.VARIANTS
SCENARIOS = bench_instructions.SCENARIOS
WARMUP = bench_instructions.WARMUP
CALLS = 10
QUICK_CALLS = 2
#: Where a code object's file is shown from: its package or module path, not the machine's.
_PACKAGE_PATH = re.compile(r".*/(?:site-packages|src|python3\.\d+|bench)/")
_RUN_TIMEOUT_S = 600


# --- the child: one variant's calls, traced bytecode by bytecode -----------------------------------


def footprint(call: Callable[[], Any]) -> tuple[int, set[tuple[CodeType, int]]]:
    """Run ``call`` once under an opcode tracer: (bytecodes executed, the distinct (code, offset) pairs)."""
    seen: set[tuple[CodeType, int]] = set()
    executed = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal executed
        if event == "opcode":
            executed += 1
            seen.add((frame.f_code, frame.f_lasti))
        elif event == "call":
            frame.f_trace_opcodes = True
        return trace

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return executed, seen


def child(variant: str, scenario: str, calls: int) -> dict[str, Any]:
    """Warm up, then trace ``calls`` calls one by one: the averages per call, distinct bytecodes by file, spans."""
    traced, exporter = bench_instructions.openai_call(variant, scenario)
    settle = bench_instructions.bench_openai.settle

    for _ in range(WARMUP):
        traced()
        settle()
    exporter.count = 0
    executed = distinct = codes = in_call = 0
    by_file: Counter[str] = Counter()
    for _ in range(calls):
        ran, seen = footprint(traced)
        in_call += len(seen)
        ran_later, seen_later = footprint(settle)  # its span finished here, on the traced thread
        executed += ran + ran_later
        seen |= seen_later
        distinct += len(seen)
        codes += len({code for code, _ in seen})
        by_file.update(_PACKAGE_PATH.sub("", code.co_filename) for code, _ in seen)
    return {
        "executed": executed / calls, "distinct": distinct / calls, "code_objects": codes / calls,
        "in_call": in_call / calls, "distinct_by_file": {name: n / calls for name, n in by_file.items()},
        "spans": exporter.count,
    }  # fmt: skip


# --- the parent -------------------------------------------------------------------------------------------


def measure(variant: str, scenario: str, calls: int) -> dict[str, Any]:
    """One variant's footprint per call in a child process, or why it could not be measured."""
    try:
        env = bench_instructions.child_environment(variant)
    except RuntimeError as exc:
        return {"unavailable": str(exc)}
    done = subprocess.run([sys.executable, __file__, "--child", variant, scenario, str(calls)], capture_output=True,
                          text=True, timeout=_RUN_TIMEOUT_S, env=env)  # fmt: skip
    if done.returncode != 0:
        return {"unavailable": f"{variant} {scenario} failed: {(done.stderr or done.stdout).strip()[-400:]}"}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if not bench_instructions.records_as_it_should("openai", variant, row["spans"], calls):
        return {"unavailable": f"{variant} recorded {row['spans']} spans for {calls} {scenario} calls"}
    return row


_METRICS = ("executed", "distinct", "code_objects", "in_call")


def added(rows: dict[str, dict[str, Any]], variant: str) -> dict[str, float] | None:
    """``variant`` minus ``bare``, per metric (None when either is missing)."""
    bare, row = rows.get("bare", {}), rows.get(variant, {})
    if "executed" not in bare or "executed" not in row:
        return None
    return {metric: row[metric] - bare[metric] for metric in _METRICS}


def added_by_file(rows: dict[str, dict[str, Any]], variant: str, top: int = 12) -> list[tuple[str, float]]:
    """The files whose distinct bytecodes ``variant`` adds most, with how many."""
    bare = rows.get("bare", {}).get("distinct_by_file", {})
    mine = rows.get(variant, {}).get("distinct_by_file", {})
    extra = {name: n - bare.get(name, 0) for name, n in mine.items()}
    return sorted(((name, n) for name, n in extra.items() if n > 0), key=lambda item: -item[1])[:top]


def summary(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for scenario, rows in results.items():
        lines.append(f"{scenario}: Python bytecodes per call, added over bare")
        lines.append(f"  {'variant':<14} {'executed':>10} {'distinct':>10} {'code objects':>13} {'in call':>8}")
        for variant, row in rows.items():
            if "executed" not in row:
                lines.append(f"  {variant:<14} unavailable: {row['unavailable']}")
                continue
            extra = added(rows, variant) if variant != "bare" else None
            shown = extra or {metric: row[metric] for metric in _METRICS}
            lines.append(f"  {variant:<14} {shown['executed']:>10,.0f} {shown['distinct']:>10,.0f} "
                         f"{shown['code_objects']:>13,.0f} {shown['in_call']:>8,.0f}"
                         f"{'' if extra else '  (bare: its own)'}")  # fmt: skip
        ours = added(rows, "llmobs")
        for anchor in VARIANTS:
            theirs = added(rows, anchor) if anchor not in ("bare", "llmobs") else None
            if ours and theirs and all(theirs[m] > 0 for m in _METRICS):
                ratios = "  ".join(f"{m} {ours[m] / theirs[m]:.2f}" for m in _METRICS)
                lines.append(f"  llmobs added / {anchor} added: {ratios}")
        if ours:
            lines.append("  llmobs' added distinct bytecodes by file: "
                         + ", ".join(f"{name} {n:,.0f}" for name, n in added_by_file(rows, "llmobs")))  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few calls, for a smoke run")
    parser.add_argument("--scenarios", help="comma-separated: call, stream (default: both)")
    parser.add_argument("--variants", help="comma-separated (default: all); bare is always run")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SCENARIO", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, scenario, calls = args.child
        print(json.dumps(child(variant, scenario, int(calls))))
        return {}
    scenarios, variants = bench_instructions.chosen(args.scenarios, args.variants, SCENARIOS, VARIANTS)
    calls = QUICK_CALLS if args.quick else CALLS
    results = {s: {v: measure(v, s, calls) for v in variants} for s in scenarios}
    print("\n".join(summary(results)))
    report = {"bench": "footprint", "scenarios": results, "run": harness.machine_info()}
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
