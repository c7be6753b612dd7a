from llmobs_dify.tools import LLMObsToolProvider

__all__ = ["LLMObsToolProvider"]
