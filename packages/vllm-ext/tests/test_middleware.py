"""TraceMiddleware and the bounded request-context map."""

from __future__ import annotations

import asyncio

import pytest

from llmobs import semconv as sc
from llmobs_vllm import TraceMiddleware
from llmobs_vllm._contexts import RequestContext, RequestContexts

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class App:
    """An ASGI app that records the scope it was called with."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[dict] = []
        self.fail = fail

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        if self.fail:
            raise RuntimeError("boom")


def call(middleware, path="/v1/chat/completions", method="POST", headers=(), kind="http"):
    scope = {"type": kind, "method": method, "path": path, "headers": list(headers)}
    asyncio.run(middleware(scope, None, None))
    return scope


def header(scope, name: bytes):
    return [v.decode() for k, v in scope["headers"] if k == name]


def test_adds_a_request_id_and_stores_the_context():
    app, contexts = App(), RequestContexts()
    call(TraceMiddleware(app, contexts), headers=[(b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"k=v")])
    (seen,) = app.scopes
    (request_id,) = header(seen, b"x-request-id")
    assert len(request_id) == 32 and int(request_id, 16) >= 0  # uuid4().hex, the form vLLM makes itself
    context = contexts.lookup(f"chatcmpl-{request_id}")
    assert context == RequestContext(TRACEPARENT, "k=v", sc.OP_CHAT)
    assert context.carrier == {"traceparent": TRACEPARENT, "tracestate": "k=v"}


def test_keeps_the_clients_request_id():
    app, contexts = App(), RequestContexts()
    call(TraceMiddleware(app, contexts), path="/v1/completions", headers=[(b"x-request-id", b"my-client-req-1")])
    assert header(app.scopes[0], b"x-request-id") == ["my-client-req-1"]
    assert contexts.lookup("cmpl-my-client-req-1-0").operation == sc.OP_TEXT_COMPLETION
    assert contexts.lookup("cmpl-my-client-req-1-1").carrier is None


def test_an_empty_request_id_is_replaced_and_a_repeated_one_read_first():
    app, contexts = App(), RequestContexts()
    middleware = TraceMiddleware(app, contexts)
    call(middleware, headers=[(b"x-request-id", b""), (b"traceparent", TRACEPARENT.encode())])
    (request_id,) = header(app.scopes[0], b"x-request-id")  # one header, ours: vLLM reads the first
    assert request_id and contexts.lookup(f"chatcmpl-{request_id}").carrier["traceparent"] == TRACEPARENT
    call(middleware, headers=[(b"x-request-id", b"first"), (b"x-request-id", b"second")])
    assert contexts.lookup("chatcmpl-first") is not None and contexts.lookup("chatcmpl-second") is None


@pytest.mark.parametrize(("path", "operation"), [("/v1/embeddings", "embeddings"), ("/v2/embed", "embeddings")])
def test_embeddings_routes(path, operation):
    contexts = RequestContexts()
    call(TraceMiddleware(App(), contexts), path=path, headers=[(b"x-request-id", b"e1")])
    assert contexts.lookup("embd-e1").operation == operation
    assert contexts.lookup("embd-e1-prompt-3").operation == operation


def test_other_requests_pass_through_untouched():
    app, contexts = App(), RequestContexts()
    middleware = TraceMiddleware(app, contexts)
    for kwargs in ({"method": "GET", "path": "/metrics"}, {"path": "/tokenize"}, {"kind": "websocket"}):
        scope = call(middleware, **kwargs)
        assert app.scopes[-1] is scope and header(scope, b"x-request-id") == []
    assert len(contexts) == 0


def test_unknown_route_with_a_traceparent_keeps_only_the_trace_context():
    contexts = RequestContexts()
    call(TraceMiddleware(App(), contexts), path="/v1/responses",
         headers=[(b"x-request-id", b"r1"), (b"traceparent", TRACEPARENT.encode())])
    assert contexts.lookup("resp-r1") == RequestContext(TRACEPARENT, None, None)


def test_response_end_starts_the_grace_period_even_on_error():
    contexts = RequestContexts(grace_s=0.0)
    with pytest.raises(RuntimeError):
        call(TraceMiddleware(App(fail=True), contexts), headers=[(b"x-request-id", b"a")])
    assert contexts.get("a") is not None  # still there: the finished stats may come after the response
    contexts.put("b", RequestContext(None, None, "chat"))
    assert contexts.get("a") is None  # ended and past its grace: evicted by the next insert


def test_map_is_bounded():
    contexts = RequestContexts(capacity=3)
    for i in range(10):
        contexts.put(f"r{i}", RequestContext(None, None, "chat"))
    assert len(contexts) == 3 and contexts.get("r9") and contexts.get("r6") is None


def test_active_entries_survive_ended_ones_expire_in_order():
    contexts = RequestContexts(capacity=10, grace_s=3600)
    contexts.put("long", RequestContext(None, None, "chat"))
    contexts.put("short", RequestContext(None, None, "chat"))
    contexts.done("short")
    contexts.put("next", RequestContext(None, None, "chat"))
    assert len(contexts) == 3  # within grace and capacity: nothing evicted


@pytest.mark.parametrize(
    ("request_id", "found"),
    [("abc", True), ("chatcmpl-abc", True), ("cmpl-abc-12", True), ("embd-abc-prompt-0", True),
     ("embd-abc-prompt-0-chunk-1", True), ("embd-abc-prompt-3-chunk-12", True), ("embd-abc-chunk-1", False),
     ("cmpl-abcd-0", False), ("chatcmpl-", False), ("", False), (None, False), ("xyz", False)],
)
def test_lookup_forms(request_id, found):
    contexts = RequestContexts()
    contexts.put("abc", RequestContext(None, None, "chat"))
    assert (contexts.lookup(request_id) is not None) is found


def test_client_ids_with_dashes():
    contexts = RequestContexts()
    contexts.put("my-client-req-1", RequestContext(None, None, "chat"))
    assert contexts.lookup("chatcmpl-my-client-req-1") is not None
    assert contexts.lookup("cmpl-my-client-req-1-0") is not None
