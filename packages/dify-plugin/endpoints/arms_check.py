from llmobs_dify.endpoints import ArmsCheckEndpoint

__all__ = ["ArmsCheckEndpoint"]
