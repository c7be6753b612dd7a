"""End to end in-process: ``AsyncLLM.from_engine_args(..., stat_loggers=[LLMObsStatLogger])`` on CPU.

The logger under test is fed garbage on every engine step before the real stats; the engine must keep
serving (an exception escaping ``record()`` would kill vLLM's output handler: every later request
fails with EngineDeadError) and the real stats must still become spans.
"""

from __future__ import annotations

import asyncio
import types

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_vllm import LLMObsStatLogger

MAX_TOKENS = 5
GARBAGE = [
    (object(), object()),
    ("scheduler", 42),
    (types.SimpleNamespace(num_running_reqs="many"), types.SimpleNamespace(finished_requests=[None, 1])),
    (None, types.SimpleNamespace(num_prompt_tokens=1, num_generation_tokens=1, iteration_timestamp=None,
                                 time_to_first_tokens_iter=["x"], inter_token_latencies_iter=None,
                                 finished_requests=[types.SimpleNamespace(finish_reason="???", request_id=7)])),
]


class GarbageFirst(LLMObsStatLogger):
    """Our logger, handed garbage (and a bogus engine index) before each step's real stats."""

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
        for scheduler_garbage, iteration_garbage in GARBAGE:
            super().record(scheduler_garbage, iteration_garbage, mm_cache_stats=object(), engine_idx=engine_idx)
        super().record(None, None, engine_idx=["not", "an", "index"])
        super().record(scheduler_stats, iteration_stats, mm_cache_stats=mm_cache_stats, engine_idx=engine_idx)


async def generate_all(engine, prefix: str, n: int) -> list:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True)

    async def one(i: int):
        final = None
        async for output in engine.generate(f"hello world {i}", params, request_id=f"{prefix}-{i}"):
            final = output
        return final

    return await asyncio.gather(*(one(i) for i in range(n)))


def test_engine_keeps_serving_while_record_is_fed_garbage(tiny_model, spans):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    async def run():
        args = AsyncEngineArgs(model=str(tiny_model), served_model_name="tiny", max_model_len=256,
                               enforce_eager=True)
        engine = AsyncLLM.from_engine_args(args, stat_loggers=[GarbageFirst])
        try:
            first = await generate_all(engine, "garbage", 3)
            second = await generate_all(engine, "after", 2)  # still alive after many garbage steps
            return engine, first, second
        finally:
            engine.shutdown()

    engine, first, second = asyncio.run(run())
    for output in first + second:
        assert output.finished and len(output.outputs[0].token_ids) == MAX_TOKENS

    loggers = [lg for lg in engine.logger_manager.stat_loggers if isinstance(lg, LLMObsStatLogger)]
    # Ours, passed in, and the entry-point one vLLM loaded as well: the second stays idle (no double count).
    assert sorted(type(lg).__name__ for lg in loggers) == ["GarbageFirst", "LLMObsStatLogger"]
    active = [lg for lg in loggers if lg.telemetry is not None]
    assert [type(lg) for lg in active] == [GarbageFirst]
    active[0].telemetry.flush()
    counts = selfstats.snapshot()
    assert counts.get("vllm.record_failed", 0) >= len(GARBAGE)

    by_id = {s.attributes.get(sc.REQUEST_ID): s for s in spans.get_finished_spans() if s.name.endswith(" tiny")}
    assert {f"garbage-{i}" for i in range(3)} | {f"after-{i}" for i in range(2)} <= set(by_id)
    span = by_id["garbage-0"]
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == MAX_TOKENS
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == len(first[0].prompt_token_ids)
    assert span.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9
