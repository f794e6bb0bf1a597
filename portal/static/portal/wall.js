// Listen wall: new live calls join as tiles without touching the running sessions.
// Calls come and go through the page's event stream ({% listen_assets %} includes
// anyreach_listen's events.js), tiles are mounted with the listen panel script.
// Tiles open with their transcript so far (server-rendered in the panel's markup;
// the panel adopts those lines, so live ones continue without duplicates). The
// lines said between that render and the panel's SDK session joining (or while it
// reconnects) come from the event stream ("anyreach:transcript", final lines, for
// people who may read them): each goes to its call's tile, whose panel merges it by
// (role, segment id), so a line the session heard too shows once. A tile whose call
// raises an alert ("anyreach:alert") is highlighted with the alert's severity (the
// highest so far).
(function () {
  "use strict";
  const wall = document.getElementById("wall");
  if (!wall) return;
  const limit = Number(wall.dataset.limit);
  const empty = wall.querySelector(".wall__empty");
  const tiles = () => wall.querySelectorAll("[data-wall-tile]");
  const tileOf = (id) => wall.querySelector(`[data-wall-tile="${CSS.escape(id)}"]`);

  // Tiles being fetched, each with the lines said meanwhile (its fragment may have been
  // rendered before them): they join its panel once it is mounted.
  const fetching = new Map(); // conversation id -> lines

  async function addTile(id) {
    if (tileOf(id) || fetching.has(id) || tiles().length >= limit) return;
    const lines = [];
    fetching.set(id, lines);
    let html;
    try {
      const url = wall.dataset.tileUrl.replace("00000000-0000-0000-0000-000000000000", id);
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return; // not visible to this user, or gone
      html = await response.text();
    } finally {
      fetching.delete(id);
    }
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    const tile = holder.firstElementChild;
    if (!tile || tileOf(id)) return;
    wall.insertBefore(tile, empty);
    empty.hidden = true;
    window.AnyReachListenPanel.mount(tile);
    const panel = tile.querySelector("[data-arl-panel]");
    if (panel) window.AnyReachListenPanel.addSegments(panel, lines);
  }

  document.addEventListener("anyreach:transcript", (event) => {
    const { conversation, segment } = event.detail || {};
    if (!conversation || !segment) return;
    const line = { ...segment, final: true }; // the stream sends finals only
    const waiting = fetching.get(conversation.id);
    if (waiting) waiting.push(line);
    const tile = tileOf(conversation.id);
    const panel = tile && tile.querySelector("[data-arl-panel]");
    if (panel) window.AnyReachListenPanel.addSegments(panel, [line]);
  });

  // An ended call shows "Ended" for a moment, then leaves room for new calls.
  const ENDED_TILE_MS = 8000;
  function retireTile(id) {
    const tile = tileOf(id);
    if (!tile || tile.dataset.retiring) return;
    tile.dataset.retiring = "true";
    setTimeout(async () => {
      const panel = tile.querySelector("[data-arl-panel]");
      if (panel) await window.AnyReachListenPanel.unmount(panel);
      tile.remove();
      empty.hidden = tiles().length > 0;
    }, ENDED_TILE_MS);
  }

  const SEVERITY_RANK = { info: 1, warning: 2, critical: 3 };
  const SEVERITY_LABEL = { info: "Info", warning: "Warning", critical: "Critical" };
  document.addEventListener("anyreach:alert", (event) => {
    const { conversation, alert } = event.detail || {};
    if (!conversation || !alert) return;
    const tile = tileOf(conversation.id);
    if (!tile) return;
    const current = tile.dataset.alertSeverity;
    const rank = (severity) => SEVERITY_RANK[severity] || 0;
    const top = rank(alert.severity) >= rank(current) ? alert.severity : current;
    tile.classList.add("wall__tile--alert");
    tile.dataset.alertSeverity = top;
    const note = tile.querySelector("[data-wall-alert]");
    if (note) {
      // The newest alert, with its phrase for people who may read it (all who may
      // listen may: the server strips it for the others).
      const label = SEVERITY_LABEL[alert.severity] || alert.severity;
      note.textContent = alert.phrase ? `${label} alert: “${alert.phrase}”` : `${label} alert`;
      note.dataset.severity = alert.severity;
      note.hidden = false;
    }
  });

  document.addEventListener("anyreach:conversation", (event) => {
    const conversation = event.detail && event.detail.conversation;
    if (!conversation) return;
    if (conversation.is_active) addTile(conversation.id).catch(() => {});
    else retireTile(conversation.id);
  });
})();
