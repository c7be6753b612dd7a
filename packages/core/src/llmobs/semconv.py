"""Every attribute, span, metric and event name llmobs emits — and nowhere else.

OpenTelemetry GenAI semantic conventions (latest experimental) are primary. The Alibaba ARMS /
LoongSuite extensions are emitted alongside so ARMS dashboards work unchanged, and llmobs' own
extras live under ``llmobs.*``. ``tests/test_semconv_registry.py`` checks every ``gen_ai.*`` name
here against the registry shipped in ``opentelemetry-semantic-conventions`` or against
:data:`GEN_AI_EXTENSIONS`, the documented list of names that registry does not (yet) carry.

Metrics outside the GenAI registry start with ``llmobs.``, except the vLLM engine metrics, which start
with ``vllm.``: they describe the serving engine itself (scheduler, KV cache, engine phases), not
llmobs, and sit under the engine's own name as the GenAI conventions do for system-specific metrics.
Prometheus renders them ``vllm_*``, so they never clash with vLLM's own ``vllm:*`` families.
"""

from __future__ import annotations

from typing import Final

# --- OTel GenAI: operation, provider, model ----------------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
REQUEST_ID: Final = "gen_ai.request.id"  # a serving engine's request id (vLLM's llm_request span carries it)
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"  # double, seconds
OUTPUT_TYPE: Final = "gen_ai.output.type"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
PROMPT_NAME: Final = "gen_ai.prompt.name"
WORKFLOW_NAME: Final = "gen_ai.workflow.name"

# --- OTel GenAI: request parameters ------------------------------------------------------------
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_TOP_K: Final = "gen_ai.request.top_k"
REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
REQUEST_SEED: Final = "gen_ai.request.seed"
REQUEST_STREAM: Final = "gen_ai.request.stream"
REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
EMBEDDINGS_INPUT_COUNT: Final = "llmobs.embeddings.input_count"  # texts embedded in one call

# --- OTel GenAI: usage ---------------------------------------------------------------------------
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"  # the new name, emitted too
USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- OTel GenAI: content (opt-in) ----------------------------------------------------------------
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"

# --- OTel GenAI: agents, tools, retrieval --------------------------------------------------------
AGENT_ID: Final = "gen_ai.agent.id"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
AGENT_VERSION: Final = "gen_ai.agent.version"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
RETRIEVAL_QUERY_TEXT: Final = "gen_ai.retrieval.query.text"
RETRIEVAL_DOCUMENTS: Final = "gen_ai.retrieval.documents"
RERANK_DOCUMENTS_COUNT: Final = "gen_ai.rerank.documents.count"  # LoongSuite: documents given to a reranker

# --- OTel GenAI: evaluation event ----------------------------------------------------------------
EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
EVALUATION_NAME: Final = "gen_ai.evaluation.name"
EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
EVENT_INFERENCE_DETAILS: Final = "gen_ai.client.inference.operation.details"

# --- General OTel attributes used on GenAI spans -------------------------------------------------
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"  # on calls an HTTP API answered with an error
SERVICE_NAME: Final = "service.name"
EVENT_EXCEPTION: Final = "exception"  # the span event record_exception() adds
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
EXCEPTION_ESCAPED: Final = "exception.escaped"
EVENT_NAME: Final = "event.name"  # a log record's event name, on SDKs whose log records lack the field

# --- ARMS / LoongSuite extensions ----------------------------------------------------------------
SPAN_KIND: Final = "gen_ai.span.kind"
SESSION_ID: Final = "gen_ai.session.id"
USER_ID: Final = "gen_ai.user.id"
USAGE_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"
RESPONSE_TIME_TO_FIRST_TOKEN_NS: Final = "gen_ai.response.time_to_first_token"  # int, nanoseconds
USER_TIME_TO_FIRST_TOKEN_NS: Final = "gen_ai.user.time_to_first_token"  # int, ns, on the entry span
FRAMEWORK: Final = "gen_ai.framework"
INPUT_VALUE: Final = "input.value"  # ARMS/OpenInference generic input on CHAIN spans
OUTPUT_VALUE: Final = "output.value"

