"""The README's zero-code route: an unmodified Promptflow app, run under ``opentelemetry-instrument``, exports
its spans over OTLP/HTTP to ``llmobs serve``, which stores them with llmobs semantics.

Everything is real and out of process, as a user runs it: the app (promptflow-tracing's ``start_trace()``,
``@trace`` functions and Promptflow's traced ``openai`` client against a loopback OpenAI server), the OTel
distro's SDK set-up and exporter, and the ``llmobs serve`` receiver writing a SQLite store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmobs import semconv as sc
from llmobs.store import TraceStore
from llmobs_openai import testing as loopback

BIN = Path(sys.executable).parent
QUESTION = "What is the capital of Portugal?"

APP = textwrap.dedent(
    """
    import os

    import openai
    from promptflow.tracing import start_trace, trace

    @trace
    def ask(question: str) -> str:
        client = openai.OpenAI(base_url=os.environ["LOOPBACK_URL"], api_key="sk-loopback", max_retries=0)
        messages = [{"role": "user", "content": question}]
        return client.chat.completions.create(model="loop-chat", messages=messages).choices[0].message.content

    @trace
    def answer_flow(question: str) -> str:
        return ask(question).upper()

    start_trace(collection="zero-code")
    print(answer_flow(QUESTION))
    """
).replace("QUESTION", repr(QUESTION))


@pytest.fixture
def serve(tmp_path):
    """``llmobs serve`` on a free port with its own store; yields (OTLP traces URL, store path)."""
    store = tmp_path / "served.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    process = subprocess.Popen(
        [str(BIN / "llmobs"), "--store", str(store), "serve", "--port", "0"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        process.stdout.readline()  # the console's address
        traces_url = process.stdout.readline().split()[1]
        assert traces_url.endswith("/v1/traces"), traces_url
        yield traces_url, store
    finally:
        process.send_signal(signal.SIGTERM)  # not SIGINT: a background process may have SIGINT ignored
        process.wait(timeout=60)


@pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")
def test_an_unmodified_app_under_opentelemetry_instrument_lands_in_llmobs_serve(tmp_path, serve):
    traces_url, store = serve
    app = tmp_path / "app.py"
    app.write_text(APP)
    instrument = BIN / "opentelemetry-instrument"
    assert instrument.exists(), "opentelemetry-instrument missing: the dev dependencies include opentelemetry-distro"
    with loopback.FakeOpenAIServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
        env.update(
            PF_DISABLE_TRACING="false",
            LOOPBACK_URL=server.base_url,
            OTEL_SERVICE_NAME="pf-zero-code",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=traces_url,
            # only Promptflow's own tracing: other instrumentors installed beside it stay off
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="*",
        )
        done = subprocess.run(
            [str(instrument), sys.executable, str(app)], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    answer = "".join(loopback.WORDS)
    assert answer.upper() in done.stdout
    with TraceStore(store) as traces:
        (trace,) = traces.list_traces()
        spans = {span.name: span for span in traces.get_trace(trace.trace_id)}
    assert set(spans) >= {"answer_flow", "ask", "chat loop-chat"}, sorted(spans)
    llm = spans["chat loop-chat"]
    assert llm.operation == sc.OP_CHAT and llm.span_kind == sc.KIND_LLM
    # start_trace() overwrites the process's service name with its own (README: a limit of this route)
    assert llm.service == sc.PF_SERVICE_NAME
    assert (llm.provider, llm.request_model, llm.response_model) == ("openai", "loop-chat", "loop-chat-served")
    assert (llm.input_tokens, llm.output_tokens) == loopback.USAGE[:2]
    assert json.loads(llm.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == answer
    assert llm.attributes[sc.REQUEST_STREAM] is False and llm.attributes[sc.RESPONSE_FINISH_REASONS] == ["stop"]
    # Promptflow's payloads arrive once, as GenAI content: not as raw attributes, not as events
    assert not {"inputs", "output", "llm.usage.prompt_tokens"} & set(llm.attributes)
    assert not [e for span in spans.values() for e in span.events if e["name"].startswith("promptflow.")]
    assert spans["ask"].parent_span_id == spans["answer_flow"].span_id
    assert llm.parent_span_id == spans["ask"].span_id
