from llmobs_dify.tools import RecordFeedbackTool

__all__ = ["RecordFeedbackTool"]