# --- llmobs extras --------------------------------------------------------------------------------
COST_USD: Final = "llmobs.cost.usd"
COST_INPUT_USD: Final = "llmobs.cost.input_usd"
COST_OUTPUT_USD: Final = "llmobs.cost.output_usd"
SAMPLING_REASON: Final = "llmobs.sampling.reason"
SAMPLING_ADJUSTED_COUNT: Final = "llmobs.sampling.adjusted_count"
SAMPLING_FORCE: Final = "llmobs.sampling.force"  # set on a span to keep its trace, with who asked
DROPPED_ATTRIBUTES: Final = "llmobs.dropped.attributes"
TRUNCATED_ATTRIBUTES: Final = "llmobs.truncated.attributes"
COMPONENT_NAME: Final = "llmobs.component.name"
STATUS_REASON: Final = "llmobs.status.reason"
PARTIAL: Final = "llmobs.partial"  # bool: the span had not ended when its process shut down
RETRY_ATTEMPT: Final = "llmobs.retry.attempt"  # int, 1-based attempt of a retried operation
EVENT_RETRY: Final = "llmobs.retry"  # span event: a framework retries the operation (attempt, error.type)
EVENT_AGENT_ACTION: Final = "llmobs.agent.action"  # span event: an agent chose a tool (tool name, arguments)
EVENT_AGENT_FINISH: Final = "llmobs.agent.finish"  # span event: an agent produced its final answer
EVENT_DATA: Final = "llmobs.event.data"  # payload of a framework's custom span event (content)
USAGE_SOURCE: Final = "llmobs.usage.source"  # set when token counts did not come from the provider:
USAGE_SOURCE_ESTIMATE: Final = "estimate"  # counted by the framework (Promptflow's tiktoken count of a stream)
USAGE_SOURCE_NONE: Final = "none"  # no counts at all (a stream Promptflow could not count): none invented

# --- llmobs analyze: results written back as gen_ai.evaluation.result events ----------------------
EVALUATION_SOURCE: Final = "llmobs.evaluation.source"  # who wrote an evaluation event (re-runs replace their own)
EVALUATION_SOURCE_ANALYZE: Final = "llmobs.analyze"
EVALUATION_EVALUATOR: Final = "llmobs.evaluation.evaluator"  # the evaluator (plugin) that produced the result
# Score convention: 1.0 passes, 0.0 fails (a judge may give anything between); labels below.
EVAL_LABEL_PASS: Final = "pass"
EVAL_LABEL_FAIL: Final = "fail"
# Built-in quality evaluations (values of gen_ai.evaluation.name).
EVAL_EMPTY_OUTPUT: Final = "empty_output"
EVAL_REFUSAL: Final = "refusal"
EVAL_TRUNCATION: Final = "truncation"
EVAL_REPETITION: Final = "repetition"
EVAL_INVALID_JSON: Final = "invalid_json"
EVAL_LANGUAGE_MISMATCH: Final = "language_mismatch"
EVAL_IRRELEVANT_RETRIEVAL: Final = "irrelevant_retrieval"
EVAL_LLM_JUDGE: Final = "llm_judge"
QUALITY_EVALUATIONS: Final = (
    EVAL_EMPTY_OUTPUT,
    EVAL_REFUSAL,
    EVAL_TRUNCATION,
    EVAL_REPETITION,
    EVAL_INVALID_JSON,
    EVAL_LANGUAGE_MISMATCH,
    EVAL_IRRELEVANT_RETRIEVAL,
)
# Analysis results that are not quality scores: the failure's problem class and the span's topic cluster.
EVAL_PROBLEM_CLASS: Final = "problem_class"
EVAL_TOPIC: Final = "topic"
# Problem classes of failed spans (labels of EVAL_PROBLEM_CLASS events).
PROBLEM_RATE_LIMIT: Final = "rate_limit"
PROBLEM_TIMEOUT: Final = "timeout"
PROBLEM_AUTHENTICATION: Final = "authentication"
PROBLEM_CONTEXT_LENGTH: Final = "context_length_exceeded"
PROBLEM_CONTENT_FILTER: Final = "content_filter"
PROBLEM_TOOL_ERROR: Final = "tool_error"
PROBLEM_OUTPUT_PARSE: Final = "output_parse_error"
PROBLEM_NETWORK: Final = "network"
PROBLEM_OTHER: Final = "other"
PROBLEM_CLASSES: Final = (
    PROBLEM_RATE_LIMIT,
    PROBLEM_TIMEOUT,
    PROBLEM_AUTHENTICATION,
    PROBLEM_CONTEXT_LENGTH,
    PROBLEM_CONTENT_FILTER,
    PROBLEM_TOOL_ERROR,
    PROBLEM_OUTPUT_PARSE,
    PROBLEM_NETWORK,
    PROBLEM_OTHER,
)
OUTPUT_TYPE_JSON: Final = "json"  # gen_ai.output.type value: the caller asked for JSON
#: Finish reasons that mean the output was cut at the token limit (OpenAI/vLLM, Anthropic, Gemini, Bedrock).
FINISH_REASONS_TRUNCATED: Final = frozenset({"length", "max_tokens", "MAX_TOKENS", "model_length"})

