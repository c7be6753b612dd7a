"""Export wiring: exit flush into the store, auto-configuration, the application's own providers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmobs import export
from llmobs import semconv as sc
from llmobs.recorder import ROOT, get_recorder

WRITE_SPANS = """
import llmobs
from llmobs.recorder import ROOT, get_recorder
{configure}
for i in range({traces}):
    root = get_recorder().start("invoke_agent", "agent", parent=ROOT, session_id=f"s{{i}}")
    for j in range(4):
        llm = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=root)
        llm.set_usage(100, 20)
        llm.end()
    root.end()
print("done")
"""


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def count_spans(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from spans").fetchone()[0]


def test_normal_exit_flushes_every_span_to_the_store(tmp_path):
    db = tmp_path / "exit.db"
    configure = f"llmobs.configure(exporters=['store'], store={str(db)!r})"
    run_python(WRITE_SPANS.format(configure=configure, traces=1000), tmp_path, LLMOBS_SAMPLING="false")
    assert count_spans(db) == 5000


def test_a_full_export_queue_is_counted_not_silent(tmp_path):
    db = tmp_path / "tiny.db"
    code = WRITE_SPANS.format(configure=f"llmobs.configure(exporters=['store'], store={str(db)!r})", traces=200)
    code += "from llmobs import selfstats; print(selfstats.snapshot().get('export.queue_full_dropped', 0))"
    out = run_python(
        code,
        tmp_path,
        LLMOBS_SAMPLING="false",
        OTEL_BSP_MAX_QUEUE_SIZE="8",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="8",
        OTEL_BSP_SCHEDULE_DELAY="60000",
    )
    dropped = int(out.stdout.split()[-1])
    assert dropped > 0
    # The count is taken as the queue fills, racing the worker by about a batch.
    assert abs(count_spans(db) + dropped - 1000) <= 16  # two batches of slack on a loaded machine


def test_auto_configuration_writes_to_the_default_store_in_the_working_directory(tmp_path):
    run_python(WRITE_SPANS.format(configure="", traces=3), tmp_path)
    assert count_spans(tmp_path / ".llmobs" / "llmobs.db") == 15


def test_llmobs_store_variable_moves_the_default_store(tmp_path):
    db = tmp_path / "elsewhere" / "x.db"
    run_python(WRITE_SPANS.format(configure="", traces=2), tmp_path, LLMOBS_STORE=str(db))
    assert count_spans(db) == 10
    assert not (tmp_path / ".llmobs").exists()


def test_auto_configuration_can_be_turned_off(tmp_path):
    run_python(WRITE_SPANS.format(configure="", traces=2), tmp_path, LLMOBS_AUTO_CONFIGURE="false")
    assert not (tmp_path / ".llmobs").exists()


def test_console_exporter_prints_spans(tmp_path):
    out = run_python(WRITE_SPANS.format(configure="llmobs.configure(exporters=['console'])", traces=1), tmp_path)
    assert '"name": "chat gpt-4o-mini"' in out.stdout
    assert not (tmp_path / ".llmobs").exists()


def test_service_name_and_resource_attributes_from_otel_variables(tmp_path):
    db = tmp_path / "svc.db"
    code = WRITE_SPANS.format(configure=f"llmobs.configure(exporters=['store'], store={str(db)!r})", traces=1)
    run_python(code, tmp_path, OTEL_SERVICE_NAME="checkout-bot", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=ci")
    with sqlite3.connect(db) as conn:
        services = {row[0] for row in conn.execute("select service from spans")}
        resource = conn.execute("select resource from spans limit 1").fetchone()[0]
    assert services == {"checkout-bot"}
    assert "deployment.environment" in resource


def test_application_providers_are_used_not_replaced(spans, settings, tmp_path):
    settings()
    assert export.configure() and export.exporters() == ()  # auto adds nothing to the app's provider
    db = tmp_path / "also.db"
    try:
        export.shutdown()
        export.configure(exporters=["store"], store=str(db))
        export.configure(exporters=["store"], store=str(db))  # idempotent: still one store processor
        assert export.exporters() == ("store",)
        h = get_recorder().start(sc.OP_CHAT, model="gpt-4o", provider="openai", parent=ROOT)
        h.end()
        assert export.flush()
    finally:
        export.shutdown()
    assert [s.name for s in spans.get_finished_spans()] == ["chat gpt-4o"]  # the app's exporter saw it
    assert count_spans(db) == 1
    h = get_recorder().start(sc.OP_CHAT, model="after", provider="openai", parent=ROOT)
    h.end()
    assert count_spans(db) == 1  # shutdown detached the store processor from the app's provider


def test_prometheus_metrics_endpoint_serves_genai_metrics(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = WRITE_SPANS.format(configure="llmobs.configure(exporters=['none'])", traces=3)
    code += f"""
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
"""
    out = run_python(
        code,
        tmp_path,
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    ).stdout
    counts = {
        line.split("{")[0]: line for line in out.splitlines() if line.startswith("gen_ai_client_operation_duration")
    }
    assert "gen_ai_client_operation_duration_seconds_count" in counts, out[:2000]
    chat = [
        line
        for line in out.splitlines()
        if line.startswith("gen_ai_client_operation_duration_seconds_count") and 'gen_ai_operation_name="chat"' in line
    ]
    assert chat and float(chat[0].rsplit(" ", 1)[1]) == 12  # 3 traces x 4 chat calls
    assert "gen_ai_client_token_usage" in out


def test_unsupported_metrics_exporter_is_a_clear_error(tmp_path):
    code = "import llmobs\ntry:\n    llmobs.configure(exporters=['none'])\nexcept Exception as e:\n    print(e)\n"
    out = run_python(code, tmp_path, OTEL_METRICS_EXPORTER="statsd").stdout
    assert "OTEL_METRICS_EXPORTER: unsupported value 'statsd'" in out


def test_the_local_store_alone_keeps_every_trace_by_default(tmp_path):
    db = tmp_path / "dev.db"
    code = WRITE_SPANS.format(configure=f"llmobs.configure(exporters=['store'], store={str(db)!r})", traces=300)
    run_python(code, tmp_path)
    assert count_spans(db) == 1500  # sampling turns itself on only when spans leave the machine


def test_sampling_on_for_the_store_when_asked(tmp_path):
    db = tmp_path / "sampled.db"
    code = WRITE_SPANS.format(configure=f"llmobs.configure(exporters=['store'], store={str(db)!r})", traces=300)
    run_python(code, tmp_path, LLMOBS_SAMPLING="true", LLMOBS_SAMPLING_RATIO="0.1")
    with sqlite3.connect(db) as conn:
        spans, weighted_roots = conn.execute(
            "select count(*), sum(case when parent_span_id is null then adjusted_count end) from spans"
        ).fetchone()
    assert 5 * 5 <= spans < 1500 / 3  # the floor's first 5 traces plus about a tenth of the rest
    assert 150 < weighted_roots < 600  # adjusted counts still estimate the 300 traces


DROPPED_ON_APP_PROVIDER = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import llmobs
from llmobs import selfstats
reader = InMemoryMetricReader()
{before}
llmobs.configure(exporters=["none"])
{after}
def dropped():
    data = reader.get_metrics_data()
    if data is None:  # nothing to report at all
        return {{}}
    return {{
        point.attributes["llmobs.reason"]: point.value
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == "llmobs.dropped"
        for point in m.data.data_points
    }}
print(sorted(dropped().items()))
selfstats.count("export.queue_full_dropped", 3)
llmobs.configure()  # again: still one llmobs.dropped counter
print(sorted(dropped().items()))
"""


