from llmobs_dify.endpoints import ArmsTracesEndpoint

__all__ = ["ArmsTracesEndpoint"]
