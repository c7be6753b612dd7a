// GenAI messages (role + parts) rendered as a conversation: text, tool calls and their results,
// reasoning, and media by reference. Everything is text nodes: a prompt can contain anything.
import { h, pretty } from "./dom.js";

function part(p) {
  if (p === null || typeof p !== "object") return h("div", { class: "part text" }, String(p));
  switch (p.type) {
    case "text":
      return h("div", { class: "part text" }, p.content ?? "");
    case "tool_call":
      return h("div", { class: "part tool-call" },
        h("div", { class: "part-head" }, "calls ", h("b", {}, p.name || "tool"), p.id ? h("span", { class: "muted" }, ` ${p.id}`) : null),
        p.arguments !== undefined ? h("pre", {}, pretty(p.arguments)) : null);
    case "tool_call_response":
      return h("div", { class: "part tool-result" },
        h("div", { class: "part-head" }, "tool result", p.id ? h("span", { class: "muted" }, ` ${p.id}`) : null),
        h("pre", {}, pretty(p.response)));
    case "reasoning":
      return h("details", { class: "part reasoning" }, h("summary", {}, "reasoning"), h("div", { class: "text" }, p.content ?? ""));
    case "blob":
    case "uri":
    case "file":
      return h("div", { class: "part media" }, `[${p.modality || "media"}${p.mime_type ? ` ${p.mime_type}` : ""}] `,
        p.uri || p.file_id || p.content || "");
    default:
      return h("div", { class: "part other" }, h("pre", {}, pretty(p)));
  }
}

function message(m) {
  if (m === null || typeof m !== "object") return h("div", { class: "message role-other" }, h("div", { class: "part text" }, String(m)));
  const role = typeof m.role === "string" ? m.role : "message";
  const parts = Array.isArray(m.parts) ? m.parts : [];
  return h("div", { class: `message role-${["system", "user", "assistant", "tool"].includes(role) ? role : "other"}`, "data-role": role },
    h("div", { class: "role" }, role, m.name ? ` (${m.name})` : "", m.finish_reason ? h("span", { class: "muted" }, ` · ${m.finish_reason}`) : null),
    parts.map(part));
}

/** A list of GenAI messages (or anything else, shown as text) as a conversation. */
export function conversation(messages) {
  if (!Array.isArray(messages)) return h("div", { class: "conversation" }, message({ role: "text", parts: [{ type: "text", content: pretty(messages) }] }));
  return h("div", { class: "conversation", "data-test": "conversation" }, messages.map(message));
}

/** One turn's input or output: a GenAI message, or a plain value. */
export function bubble(value, role) {
  if (value && typeof value === "object" && Array.isArray(value.parts)) return message(value);
  return message({ role, parts: [{ type: "text", content: value === null || value === undefined ? "–" : pretty(value) }] });
}
