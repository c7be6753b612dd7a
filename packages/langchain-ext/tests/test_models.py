"""Chat models and LLMs: GenAI request/response attributes, content, usage from every source, TTFT, errors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry.trace import StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs_langchain import LLMObsCallbackHandler, models, translate
from llmobs_langchain.scripted import ScriptedChatModel

CALLBACKS = {"callbacks": [LLMObsCallbackHandler()]}


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return "sunny"


def test_request_attributes_from_ls_metadata_and_invocation_params(scripted, reply, recorded):
    model = scripted(reply("ok", finish="stop"), model="gpt-4o", provider="azure")
    bound = model.bind(temperature=0.3, max_tokens=256, top_p=0.9, stop=["END"], seed=7)
    bound.invoke("hi", config=CALLBACKS)
    chat = recorded.one("chat gpt-4o")
    attrs = chat.attributes
    assert attrs[sc.OPERATION_NAME] == sc.OP_CHAT
    assert attrs[sc.PROVIDER_NAME] == sc.PROVIDER_AZURE_OPENAI
    assert attrs[sc.REQUEST_MODEL] == "gpt-4o"
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.3
    assert attrs[sc.REQUEST_MAX_TOKENS] == 256
    assert attrs[sc.REQUEST_TOP_P] == 0.9
    assert attrs[sc.REQUEST_SEED] == 7
    assert tuple(attrs[sc.REQUEST_STOP_SEQUENCES]) == ("END",)
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("stop",)


def test_unknown_providers_pass_through_lowercased(scripted, recorded):
    scripted("ok", model="m", provider="Ollama").invoke("hi", config=CALLBACKS)
    assert recorded.one("chat m").attributes[sc.PROVIDER_NAME] == "ollama"


def test_input_messages_system_instructions_tools_and_tool_call_output(scripted, reply, recorded):
    answer = reply(calls=[("get_weather", {"city": "Oslo"}, "call_9")], id="chatcmpl-1",
                   response_metadata={"finish_reason": "tool_calls", "model_name": "gpt-4o-2024-08-06"})  # fmt: skip
    model = scripted(answer, model="gpt-4o").bind_tools([get_weather])
    history = [
        SystemMessage("Be brief."),
        HumanMessage("Weather in Oslo?", name="alice"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Bergen"}, "id": "call_1"}]),
        ToolMessage("rain", tool_call_id="call_1"),
    ]
    model.invoke(history, config=CALLBACKS)
    attrs = recorded.one("chat gpt-4o").attributes
    assert json.loads(attrs[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}], "name": "alice"},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                         "arguments": {"city": "Bergen"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rain"}]},
    ]  # fmt: skip
    (definition,) = json.loads(attrs[sc.TOOL_DEFINITIONS])
    assert definition["name"] == "get_weather" and definition["description"] == "Current weather in a city."
    assert definition["parameters"]["properties"] == {"city": {"type": "string"}}
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "finish_reason": "tool_call",
         "parts": [{"type": "tool_call", "id": "call_9", "name": "get_weather", "arguments": {"city": "Oslo"}}]}
    ]  # fmt: skip
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("tool_call",)
    assert attrs[sc.RESPONSE_ID] == "chatcmpl-1"
    assert attrs[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"


def test_reasoning_and_multimodal_content(scripted, reply, recorded):
    answer = AIMessage(
        content=[{"type": "thinking", "thinking": "compare sizes"}, {"type": "text", "text": "The cat."}],
        additional_kwargs={},
    )
    picture = HumanMessage(content=[
        {"type": "text", "text": "Which is bigger?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image", "base64": "aGVsbG8gd29ybGQh", "mime_type": "image/png"},
        {"type": "image_url", "image_url": "data:image/jpeg;base64,aGVsbG8gd29ybGQh"},
        {"type": "file", "file_id": "file-7", "mime_type": "application/pdf"},
        {"type": "image", "source_type": "id", "id": "file-9"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ])  # fmt: skip
    scripted(answer, model="vision").invoke([picture], config=CALLBACKS)
    attrs = recorded.one("chat vision").attributes
    (user,) = json.loads(attrs[sc.INPUT_MESSAGES])
    assert user["parts"] == [
        {"type": "text", "content": "Which is bigger?"},
        {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "<omitted 12 bytes>"},
        {"type": "blob", "modality": "image", "mime_type": "image/jpeg", "content": "<omitted 12 bytes>"},
        {"type": "file", "modality": "document", "mime_type": "application/pdf", "file_id": "file-7"},
        {"type": "file", "modality": "image", "file_id": "file-9"},
        {"type": "blob", "modality": "audio", "content": "<omitted>"},  # never the audio itself
    ]
    (output,) = json.loads(attrs[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [
        {"type": "reasoning", "content": "compare sizes"},
        {"type": "text", "content": "The cat."},
    ]
    assert output["finish_reason"] == "stop"  # none reported: inferred from the parts


def test_no_content_mode_records_metadata_but_no_messages(settings, scripted, reply, recorded):
    settings(capture=CaptureMode.NO_CONTENT)
    scripted(reply("secret answer", usage=(3, 2), finish="stop"), model="m").invoke("secret", config=CALLBACKS)
    attrs = recorded.one("chat m").attributes
    for attribute in (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS, sc.TOOL_DEFINITIONS):
        assert attribute not in attrs
    assert attrs[sc.USAGE_INPUT_TOKENS] == 3 and tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("stop",)


def test_usage_with_cache_and_reasoning_tokens_and_cost(scripted, recorded):
    usage = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "input_token_details": {"cache_read": 1000, "cache_creation": 50},
        "output_token_details": {"reasoning": 120},
    }
    scripted(AIMessage("ok", usage_metadata=usage), model="gpt-4o-mini").invoke("hi", config=CALLBACKS)
    attrs = recorded.one("chat gpt-4o-mini").attributes
    assert attrs[sc.USAGE_INPUT_TOKENS] == 1200
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 300
    assert attrs[sc.USAGE_TOTAL_TOKENS] == 1500
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1000
    assert attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 50
    assert attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 120
    assert attrs[sc.COST_USD] > 0


class RawUsageModel(ScriptedChatModel):
    """A provider integration that reports usage only in ``llm_output`` (as older OpenAI/Anthropic ones do), or
    only in each generation's ``generation_info``."""

    raw_usage: dict[str, Any]
    in_generation_info: bool = False

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        if self.in_generation_info:
            for generation in result.generations:
                generation.generation_info = {"usage": self.raw_usage}
            return ChatResult(generations=result.generations, llm_output={"model_name": "raw"})
        return ChatResult(
            generations=result.generations, llm_output={"token_usage": self.raw_usage, "model_name": "raw"}
        )


