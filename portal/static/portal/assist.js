// Agent Assist in the portal (portal/assist.py), on the conversation page and in the
// dashboard's listen dialog (whose fragment arrives later: everything here is
// delegated from document):
// - presence: each [data-presence] line is fetched again when the event stream says
//   the call's listeners changed ("listener.updated"), the call changed, or the
//   stream (re)opened (joins and leaves meanwhile are not replayed);
// - the guidance box: posted with fetch; the answer (the delivery status) goes in the
//   box's status region (role=status: screen readers hear it), and its line joins
//   the call's transcript at once; any other answer (the login page after the session
//   expired, a CSRF or server error page) shows a fixed message, never its markup;
// - guidance lines: "anyreach:guidance" events (events.js, for "guidance.updated":
//   { type, event, conversation, guidance: { id, mode, text, status, reason, author,
//   created_at, delivered_at, latency_ms } }) add or update a guidance line in each
//   panel of the call, where it was given (by time, the panel's own rule);
// - takeovers: "anyreach:takeover" events (for "takeover.updated": { type, event,
//   conversation, takeover: { id, holder, started_at, ended_at, ended_by, … } }) fetch
//   the presence line again ("Taken over by Ana") and mark the panels' transcripts where
//   the takeover started and ended; the marks rendered with a page or fragment come in
//   <template data-takeover-marks> (portal/_takeover_marks.html) and are moved into the
//   panels the same way, once each.
// The markup of a guidance line is anyreach_listen/_transcript_lines.html's, of a
// takeover mark portal/_takeover_mark.html's.
(function () {
  "use strict";

  const FRAGMENT_HEADER = "X-Anyreach-Fragment";
  const MODE_LABEL = { whisper: "Whisper", say: "Say now" };
  const STATUS_LABEL = { pending: "Pending", delivered: "Delivered", failed: "Failed" };
  const SETTLED = new Set(["delivered", "failed"]);
  // When the answer is not the status fragment: its markup is never shown.
  const UNEXPECTED =
    "Not sent: the server's answer was not a delivery status (your session may have " +
    "expired). Reload the page and try again.";

  const byConversation = (selector, id) =>
    document.querySelectorAll(`${selector}="${CSS.escape(id)}"]`);

  // ---- presence ----

  // One fetch per line at a time; a change during one fetches once more after it.
  const fetching = new WeakMap(); // element -> { again }
  async function refreshPresence(element) {
    const state = fetching.get(element);
    if (state) {
      state.again = true;
      return;
    }
    fetching.set(element, { again: false });
    try {
      const response = await fetch(element.dataset.presenceUrl, {
        credentials: "same-origin",
        cache: "no-store",
      });
      // Not the fragment (access lost, or the login page after the session expired):
      // never parsed.
      if (!response.ok || response.headers.get(FRAGMENT_HEADER) !== "presence") return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.querySelector("[data-presence]");
      // The children only: the status region stays, so its change is announced.
      if (fresh) {
        element.replaceChildren(...fresh.childNodes);
        element.dataset.count = fresh.dataset.count || "0";
      }
    } catch (_) {
      // the stream's next (re)open tries again
    } finally {
      const again = fetching.get(element).again;
      fetching.delete(element);
      if (again) refreshPresence(element);
    }
  }

  function refreshPresenceOf(id) {
    byConversation("[data-presence", id).forEach(refreshPresence);
  }

  // ---- guidance lines in the transcript ----

  function guidanceItem(guidance) {
    const item = document.createElement("li");
    item.className = "arl-line arl-guidance";
    item.dataset.guidanceId = guidance.id;
    item.dataset.mode = guidance.mode;
    item.dataset.status = guidance.status;
    item.dataset.at = guidance.created_at;
    const role = document.createElement("span");
    role.className = "arl-line__role";
    const hidden = document.createElement("span");
    hidden.className = "arl-visually-hidden";
    hidden.textContent = "Guidance, ";
    role.append(hidden, MODE_LABEL[guidance.mode] || guidance.mode);
    const text = document.createElement("span");
    text.className = "arl-line__text";
    const meta = document.createElement("span");
    meta.className = "arl-guidance__meta";
    const status = document.createElement("span");
    status.dataset.guidanceStatus = "";
    status.textContent = STATUS_LABEL[guidance.status] || guidance.status;
    meta.append(`${guidance.author || ""} · `, status);
    text.append(guidance.text, meta);
    item.append(role, text);
    return item;
  }

  // Where a line given at `at` goes: before the first line said after it.
  function insertByTime(list, item) {
    const when = Date.parse(item.dataset.at);
    let before = null;
    if (!Number.isNaN(when)) {
      for (const line of list.querySelectorAll(".arl-line[data-at]")) {
        if (Date.parse(line.dataset.at) > when) {
          before = line;
          break;
        }
      }
    }
    list.insertBefore(item, before);
  }

  // Adds the guidance line `item` (or updates the one with its id) in every panel of
  // the call; a settled status never goes back to pending (events may cross).
  function showGuidanceLine(conversationId, item) {
    byConversation("[data-arl-panel][data-conversation", conversationId).forEach((panel) => {
      const list = panel.querySelector("[data-arl-transcript]");
      if (!list) return;
      const copy = item.cloneNode(true);
      const known = list.querySelector(
        `.arl-guidance[data-guidance-id="${CSS.escape(copy.dataset.guidanceId)}"]`,
      );
      if (known) {
        if (SETTLED.has(known.dataset.status) && !SETTLED.has(copy.dataset.status)) return;
        known.replaceWith(copy);
        return;
      }
      const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
      const empty = list.querySelector("[data-arl-empty]");
      if (empty) empty.remove();
      insertByTime(list, copy);
      if (follow) list.scrollTop = list.scrollHeight;
      const announce = panel.querySelector("[data-arl-announce]");
      const words = copy.querySelector(".arl-line__text").firstChild.textContent;
      const label = MODE_LABEL[copy.dataset.mode] || copy.dataset.mode;
      if (announce) announce.textContent = `Guidance, ${label}: ${words}`;
    });
  }

  // ---- takeover marks in the transcript ----

  // TakeoverEnd's labels (anyreach_listen/models.py), as portal/transcript.py says them.
  const ENDED_LABEL = {
    handed_back: "Handed back",
    left: "The supervisor left the call",
    access_lost: "The supervisor lost the right",
    call_ended: "The call ended",
    expired: "The token expired unrenewed",
  };

  // A takeover's start or end as a transcript line (none for one never paused).
  function takeoverItem(takeover, edge) {
    const at = edge === "started" ? takeover.started_at : takeover.ended_at;
    if (!takeover.id || !at || takeover.ended_by === "not_paused") return null;
    const item = document.createElement("li");
    item.className = "arl-line arl-takeover";
    item.dataset.takeoverId = takeover.id;
    item.dataset.edge = edge;
    if (edge === "ended") item.dataset.endedBy = takeover.ended_by || "";
    item.dataset.at = at;
    const role = document.createElement("span");
    role.className = "arl-line__role";
    role.textContent = "Takeover";
    const text = document.createElement("span");
    text.className = "arl-line__text";
    const holder = takeover.holder || "someone";
    if (edge === "started") {
      text.textContent = `Taken over by ${holder}`;
    } else {
      const meta = document.createElement("span");
      meta.className = "arl-takeover__meta";
      const how = ENDED_LABEL[takeover.ended_by] || takeover.ended_by || "";
      meta.textContent = how ? `${holder} · ${how}` : holder;
      text.append(takeover.ended_by === "call_ended" ? "Takeover ended" : "Handed back", meta);
    }
    item.append(role, text);
    return item;
  }

  // Adds the mark `item` to every panel of the call where it happened, once.
  function showTakeoverMark(conversationId, item) {
    byConversation("[data-arl-panel][data-conversation", conversationId).forEach((panel) => {
      const list = panel.querySelector("[data-arl-transcript]");
      if (!list) return;
      const selector =
        `.arl-takeover[data-takeover-id="${CSS.escape(item.dataset.takeoverId)}"]` +
        `[data-edge="${CSS.escape(item.dataset.edge)}"]`;
      if (list.querySelector(selector)) return;
      const copy = item.cloneNode(true);
      const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
      const empty = list.querySelector("[data-arl-empty]");
      if (empty) empty.remove();
      insertByTime(list, copy);
      if (follow) list.scrollTop = list.scrollHeight;
    });
  }

  // The marks a page or fragment was rendered with, in `scope`, into the panels.
  function adoptTakeoverMarks(scope) {
    (scope || document).querySelectorAll("template[data-takeover-marks]").forEach((template) => {
      for (const item of template.content.querySelectorAll(".arl-takeover[data-takeover-id]")) {
        showTakeoverMark(template.dataset.takeoverMarks, item);
      }
      template.remove();
    });
  }

  // ---- the event stream ----

  document.addEventListener("anyreach:takeover", (event) => {
    const detail = event.detail || {};
    if (!detail.conversation) return;
    refreshPresenceOf(detail.conversation.id); // "Taken over by …", or not any more
    const takeover = detail.takeover;
    if (!takeover) return;
    for (const edge of takeover.ended_at ? ["started", "ended"] : ["started"]) {
      const item = takeoverItem(takeover, edge);
      if (item) showTakeoverMark(detail.conversation.id, item);
    }
  });

  document.addEventListener("anyreach:guidance", (event) => {
    const detail = event.detail || {};
    const guidance = detail.guidance;
    if (!detail.conversation || !guidance || !guidance.id) return;
    showGuidanceLine(detail.conversation.id, guidanceItem(guidance));
  });
  document.addEventListener("anyreach:conversation", (event) => {
    // A join or leave, or the call ending (its listeners leave with it).
    const detail = event.detail || {};
    if (detail.conversation) refreshPresenceOf(detail.conversation.id);
  });
  const refreshAllPresence = () =>
    document.querySelectorAll("[data-presence]").forEach(refreshPresence);
  // Joins and leaves missed while the stream was down, or since the page was rendered
  // when it opened before this script ran (events.js).
  if (window.AnyReachEvents) window.AnyReachEvents.onOpen(refreshAllPresence);

  // ---- the guidance box ----

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest && event.target.closest("form[data-guidance-form]");
    if (!form) return;
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return; // one at a time
    const status = form.querySelector("[data-guidance-status]");
    const text = form.querySelector("textarea");
    const buttons = form.querySelectorAll("button[type=submit]");
    const body = new FormData(form, event.submitter); // the button says the mode
    form.setAttribute("aria-busy", "true");
    buttons.forEach((button) => (button.disabled = true));
    status.dataset.state = "sending";
    status.textContent =
      body.get("mode") === "say" ? "Sending; the agent will say it…" : "Sending the whisper…";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { [FRAGMENT_HEADER]: "1" },
      });
      const type = response.headers.get("Content-Type") || "";
      const answer = await response.text();
      // Only the status fragment is parsed: another page's styles and scripts would run
      // into the page's Content-Security-Policy, its markup never belongs in the box.
      const ours = response.headers.get(FRAGMENT_HEADER) === "guidance-status";
      const doc = ours ? new DOMParser().parseFromString(answer, "text/html") : null;
      const result = doc && doc.querySelector("[data-guidance-result]");
      const template = doc && doc.querySelector("template[data-guidance-line]");
      if (!result) {
        status.dataset.state = "failed";
        // The view's own refusal in words (a role that may not guide); nothing else.
        const refusal =
          type.startsWith("text/plain") && response.status === 403 && answer.length <= 300
            ? answer.trim().replace(/\.$/, "")
            : "";
        status.textContent = refusal ? `Not sent: ${refusal}.` : UNEXPECTED;
        return;
      }
      status.dataset.state = result.dataset.guidanceResult;
      status.replaceChildren(result);
      const line = template && template.content.querySelector(".arl-guidance");
      if (line) showGuidanceLine(form.dataset.guidanceForm, line);
      if (status.dataset.state === "delivered") text.value = ""; // failed: kept, to retry
    } catch (_) {
      status.dataset.state = "failed";
      status.textContent = "Not sent: the server could not be reached. Try again.";
    } finally {
      form.removeAttribute("aria-busy");
      buttons.forEach((button) => (button.disabled = false));
      text.focus();
    }
  });

  // The panels mount on DOMContentLoaded too; this script runs after them (deferred,
  // later in the page), and the marks go in their lists either way.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => adoptTakeoverMarks(document));
  } else {
    adoptTakeoverMarks(document);
  }

  window.AnyReachPortalAssist = Object.freeze({
    showGuidanceLine,
    refreshPresenceOf,
    showTakeoverMark,
    adoptTakeoverMarks,
  });
})();
