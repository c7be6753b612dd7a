"""Cost of tracing LangChain: llmobs against OpenLLMetry, OpenInference and Langfuse, on the same app.

Three scenarios, all on llmobs_langchain's ScriptedChatModel (a GenericFakeChatModel that binds tools
and streams like a provider; no network): ``chain`` — ``prompt | chat | parser`` invoked; ``stream`` —
the same chain streamed (~40 chunks); ``agent`` — a LangGraph tool-calling loop (model → tool → model).

Variants: ``bare`` (no callbacks), ``noop`` (a do-nothing inline handler: LangChain's own callback cost),
``sdk_floor`` (an inline handler that makes one bare SDK span per run, parented like the runs, exported
like every variant's: the least any OpenTelemetry-based tracer pays), ``lean_floor`` (the same with the spans
llmobs' recorder makes, ``llmobs.lean_span``: the least llmobs' own span path pays), ``llmobs``
(``llmobs_langchain.instrument()``, content capture on), and one anchor: ``openllmetry``
(opentelemetry-instrumentation-langchain), ``openinference`` (openinference-instrumentation-langchain)
or ``langfuse`` (Langfuse's CallbackHandler), each with its default content capture (on).

Why one process per anchor: OpenLLMetry and OpenInference patch LangChain globally (wrapt on
``BaseCallbackManager.__init__``, plus LangGraph entry points for OpenLLMetry) and OpenLLMetry's
``uninstrument()`` does not remove its main patch, so two anchors cannot share a process. Each anchor
therefore runs in its own worker process, where the harness interleaves ``bare``, ``noop``, ``llmobs`` and
the anchor batch by batch; the anchor is instrumented once and its patches are switched in and out
around its own batches (by saving and restoring the attributes its ``instrument()`` replaced), so its
state accumulates as in production but no other variant runs patched. llmobs is measured in every worker,
so each comparison with an anchor is same-process, same-run. Each anchor's worker is run ``--processes``
times one after another (default 5), the rounds shared among them and pooled (``harness.pool``): a ratio
measured in one process is one draw of memory layout, which moves it by more than the costs compared.

Every variant exports what it records over OTLP/HTTP to a loopback sink — a tiny HTTP server in its own
process that accepts and discards — llmobs, OpenLLMetry and OpenInference through the global SDK
providers that ``llmobs.configure(exporters=["otlp"])`` installs (llmobs sampling off, so every span is
exported), Langfuse through its own provider and exporter. Batch processors export off the application
thread; each batch's leftovers are flushed after its timing, so no variant pays for another's spans.

Memory: a fresh process per variant (bare, llmobs, each anchor) invokes the chain 100,000 times (after a
warm-up) and reports resident-memory growth (``harness.rss_growth``); goal ≤ 5 MB.

Goals: llmobs' added overhead ≤ 0.2 × OpenLLMetry's (``(llmobs - bare) / (openllmetry - bare)``) and
llmobs ≤ 1.3 × bare, content capture on.

    .venv/bin/python bench/bench_langchain.py [--quick] [--rounds R] [--batch N] [--processes P] [--rss N]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import harness

ANCHORS = ("openllmetry", "openinference", "langfuse")
SCENARIOS = ("chain", "stream", "agent")
DEFAULTS = harness.Defaults(rounds=15, batch=100, quick_rounds=2, quick_batch=4)
#: Timing workers per anchor, one after another: each process is one draw of memory layout (``harness.pool``).
DEFAULT_PROCESSES = 5
RSS_ITERATIONS = 100_000
QUICK_RSS_ITERATIONS = 300
GOAL_ADDED = 0.2
GOAL_TOTAL = 1.3
GOAL_RSS_MB = 5.0
ANSWER = "Paris is the capital of France, and it has been for most of the last thousand years or so."
SYSTEM = "You answer geography questions in one sentence."

# --- the loopback sink -------------------------------------------------------------------------------


class _Discard(BaseHTTPRequestHandler):
    """Reads the request, answers 200 with an empty body, keeps nothing."""

    protocol_version = "HTTP/1.1"

    def _discard(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_GET = _discard

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_sink() -> None:
    """Run the sink until killed; prints its port first."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Sink:
    """The sink in a child process, so receiving spans costs the measured process nothing."""

    def __enter__(self) -> Sink:
        self.process = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


# --- the application under test ----------------------------------------------------------------------