@pytest.mark.parametrize(
    ("in_generation_info", "raw", "expected"),
    [
        (
            False,
            {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
             "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 8}},
            {sc.USAGE_INPUT_TOKENS: 100, sc.USAGE_OUTPUT_TOKENS: 20, sc.USAGE_TOTAL_TOKENS: 120,
             sc.USAGE_CACHE_READ_INPUT_TOKENS: 64, sc.USAGE_REASONING_OUTPUT_TOKENS: 8},
        ),
        (
            False,
            {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 4},
            {sc.USAGE_INPUT_TOKENS: 104, sc.USAGE_OUTPUT_TOKENS: 5, sc.USAGE_TOTAL_TOKENS: 109,
             sc.USAGE_CACHE_READ_INPUT_TOKENS: 90, sc.USAGE_CACHE_CREATION_INPUT_TOKENS: 4},
        ),
        (  # Anthropic's own usage has input_tokens as LangChain's UsageMetadata does, but cache counts apart
            True,
            {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0},
            {sc.USAGE_INPUT_TOKENS: 100, sc.USAGE_OUTPUT_TOKENS: 5, sc.USAGE_CACHE_READ_INPUT_TOKENS: 90},
        ),
        (
            True,
            {"input_tokens": 100, "output_tokens": 5, "total_tokens": 105, "input_token_details": {"cache_read": 90}},
            {sc.USAGE_INPUT_TOKENS: 100, sc.USAGE_OUTPUT_TOKENS: 5, sc.USAGE_CACHE_READ_INPUT_TOKENS: 90},
        ),
    ],
    ids=["llm_output-openai", "llm_output-anthropic", "generation_info-anthropic", "generation_info-usage_metadata"],
)  # fmt: skip
def test_usage_when_the_message_has_none(in_generation_info, raw, expected, recorded):
    model = RawUsageModel(messages=iter(["ok"]), model="raw", raw_usage=raw, in_generation_info=in_generation_info)
    model.invoke("hi", config=CALLBACKS)
    attrs = recorded.one("chat raw").attributes
    assert {k: attrs.get(k) for k in expected} == expected
    assert attrs[sc.RESPONSE_MODEL] == "raw"


def test_usage_metadata_wins_over_llm_output_no_double_counting(recorded):
    message = AIMessage("ok", usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})
    model = RawUsageModel(messages=iter([message]), model="raw", raw_usage={"prompt_tokens": 7, "completion_tokens": 3})
    model.invoke("hi", config=CALLBACKS)
    attrs = recorded.one("chat raw").attributes
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS], attrs[sc.USAGE_TOTAL_TOKENS]) == (7, 3, 10)


