"""The added latency of tracing OpenAI-API calls: llmobs_openai's transport against OpenLLMetry and openai-v2.

The real ``openai`` client calls ``llmobs_openai.testing``'s loopback OpenAI-compatible server (in its own
process, so it does not share this one's GIL): a chat completion, and a streamed one of 50 content chunks
plus the usage chunk, read to the end. Spans go to the global SDK ``TracerProvider`` with a
``SimpleSpanProcessor`` over an exporter that counts and drops; content capture is on for every variant
(OpenLLMetry captures by default; openai-v2 gets ``SPAN_ONLY``).

Variants, interleaved batch by batch by the harness in one process: ``bare`` (``httpx.Client()``),
``llmobs`` (``llmobs_openai.http_client()``), ``llmobs_no_content`` (capture NO_CONTENT) and one anchor,
``openllmetry`` (opentelemetry-instrumentation-openai) or ``openai_v2``
(opentelemetry-instrumentation-openai-v2), on the bare client. The anchors patch the openai resource
classes for the whole process and their ``uninstrument()`` does not restore them cleanly, so an anchor is
instrumented once and its patches are switched in and out around its own batches
(``harness.PatchSwitch``); before timing, every variant is checked to record spans, and bare to record
none with the anchor switched off.

openai-v2's worker runs with util-genai 1.1b0 (:data:`OPENAI_V2_UTIL_GENAI`) ahead on its path, installed on
first use into ``.cache/bench``: the workspace's util-genai is too new for openai-v2's latest release.

Worker processes per anchor and per metrics setup: ``llmobs_provider`` — the global meter provider is
one as ``llmobs.configure()`` installs it for OTLP or Prometheus metrics (llmobs aggregates its own GenAI
metrics; the anchors' go through the SDK as always); ``sdk_provider`` — an application's own SDK provider,
where every variant's metrics go through the SDK. Each is run in ``--processes`` worker processes one after
another (default 6), the rounds shared among them and pooled: the ratio measured in one process is one draw
of memory layout, and moved from process to process by more than the costs compared (``harness.pool``).

``--stub``: the clients call a stub transport that answers at once what the server would send
(:func:`stub_transport`, also ``bench_instructions.py``'s), so no socket and no other process is timed:
the instrumentations' own costs without the kernel's.

Each is timed twice, in wall time and in this process's CPU time (``time.process_time_ns``): the server
runs in another process, so the CPU time is what the instrumentation costs the application, without the
round-trip's scheduling noise, which on a loaded machine is larger than the costs compared. Added costs
are paired within each round (variant minus that round's bare batch) before taking medians.

Goal: llmobs' added cost per call at most 0.5x the best anchor's.

    .venv/bin/python bench/bench_openai.py [--quick] [--rounds R] [--batch N] [--processes P] [--stub] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import harness

MODEL = "gpt-4o-mini"
CHUNKS = 50
MESSAGES = [
    {"role": "system", "content": "You are a concise support assistant."},
    {"role": "user", "content": "My password reset worked but login still fails. What should I try first?"},
]
ANCHORS = ("openllmetry", "openai_v2")
#: Where metrics go: a meter provider as llmobs installs it, or an application's own SDK provider.
METRICS_SETUPS = ("llmobs_provider", "sdk_provider")
DEFAULTS = harness.Defaults(rounds=30, batch=40, quick_rounds=1, quick_batch=3)
#: Worker processes per anchor and metrics setup: each process is one draw of memory layout, which moves the
#: ratios compared by more than the costs (``harness.pool``).
DEFAULT_PROCESSES = 6
_WORKER_TIMEOUT_S = 1800
#: openai-v2 2.4b0, its latest release, imports ``opentelemetry.util.genai.instruments``, which util-genai
#: dropped in 1.2b0, while the workspace locks util-genai 1.3b0 (``bench_recorder.py``'s anchor). Its worker
#: runs with the util-genai release it was built against, installed once beside the workspace.
OPENAI_V2_UTIL_GENAI = "opentelemetry-util-genai==1.1b0"
_OPENAI_V2_PATH = Path(__file__).resolve().parents[1] / ".cache" / "bench" / "util-genai-1.1b0"


# --- the calls ----------------------------------------------------------------------------------------


def _call(client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2, max_tokens=128)


def _stream(client: Any) -> None:
    for _ in client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ):
        pass


def _providers(own_metrics: bool = False) -> tuple[Any, Any, Any]:
    """Global SDK providers with a do-nothing exporter that counts spans; returns (tracer p., meter p., exporter).

    ``own_metrics``: the meter provider is one as ``llmobs.configure()`` installs it for OTLP or Prometheus
    metrics, where llmobs aggregates its GenAI metrics itself.
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        count = 0

        def export(self, spans):
            self.count += len(spans)
            return SpanExportResult.SUCCESS

    exporter = CountingExporter()
    # The global providers can be set once per process: reuse them when something (another bench in the
    # smoke test's process) installed them first, as an application's own providers would be.
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        tracer_provider = TracerProvider()
        trace.set_tracer_provider(tracer_provider)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = metrics.get_meter_provider()
    if not isinstance(meter_provider, MeterProvider):
        if own_metrics:
            from llmobs import aggregated_metrics

            reader = aggregated_metrics.AggregatingInMemoryReader()
            meter_provider = MeterProvider(metric_readers=[reader])
            metrics.set_meter_provider(meter_provider)
            aggregated_metrics.register(meter_provider, [reader], is_global=True)
        else:
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider, exporter