def test_what_llmobs_dropped_is_published_on_the_applications_meter_provider(tmp_path):
    """The application's own meter provider, set before or after llmobs is configured, gets ``llmobs.dropped``
    (from zero, so an alert on its increase works from the first collection), as llmobs' own provider does."""
    install = "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))"
    for before, after in ((install, ""), ("", install)):
        out = run_python(DROPPED_ON_APP_PROVIDER.format(before=before, after=after), tmp_path).stdout.splitlines()
        zeros = {reason: 0 for reason in export.LOSS_REASONS}
        assert out[0] == str(sorted(zeros.items())), (before, after, out)
        assert out[1] == str(sorted({**zeros, "export.queue_full_dropped": 3}.items())), (before, after, out)


APP_PROVIDER_METRICS = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
import llmobs
from llmobs import aggregated_metrics
from llmobs.aggregated_metrics import AggregatingInMemoryReader
from llmobs.recorder import ROOT, get_recorder
reader = {reader}
metrics.set_meter_provider(MeterProvider(metric_readers=[reader], views={views}))
llmobs.configure(exporters=["none"])
for i in range(3):
    handle = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=ROOT)
    handle.set_usage(100, 20 + i)
    handle.end()
points = {{}}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            for p in m.data.data_points:
                points[m.name, tuple(sorted(p.attributes.items()))] = getattr(p, "count", None), getattr(p, "sum", None)
