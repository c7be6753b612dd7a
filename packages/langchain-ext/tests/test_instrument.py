"""Process-wide tracing: instrument() through LangChain's configure hook, idempotent, deduplicated against
explicit handlers, undone by uninstrument(), switched on by the environment, off by the settings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers import context as tracer_context

import llmobs_langchain
from llmobs_langchain import LLMObsCallbackHandler, instrument, uninstrument
from llmobs_langchain.instrumentation import ENV_VAR, _switch, instrument_from_environment


@pytest.fixture
def chain(scripted):
    return RunnableLambda(lambda q: q, name="question") | scripted("answer", repeat=True, model="m")


def test_instrument_traces_runs_with_no_callbacks(chain, recorded):
    handler = instrument()
    assert isinstance(handler, LLMObsCallbackHandler) and llmobs_langchain.is_instrumented()
    chain.invoke("q")
    assert [s.name for s in recorded.all()] == ["RunnableSequence", "question", "chat m"]
    assert recorded.parent(recorded.one("chat m")).name == "RunnableSequence"


def test_instrument_is_idempotent(chain, recorded):
    first = instrument()
    assert instrument() is first
    hooks = [h for h in tracer_context._configure_hooks if h[0] is _switch]
    assert len(hooks) == 1
    chain.invoke("q")
    assert len(recorded.all()) == 3


def test_a_run_traced_globally_and_explicitly_gives_one_span(chain, scripted, recorded):
    instrument()
    chain.invoke("q", config={"callbacks": [LLMObsCallbackHandler()]})
    assert len(recorded.all()) == 3
    # a model with its own (local) handler, inside a globally traced chain: both handlers see its run
    local = scripted("answer", model="local", callbacks=[LLMObsCallbackHandler()])
    (RunnableLambda(lambda q: q, name="outer") | local).invoke("q")
    assert len(recorded.named("chat local")) == 1
    assert recorded.parent(recorded.one("chat local")).name == "RunnableSequence"


def test_uninstrument_stops_new_runs_and_lets_runs_in_flight_end(chain, recorded):
    instrument()
    stream = RunnableLambda(lambda x: iter([x, x]), name="in_flight").stream(1)
    next(stream)
    uninstrument()
    assert not llmobs_langchain.is_instrumented()
    chain.invoke("q")
    list(stream)
    assert [s.name for s in recorded.all()] == ["in_flight"]
    instrument()  # and back on, still one hook
    chain.invoke("q")
    assert len(recorded.all()) == 4
    assert len([h for h in tracer_context._configure_hooks if h[0] is _switch]) == 1


def test_threads_the_application_starts_are_traced_too(chain, recorded):
    instrument()
    thread = threading.Thread(target=chain.invoke, args=("q",))
    thread.start()
    thread.join()
    assert len(recorded.all()) == 3


def test_disabled_integration_traces_nothing_globally_or_explicitly(settings, chain, recorded):
    settings(disabled_integrations=frozenset({"langchain"}))
    instrument()
    chain.invoke("q")
    chain.invoke("q", config={"callbacks": [LLMObsCallbackHandler()]})
    assert recorded.all() == []


def run_python(code: str, *args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    environ.update(env, LLMOBS_EXPORTERS="none")
    out = subprocess.run([sys.executable, *args] if args else [sys.executable, "-c", code],
                         env=environ, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


CHECK = "import llmobs_langchain; print(llmobs_langchain.is_instrumented())"


@pytest.mark.parametrize(("value", "on"), [("true", True), ("1", True), ("on", True), ("0", False), ("", False)])
def test_environment_variable_values(monkeypatch, value, on):
    monkeypatch.setenv(ENV_VAR, value)
    assert instrument_from_environment() is on
    assert llmobs_langchain.is_instrumented() is on


def test_environment_variable_instruments_on_import():
    assert run_python(CHECK, **{ENV_VAR: "true"}).strip() == "True"


def test_launcher_runs_an_unchanged_script_instrumented(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from langchain_core.runnables import RunnableLambda
        from langchain_core.tracers.context import _configure_hooks
        RunnableLambda(lambda x: x).invoke(1)
        handlers = [h[0].get() for h in _configure_hooks]
        print(type(handlers[-1]).__name__, sys.argv[1:])
    """)
    )
    printed = run_python("", "-m", "llmobs_langchain", str(script), "--flag", "value")
    assert printed.strip() == "LLMObsCallbackHandler ['--flag', 'value']"
    assert "usage" in subprocess.run([sys.executable, "-m", "llmobs_langchain"], capture_output=True, text=True).stderr
