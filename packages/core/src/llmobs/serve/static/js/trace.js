// One trace: the span tree as a waterfall (durations, TTFT markers) and the selected span's detail.
import { get } from "./api.js";
import { h, clear, duration, count, cost, time, pretty, statusBadge } from "./dom.js";
import { conversation } from "./messages.js";

function treeOrder(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const span of spans) {
    const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const ordered = [];
  const visit = (parent, depth) => {
    for (const span of (children.get(parent) || []).sort((a, b) => a.start_ns - b.start_ns)) {
      ordered.push([span, depth]);
      if (depth < 64) visit(span.span_id, depth + 1);
    }
  };
  visit(null, 0);
  return ordered;
}

function waterfall(spans, selected, onSelect) {
  const start = Math.min(...spans.map((s) => s.start_ns));
  const end = Math.max(...spans.map((s) => s.end_ns));
  const total = Math.max(end - start, 1);
  const pct = (ns) => `${Math.min(100, Math.max(0, (ns / total) * 100)).toFixed(3)}%`;
  const rows = treeOrder(spans).map(([span, depth]) => {
    const bar = h("div", {
      class: `bar kind-${span.span_kind || "none"}${span.status === "ERROR" ? " failed" : ""}`,
      style: `left:${pct(span.start_ns - start)};width:max(2px,${pct(span.duration_ns)})`,
    });
    const marker = span.ttft_ns !== null && span.ttft_ns !== undefined
      ? h("div", { class: "ttft", title: `time to first token ${duration(span.ttft_ns)}`, "data-test": "ttft-marker",
        style: `left:${pct(span.start_ns - start + span.ttft_ns)}` })
      : null;
    return h("div", {
      class: `wf-row${span.span_id === selected ? " selected" : ""}`, "data-span": span.span_id,
      onclick: () => onSelect(span.span_id),
    },
    h("div", { class: "wf-name", style: `padding-left:${0.4 + depth * 1.1}rem` },
      span.span_kind ? h("span", { class: `kind kind-${span.span_kind}` }, span.span_kind) : null,
      h("span", { class: "span-name" }, span.name),
      span.status === "ERROR" ? h("span", { class: "badge status-error" }, "error") : null),
    h("div", { class: "wf-track" }, bar, marker),
    h("div", { class: "wf-dur num" }, duration(span.duration_ns),
      span.ttft_ns !== null && span.ttft_ns !== undefined ? h("span", { class: "muted" }, ` · ttft ${duration(span.ttft_ns)}`) : null));
  });
  return h("div", { class: "waterfall", "data-test": "waterfall" },
    h("div", { class: "wf-row wf-head" }, h("div", { class: "wf-name" }, "Span"),
      h("div", { class: "wf-track" }, h("span", {}, "0"), h("span", { class: "right" }, duration(total))),
      h("div", { class: "wf-dur" }, "Duration")),
    rows);
}

function fact(label, value) {
  if (value === null || value === undefined || value === "" || value === "–") return null;
  return [h("dt", {}, label), h("dd", { "data-fact": label }, value)];
}

function section(title, ...content) {
  const body = content.flat().filter(Boolean);
  return body.length ? h("section", { class: "detail-section" }, h("h3", {}, title), body) : null;
}

function documents(docs) {
  if (!Array.isArray(docs)) return docs ? h("pre", {}, pretty(docs)) : null;
  return h("ol", { class: "documents", "data-test": "documents" }, docs.map((d) => h("li", {},
    h("div", { class: "doc-head" },
      d && d.score !== undefined && d.score !== null ? h("span", { class: "score" }, `score ${Number(d.score).toFixed(3)}`) : null,
      d && d.id !== undefined ? h("span", { class: "mono muted" }, ` ${d.id}`) : null),
    h("div", { class: "doc-body" }, pretty(d && typeof d === "object" && "content" in d ? d.content : d)))));
}

/** A free-form input or output value; folded away when the messages already show the content. */
function value(v, messages) {
  if (v === null || v === undefined) return null;
  const text = h("pre", { class: "value" }, pretty(v));
  return messages ? h("details", { class: "raw" }, h("summary", {}, "Raw value"), text) : text;
}

function attributeTable(attrs) {
  return h("table", { class: "attrs" }, Object.keys(attrs).sort().map((key) =>
    h("tr", {}, h("th", {}, key), h("td", {}, h("pre", {}, pretty(attrs[key]))))));
}

