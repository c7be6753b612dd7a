"""The small user-facing API for custom spans: ``with llmobs.span(...)`` and ``@llmobs.trace``.

Both sit on the recorder. Unlike framework handles, a custom span is made current in the OTel context
while its code runs, so framework runs and nested custom spans inside it become its children.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.recorder import SpanHandle, get_recorder

F = TypeVar("F", bound=Callable[..., Any])
_Start = Callable[[tuple, dict], SpanHandle]


class CustomSpan:
    """What ``llmobs.span(...)`` returns: a context manager, and a decorator making a span per call."""

    def __init__(self, name: str, operation: str, input: Any, options: dict[str, Any]) -> None:
        self._name, self._operation, self._input, self._options = name, operation, input, options
        self._open: list[Any] = []  # one entry per active ``with``, so the same object nests

    def _start(self, args: tuple = (), kwargs: dict | None = None) -> SpanHandle:
        handle = get_recorder().start(self._operation, self._name, **self._options)
        if self._input is not None:
            handle.set_input(value=self._input)
        return handle

    def __enter__(self) -> SpanHandle:
        block = _current(self._start())
        handle = block.__enter__()
        self._open.append(block)
        return handle

    def __exit__(self, *exc_info: Any) -> None:
        self._open.pop().__exit__(*exc_info)

    def __call__(self, func: F) -> F:
        return _wrap(func, self._start, capture=False)


def span(
    name: str,
    operation: str = sc.OP_CHAIN,
    *,
    input: Any = None,
    session_id: str | None = None,
    user_id: str | None = None,
    parent: Any = None,
    **start_options: Any,
) -> CustomSpan:
    """Trace a block as a span (a chain step by default; pass ``operation=`` for another GenAI kind).

    An exception leaving the block marks the span as an error and propagates unchanged; an interrupt
    (cancellation, KeyboardInterrupt) ends it as cancelled, not as an error. Used as a decorator, each
    call is a span, as with ``trace`` (without capturing arguments).
    """
    options = dict(start_options, parent=parent, session_id=session_id, user_id=user_id)
    return CustomSpan(name, operation, input, options)


@overload
def trace(name: F, *, operation: str = ..., capture: bool = ...) -> F: ...


@overload
def trace(name: str | None = None, *, operation: str = ..., capture: bool = ...) -> Callable[[F], F]: ...


def trace(name: Any = None, *, operation: str = sc.OP_CHAIN, capture: bool = True) -> Any:
    """Decorate a callable so each call is a span named after it.

    Works bare (``@llmobs.trace``) as well as called (``@llmobs.trace()``, ``@llmobs.trace("name")``): a
    callable given in place of the name is the function to decorate, so a forgotten ``()`` cannot
    silently turn the function into a decorator. Coroutine functions are traced over the await,
    generator and async generator functions from their first step to their end (their return value is
    the output; yielded items are not kept). With ``capture`` the call's arguments and return value are
    recorded as the span's input and output (serialised lazily under the content policy). Decorating
    never raises: what cannot be traced is returned unchanged.
    """
    if callable(name) and not isinstance(name, str):  # bare ``@llmobs.trace``
        return _decorator(None, operation, capture)(name)
    return _decorator(name, operation, capture)


def _decorator(name: str | None, operation: str, capture: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        try:
            signature = _signature(func)
            span_name = name or _name_of(func)

            def start(args: tuple, kwargs: dict) -> SpanHandle:
                handle = get_recorder().start(operation, span_name)
                if capture:
                    handle.set_input(value=_arguments(signature, args, kwargs))
                return handle

            return _wrap(func, start, capture)
        except Exception as exc:
            selfstats.failure("api.decorate_failed", exc)
            return func

    return decorate


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # builtins without one
        return None


def _name_of(func: Any) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__qualname__


def _arguments(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> Any:
    if signature is not None:
        try:
            bound = signature.bind_partial(*args, **kwargs)
            return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
        except TypeError:
            pass
    return {"args": args, "kwargs": kwargs}


@contextmanager
def _current(handle: SpanHandle) -> Iterator[SpanHandle]:
    """The handle current in the OTel context over a block, ended when the block leaves."""
    token = otel_context.attach(handle.context)
    try:
        yield handle
    except BaseException as exc:
        handle.end(exc)
        raise
    else:
        handle.end()
    finally:
        otel_context.detach(token)


def _within(handle: SpanHandle, step: Callable[..., Any], *args: Any) -> Any:
    """One step of a generator with its span current, and only that step: the consumer is not a child."""
    token = otel_context.attach(handle.context)
    try:
        return step(*args)
    finally:
        otel_context.detach(token)


async def _awithin(handle: SpanHandle, step: Awaitable[Any]) -> Any:
    token = otel_context.attach(handle.context)
    try:
        return await step
    finally:
        otel_context.detach(token)


def _wrap(func: F, start: _Start, capture: bool) -> F:
    if inspect.isasyncgenfunction(func):
        return _traced_async_generator(func, start)  # type: ignore[return-value]
    if inspect.isgeneratorfunction(func):
        return _traced_generator(func, start, capture)  # type: ignore[return-value]
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _current(start(args, kwargs)) as handle:
                result = await func(*args, **kwargs)
                if capture:
                    handle.set_output(value=result)
                return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _current(start(args, kwargs)) as handle:
            result = func(*args, **kwargs)
            if capture:
                handle.set_output(value=result)
            return result

    return wrapper  # type: ignore[return-value]


def _traced_generator(func: Callable[..., Generator], start: _Start, capture: bool) -> Callable[..., Generator]:
    """Each run a span from its first step to its end; closed early (or collected), it ends as cancelled."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator:
        handle = start(args, kwargs)
        try:
            inner = func(*args, **kwargs)
            step, arg = inner.send, None
            while True:
                try:
                    item = _within(handle, step, arg)
                except StopIteration as stop:
                    result = stop.value
                    break
                try:
                    arg, step = (yield item), inner.send
                except GeneratorExit:
                    _within(handle, inner.close)
                    raise
                except BaseException as exc:  # thrown in by the consumer: the inner generator decides
                    step, arg = inner.throw, exc
        except BaseException as exc:
            handle.end(exc)
            raise
        if capture and result is not None:
            handle.set_output(value=result)
        handle.end()
        return result

    return wrapper


def _traced_async_generator(func: Callable[..., AsyncGenerator], start: _Start) -> Callable[..., AsyncGenerator]:
    """As ``_traced_generator``, for ``async def`` with ``yield`` (which returns nothing)."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator:
        handle = start(args, kwargs)
        try:
            inner = func(*args, **kwargs)
            step, arg = inner.asend, None
            while True:
                try:
                    item = await _awithin(handle, step(arg))
                except StopAsyncIteration:
                    break
                try:
                    arg, step = (yield item), inner.asend
                except GeneratorExit:
                    await _awithin(handle, inner.aclose())
                    raise
                except BaseException as exc:
                    step, arg = inner.athrow, exc
        except BaseException as exc:
            handle.end(exc)
            raise
        handle.end()

    return wrapper
