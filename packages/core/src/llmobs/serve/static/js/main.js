// Hash routing: #/traces?..., #/trace/<id>[/<span id>], #/sessions, #/session/<id>, #/dashboard?...
import { h, clear } from "./dom.js";
import { showTraces } from "./traces.js";
import { showTrace } from "./trace.js";
import { showSessions, showSession } from "./sessions.js";
import { showDashboard } from "./dashboard.js";

const main = document.getElementById("main");
let stopCurrent = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

async function route() {
  if (stopCurrent) stopCurrent();
  stopCurrent = null;
  const { parts, params } = parseHash();
  const page = parts[0] || "traces";
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === page || (link.dataset.nav === "traces" && page === "trace")
      || (link.dataset.nav === "sessions" && page === "session");
    link.classList.toggle("active", active);
  }
  const view = h("div", { class: "view" });
  clear(main).appendChild(view);
  try {
    if (page === "trace" && parts[1]) stopCurrent = await showTrace(view, parts[1], parts[2] || null);
    else if (page === "sessions") stopCurrent = await showSessions(view, params);
    else if (page === "session" && parts[1]) stopCurrent = await showSession(view, parts[1]);
    else if (page === "dashboard") stopCurrent = await showDashboard(view, params);
    else stopCurrent = await showTraces(view, params);
  } catch (error) {
    clear(view).appendChild(h("div", { class: "error-box" }, `Could not load this page: ${error.message}`));
  }
}

window.addEventListener("hashchange", route);
route();
