from llmobs_dify.endpoints import FeedbackEndpoint

__all__ = ["FeedbackEndpoint"]
