// The traces list: filters, newest first, paginated; the first page refreshes while the app writes.
import { get } from "./api.js";
import { h, clear, duration, count, cost, time, statusBadge } from "./dom.js";
import { poll } from "./poll.js";

const RANGES = [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["6h", "last 6 hours"],
  ["24h", "last 24 hours"], ["7d", "last 7 days"]];
const FILTERS = ["service", "model", "status", "session", "since", "q"];

function select(name, value, options) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function filterForm(params, facets) {
  const value = (name) => params.get(name) || "";
  const form = h("form", { class: "filters", "data-test": "filters" },
    h("label", {}, "Service ", select("service", value("service"),
      [["", "all"], ...facets.services.map((s) => [s, s])])),
    h("label", {}, "Model ", select("model", value("model"), [["", "all"], ...facets.models.map((m) => [m, m])])),
    h("label", {}, "Status ", select("status", value("status"), [["", "all"], ["ok", "ok"], ["error", "error"]])),
    h("label", {}, "Session ", h("input", { name: "session", value: value("session"), placeholder: "session id" })),
    h("label", {}, "Time ", select("since", value("since"), RANGES)),
    h("label", { class: "grow" }, "Search ", h("input", { name: "q", type: "search", value: value("q"),
      placeholder: "text in inputs, outputs, names" })),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const field = form.elements.namedItem(name);
      if (field && field.value) next.set(name, field.value);
    }
    location.hash = `#/traces?${next}`;
  });
  return form;
}

function row(trace) {
  const open = () => { location.hash = `#/trace/${trace.trace_id}`; };
  return h("tr", { class: "clickable", "data-trace": trace.trace_id, onclick: open },
    h("td", { class: "nowrap" }, time(trace.start_ns)),
    h("td", {}, h("a", { href: `#/trace/${trace.trace_id}`, class: "trace-name" }, trace.name),
      trace.kind ? h("span", { class: `kind kind-${trace.kind}` }, trace.kind) : null),
    h("td", {}, trace.service || "–"),
    h("td", { class: "num" }, count(trace.span_count)),
    h("td", { class: "num" }, duration(trace.duration_ns)),
    h("td", { class: "num" }, count(trace.total_tokens)),
    h("td", { class: "num" }, cost(trace.cost_usd)),
    h("td", {}, statusBadge(trace.status)),
    h("td", { class: "mono small" }, trace.session_id
      ? h("a", { href: `#/session/${encodeURIComponent(trace.session_id)}`, onclick: (e) => e.stopPropagation() },
        trace.session_id)
      : "–"));
}

export async function showTraces(view, params) {
  const facets = await get("/api/facets");
  const cursors = params.getAll("after");
  const query = Object.fromEntries(FILTERS.map((name) => [name, params.get(name)]));
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  view.append(
    h("h1", {}, "Traces"),
    filterForm(params, facets),
    h("table", { class: "list", "data-test": "traces" },
      h("thead", {}, h("tr", {}, ["Started", "Name", "Service", "Spans", "Duration", "Tokens", "Cost", "Status",
        "Session"].map((c) => h("th", {}, c)))),
      body),
    pager);

  const load = async () => {
    const page = await get("/api/traces", { ...query, after: cursors[cursors.length - 1], limit: 50 });
    clear(body).append(...page.traces.map(row));
    if (!page.traces.length) {
      body.append(h("tr", {}, h("td", { colspan: 9, class: "empty" },
        cursors.length ? "No older traces." : "No traces yet. Point an OpenTelemetry exporter at this server's "
          + "/v1/traces, or run `llmobs demo`.")));
    }
    const link = (label, list) => {
      const next = new URLSearchParams(params);
      next.delete("after");
      for (const c of list) next.append("after", c);
      return h("a", { href: `#/traces?${next}`, class: "button" }, label);
    };
    clear(pager).append(...[
      cursors.length ? link("← Newer", cursors.slice(0, -1)) : null,
      page.next ? link("Older →", [...cursors, page.next]) : null].filter(Boolean));
  };
  await load();
  return cursors.length ? null : poll(load);
}
