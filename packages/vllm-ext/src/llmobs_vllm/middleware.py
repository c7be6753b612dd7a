"""ASGI middleware for ``vllm serve --middleware llmobs_vllm.TraceMiddleware``.

A stat logger never sees HTTP headers, so this middleware, running in the same API-server process,
tells it two things per generation request: the client's W3C trace context (``traceparent`` /
``tracestate``) and the operation its route stands for (chat, text_completion, embeddings). The
link between the HTTP request and the engine's request is vLLM's request id: vLLM builds it from the
``X-Request-Id`` header when one is sent (``BaseServing._base_request_id``: ``chatcmpl-<id>``,
``cmpl-<id>-<prompt index>``, ``embd-<id>``). The middleware keeps a client's ``X-Request-Id``
untouched and adds a random one (``uuid4().hex``, the form vLLM generates itself) to requests that
have none, then stores the context under that id in the bounded process-wide map
(:data:`llmobs_vllm._contexts.CONTEXTS`).

It reads headers only (never the body), does no I/O, and passes every other request straight through.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_vllm._contexts import CONTEXTS, RequestContext, RequestContexts

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

#: OpenAI-compatible routes and the GenAI operation each stands for.
ROUTES: dict[str, str] = {
    "/v1/chat/completions": sc.OP_CHAT,
    "/v1/completions": sc.OP_TEXT_COMPLETION,
    "/v1/embeddings": sc.OP_EMBEDDINGS,
    "/v2/embed": sc.OP_EMBEDDINGS,
}

_REQUEST_ID = b"x-request-id"
_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"


class TraceMiddleware:
    """Carries the client's trace context and the route's operation to :class:`LLMObsStatLogger`."""

    def __init__(self, app: ASGIApp, contexts: RequestContexts | None = None) -> None:
        self.app = app
        self.contexts = contexts if contexts is not None else CONTEXTS

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        key = None
        if scope.get("type") == "http" and scope.get("method") == "POST":
            try:
                scope, key = self._register(scope)
            except Exception as exc:
                selfstats.failure("vllm.middleware_failed", exc)
        if key is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.contexts.done(key)

    def _register(self, scope: Scope) -> tuple[Scope, str | None]:
        operation = ROUTES.get(scope.get("path") or "")
        request_id = traceparent = tracestate = None
        headers = scope.get("headers") or []
        for name, value in headers:  # the first of a repeated header, as vLLM (Starlette) reads it
            if name == _REQUEST_ID:
                request_id = value.decode("latin-1") if request_id is None else request_id
            elif name == _TRACEPARENT:
                traceparent = value.decode("latin-1") if traceparent is None else traceparent
            elif name == _TRACESTATE:
                tracestate = value.decode("latin-1") if tracestate is None else tracestate
        if operation is None and traceparent is None:
            return scope, None  # nothing to tell the logger
        if not request_id:  # none, or empty: ours replaces it, so that vLLM reads the id we keep
            request_id = uuid.uuid4().hex
            scope = dict(scope)
            kept = [h for h in headers if h[0] != _REQUEST_ID]
            scope["headers"] = [*kept, (_REQUEST_ID, request_id.encode("latin-1"))]
        self.contexts.put(request_id, RequestContext(traceparent, tracestate, operation))
        return scope, request_id
