// Re-run a refresh function every few seconds while the page is visible; returns a stop function.
export function poll(refresh, everyMs = 5000) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await refresh();
      } catch {
        // a failed refresh keeps what is shown; the next one may succeed
      }
    }
    if (!stopped) timer = setTimeout(tick, everyMs);
  };
  timer = setTimeout(tick, everyMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
