"""Run by test_e2e_asyncllm.py in a fresh process: an in-process AsyncLLM whose llmobs logger is fed garbage.

A fresh process keeps the engine's start clean of what earlier tests did in the test process (vLLM's CPU
platform rewrites the environment, torch has started its thread pools). Prints one JSON summary line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import types

MAX_TOKENS = 5
GARBAGE = [
    (object(), object()),
    ("scheduler", 42),
    (types.SimpleNamespace(num_running_reqs="many"), types.SimpleNamespace(finished_requests=[None, 1])),
    (None, types.SimpleNamespace(num_prompt_tokens=1, num_generation_tokens=1, iteration_timestamp=None,
                                 time_to_first_tokens_iter=["x"], inter_token_latencies_iter=None,
                                 finished_requests=[types.SimpleNamespace(finish_reason="???", request_id=7)])),
]


def main(model: str) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    from llmobs import selfstats
    from llmobs_vllm import LLMObsStatLogger

    class GarbageFirst(LLMObsStatLogger):
        """Our logger, handed garbage (and a bogus engine index) before each step's real stats."""

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
            for scheduler_garbage, iteration_garbage in GARBAGE:
                super().record(scheduler_garbage, iteration_garbage, mm_cache_stats=object(), engine_idx=engine_idx)
            super().record(None, None, engine_idx=["not", "an", "index"])
            super().record(scheduler_stats, iteration_stats, mm_cache_stats=mm_cache_stats, engine_idx=engine_idx)

    params = SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True)

    async def generate_all(engine, prefix: str, n: int) -> list:
        async def one(i: int):
            final = None
            async for output in engine.generate(f"hello world {i}", params, request_id=f"{prefix}-{i}"):
                final = output
            return final

        return await asyncio.gather(*(one(i) for i in range(n)))

    async def run():
        args = AsyncEngineArgs(model=model, served_model_name="tiny", max_model_len=256, enforce_eager=True,
                               dtype="float32")
        engine = AsyncLLM.from_engine_args(args, stat_loggers=[GarbageFirst])
        try:
            first = await generate_all(engine, "garbage", 3)
            second = await generate_all(engine, "after", 2)  # still alive after many garbage steps
            return engine, first + second
        finally:
            engine.shutdown()

    engine, outputs = asyncio.run(run())
    loggers = [lg for lg in engine.logger_manager.stat_loggers if isinstance(lg, LLMObsStatLogger)]
    for lg in loggers:
        if lg.telemetry is not None:
            lg.telemetry.flush()
    summary = {
        "outputs": {o.request_id: {"finished": o.finished, "tokens": len(o.outputs[0].token_ids),
                                   "prompt_tokens": len(o.prompt_token_ids)} for o in outputs},
        "loggers": sorted(type(lg).__name__ for lg in loggers),
        "active": [type(lg).__name__ for lg in loggers if lg.telemetry is not None],
        "selfstats": selfstats.snapshot(),
        "spans": [{"name": s.name, "attributes": dict(s.attributes), "duration_s": (s.end_time - s.start_time) / 1e9}
                  for s in spans.get_finished_spans()],
    }
    print("SUMMARY " + json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LLMOBS_AUTO_CONFIGURE", "false")
    main(sys.argv[1])
