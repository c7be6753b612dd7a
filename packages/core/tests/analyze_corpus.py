# ruff: noqa: E501 - the corpus is data: one sentence a line reads best
"""A generated corpus of model calls with planted topics, quality problems and failure classes.

Calls are recorded through the real recorder into a real SQLite store (SDK tracer provider, batch
processor, ``SQLiteSpanExporter``), shaped like an application's: an agent span, sometimes a retrieval,
the chat call, sometimes a tool or an output parser. :func:`build` returns the ground truth by span id,
so the tests measure the analysis against it (cluster purity, flag precision/recall, class accuracy).
The benchmark uses the same generator at a larger size.
"""

from __future__ import annotations

import collections
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.store import SQLiteSpanExporter

# --- topics: (name, questions, answers, documents); {x} slots are filled from FILL ----------------
TOPICS: dict[str, dict[str, list[str]]] = {
    "shipping": {
        "q": ["Where is my order {order}? The tracking page has not updated since {day}.",
              "Has my parcel {order} shipped yet? The courier tracking number shows nothing.",
              "My package {order} says in transit for a week, when will the delivery arrive?",
              "Can you check the shipping status of order {order}? I need the parcel by {day}.",
              "The courier left a delivery notice for {order} but I was home, can you reschedule delivery?"],
        "a": ["Your parcel {order} left our warehouse on {day}; the courier tracking shows it in transit and "
              "delivery is expected within two business days.",
              "Order {order} has shipped. The courier's tracking number is in your shipping confirmation email and "
              "the parcel should arrive by {day}.",
              "I rescheduled the delivery of parcel {order} with the courier for {day}; tracking will update tonight."],
        "d": ["Order shipping: parcels ship within two business days; courier tracking for every order and parcel arrives by email, and delivery can be rescheduled.",
              "A parcel or package in transit longer than seven days: support checks the courier tracking and the delivery status of the order."],
    },
    "refund": {
        "q": ["I returned the {item} two weeks ago, when do I get my refund?",
              "How do I return a damaged {item} and get my money back?",
              "The {item} I received is broken, I want a refund to my card.",
              "Can I exchange the {item} for a different size or do I need a return label?",
              "My refund for the returned {item} has not reached my bank account yet."],
        "a": ["Refunds are issued to your original payment card within five days after the returned {item} "
              "reaches our warehouse.",
              "Print the prepaid return label from your account, pack the {item} and drop it at any post office; "
              "the refund follows once we inspect it.",
              "I started the exchange for your {item}; a return label is in your inbox and the refund of any "
              "difference goes to your card."],
        "d": ["Refund policy: a returned or damaged item is refunded to the original card within five days; an exchange for another size needs a return label.",
              "Return a broken or damaged item with the prepaid return label; the refund reaches the bank account or card after inspection."],
    },
    "account": {
        "q": ["I forgot my password and the reset email never arrives at {email}.",
              "How do I enable two-factor authentication on my account?",
              "My account is locked after too many login attempts, please unlock it.",
              "I want to change the email address of my account from {email}.",
              "The login page says my password is wrong but I just reset it."],
        "a": ["I sent a new password reset link to {email}; it expires in 30 minutes, so check the spam folder too.",
              "Open account settings, choose security, and turn on two-factor authentication with an "
              "authenticator app.",
              "Your account is unlocked. After five failed login attempts we lock it for safety; reset the "
              "password if you are unsure."],
        "d": ["Password reset: the reset email with the login link expires after 30 minutes; check the spam folder of the account email address.",
              "Account security: an account is locked after five failed login attempts; unlock it or enable two-factor authentication in settings."],
    },
    "recipes": {
        "q": ["How long should I bake a {dish} at 180 degrees in the oven?",
              "What can I use instead of eggs in a {dish} recipe?",
              "Give me a quick {dish} recipe with garlic and fresh basil.",
              "Why does my {dish} dough always come out too sticky?",
              "How much salt and olive oil goes into a {dish} for four people?"],
        "a": ["Bake the {dish} for 25 to 30 minutes at 180 degrees until golden; let it rest before slicing.",
              "Mashed banana or a flax seed mix replaces eggs well in a {dish}; add a spoon of olive oil.",
              "Saute garlic in olive oil, add tomatoes and fresh basil, season with salt and serve with the {dish}."],
        "d": ["Recipe basics: bake dough at 180 degrees in the oven; sticky dough needs more flour; olive oil, garlic, salt and fresh basil.",
              "Egg substitutes in a recipe: banana or flax seed; bake time depends on the dish, the oven and the recipe."],
    },
    "python": {
        "q": ["My Python script raises {exc} when I import pandas, how do I fix it?",
              "Why does this Python function return None instead of the list?",
              "How do I install a package into a Python virtualenv with pip?",
              "What does {exc} mean in a Python traceback from my loop?",
              "How can I read a CSV file with pandas and skip the header row in Python?"],
        "a": ["The {exc} means the module is not installed in the active virtualenv: run pip install inside it "
              "and check the interpreter path.",
              "A Python function without a return statement returns None; add return before the list.",
              "Use pandas.read_csv with skiprows=1; the traceback shows {exc} if the file path is wrong.",
              # structured, not degenerate: must not count as repetition
              "Step 1: open a terminal. Step 2: activate the virtualenv. Step 3: run pip install pandas. "
              "Step 4: run the script again. Step 5: if the {exc} stays, print sys.path and check the interpreter."],
        "d": ["Python basics: pip installs a package into the active virtualenv; a traceback names the error, e.g. ModuleNotFoundError, KeyError, TypeError.",
              "pandas reads a CSV file with read_csv and skiprows for the header row; a Python function returns None without return."],
    },
    "travel": {
        "q": ["Can I change my flight to {city} to a later date without a fee?",
              "What is the baggage allowance on the flight to {city} in economy?",
              "My connecting flight to {city} was cancelled, how do I rebook?",
              "Does the hotel booking in {city} include breakfast and airport transfer?",
              "How early should I check in for an international flight to {city}?"],
        "a": ["Flexible fares to {city} can be changed online up to 24 hours before departure; basic fares pay a "
              "change fee.",
              "Economy passengers to {city} may check one bag of 23 kg plus a cabin bag.",
              "I rebooked you on the next flight to {city} and the airline will email the new boarding pass."],
        "d": ["Flight rules: change a flight date online, a cancelled flight is rebooked free; economy baggage allowance is one checked bag.",
              "International flight check in opens three hours early; a hotel booking may include breakfast and an airport transfer."],
    },
    "phone_zh": {
        "q": ["我的手机屏幕碎了，{store}可以维修吗？需要多少钱？",
              "手机充电很慢，电池是不是坏了？保修期内能免费更换电池吗？",
              "手机突然无法开机，按电源键没有反应，怎么办？",
              "我想把手机里的照片备份到云端，应该怎么操作？",
              "新买的手机信号很差，经常没有网络，是质量问题吗？"],
        "a": ["您好，屏幕维修可以在{store}办理，保修期内免费，保修期外维修费用约为八百元。",
              "充电慢可能是电池老化，保修期内可以免费更换电池，请携带发票到{store}检测。",
              "请长按电源键和音量键十秒强制重启手机；如果仍无法开机，请到{store}检测维修。",
              # Chinese with English product words: still a Chinese answer
              "请打开手机的 Settings，进入 iCloud 备份页面，把照片备份到云端；信号问题可以到{store}检测。"],
        "d": ["手机保修期为一年，保修期内手机屏幕维修和电池更换免费，维修需要携带发票。",
              "手机无法开机或充电慢时请先强制重启，再到维修点检测电池；照片可以备份到云端；信号差请检查网络设置。"],
    },
    "invoice": {
        "q": ["Please send me a VAT invoice for my subscription payment in {month}.",
              "Why was my credit card charged twice for the {month} subscription invoice?",
              "How do I update the billing address printed on my invoices?",
              "Can I pay the annual subscription invoice by bank transfer?",
              "I need a copy of the invoice from {month} for my company accounting."],
        "a": ["The VAT invoice for {month} is attached; future invoices go to your billing email automatically.",
              "The second charge for {month} is a pending authorisation and will drop off your card statement; "
              "only one invoice was issued.",
              "Update the billing address under subscription settings; new invoices print it from then on."],
        "d": ["Invoices: a VAT invoice is emailed after every subscription payment, and a copy of any invoice for company accounting can be downloaded; the billing address is set in subscription settings.",
              "A duplicate credit card charge for a subscription is a pending authorisation; an annual subscription invoice can be paid by bank transfer."],
    },
}

