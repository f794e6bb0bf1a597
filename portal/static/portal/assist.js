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
//   panel of the call, where it was given (by time, the panel's own rule).
// The markup of a guidance line is anyreach_listen/_transcript_lines.html's.
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

  // ---- the event stream ----

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
  document.addEventListener("anyreach:stream-open", () => {
    document.querySelectorAll("[data-presence]").forEach(refreshPresence);
  });

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

  window.AnyReachPortalAssist = Object.freeze({ showGuidanceLine, refreshPresenceOf });
})();
