"""llmobs for LangChain and LangGraph: runs traced as OpenTelemetry GenAI spans through LangChain's callbacks.

``LLMObsCallbackHandler()`` in a run's ``callbacks`` traces that run; ``instrument()`` traces every run
in the process (``LLMOBS_LANGCHAIN=true`` does the same when this package is imported, and
``python -m llmobs_langchain app.py`` runs an unchanged application with it); ``uninstrument()`` stops.
"""

from llmobs import __version__ as core_version
from llmobs_langchain.handler import LLMObsCallbackHandler
from llmobs_langchain.instrumentation import instrument, instrument_from_environment, is_instrumented, uninstrument

__all__ = ["LLMObsCallbackHandler", "core_version", "instrument", "is_instrumented", "uninstrument"]

instrument_from_environment()
