"""A small benchmark harness: interleaved variants, medians across rounds, same-run ratios.

The machines these run on are small and noisy, so a single timing means little. Each benchmark
registers named *variants* (a zero-argument callable doing one operation, with optional per-batch
setup and teardown) and the harness runs them interleaved in one process::

    warm-up: A B C (one untimed batch each)
    round 1: A B C    round 2: A B C    ...    round R: A B C

Each entry in a round times one batch of N calls with ``time.perf_counter_ns``. The garbage collector
is run before every batch (so one variant's garbage is not collected on another's clock) but stays
enabled during it, as in an application. Per variant the report gives the median time per operation
across rounds, the p10 and p90 across rounds, and the ratio of its median to a baseline variant's
median. Because every variant sees the same drift in machine load, ratios are the numbers to compare
between runs; absolute times are for orientation only.

Comparisons add ratios between any two variants, optionally as *added overhead* over a bare variant:
``(variant - bare) / (other - bare)``.

Command line flags shared by every bench (see :func:`parser`): ``--rounds``, ``--batch``, ``--quick``
(small numbers, for a smoke run) and ``--json PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Bench", "Comparison", "PatchSwitch", "Variant", "environment", "parser", "pool", "rss_bytes", "rss_growth",
]


@dataclass
class Variant:
    """One way of doing the operation under test.

    ``fn`` does one call; ``setup``/``teardown`` run around every batch, outside the timing (for
    state that must be fresh per batch, such as a new database file, or settings that must not leak
    into other variants). ``batch`` overrides the run's batch size (calls per timed batch) and
    ``units`` says how many operations one call performs (e.g. spans per ``export`` call), so that
    times are reported per operation. ``settle`` runs after a batch's calls, inside the timing: work the
    calls left queued (spans finished in the background) is theirs, and is timed with them.
    """

    name: str
    fn: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    teardown: Callable[[], Any] | None = None
    batch: int | None = None
    units: float = 1
    description: str = ""
    settle: Callable[[], Any] | None = None


@dataclass
class Comparison:
    """``variant / other``, or with ``bare`` the added-overhead ratio ``(variant - bare) / (other - bare)``."""

    label: str
    variant: str
    other: str
    bare: str | None = None


@dataclass
class Bench:
    """A named set of variants run interleaved; :meth:`run` returns the report as a dict."""

    name: str
    baseline: str | None = None
    unit: str = "op"
    variants: list[Variant] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: What a batch is timed with: wall time by default; ``time.process_time_ns`` measures the CPU this
    #: process spends (all its threads), which leaves out waiting on another process, e.g. a server's.
    clock: Callable[[], int] = time.perf_counter_ns

    def add(
        self,
        name: str,
        fn: Callable[[], Any],
        *,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[[], Any] | None = None,
        batch: int | None = None,
        units: float = 1,
        description: str = "",
        settle: Callable[[], Any] | None = None,
    ) -> Variant:
        if any(v.name == name for v in self.variants):
            raise ValueError(f"duplicate variant {name!r}")
        variant = Variant(name, fn, setup, teardown, batch, units, description, settle)
        self.variants.append(variant)
        return variant

    def compare(self, label: str, variant: str, other: str, bare: str | None = None) -> None:
        self.comparisons.append(Comparison(label, variant, other, bare))

    # --- running --------------------------------------------------------------------------------
    def run(self, rounds: int, batch: int, *, warmup: bool = True, progress: bool = False) -> dict[str, Any]:
        """Run every variant ``rounds`` times, interleaved; return the report (see :func:`report`)."""
        if not self.variants:
            raise ValueError("no variants registered")
        names = {v.name for v in self.variants}
        for name in [self.baseline, *(c.variant for c in self.comparisons), *(c.other for c in self.comparisons),
                     *(c.bare for c in self.comparisons)]:
            if name is not None and name not in names:
                raise ValueError(f"unknown variant {name!r}")
        if warmup:
            for variant in self.variants:
                _time_batch(variant, variant.batch or batch, self.clock)
        samples: dict[str, list[float]] = {v.name: [] for v in self.variants}
        started = time.perf_counter()
        for r in range(rounds):
            for variant in self.variants:
                calls = variant.batch or batch
                elapsed = _time_batch(variant, calls, self.clock)
                samples[variant.name].append(elapsed / (calls * variant.units))
            if progress:
                print(f"  round {r + 1}/{rounds}", file=sys.stderr, end="\r", flush=True)
        if progress:
            print(file=sys.stderr)
        clock = "cpu" if self.clock is time.process_time_ns else "wall"
        return self.report(samples, rounds=rounds, batch=batch, wall_s=time.perf_counter() - started, clock=clock)

    def report(self, samples: dict[str, list[float]], **run_info: Any) -> dict[str, Any]:
        """Summaries (median, p10, p90 in ns per operation; ratios) from per-round samples."""
        rows: dict[str, dict[str, Any]] = {}
        for variant in self.variants:
            values = samples[variant.name]
            rows[variant.name] = {
                "median_ns": statistics.median(values),
                "p10_ns": _quantile(values, 0.10),
                "p90_ns": _quantile(values, 0.90),
                "rounds": len(values),
                "calls_per_batch": variant.batch or run_info.get("batch"),
                "units_per_call": variant.units,
                "description": variant.description,
                "samples_ns": values,
            }
        if self.baseline is not None:
            base = rows[self.baseline]["median_ns"]
            base_samples = samples[self.baseline]
            for name, row in rows.items():
                row["ratio"] = row["median_ns"] / base
                # The median of per-round ratios pairs each sample with the baseline of its own round.
                row["paired_ratio"] = statistics.median(
                    v / b for v, b in zip(samples[name], base_samples, strict=True)
                )
        comparisons = []
        for c in self.comparisons:
            v, o = rows[c.variant]["median_ns"], rows[c.other]["median_ns"]
            paired = None
            if c.bare is None:
                ratio = v / o
            else:
                b = rows[c.bare]["median_ns"]
                ratio = (v - b) / (o - b) if o != b else float("nan")
                # Added costs paired within each round, then their medians: steadier when the bare
                # time itself drifts between rounds by more than the costs being compared.
                bare_samples = samples[c.bare]
                added_v = statistics.median(x - y for x, y in zip(samples[c.variant], bare_samples, strict=True))
                added_o = statistics.median(x - y for x, y in zip(samples[c.other], bare_samples, strict=True))
                paired = added_v / added_o if added_o else float("nan")
            comparisons.append({"label": c.label, "variant": c.variant, "other": c.other, "bare": c.bare,
                                "ratio": ratio, "paired_ratio": paired})
        return {
            "bench": self.name,
            "unit": self.unit,
            "baseline": self.baseline,
            "variants": rows,
            "comparisons": comparisons,
            "notes": list(self.notes),
            "run": {**run_info, **machine_info()},
        }


def pool(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Reports of the same bench run in several processes, as one: every process's rounds together
    (pairs stay within their round), and each comparison's paired ratio per process.

    One process is one draw of what a process's start decides and a run cannot see — where the
    interpreter, its heap and its libraries land in memory, which decides cache and branch-predictor
    collisions. On the same code, the added-time ratio of two variants measured in one process moved
    between processes here by more than the costs compared (0.37-0.79 over eight processes); the pooled
    rounds of several processes estimate the ratio over those draws."""
    if not reports:
        raise ValueError("no reports to pool")
    first = reports[0]
    bench = Bench(first["bench"], baseline=first["baseline"], unit=first["unit"], notes=list(first["notes"]))
    for name, row in first["variants"].items():
        bench.add(name, _unused, batch=row["calls_per_batch"], units=row["units_per_call"],
                  description=row["description"])  # fmt: skip
    for c in first["comparisons"]:
        bench.compare(c["label"], c["variant"], c["other"], c["bare"])
    samples = {name: [s for r in reports for s in r["variants"][name]["samples_ns"]] for name in first["variants"]}
    run = first["run"]
    pooled = bench.report(samples, rounds=sum(r["run"]["rounds"] for r in reports), batch=run.get("batch"),
                          wall_s=sum(r["run"].get("wall_s", 0) for r in reports), clock=run.get("clock"),
                          processes=len(reports))  # fmt: skip
    for i, c in enumerate(pooled["comparisons"]):
        key = "paired_ratio" if c["bare"] else "ratio"
        c["per_process"] = [r["comparisons"][i][key] for r in reports]
    return pooled