FILL = {
    "order": lambda r: f"#{r.choice('ABCDEFGH')}{r.randint(1000, 9999)}",
    "day": lambda r: r.choice(["Monday", "Tuesday", "Friday", "the weekend", "last Thursday"]),
    "item": lambda r: r.choice(["jacket", "blender", "headphones", "desk lamp", "backpack", "sneakers"]),
    "email": lambda r: f"user{r.randint(1, 999)}@example.com",
    "dish": lambda r: r.choice(["pizza", "focaccia", "banana bread", "lasagna", "apple pie"]),
    "exc": lambda r: r.choice(["ModuleNotFoundError", "KeyError", "TypeError", "IndexError"]),
    "city": lambda r: r.choice(["Paris", "Tokyo", "Lisbon", "Toronto", "Singapore"]),
    "store": lambda r: r.choice(["北京门店", "上海服务中心", "官方售后", "授权维修点"]),
    "month": lambda r: r.choice(["March", "April", "May", "June", "July"]),
}

REFUSALS_EN = [
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with that.",
    "Unfortunately, I am unable to provide that information.",
    "As an AI language model, I cannot provide advice on this.",
    "I'm sorry, I won't be able to help with this one.",
]
REFUSALS_ZH = ["抱歉，我无法回答这个问题。", "对不起，我不能提供这方面的帮助。", "很抱歉，我无法协助处理该请求。"]
#: Documents about nothing the users ask about, for planted irrelevant retrievals.
OFF_TOPIC = {
    False: ["Tide tables: high tide at the harbour is at 06:40 and low tide at 12:55 on the northern coast.",
            "The museum's sculpture garden closes for restoration of its marble fountains until spring."],
    True: ["明天杭州天气晴朗，最高气温二十五度，适合户外运动。", "本周末博物馆举办青铜器展览，免费参观。"],
}
# Answers that mention an apology or a limit without declining: they must not be flagged.
POLITE_EN = ["Sorry for the wait! ", "I'm sorry to hear that. ", "Thanks for your patience. ",
             "I can't stress this enough: keep your receipt. ", "Unfortunately the first attempt failed, so here goes. "]