# --- vLLM engine (llmobs-vllm): attributes of per-request spans and metric points ----------------
VLLM_ENGINE_INDEX: Final = "vllm.engine.index"  # int: the data-parallel engine that ran the request
VLLM_FINISH_REASON: Final = "vllm.request.finish_reason"  # stop, length, abort, error, repetition
VLLM_REJECTION_REASON: Final = "vllm.rejection.reason"  # why the frontend refused a request (admission)
VLLM_QUEUE_TIME: Final = "vllm.request.queue_time"  # double, s: queued until first scheduled
VLLM_PREFILL_TIME: Final = "vllm.request.prefill_time"  # double, s: first scheduled until first token
VLLM_DECODE_TIME: Final = "vllm.request.decode_time"  # double, s: first token until last token
VLLM_INFERENCE_TIME: Final = "vllm.request.inference_time"  # double, s: first scheduled until last token
VLLM_TIME_PER_OUTPUT_TOKEN: Final = "vllm.request.time_per_output_token"  # double, s, after the first token
VLLM_PREEMPTIONS: Final = "vllm.request.preemptions"  # int: times the scheduler preempted the request
VLLM_REQUEST_SPAN: Final = "llm_request"  # the name of vLLM's own per-request span (its OTLP tracing)

# Every gen_ai.* name above that the installed OTel registry does not define, with why we emit it.
GEN_AI_EXTENSIONS: Final[dict[str, str]] = {
    SPAN_KIND: "ARMS/LoongSuite span kind attribute (LLM, CHAIN, AGENT, ...)",
    SESSION_ID: "ARMS/LoongSuite session id",
    USER_ID: "ARMS/LoongSuite end-user id",
    USAGE_TOTAL_TOKENS: "ARMS/LoongSuite input + output tokens",
    RESPONSE_TIME_TO_FIRST_TOKEN_NS: "ARMS/LoongSuite TTFT on LLM spans, integer nanoseconds",
    USER_TIME_TO_FIRST_TOKEN_NS: "ARMS/LoongSuite whole-request TTFT on the entry span, integer nanoseconds",
    FRAMEWORK: "ARMS/LoongSuite framework name",
    USAGE_CACHE_WRITE_INPUT_TOKENS: "GenAI draft rename of cache_creation.input_tokens (both are emitted)",
    EVENT_INFERENCE_DETAILS: "GenAI opt-in event name (registry lists events separately)",
    EVENT_EVALUATION_RESULT: "GenAI evaluation event name (registry lists events separately)",
    RERANK_DOCUMENTS_COUNT: "LoongSuite reranker input document count",
    REQUEST_ID: "vLLM's request id on its llm_request span: the key that joins llmobs-vllm data to vLLM traces",
}

# --- Operation names (gen_ai.operation.name) -----------------------------------------------------
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_GENERATE_CONTENT: Final = "generate_content"
OP_EMBEDDINGS: Final = "embeddings"
OP_RETRIEVAL: Final = "retrieval"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CREATE_AGENT: Final = "create_agent"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_RERANK: Final = "rerank_documents"  # LoongSuite extended value
OP_CHAIN: Final = "chain"  # llmobs: a framework step with no GenAI operation (chain, node, task)

# --- Span kinds (gen_ai.span.kind, ARMS) ---------------------------------------------------------
KIND_LLM: Final = "LLM"
KIND_CHAIN: Final = "CHAIN"
KIND_AGENT: Final = "AGENT"
KIND_TOOL: Final = "TOOL"
KIND_RETRIEVER: Final = "RETRIEVER"
KIND_EMBEDDING: Final = "EMBEDDING"
KIND_RERANKER: Final = "RERANKER"
KIND_TASK: Final = "TASK"
SPAN_KINDS: Final = (
    KIND_LLM,
    KIND_CHAIN,
    KIND_AGENT,
    KIND_TOOL,
    KIND_RETRIEVER,
    KIND_EMBEDDING,
    KIND_RERANKER,
    KIND_TASK,
)

#: Operation and provider values we emit that the OTel registry's enums do not list, with why.
VALUE_EXTENSIONS: Final[dict[str, str]] = {
    OP_RERANK: "LoongSuite extended operation for rerankers",
    OP_CHAIN: "llmobs: a framework step (chain, graph node, task) that is no GenAI operation",
}