def _openai(port: int | None, http_client: Any) -> Any:
    import openai

    # Over the stub transport the URL is never dialled: port 9 (discard) only makes it a valid one.
    return openai.OpenAI(api_key="sk-bench", base_url=f"http://127.0.0.1:{port or 9}/v1", http_client=http_client)


def _bare(port: int | None) -> Any:
    """The plain client: to the loopback server on ``port``, or over :func:`stub_transport` when None."""
    import httpx

    return _openai(port, httpx.Client(transport=stub_transport() if port is None else None))


def _ours(port: int | None) -> Any:
    import llmobs_openai

    return _openai(port, llmobs_openai.http_client(transport=stub_transport() if port is None else None))


def stub_transport() -> Any:
    """An httpx transport answering as ``llmobs_openai.testing``'s server does, at once and with no socket."""
    import httpx

    from llmobs_openai.testing import FakeOpenAIServer, sse_event

    server = FakeOpenAIServer([f" w{i}" for i in range(CHUNKS)])

    class Events(httpx.SyncByteStream):
        def __init__(self, answer: Iterator[Any]) -> None:
            self._answer = answer

        def __iter__(self) -> Iterator[bytes]:
            return map(sse_event, self._answer)

    class Stub(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            status, answer = server.answer(request.url.path, json.loads(request.read()))
            if isinstance(answer, dict):
                return httpx.Response(status, headers={"content-type": "application/json"},
                                      content=json.dumps(answer).encode())  # fmt: skip
            return httpx.Response(status, headers={"content-type": "text/event-stream"}, stream=Events(answer))

    return Stub()


# --- in process, interleaved ---------------------------------------------------------------------------


def settle() -> None:
    """Finish now the calls llmobs queued to finish in the background (``llmobs.finisher``), if it was loaded."""
    finisher = sys.modules.get("llmobs.finisher")
    if finisher is not None:
        finisher.flush()


def _settings_swapper(**changes: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """Batch setup/teardown that make settings with ``changes`` current and put the previous ones back."""
    import dataclasses

    from llmobs import config

    saved: list[Any] = []

    def setup() -> None:
        saved.append(config.swap(dataclasses.replace(config.Settings(), **changes)))

    def teardown() -> None:
        config.swap(saved.pop())

    return setup, teardown


def _anchor_switch(anchor: str, tracer_provider: Any, meter_provider: Any) -> harness.PatchSwitch:
    """``anchor`` instrumented once, its patches of the openai resource classes switched off for now."""
    import importlib
    import inspect
    import pkgutil

    import openai.resources

    if anchor == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    elif anchor == "openai_v2":
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        raise SystemExit(f"unknown anchor {anchor}")
    owners = []
    for info in pkgutil.walk_packages(openai.resources.__path__, "openai.resources."):
        module = importlib.import_module(info.name)
        owners += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name]
    return harness.PatchSwitch(
        owners, lambda: OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    )


def worker(anchor: str, metrics_setup: str, port: int | None, rounds: int, batch: int) -> dict[str, Any]:
    """bare, llmobs, llmobs_no_content and ``anchor`` interleaved, per call and per streamed chunk."""
    from llmobs.content import CaptureMode

    tracer_provider, meter_provider, exporter = _providers(own_metrics=metrics_setup == "llmobs_provider")
    try:
        switch = _anchor_switch(anchor, tracer_provider, meter_provider)
    except Exception as exc:  # an anchor that cannot run in this environment
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
    bare, ours = _bare(port), _ours(port)
    content_on = _settings_swapper()
    content_off = _settings_swapper(capture=CaptureMode.NO_CONTENT)
    for name, client, around in (("bare", bare, None), ("llmobs", ours, None), (anchor, bare, switch)):
        exporter.count = 0
        if around:
            around.on()
        try:
            _call(client)
            _stream(client)
        except Exception as exc:
            return {"unavailable": f"{name}: {type(exc).__name__}: {exc}"}
        finally:
            if around:
                around.off()
        settle()
        if (exporter.count == 2) is (name == "bare") or exporter.count not in (0, 2):
            raise SystemExit(f"{name} recorded {exporter.count} spans for one call and one stream")

    def anchor_off() -> None:
        switch.off()

    reports: dict[str, Any] = {}
    for clock_name, clock in (("cpu", time.process_time_ns), ("wall", time.perf_counter_ns)):
        calls = harness.Bench(f"openai_call [{anchor}, {metrics_setup}]", baseline="bare", unit="call", clock=clock)
        calls.add("bare", lambda: _call(bare), description="httpx.Client()")
        # Calls finished in the background by the end of a batch are finished then, on the batch's clock.
        calls.add("llmobs", lambda: _call(ours), setup=content_on[0], teardown=content_on[1], settle=settle)
        calls.add("llmobs_no_content", lambda: _call(ours), setup=content_off[0], teardown=content_off[1],
                  settle=settle)  # fmt: skip
        calls.add(anchor, lambda: _call(bare), setup=switch.on, teardown=anchor_off)
        streams = harness.Bench(f"openai_stream [{anchor}, {metrics_setup}]", baseline="bare", unit="chunk",
                                clock=clock)  # fmt: skip
        stream_batch = max(1, batch // 4)
        streams.add("bare", lambda: _stream(bare), batch=stream_batch, units=CHUNKS)
        streams.add("llmobs", lambda: _stream(ours), setup=content_on[0], teardown=content_on[1],
                    batch=stream_batch, units=CHUNKS, settle=settle)  # fmt: skip
        streams.add(anchor, lambda: _stream(bare), setup=switch.on, teardown=anchor_off, batch=stream_batch,
                    units=CHUNKS)  # fmt: skip
        for bench in (calls, streams):
            bench.compare(f"llmobs added / {anchor} added", "llmobs", anchor, bare="bare")
        reports[clock_name] = {"call": calls.run(rounds, batch), "stream": streams.run(rounds, batch)}
    return reports


def summary(reports: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "summary (worker processes per anchor and metrics setup, their rounds pooled; added = variant - "
                 "bare, paired within each round, median over rounds; in brackets the range of the per-process "
                 "figures):"]
    for key, report in reports.items():
        if "unavailable" in report:
            lines.append(f"  {key}: unavailable: {report['unavailable']}")
            continue
        for clock in ("cpu", "wall"):
            for unit in ("call", "stream"):
                comparison = report[clock][unit]["comparisons"][0]
                llmobs_x = report[clock][unit]["variants"]["llmobs"]["paired_ratio"]
                spread = comparison.get("per_process") or [comparison["paired_ratio"]]
                lines.append(f"  {key:<30} {clock:<4} per {unit if unit == 'call' else 'chunk':<5} "
                             f"llmobs x bare {llmobs_x:.2f}  llmobs added / anchor added "
                             f"{comparison['paired_ratio']:.2f} [{min(spread):.2f}-{max(spread):.2f}]")  # fmt: skip
    lines.append("goal: llmobs added per call <= 0.5 x the best anchor's")
    return lines


# --- command line ----------------------------------------------------------------------------------------


def _server() -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "llmobs_openai.testing", str(CHUNKS)], stdout=subprocess.PIPE, text=True
    )
    return server, int(server.stdout.readline())