QUALITY_PLANTS = ("empty_output", "refusal", "truncation", "repetition", "invalid_json", "language_mismatch",
                  "irrelevant_retrieval")

# (problem class, error type, message, http status or None, which span fails: llm, tool or parser)
ERRORS: list[tuple[str, str, str, int | None, str]] = [
    ("rate_limit", "RateLimitError", "Error code: 429 - Rate limit reached for gpt-4o-mini on tokens per min (TPM)", 429, "llm"),
    ("rate_limit", "Throttling", "Throttling.RateQuota: Requests rate limit exceeded, please try again later.", None, "llm"),
    ("rate_limit", "ThrottlingException", "An error occurred (ThrottlingException) when calling the Converse operation", None, "llm"),
    ("rate_limit", "HTTPStatusError", "Client error '429 Too Many Requests' for url", 429, "llm"),
    ("timeout", "APITimeoutError", "Request timed out.", None, "llm"),
    ("timeout", "ReadTimeout", "The read operation timed out", None, "llm"),
    ("timeout", "TimeoutError", "", None, "llm"),
    ("timeout", "DeadlineExceeded", "504 Deadline Exceeded", 504, "llm"),
    ("authentication", "AuthenticationError", "Error code: 401 - Incorrect API key provided: sk-proj-****abcd.", 401, "llm"),
    ("authentication", "InvalidApiKey", "Invalid API-key provided.", None, "llm"),
    ("authentication", "PermissionDeniedError", "Error code: 403 - You are not allowed to use this model", 403, "llm"),
    ("context_length_exceeded", "BadRequestError",
     "Error code: 400 - This model's maximum context length is 128000 tokens. However, your messages resulted in "
     "131072 tokens. (code: context_length_exceeded)", 400, "llm"),
    ("context_length_exceeded", "BadRequestError", "prompt is too long: 210443 tokens > 200000 maximum", 400, "llm"),
    ("context_length_exceeded", "InvalidParameter", "Range of input length should be [1, 30720]", 400, "llm"),
    ("content_filter", "BadRequestError",
     "Error code: 400 - The response was filtered due to the prompt triggering Azure OpenAI's content management "
     "policy. (code: content_filter)", 400, "llm"),
    ("content_filter", "DataInspectionFailed", "Input data may contain inappropriate content.", 400, "llm"),
    ("content_filter", "BlockedPromptException", "Response blocked: finish_reason SAFETY", None, "llm"),
    ("tool_error", "ValueError", "order id not found in the order database", None, "tool"),
    ("tool_error", "KeyError", "'status'", None, "tool"),
    ("tool_error", "ToolException", "weather service returned an unexpected payload", None, "tool"),
    ("output_parse_error", "OutputParserException", "Could not parse LLM output: `Sure! Here is the answer`", None, "parser"),
    ("output_parse_error", "JSONDecodeError", "Expecting value: line 1 column 1 (char 0)", None, "parser"),
    ("output_parse_error", "ValidationError", "1 validation error for Answer\nconfidence\n  field required", None, "parser"),
    ("network", "APIConnectionError", "Connection error.", None, "llm"),
    ("network", "ConnectError", "[Errno 111] Connection refused", None, "llm"),
    ("network", "ConnectionResetError", "[Errno 104] Connection reset by peer", None, "llm"),
    ("network", "gaierror", "[Errno -2] Name or service not known", None, "llm"),
    ("other", "InternalServerError", "Error code: 500 - The server had an error while processing your request.", 500, "llm"),
    ("other", "RuntimeError", "unexpected state in the agent loop", None, "llm"),
]


