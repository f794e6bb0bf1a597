// Dashboard: refresh the rows (htmx) when the event stream says something changed,
// and keep call durations ticking.
(function () {
  "use strict";
  let pending = null;
  document.addEventListener("anyreach:conversation", () => {
    clearTimeout(pending); // several events in a burst give one refresh
    pending = setTimeout(() => document.body.dispatchEvent(new Event("arl-refresh")), 150);
  });
  document.addEventListener("anyreach:stream-open", () => {
    const status = document.getElementById("stream-status");
    if (status) status.textContent = "Updates live.";
    document.body.dispatchEvent(new Event("arl-refresh")); // catch up after a reconnect
  });

  const pad = (n) => String(n).padStart(2, "0");
  function tick() {
    document.querySelectorAll("[data-since]").forEach((cell) => {
      const since = Date.parse(cell.dataset.since);
      const until = cell.dataset.until ? Date.parse(cell.dataset.until) : Date.now();
      const s = Math.max(0, Math.floor((until - since) / 1000));
      cell.textContent = `${Math.floor(s / 60)}:${pad(s % 60)}`;
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
  function start() {
    tick();
    if (window.AnyReachListenPanel) window.AnyReachListenPanel.startEventStream();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
