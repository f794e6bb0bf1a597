// The conversation page's transcript catch-up (portal/transcript.py), for people who
// may read the transcript of a live call:
// - the page arrives with what was said so far (server-rendered lines);
// - final lines said since arrive by the event stream ("anyreach:transcript");
// - when the stream (re)opens, the page fetches the transcript again, to close the
//   gap between the render and the socket (or a reconnect), carrying the page's
//   read token so the refetch continues the page's audited read;
// - once Listen is on, the SDK's live lines go in the same list (the panel).
// Every source merges by (role, segment id): a line is never shown twice, a final
// line never changes, an interim one takes newer text.
(function () {
  "use strict";

  const root = document.querySelector("[data-transcript-catchup]");
  if (!root) return;
  const conversationId = root.dataset.conversation;
  const transcriptUrl = root.dataset.transcriptUrl;
  let readToken = root.dataset.readToken || "";
  const TOKEN_HEADER = "X-Anyreach-Read-Token";

  function list() {
    return root.querySelector("[data-arl-transcript]");
  }

  function lineOf(target, role, id) {
    for (const item of target.querySelectorAll("li[data-segment-id]")) {
      if (item.dataset.role === role && item.dataset.segmentId === id) return item;
    }
    return null;
  }

  function makeLine(role, id) {
    const item = document.createElement("li");
    item.className = "arl-line";
    item.dataset.role = role;
    item.dataset.segmentId = id;
    const who = document.createElement("span");
    who.className = "arl-line__role";
    who.textContent = role === "agent" ? "Agent" : "Caller";
    const said = document.createElement("span");
    said.className = "arl-line__text";
    item.append(who, said);
    return item;
  }

  const START = "start";
  // Put one segment in the list; `after`: the line it follows in spoken order, START
  // (said before every line listed), or null (the end). Returns the segment's line.
  function merge(segment, after) {
    const target = list();
    if (!target || !segment || !segment.id || !segment.role) return null;
    let item = lineOf(target, segment.role, segment.id);
    if (!item) {
      const empty = target.querySelector("[data-arl-empty]");
      if (empty) empty.remove();
      item = makeLine(segment.role, segment.id);
      if (after === START) target.prepend(item);
      else if (after && after.parentNode === target) after.after(item);
      else target.append(item);
    } else if (!item.classList.contains("is-interim")) {
      return item; // final: settled for good
    }
    item.classList.toggle("is-interim", !segment.final);
    item.querySelector(".arl-line__text").textContent = segment.text;
    return item;
  }

  // The server-rendered catch-up goes in the panel's list.
  function adoptPreloaded() {
    const preload = root.querySelector("[data-transcript-preload]");
    if (!preload) return;
    let previous = START; // said before anything a live source may have added already
    for (const line of preload.querySelectorAll("li[data-segment-id]")) {
      previous = merge(segmentOf(line), previous) || previous;
    }
    preload.remove();
  }

  function segmentOf(line) {
    const text = line.querySelector(".arl-line__text");
    return {
      id: line.dataset.segmentId,
      role: line.dataset.role,
      text: text ? text.textContent : "",
      final: !line.classList.contains("is-interim"),
    };
  }

  let fetching = null;
  async function catchUp() {
    if (fetching) return fetching; // one refetch at a time
    fetching = (async () => {
      const url = new URL(transcriptUrl, location.href);
      if (readToken) url.searchParams.set("read", readToken);
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      readToken = response.headers.get(TOKEN_HEADER) || readToken;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      // Spoken order: a line the socket missed goes right after the one said before it.
      let previous = START;
      for (const line of doc.querySelectorAll("li[data-segment-id]")) {
        previous = merge(segmentOf(line), previous) || previous;
      }
    })()
      .catch(() => {}) // the next (re)open tries again
      .finally(() => {
        fetching = null;
      });
    return fetching;
  }

  function mine(detail) {
    return detail && detail.conversation && detail.conversation.id === conversationId;
  }

  document.addEventListener("anyreach:transcript", (event) => {
    if (!mine(event.detail)) return;
    const segment = event.detail.segment;
    if (segment) merge({ ...segment, final: true }, null);
  });

  document.addEventListener("anyreach:stream-open", () => catchUp());

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", adoptPreloaded);
  } else {
    adoptPreloaded();
  }
})();
