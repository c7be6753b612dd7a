"""Process lifecycle: normal exit and SIGTERM lose 0 spans; a trace whose root never ends is exported as partial.

Each case is a child process (an application configured by environment, as in production) against the
embedded SQLite store or a loopback OTLP receiver. The children exit right after their last call, with
spans still queued (the batch processor waits a second before exporting): only the exit path can save
them. SIGTERM is used rather than SIGINT, which background processes may inherit as ignored.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmobs import semconv as sc

sys.path.insert(0, str(Path(__file__).parent))
from faultserver import FaultServer

APP = """
import os, sys, threading
import llmobs
from llmobs.recorder import ROOT, get_recorder
N = int(os.environ["N_TRACES"])
for i in range(N):
    agent = get_recorder().start("invoke_agent", f"request-{i}", parent=ROOT)
    llm = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_usage(40, 10)
    llm.end()
    agent.end()
if os.environ.get("OPEN_REQUEST"):
    # A request in flight when the process is told to stop: its root and its model call never end.
    agent = get_recorder().start("invoke_agent", "in-flight", parent=ROOT)
    tool = get_recorder().start("execute_tool", "lookup", parent=agent)
    tool.end()
    llm = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.first_token()
if os.environ.get("WAIT_FOR_SIGTERM"):
    print("ready", flush=True)
    threading.Event().wait(120)
    sys.exit(3)  # not reached: SIGTERM ends the process
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    env.update(LLMOBS_CONFIG_WATCH="false", OTEL_SERVICE_NAME="lifecycle-app", **extra)
    return env


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", APP], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def _terminate(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    env = dict(env, WAIT_FOR_SIGTERM="1")
    with subprocess.Popen([sys.executable, "-c", APP], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=120)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def _store_spans(path: Path) -> list[dict]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT trace_id, span_id, name, attributes FROM spans").fetchall()
    return [{"trace_id": t, "span_id": s, "name": n, "attributes": json.loads(a)} for t, s, n, a in rows]


def _otlp_attributes(span) -> dict:
    return {a.key: a.value for a in span.attributes}


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_no_span_lost_into_the_store(tmp_path, how):
    store = tmp_path / "llmobs.db"
    env = _env(tmp_path, N_TRACES="200", LLMOBS_STORE=str(store), LLMOBS_EXPORTERS="store")
    done = _run(tmp_path, env) if how == "exit" else _terminate(tmp_path, env)
    if how == "exit":
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == -signal.SIGTERM, done.stderr  # died of the signal, as without llmobs
    spans = _store_spans(store)
    assert len(spans) == 400
    assert sorted(s["name"] for s in spans if s["name"].startswith("invoke_agent")) == sorted(
        f"invoke_agent request-{i}" for i in range(200)
    )


POOL_APP = """
import multiprocessing, sys
import llmobs

def record(task):
    for j in range(50):
        with llmobs.span(f"{task}-{j}"):
            pass
    return task

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    initializer = llmobs.configure if sys.argv[2] == "initializer" else None  # else: configured on first use
    with context.Pool(2, initializer=initializer) as pool:  # leaving the block terminates the workers
        assert pool.map(record, range(8), chunksize=1) == list(range(8))
"""


@pytest.mark.parametrize(("method", "configured"), [("fork", "initializer"), ("forkserver", "initializer"),
                                                   ("forkserver", "on first use")])
