// Sessions: traces grouped by session / conversation id, and one session read as a conversation.
import { get } from "./api.js";
import { h, clear, duration, count, cost, time, statusBadge } from "./dom.js";
import { bubble } from "./messages.js";

export async function showSessions(view, params) {
  const after = params.get("after");
  const data = await get("/api/sessions", { after, limit: 50 });
  const rows = data.sessions.map((s) => h("tr", { class: "clickable", onclick: () => { location.hash = `#/session/${encodeURIComponent(s.session_id)}`; } },
    h("td", { class: "nowrap" }, time(s.last_ns)),
    h("td", { class: "mono" }, h("a", { href: `#/session/${encodeURIComponent(s.session_id)}` }, s.session_id)),
    h("td", { class: "num" }, count(s.trace_count)),
    h("td", { class: "num" }, count(s.span_count)),
    h("td", { class: "num" }, s.error_count ? h("span", { class: "badge status-error" }, count(s.error_count)) : "0"),
    h("td", { class: "num" }, count((s.input_tokens || 0) + (s.output_tokens || 0))),
    h("td", { class: "num" }, cost(s.cost_usd)),
    h("td", {}, s.user_id || "–"),
    h("td", {}, s.service || "–")));
  view.append(
    h("h1", {}, "Sessions"),
    h("table", { class: "list", "data-test": "sessions" },
      h("thead", {}, h("tr", {}, ["Last active", "Session", "Traces", "Spans", "Errors", "Tokens", "Cost", "User", "Service"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No sessions yet: spans carry a session when the app sets a session or conversation id.")))),
    h("div", { class: "pager" },
      after ? h("a", { class: "button", href: "#/sessions" }, "← Most recent") : null,
      data.next ? h("a", { class: "button", href: `#/sessions?after=${encodeURIComponent(data.next)}` }, "Older →") : null));
  return null;
}

export async function showSession(view, sessionId) {
  const data = await get(`/api/sessions/${encodeURIComponent(sessionId)}`);
  const turns = data.turns.map((t) => h("div", { class: "turn", "data-test": "turn" },
    h("div", { class: "turn-meta" },
      h("a", { href: `#/trace/${t.trace_id}` }, t.name), " ", statusBadge(t.status),
      h("span", { class: "muted" }, ` ${time(t.start_ns)} · ${duration(t.duration_ns)} · ${count(t.total_tokens)} tokens · ${cost(t.cost_usd)}`)),
    bubble(t.input, "user"),
    bubble(t.output, "assistant")));
  view.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/sessions" }, "Sessions"), " / ", h("span", { class: "mono" }, data.session_id)),
    h("h1", {}, `Session ${data.session_id}`),
    h("div", { class: "summary" }, h("span", {}, `${data.turns.length} turns`),
      data.truncated ? h("span", { class: "muted" }, "showing the latest 200") : null),
    h("div", { class: "session" }, turns));
  return null;
}