function spanDetail(span) {
  const d = span.detail;
  const tokens = span.input_tokens !== null || span.output_tokens !== null
    ? `${count(span.input_tokens)} in · ${count(span.output_tokens)} out · ${count(span.total_tokens)} total`
      + (d.cache_read_tokens ? ` · ${count(d.cache_read_tokens)} cached` : "")
      + (d.reasoning_tokens ? ` · ${count(d.reasoning_tokens)} reasoning` : "")
    : null;
  const costText = span.cost_usd !== null && span.cost_usd !== undefined
    ? `${cost(span.cost_usd)}${d.cost_input_usd !== null && d.cost_input_usd !== undefined ? ` (${cost(d.cost_input_usd)} in, ${cost(d.cost_output_usd)} out)` : ""}`
    : null;
  const models = [span.request_model, span.response_model].filter(Boolean);
  const sampling = d.sampling_reason ? `${d.sampling_reason} · counts as ${count(span.adjusted_count)}` : null;
  const request = Object.entries(d.request || {}).map(([k, v]) => `${k}=${pretty(v)}`).join(", ");
  return h("div", { class: "span-detail", "data-test": "span-detail", "data-span": span.span_id },
    h("h2", {}, span.name, " ", statusBadge(span.status)),
    h("dl", { class: "facts" },
      fact("Kind", [span.span_kind, span.operation].filter(Boolean).join(" · ")),
      fact("Service", span.service),
      fact("Provider", span.provider),
      fact("Model", models.length === 2 && models[0] !== models[1] ? `${models[0]} → ${models[1]}` : models[0]),
      fact("Started", time(span.start_ns)),
      fact("Duration", duration(span.duration_ns)),
      fact("TTFT", span.ttft_ns !== null ? duration(span.ttft_ns) : null),
      fact("User TTFT", d.user_ttft_ns ? duration(d.user_ttft_ns) : null),
      fact("Tokens", tokens),
      fact("Cost", costText),
      fact("Finish", Array.isArray(d.finish_reasons) ? d.finish_reasons.join(", ") : d.finish_reasons),
      fact("Request", request),
      fact("Sampling", sampling),
      fact("Error", span.error_type),
      fact("Status reason", d.status_reason),
      fact("Session", span.session_id),
      fact("User", span.user_id),
      fact("Framework", d.framework),
      fact("Scope", span.scope),
      fact("Span id", span.span_id)),
    section("System instructions", d.system_instructions ? conversation([{ role: "system", parts: Array.isArray(d.system_instructions) ? d.system_instructions : [{ type: "text", content: pretty(d.system_instructions) }] }]) : null),
    section("Input", d.input_messages ? conversation(d.input_messages) : null, value(d.input_value, d.input_messages)),
    section("Output", d.output_messages ? conversation(d.output_messages) : null, value(d.output_value, d.output_messages)),
    section("Tool call", d.tool_name ? h("div", {}, h("b", {}, d.tool_name), d.tool_call_id ? h("span", { class: "muted" }, ` ${d.tool_call_id}`) : null) : null,
      d.tool_arguments !== null && d.tool_arguments !== undefined ? [h("h4", {}, "Arguments"), h("pre", {}, pretty(d.tool_arguments))] : null,
      d.tool_result !== null && d.tool_result !== undefined ? [h("h4", {}, "Result"), h("pre", {}, pretty(d.tool_result))] : null),
    section("Retrieval", d.retrieval_query ? h("div", {}, "Query: ", h("q", {}, d.retrieval_query)) : null,
      d.documents ? documents(d.documents) : null),
    section("Tools offered", d.tool_definitions ? h("pre", {}, pretty(d.tool_definitions)) : null),
    section("Events", span.events.length ? h("ul", { class: "events" }, span.events.map((e) => h("li", {},
      h("b", {}, e.name), h("span", { class: "muted" }, ` +${duration(e.time_ns - span.start_ns)}`),
      Object.keys(e.attributes || {}).length ? attributeTable(e.attributes) : null))) : null),
    h("details", { class: "raw" }, h("summary", {}, `Raw attributes (${Object.keys(span.attributes).length})`), attributeTable(span.attributes)),
    h("details", { class: "raw" }, h("summary", {}, "Resource"), attributeTable(span.resource)));
}

export async function showTrace(view, traceId, spanId) {
  const data = await get(`/api/traces/${encodeURIComponent(traceId)}`);
  const spans = data.spans;
  const root = spans.find((s) => !s.parent_span_id) || spans[0];
  const tokens = spans.filter((s) => ["chat", "text_completion", "generate_content", "embeddings"].includes(s.operation));
  const sum = (key) => tokens.reduce((n, s) => n + (s[key] || 0), 0);
  const detail = h("div", { class: "detail-pane" });
  const selectSpan = (id) => {
    const span = spans.find((s) => s.span_id === id) || root;
    for (const rowNode of view.querySelectorAll(".wf-row[data-span]")) rowNode.classList.toggle("selected", rowNode.dataset.span === span.span_id);
    clear(detail).appendChild(spanDetail(span));
    history.replaceState(null, "", `#/trace/${data.trace_id}/${span.span_id}`);
  };
  view.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/traces" }, "Traces"), " / ", h("span", { class: "mono" }, data.trace_id)),
    h("h1", {}, root.name, " ", statusBadge(spans.some((s) => s.status === "ERROR") ? "ERROR" : root.status)),
    h("div", { class: "summary" },
      h("span", {}, time(root.start_ns)), h("span", {}, `${spans.length} spans`), h("span", {}, duration(root.duration_ns)),
      tokens.length ? h("span", {}, `${count(sum("input_tokens"))} in · ${count(sum("output_tokens"))} out tokens`) : null,
      tokens.some((s) => s.cost_usd !== null) ? h("span", {}, cost(sum("cost_usd"))) : null,
      root.service ? h("span", {}, root.service) : null,
      root.session_id ? h("a", { href: `#/session/${encodeURIComponent(root.session_id)}` }, `session ${root.session_id}`) : null),
    h("div", { class: "trace-layout" }, waterfall(spans, spanId, selectSpan), detail));
  selectSpan(spanId || root.span_id);
  return null;
}
