// Dashboard: refresh the rows (htmx) when the event stream (anyreach_listen's
// events.js, {% listen_events_script %}) says something changed, and keep call
// durations ticking.
(function () {
  "use strict";
  let pending = null;
  document.addEventListener("anyreach:conversation", () => {
    clearTimeout(pending); // several events in a burst give one refresh
    pending = setTimeout(() => document.body.dispatchEvent(new Event("arl-refresh")), 150);
  });
  const streamStatus = (text) => {
    const status = document.getElementById("stream-status");
    if (status) status.textContent = text;
  };
  document.addEventListener("anyreach:stream-open", () => {
    streamStatus("Updates live.");
    document.body.dispatchEvent(new Event("arl-refresh")); // catch up after a reconnect
  });
  document.addEventListener("anyreach:stream-closed", () =>
    streamStatus("Live updates paused; reconnecting…"),
  );

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
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", tick);
  else tick();
})();
