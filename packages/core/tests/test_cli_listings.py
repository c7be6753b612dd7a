"""The ``llmobs`` command over a real store: tables, the span tree, JSON, errors and exit codes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from llmobs import semconv as sc
from llmobs.cli import main, render
from llmobs.store import SQLiteSpanExporter
from llmobs.store.schema import open_writer

MS = 1_000_000


def record_trace(path: Path, t0: int) -> str:
    """agent → (chat, tool → chat) plus a span whose parent was never stored; returns the trace id."""
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    tracer = provider.get_tracer(sc.SCOPE_NAME)
    chat = {sc.SPAN_KIND: sc.KIND_LLM, sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "openai",
            sc.REQUEST_MODEL: "gpt-4o", sc.USAGE_INPUT_TOKENS: 100, sc.USAGE_OUTPUT_TOKENS: 20,
            sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS: 150 * MS, sc.COST_USD: 0.25}
    root = tracer.start_span("agent", start_time=t0, attributes={sc.SPAN_KIND: sc.KIND_AGENT})
    with trace.use_span(root, end_on_exit=False):
        tracer.start_span("chat gpt-4o", start_time=t0 + 10 * MS, attributes=chat).end(t0 + 510 * MS)
        tool = tracer.start_span("execute_tool lookup", start_time=t0 + 600 * MS, attributes={
            sc.SPAN_KIND: sc.KIND_TOOL, sc.ERROR_TYPE: "LookupError"})
        with trace.use_span(tool, end_on_exit=False):
            tracer.start_span("chat again", start_time=t0 + 610 * MS, attributes=chat).end(t0 + 700 * MS)
            lost_parent = tracer.start_span("lost parent", start_time=t0 + 620 * MS)
            with trace.use_span(lost_parent, end_on_exit=False):
                tracer.start_span("orphan", start_time=t0 + 630 * MS).end(t0 + 640 * MS)
            # lost_parent is never ended, so never exported: "orphan" has no stored parent
        tool.set_status(Status(StatusCode.ERROR))
        tool.end(t0 + 800 * MS)
    root.end(t0 + 2 * 10**9)
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


@pytest.fixture
def store(tmp_path) -> tuple[str, list[str]]:
    path = tmp_path / "cli.db"
    now = time.time_ns()
    ids = [record_trace(path, now - (100 - i) * 10**9) for i in range(3)]
    return str(path), ids


def test_traces_table(store, capsys):
    path, ids = store
    assert main(["traces", "--store", path]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["TRACE", "WHEN", "ROOT", "KIND", "SPANS", "DURATION", "TOKENS", "COST", "STATUS"]
    assert [line.split()[0] for line in lines[1:4]] == [i[:12] for i in reversed(ids)]
    assert lines[1].split()[3:] == ["agent", "AGENT", "5", "2.00s", "240", "$0.50", "ERROR"]
    assert f"llmobs show {ids[2][:12]} --store {path}" in lines[-1]
    assert "\x1b[" not in out  # not a terminal: no colour


def test_traces_options_and_json(store, capsys):
    path, ids = store
    assert main(["--store", path, "traces", "--limit", "2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["trace_id"] for t in listed] == [ids[2], ids[1]]
    assert listed[0]["total_tokens"] == 240 and listed[0]["span_count"] == 5
    assert main(["traces", "--store", path, "--service", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["traces", "--store", path, "--errors", "--service", "shop", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_show_tree(store, capsys):
    path, ids = store
    assert main(["show", ids[0][:10], "--store", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"trace {ids[0]}  service shop")
    spans = [re.split(r"(?<=\S)  +", line)[0] for line in lines[3:]]  # the first column
    assert spans == [
        "agent",
        "├─ chat gpt-4o",
        "└─ execute_tool lookup",
        "   └─ chat again",
        "orphan",  # its parent is not in the store: shown at the top level
    ]
    chat = lines[4]
    assert "LLM" in chat and "500ms" in chat and "150ms" in chat and "100→20" in chat and "$0.25" in chat
    assert "ERROR LookupError" in lines[5]


def test_show_json(store, capsys):
    path, ids = store
    assert main(["show", ids[1], "--json", "--store", path]) == 0
    spans = json.loads(capsys.readouterr().out)
    assert {s["trace_id"] for s in spans} == {ids[1]}
    assert [s["name"] for s in spans] == ["agent", "chat gpt-4o", "execute_tool lookup", "chat again", "orphan"]
    assert spans[1]["attributes"][sc.REQUEST_MODEL] == "gpt-4o"
    assert spans[1]["events"] == [] and spans[0]["resource"][sc.SERVICE_NAME] == "shop"


def test_stats(store, capsys):
    path, _ = store
    assert main(["stats", "--store", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["openai", "gpt-4o", "6", "0.0%", "90ms", "500ms", "150ms", "150ms", "600", "120",
                                "$1.50"]
    assert lines[2].split() == ["total", "6", "0.0%", "600", "120", "$1.50"]
    assert main(["stats", "--store", path, "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)
    assert (model["model"], model["calls"], model["p95_duration_s"]) == ("gpt-4o", 6, 0.5)


def test_missing_store_is_one_line_and_exit_1(tmp_path, capsys):
    missing = tmp_path / "none.db"
    for command in (["traces"], ["show", "abc"], ["stats", "--json"]):
        assert main([*command, "--store", str(missing)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and str(missing) in captured.err and "llmobs demo" in captured.err
    assert not missing.exists()


def test_empty_store(tmp_path, capsys):
    path = tmp_path / "empty.db"
    open_writer(path).close()
    for command in (["traces"], ["stats"]):
        assert main([*command, "--store", str(path)]) == 0
        assert capsys.readouterr().out == "no traces yet — run `llmobs demo`\n"
    assert main(["traces", "--store", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_user_and_usage_errors(store, capsys):
    path, ids = store
    unknown = ("0" if ids[0][0] != "0" else "1") * 32
    assert main(["show", unknown, "--store", path]) == 1
    assert "no trace" in capsys.readouterr().err
    assert main(["show", "not-hex", "--store", path]) == 1
    assert main(["traces", "--limit", "0"]) == 2
    assert main(["nonsense"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    (tmp := Path(path).with_name("garbage.db")).write_text("this is not sqlite" * 100)
    assert main(["traces", "--store", str(tmp)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_store_from_environment(store, capsys, monkeypatch):
    path, _ = store
    monkeypatch.setenv("LLMOBS_STORE", path)
    assert main(["traces", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_demo_and_config_check_delegate(monkeypatch, tmp_path):
    seen = {}
    demo = types.ModuleType("llmobs.demo")
    demo.main = lambda args: seen.setdefault("demo", args) and 0
    config = types.ModuleType("llmobs.config")
    config.check_command = lambda path: seen.setdefault("config", path) and 3
    monkeypatch.setitem(sys.modules, "llmobs.demo", demo)
    monkeypatch.setitem(sys.modules, "llmobs.config", config)

    assert main(["--store", str(tmp_path / "d.db"), "demo"]) == 0
    assert (seen["demo"].sessions, seen["demo"].store) == (3, str(tmp_path / "d.db"))
    seen.clear()
    assert main(["demo", "--sessions", "5"]) == 0
    assert (seen["demo"].sessions, seen["demo"].store) == (5, None)
    assert main(["config", "check", "llmobs.toml"]) == 3
    assert seen["config"] == "llmobs.toml"
    assert main(["config"]) == 2


def test_colour_only_for_terminals(monkeypatch):
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.use_color(Stream(True)) and not render.use_color(Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_color(Stream(True))
    assert "\x1b[31mERROR" in render.table(["S"], [[render.status("ERROR")]], color=True)


def test_console_script(store):
    path, ids = store
    script = Path(sys.executable).with_name("llmobs")
    result = subprocess.run([str(script), "traces", "--store", path, "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [t["trace_id"] for t in json.loads(result.stdout)] == ids[::-1]


def test_the_cli_starts_without_numpy_or_the_otel_sdk():
    """Listing commands read SQLite: building the parser and the readers must not import analysis or export."""
    code = (
        "import sys; from llmobs.cli import _parser; from llmobs.store import TraceStore; _parser();"
        " print(sorted(m for m in ('numpy', 'opentelemetry.sdk.trace') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_package_attributes_resolve_and_unknown_names_raise():
    import llmobs
    import llmobs.analyze
    import llmobs.store

    assert llmobs.store.SQLiteSpanExporter.__name__ == "SQLiteSpanExporter"
    assert llmobs.analyze.EvaluationResult.__module__ == "llmobs.analyze.evaluators"
    assert callable(llmobs.configure)
    for module in (llmobs, llmobs.store, llmobs.analyze):
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018


def _strict(constant):
    raise ValueError(f"not JSON: {constant}")


def test_every_json_output_is_strict_json_with_non_finite_numbers_as_null(tmp_path, capsys):
    path = tmp_path / "nan.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    chat = {sc.SPAN_KIND: sc.KIND_LLM, sc.OPERATION_NAME: sc.OP_CHAT, sc.REQUEST_MODEL: "gpt-4o",
            sc.REQUEST_TEMPERATURE: float("nan"), "app.ratio": float("inf"), "app.limits": (1.0, float("-inf")),
            sc.USAGE_INPUT_TOKENS: 10, sc.COST_USD: float("inf")}
    provider.get_tracer(sc.SCOPE_NAME).start_span("chat gpt-4o", attributes=chat).end()
    provider.shutdown()
    assert main(["traces", "--store", str(path), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out, parse_constant=_strict)
    assert main(["show", listed["trace_id"], "--store", str(path), "--json"]) == 0
    (span,) = json.loads(capsys.readouterr().out, parse_constant=_strict)
    attributes = span["attributes"]
    assert attributes[sc.REQUEST_TEMPERATURE] is None and attributes["app.ratio"] is None
    assert attributes["app.limits"] == [1.0, None] and attributes[sc.USAGE_INPUT_TOKENS] == 10
    assert main(["stats", "--store", str(path), "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=_strict)


def test_the_details_hint_runs_as_printed_for_a_path_with_spaces(tmp_path, capsys):
    path = tmp_path / "my traces $HOME.db"
    trace_id = record_trace(path, time.time_ns() - 10**9)
    assert main(["traces", "--store", str(path)]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    program, *arguments = shlex.split(hint.removeprefix("details: "))
    assert program == "llmobs" and main(arguments) == 0
    assert capsys.readouterr().out.startswith(f"trace {trace_id}")


def record_hostile_trace(path: Path) -> str:
    """A trace whose service, names, error type and evaluation carry terminal control sequences."""
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "shop\x1b[2J"}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    tracer = provider.get_tracer(sc.SCOPE_NAME)
    root = tracer.start_span("evil\x1b]0;title\x07\rOVER\nLINE\x7f\x9b 中文 é", attributes={sc.SPAN_KIND: "AG\x1bENT"})
    with trace.use_span(root, end_on_exit=False):
        child = tracer.start_span("child\x1b[8m", attributes={sc.ERROR_TYPE: "Bad\x1b[5mBlink"})
        child.add_event(sc.EVENT_EVALUATION_RESULT, {sc.EVALUATION_NAME: "judge\x07",
                                                     sc.EVALUATION_SCORE_LABEL: "fail\r",
                                                     sc.EVALUATION_EXPLANATION: "why\x1b[1A"})
        child.set_status(Status(StatusCode.ERROR))
        child.end()
    root.end()
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


def test_control_characters_in_span_data_are_printed_escaped_and_json_stays_exact(tmp_path, capsys):
    path = str(tmp_path / "hostile.db")
    trace_id = record_hostile_trace(Path(path))
    for args in (["traces"], ["show", trace_id]):
        assert main([*args, "--store", path]) == 0
        out = capsys.readouterr().out
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), args  # only the table's own newlines
        assert "evil\\x1b]0;title\\x07\\x0dOVER\\x0aLINE\\x7f\\x9b 中文 é" in out
    assert "service shop\\x1b[2J" in out and "child\\x1b[8m" in out and "ERROR Bad\\x1b[5mBlink" in out
    assert "judge\\x07: fail\\x0d" in out and "why\\x1b[1A" in out and "AG\\x1bENT" in out
    assert len(out.splitlines()) == 8  # header, blank, column titles, two spans, blank, title, evaluation
    assert main(["show", trace_id, "--json", "--store", path]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)]
    assert names == ["evil\x1b]0;title\x07\rOVER\nLINE\x7f\x9b 中文 é", "child\x1b[8m"]


def test_a_very_deep_trace_is_indented_up_to_a_cap_then_shows_its_depth(tmp_path, capsys):
    path = tmp_path / "deep.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    tracer = provider.get_tracer(sc.SCOPE_NAME)
    chain = [tracer.start_span("root")]
    for depth in range(1, 301):
        chain.append(tracer.start_span(f"step-{depth}", context=trace.set_span_in_context(chain[-1])))
    for span in reversed(chain):
        span.end()
    provider.shutdown()
    assert main(["show", f"{chain[0].get_span_context().trace_id:032x}", "--store", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()[3:]
    assert len(lines) == 301
    indent = "   " * (render.MAX_INDENT - 1)
    assert lines[render.MAX_INDENT].startswith(f"{indent}└─ step-{render.MAX_INDENT} ")
    assert lines[render.MAX_INDENT + 1].startswith(f"{indent}   [{render.MAX_INDENT + 1}] └─ step-")
    assert lines[300].startswith(f"{indent}   [300] └─ step-300 ")
    assert max(map(len, lines)) < 3 * render.MAX_INDENT + 80  # not padded to 300 levels of indentation
