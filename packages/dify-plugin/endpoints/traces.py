from llmobs_dify.endpoints import TracesEndpoint

__all__ = ["TracesEndpoint"]
