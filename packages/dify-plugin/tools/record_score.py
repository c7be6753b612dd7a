from llmobs_dify.tools import RecordScoreTool

__all__ = ["RecordScoreTool"]
