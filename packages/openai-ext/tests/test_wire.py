"""What lies between the client and the provider: compressed bodies, proxies from the environment, redirects,
and the application cancelling a call."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import llmobs_openai
from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_openai.calls import Call
from llmobs_openai.decoding import Decoder, UnsupportedEncoding
from llmobs_openai.routes import Api
from llmobs_openai.testing import USAGE, WORDS, FakeOpenAIServer

USER = [{"role": "user", "content": "Hello?"}]
ANSWER = "".join(WORDS)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "br", "zstd"])
def test_compressed_answers_are_read_as_the_application_reads_them(spans, encoding):
    with FakeOpenAIServer(content_encoding=encoding) as server, llmobs_openai.http_client() as http:
        client = openai.OpenAI(api_key="k", base_url=server.base_url, http_client=http, max_retries=0)
        whole = client.chat.completions.create(model="m", messages=USER)
        streamed = client.chat.completions.create(model="m", messages=USER, stream=True,
                                                  stream_options={"include_usage": True})  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="error-429", messages=USER)
    assert whole.choices[0].message.content == text == ANSWER  # what the application got
    assert encoding.split("-")[0] in server.requests[0]["headers"]["accept-encoding"]  # the client asked for it
    whole_span, stream_span, error_span = spans()
    for span in (whole_span, stream_span):
        a = span.attributes
        assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == USAGE[:2]
        assert list(a[sc.RESPONSE_FINISH_REASONS]) == ["stop"] and a[sc.RESPONSE_ID].startswith("chatcmpl")
        assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": ANSWER}]
        assert span.status.status_code is StatusCode.UNSET and sc.STATUS_REASON not in a
    assert stream_span.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert error_span.attributes[sc.ERROR_TYPE] == "rate_limit_exceeded"
    assert "openai.response_unreadable" not in selfstats.snapshot()


def test_decoders_undo_stacked_encodings_in_any_chunking():
    import gzip
    import zlib

    data = b"data: " + json.dumps({"text": "caf\u00e9 " * 500}).encode() + b"\n\n"
    deflated = zlib.compress(gzip.compress(data))  # gzip applied first, then deflate
    decoder = Decoder("gzip, deflate")
    out = b"".join(decoder.decode(deflated[i : i + 7]) for i in range(0, len(deflated), 7)) + decoder.flush()
    assert out == data
    assert not Decoder("identity") and not Decoder("")
    with pytest.raises(UnsupportedEncoding):
        Decoder("compress")  # LZW: httpx does not read it either


def test_brotli_and_zstandard_bodies_are_read_in_any_chunking_zstd_across_frames():
    import brotli
    import zstandard

    data = b"data: " + json.dumps({"text": "caf\u00e9 " * 500}).encode() + b"\n\n"
    bodies = {
        "br": brotli.compress(data),
        # Two frames, as a server compressing each write separately sends them.
        "zstd": zstandard.ZstdCompressor().compress(data) + zstandard.ZstdCompressor().compress(data),
    }
    for encoding, body in bodies.items():
        expected = data if encoding == "br" else data * 2
        for size in (1, 7, len(body)):
            decoder = Decoder(encoding)
            out = b"".join(decoder.decode(body[i : i + size]) for i in range(0, len(body), size)) + decoder.flush()
            assert out == expected, (encoding, size)


def test_without_the_module_httpx_would_use_the_encoding_is_not_read(monkeypatch):
    from llmobs_openai import decoding

    monkeypatch.setattr(decoding, "_brotli", None)
    monkeypatch.setattr(decoding, "_zstandard", None)
    for encoding in ("br", "zstd", "gzip, br"):
        with pytest.raises(UnsupportedEncoding):
            Decoder(encoding)


def test_an_encoding_that_cannot_be_read_is_counted_and_the_call_still_ends(spans):
    from llmobs import get_recorder

    call = Call(get_recorder().start(sc.OP_CHAT, model="m"), Api.CHAT, capture=True, stream_requested=False)
    call.response(200, httpx.Headers({"content-type": "application/json", "content-encoding": "compress"}))
    call.feed(b"\x8b\x05\x80not json")
    call.complete()
    (span,) = spans()
    assert span.status.status_code is StatusCode.UNSET and sc.OUTPUT_MESSAGES not in span.attributes
    assert selfstats.snapshot()["openai.unsupported_encoding"] == 1


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_environments_proxy_is_used_and_traced(spans, monkeypatch, asynchronous):
    hits = []

    class Proxy(BaseHTTPRequestHandler):  # a forward proxy for plain http that answers by itself
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(self.path)  # the absolute URL: the request came through a proxy
            self.rfile.read(int(self.headers["content-length"]))
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "via proxy"}}
            answer = {"id": "chatcmpl-p", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "http://llm.internal.invalid:8000/v1"  # reachable only through the proxy
    try:
        if asynchronous:
            async def call():
                async with llmobs_openai.async_http_client() as http:
                    c = openai.AsyncOpenAI(api_key="k", base_url=url, http_client=http, max_retries=0)
                    return await c.chat.completions.create(model="m", messages=USER)

            answer = asyncio.run(call())
        else:
            with llmobs_openai.http_client() as http:
                c = openai.OpenAI(api_key="k", base_url=url, http_client=http, max_retries=0)
                answer = c.chat.completions.create(model="m", messages=USER)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert answer.choices[0].message.content == "via proxy"
    assert hits == [f"{url}/chat/completions"]
    (span,) = spans()
    assert span.attributes[sc.RESPONSE_ID] == "chatcmpl-p"
    assert span.attributes[sc.SERVER_ADDRESS] == "llm.internal.invalid"


def test_no_proxy_and_an_explicit_transport_go_direct(monkeypatch, server, spans):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with llmobs_openai.http_client() as http:
        c = openai.OpenAI(api_key="k", base_url=server.base_url, http_client=http, max_retries=0)
        assert c.chat.completions.create(model="m", messages=USER).choices[0].message.content == ANSWER
    assert len(spans()) == 1


def test_a_redirected_call_keeps_its_parent_and_its_request(mock_client, spans):
    message = {"role": "assistant", "content": "ok"}
    ok = {"id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/old/"):
            return httpx.Response(308, headers={"location": "https://gw.example/new/v1/chat/completions"})
        return httpx.Response(200, json=ok)

    client = mock_client(answer, base_url="https://gw.example/old/v1")
    with trace.get_tracer("app").start_as_current_span("request") as root:
        assert client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content == "ok"
    moved, served = [s for s in spans() if s.name == "chat gpt-4o"]
    for span in (moved, served):
        assert span.parent.span_id == root.get_span_context().span_id  # siblings under the application's span
        assert json.loads(span.attributes[sc.INPUT_MESSAGES])[0]["parts"][0]["content"] == "Hello?"
    assert served.attributes[sc.RESPONSE_ID] == "chatcmpl-r"


@pytest.mark.parametrize("where", ["waiting for the answer", "reading the stream"])
def test_a_cancelled_task_cancels_its_call_not_an_error(server, spans, where):
    """The task is cancelled while the transport waits on the server: for the head, or for the next event."""
    started, gate = threading.Event(), threading.Event()
    if where == "reading the stream":
        server.before_event = lambda index: index == 2 and gate.wait(5)
    else:
        original = server.answer
        server.answer = lambda path, body: gate.wait(5) and original(path, body)

    async def main():
        async with llmobs_openai.async_http_client() as http:
            c = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, http_client=http, max_retries=0)

            async def call():
                started.set()
                stream = await c.chat.completions.create(model="m", messages=USER, stream=True)
                async for _ in stream:
                    pass

            task = asyncio.create_task(call())
            while not started.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the call is now waiting on the server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    try:
        asyncio.run(main())
    finally:
        gate.set()
    (span,) = spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.STATUS_REASON] == "cancelled" and sc.ERROR_TYPE not in span.attributes
