"""Cost of llmobs-vllm's ``record()`` against vLLM's own ``PrometheusStatLogger.record()``, on the same stats.

Needs vLLM: run it in the engine-test environment that ``python dev.py test`` builds::

    .cache/vllm-env-*/bin/python bench/bench_vllm.py [--quick] [--rounds R] [--batch N] [--json PATH]

The workload is a cycle of real vLLM stats objects (``SchedulerStats``, ``IterationStats`` built by
vLLM's own ``update_from_finished_request``) for an engine running 256 requests: every step carries 256
inter-token latencies and 256 generated tokens; every fourth step four requests finish and four new ones
produce their first token. One call is one engine step, as ``AsyncLLM``'s output handler makes it.

Variants:

* ``vllm_prometheus`` — ``PrometheusStatLogger.record()``: what vLLM itself spends per step (it observes
  every latency one by one into ``prometheus_client`` histograms). The baseline.
* ``llmobs_record`` — ``LLMObsStatLogger.record()``: what llmobs adds to vLLM's event loop per step.
  The queued steps are flushed after each batch, outside the timing.
* ``llmobs_total`` — ``record()`` followed by the flush of that step (the flusher thread's work: OTel
  histogram measurements, one span per finished request through the llmobs recorder), both timed: the
  whole CPU cost, wherever it runs. Inter-token latencies are sampled 1 in 32 (the default).
* ``llmobs_total_no_spans`` — the same with per-request spans off (``LLMOBS_VLLM_SPANS=false``).

Goal: ``llmobs_record`` ≤ 0.5 × ``vllm_prometheus``.
"""

from __future__ import annotations

import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parents[1]
RUNNING = 256
CYCLE = 8  # distinct steps, replayed in turn
DEFAULTS = harness.Defaults(rounds=30, batch=400, quick_rounds=3, quick_batch=16)


def build_steps(seed: int = 0) -> list[tuple[Any, Any]]:
    """``CYCLE`` engine steps of real vLLM stats objects for a batch of ``RUNNING`` requests."""
    import random

    from vllm.v1.engine import FinishReason
    from vllm.v1.metrics.stats import IterationStats, PrefixCacheStats, RequestStateStats, SchedulerStats

    rng = random.Random(seed)
    steps = []
    for step in range(CYCLE):
        prefix = PrefixCacheStats()
        stats = IterationStats()
        stats.num_generation_tokens = RUNNING
        step_time = rng.uniform(0.02, 0.04)  # requests decoded together share their inter-token latency
        stats.inter_token_latencies_iter = [step_time] * (RUNNING - 4) + [rng.uniform(0.02, 0.2) for _ in range(4)]
        if step % 4 == 3:
            for i in range(4):
                prompt = rng.randint(100, 2000)
                prefix.record(num_tokens=prompt, num_hits=rng.randint(0, prompt), preempted=False)
                stats.time_to_first_tokens_iter.append(rng.uniform(0.05, 0.5))
                stats.prompt_token_stats.computed += prompt
                stats.prompt_token_stats.total += prompt
                generated = rng.randint(50, 500)
                now = time.monotonic()
                state = RequestStateStats(
                    num_generation_tokens=generated, arrival_time=stats.iteration_timestamp - rng.uniform(2, 20),
                    queued_ts=now - 19.0, scheduled_ts=now - 18.9, first_token_ts=now - 18.5, last_token_ts=now,
                )
                stats.update_from_finished_request(FinishReason.LENGTH if i % 2 else FinishReason.STOP,
                                                   f"chatcmpl-{step}-{i}", prompt, 512, state,
                                                   num_cached_tokens=rng.randint(0, prompt))
        scheduler = SchedulerStats(num_running_reqs=RUNNING, num_waiting_reqs=12, kv_cache_usage=0.61,
                                   prefix_cache_stats=prefix)
        steps.append((scheduler, stats))
    return steps


def vllm_config(model_dir: Path) -> Any:
    from vllm.config import DeviceConfig, ModelConfig, VllmConfig

    return VllmConfig(model_config=ModelConfig(model=str(model_dir), served_model_name="tiny"),
                      device_config=DeviceConfig(device="cpu"))


def stepper(record: Any, steps: list[tuple[Any, Any]], after: Any = None):
    """A zero-argument call doing one engine step (cycling through ``steps``), then ``after()`` if given."""
    state = {"i": 0}

    def call() -> None:
        i = state["i"]
        scheduler, iteration = steps[i]
        state["i"] = (i + 1) % CYCLE
        record(scheduler, iteration, mm_cache_stats=None, engine_idx=0)
        if after is not None:
            after()

    return call