@dataclass
class Truth:
    store: Path
    topic: dict[str, str] = field(default_factory=dict)  # llm span id -> topic
    flags: dict[str, set[str]] = field(default_factory=dict)  # llm span id -> planted flags
    problems: dict[str, str] = field(default_factory=dict)  # failing span id -> planted class
    calls: int = 0


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{k: f(rng) for k, f in FILL.items() if "{" + k + "}" in template})


def _exception(name: str, message: str) -> BaseException:
    return type(name, (Exception,), {})(message) if message else type(name, (Exception,), {})()


def build(path: Path, calls: int = 800, *, seed: int = 7, quality_rate: float = 0.14, error_rate: float = 0.08,
          service: str = "support-bot") -> Truth:
    """Record ``calls`` model calls (one per trace) into the store at ``path``; return the ground truth."""
    rng = random.Random(seed)
    truth = Truth(store=path, calls=calls)
    exporter = SQLiteSpanExporter(path, retention=None)
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=max(4096, calls * 4),
                                                   max_export_batch_size=512, schedule_delay_millis=200))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    topics = list(TOPICS)
    now = 1_780_000_000 * 10**9
    slow = {"python": 2.5, "travel": 1.6}  # planted: some topics are slower
    for i in range(calls):
        topic = topics[i % len(topics)]
        spec = TOPICS[topic]
        zh = topic.endswith("_zh")
        question = _fill(rng.choice(spec["q"]), rng)
        answer = _fill(rng.choice(spec["a"]), rng)
        if not zh and rng.random() < 0.15:
            answer = rng.choice(POLITE_EN) + answer
        plant = rng.choice(QUALITY_PLANTS) if rng.random() < quality_rate else None
        error = rng.choice(ERRORS) if plant is None and rng.random() < error_rate else None
        json_mode = plant == "invalid_json" or (plant is None and rng.random() < 0.1)
        use_retrieval = plant == "irrelevant_retrieval" or rng.random() < 0.35
        start = now + i * 2_000_000_000
        agent = recorder.start(sc.OP_INVOKE_AGENT, "support-agent", parent=ROOT, start_time_ns=start,
                               session_id=f"s-{i // 3}")
        agent.set_input(value=question)
        t = start + 1_000_000
        if use_retrieval:
            retrieval = recorder.start(sc.OP_RETRIEVAL, "kb", parent=agent, start_time_ns=t)
            retrieval.set_input(value=question)
            docs = spec["d"]
            if plant == "irrelevant_retrieval":
                docs = [] if rng.random() < 0.3 else OFF_TOPIC[zh]
            retrieval.set_output(value=[{"id": f"kb-{k}", "content": d} for k, d in enumerate(docs)])
            t += 40_000_000
            retrieval.end(end_time_ns=t)
        model = rng.choice(["gpt-4o-mini", "qwen-plus", "claude-3-5-haiku"])
        llm = recorder.start(sc.OP_CHAT, provider={"gpt-4o-mini": "openai", "qwen-plus": "dashscope",
                                                   "claude-3-5-haiku": "anthropic"}[model],
                             model=model, parent=agent, start_time_ns=t + 1_000_000)
        system = "You are a helpful support assistant."
        if json_mode:
            system += " Respond only with JSON of the form {\"answer\": string}."
            llm.set_request(output_type=sc.OUTPUT_TYPE_JSON)
        llm.set_input([content.message(sc.ROLE_USER, [content.text_part(question)])],
                      system=[content.text_part(system)])
        latency = rng.uniform(0.4, 1.2) * slow.get(topic, 1.0)
        ttft = latency * rng.uniform(0.2, 0.4)
        llm_start = t + 1_000_000
        llm.first_token(at_ns=llm_start + int(ttft * 1e9))
        end_llm = llm_start + int(latency * 1e9)
        if error is not None and error[4] == "llm":
            problem, etype, message, status, _ = error
            if status is not None:
                llm.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            llm.end(_exception(etype, message), end_time_ns=end_llm)
            truth.problems[_sid(llm)] = problem
            agent.end(_exception(etype, message), end_time_ns=end_llm + 1_000_000)
            truth.topic[_sid(llm)] = topic
            truth.flags[_sid(llm)] = set()
            continue
        finish = sc.FINISH_STOP
        output = answer
        if plant == "empty_output":
            output = ""
        elif plant == "refusal":
            output = rng.choice(REFUSALS_ZH if zh else REFUSALS_EN)
        elif plant == "truncation":
            words = answer.split(" ") if not zh else list(answer)
            output = (" " if not zh else "").join(words[: max(3, len(words) // 2)])
            finish = sc.FINISH_LENGTH
        elif plant == "repetition":
            phrase = " ".join(answer.split(" ")[:5]) if not zh else answer[:8]
            output = answer + (" " if not zh else "") + (" " if not zh else "").join([phrase] * 14)
        elif plant == "language_mismatch":
            output = (_fill(rng.choice(TOPICS["shipping"]["a"]), rng) if zh
                      else "您好，我们已经收到您的问题，客服人员会尽快处理并通过邮件回复您，请耐心等待。")
        if json_mode and plant not in ("empty_output", "refusal", "language_mismatch", "truncation"):
            if plant == "invalid_json":
                output = rng.choice([f'{{"answer": "{answer[:40]}', f"answer: {answer}", f"{{'answer': '{answer[:30]}'}}"])
            elif plant != "repetition":
                payload = json.dumps({"answer": output}, ensure_ascii=False)
                output = f"```json\n{payload}\n```" if rng.random() < 0.3 else payload
        out_tokens = 0 if not output else max(1, len(output) // 4)
        llm.set_usage(rng.randint(60, 400), out_tokens)
        llm.set_output([content.output_message([content.text_part(output)] if output else [], finish)],
                       finish_reasons=[finish], response_model=model)
        llm.end(end_time_ns=end_llm)
        sid = _sid(llm)
        truth.topic[sid] = topic
        truth.flags[sid] = {plant} if plant else set()
        t = end_llm + 1_000_000
        if error is not None:  # a tool or an output parser fails after the call
            problem, etype, message, _status, where = error
            step = recorder.start(sc.OP_EXECUTE_TOOL if where == "tool" else sc.OP_CHAIN,
                                  "get_order_status" if where == "tool" else "parse_answer", parent=agent,
                                  start_time_ns=t)
            step.end(_exception(etype, message), end_time_ns=t + 5_000_000)
            truth.problems[_sid(step)] = problem
            agent.end(_exception(etype, message), end_time_ns=t + 6_000_000)
            continue
        agent.set_output(value=output)
        agent.end(end_time_ns=t)
    provider.shutdown()
    return truth


def _sid(handle) -> str:
    return f"{handle.span.get_span_context().span_id:016x}"


def purity(result, truth) -> float:
    """Share of calls whose cluster's majority topic is their own topic (unclustered counts as one cluster)."""
    clusters: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for call, label in zip(result.calls, result.labels, strict=True):
        clusters[label][truth.topic[call.span_id]] += 1
    return sum(max(c.values()) for c in clusters.values()) / len(result.calls)
