"""Secrets never leave the process, and PII redaction (when on) leaves none in any exported byte.

A child application runs the full ``llmobs demo`` (the scripted agent and every installed framework's
demo) and then feeds secrets and PII through every route an application has: LangChain invocation
parameters, headers and metadata, an OpenAI client's API key and a base URL with credentials, URLs with
signed query strings, an environment dump (as a dict and as ``KEY=value`` text), prompts, tool
arguments, retrieval documents and error messages. Everything goes both to the embedded store and to a
loopback OTLP receiver; then every byte of every OTLP request and of the SQLite files is scanned.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from faultserver import FaultServer

APP = r"""
import argparse, json, os, sys
from llmobs import content, demo, export
from llmobs import semconv as sc
from llmobs.recorder import ROOT, get_recorder

with open(os.environ["INPUTS"]) as f:  # not in the environment: the environment dump has its own secrets
    S, P = json.load(f)
export.configure(exporters=["store", "otlp"], store=os.environ["STORE"])
demo.main(argparse.Namespace(sessions=2, store=os.environ["STORE"]))

env_text = "\n".join(f"{k}={v}" for k, v in os.environ.items())
pii_text = " ".join(P.values())

# LangChain: secrets in invocation parameters, headers, metadata (an environment dump), the prompt.
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from llmobs_langchain import LLMObsCallbackHandler
model = GenericFakeChatModel(messages=iter([AIMessage(content=f"noted: {pii_text}")] * 3))
bound = model.bind(
    api_key=S["OPENAI_API_KEY"],
    extra_headers={"Authorization": "Bearer " + S["BEARER"], "x-api-key": S["ANTHROPIC"]},
    base_url=S["DATABASE_URL"],
)
bound.invoke(
    f"my key is {S['OPENAI_API_KEY']}; reach me at {pii_text}",
    config={"callbacks": [LLMObsCallbackHandler()], "metadata": {"env": dict(os.environ), "api_key": S["GITHUB"]},
            "tags": ["prod"]},
)

# An OpenAI client through llmobs' transport: the API key travels as a header, the URL carries credentials.
from openai import OpenAI
from llmobs_openai import http_client
from llmobs_openai.testing import FakeOpenAIServer
with FakeOpenAIServer(words=["ok", " " + P["EMAIL"]]) as server:
    base = server.base_url.replace("http://", f"http://admin:{S['URL_PASSWORD']}@")
    client = OpenAI(base_url=base, api_key=S["DASHSCOPE"], http_client=http_client(),
                    default_headers={"x-goog-api-key": S["GOOGLE"]})
    client.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": f"internal token={S['TOKEN_PARAM']}"},
        {"role": "user", "content": f"card {P['CARD']} phone {P['PHONE']}"}])
    for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[
            {"role": "user", "content": f"{P['PHONE_CN']} {P['EMAIL']}"}]):
        pass

# The recorder directly: tool arguments, retrieval documents, an environment dump, signed URLs, errors.
agent = get_recorder().start(sc.OP_INVOKE_AGENT, "secrets-agent", parent=ROOT)
agent.set_input(value={"env": dict(os.environ), "env_text": env_text})
tool = get_recorder().start(sc.OP_EXECUTE_TOOL, "http_get", parent=agent)
tool.set_request(tool_name="http_get")
tool.set_input(value={"url": f"https://s3.example.com/b/o?X-Amz-Signature={S['SIGNATURE']}&sig={S['SIG']}",
                      "headers": {"Authorization": "Basic " + S["BASIC"], "Cookie": "session=" + S["COOKIE"]},
                      "customer": pii_text})
tool.set_output(value={"status": 200, "contact": P["EMAIL"], "card": P["CARD_DASHED"]})
tool.end()
retrieval = get_recorder().start(sc.OP_RETRIEVAL, "kb", parent=agent)
retrieval.set_output(value=[{"id": "d1", "content": f"customer {pii_text}", "score": 0.9}])
retrieval.end()
llm = get_recorder().start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini", parent=agent)
llm.set_input([content.message("user", [content.text_part(f"{env_text}\n{pii_text}")])])
llm.end(RuntimeError(f"401 for key {S['OPENAI_API_KEY']} (user {P['EMAIL']})"))
agent.set_output(value=f"sent to {P['EMAIL']}")
agent.end()
export.flush()
print("done", flush=True)
"""


def _secrets() -> dict[str, str]:
    """Fresh random credentials in each provider's shape; ``core`` parts are what must never appear."""
    r = secrets.token_hex
    return {
        "OPENAI_API_KEY": f"sk-proj-{r(20)}",
        "DASHSCOPE": f"sk-{r(16)}",
        "ANTHROPIC": f"sk-ant-api03-{r(20)}",
        "GOOGLE": f"AIza{r(16)}",
        "BEARER": r(24),
        "GITHUB": f"ghp_{r(18)}",
        "DATABASE_URL": f"postgres://admin:{r(12)}@db.internal:5432/app",
        "URL_PASSWORD": r(12),
        "TOKEN_PARAM": r(16),
        "SIGNATURE": r(32),
        "SIG": r(16),
        "BASIC": r(16),
        "COOKIE": r(16),
    }