def test_a_pools_workers_terminated_at_its_exit_lose_nothing_and_do_not_hold_it(tmp_path, method, configured):
    """Leaving ``with Pool()`` signals workers that are already leaving through their exit flush. That flush
    finishes and the worker dies of the signal; a second flush used to wait for the first for the whole
    shutdown bound (set to 300 s here: that wait would exceed this test's timeout) and kill it half done."""
    store, script = tmp_path / "llmobs.db", tmp_path / "pool_app.py"  # a file: forkserver's children import it
    script.write_text(POOL_APP)
    env = _env(tmp_path, LLMOBS_STORE=str(store), LLMOBS_EXPORTERS="store", LLMOBS_EXPORT_SHUTDOWN_TIMEOUT="300")
    try:
        done = subprocess.run([sys.executable, str(script), method, configured], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the pool's exit waited on its workers' exit flush until the shutdown bound")
    assert done.returncode == 0, done.stderr
    names = sorted(s["name"] for s in _store_spans(store))
    assert names == sorted(f"{task}-{j}" for task in range(8) for j in range(50))


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_a_shutdown_timeout_past_what_the_platform_can_wait_still_flushes_everything(tmp_path, how):
    """10^12 s is finite, so valid, but past ``threading.TIMEOUT_MAX``: waits are capped instead of overflowing."""
    store = tmp_path / "llmobs.db"
    env = _env(tmp_path, N_TRACES="50", LLMOBS_STORE=str(store), LLMOBS_EXPORTERS="store",
               LLMOBS_EXPORT_SHUTDOWN_TIMEOUT="1e12")
    done = _run(tmp_path, env) if how == "exit" else _terminate(tmp_path, env)
    assert done.returncode == (0 if how == "exit" else -signal.SIGTERM), done.stderr
    assert "shutdown_failed" not in done.stderr and "OverflowError" not in done.stderr, done.stderr
    assert len(_store_spans(store)) == 100


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_no_span_lost_over_otlp(tmp_path, how):
    server = FaultServer()
    try:
        env = _env(tmp_path, N_TRACES="200", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=server.endpoint,
                   LLMOBS_SAMPLING="false")
        done = _run(tmp_path, env) if how == "exit" else _terminate(tmp_path, env)
        assert done.returncode == (0 if how == "exit" else -signal.SIGTERM), done.stderr
        spans = server.accepted_spans()
        assert len(spans) == 400
        assert len({s.span_id for s in spans}) == 400  # none twice
    finally:
        server.close()


def test_a_request_killed_mid_way_is_exported_as_partial_into_the_store(tmp_path):
    store = tmp_path / "llmobs.db"
    env = _env(tmp_path, N_TRACES="3", OPEN_REQUEST="1", LLMOBS_STORE=str(store), LLMOBS_EXPORTERS="store")
    done = _terminate(tmp_path, env)
    assert done.returncode == -signal.SIGTERM, done.stderr
    spans = _store_spans(store)
    in_flight = [s for s in spans if s["name"] in ("invoke_agent in-flight", "execute_tool lookup", "chat gpt-4o-mini")
                 and s["trace_id"] == next(x["trace_id"] for x in spans if x["name"] == "invoke_agent in-flight")]
    by_name = {s["name"]: s for s in in_flight}
    assert set(by_name) == {"invoke_agent in-flight", "execute_tool lookup", "chat gpt-4o-mini"}
    assert by_name["invoke_agent in-flight"]["attributes"].get(sc.PARTIAL) is True
    assert by_name["chat gpt-4o-mini"]["attributes"].get(sc.PARTIAL) is True
    assert sc.PARTIAL not in by_name["execute_tool lookup"]["attributes"]  # it ended normally
    assert len(spans) == 3 * 2 + 3


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_buffered_children_of_a_root_that_never_ends_are_not_lost(tmp_path, how):
    """With sampling on, children wait in the sampling buffer for their root; at shutdown the open root is
    handed on as partial, so the trace is decided and exported with everything it has."""
    server = FaultServer()
    try:
        env = _env(tmp_path, N_TRACES="2", OPEN_REQUEST="1", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=server.endpoint,
                   LLMOBS_SAMPLING="true", LLMOBS_SAMPLING_RATIO="1")
        done = _run(tmp_path, env) if how == "exit" else _terminate(tmp_path, env)
        assert done.returncode == (0 if how == "exit" else -signal.SIGTERM), done.stderr
        spans = {s.name: s for s in server.accepted_spans()}
        assert len(server.accepted_spans()) == 2 * 2 + 3
        root = _otlp_attributes(spans["invoke_agent in-flight"])
        assert root[sc.PARTIAL].bool_value is True
        partial_llms = [s for s in server.accepted_spans() if sc.PARTIAL in _otlp_attributes(s)]
        assert sorted(s.name for s in partial_llms) == ["chat gpt-4o-mini", "invoke_agent in-flight"]
        assert "execute_tool lookup" in spans
        assert sc.SAMPLING_REASON in _otlp_attributes(spans["execute_tool lookup"])
    finally:
        server.close()


def test_an_application_handler_for_sigterm_is_left_alone(tmp_path):
    """An application that handles SIGTERM itself keeps its handler; its own exit path flushes (atexit)."""
    store = tmp_path / "llmobs.db"
    app = (
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n" + APP
    )
    env = _env(tmp_path, N_TRACES="50", LLMOBS_STORE=str(store), LLMOBS_EXPORTERS="store", WAIT_FOR_SIGTERM="1")
    with subprocess.Popen([sys.executable, "-c", app], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    assert child.returncode == 7, err  # the application's handler ran, not ours
    assert len(_store_spans(store)) == 100


def test_abandoned_spans_are_neither_kept_alive_nor_remembered_without_bound():
    """Spans a framework starts and never ends (then forgets) must not pile up in the open-span map."""
    import gc

    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from llmobs import export

    class Sink(SpanProcessor):
        ended = 0

        def on_end(self, span):
            Sink.ended += 1

    tracker = export._OpenSpans(Sink())
    provider = TracerProvider()
    provider.add_span_processor(tracker)
    tracer = provider.get_tracer("leaky")
    for _ in range(20_000):
        tracer.start_span("abandoned")  # never ended, reference dropped at once
    kept = tracer.start_span("still open")
    gc.collect()
    assert len(tracker._open) < 2_100
    assert tracker.end_open_spans() == 1  # only the span someone still holds is handed on
    assert Sink.ended == 1
    kept.end()
    provider.shutdown()


@pytest.mark.parametrize("how", ["exit", "sigterm"])
@pytest.mark.parametrize("destination", ["dead", "stalled"])
def test_a_failing_destination_does_not_hold_the_exit_and_the_loss_is_reported(tmp_path, how, destination):
    """Exit waits a bounded time for a destination that is gone or hangs, then says what it lost."""
    from faultserver import free_port

    server = FaultServer(mode="stall") if destination == "stalled" else None
    endpoint = server.endpoint if server else f"http://127.0.0.1:{free_port()}/v1/traces"
    try:
        env = _env(tmp_path, N_TRACES="200", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint, LLMOBS_SAMPLING="false",
                   LLMOBS_EXPORT_SHUTDOWN_TIMEOUT="1")
        done = _run(tmp_path, env) if how == "exit" else _terminate(tmp_path, env)
        assert done.returncode == (0 if how == "exit" else -signal.SIGTERM), done.stderr
        assert "export.shutdown_dropped" in done.stderr or "export.failed_spans" in done.stderr, done.stderr
        if server is not None:
            assert not server.released.is_set()  # the process ended while its export request still hung
    finally:
        if server is not None:
            server.close()