def test_streamed_usage_and_token_metrics_equal_the_models_usage(scripted, reply, recorded, points):
    answers = [
        reply("first answer", usage=(11, 2)),
        reply("second answer here", usage=(13, 3)),
        reply("x", usage=(5, 1)),
    ]
    model = scripted(*answers, model="metrics-model")
    model.invoke("a", config=CALLBACKS)
    list(model.stream("b", config=CALLBACKS))
    asyncio.run(model.ainvoke("c", config=CALLBACKS))
    chats = recorded.named("chat metrics-model")
    assert len(chats) == 3
    assert sum(c.attributes[sc.USAGE_INPUT_TOKENS] for c in chats) == 11 + 13 + 5
    assert sum(c.attributes[sc.USAGE_OUTPUT_TOKENS] for c in chats) == 2 + 3 + 1
    streamed = next(c for c in chats if sc.REQUEST_STREAM in c.attributes)
    assert streamed.attributes[sc.USAGE_INPUT_TOKENS] == 13
    (inputs,) = points(sc.METRIC_CLIENT_TOKEN_USAGE, **{sc.REQUEST_MODEL: "metrics-model", sc.TOKEN_TYPE: "input"})
    (outputs,) = points(sc.METRIC_CLIENT_TOKEN_USAGE, **{sc.REQUEST_MODEL: "metrics-model", sc.TOKEN_TYPE: "output"})
    assert (inputs.sum, inputs.count, outputs.sum) == (29, 3, 6)
    (duration,) = points(sc.METRIC_CLIENT_OPERATION_DURATION, **{sc.REQUEST_MODEL: "metrics-model"})
    assert duration.count == 3
    (ttft,) = points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK, **{sc.REQUEST_MODEL: "metrics-model"})
    assert ttft.count == 1  # only the streamed call has a first chunk
    (per_chunk,) = points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, **{sc.REQUEST_MODEL: "metrics-model"})
    assert per_chunk.count == len(["second", " ", "answer", " ", "here"]) - 1


class SlowStartModel(ScriptedChatModel):
    """Streams empty chunks for a while before the first content-bearing one (role, keep-alives)."""

    content_chunk: dict[str, Any]

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        for _ in range(3):
            yield ChatGenerationChunk(message=AIMessageChunk(content=""))  # stream() reports each chunk
            time.sleep(0.03)
        yield ChatGenerationChunk(message=AIMessageChunk(**self.content_chunk))


@pytest.mark.parametrize(
    "content_chunk",
    [
        {"content": "hi"},
        {"content": "", "tool_call_chunks": [{"name": "get_weather", "args": "", "id": "c1", "index": 0}]},
        {"content": "", "additional_kwargs": {"reasoning_content": "let me think"}},
        {"content": [{"type": "thinking", "thinking": "hmm", "index": 0}]},
    ],
    ids=["text", "tool_call", "reasoning", "thinking_block"],
)
def test_ttft_is_the_first_content_bearing_chunk_not_an_empty_one(content_chunk, recorded):
    list(SlowStartModel(messages=iter([]), model="slow", content_chunk=content_chunk).stream("q", config=CALLBACKS))
    chat = recorded.one("chat slow")
    assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.08  # after the three empty chunks


