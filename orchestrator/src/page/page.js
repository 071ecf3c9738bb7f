// Keeps the status page live without a reload: polls /api/status every second (the same
// JSON as `cutover upgrade status --output json`) and, when the status changed, swaps in
// /fragment, the server's rendering of the page's <main>. Without this script the page is
// the same, only static.
"use strict";
(function () {
  const POLL_MS = 1000;
  const live = document.getElementById("live");
  const current = () => document.getElementById("status");
  if (!current()) return;
  let shown = current().dataset.updated;
  let failures = 0;

  function state(text, ok) {
    live.textContent = text;
    live.className = ok ? "live on" : "live off";
  }

  async function fetchText(path) {
    const answer = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (answer.status === 401) {
      window.location.assign("/");
      throw new Error("signed out");
    }
    if (!answer.ok) throw new Error(path + " answered " + answer.status);
    return answer.text();
  }

  async function poll() {
    try {
      const status = JSON.parse(await fetchText("/api/status"));
      if (String(status.updated_unix_ms) !== shown) {
        const html = await fetchText("/fragment");
        const next = new DOMParser().parseFromString(html, "text/html").getElementById("status");
        if (next) {
          current().replaceWith(document.adoptNode(next));
          shown = next.dataset.updated;
          document.title = next.dataset.title;
        }
      }
      failures = 0;
      state("live", true);
    } catch (error) {
      failures += 1;
      state("cannot reach the orchestrator (" + error.message + "): retrying", false);
    }
    setTimeout(poll, Math.min(POLL_MS * (1 + failures), 10000));
  }

  state("live", true);
  setTimeout(poll, POLL_MS);
})();