#: The ARMS span kind that goes with each operation.
KIND_OF_OPERATION: Final[dict[str, str]] = {
    OP_CHAT: KIND_LLM,
    OP_TEXT_COMPLETION: KIND_LLM,
    OP_GENERATE_CONTENT: KIND_LLM,
    OP_EMBEDDINGS: KIND_EMBEDDING,
    OP_RETRIEVAL: KIND_RETRIEVER,
    OP_EXECUTE_TOOL: KIND_TOOL,
    OP_INVOKE_AGENT: KIND_AGENT,
    OP_CREATE_AGENT: KIND_AGENT,
    OP_INVOKE_WORKFLOW: KIND_CHAIN,
    OP_RERANK: KIND_RERANKER,
    OP_CHAIN: KIND_CHAIN,
}
#: Operations that are model inference: they get token, TTFT and cost metrics.
INFERENCE_OPERATIONS: Final = frozenset({OP_CHAT, OP_TEXT_COMPLETION, OP_GENERATE_CONTENT, OP_EMBEDDINGS})
#: Operations whose span is named ``{operation} {model}``; the others use ``{operation} {name}``.
MODEL_NAMED_OPERATIONS: Final = INFERENCE_OPERATIONS | {OP_RERANK}

# --- Provider names (gen_ai.provider.name) ------------------------------------------------------
PROVIDER_OPENAI: Final = "openai"
PROVIDER_AZURE_OPENAI: Final = "azure.ai.openai"
PROVIDER_ANTHROPIC: Final = "anthropic"
PROVIDER_DEEPSEEK: Final = "deepseek"
PROVIDER_DASHSCOPE: Final = "dashscope"  # LoongSuite extended value (Qwen / Bailian)
PROVIDER_VLLM: Final = "vllm"
PROVIDER_AWS_BEDROCK: Final = "aws.bedrock"
PROVIDER_AZURE_AI_INFERENCE: Final = "azure.ai.inference"
PROVIDER_GCP_GEMINI: Final = "gcp.gemini"
PROVIDER_GCP_VERTEX_AI: Final = "gcp.vertex_ai"
PROVIDER_MISTRAL_AI: Final = "mistral_ai"
PROVIDER_GROQ: Final = "groq"
PROVIDER_X_AI: Final = "x_ai"
PROVIDER_COHERE: Final = "cohere"
PROVIDER_PERPLEXITY: Final = "perplexity"
PROVIDER_IBM_WATSONX_AI: Final = "ibm.watsonx.ai"
PROVIDER_UNKNOWN: Final = "unknown"
VALUE_EXTENSIONS.update(
    {
        PROVIDER_DASHSCOPE: "LoongSuite extended provider: Alibaba Cloud DashScope / Bailian (Qwen)",
        PROVIDER_VLLM: "llmobs: a self-hosted vLLM server or engine",
        PROVIDER_UNKNOWN: "llmobs: metric attribute value when the provider is not known",
    }
)

# --- Message content (gen_ai.input.messages / output.messages JSON) -----------------------------
ROLE_SYSTEM: Final = "system"
ROLE_USER: Final = "user"
ROLE_ASSISTANT: Final = "assistant"
ROLE_TOOL: Final = "tool"
PART_TEXT: Final = "text"
PART_TOOL_CALL: Final = "tool_call"
PART_TOOL_CALL_RESPONSE: Final = "tool_call_response"
PART_REASONING: Final = "reasoning"
PART_BLOB: Final = "blob"
PART_URI: Final = "uri"
PART_FILE: Final = "file"
FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_CONTENT_FILTER: Final = "content_filter"
FINISH_TOOL_CALL: Final = "tool_call"
FINISH_ERROR: Final = "error"