class StreamingTextLLM(FakeListLLM):
    """A text-completion LLM that streams word by word (FakeStreamingListLLM bypasses the callbacks)."""

    def _stream(self, prompt, stop=None, run_manager=None, **kwargs):
        for word in self.responses[0].split(" "):
            chunk = GenerationChunk(text=word + " ")
            if run_manager:  # text LLMs report their own tokens
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def test_text_completion_llm_invoke_and_stream(recorded):
    FakeListLLM(responses=["forty two"]).invoke("The answer?", config=CALLBACKS)
    list(StreamingTextLLM(responses=["streamed text"]).stream("Again?", config=CALLBACKS))
    invoked, streamed = recorded.all()
    for span in (invoked, streamed):
        assert span.attributes[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION
        assert span.attributes[sc.SPAN_KIND] == sc.KIND_LLM
    assert json.loads(invoked.attributes[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "The answer?"}]}
    ]
    assert json.loads(invoked.attributes[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": "forty two"}]
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in invoked.attributes
    assert streamed.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert json.loads(streamed.attributes[sc.OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "streamed text "}
    ]


class FailingModel(ScriptedChatModel):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise TimeoutError("provider timed out")


def test_model_error_sets_status_error_type_exception_event_and_metric(recorded, points):
    with pytest.raises(TimeoutError):
        FailingModel(messages=iter([]), model="failing-model").invoke("hi", config=CALLBACKS)
    chat = recorded.one("chat failing-model")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes[sc.ERROR_TYPE] == "TimeoutError"
    (event,) = chat.events
    assert event.name == "exception" and "provider timed out" in event.attributes["exception.message"]
    (duration,) = points(sc.METRIC_CLIENT_OPERATION_DURATION, **{sc.REQUEST_MODEL: "failing-model"})
    assert dict(duration.attributes)[sc.ERROR_TYPE] == "TimeoutError"


def test_chat_generation_without_message_metadata_still_records(recorded):
    class Bare(ScriptedChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            return ChatResult(generations=[ChatGeneration(message=AIMessage("plain"))])

    Bare(messages=iter([]), model="bare").invoke("hi", config=CALLBACKS)
    attrs = recorded.one("chat bare").attributes
    assert sc.RESPONSE_FINISH_REASONS not in attrs and sc.USAGE_INPUT_TOKENS not in attrs
    assert json.loads(attrs[sc.OUTPUT_MESSAGES])[0]["finish_reason"] == "stop"


def test_event_streaming_apis_are_traced_with_ttft(scripted, recorded):
    async def v2_events():
        return [e async for e in model.astream_events("q", config=CALLBACKS, version="v2")]

    model = scripted("hello big world", repeat=True, model="events")
    assert asyncio.run(v2_events())
    assert list(model.stream_events("q", config=CALLBACKS, version="v3"))  # LangChain's v3 protocol
    chats = recorded.named("chat events")
    assert len(chats) == 2
    assert all(c.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0 for c in chats)


@pytest.mark.parametrize(
    ("ls_provider", "expected"),
    [
        ("openai", sc.PROVIDER_OPENAI),
        ("Anthropic", sc.PROVIDER_ANTHROPIC),
        ("bedrock_converse", sc.PROVIDER_AWS_BEDROCK),
        ("google_genai", sc.PROVIDER_GCP_GEMINI),
        ("google_vertexai", sc.PROVIDER_GCP_VERTEX_AI),
        ("tongyi", sc.PROVIDER_DASHSCOPE),
        ("qwen", sc.PROVIDER_DASHSCOPE),
        ("deepseek", sc.PROVIDER_DEEPSEEK),
        ("mistralai", sc.PROVIDER_MISTRAL_AI),
        ("ollama", "ollama"),
        ("", None),
        (None, None),
    ],
)  # fmt: skip
def test_providers_from_ls_provider(ls_provider, expected):
    assert models.provider({"ls_provider": ls_provider}) == expected


def test_model_name_falls_back_to_the_invocation_params():
    assert models.model_name({"ls_model_name": "from-ls"}, {"model": "from-params"}) == "from-ls"
    assert models.model_name({}, {"model_name": "qwen-max"}) == "qwen-max"
    assert models.model_name({}, {"azure_deployment": "prod-gpt"}) == "prod-gpt"
    assert models.model_name({}, {"model": 42}) is None


def test_request_parameters_from_invocation_params_and_ls_metadata():
    params = {"top_k": 40, "top_p": 0.9, "frequency_penalty": 0.5, "presence_penalty": -0.5, "n": 2, "seed": 7,
              "max_completion_tokens": 300, "temperature": True, "stop_sequences": ["END"]}  # fmt: skip
    request = models.request_parameters({"ls_temperature": 0.2}, params)
    assert request == {"top_k": 40, "top_p": 0.9, "frequency_penalty": 0.5, "presence_penalty": -0.5,
                       "choice_count": 2, "seed": 7, "max_tokens": 300, "temperature": 0.2,
                       "stop_sequences": ["END"]}  # fmt: skip


def test_geminis_usage_counts_thoughts_as_output_and_reasoning(recorded):
    raw = {"prompt_token_count": 50, "candidates_token_count": 10, "thoughts_token_count": 30,
           "cached_content_token_count": 20, "total_token_count": 90}  # fmt: skip
    RawUsageModel(messages=iter(["ok"]), model="raw", raw_usage=raw).invoke("hi", config=CALLBACKS)
    a = recorded.one("chat raw").attributes
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_TOTAL_TOKENS]) == (50, 40, 90)
    assert (a[sc.USAGE_CACHE_READ_INPUT_TOKENS], a[sc.USAGE_REASONING_OUTPUT_TOKENS]) == (20, 30)


def test_anthropic_style_tool_definitions_are_read_too():
    schema = {"type": "object", "properties": {"id": {"type": "string"}}}
    tools = [{"name": "lookup", "description": "Find an order", "input_schema": schema},
             {"type": "function", "function": {"name": "cancel", "parameters": {}}}]  # fmt: skip
    definitions = translate.tool_definitions(tools)
    assert [d["name"] for d in definitions] == ["lookup", "cancel"]
    assert definitions[0]["parameters"]["properties"] == {"id": {"type": "string"}}
    assert definitions[0]["description"] == "Find an order"


def test_with_content_off_langchain_objects_are_not_even_translated(settings, scripted, reply, recorded,
                                                                   monkeypatch):
    settings(capture=CaptureMode.NO_CONTENT)

    def refuse(*args, **kwargs):
        raise AssertionError("translated with content off")

    for name in ("compact", "input_messages", "tool_definitions", "prompt_messages", "output_messages",
                 "tool_result"):
        monkeypatch.setattr(translate, name, refuse)
    from langchain_core.output_parsers import StrOutputParser

    model = scripted(reply("ok", usage=(3, 2)), model="m")
    chain = RunnableLambda(lambda q: q, name="prep") | model | StrOutputParser()
    assert chain.invoke("q", config=CALLBACKS) == "ok"
    assert not selfstats.snapshot(), selfstats.snapshot()
    assert recorded.one("chat m").attributes[sc.USAGE_INPUT_TOKENS] == 3


_SUMMARY = {"type": "reasoning", "id": "rs_1", "summary": [
    {"type": "summary_text", "text": "Think", "index": 0}, {"type": "summary_text", "text": "Then answer", "index": 1},
]}  # fmt: skip


def test_openai_responses_reasoning_summaries_are_reasoning_parts(recorded):
    answer = AIMessage([_SUMMARY, {"type": "text", "text": "42"}], response_metadata={"model_provider": "openai"})
    ScriptedChatModel(messages=iter([answer]), model="o4").invoke("q", config=CALLBACKS)
    (output,) = json.loads(recorded.one("chat o4").attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "reasoning", "content": "Think\n\nThen answer"},
                               {"type": "text", "content": "42"}]  # fmt: skip