def _unused() -> None:
    raise AssertionError("a pooled report's variants are not run")


def _time_batch(variant: Variant, calls: int, clock: Callable[[], int] = time.perf_counter_ns) -> int:
    """Nanoseconds (of ``clock``) for ``calls`` calls of the variant and its settling, setup and teardown
    excluded."""
    fn = variant.fn
    if variant.setup is not None:
        variant.setup()
    try:
        gc.collect()
        t0 = clock()
        for _ in range(calls):
            fn()
        if variant.settle is not None:
            variant.settle()
        return clock() - t0
    finally:
        if variant.teardown is not None:
            variant.teardown()


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (the same as numpy's default), defined for any non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


# --- output ------------------------------------------------------------------------------------------


def format_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def table(report: dict[str, Any], *, extra: dict[str, Callable[[dict[str, Any]], str]] | None = None) -> str:
    """The report as a plain-text table; ``extra`` adds columns computed from each variant's row."""
    unit = report["unit"]
    headers = ["variant", f"median/{unit}", "p10", "p90"]
    if report["baseline"] is not None:
        headers += [f"x {report['baseline']}", "paired"]
    extra = extra or {}
    headers += list(extra)
    lines = []
    for name, row in report["variants"].items():
        cells = [name, format_ns(row["median_ns"]), format_ns(row["p10_ns"]), format_ns(row["p90_ns"])]
        if report["baseline"] is not None:
            cells += [f"{row['ratio']:.2f}", f"{row['paired_ratio']:.2f}"]
        cells += [fn(row) for fn in extra.values()]
        lines.append(cells)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    clock = " (CPU time of this process)" if report["run"].get("clock") == "cpu" else ""
    processes = report["run"].get("processes")
    where = f" in {processes} processes" if processes else ""
    out = [f"{report['bench']}: {report['run'].get('rounds')} rounds{where}, interleaved; times per {unit}{clock}",
           fmt(headers), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    for c in report["comparisons"]:
        how = f"({c['variant']} - {c['bare']}) / ({c['other']} - {c['bare']})" if c["bare"] else \
            f"{c['variant']} / {c['other']}"
        paired = f", paired {c['paired_ratio']:.2f}" if c.get("paired_ratio") is not None else ""
        spread = c.get("per_process")
        spread = f", per process {min(spread):.2f}-{max(spread):.2f}" if spread else ""
        out.append(f"{c['label']}: {c['ratio']:.2f}{paired}{spread}  [{how}]")
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out)


def write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=str)
        f.write("\n")