def build(model_dir: Path) -> harness.Bench:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    from llmobs_vllm import LLMObsStatLogger

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recorder import NullExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    steps = build_steps()
    config = vllm_config(model_dir)
    prometheus = PrometheusStatLogger(config, [0])

    def logger(spans: bool) -> Any:
        # The providers above are the application's: llmobs must not configure exporters of its own.
        with harness.environment({"LLMOBS_AUTO_CONFIGURE": "false", "LLMOBS_VLLM_SPANS": "true" if spans else "false"}):
            # A distinct config object per logger: one logger per engine configuration is active.
            instance = LLMObsStatLogger(vllm_config=types.SimpleNamespace(model_config=config.model_config),
                                        engine_indexes=[0])
        instance.telemetry._start_thread = False  # the bench flushes itself, on the clock or off it
        return instance

    hot, total, total_no_spans = logger(True), logger(True), logger(False)

    # The same telemetry on a meter provider as llmobs.configure() installs it (metrics aggregated by llmobs).
    from llmobs import aggregated_metrics
    from llmobs_vllm._telemetry import EngineTelemetry

    own_reader = aggregated_metrics.AggregatingInMemoryReader()
    own_provider = MeterProvider(metric_readers=[own_reader])
    aggregated_metrics.register(own_provider, [own_reader])
    own = EngineTelemetry("tiny", spans="own", meter_provider=own_provider, start_thread=False)

    def own_record(scheduler: Any, iteration: Any, mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
        own.record(scheduler, iteration, engine_idx)

    bench = harness.Bench("bench_vllm", baseline="vllm_prometheus", unit="step")
    bench.add("vllm_prometheus", stepper(prometheus.record, steps),
              description="PrometheusStatLogger.record(): every latency observed one by one")
    bench.add("llmobs_record", stepper(hot.record, steps), teardown=hot.telemetry.flush,
              description="LLMObsStatLogger.record(): the event-loop cost (flushed after the batch, untimed)")
    bench.add("llmobs_total", stepper(total.record, steps, total.telemetry.flush),
              description="record() + flush of the step: OTel measurements and spans, all timed")
    bench.add("llmobs_total_no_spans", stepper(total_no_spans.record, steps, total_no_spans.telemetry.flush),
              description="record() + flush, per-request spans off")
    bench.add("llmobs_total_own_metrics", stepper(own_record, steps, own.flush),
              description="llmobs_total on a meter provider llmobs installs: its metrics aggregated by llmobs")
    bench.notes.append(f"{RUNNING} running requests per step; 4 finish every 4th step; ITL sample 1 in "
                       f"{hot.telemetry.itl_sample_every}")
    bench.notes.append("goal: llmobs_record <= 0.50 x vllm_prometheus")
    return bench


def check(model_dir: Path) -> None:
    """Before timing: a cycle through our logger yields the spans and measurements the workload implies."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from llmobs_vllm._telemetry import EngineTelemetry

    reader = InMemoryMetricReader()
    telemetry = EngineTelemetry("tiny", spans="off", meter_provider=MeterProvider(metric_readers=[reader]),
                                start_thread=False)
    for scheduler, iteration in build_steps():
        telemetry.record(scheduler, iteration, 0)
    telemetry.flush()
    data = {m.name: m.data.data_points for rm in reader.get_metrics_data().resource_metrics
            for s in rm.scope_metrics for m in s.metrics}
    finished = sum(p.count for p in data["gen_ai.server.request.duration"])
    itl = sum(p.count for p in data["vllm.inter_token_latency"])
    if finished != 8 or itl != CYCLE * RUNNING // telemetry.itl_sample_every:
        raise RuntimeError(f"unexpected measurements: {finished} finished, {itl} ITL samples")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = harness.parser(__doc__.split("\n\n")[0], DEFAULTS).parse_args(argv)
    rounds, batch = harness.resolve(args)
    sys.path.insert(0, str(ROOT / "packages" / "vllm-ext" / "tests_engine"))
    from tiny_model import make_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_llama(Path(tmp) / "tiny-llama")
        check(model_dir)
        bench = build(model_dir)
        report = bench.run(rounds, batch, progress=not args.quick and sys.stderr.isatty())
    return harness.publish(report, args.json)


if __name__ == "__main__":
    main()