# --- Metrics ------------------------------------------------------------------------------------
METRIC_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_CLIENT_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
METRIC_SERVER_REQUEST_DURATION: Final = "gen_ai.server.request.duration"
METRIC_SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
METRIC_SERVER_TIME_PER_OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"
METRIC_COST: Final = "llmobs.client.cost"
METRIC_DROPPED: Final = "llmobs.dropped"
# vLLM engine metrics (llmobs-vllm); see the module docstring for the vllm. prefix.
METRIC_VLLM_REQUEST_TOKENS: Final = "vllm.request.tokens"  # histogram by gen_ai.token.type, per finished request
METRIC_VLLM_REQUEST_CACHED_TOKENS: Final = "vllm.request.cached_tokens"  # prompt tokens served by the prefix cache
METRIC_VLLM_REQUEST_QUEUE_DURATION: Final = "vllm.request.queue.duration"
METRIC_VLLM_REQUEST_PREFILL_DURATION: Final = "vllm.request.prefill.duration"
METRIC_VLLM_REQUEST_DECODE_DURATION: Final = "vllm.request.decode.duration"
METRIC_VLLM_REQUEST_INFERENCE_DURATION: Final = "vllm.request.inference.duration"
METRIC_VLLM_INTER_TOKEN_LATENCY: Final = "vllm.inter_token_latency"
METRIC_VLLM_REQUESTS_FINISHED: Final = "vllm.requests.finished"
METRIC_VLLM_REQUESTS_REJECTED: Final = "vllm.requests.rejected"
METRIC_VLLM_REQUESTS_RUNNING: Final = "vllm.requests.running"
METRIC_VLLM_REQUESTS_WAITING: Final = "vllm.requests.waiting"
METRIC_VLLM_KV_CACHE_USAGE: Final = "vllm.kv_cache.usage"
METRIC_VLLM_TOKENS: Final = "vllm.tokens"  # counter by gen_ai.token.type: prompt tokens prefilled, tokens generated
METRIC_VLLM_PREFIX_CACHE_QUERIES: Final = "vllm.prefix_cache.queries"
METRIC_VLLM_PREFIX_CACHE_HITS: Final = "vllm.prefix_cache.hits"
METRIC_VLLM_PREEMPTIONS: Final = "vllm.preemptions"
METRIC_VLLM_SPEC_DECODE_DRAFTS: Final = "vllm.spec_decode.drafts"
METRIC_VLLM_SPEC_DECODE_DRAFT_TOKENS: Final = "vllm.spec_decode.draft_tokens"
METRIC_VLLM_SPEC_DECODE_ACCEPTED_TOKENS: Final = "vllm.spec_decode.accepted_tokens"

UNIT_SECONDS: Final = "s"
UNIT_TOKENS: Final = "{token}"
UNIT_USD: Final = "USD"
UNIT_ITEMS: Final = "{item}"
UNIT_REQUESTS: Final = "{request}"
UNIT_PREEMPTIONS: Final = "{preemption}"
UNIT_DRAFTS: Final = "{draft}"
UNIT_RATIO: Final = "1"

#: Recommended explicit bucket boundaries from the GenAI metric conventions.
BUCKETS_DURATION: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
BUCKETS_TOKENS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
BUCKETS_SERVER_TTFT: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
BUCKETS_SERVER_TPOT: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

#: Attributes carried on metric points (low cardinality only).
METRIC_ATTRIBUTES: Final = (OPERATION_NAME, PROVIDER_NAME, REQUEST_MODEL, RESPONSE_MODEL, ERROR_TYPE)

#: The instrumentation scope name of every span and metric llmobs makes.
SCOPE_NAME: Final = "llmobs"

# =================================================================================================
# Foreign conventions (read only). Names other tracers emit, which ``llmobs.interop`` maps onto the
# names above when ``llmobs serve`` receives their spans. llmobs never emits these.
# =================================================================================================

