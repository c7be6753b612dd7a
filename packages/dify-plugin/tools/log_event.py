from llmobs_dify.tools import LogEventTool

__all__ = ["LogEventTool"]
