// The conversation page's transcript catch-up (portal/transcript.py), for people who
// may read the transcript of a live call:
// - the page arrives with what was said so far: the listen panel opens with those
//   lines ({% listen_panel … transcript=… %});
// - final lines said since arrive by the event stream ("anyreach:transcript");
// - when the stream (re)opens, the page reads the transcript again, to close the gap
//   between the render and the socket (or a reconnect), carrying the page's read
//   token so the refetch continues the page's audited read instead of adding one;
// - the SDK's live lines (interim and final) go in the same list, and so do the
//   guidance given to the agent and the takeovers' marks (assist.js; the catch-up
//   brings what it missed).
// The panel merges every source by (role, segment id): no line twice, a final never
// changes (AnyReachListenPanel.addSegments, ../anyreach_listen/panel/listen-panel.js).
// Alerts raised meanwhile join the page's list of the call's alerts.
(function () {
  "use strict";

  const root = document.querySelector("[data-transcript-catchup]");
  if (!root) return;
  const conversationId = root.dataset.conversation;
  const transcriptUrl = root.dataset.transcriptUrl;
  let readToken = root.dataset.readToken || "";
  const READ_HEADER = "X-Anyreach-Read-Token";

  function addSegments(segments) {
    const panel = root.querySelector(`[data-arl-panel][data-conversation="${conversationId}"]`);
    if (panel && window.AnyReachListenPanel) window.AnyReachListenPanel.addSegments(panel, segments);
  }

  function mine(detail) {
    return Boolean(detail && detail.conversation && detail.conversation.id === conversationId);
  }

  // The fragment's lines (anyreach_listen/_transcript_lines.html) as segments.
  function segmentsOf(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    return Array.from(doc.querySelectorAll(".arl-line[data-segment-id]"), (line) => ({
      id: line.dataset.segmentId,
      role: line.dataset.role,
      text: (line.querySelector(".arl-line__text") || line).textContent,
      final: !line.classList.contains("is-interim"),
      at: line.dataset.at,
    }));
  }

  // The fragment's guidance lines join the panel (assist.js keeps them one per id).
  function guidanceOf(html) {
    const assist = window.AnyReachPortalAssist;
    if (!assist) return;
    const doc = new DOMParser().parseFromString(html, "text/html");
    for (const line of doc.querySelectorAll(".arl-guidance[data-guidance-id]")) {
      assist.showGuidanceLine(conversationId, line);
    }
  }

  // The fragment's takeover marks join the panel too (assist.js, once each).
  function takeoversOf(html) {
    const assist = window.AnyReachPortalAssist;
    if (!assist) return;
    const doc = new DOMParser().parseFromString(html, "text/html");
    for (const template of doc.querySelectorAll("template[data-takeover-marks]")) {
      for (const item of template.content.querySelectorAll(".arl-takeover[data-takeover-id]")) {
        assist.showTakeoverMark(conversationId, item);
      }
    }
  }

  // One read at a time; a request during one runs once more after it (the stream may
  // have opened after that read started). data-catching-up says one is under way.
  let running = false;
  let again = false;
  function catchUp() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    root.toggleAttribute("data-catching-up", true);
    const headers = readToken ? { [READ_HEADER]: readToken } : {};
    fetch(transcriptUrl, { credentials: "same-origin", cache: "no-store", headers })
      .then(async (response) => {
        if (!response.ok) return; // e.g. access lost: the socket closes too
        readToken = response.headers.get(READ_HEADER) || readToken;
        const html = await response.text();
        addSegments(segmentsOf(html));
        guidanceOf(html); // given while the stream was down
        takeoversOf(html); // taken over or handed back meanwhile
      })
      .catch(() => {}) // the stream's next (re)open tries again
      .finally(() => {
        running = false;
        root.toggleAttribute("data-catching-up", again);
        if (again) {
          again = false;
          catchUp();
        }
      });
  }

  // Also when the stream opened before this script ran (events.js).
  if (window.AnyReachEvents) window.AnyReachEvents.onOpen(catchUp);

  document.addEventListener("anyreach:transcript", (event) => {
    if (!mine(event.detail) || !event.detail.segment) return;
    addSegments([{ ...event.detail.segment, final: true }]); // the stream sends finals only
  });

  // Alerts raised while the page is open (their phrase: transcript readers get it).
  const alertList = document.querySelector("[data-conversation-alerts]");
  const SEVERITY = { info: "Info", warning: "Warning", critical: "Critical" };
  // HH:MM:SS in the server's time zone, as the server renders the alerts listed already.
  function clock(iso, timeZone) {
    const options = { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" };
    try {
      return new Date(iso).toLocaleTimeString("en-GB", { ...options, timeZone });
    } catch (_) {
      return new Date(iso).toLocaleTimeString("en-GB", options); // a zone the browser lacks
    }
  }
  document.addEventListener("anyreach:alert", (event) => {
    const alert = mine(event.detail) && event.detail.alert;
    if (!alert || !alertList || alertList.querySelector(`[data-alert="${alert.id}"]`)) return;
    const empty = alertList.querySelector("[data-alerts-empty]");
    if (empty) empty.remove();
    const item = document.createElement("li");
    item.dataset.alert = alert.id;
    const mark = document.createElement("span");
    mark.className = `alert-mark alert-mark--${alert.severity}`;
    mark.textContent = SEVERITY[alert.severity] || alert.severity;
    const who = alert.role === "agent" ? "Agent" : alert.role === "user" ? "Caller" : "";
    const when = clock(alert.raised_at, alertList.dataset.timeZone);
    const words = [alert.phrase ? `“${alert.phrase}”` : "", who, when].filter(Boolean);
    item.append(mark, ` ${words.join(" · ")}`);
    alertList.append(item);
  });
})();