# --- OpenInference (Arize Phoenix; also what Dify's Phoenix provider sends) -----------------------
OI_SPAN_KIND: Final = "openinference.span.kind"  # LLM, EMBEDDING, CHAIN, RETRIEVER, RERANKER, TOOL, AGENT, ...
OI_MODEL_NAME: Final = "llm.model_name"
OI_REQUEST_MODEL_NAME: Final = "llm.request.model_name"
OI_RESPONSE_MODEL_NAME: Final = "llm.response.model_name"
OI_EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
OI_RERANKER_MODEL_NAME: Final = "reranker.model_name"
OI_PROVIDER: Final = "llm.provider"  # who hosts the model (azure, aws, ...)
OI_SYSTEM: Final = "llm.system"  # the model family's vendor (openai, anthropic, ...)
OI_TOKENS_PROMPT: Final = "llm.token_count.prompt"
OI_TOKENS_COMPLETION: Final = "llm.token_count.completion"
OI_TOKENS_TOTAL: Final = "llm.token_count.total"
OI_TOKENS_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OI_TOKENS_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OI_TOKENS_REASONING: Final = "llm.token_count.completion_details.reasoning"
OI_COST_TOTAL: Final = "llm.cost.total"
OI_COST_PROMPT: Final = "llm.cost.prompt"
OI_COST_COMPLETION: Final = "llm.cost.completion"
OI_INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"  # JSON object of the request parameters
OI_FINISH_REASON: Final = "llm.finish_reason"
OI_INPUT_MESSAGES: Final = "llm.input_messages."  # flattened: llm.input_messages.N.message.role, ...
OI_OUTPUT_MESSAGES: Final = "llm.output_messages."
OI_PROMPTS: Final = "llm.prompts"  # text completion prompts (a list, or flattened llm.prompts.N.prompt.text)
OI_PROMPT_TEMPLATE: Final = "llm.prompt_template."
OI_TOOLS: Final = "llm.tools."  # flattened: llm.tools.N.tool.json_schema
OI_RETRIEVAL_DOCUMENTS: Final = "retrieval.documents."  # flattened: retrieval.documents.N.document.content
OI_RERANKER_INPUT_DOCUMENTS: Final = "reranker.input_documents."
OI_RERANKER_OUTPUT_DOCUMENTS: Final = "reranker.output_documents."
OI_EMBEDDINGS: Final = "embedding.embeddings."
OI_SESSION_ID: Final = "session.id"
OI_USER_ID: Final = "user.id"
OI_AGENT_NAME: Final = "agent.name"
OI_TOOL_NAME: Final = "tool.name"
OI_TOOL_DESCRIPTION: Final = "tool.description"
OI_TOOL_PARAMETERS: Final = "tool.parameters"
OI_TOOL_ID: Final = "tool.id"
OI_PROJECT_NAME: Final = "openinference.project.name"  # resource attribute (Phoenix project)
# Names inside one flattened message, tool call, document or tool entry.
OI_MESSAGE_ROLE: Final = "message.role"
OI_MESSAGE_CONTENT: Final = "message.content"
OI_MESSAGE_CONTENTS: Final = "message.contents"
OI_MESSAGE_NAME: Final = "message.name"
OI_MESSAGE_TOOL_CALLS: Final = "message.tool_calls"
OI_MESSAGE_TOOL_CALL_ID: Final = "message.tool_call_id"
OI_MESSAGE_FUNCTION_CALL_NAME: Final = "message.function_call_name"
OI_MESSAGE_FUNCTION_CALL_ARGUMENTS: Final = "message.function_call_arguments_json"
OI_CONTENT_TYPE: Final = "message_content.type"
OI_CONTENT_TEXT: Final = "message_content.text"
OI_CONTENT_IMAGE_URL: Final = "message_content.image.image.url"
OI_TOOL_CALL_ID: Final = "tool_call.id"
OI_TOOL_CALL_NAME: Final = "tool_call.function.name"
OI_TOOL_CALL_ARGUMENTS: Final = "tool_call.function.arguments"
OI_TOOL_JSON_SCHEMA: Final = "tool.json_schema"
OI_PROMPT_TEXT: Final = "prompt.text"
OI_DOCUMENT_ID: Final = "document.id"
OI_DOCUMENT_CONTENT: Final = "document.content"
OI_DOCUMENT_SCORE: Final = "document.score"
OI_DOCUMENT_METADATA: Final = "document.metadata"

# --- OpenLLMetry / Traceloop (legacy attributes, before its GenAI JSON messages) ------------------
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"  # workflow, task, agent, tool, unknown
TRACELOOP_WORKFLOW_NAME: Final = "traceloop.workflow.name"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_ENTITY_INPUT: Final = "traceloop.entity.input"
TRACELOOP_ENTITY_OUTPUT: Final = "traceloop.entity.output"
TRACELOOP_SESSION_ID: Final = "traceloop.association.properties.session_id"
TRACELOOP_USER_ID: Final = "traceloop.association.properties.user_id"
TRACELOOP_TASK_INPUT: Final = "gen_ai.task.input"  # OpenLLMetry (newer): a task's input, as JSON
TRACELOOP_TASK_OUTPUT: Final = "gen_ai.task.output"
LLM_REQUEST_TYPE: Final = "llm.request.type"  # chat, completion, embedding, rerank
LLM_USAGE_TOTAL_TOKENS: Final = "llm.usage.total_tokens"  # also Promptflow's
LLM_USAGE_REASONING_TOKENS: Final = "llm.usage.reasoning_tokens"
LLM_IS_STREAMING: Final = "llm.is_streaming"
LEGACY_SYSTEM: Final = "gen_ai.system"  # the provider before gen_ai.provider.name (older GenAI, OpenLLMetry)
LEGACY_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"  # older GenAI, OpenLLMetry, vLLM
LEGACY_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
LEGACY_PROMPT: Final = "gen_ai.prompt"  # a plain string (older GenAI, Dify's ARMS export)
LEGACY_COMPLETION: Final = "gen_ai.completion"
LEGACY_PROMPTS: Final = "gen_ai.prompt."  # flattened: gen_ai.prompt.N.role / .content / .tool_calls.K.name
LEGACY_COMPLETIONS: Final = "gen_ai.completion."  # flattened, with .finish_reason
LEGACY_USAGE_REASONING_TOKENS: Final = "gen_ai.usage.reasoning_tokens"
LEGACY_USAGE_CACHE_READ: Final = "gen_ai.usage.cache_read_input_tokens"
LEGACY_USAGE_CACHE_CREATION: Final = "gen_ai.usage.cache_creation_input_tokens"
LEGACY_IS_STREAMING: Final = "gen_ai.is_streaming"
LEGACY_FINISH_REASON: Final = "gen_ai.response.finish_reason"  # a single string (OpenLLMetry, Dify ARMS)
LEGACY_MODEL_NAME: Final = "gen_ai.model_name"  # older Dify ARMS export
LEGACY_REQUEST_N: Final = "gen_ai.request.n"  # vLLM, OpenLLMetry: the choice count
# Names inside one flattened legacy prompt or completion.
LEGACY_ROLE: Final = "role"
LEGACY_CONTENT: Final = "content"
LEGACY_TOOL_CALLS: Final = "tool_calls"
LEGACY_TOOL_CALL_ID: Final = "tool_call_id"
LEGACY_FINISH: Final = "finish_reason"
LEGACY_CALL_ID: Final = "id"
LEGACY_CALL_NAME: Final = "name"
LEGACY_CALL_ARGUMENTS: Final = "arguments"