class ReasoningFirstModel(ScriptedChatModel):
    """Streams a reasoning summary, then the answer 0.1 s later."""

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        for chunk, pause in ((AIMessageChunk(content=[_SUMMARY]), 0.1), (AIMessageChunk(content="42"), 0)):
            if run_manager:
                run_manager.on_llm_new_token("", chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)
            time.sleep(pause)


def test_a_streamed_reasoning_summary_is_the_first_chunk(recorded):
    list(ReasoningFirstModel(messages=iter([]), model="o4").stream("q", config=CALLBACKS))
    assert recorded.one("chat o4").attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] < 0.09


class FailsMidStream(ScriptedChatModel):
    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        chunk = ChatGenerationChunk(message=AIMessageChunk(content="partial"))
        if run_manager:
            run_manager.on_llm_new_token("partial", chunk=chunk)
        yield chunk
        raise ConnectionError("connection reset")


def test_a_stream_that_fails_after_chunks_is_still_a_stream(recorded):
    with pytest.raises(ConnectionError):
        list(FailsMidStream(messages=iter([]), model="flaky").stream("q", config=CALLBACKS))
    chat = recorded.one("chat flaky")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes[sc.REQUEST_STREAM] is True and chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_images_in_tool_results_are_described_not_copied(recorded):
    image = "iVBORw0KGgo" * 300

    @tool
    def screenshot(url: str) -> list:
        """Take a screenshot."""
        return [{"type": "text", "text": "here it is"}, {"type": "image", "base64": image, "mime_type": "image/png"},
                {"type": "flight", "price": 100}]  # fmt: skip

    screenshot.invoke({"url": "x"}, config=CALLBACKS)
    history = [HumanMessage("look"), ToolMessage(content=[{"type": "image", "base64": image, "mime_type": "image/png"}],
                                                 tool_call_id="c1")]  # fmt: skip
    ScriptedChatModel(messages=iter([AIMessage("seen")]), model="vision").invoke(history, config=CALLBACKS)
    result = json.loads(recorded.one("execute_tool screenshot").attributes[sc.TOOL_CALL_RESULT])
    omitted = f"<omitted {len(image) * 3 // 4} bytes>"
    blob = {"type": "blob", "modality": "image", "mime_type": "image/png", "content": omitted}
    assert result == [{"type": "text", "text": "here it is"}, blob, {"type": "flight", "price": 100}]
    (_, tool_message) = json.loads(recorded.one("chat vision").attributes[sc.INPUT_MESSAGES])
    assert tool_message["parts"][0]["response"] == [blob]
    assert image not in json.dumps([dict(s.attributes) for s in recorded.all()])
