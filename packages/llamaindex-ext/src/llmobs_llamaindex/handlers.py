"""The span and event handlers registered on LlamaIndex's root dispatcher.

They are thin: every callback goes through :func:`fail_open` — the one place where the integration
meets LlamaIndex — and on to the shared :class:`~llmobs_llamaindex.tracker.Tracker`. The base class's
own ``open_spans`` bookkeeping is not used (every hook returns None), so nothing accumulates there.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

from llmobs import selfstats
from llmobs_llamaindex.tracker import Tracker

F = TypeVar("F", bound=Callable[..., Any])


def fail_open(default: Any = None) -> Callable[[F], F]:
    """Never let the integration raise into LlamaIndex (which would swallow it silently): count and log once."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                selfstats.failure("llamaindex.handler_failed", exc)
                return default() if callable(default) else default

        return guarded  # type: ignore[return-value]

    return decorate


class SpanHandler(BaseSpanHandler[BaseSpan]):
    """Starts, ends and parents runs from LlamaIndex spans; carries the traceparent across processes."""

    tracker: Any = None  # a plain field: reading a pydantic private attribute costs microseconds per call

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    @classmethod
    def class_name(cls) -> str:
        return "LLMObsSpanHandler"

    @fail_open()
    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.enter(id_, bound_args.arguments, instance, parent_span_id, tags)

    @fail_open()
    def prepare_to_exit_span(
        self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        self.tracker.exit(id_, instance, result)

    @fail_open()
    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.drop(id_, err)

    @fail_open(default=dict)
    def capture_propagation_context(self) -> dict[str, Any]:
        return self.tracker.capture()

    @fail_open()
    def restore_propagation_context(self, context: dict[str, Any]) -> None:
        self.tracker.restore(context)

    @fail_open()
    def close(self) -> None:
        self.tracker.close("dispatcher shutdown")


class EventHandler(BaseEventHandler):
    """Hands LlamaIndex events to the run they belong to."""

    tracker: Any = None

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    @classmethod
    def class_name(cls) -> str:
        return "LLMObsEventHandler"

    @fail_open()
    def handle(self, event: Any, **kwargs: Any) -> None:
        self.tracker.event(event)