# --- Promptflow (promptflow-tracing) ---------------------------------------------------------------
PF_SCOPE: Final = "promptflow"  # instrumentation scope of Promptflow's spans, and its "framework" value
PF_SPAN_TYPE: Final = "span_type"  # Function, LLM, Embedding, Flow, Tool, Retrieval, ...
PF_FRAMEWORK: Final = "framework"
PF_FUNCTION: Final = "function"  # e.g. openai.resources.chat.completions.Completions.create
PF_INPUTS: Final = "inputs"  # JSON of the bound arguments
PF_OUTPUT: Final = "output"  # JSON of the return value
PF_USAGE_PROMPT_TOKENS: Final = "llm.usage.prompt_tokens"
PF_USAGE_COMPLETION_TOKENS: Final = "llm.usage.completion_tokens"
PF_RESPONSE_MODEL: Final = "llm.response.model"
PF_GENERATED_MESSAGE: Final = "llm.generated_message"
PF_SESSION_ID: Final = "session_id"
PF_EVENT_PREFIX: Final = "promptflow."  # span events repeating inputs/output as a payload attribute
PF_OUTPUT_TYPE: Final = "output_type"  # "iterated" for generators and streams
PF_EMBEDDINGS: Final = "embedding.embeddings"  # JSON: each input text with "<N dimensional vector>"
PF_PROMPT_TEMPLATE: Final = "prompt.template"
PF_PROMPT_VARIABLES: Final = "prompt.variables"
PF_LLM_PREFIX: Final = "llm."  # llm.response.model, llm.generated_message, llm.usage.*
PF_COMPUTED_PREFIX: Final = "__computed__."  # cumulative token counts of a subtree
PF_COLLECTION: Final = "collection"  # resource attribute: start_trace(collection=...)
PF_SERVICE_NAME: Final = "promptflow"  # the service.name start_trace() merges into the provider's resource
# Values of output_type and span_type.
PF_OUTPUT_ITERATED: Final = "iterated"
PF_TYPE_LLM: Final = "LLM"
PF_TYPE_EMBEDDING: Final = "Embedding"
PF_TYPE_RETRIEVAL: Final = "Retrieval"
PF_TYPE_FLOW: Final = "Flow"

# --- vLLM's own tracing (its llm_request span; see VLLM_REQUEST_SPAN) ------------------------------
VLLM_LATENCY_TTFT: Final = "gen_ai.latency.time_to_first_token"  # seconds (V1), ns in some builds
VLLM_LATENCY_E2E: Final = "gen_ai.latency.e2e"
VLLM_LATENCY_QUEUE: Final = "gen_ai.latency.time_in_queue"
VLLM_LATENCY_PREFILL: Final = "gen_ai.latency.time_in_model_prefill"
VLLM_LATENCY_DECODE: Final = "gen_ai.latency.time_in_model_decode"
VLLM_LATENCY_INFERENCE: Final = "gen_ai.latency.time_in_model_inference"

# --- Dify's ARMS export (older versions) -------------------------------------------------------------
DIFY_RETRIEVAL_QUERY: Final = "retrieval.query"
DIFY_RETRIEVAL_DOCUMENT: Final = "retrieval.document"  # JSON list of {content, metadata, score}
DIFY_RETRIEVAL_WRAPPED: Final = "document"  # newer ARMS export: each entry is {"document": {...}}
DIFY_FRAMEWORK: Final = "dify"  # gen_ai.framework of Dify's ARMS export
DIFY_WORKFLOW_SPAN: Final = "workflow"  # the ARMS export's workflow span name (Phoenix: workflow_<run id>)

