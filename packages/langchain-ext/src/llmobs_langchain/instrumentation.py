"""Process-wide tracing of every LangChain run through LangChain's own configure hook, without patching.

``langchain_core.tracers.context.register_configure_hook`` is LangChain's public way to add a handler
to every run: each time a callback manager is configured, LangChain reads the hook's "context var" and
adds what it holds. We register once, with a switch in place of a real ``ContextVar``: LangChain only
calls ``.get()`` on it, and a ``ContextVar`` can neither be seen from threads the application starts
itself (when only ``set()`` in one context) nor be turned off everywhere again (when given a default),
while the switch is one process-wide read. Registering with ``handle_class=LLMObsCallbackHandler``
makes LangChain skip the global handler for a run that already has an llmobs handler passed
explicitly, so a run traced both ways gives one span.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from langchain_core.tracers.context import register_configure_hook

from llmobs import config
from llmobs_langchain.handler import FRAMEWORK, LLMObsCallbackHandler

#: Setting this environment variable to true instruments LangChain when ``llmobs_langchain`` is imported.
ENV_VAR = "LLMOBS_LANGCHAIN"
_TRUE = frozenset({"1", "true", "yes", "on"})


class _GlobalSwitch:
    """What LangChain's configure hook reads: the global handler while instrumented, else None."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: LLMObsCallbackHandler | None = None

    def get(self, default: Any = None) -> LLMObsCallbackHandler | None:
        handler = self.handler
        if handler is None or not config.current().integration_enabled(FRAMEWORK):
            return default
        return handler


_switch = _GlobalSwitch()
_lock = threading.Lock()
_registered = False


def instrument() -> LLMObsCallbackHandler:
    """Trace every LangChain run in the process from now on (idempotent); returns the global handler.

    Runs that ``LLMOBS_DISABLE=langchain`` (or ``disabled_integrations``) turns off are not traced.
    """
    global _registered
    with _lock:
        if not _registered:
            register_configure_hook(cast(Any, _switch), True, LLMObsCallbackHandler)
            _registered = True
        if _switch.handler is None:
            _switch.handler = LLMObsCallbackHandler()
        return _switch.handler


def uninstrument() -> None:
    """Stop adding the global handler to new runs; runs already in flight still end their spans."""
    with _lock:
        _switch.handler = None


def is_instrumented() -> bool:
    return _switch.handler is not None


def instrument_from_environment() -> bool:
    """Instrument if ``LLMOBS_LANGCHAIN`` is true; returns whether it did."""
    if os.environ.get(ENV_VAR, "").strip().lower() in _TRUE:
        instrument()
        return True
    return False
