"""An application's latency while its export destination is dead or slow, against a live one, same run.

The application: a LangChain chain (``prompt | GenericFakeChatModel | parser``, no network) invoked with
``LLMObsCallbackHandler``, every span exported over OTLP/HTTP through what ``llmobs.configure()`` wires
(batch processor with its bounded queue, size-limited OTLP exporter; llmobs sampling off, so every span
is exported). Variants, interleaved batch by batch in one process:

- ``bare``: the chain without llmobs (for orientation);
- ``live``: a loopback receiver that accepts at once;
- ``dead``: nothing listens on the port (connection refused, retried with backoff by the exporter);
- ``slow``: a receiver that takes 10 s to answer each request (``--slow-s``).

Each invoke is timed separately; the report gives p50 and p99 per variant across every invoke of every
round, and the ratios of ``dead`` and ``slow`` to ``live``. With a dead or slow destination the queue
fills and then drops (counted in ``llmobs.dropped``), so what the application pays is the same cheap
``on_end`` as with a live one: the goal is p99(dead) / p99(live) ≤ 1.1.

    .venv/bin/python bench/bench_faults.py [--quick] [--rounds R] [--batch N] [--slow-s S] [--json PATH]
"""

from __future__ import annotations

import gc
import itertools
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import harness

DEFAULTS = harness.Defaults(rounds=10, batch=300, quick_rounds=2, quick_batch=10)
VARIANTS = ("bare", "live", "dead", "slow")
GOAL = 1.1


class _Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.closing = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Sink

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.delay_s:
            self.server.closing.wait(self.server.delay_s)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/traces"


def _switch() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Switch(SpanProcessor):
        """On the global provider: hands spans to the current variant's pipeline."""

        def __init__(self) -> None:
            self.current: Any = None

        def on_end(self, span: Any) -> None:
            if self.current is not None:
                self.current.on_end(span)

    return Switch()


def _pipeline(endpoint: str) -> Any:
    from llmobs import config, export

    with harness.environment({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}):
        settings = config.load({"export_shutdown_timeout_s": 1}, environ={})
        return export.span_processor("otlp", settings)


def _chain() -> Callable[[dict[str, Any]], Any]:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    usage = {"input_tokens": 42, "output_tokens": 21, "total_tokens": 63}
    answer = AIMessage("Paris has about 2.1 million inhabitants.", usage_metadata=usage,
                       response_metadata={"finish_reason": "stop"})
    model = GenericFakeChatModel(messages=itertools.repeat(answer))
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")]) | model
    chain = chain | StrOutputParser()
    return lambda config: chain.invoke({"question": "How many people live in Paris?"}, config=config)


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(rounds: int, batch: int, slow_s: float) -> dict[str, Any]:
    from llmobs import export, selfstats
    from llmobs.testing import global_tracer_provider
    from llmobs_langchain import LLMObsCallbackHandler

    provider = global_tracer_provider()
    switch = _switch()
    provider.add_span_processor(switch)
    live_sink, slow_sink = _Sink(0), _Sink(slow_s)
    pipelines = {"live": _pipeline(live_sink.endpoint), "dead": _pipeline(_dead_endpoint()),
                 "slow": _pipeline(slow_sink.endpoint)}
    invoke = _chain()
    traced = {"callbacks": [LLMObsCallbackHandler()]}
    configs = {"bare": {}, "live": traced, "dead": traced, "slow": traced}
    samples: dict[str, list[int]] = {name: [] for name in VARIANTS}
    dropped_before = selfstats.snapshot()
    try:
        for name in VARIANTS:  # warm-up, untimed
            switch.current = pipelines.get(name)
            for _ in range(min(batch, 20)):
                invoke(configs[name])
        for _ in range(rounds):
            for name in VARIANTS:
                switch.current = pipelines.get(name)
                config = configs[name]
                gc.collect()
                clock = time.perf_counter_ns
                out = samples[name]
                for _ in range(batch):
                    start = clock()
                    invoke(config)
                    out.append(clock() - start)
        switch.current = None
        queued = {name: p.queued() for name, p in pipelines.items()}
    finally:
        switch.current = None
        export._detach_processors(provider, [switch])
        for pipeline in pipelines.values():
            pipeline.shutdown()
        live_sink.close()
        slow_sink.close()
    after = selfstats.snapshot()
    dropped = {k: after.get(k, 0) - dropped_before.get(k, 0) for k in after if k.startswith("export.")}
    variants = {}
    for name, values in samples.items():
        variants[name] = {
            "rounds": rounds, "calls": len(values),
            "median_ns": _quantile(values, 0.5), "p10_ns": _quantile(values, 0.1), "p90_ns": _quantile(values, 0.9),
            "p99_ns": _quantile(values, 0.99), "mean_ns": statistics.fmean(values),
        }
    comparisons = []
    for name in ("dead", "slow"):
        for q in ("p99", "median"):
            comparisons.append({"label": f"{q}({name}) / {q}(live)", "variant": name, "other": "live",
                                "ratio": variants[name][f"{q}_ns"] / variants["live"][f"{q}_ns"]})
    comparisons.append({"label": "p99(live) / p99(bare)", "variant": "live", "other": "bare",
                        "ratio": variants["live"]["p99_ns"] / variants["bare"]["p99_ns"]})
    return {"bench": "faults", "variants": variants, "comparisons": comparisons, "queued_at_end": queued,
            "export_dropped": dropped, "slow_s": slow_s, "goal": {"p99(dead) / p99(live)": GOAL}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--slow-s", type=float, default=10.0, help="seconds the slow receiver takes per request")
    args = p.parse_args(argv)
    rounds, batch = harness.resolve(args)
    report = run(rounds, batch, args.slow_s)
    print(f"LangChain invoke latency by export destination ({rounds} rounds x {batch} invokes, interleaved)")
    print(f"  {'variant':<8} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
    for name, row in report["variants"].items():
        print(f"  {name:<8} {row['median_ns'] / 1e3:>9.1f} {row['p99_ns'] / 1e3:>9.1f} {row['mean_ns'] / 1e3:>9.1f}")
    for c in report["comparisons"]:
        print(f"  {c['label']:<24} {c['ratio']:.3f}")
    print(f"  spans still queued at the end: {report['queued_at_end']}; dropped (llmobs.dropped): "
          f"{report['export_dropped']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
