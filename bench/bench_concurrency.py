"""Throughput of traced LangChain and LlamaIndex calls on 1 thread and on 100 threads, and llmobs' lock waits.

For each framework — a LangChain chain (prompt | GenericFakeChatModel | parser, traced by an
``LLMObsCallbackHandler``) and a LlamaIndex query engine (MockEmbedding retrieval, MockLLM answer, traced by
``instrument()``) — four variants run interleaved, round after round, in one process:

    untraced_1    the calls on one thread, no tracing
    traced_1      the same, traced
    untraced_100  the same number of calls spread over 100 threads started together
    traced_100    the same, traced

Reported per variant: throughput (calls per second, median over rounds). Derived, per framework:

* ``overhead_1`` / ``overhead_100``: traced time per call over untraced, on 1 and on 100 threads;
* ``scaling``: (traced_100 / traced_1 throughput) over (untraced_100 / untraced_1) — 1.0 means tracing
  does not change how the workload scales with threads (below 1: tracing serialises something);
* lock contention, measured in a separate pass of traced_100 with llmobs' own locks (the LangChain runs
  table, the LlamaIndex tracker, the recorder's end lock, self-statistics) wrapped to time every acquisition
  that had to wait: ``lock_wait_share`` = time threads spent blocked on them over the threads' total time,
  ``lock_wait_per_call_us``, and how many acquisitions waited at all.

Python runs one thread at a time (the GIL), so 100 threads do not add throughput here; what matters is that
tracing keeps the same scaling as the untraced workload and that llmobs' locks are almost never waited on.
Spans go to a batch processor with an exporter that drops them (export cost is not the subject).

    python bench/bench_concurrency.py            # full run (numbers in bench/README.md)
    python bench/bench_concurrency.py --quick    # smoke run
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

DEFAULTS = harness.Defaults(rounds=7, batch=2000, quick_rounds=2, quick_batch=200)
THREADS = 100


class _DropExporter:
    """A span exporter that accepts and drops everything."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class TimedLock:
    """A lock that records how long acquisitions waited (uncontended ones cost one try and are not timed)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.waited_ns = 0
        self.waits = 0
        self.acquisitions = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.acquisitions += 1
        if self._inner.acquire(False):
            return True
        if not blocking:
            return False
        started = time.perf_counter_ns()
        got = self._inner.acquire(True, timeout)
        self.waited_ns += time.perf_counter_ns() - started
        self.waits += 1
        return got

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _setup_tracing() -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from llmobs import config
    from llmobs.testing import global_metric_reader, global_tracer_provider

    global_tracer_provider().add_span_processor(BatchSpanProcessor(_DropExporter(), max_queue_size=100_000))
    global_metric_reader()
    config.swap(config.Settings())


def _langchain() -> tuple[Callable[[int, bool], Any], Callable[[], None], Callable[[], None]]:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from llmobs_langchain import LLMObsCallbackHandler

    prompt = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{question}")])
    reply = AIMessage(content="a short answer", usage_metadata={"input_tokens": 9, "output_tokens": 3,
                                                                  "total_tokens": 12})
    handler = LLMObsCallbackHandler()
    local = threading.local()  # one fake model per thread: its message iterator cannot be entered twice at once

    def call(i: int, traced: bool) -> Any:
        chain = getattr(local, "chain", None)
        if chain is None:
            chain = local.chain = prompt | GenericFakeChatModel(messages=itertools.repeat(reply)) | StrOutputParser()
        config = {"callbacks": [handler]} if traced else None
        return chain.invoke({"question": f"question {i}"}, config=config)

    return call, lambda: None, lambda: None


def _llamaindex() -> tuple[Callable[[int, bool], Any], Callable[[], None], Callable[[], None]]:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    import llmobs_llamaindex

    documents = [Document(text=f"reference document {d} about topic {d % 3}", doc_id=f"d{d}") for d in range(8)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=16))
    engine = index.as_query_engine(llm=MockLLM(max_tokens=16), similarity_top_k=2)

    def call(i: int, traced: bool) -> Any:  # tracing is switched per variant by on/off below
        return engine.query(f"question {i}")

    return call, llmobs_llamaindex.instrument, llmobs_llamaindex.uninstrument


def _run(call: Callable[[int, bool], Any], calls: int, threads: int, traced: bool) -> float:
    """Seconds to make ``calls`` calls spread over ``threads`` threads started together."""
    if threads == 1:
        started = time.perf_counter()
        for i in range(calls):
            call(i, traced)
        return time.perf_counter() - started
    go = threading.Barrier(threads + 1)
    share = calls // threads
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        go.wait()
        try:
            for i in range(share):
                call(offset + i, traced)
        except BaseException as exc:  # a failed call fails the run, not just its thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t * share,)) for t in range(threads)]
    for w in workers:
        w.start()
    go.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {threads} threads failed") from errors[0]
    return elapsed


@contextmanager
def _watched_locks(framework: str) -> Iterator[dict[str, TimedLock]]:
    """llmobs' locks on the traced path, wrapped in TimedLocks for the duration."""
    from llmobs import recorder, selfstats

    places: list[tuple[Any, str, str]] = [(recorder, "_END_LOCK", "recorder.end"), (selfstats, "_lock", "selfstats")]
    if framework == "langchain":
        from llmobs_langchain.runs import RUNS

        places.append((RUNS, "_lock", "langchain.runs"))
    else:
        import llmobs_llamaindex
        from llmobs_llamaindex.handlers import SpanHandler

        (handler,) = [h for h in llmobs_llamaindex._installed if isinstance(h, SpanHandler)]
        places.append((handler.tracker, "_lock", "llamaindex.tracker"))
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in places]
    timed = {}
    for owner, attr, label in places:
        timed[label] = TimedLock(getattr(owner, attr))
        setattr(owner, attr, timed[label])
    try:
        yield timed
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def bench(framework: str, rounds: int, calls: int) -> dict[str, Any]:
    call, on, off = {"langchain": _langchain, "llamaindex": _llamaindex}[framework]()
    calls = max(THREADS, calls // THREADS * THREADS)
    variants = {"untraced_1": (1, False), "traced_1": (1, True), "untraced_100": (THREADS, False),
                "traced_100": (THREADS, True)}  # fmt: skip
    for threads, traced in variants.values():  # warm-up
        if traced:
            on()
        _run(call, min(calls, THREADS * 2), threads, traced)
        if traced:
            off()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (threads, traced) in variants.items():
            if traced:
                on()
            try:
                seconds[name].append(_run(call, calls, threads, traced))
            finally:
                if traced:
                    off()
    throughput = {name: calls / statistics.median(values) for name, values in seconds.items()}

    on()
    try:
        with _watched_locks(framework) as locks:
            wall = _run(call, calls, THREADS, True)
    finally:
        off()
    waited_ns = sum(lock.waited_ns for lock in locks.values())
    return {
        "calls_per_variant": calls,
        "rounds": rounds,
        "throughput_per_s": throughput,
        "seconds": seconds,
        "overhead_1": throughput["untraced_1"] / throughput["traced_1"],
        "overhead_100": throughput["untraced_100"] / throughput["traced_100"],
        "scaling": (throughput["traced_100"] / throughput["traced_1"])
        / (throughput["untraced_100"] / throughput["untraced_1"]),
        "lock_wait_share": waited_ns / 1e9 / (wall * THREADS),
        "lock_wait_per_call_us": waited_ns / 1e3 / calls,
        "locks": {label: {"acquisitions": lock.acquisitions, "waited": lock.waits, "waited_ms": lock.waited_ns / 1e6}
                  for label, lock in locks.items()},
    }


def table(framework: str, result: dict[str, Any]) -> str:
    t = result["throughput_per_s"]
    lines = [
        f"{framework}: {result['calls_per_variant']} calls per variant, median of {result['rounds']} rounds",
        "  variant         calls/s",
        *(f"  {name:<14} {value:>8.0f}" for name, value in t.items()),
        f"  overhead (traced/untraced time): 1 thread {result['overhead_1']:.2f}x, "
        f"{THREADS} threads {result['overhead_100']:.2f}x",
        f"  scaling (traced vs untraced, 1 -> {THREADS} threads): {result['scaling']:.2f}",
        f"  llmobs lock waits at {THREADS} threads: {100 * result['lock_wait_share']:.4f}% of thread time, "
        f"{result['lock_wait_per_call_us']:.2f} us per call",
        *(f"    {label:<20} {row['acquisitions']:>8} acquisitions, {row['waited']:>5} waited, {row['waited_ms']:.2f} ms"
          for label, row in result["locks"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--frameworks", default="langchain,llamaindex", help="comma-separated: langchain, llamaindex")
    args = p.parse_args(argv)
    rounds, calls = harness.resolve(args)
    _setup_tracing()
    results = {}
    for framework in [f for f in args.frameworks.split(",") if f]:
        print(f"{framework}: {rounds} rounds of {calls} calls per variant ...", file=sys.stderr, flush=True)
        results[framework] = bench(framework, rounds, calls)
        print(table(framework, results[framework]) + "\n")
    report = {"bench": "bench_concurrency", "threads": THREADS, "results": results, "run": harness.machine_info()}
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