def _environment_secrets() -> dict[str, str]:
    r = secrets.token_hex
    return {
        "OPENAI_API_KEY": f"sk-proj-{r(20)}",
        "AWS_SECRET_ACCESS_KEY": r(20),
        "AWS_ACCESS_KEY_ID": "AKIA" + r(8).upper(),
        "GITHUB_TOKEN": f"ghp_{r(18)}",
        "HTTPS_PROXY": f"http://proxyuser:{r(10)}@proxy.internal:3128",
        "MY_SERVICE_PASSWORD": r(12),
        "DASHSCOPE_API_KEY": f"sk-{r(16)}",
        "SLACK_BOT_TOKEN": f"xoxb-{r(16)}",
    }


PII = {
    "EMAIL": "jane.roe@example.org",
    "PHONE": "+1 (415) 555-0134",
    "PHONE_CN": "138 1234 5678",
    "CARD": "4111 1111 1111 1111",
    "CARD_DASHED": "5500-0000-0000-0004",
}


def _needles(value: str) -> list[str]:
    """What must not appear: the whole value and its secret part (after a known prefix / inside a URL)."""
    out = [value]
    if "://" in value and "@" in value:
        out.append(value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])  # the password
    for prefix in ("sk-proj-", "sk-ant-api03-", "sk-", "ghp_", "AIza", "xoxb-", "AKIA"):
        if value.startswith(prefix):
            out.append(value[len(prefix):])
            break
    return out


def _context(data: bytes, needle: str) -> str:
    at = data.find(needle.encode())
    return repr(data[max(0, at - 80): at + len(needle) + 20])


def _exported_bytes(tmp_path: Path, server: FaultServer) -> bytes:
    files = sorted(tmp_path.glob("llmobs.db*"))
    assert files, "nothing was stored"
    return b"".join(a.body for a in server.attempts) + b"".join(f.read_bytes() for f in files)


def _run(tmp_path: Path, server: FaultServer, **extra: str) -> tuple[bytes, dict[str, str], dict[str, str]]:
    inline, environ = _secrets(), _environment_secrets()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    env.update(environ)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps([inline, PII]))
    env.update(INPUTS=str(inputs), STORE=str(tmp_path / "llmobs.db"), LLMOBS_CONFIG_WATCH="false",
               LLMOBS_SAMPLING="false", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=server.endpoint, **extra)
    done = subprocess.run([sys.executable, "-c", APP], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-4000:]
    assert "demo failed" not in done.stdout, done.stdout
    data = _exported_bytes(tmp_path, server)
    # The routes were exercised: the demo, LangChain, the OpenAI client and the recorder all exported.
    for marker in (b"invoke_agent support-agent", b"secrets-agent", b"http_get", b"[REDACTED]", b"my key is",
                   b"GenericFakeChatModel", b"internal token="):
        assert marker in data, marker
    assert sum(len(a.spans) for a in server.attempts) > 50
    return data, inline, environ


@pytest.fixture(scope="module")
def server():
    s = FaultServer()
    yield s
    s.close()


def test_no_secret_in_any_exported_byte(tmp_path, server):
    server.attempts.clear()
    data, inline, environ = _run(tmp_path, server)
    leaked = [(name, _context(data, needle)) for name, value in {**inline, **environ}.items()
              for needle in _needles(value) if needle.encode() in data]
    assert leaked == [], f"secrets exported: {leaked}"


def test_pii_redaction_leaves_no_email_phone_or_card(tmp_path, server):
    server.attempts.clear()
    data, _, _ = _run(tmp_path, server, LLMOBS_PII_REDACTION="true")
    forms = {
        "jane.roe@example.org", "jane.doe@example.com",  # ours and the demo's
        "+1 (415) 555-0134", "415) 555-0134", "555-0134",
        "138 1234 5678", "13812345678",
        "4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "5500000000000004",
    }
    leaked = sorted(_context(data, f) for f in forms if f.encode() in data)
    assert leaked == [], f"PII exported: {leaked}"
    assert b"[EMAIL]" in data and b"[CARD]" in data and b"[PHONE]" in data
