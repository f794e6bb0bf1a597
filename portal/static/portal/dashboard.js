// Dashboard: refresh the rows (htmx) when the event stream (anyreach_listen's
// events.js, via {% listen_assets %}) says a call changed, keep call durations
// ticking, show each call's last line as it is said ("anyreach:transcript", only
// sent to people who may read it), and on each alert ("anyreach:alert") update
// the row's badge and show a notice whose Listen opens the call's listen panel in
// a dialog and starts its audio, all within the one click. A join or leave
// ("listener.updated") refreshes the rows too: their "Listening" counts. The dialog's panel
// opens with the lines recorded when the server rendered it and hears the call's
// lines once its SDK session has joined; the lines said in between (or while the
// session reconnects) reach it from the event stream ("anyreach:transcript"), the
// panel merging them by (role, segment id) so none shows twice. A takeover
// ("anyreach:takeover") refreshes the rows: their "Taken over by …".
// The rows are the first calls only (portal/paging.py): Show more, clicked or scrolled
// into view, asks for more, and every later refresh asks for as many; a refresh puts
// the focus back where it was in the rows.
(function () {
  "use strict";
  const SEVERITY_RANK = { info: 1, warning: 2, critical: 3 };
  const SEVERITY_LABEL = { info: "Info", warning: "Warning", critical: "Critical" };
  const MAX_NOTICES = 5;
  const ZERO_ID = "00000000-0000-0000-0000-000000000000";

  let pending = null;
  const refreshSoon = () => {
    clearTimeout(pending); // several events in a burst give one refresh
    pending = setTimeout(() => document.body.dispatchEvent(new Event("arl-refresh")), 150);
  };
  // Guidance has its own event ("anyreach:guidance"): only assist.js, in the dialog.
  document.addEventListener("anyreach:conversation", refreshSoon);
  // A takeover started or ended: the rows say who holds each call ("Taken over by …").
  document.addEventListener("anyreach:takeover", refreshSoon);
  const streamStatus = (text) => {
    const status = document.getElementById("stream-status");
    if (status) status.textContent = text;
  };
  const streamOpen = () => {
    streamStatus("Updates live.");
    document.body.dispatchEvent(new Event("arl-refresh")); // catch up after a reconnect
  };
  const streamClosed = () => streamStatus("Live updates paused; reconnecting…");
  // Also when the stream opened (or closed) before this script ran (events.js).
  if (window.AnyReachEvents) {
    window.AnyReachEvents.onOpen(streamOpen);
    window.AnyReachEvents.onClosed(streamClosed);
  }

  const row = (id) => document.querySelector(`tr[data-conversation="${CSS.escape(id)}"]`);

  // ---- the last line said in each call ----

  // The newest line seen per call, put back after an htmx refresh rendered before it.
  const lastLines = new Map();
  const when = (iso) => (iso ? Date.parse(iso) : 0);

  function showLastLine(id, segment) {
    const cell = row(id) && row(id).querySelector("[data-last-line]");
    if (!cell || when(cell.dataset.at) > when(segment.at)) return;
    const who = document.createElement("span");
    who.className = "last-line__role";
    who.dataset.role = segment.role;
    who.textContent = segment.role === "agent" ? "Agent" : "Caller";
    const said = document.createElement("span");
    said.className = "last-line__text";
    said.textContent = segment.text;
    cell.replaceChildren(who, " ", said);
    cell.dataset.at = segment.at || "";
  }

  document.addEventListener("anyreach:transcript", (event) => {
    const { conversation, segment } = event.detail || {};
    if (!conversation || !segment) return;
    const known = lastLines.get(conversation.id);
    if (!known || when(segment.at) >= when(known.at)) lastLines.set(conversation.id, segment);
    showLastLine(conversation.id, segment);
    toDialog(conversation.id, { ...segment, final: true }); // the stream sends finals only
  });

  document.addEventListener("htmx:afterSwap", () => {
    for (const [id, segment] of lastLines) showLastLine(id, segment);
  });

  // ---- more rows, and the focus through refreshes ----

  const rowsBody = () => document.getElementById("rows");
  const shownRows = () => document.querySelectorAll("#rows tr[data-conversation]");
  const actionsOf = (tr) => Array.from(tr.querySelectorAll("a[href], button"));
  let rowsAsked = null; // Show more's count; without it the server's first rows
  let focusNewRowAt = null; // Show more was pressed: the first new row takes the focus
  let focusedInRows = null; // where the focus was in the rows the refresh replaces

  function showMore(button, pressed) {
    const asked = Number(button.dataset.moreRows);
    if (rowsAsked !== null && rowsAsked >= asked) return; // asked already
    rowsAsked = asked;
    if (pressed) focusNewRowAt = shownRows().length;
    button.textContent = "Loading more…";
    document.body.dispatchEvent(new Event("arl-refresh"));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("#rows [data-more-rows]");
    if (button) showMore(button, true);
  });

  // Scrolled into view (or nearly), Show more loads by itself, unless it has the focus:
  // someone on it with the keyboard presses it when they choose.
  const nearby =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          (entries) => {
            for (const entry of entries) {
              if (entry.isIntersecting && document.activeElement !== entry.target) {
                showMore(entry.target, false);
              }
            }
          },
          { rootMargin: "0px 0px 200px 0px" },
        )
      : null;
  function watchMore() {
    if (!nearby) return;
    nearby.disconnect(); // the replaced button's
    const button = document.querySelector("#rows [data-more-rows]");
    if (button) nearby.observe(button);
  }

  document.addEventListener("htmx:configRequest", (event) => {
    if (event.target === rowsBody()) {
      if (rowsAsked !== null) event.detail.parameters.rows = String(rowsAsked);
    } else if (event.target.id === "filters") {
      rowsAsked = null; // other filters: their first rows
      focusNewRowAt = null;
    }
  });

  document.addEventListener("htmx:beforeSwap", (event) => {
    if (!forRows(event)) return;
    focusedInRows = null;
    const active = document.activeElement;
    const tr = active && rowsBody().contains(active) && active.closest("tr");
    if (tr) {
      focusedInRows = {
        id: tr.dataset.conversation,
        more: tr.hasAttribute("data-rows-more"),
        index: actionsOf(tr).indexOf(active),
        position: Array.prototype.indexOf.call(shownRows(), tr), // -1: Show more's row
      };
    }
  });

  function focusIn(tr, index) {
    if (!tr) return false;
    const actions = actionsOf(tr);
    const target = actions[Math.min(Math.max(index, 0), actions.length - 1)];
    if (target) target.focus();
    return Boolean(target);
  }

  document.addEventListener("htmx:afterSwap", (event) => {
    if (!forRows(event)) return;
    const rows = shownRows();
    const more = rowsBody().querySelector("[data-rows-more]");
    // A response rendered before Show more asked (a refresh in flight) leaves it pending.
    const answered = !more || rowsAsked === null || Number(more.dataset.rowsAsked) >= rowsAsked;
    if (focusNewRowAt !== null && answered) {
      const at = focusNewRowAt;
      focusNewRowAt = null;
      focusedInRows = null;
      if (!focusIn(rows[at], 0)) focusIn(more, 0) || focusIn(rows[rows.length - 1], 0);
    } else if (focusedInRows) {
      const { id, more: onMore, index, position } = focusedInRows;
      focusedInRows = null;
      const again = onMore ? more : id && row(id);
      // Its row (or Show more) is gone: the row now in its place, or the last one, takes
      // the focus, which stays in the table.
      const near = rows[position < 0 ? rows.length - 1 : Math.min(position, rows.length - 1)];
      if (!focusIn(again, index)) focusIn(near, 0);
    }
    watchMore();
  });
  watchMore();

  // ---- alerts: the row's badge and a notice ----

  // The badge bumped (false: the call has no row on the page yet).
  function bumpBadge(id, severity) {
    const badge = row(id) && row(id).querySelector("[data-alert-badge]");
    if (!badge) return false;
    const count = Number(badge.dataset.count || 0) + 1;
    const current = badge.dataset.severity;
    const top =
      (SEVERITY_RANK[severity] || 0) > (SEVERITY_RANK[current] || 0) ? severity : current;
    badge.dataset.count = String(count);
    badge.dataset.severity = top;
    badge.className = `alert-badge alert-badge--${top}`;
    badge.textContent = `${count} alert${count === 1 ? "" : "s"} · ${SEVERITY_LABEL[top] || top}`;
    badge.hidden = false;
    return true;
  }

  // The rows' refreshes (htmx) in flight: one rendered before an alert was raised would
  // undo its badge's bump, so only then are the rows fetched again after an alert (not
  // on every alert, by every supervisor's page). A request htmx never reports back
  // (e.g. one a listener cancelled) leaves the count up: every alert then refetches.
  let rowsInFlight = 0;
  let refetchAfterRows = false;
  const forRows = (event) => {
    const target = event.detail && event.detail.target;
    return Boolean(target) && target.id === "rows";
  };
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (forRows(event)) rowsInFlight += 1;
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!forRows(event)) return;
    rowsInFlight = Math.max(0, rowsInFlight - 1);
    if (refetchAfterRows && rowsInFlight === 0) {
      refetchAfterRows = false;
      refreshSoon();
    }
  });

  const notices = () => document.getElementById("alert-notices");
  const urlFor = (template, id) => template.replace(ZERO_ID, id);

  function showNotice(message) {
    const region = notices();
    if (!region) return;
    const { conversation, alert } = message;
    const severity = alert.severity;
    const notice = document.createElement("div");
    notice.className = `toast toast--${severity}`;
    notice.dataset.alertNotice = conversation.id;
    notice.dataset.severity = severity;

    const title = document.createElement("p");
    title.className = "toast__title";
    const label = document.createElement("strong");
    label.textContent = `${SEVERITY_LABEL[severity] || severity} alert`;
    const call = document.createElement("a");
    call.href = urlFor(region.dataset.conversationUrl, conversation.id);
    call.textContent =
      `${conversation.caller_label || "Unknown caller"} with ${conversation.agent_label || "agent"}`;
    title.append(label, " in ", call);
    notice.append(title);

    // The phrase reaches only people who may read the transcript (the server strips it).
    if (alert.phrase) {
      const phrase = document.createElement("p");
      phrase.className = "toast__phrase";
      phrase.textContent = `Said: “${alert.phrase}”`;
      notice.append(phrase);
    }

    const actions = document.createElement("div");
    actions.className = "toast__actions";
    if (message.can_listen && conversation.is_active) {
      const listen = document.createElement("button");
      listen.type = "button";
      listen.className = "button button--small button--primary";
      listen.dataset.alertListen = conversation.id;
      listen.textContent = "Listen";
      listen.addEventListener("click", () => {
        notice.remove();
        openListen(conversation.id);
      });
      actions.append(listen);
    }
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "button button--small";
    dismiss.textContent = "Dismiss";
    dismiss.setAttribute("aria-label", "Dismiss this alert");
    dismiss.addEventListener("click", () => notice.remove());
    actions.append(dismiss);
    notice.append(actions);

    region.prepend(notice);
    while (region.children.length > MAX_NOTICES) region.lastElementChild.remove();
  }

  document.addEventListener("anyreach:alert", (event) => {
    const message = event.detail || {};
    if (!message.conversation || !message.alert) return;
    const bumped = bumpBadge(message.conversation.id, message.alert.severity);
    showNotice(message);
    if (!bumped) refreshSoon(); // a call the rows do not show yet
    else if (rowsInFlight) refetchAfterRows = true; // the server's counts win, once it is back
  });

  // ---- the listen dialog ----

  const dialog = () => document.getElementById("listen-dialog");

  // The call whose panel is being fetched, and the lines said meanwhile (the fragment
  // may have been rendered before them): they join the panel once it is mounted.
  let fetching = null; // { id, lines }
  function dialogPanel(id) {
    const body = dialog() && dialog().querySelector("[data-dialog-body]");
    return body && body.querySelector(`[data-arl-panel][data-conversation="${CSS.escape(id)}"]`);
  }
  function toDialog(id, line) {
    if (fetching && fetching.id === id) fetching.lines.push(line);
    const panel = dialogPanel(id);
    if (panel && window.AnyReachListenPanel) window.AnyReachListenPanel.addSegments(panel, [line]);
  }

  async function closePanel() {
    const body = dialog() && dialog().querySelector("[data-dialog-body]");
    if (!body) return;
    const panel = body.querySelector("[data-arl-panel]");
    body.replaceChildren();
    if (panel && window.AnyReachListenPanel) await window.AnyReachListenPanel.unmount(panel);
  }

  // Called in the Listen click: the panel is fetched, mounted and told to listen
  // while the click's user activation still holds, so its audio starts at once.
  let opening = 0;
  async function openListen(id) {
    const box = dialog();
    const region = notices();
    if (!box || !region) return;
    const attempt = ++opening;
    await closePanel();
    const body = box.querySelector("[data-dialog-body]");
    const status = document.createElement("p");
    status.className = "muted";
    status.textContent = "Opening the call…";
    body.replaceChildren(status);
    if (!box.open) box.showModal();
    const heard = { id, lines: [] };
    fetching = heard;
    let html;
    try {
      const response = await fetch(urlFor(region.dataset.listenUrl, id), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      html = await response.text();
      if (!response.ok) throw new Error(html || `The server refused (HTTP ${response.status}).`);
    } catch (error) {
      if (attempt === opening) status.textContent = error.message;
      return;
    } finally {
      if (fetching === heard) fetching = null;
    }
    if (attempt !== opening || !box.open) return; // closed or another Listen meanwhile
    body.innerHTML = html; // our own server-rendered fragment (no script runs from it)
    const panel = body.querySelector("[data-arl-panel]");
    if (!panel || !window.AnyReachListenPanel) return;
    window.AnyReachListenPanel.mount(body);
    window.AnyReachListenPanel.listen(panel);
    window.AnyReachListenPanel.addSegments(panel, heard.lines);
    // The fragment's takeover marks, into its panel (assist.js).
    if (window.AnyReachPortalAssist) window.AnyReachPortalAssist.adoptTakeoverMarks(body);
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-dialog-close]")) dialog().close();
  });
  if (dialog()) {
    // Esc, Close or a new page: the panel's session ends with the dialog.
    dialog().addEventListener("close", () => {
      opening += 1;
      closePanel();
    });
  }

  // ---- durations ----

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