def scenarios() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """One call of each scenario, given a RunnableConfig."""
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from llmobs_langchain.scripted import ScriptedChatModel

    usage = {"input_tokens": 42, "output_tokens": 21, "total_tokens": 63}
    answer = AIMessage(ANSWER, usage_metadata=usage, response_metadata={"finish_reason": "stop"})
    model = ScriptedChatModel(messages=itertools.repeat(answer), model="gpt-4o-mini")
    chain = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")]) | model | StrOutputParser()

    @tool
    def population(city: str) -> str:
        """Population of a city."""
        return f"{city}: 2.1 million"

    call = AIMessage("", tool_calls=[{"name": "population", "args": {"city": "Paris"}, "id": "call_1"}],
                     usage_metadata=usage, response_metadata={"finish_reason": "tool_calls"})  # fmt: skip
    loop_model = ScriptedChatModel(messages=itertools.cycle([call, answer]), model="gpt-4o-mini")
    bound = loop_model.bind_tools([population])
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [bound.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([population]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    agent = graph.compile()

    def stream(config: dict[str, Any]) -> None:
        for _ in chain.stream({"question": "Capital of France?"}, config):
            pass

    return {
        "chain": lambda config: chain.invoke({"question": "Capital of France?"}, config),
        "stream": stream,
        "agent": lambda config: agent.invoke({"messages": [("user", "How many people live in Paris?")]}, config),
    }


# --- variants --------------------------------------------------------------------------------------------


def span_counter() -> Any:
    """A span processor that counts ended spans while ``counting`` (the pre-timing check), else returns."""
    from opentelemetry.sdk.trace import SpanProcessor

    class SpanCounter(SpanProcessor):
        counting = False
        ended = 0

        def on_end(self, span: Any) -> None:
            if self.counting:
                self.ended += 1

    return SpanCounter()


COUNTER = span_counter()


def configure_exports(port: int) -> None:
    """Global SDK providers exporting OTLP/HTTP to the sink, every span kept (llmobs sampling off)."""
    os.environ.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "bench-langchain",
        "LLMOBS_SAMPLING": "false",
    })  # fmt: skip
    from opentelemetry import trace

    import llmobs

    llmobs.configure(exporters=["otlp"])
    trace.get_tracer_provider().add_span_processor(COUNTER)


def flush_global() -> None:
    import llmobs

    llmobs.flush()


def patched_places() -> list[Any]:
    """Where the LangChain anchors patch (those installed here: no langchain, langchain_openai)."""
    import langgraph.prebuilt
    import langgraph.prebuilt.chat_agent_executor
    from langchain_core.callbacks import BaseCallbackManager
    from langgraph.pregel import Pregel
    from langgraph.types import Command

    return [BaseCallbackManager, Pregel, Command, langgraph.prebuilt, langgraph.prebuilt.chat_agent_executor]


class Variant:
    """How one variant runs: the RunnableConfig for its calls, and what to do around each batch."""

    def __init__(self, config: dict[str, Any], on: Callable[[], Any] = lambda: None,
                 off: Callable[[], Any] = lambda: None, flush: Callable[[], Any] = lambda: None) -> None:  # fmt: skip
        self.config, self.on, self.off, self.flush = config, on, off, flush

    def teardown(self) -> None:
        self.off()
        self.flush()


def variant(name: str, port: int) -> Variant:
    if name == "bare":
        return Variant({})
    if name == "noop":
        from langchain_core.callbacks import BaseCallbackHandler

        class Noop(BaseCallbackHandler):
            run_inline = True

            def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
                pass

        return Variant({"callbacks": [Noop()]})
    if name == "sdk_floor":
        return Variant({"callbacks": [floor_handler()]}, flush=flush_global)
    if name == "lean_floor":
        return Variant({"callbacks": [floor_handler(lean=True)]}, flush=flush_global)
    if name == "llmobs":
        import llmobs_langchain

        return Variant({}, llmobs_langchain.instrument, llmobs_langchain.uninstrument, flush_global)
    if name == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        switch = harness.PatchSwitch(patched_places(), LangchainInstrumentor().instrument)
        return Variant({}, switch.on, switch.off, flush_global)
    if name == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        switch = harness.PatchSwitch(patched_places(), LangChainInstrumentor().instrument)
        return Variant({}, switch.on, switch.off, flush_global)
    if name == "langfuse":
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        provider.add_span_processor(COUNTER)
        client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=f"http://127.0.0.1:{port}",
                          tracer_provider=provider)  # fmt: skip
        return Variant({"callbacks": [CallbackHandler()]}, flush=client.flush)
    raise ValueError(f"unknown variant {name!r}")


