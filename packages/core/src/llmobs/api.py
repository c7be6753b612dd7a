"""The small user-facing API for custom spans: ``with llmobs.span(...)`` and ``@llmobs.trace``.

Both sit on the recorder. Unlike framework handles, a custom span is made current in the OTel context
for its duration, so framework runs and nested custom spans inside it become its children.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from llmobs import semconv as sc
from llmobs.recorder import SpanHandle, get_recorder

F = TypeVar("F", bound=Callable[..., Any])
_INTERRUPTS = (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError)


@contextmanager
def span(
    name: str,
    operation: str = sc.OP_CHAIN,
    *,
    input: Any = None,
    session_id: str | None = None,
    user_id: str | None = None,
    parent: Any = None,
    **start_options: Any,
) -> Iterator[SpanHandle]:
    """Trace a block as a span (a chain step by default; pass ``operation=`` for another GenAI kind).

    An exception leaving the block marks the span as an error and propagates unchanged; an interrupt
    (cancellation, KeyboardInterrupt) ends it as cancelled, not as an error.
    """
    handle = get_recorder().start(
        operation, name, parent=parent, session_id=session_id, user_id=user_id, **start_options
    )
    if input is not None:
        handle.set_input(value=input)
    token = otel_context.attach(handle.context)
    try:
        yield handle
    except _INTERRUPTS:
        handle.end(cancelled=True, reason="interrupted")
        raise
    except BaseException as exc:
        handle.end(exc)
        raise
    else:
        handle.end()
    finally:
        otel_context.detach(token)


def trace(name: str | None = None, *, operation: str = sc.OP_CHAIN, capture: bool = True) -> Callable[[F], F]:
    """Decorate a function or coroutine function so each call is a span named after it.

    With ``capture`` the call's arguments and return value are recorded as the span's input and output
    (serialised lazily under the content policy).
    """

    def decorate(func: F) -> F:
        span_name = name or func.__qualname__
        signature = inspect.signature(func)

        def arguments(args: tuple, kwargs: dict) -> Any:
            if not capture:
                return None
            try:
                bound = signature.bind_partial(*args, **kwargs)
                return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            except TypeError:
                return {"args": args, "kwargs": kwargs}

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with span(span_name, operation, input=arguments(args, kwargs)) as handle:
                    result = await func(*args, **kwargs)
                    if capture:
                        handle.set_output(value=result)
                    return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(span_name, operation, input=arguments(args, kwargs)) as handle:
                result = func(*args, **kwargs)
                if capture:
                    handle.set_output(value=result)
                return result

        return wrapper  # type: ignore[return-value]

    return decorate
