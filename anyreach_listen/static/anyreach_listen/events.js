// The conversation event stream: one websocket per page to the app's events
// consumer, re-dispatched as DOM events on document (detail = the server's message):
//   "anyreach:conversation"   a call or its listeners changed
//                             ({ type: "conversation.updated" | "listener.updated",
//                                event, conversation, listen_session_id? })
//   "anyreach:alert"          an alert was raised in a call
//                             ({ type: "alert.raised", conversation, can_listen,
//                                alert: { id, severity, raised_at, phrase?, role?, segment_id? } })
//   "anyreach:transcript"     a final transcript line, only for people who may read it
//                             ({ type: "transcript.segment", conversation,
//                                segment: { id, role, text, at } })
//   "anyreach:guidance"       guidance to a call's agent was given (pending), delivered
//                             or failed, only for people who may read the transcript
//                             ({ type: "guidance.updated", event: its status,
//                                conversation, guidance: { id, mode, text, status,
//                                reason, author, created_at, delivered_at, latency_ms } })
//   "anyreach:takeover"       a call was taken over from its AI agent, renewed, joined,
//                             left, ended or resumed, only for people who may see a
//                             call's listeners ({ type: "takeover.updated", event,
//                             conversation, takeover: { id, holder, started_at,
//                             expires_at, joined_at, ended_at, ended_by, resumed_at,
//                             resume_error } })
//   "anyreach:stream-open"    (re)connected: a page may catch up on what it missed
//                             (e.g. read the transcript again: lines said while the
//                             stream was down are not replayed)
//   "anyreach:stream-closed"  lost; it reconnects after 1 s, doubling up to 30 s,
//                             except after close code 4401 (signed out)
// The stream's state stays on the page for scripts that start listening late (an
// event dispatched before a listener existed is gone): <html data-arl-stream> and
// AnyReachEvents.state are "connecting" until the first open, then "open" or "closed".
// AnyReachEvents.onOpen(fn) / onClosed(fn) read it for them: fn runs at once if the
// stream is already open (closed), then on every later stream-open (stream-closed).
// Plain script, no build step. Include it with {% listen_events_script %} (or
// {% listen_assets %}): the tag puts the websocket's path, taken from the app's
// routing, in data-arl-events-url.
(function () {
  "use strict";

  if (window.AnyReachEvents) return; // included twice: one stream per page is enough

  const script =
    document.currentScript || document.querySelector("script[data-arl-events-url]");
  const configured = script && script.dataset.arlEventsUrl;
  if (!configured) {
    console.error(
      "AnyReach: events.js needs the websocket path in data-arl-events-url; " +
        "include it with {% listen_events_script %}.",
    );
    return;
  }
  // The path (or an absolute URL) as a websocket URL on the page's host and scheme.
  const url = new URL(configured, location.href);
  if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol === "http:") url.protocol = "ws:";
  const root = document.documentElement;
  const setState = (state) => {
    root.dataset.arlStream = state;
  };
  setState("connecting");
  // A script that starts late still learns the state its event announced: now, then on
  // each later event.
  const whenState = (state, eventName) => (fn) => {
    document.addEventListener(eventName, () => fn());
    if (root.dataset.arlStream === state) fn();
  };
  window.AnyReachEvents = Object.freeze({
    url: url.href,
    get state() {
      return root.dataset.arlStream;
    },
    onOpen: whenState("open", "anyreach:stream-open"),
    onClosed: whenState("closed", "anyreach:stream-closed"),
  });

  const INITIAL_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30000;
  let delay = INITIAL_DELAY_MS;
  // Message types with a DOM event of their own; the others are conversation events.
  const EVENT_NAMES = {
    "alert.raised": "anyreach:alert",
    "transcript.segment": "anyreach:transcript",
    "guidance.updated": "anyreach:guidance",
    "takeover.updated": "anyreach:takeover",
  };
  const dispatch = (name, detail) => document.dispatchEvent(new CustomEvent(name, { detail }));

  function connect() {
    const socket = new WebSocket(url.href);
    socket.addEventListener("open", () => {
      delay = INITIAL_DELAY_MS;
      setState("open"); // before the event: its listeners may read it
      dispatch("anyreach:stream-open");
    });
    socket.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      dispatch(EVENT_NAMES[data && data.type] || "anyreach:conversation", data);
    });
    socket.addEventListener("close", (event) => {
      setState("closed");
      dispatch("anyreach:stream-closed");
      if (event.code === 4401) return; // signed out: do not hammer the server
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    });
  }

  if (!("WebSocket" in window)) return;
  // After the page's other deferred scripts, so their listeners see the first events.
  // readyState alone cannot tell: deferred scripts run once it is already
  // "interactive", one by one as each arrives, and the socket could open between
  // them. The navigation's timing says whether DOMContentLoaded has started yet.
  const [navigation] = performance.getEntriesByType("navigation");
  const domReady = navigation
    ? navigation.domContentLoadedEventStart > 0
    : document.readyState !== "loading";
  if (domReady) connect();
  else document.addEventListener("DOMContentLoaded", connect);
})();