def floor_handler(lean: bool = False) -> Any:
    """One SDK span per LangChain run, parented as the runs are, with no attribute, no content, no metric:
    the least any OpenTelemetry-based LangChain tracer pays (the same global providers and OTLP export).

    ``lean``: the same spans as llmobs' recorder makes them (``llmobs.lean_span``: no SDK ``Span`` object, one
    ``ReadableSpan`` at end, the same processors): the least llmobs' own span path can cost, before any
    attribute, content or metric."""
    from langchain_core.callbacks import BaseCallbackHandler
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from llmobs.lean_span import lean_tracer

    tracer = trace.get_tracer("bench.sdk_floor")
    fast = lean_tracer(getattr(tracer, "_real_tracer", None) or tracer) if lean else None
    if lean and fast is None:
        raise RuntimeError("lean_floor needs the SDK's own tracer")
    spans: dict[Any, Any] = {}

    def start(name: str, run_id: Any, parent_run_id: Any) -> None:
        parent = spans.get(parent_run_id)
        context = trace.set_span_in_context(parent) if parent else None
        if fast is not None:
            spans[run_id] = fast.start_span(name, context, SpanKind.INTERNAL, {}, None, parent)
        else:
            spans[run_id] = tracer.start_span(name, context=context)

    def end(run_id: Any) -> None:
        span = spans.pop(run_id, None)
        if span is not None:
            span.end()

    class Floor(BaseCallbackHandler):
        run_inline = True

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                           **kwargs: Any) -> None:
            start("chain", run_id, parent_run_id)

        def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, parent_run_id: Any = None,
                                **kwargs: Any) -> None:
            start("chat", run_id, parent_run_id)

        def on_tool_start(self, serialized: Any, input_str: Any, *, run_id: Any, parent_run_id: Any = None,
                          **kwargs: Any) -> None:
            start("tool", run_id, parent_run_id)

        def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

        def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

        def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

        def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

        def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            end(run_id)

    return Floor()


