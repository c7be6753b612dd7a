"""llmobs: low-cost, full-chain observability for LLM applications on OpenTelemetry."""

__version__ = "0.1.0"