def _worker_environment(anchor: str) -> dict[str, str]:
    """The environment of ``anchor``'s worker; raises RuntimeError (why) if it cannot be prepared."""
    env = dict(os.environ)
    if anchor != "openai_v2":
        return env
    if not (_OPENAI_V2_PATH / "opentelemetry" / "util" / "genai" / "instruments.py").is_file():
        staging = _OPENAI_V2_PATH.with_name(_OPENAI_V2_PATH.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or sys.executable  # the venv has no pip; its base does
        done = subprocess.run([base, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging),
                               OPENAI_V2_UTIL_GENAI], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"installing {OPENAI_V2_UTIL_GENAI} for openai-v2 failed: "
                               f"{(done.stderr or done.stdout).strip()[-300:]}")
        shutil.rmtree(_OPENAI_V2_PATH, ignore_errors=True)
        staging.rename(_OPENAI_V2_PATH)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_OPENAI_V2_PATH), env.get("PYTHONPATH")) if p)
    return env


def _pooled_workers(anchor: str, metrics_setup: str, port: int | None, rounds: int, batch: int, processes: int,
                    env: dict[str, str]) -> dict[str, Any]:
    """``processes`` workers of ``rounds`` rounds each, one after another; their reports pooled
    (``harness.pool``), or the first worker's reason when it could not run."""
    workers = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", anchor, metrics_setup, "--rounds", str(rounds),
             "--batch", str(batch), *(["--port", str(port)] if port is not None else [])],
            capture_output=True, text=True, timeout=_WORKER_TIMEOUT_S, check=True, env=env,
        )  # fmt: skip
        report = json.loads(out.stdout.strip().splitlines()[-1])
        if "unavailable" in report:
            return report
        workers.append(report)
    return {clock: {unit: harness.pool([w[clock][unit] for w in workers]) for unit in ("call", "stream")}
            for clock in ("cpu", "wall")}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = harness.parser(__doc__.split("\n\n")[0], DEFAULTS)
    parser.add_argument("--worker", nargs=2, metavar=("ANCHOR", "METRICS"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--anchors", default=",".join(ANCHORS), help="comma-separated anchors to run")
    parser.add_argument("--stub", action="store_true",
                        help="the client over a stub transport that answers at once, instead of the loopback server")
    harness.add_processes_flag(parser, DEFAULT_PROCESSES)
    args = parser.parse_args(argv)
    rounds, batch = harness.resolve(args)
    processes, per_process = harness.resolve_processes(args, rounds)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.port, rounds, batch), default=str))
        return {}
    server, port = (None, None) if args.stub else _server()
    reports: dict[str, dict[str, Any]] = {}
    try:
        for anchor in [a for a in args.anchors.split(",") if a]:
            try:
                env = _worker_environment(anchor)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                for metrics_setup in METRICS_SETUPS:
                    reports[f"{anchor}, {metrics_setup}"] = {"unavailable": str(exc)}
                continue
            for metrics_setup in METRICS_SETUPS:  # one at a time: they are timed
                report = reports[f"{anchor}, {metrics_setup}"] = _pooled_workers(
                    anchor, metrics_setup, port, per_process, batch, processes, env
                )
                for clock in ("cpu", "wall"):
                    for unit in ("call", "stream"):
                        if clock in report:
                            print(harness.table(report[clock][unit]) + "\n")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print("\n".join(summary(reports)))
    result = {"bench": "openai", "workers": reports, "transport": "stub" if args.stub else "loopback server",
              "run": harness.machine_info()}
    if args.json:
        harness.write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