print(aggregated_metrics._global is not None)
print(sorted((k, v) for k, v in points.items() if k[0] == "gen_ai.client.token.usage"))
call = {{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini"}}
print(points.get(("gen_ai.client.operation.duration", tuple(sorted(call.items()))), (None, None))[0])
print(any(name == "llmobs.dropped" for name, _ in points))
"""


def _token_points(*attributes: tuple[str, str]) -> list:
    """The token usage points of three calls (100 input tokens each, 20, 21 and 22 output), with ``attributes``."""
    out = []
    for kind, total in (("input", 300), ("output", 63)):
        key = tuple(sorted((*attributes, ("gen_ai.token.type", kind))))
        out.append((("gen_ai.client.token.usage", key), (3, total)))
    return sorted(out)


def test_an_application_provider_built_with_llmobs_readers_aggregates_in_llmobs(tmp_path):
    """The cheap path on the application's own provider: llmobs' readers, no Views. The points are the same
    as on the SDK's path; with a plain reader or with Views there, the SDK's path (and so the Views) applies."""
    call = (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-mini"))
    for reader, views, adopted, tokens in (
        ("AggregatingInMemoryReader()", "()", True, _token_points(*call)),
        ("InMemoryMetricReader()", "()", False, _token_points(*call)),
        ("AggregatingInMemoryReader()",
         '[View(instrument_name="gen_ai.client.token.usage", attribute_keys={"gen_ai.token.type"})]', False,
         _token_points()),
    ):
        code = APP_PROVIDER_METRICS.format(reader=reader, views=views)
        out = run_python(code, tmp_path).stdout.splitlines()
        assert out[0] == str(adopted), (reader, views, out)
        assert out[1] == str(tokens), (reader, views, out)
        assert out[2] == "3", (reader, views, out)  # three calls in the duration histogram
        assert out[3] == "True", (reader, views, out)


def test_an_empty_sdk_provider_gets_our_exporters(tmp_path):
    """A provider with no processors (what Promptflow's start_trace() installs) would export nothing."""
    setup = (
        "from opentelemetry import trace\nfrom opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\nllmobs.configure()\n"
        "from llmobs import export\nassert export.is_configured() and export.exporters() == ('store',)\n"
    )
    run_python(WRITE_SPANS.format(configure=setup, traces=2), tmp_path)
    assert count_spans(tmp_path / ".llmobs" / "llmobs.db") == 10


def test_plugin_exporters_and_processors_receive_every_kept_span(tmp_path):
    """``llmobs_span_processors`` answers: an exporter gets llmobs' batch processor, a processor is used as is;
    both see each finished span that sampling keeps, as llmobs' own exporters do."""
    setup = """
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from llmobs import plugins, selfstats

class Exporter(SpanExporter):
    names = []
    def export(self, spans):
        self.names += [s.name for s in spans]
        return SpanExportResult.SUCCESS

class Processor(SpanProcessor):
    ended = []
    def on_end(self, span):
        self.ended.append(span.name)

class Plugin:
    @llmobs.hookimpl
    def llmobs_span_processors(self, settings):
        return [Exporter(), Processor()]

plugins.register(Plugin())
llmobs.configure(exporters=['store'], store='plugin.db')
"""
    check = """
llmobs.flush()
assert len(Exporter.names) == len(Processor.ended) == 10, (Exporter.names, Processor.ended)
assert sorted(Exporter.names) == sorted(Processor.ended) and "chat gpt-4o-mini" in Exporter.names
assert not selfstats.snapshot(), selfstats.snapshot()
"""
    run_python(WRITE_SPANS.format(configure=textwrap.dedent(setup), traces=2) + textwrap.dedent(check), tmp_path)
    assert count_spans(tmp_path / "plugin.db") == 10


def test_configure_twice_wires_once_and_swaps_run_time_settings(tmp_path):
    code = """
import llmobs
from opentelemetry import trace
from llmobs import config
llmobs.configure(exporters=['store'], store='twice.db')
processors = trace.get_tracer_provider()._active_span_processor._span_processors
llmobs.configure(exporters=['store'], store='twice.db', capture='NO_CONTENT')
assert trace.get_tracer_provider()._active_span_processor._span_processors == processors
assert len(processors) == 1, processors
assert config.current().capture.name == 'NO_CONTENT', config.current().capture
print('ok')
"""
    assert run_python(code, tmp_path).stdout.strip() == "ok"


def test_flush_shares_one_timeout_across_exporters_and_reports_whether_all_were_done(tmp_path):
    """A processor that uses up the whole timeout leaves nothing for the next: flush says False."""
    setup = """
import time
from opentelemetry.sdk.trace import SpanProcessor
from llmobs import plugins

class Processor(SpanProcessor):
    def __init__(self, busy):
        self.busy, self.given = busy, []
    def force_flush(self, timeout_millis=30000):
        self.given.append(timeout_millis)
        if self.busy:
            time.sleep(timeout_millis / 1000)  # the whole time it was given
        return True

slow, quick = Processor(busy=False), Processor(busy=False)

class Plugin:
    @llmobs.hookimpl
    def llmobs_span_processors(self, settings):
        return [slow, quick]

plugins.register(Plugin())
llmobs.configure(exporters=['store'], store='flush.db')
"""
    check = """
assert llmobs.flush(60_000) is True and len(slow.given) == len(quick.given) == 1
assert 0 < quick.given[0] <= slow.given[0] <= 60_000
slow.busy = True
assert llmobs.flush(300) is False  # the slow processor used the whole timeout
assert slow.given[1] <= 300 and quick.given[1:] == [], (slow.given, quick.given)
"""
    run_python(WRITE_SPANS.format(configure=textwrap.dedent(setup), traces=1) + textwrap.dedent(check), tmp_path)
    assert count_spans(tmp_path / "flush.db") == 5


FORK_CHILDREN = """
import multiprocessing, sqlite3
import llmobs

def record(tag):
    for j in range(5):
        with llmobs.span(f"{tag}-{j}"):
            pass
    return tag

if __name__ == "__main__":
    llmobs.configure(exporters=["store"], store="fork.db")
    record("parent")
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=record, args=("process",))
    child.start()
    child.join()
    assert child.exitcode == 0
    pool = fork.Pool(2)
    assert pool.map(record, [f"task{i}" for i in range(4)], chunksize=1) == [f"task{i}" for i in range(4)]
    pool.close()
    pool.join()
    llmobs.shutdown()
"""


def test_spans_recorded_in_multiprocessing_fork_children_reach_the_store(tmp_path):
    """Such children leave through os._exit after multiprocessing's finalizers, never through atexit."""
    script = tmp_path / "fork_children.py"
    script.write_text(FORK_CHILDREN)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))})
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(tmp_path / "fork.db") as conn:
        names = sorted(row[0] for row in conn.execute("select name from spans"))
    tags = ["parent", "process", "task0", "task1", "task2", "task3"]
    assert names == sorted(f"{tag}-{j}" for tag in tags for j in range(5))