def check_traced(variants: dict[str, Variant], calls: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    """Before timing: each variant runs every scenario and records spans (bare and noop none), and an
    anchor switched off leaves no patch behind (the next variant would record its spans)."""
    for name, v in variants.items():
        for scenario, call in calls.items():
            COUNTER.ended = 0
            COUNTER.counting = True
            v.on()
            try:
                call(v.config)
            finally:
                v.teardown()
                COUNTER.counting = False
            if (COUNTER.ended > 0) is (name in ("bare", "noop")):
                raise RuntimeError(f"{name} recorded {COUNTER.ended} spans on {scenario}")


# --- workers -----------------------------------------------------------------------------------------------


def timing_worker(anchor: str, port: int, rounds: int, batch: int) -> dict[str, Any]:
    """Interleave bare, noop, sdk_floor, lean_floor, llmobs and ``anchor`` on every scenario; one report per
    scenario."""
    configure_exports(port)
    calls = scenarios()
    names = ("bare", "noop", "sdk_floor", "lean_floor", "llmobs", anchor)
    variants = {name: variant(name, port) for name in names}
    check_traced(variants, calls)
    reports = {}
    for scenario, call in calls.items():
        bench = harness.Bench(f"{scenario} [{anchor} worker]", baseline="bare", unit="call")
        for name, v in variants.items():
            config = v.config
            bench.add(name, lambda call=call, config=config: call(config), setup=v.on, teardown=v.teardown,
                      batch=max(1, batch // 4) if scenario == "agent" else batch)  # fmt: skip
        bench.compare(f"llmobs added / {anchor} added", "llmobs", anchor, bare="bare")
        bench.compare("llmobs added / noop added", "llmobs", "noop", bare="bare")
        bench.compare("llmobs added / sdk_floor added", "llmobs", "sdk_floor", bare="bare")
        bench.compare(f"lean_floor added / {anchor} added", "lean_floor", anchor, bare="bare")
        reports[scenario] = bench.run(rounds, batch)
    return reports


def rss_worker(name: str, port: int, iterations: int) -> dict[str, Any]:
    """Resident-memory growth over ``iterations`` invokes of the chain, instrumentation on throughout."""
    configure_exports(port)
    call = scenarios()["chain"]
    v = variant(name, port)
    v.on()
    config = v.config
    result = harness.rss_growth(lambda: call(config), iterations, warmup=min(2000, iterations))
    v.teardown()
    gc.collect()
    if name == "llmobs":
        from llmobs_langchain.runs import RUNS

        result["runs_in_flight"] = len(RUNS)
    return result


class Worker:
    """This file run as a worker process; :meth:`result` waits for what it wrote."""

    def __init__(self, *args: str) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self._out = Path(self._dir.name) / "out.json"
        self._process = subprocess.Popen([sys.executable, __file__, *args, "--out", str(self._out)])

    def result(self) -> Any:
        try:
            if self._process.wait() != 0:
                raise RuntimeError(f"worker {self._process.args[2:]} failed with exit code {self._process.returncode}")
            return json.loads(self._out.read_text())
        finally:
            self._dir.cleanup()


# --- the report ----------------------------------------------------------------------------------------------


def summary(timings: dict[str, dict[str, Any]], memory: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "summary (per anchor, the rounds of its worker processes pooled, llmobs measured in each; in "
                 "brackets the range of the per-process paired added ratios):"]
    for anchor, reports in timings.items():
        for scenario, report in reports.items():
            rows = report["variants"]
            added = report["comparisons"][0]["ratio"]
            floor = next(c["ratio"] for c in report["comparisons"] if c["variant"] == "lean_floor")
            spread = report["comparisons"][0].get("per_process") or [report["comparisons"][0]["paired_ratio"]]
            lines.append(
                f"  {scenario:<6} {anchor:<13} llmobs x bare {rows['llmobs']['paired_ratio']:.2f}  "
                f"{anchor} x bare {rows[anchor]['paired_ratio']:.2f}  noop x bare {rows['noop']['paired_ratio']:.2f}  "
                f"sdk_floor x bare {rows['sdk_floor']['paired_ratio']:.2f}  "
                f"llmobs added / {anchor} added {added:.2f} [{min(spread):.2f}-{max(spread):.2f}]  "
                f"lean_floor added / {anchor} added {floor:.2f}"
            )
    lines.append(f"goals: llmobs added <= {GOAL_ADDED} x openllmetry added; llmobs <= {GOAL_TOTAL} x bare")
    for name, result in memory.items():
        lines.append(
            f"  rss {name:<13} +{result['growth_bytes'] / 2**20:6.1f} MB over {result['iterations']} invokes "
            f"({result['growth_per_iteration']:.0f} B/invoke)"
        )
    lines.append(f"goal: rss growth <= {GOAL_RSS_MB} MB over {RSS_ITERATIONS} invokes")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.splitlines()[0], DEFAULTS)
    p.add_argument("--rss", type=int, default=None, help=f"invokes for the memory check (default {RSS_ITERATIONS})")
    p.add_argument("--anchors", default=",".join(ANCHORS), help="comma-separated anchors to run")
    harness.add_processes_flag(p, DEFAULT_PROCESSES)
    args = p.parse_args(argv)
    rounds, batch = harness.resolve(args)
    processes, per_process = harness.resolve_processes(args, rounds)
    iterations = args.rss if args.rss is not None else (QUICK_RSS_ITERATIONS if args.quick else RSS_ITERATIONS)
    anchors = [a for a in args.anchors.split(",") if a]
    timings: dict[str, dict[str, Any]] = {}
    with Sink() as sink:
        port = str(sink.port)
        for anchor in anchors:  # one at a time: they are timed
            print(f"timing: bare, noop, sdk_floor, lean_floor, llmobs, {anchor} ...", file=sys.stderr, flush=True)
            runs = [Worker("--timing-worker", anchor, "--port", port, "--rounds", str(per_process),
                           "--batch", str(batch)).result() for _ in range(processes)]  # fmt: skip
            timings[anchor] = {scenario: harness.pool([run[scenario] for run in runs]) for scenario in runs[0]}
            for report in timings[anchor].values():
                print(harness.table(report) + "\n")
        print(f"memory: bare, llmobs, {', '.join(anchors)}: {iterations} invokes each ...", file=sys.stderr, flush=True)
        workers = {name: Worker("--rss-worker", name, "--port", port, "--rss", str(iterations))
                   for name in ("bare", "llmobs", *anchors)}  # side by side: memory, not time  # fmt: skip
        memory = {name: worker.result() for name, worker in workers.items()}
    print("\n".join(summary(timings, memory)))
    report = {"bench": "bench_langchain", "timings": timings, "memory": memory, "run": harness.machine_info()}
    if args.json:
        harness.write_json(report, args.json)
    return report


def worker_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--timing-worker")
    p.add_argument("--rss-worker")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rounds", type=int, default=DEFAULTS.rounds)
    p.add_argument("--batch", type=int, default=DEFAULTS.batch)
    p.add_argument("--rss", type=int, default=RSS_ITERATIONS)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # the anchors' deprecation warnings, once per call
    if args.timing_worker:
        result = timing_worker(args.timing_worker, args.port, args.rounds, args.batch)
    else:
        result = rss_worker(args.rss_worker, args.port, args.rss)
    Path(args.out).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        serve_sink()
    elif {"--timing-worker", "--rss-worker"} & set(sys.argv):
        worker_main(sys.argv[1:])
    else:
        main()
