// The listen panel: one AnyReach.listen session per [data-arl-panel] element.
// Plain script, no build step. A panel ends itself when its conversation ends,
// as told by the page's event stream (../events.js, its DOM event
// "anyreach:conversation"); {% listen_assets %} includes both scripts.
//
// Transcript lines are told apart by role and segment id (as the frame does). A
// panel rendered with its recorded lines (_transcript_lines.html, the same markup
// as live lines) adopts them: a live segment already on the list replaces its
// line (an interim settles into its final, a final never goes back to interim),
// a new one is added in spoken order. AnyReachListenPanel.addSegments(element,
// segments) merges fetched lines ({id, role, text, final, at}) the same way.
(function () {
  "use strict";

  const SDK_WAIT_MS = 15000;
  const STATE_LABELS = {
    idle: "Not listening",
    connecting: "Connecting…",
    connected: "LIVE",
    disconnected: "Disconnected",
    ended: "Ended",
  };

  // ---- waiting for the SDK script (it loads async) ----

  function whenSdkReady() {
    if (window.AnyReach && window.AnyReach.listen) return Promise.resolve(window.AnyReach);
    return new Promise((resolve, reject) => {
      const script = document.querySelector("script[data-anyreach-sdk]");
      const timer = setTimeout(
        () => reject(new Error("The listen SDK did not load. Check your connection and reload.")),
        SDK_WAIT_MS,
      );
      const done = () => {
        clearTimeout(timer);
        if (window.AnyReach && window.AnyReach.listen) resolve(window.AnyReach);
        else reject(new Error("The listen SDK did not load. Reload the page."));
      };
      if (!script) {
        clearTimeout(timer);
        reject(new Error("The page does not include the listen SDK."));
        return;
      }
      script.addEventListener("load", done, { once: true });
      script.addEventListener("error", done, { once: true });
    });
  }

  function formatElapsed(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
  }

  // ---- one panel ----

  class ListenPanel {
    constructor(root) {
      this.root = root;
      this.conversationId = root.dataset.conversation;
      this.tokenUrl = root.dataset.tokenUrl;
      this.csrf = root.dataset.csrf;
      this.active = root.dataset.active === "true";
      this.startedAt = root.dataset.startedAt ? Date.parse(root.dataset.startedAt) : null;
      this.session = null;
      this.state = this.active ? "idle" : "ended";
      this.muted = true; // the panel attaches muted; Listen turns audio on
      // Every stop bumps the attempt, so a connect still in flight knows it is stale.
      this.attempt = 0;
      this.attaching = null;
      this.segments = new Map(); // segmentKey(role, id) -> its <li>
      this.el = {
        badge: root.querySelector("[data-arl-badge]"),
        elapsed: root.querySelector("[data-arl-elapsed]"),
        notice: root.querySelector("[data-arl-notice]"),
        transcript: root.querySelector("[data-arl-transcript]"),
        announce: root.querySelector("[data-arl-announce]"),
        empty: root.querySelector("[data-arl-empty]"),
        listen: root.querySelector('[data-arl-action="listen"]'),
        mute: root.querySelector('[data-arl-action="mute"]'),
        stop: root.querySelector('[data-arl-action="stop"]'),
        jump: root.querySelector('[data-arl-action="jump"]'),
      };
      this.adoptLines();
      this.tick = setInterval(() => this.renderElapsed(), 1000);
      this.renderElapsed();
      if (!this.el.listen) return; // no listen permission: read-only panel
      this.el.listen.addEventListener("click", () => this.listen());
      this.el.mute.addEventListener("click", () => this.toggleMute());
      this.el.stop.addEventListener("click", () => this.stop());
      this.el.jump.addEventListener("click", () => this.scrollToLive());
      this.el.transcript.addEventListener("scroll", () => {
        if (this.atBottom()) this.el.jump.hidden = true;
      });
      this.renderControls();
      if (this.active && root.dataset.autoconnect === "true") this.attach();
    }

    // Connect (muted) so the transcript flows at once; audio needs a click.
    // Concurrent callers share one attempt.
    attach() {
      if (this.session) return Promise.resolve(this.session);
      if (!this.attaching) {
        const attempt = ++this.attempt;
        this.attaching = this.connectAttempt(attempt).finally(() => {
          if (this.attempt === attempt) this.attaching = null;
        });
      }
      return this.attaching;
    }

    async connectAttempt(attempt) {
      const stale = () => attempt !== this.attempt;
      this.setState("connecting");
      this.showNotice("");
      let session;
      try {
        const [sdk, grant] = await Promise.all([whenSdkReady(), this.fetchToken()]);
        if (stale()) return null;
        session = sdk.listen({ url: grant.url, token: grant.token });
      } catch (error) {
        if (!stale()) this.fail(error.message);
        return null;
      }
      this.session = session;
      session
        .on("stateChange", (state) => {
          if (this.session === session) this.setState(state);
        })
        .on("transcript", (segment) => this.renderSegment(segment))
        .on("agentDisconnected", () => this.showNotice("The agent left the call.", "info"))
        .on("audioPlaybackChanged", ({ playing }) => {
          const blocked = !playing && !this.muted;
          this.root.classList.toggle("arl-panel--blocked", blocked);
          if (blocked) this.showNotice("Click Listen to hear the call.", "info");
        })
        .on("error", ({ message }) => {
          if (this.session === session) this.showNotice(message);
        })
        .on("ended", () => {
          if (this.session !== session) return;
          this.session = null;
          this.setState(this.active ? "idle" : "ended");
        });
      if (this.muted) session.mute();
      try {
        await session.connect();
      } catch (error) {
        if (stale() || this.session !== session) return null; // stopped on purpose
        this.session = null;
        session.end();
        this.fail(error && error.message ? error.message : "Could not connect to the call.");
        return null;
      }
      return stale() ? null : session;
    }

    // startAudio() runs synchronously in the click when a session exists, so it
    // carries the user gesture; otherwise right after connecting.
    async listen() {
      if (!this.active) return;
      const wasMuted = this.muted;
      this.muted = false;
      this.renderControls();
      const session = this.session || (await this.attach());
      if (!session) {
        this.muted = wasMuted;
        this.renderControls();
        return;
      }
      if (!this.muted) {
        session.unmute();
        session.startAudio().catch(() => {});
      }
    }

    toggleMute() {
      if (!this.session) return;
      this.muted = !this.muted;
      if (this.muted) this.session.mute();
      else {
        this.session.unmute();
        this.session.startAudio().catch(() => {});
      }
      this.renderControls();
    }

    async stop() {
      this.attempt += 1; // cancels an attach in flight
      this.attaching = null;
      this.muted = true;
      const session = this.session;
      this.session = null;
      this.setState(this.active ? "idle" : "ended");
      if (session) await session.end();
    }

    conversationEnded() {
      this.active = false;
      this.showNotice("The call has ended.", "info");
      this.stop();
    }

    unmount() {
      clearInterval(this.tick);
      return this.stop();
    }

    async fetchToken() {
      let response;
      try {
        response = await fetch(this.tokenUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-CSRFToken": this.csrf, Accept: "application/json" },
        });
      } catch (_) {
        throw new Error("Could not reach the server. Check your connection.");
      }
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        /* handled below */
      }
      if (!response.ok) {
        const message = body && body.error && body.error.message;
        throw new Error(message || `The server refused (HTTP ${response.status}).`);
      }
      return body;
    }

    fail(message) {
      this.session = null;
      this.muted = true;
      this.setState(this.active ? "idle" : "ended");
      this.showNotice(message);
    }

    setState(state) {
      this.state = state;
      this.el.badge.dataset.state = state;
      this.el.badge.textContent = STATE_LABELS[state] || state;
      this.root.dataset.state = state;
      this.renderControls();
    }

    // The one place that derives the buttons from (active, state, muted).
    renderControls() {
      if (!this.el.listen) return;
      const live = this.state === "connecting" || this.state === "connected";
      this.el.listen.disabled = !this.active || (live && !this.muted);
      this.el.stop.disabled = !live;
      this.el.mute.disabled = !live;
      this.el.mute.textContent = this.muted ? "Unmute" : "Mute";
      this.root.classList.toggle("arl-panel--muted", this.muted);
    }

    showNotice(message, kind) {
      if (!this.el.notice) return;
      this.el.notice.textContent = message;
      this.el.notice.hidden = !message;
      this.el.notice.classList.toggle("arl-notice--info", kind === "info");
    }

    renderElapsed() {
      if (!this.el.elapsed || !this.startedAt) return;
      if (!this.active && this.el.elapsed.textContent !== "--:--") return;
      this.el.elapsed.textContent = formatElapsed((Date.now() - this.startedAt) / 1000);
    }

    atBottom() {
      const t = this.el.transcript;
      return t.scrollHeight - t.scrollTop - t.clientHeight < 24;
    }

    scrollToLive() {
      const t = this.el.transcript;
      t.scrollTop = t.scrollHeight;
      this.el.jump.hidden = true;
    }

    // Lines rendered by the server (recorded so far) become this panel's segments.
    adoptLines() {
      if (!this.el.transcript) return;
      this.el.transcript.querySelectorAll(".arl-line[data-segment-id]").forEach((item) => {
        this.segments.set(segmentKey(item.dataset.role, item.dataset.segmentId), item);
      });
      if (this.segments.size && this.el.transcript.lastElementChild) {
        this.el.transcript.scrollTop = this.el.transcript.scrollHeight; // open at the latest
      }
    }

    // A new line goes before the first line first seen after it (lines fetched to
    // fill a gap), else at the end (live lines arrive in order).
    insertLine(item, at) {
      const when = at ? Date.parse(at) : NaN;
      let before = null;
      if (!Number.isNaN(when)) {
        for (const line of this.el.transcript.querySelectorAll(".arl-line[data-at]")) {
          if (Date.parse(line.dataset.at) > when) {
            before = line;
            break;
          }
        }
      }
      this.el.transcript.insertBefore(item, before);
    }

    renderSegment({ id, role, text, final, at }) {
      const key = segmentKey(role, id);
      let item = this.segments.get(key);
      // A final line is settled (the frame's rule): a replayed final or a late interim
      // changes nothing, and is not announced again.
      if (item && !item.classList.contains("is-interim")) return;
      const follow = this.atBottom();
      if (this.el.empty) {
        this.el.empty.remove();
        this.el.empty = null;
      }
      if (!item) {
        item = document.createElement("li");
        item.className = "arl-line";
        const who = document.createElement("span");
        who.className = "arl-line__role";
        const said = document.createElement("span");
        said.className = "arl-line__text";
        item.append(who, said);
        // Live lines are stamped when first seen here, so fetched lines can slot in.
        item.dataset.at = at || new Date().toISOString();
        this.segments.set(key, item);
        this.insertLine(item, at);
      }
      const label = role === "agent" ? "Agent" : "Caller";
      item.dataset.role = role;
      item.dataset.segmentId = id;
      item.classList.toggle("is-interim", !final);
      item.firstChild.textContent = label;
      item.lastChild.textContent = text;
      // Screen readers hear each settled line once, not every interim update.
      if (final && this.el.announce) this.el.announce.textContent = `${label}: ${text}`;
      if (follow) this.scrollToLive();
      else this.el.jump.hidden = false;
    }
  }

  const segmentKey = (role, id) => `${role}\u0000${id}`;

  // ---- mounting and page-level wiring ----

  const panels = new Map();

  function mount(root) {
    const scope = root || document;
    scope.querySelectorAll("[data-arl-panel]").forEach((element) => {
      if (!panels.has(element)) panels.set(element, new ListenPanel(element));
    });
  }

  function panelForKeys() {
    const focused = document.activeElement && document.activeElement.closest("[data-arl-panel]");
    if (focused) return panels.get(focused);
    return panels.size === 1 ? panels.values().next().value : null;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    const panel = panelForKeys();
    if (!panel || !panel.el.listen) return;
    if (event.key === "m" || event.key === "M") {
      event.preventDefault();
      if (panel.session && panel.state === "connected") panel.toggleMute();
      else panel.listen();
    } else if (event.key === "Escape") {
      panel.stop();
    }
  });

  document.addEventListener("anyreach:conversation", (event) => {
    const conversation = event.detail && event.detail.conversation;
    if (!conversation || conversation.is_active) return;
    for (const panel of panels.values()) {
      if (panel.conversationId === conversation.id && panel.active) panel.conversationEnded();
    }
  });

  window.addEventListener("pagehide", () => {
    for (const panel of panels.values()) if (panel.session) panel.session.end();
  });

  function unmount(element) {
    const panel = panels.get(element);
    if (!panel) return Promise.resolve();
    panels.delete(element);
    return panel.unmount();
  }

  // Fetched lines ({id, role, text, final, at}), e.g. the transcript read again when
  // the event stream (re)opens, merged into a mounted panel without duplicates.
  function addSegments(element, segments) {
    const panel = panels.get(element);
    if (!panel || !panel.el.transcript) return;
    for (const segment of segments) panel.renderSegment(segment);
  }

  // Open a mounted panel's audio: call within a click (its user activation).
  function listen(element) {
    const panel = panels.get(element);
    return panel ? panel.listen() : Promise.resolve();
  }

  window.AnyReachListenPanel = { mount, unmount, panels, addSegments, listen };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => mount());
  else mount();
  document.addEventListener("htmx:load", (event) => mount(event.target));
})();