# --- Dify's Phoenix export (OpenInference, with Dify's ids in a JSON "metadata" attribute) ---------
OI_METADATA: Final = "metadata"  # OpenInference: a JSON object of free-form metadata
DIFY_PHOENIX_TRACE_ID: Final = "dify_trace_id"  # on the root span Dify's Phoenix provider adds
# Keys inside Dify's metadata JSON (and, for the usage keys, inside an LLM node's outputs JSON).
DIFY_META_CREATED_FROM: Final = "created_from"  # "Dify"
DIFY_META_CREATED_FROM_VALUE: Final = "Dify"
DIFY_META_ENTITY_TYPE: Final = "trace_entity_type"  # workflow, message, tool, dataset_retrieval, ...
DIFY_META_APP_ID: Final = "app_id"
DIFY_META_WORKFLOW_ID: Final = "workflow_id"
DIFY_META_WORKFLOW_RUN_ID: Final = "workflow_run_id"
DIFY_META_MESSAGE_ID: Final = "message_id"
DIFY_META_CONVERSATION_ID: Final = "conversation_id"
DIFY_META_USER_ID: Final = "user_id"
DIFY_META_END_USER_ID: Final = "end_user_id"
DIFY_META_PROVIDER: Final = "ls_provider"
DIFY_META_MODEL: Final = "ls_model_name"
DIFY_META_TTFT: Final = "gen_ai_server_time_to_first_token"  # seconds; 0 when unknown
DIFY_OUTPUT_TEXT: Final = "text"  # an LLM node's outputs: {"text", "usage", "finish_reason"}
DIFY_OUTPUT_USAGE: Final = "usage"
DIFY_OUTPUT_FINISH_REASON: Final = "finish_reason"
DIFY_USAGE_TTFT: Final = "time_to_first_token"  # seconds, inside usage
DIFY_INPUT_QUERY: Final = "query"  # a knowledge-retrieval node's inputs: {"query"}
DIFY_OUTPUT_RESULT: Final = "result"  # ... and outputs: {"result": [{content, title, metadata{score, ...}}]}
DIFY_DOCUMENT_CONTENT: Final = "content"
DIFY_DOCUMENT_METADATA: Final = "metadata"
DIFY_DOCUMENT_ID: Final = "document_id"  # inside a document's metadata
DIFY_DOCUMENT_SCORE: Final = "score"

# --- Dify correlation ids (emitted: the Dify plugin's tools and relay join scores to traces by them) -
DIFY_APP_ID: Final = "dify.app_id"  # also what Dify's ARMS export puts on its root span
DIFY_WORKFLOW_ID: Final = "dify.workflow_id"
DIFY_WORKFLOW_RUN_ID: Final = "dify.workflow_run_id"
DIFY_MESSAGE_ID: Final = "dify.message_id"
DIFY_PREFIX: Final = "dify."

#: Every foreign gen_ai.* name above that the OTel registry does not define, with who emits it.
#: Read only: llmobs maps these on ingest and never emits them.
GEN_AI_FOREIGN: Final[dict[str, str]] = {
    LEGACY_PROMPTS: "OpenLLMetry legacy flattened prompts (gen_ai.prompt.N.*)",
    TRACELOOP_TASK_INPUT: "OpenLLMetry: a task's input (JSON)",
    TRACELOOP_TASK_OUTPUT: "OpenLLMetry: a task's output (JSON)",
    LEGACY_COMPLETIONS: "OpenLLMetry legacy flattened completions (gen_ai.completion.N.*)",
    LEGACY_USAGE_REASONING_TOKENS: "OpenLLMetry reasoning token count",
    LEGACY_USAGE_CACHE_READ: "OpenLLMetry (older) cached input tokens",
    LEGACY_USAGE_CACHE_CREATION: "OpenLLMetry (older) cache-creation input tokens",
    LEGACY_IS_STREAMING: "OpenLLMetry streaming flag",
    LEGACY_FINISH_REASON: "OpenLLMetry and Dify's ARMS export: one finish reason",
    LEGACY_MODEL_NAME: "older Dify ARMS export: the model",
    LEGACY_REQUEST_N: "vLLM and OpenLLMetry: requested choice count",
    VLLM_LATENCY_TTFT: "vLLM llm_request span: time to first token",
    VLLM_LATENCY_E2E: "vLLM llm_request span: end-to-end latency",
    VLLM_LATENCY_QUEUE: "vLLM llm_request span: time queued",
    VLLM_LATENCY_PREFILL: "vLLM llm_request span: prefill time",
    VLLM_LATENCY_DECODE: "vLLM llm_request span: decode time",
    VLLM_LATENCY_INFERENCE: "vLLM llm_request span: prefill + decode time",
}

