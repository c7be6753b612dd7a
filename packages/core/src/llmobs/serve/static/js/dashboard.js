// Per model or per service over time: calls, error rate, p50/p95 latency and TTFT, tokens, cost.
// Refreshes every few seconds, so it follows an application while it writes.
import { get } from "./api.js";
import { h, clear, count, cost, percent, seconds } from "./dom.js";
import { lineChart, legend, PALETTE } from "./charts.js";
import { poll } from "./poll.js";

const RANGES = [["15m", "15 min", 15 * 60], ["1h", "1 hour", 3600], ["6h", "6 hours", 6 * 3600], ["24h", "24 hours", 86400], ["7d", "7 days", 7 * 86400]];
const CHARTS = [
  ["Calls", (p) => p.calls, count, 0],
  ["Error rate", (p) => p.error_rate, percent, null],
  ["Latency p50", (p) => p.p50_duration_s, seconds, null],
  ["Latency p95", (p) => p.p95_duration_s, seconds, null],
  ["TTFT p50", (p) => p.p50_ttft_s, seconds, null],
  ["TTFT p95", (p) => p.p95_ttft_s, seconds, null],
  ["Tokens", (p) => p.input_tokens + p.output_tokens, count, 0],
  ["Cost", (p) => p.cost_usd, cost, 0],
];

function controls(by, range) {
  const link = (label, params, active) => h("a", { class: `button${active ? " active" : ""}`, href: `#/dashboard?${new URLSearchParams(params)}` }, label);
  return h("div", { class: "controls" },
    h("span", {}, "Group by "), link("model", { by: "model", range }, by === "model"), link("service", { by: "service", range }, by === "service"),
    h("span", { class: "gap" }, "Range "), RANGES.map(([value, label]) => link(label, { by, range: value }, value === range)));
}

function totals(series) {
  return h("table", { class: "list", "data-test": "dashboard-totals" },
    h("thead", {}, h("tr", {}, ["", "Calls", "Errors", "Error rate", "Input tokens", "Output tokens", "Cost"].map((c) => h("th", {}, c)))),
    h("tbody", {}, series.map((line) => {
      const sum = (key) => line.points.reduce((n, p) => n + (p[key] || 0), 0);
      return h("tr", {}, h("td", {}, h("span", { class: "swatch", style: `background:${line.color}` }), " ", line.key),
        h("td", { class: "num" }, count(sum("calls"))), h("td", { class: "num" }, count(sum("errors"))),
        h("td", { class: "num" }, percent(sum("calls") ? sum("errors") / sum("calls") : null)),
        h("td", { class: "num" }, count(sum("input_tokens"))), h("td", { class: "num" }, count(sum("output_tokens"))),
        h("td", { class: "num" }, cost(sum("cost_usd"))));
    })));
}

export async function showDashboard(view, params) {
  const by = params.get("by") === "service" ? "service" : "model";
  const range = RANGES.some(([value]) => value === params.get("range")) ? params.get("range") : "1h";
  const body = h("div", { class: "dashboard" });
  const updated = h("span", { class: "muted" });
  view.append(h("h1", {}, "Dashboard ", updated), controls(by, range), body);

  const load = async () => {
    const data = await get("/api/timeseries", { by, since: range, buckets: 30 });
    const series = data.series.map((line, i) => ({ ...line, key: line.key ?? "(none)", color: PALETTE[i % PALETTE.length] }));
    const buckets = Array.from({ length: data.buckets }, (_, i) => i);
    const middle = (i) => data.since_ns + (i + 0.5) * data.bucket_ns;
    const charts = CHARTS.map(([title, pick, format, missing]) => lineChart({
      title, format, from: data.since_ns, to: data.until_ns,
      series: series.map((line) => {
        const byBucket = new Map(line.points.map((p) => [p.bucket, p]));
        return { key: line.key, color: line.color, values: buckets.map((i) => [middle(i), byBucket.has(i) ? pick(byBucket.get(i)) : missing]) };
      }),
    }));
    clear(body).append(...[
      series.length ? legend(series) : h("p", { class: "empty" }, "No model calls in this range yet."),
      h("div", { class: "charts" }, charts),
      series.length ? totals(series) : null].filter(Boolean));
    updated.textContent = `· updated ${new Date().toLocaleTimeString()}`;
  };
  await load();
  return poll(load);
}
