// Building DOM nodes from data that may be hostile (prompts, model output, attribute values):
// text only ever becomes a text node, attributes go through setAttribute, and no HTML string is
// ever parsed. Links are built by the console itself and always stay inside it.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      node.style.cssText = value; // through CSSOM: the page's CSP forbids inline style attributes
    } else if (name === "href" && !String(value).startsWith("#") && !String(value).startsWith("/api")) {
      throw new Error("console links stay inside the console");
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  return node;
}

/** An HTML element: h("td", {class: "num"}, "42"). */
export function h(tag, attrs, ...children) {
  return append(setAttributes(document.createElement(tag), attrs), children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return append(setAttributes(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// --- formatting -----------------------------------------------------------------------------------

export function duration(ns) {
  if (ns === null || ns === undefined) return "–";
  if (ns < 1e6) return `${(ns / 1e3).toFixed(0)}µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e7 ? 1 : 0)}ms`;
  const seconds = ns / 1e9;
  if (seconds < 60) return `${seconds.toFixed(2)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
}

export function seconds(value) {
  return value === null || value === undefined ? "–" : duration(value * 1e9);
}

export function count(n) {
  if (n === null || n === undefined) return "–";
  return Math.round(n).toLocaleString("en-US");
}

export function cost(usd) {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0";
  if (usd < 0.0001) return "<$0.0001";
  return usd >= 1 ? `$${usd.toFixed(2)}` : `$${usd.toPrecision(2)}`;
}

export function percent(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  return ratio === 0 ? "0%" : `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)}%`;
}

export function time(ns) {
  const d = new Date(ns / 1e6);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function clock(ns) {
  return time(ns).slice(11);
}

/** JSON-ish data as readable text (pretty JSON, or the string itself). */
export function pretty(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function statusBadge(status) {
  const kind = status === "ERROR" ? "error" : status === "OK" ? "ok" : "unset";
  return h("span", { class: `badge status-${kind}` }, status === "ERROR" ? "error" : status === "OK" ? "ok" : "–");
}