CONFIGURED_IN_CHILDREN = """
import multiprocessing, sys
import llmobs

def configure():
    llmobs.configure(exporters=["store"], store="children.db")

def record(tag):
    for j in range(5):
        with llmobs.span(f"{tag}-{j}"):
            pass
    return tag

def configure_and_record(tag):
    configure()
    record(tag)

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    child = context.Process(target=configure_and_record, args=("process",))
    child.start()
    child.join()
    assert child.exitcode == 0
    pool = context.Pool(2, initializer=configure)
    assert pool.map(record, [f"task{i}" for i in range(4)], chunksize=1) == [f"task{i}" for i in range(4)]
    pool.close()
    pool.join()
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_spans_of_children_that_configure_themselves_reach_the_store(tmp_path, method):
    """A pool's initializer (or the child's own code) configures: forkserver's children also leave through
    os._exit (Python 3.14's default start method on Linux); spawn's through atexit."""
    script = tmp_path / "children.py"
    script.write_text(CONFIGURED_IN_CHILDREN)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    out = subprocess.run([sys.executable, str(script), method], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=environment)
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(tmp_path / "children.db") as conn:
        names = sorted(row[0] for row in conn.execute("select name from spans"))
    tags = ["process", "task0", "task1", "task2", "task3"]
    assert names == sorted(f"{tag}-{j}" for tag in tags for j in range(5))