def publish(report: dict[str, Any], json_path: str | None) -> dict[str, Any]:
    """Print the report's table, write it as JSON if a path was given (``--json``), and return it."""
    print(table(report))
    if json_path:
        write_json(report, json_path)
    return report


# --- command line ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    rounds: int
    batch: int
    quick_rounds: int = 3
    quick_batch: int = 20


def parser(description: str, defaults: Defaults) -> argparse.ArgumentParser:
    """The flags every bench shares; a bench may add its own before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rounds", type=int, default=None,
                   help=f"timed rounds, each one batch of every variant (default {defaults.rounds})")
    p.add_argument("--batch", type=int, default=None,
                   help=f"calls per timed batch (default {defaults.batch}; some variants fix their own)")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    p.add_argument("--json", metavar="PATH", help="also write the full report (with every sample) as JSON")
    p.set_defaults(_defaults=defaults)
    return p


def resolve(args: argparse.Namespace) -> tuple[int, int]:
    """(rounds, batch) from the flags: explicit values win over ``--quick`` which wins over defaults."""
    d: Defaults = args._defaults
    rounds = args.rounds if args.rounds is not None else (d.quick_rounds if args.quick else d.rounds)
    batch = args.batch if args.batch is not None else (d.quick_batch if args.quick else d.batch)
    if rounds < 1 or batch < 1:
        raise SystemExit("--rounds and --batch must be at least 1")
    return rounds, batch


def add_processes_flag(p: argparse.ArgumentParser, default: int) -> None:
    """``--processes``, for a bench that times its variants in worker processes and pools them (:func:`pool`)."""
    p.add_argument("--processes", type=int, default=None,
                   help=f"worker processes per comparison, one after another, the rounds shared among them and "
                        f"pooled (default {default}; 1 with --quick)")  # fmt: skip
    p.set_defaults(_processes=default)


def resolve_processes(args: argparse.Namespace, rounds: int) -> tuple[int, int]:
    """(processes, rounds per process) from the flags: ``rounds`` shared among the processes."""
    processes = args.processes if args.processes is not None else 1 if args.quick else args._processes
    if processes < 1:
        raise SystemExit("--processes must be at least 1")
    return processes, -(-rounds // processes)


# --- environment -------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the ``with`` block; on exit each is restored (removed if it was unset).

    For libraries that read their settings from the environment when an object is built: build it
    inside the block, and the bench's own environment is left as it was.
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- switching an instrumentor's patches ----------------------------------------------------------------


class PatchSwitch:
    """Switches a global instrumentor's patches in and out without its ``uninstrument()`` (which, for
    several anchors, does not remove everything): remembers every attribute of ``owners`` that
    ``instrument`` replaced, and restores either version on demand. Starts switched off."""

    def __init__(self, owners: Sequence[Any], instrument: Callable[[], Any]) -> None:
        before = [dict(vars(owner)) for owner in owners]
        instrument()
        self.changes = [
            (owner, name, before_vars.get(name), value)
            for owner, before_vars in zip(owners, before, strict=True)
            for name, value in vars(owner).items()
            if before_vars.get(name) is not value
        ]
        if not self.changes:
            raise RuntimeError("the instrumentor patched none of the expected places")
        self.off()

    def on(self) -> None:
        for owner, name, _, patched in self.changes:
            setattr(owner, name, patched)

    def off(self) -> None:
        for owner, name, original, _ in self.changes:
            setattr(owner, name, original)


# --- memory ------------------------------------------------------------------------------------------

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size; falls back to the peak (``ru_maxrss``) where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def rss_growth(fn: Callable[[], Any], iterations: int, *, warmup: int = 0, samples: int = 10) -> dict[str, Any]:
    """Resident memory growth over ``iterations`` calls of ``fn`` (after ``warmup`` untimed calls).

    Returns the RSS before and after (collected garbage first), the growth in bytes and per
    iteration, and ``samples`` evenly spaced RSS readings, so a steady climb (a leak) can be told
    from a one-off step (a cache filling up). RSS moves in pages and allocators keep freed memory,
    so judge growth over many iterations, not a few.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    before = rss_bytes()
    every = max(1, iterations // max(1, samples))
    readings = []
    for i in range(1, iterations + 1):
        fn()
        if i % every == 0:
            readings.append((i, rss_bytes()))
    gc.collect()
    after = rss_bytes()
    growth = after - before
    return {
        "iterations": iterations,
        "rss_before": before,
        "rss_after": after,
        "growth_bytes": growth,
        "growth_per_iteration": growth / iterations if iterations else 0.0,
        "readings": readings,
        "peak_rss": _peak_rss(),
    }


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
