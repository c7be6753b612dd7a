// Small SVG line charts: one line per series, time on x, gaps where a bucket has no value.
import { s, h, clock } from "./dom.js";

export const PALETTE = ["#4f6bed", "#e8833a", "#2aa876", "#d64f7f", "#8a5cd0", "#c9a227", "#2b9dc9", "#7a8a99"];
const W = 460;
const H = 180;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

/**
 * series: [{key, color, values: [[t_ns, value|null], ...]}]; format: value -> label.
 */
export function lineChart({ title, series, from, to, format }) {
  const values = series.flatMap((line) => line.values.map(([, v]) => v)).filter((v) => v !== null && v !== undefined);
  const max = values.length ? Math.max(...values) : 0;
  const top = max > 0 ? max * 1.1 : 1;
  const x = (t) => PAD.left + ((t - from) / Math.max(to - from, 1)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1].map((f) => [
    s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f), class: "grid" }),
    s("text", { x: PAD.left - 6, y: y(top * f) + 4, class: "axis", "text-anchor": "end" }, format(top * f)),
  ]);
  const ticks = [0, 1 / 3, 2 / 3, 1].map((f) => from + f * (to - from)).map((t, i) =>
    s("text", { x: x(t), y: H - 6, class: "axis", "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle" }, clock(t).slice(0, 5)));
  const lines = series.map((line) => {
    const segments = [];
    let current = [];
    for (const [t, v] of line.values) {
      if (v === null || v === undefined) {
        if (current.length) segments.push(current);
        current = [];
      } else current.push([x(t), y(v), t, v]);
    }
    if (current.length) segments.push(current);
    return s("g", { class: "series" },
      segments.map((seg) => s("polyline", { points: seg.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "), stroke: line.color, fill: "none", "stroke-width": 2 })),
      segments.flat().map(([px, py, t, v]) => s("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5, fill: line.color },
        s("title", {}, `${line.key} · ${clock(t)} · ${format(v)}`))));
  });
  return h("figure", { class: "chart", "data-test": "chart" },
    h("figcaption", {}, title),
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, grid, ticks, lines,
      values.length ? null : s("text", { x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle" }, "no data")));
}

export function legend(series) {
  return h("div", { class: "legend" }, series.map((line) => h("span", { class: "legend-item" },
    h("span", { class: "swatch", style: `background:${line.color}` }), line.key)));
}
