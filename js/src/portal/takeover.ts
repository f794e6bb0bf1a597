// The portal's "Take over" (portal/takeover.py, _takeover.html): a publishing LiveKit
// connection of the page's own, so the listen frame and the public SDK stay listen-only.
// On "Take over": the microphone first (nothing is paused if it is refused), then the
// start view (the agent pauses), then the page's listen panels of the call stop and
// this connection joins the room, publishes the microphone and plays the others' audio
// (the supervisor never hears their own voice back). The grant is renewed every third
// of its life; "Hand back", the page going away, a lost connection or the section
// leaving the page (the dashboard's dialog closed) hand the call back. A takeover that
// ended elsewhere ("anyreach:takeover" from events.js with ended_at) disconnects and
// says why. Everything is delegated from document: the dialog's fragment arrives later.
import {
  DisconnectReason,
  LocalAudioTrack,
  Room,
  RoomEvent,
  setLogLevel,
  Track,
  type RemoteTrack,
} from "livekit-client";
import {
  endedMessage,
  microphoneError,
  NO_MICROPHONE_API,
  parseGrant,
  refusalCode,
  refusalMessage,
  renewDelayMs,
  retryDelayMs,
  type TakeoverGrant,
} from "./takeover-logic";

setLogLevel("warn"); // livekit-client logs every state change at info level

/** The listen panel's page API (anyreach_listen/panel/listen-panel.js), as used here. */
interface ListenPanel {
  state: string;
  muted: boolean;
  stop(): Promise<void>;
  attach(): Promise<unknown>;
}
interface ListenPanels {
  panels: Map<Element, ListenPanel>;
  listen(element: Element): Promise<void>;
}
declare global {
  interface Window {
    AnyReachListenPanel?: ListenPanels;
    AnyReachPortalTakeover?: Readonly<{ current(): Readonly<Record<string, unknown>> | null }>;
  }
}

const SPEAKING = "You are speaking with the caller";
const UNEXPECTED = "The server's answer was not a takeover. Reload the page and try again.";
const UNREACHABLE = "The server could not be reached. Check your connection and try again.";
// Refusals of a renewal that mean the takeover is over (anything else is retried).
const OVER = new Set([
  "takeover_not_found",
  "already_taken_over",
  "conversation_not_active",
  "conversation_not_found",
  "insufficient_scope",
]);

type State = "idle" | "starting" | "speaking" | "ending";

/** One [data-takeover] section: its call, its views and its parts. */
class Section {
  readonly conversationId: string;
  constructor(readonly root: HTMLElement) {
    this.conversationId = root.dataset.takeover || "";
  }
  part<T extends HTMLElement>(name: string): T | null {
    return this.root.querySelector<T>(`[data-takeover-${name}]`);
  }
  button(action: string): HTMLButtonElement | null {
    return this.root.querySelector<HTMLButtonElement>(`button[data-takeover-action="${action}"]`);
  }
  get state(): State {
    return (this.root.dataset.state as State) || "idle";
  }
  set state(state: State) {
    this.root.dataset.state = state;
    const start = this.button("start");
    const mute = this.button("mute");
    const handBack = this.button("hand-back");
    if (start) {
      start.hidden = state === "speaking" || state === "ending";
      start.disabled = state !== "idle";
    }
    if (mute) mute.hidden = state !== "speaking";
    if (handBack) {
      handBack.hidden = state !== "speaking" && state !== "ending";
      handBack.disabled = state !== "speaking";
    }
    this.root.setAttribute("aria-busy", String(state === "starting" || state === "ending"));
  }
  say(text: string): void {
    const status = this.part("status");
    if (status) status.textContent = text;
  }
  fail(text: string): void {
    const error = this.part("error");
    if (!error) return;
    error.textContent = text;
    error.hidden = !text;
  }
}

/** A panel of the call this page stopped, and whether it was heard or only attached. */
interface Stopped {
  element: Element;
  heard: boolean;
  attached: boolean;
  controls: HTMLElement | null;
}

/** The page's one takeover in progress. */
interface Held {
  section: Section;
  grant: TakeoverGrant;
  microphone: MediaStreamTrack;
  room: Room | null;
  track: LocalAudioTrack | null;
  timer: number | undefined;
  stopped: Stopped[];
  ending: boolean;
  observer: MutationObserver | null;
}

let held: Held | null = null;
let busy = false; // a start under way (one per page)

// ---- requests ----

interface Answer {
  ok: boolean;
  status: number;
  body: unknown;
}

async function post(section: Section, url: string, keepalive = false): Promise<Answer> {
  // URL-encoded, not FormData: an empty multipart body (the first POST has no id) is
  // refused 400 by daphne's HTTP layer (Twisted parses multipart itself) before Django.
  const body = new URLSearchParams();
  if (held && held.section.root === section.root) body.set("id", held.grant.id);
  const response = await fetch(url, {
    method: "POST",
    body,
    credentials: "same-origin",
    keepalive,
    headers: { "X-CSRFToken": section.root.dataset.csrf || "", Accept: "application/json" },
  });
  let parsed: unknown = null;
  // Only a JSON answer is read: a login or error page is never shown.
  if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
    parsed = await response.json().catch(() => null);
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

// ---- the page's listen panels ----

function panelsOf(conversationId: string): Element[] {
  return Array.from(
    document.querySelectorAll(`[data-arl-panel][data-conversation="${CSS.escape(conversationId)}"]`),
  );
}

/** Stop the call's listen panels (their own Stop), and keep their controls out of
 * reach until the hand-back: the frame would play the supervisor's voice back. */
async function stopListening(conversationId: string): Promise<Stopped[]> {
  const api = window.AnyReachListenPanel;
  const stopped: Stopped[] = [];
  for (const element of panelsOf(conversationId)) {
    const panel = api && api.panels.get(element);
    const attached = !!panel && (panel.state === "connected" || panel.state === "connecting");
    const controls = element.querySelector<HTMLElement>(".arl-controls");
    if (controls) controls.inert = true;
    stopped.push({ element, attached, heard: attached && !!panel && !panel.muted, controls });
    if (panel) await panel.stop();
  }
  return stopped;
}

/** The controls back; after a "Hand back" click (its user activation lets audio
 * start), the panels go back to what they were doing. */
function resumeListening(stopped: Stopped[], resume: boolean): void {
  const api = window.AnyReachListenPanel;
  for (const { element, heard, attached, controls } of stopped) {
    if (controls) controls.inert = false;
    if (!resume || !api || !element.isConnected) continue;
    if (heard) api.listen(element).catch(() => {});
    else if (attached) api.panels.get(element)?.attach().catch(() => {});
  }
}

// While a call is held, M must not start the listen panel (listen-panel.js skips
// keys whose default was prevented).
window.addEventListener(
  "keydown",
  (event) => {
    if (!held || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    if (event.key === "m" || event.key === "M") event.preventDefault();
  },
  true,
);

// ---- the connection ----

function audioBox(section: Section): HTMLElement {
  let box = section.part<HTMLElement>("audio");
  if (!box) {
    box = document.createElement("div");
    box.hidden = true;
    box.dataset.takeoverAudio = "";
    section.root.append(box);
  }
  return box;
}

async function connect(current: Held): Promise<void> {
  const { section, grant } = current;
  const room = new Room({ adaptiveStream: false, dynacast: false, webAudioMix: false });
  current.room = room;
  const box = audioBox(section);
  room.on(RoomEvent.TrackSubscribed, (track: RemoteTrack) => {
    if (track.kind !== Track.Kind.Audio) return;
    box.append(track.attach());
    section.root.dataset.remoteAudio = String(box.querySelectorAll("audio").length);
  });
  room.on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
    for (const element of track.detach()) element.remove();
    section.root.dataset.remoteAudio = String(box.querySelectorAll("audio").length);
  });
  room.on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
    if (held !== current || current.ending) return;
    // Removed by the server: the takeover ended there (its event says how). Otherwise
    // the connection is lost for good: hand back, so the agent speaks again at once.
    if (reason === DisconnectReason.PARTICIPANT_REMOVED || reason === DisconnectReason.ROOM_DELETED) {
      finish(current, "The takeover ended: the call went back to the agent.");
    } else {
      void handBack(current, false, "The connection to the call was lost, so the call was handed back to the agent.");
    }
  });
  await room.connect(grant.url, grant.token, { autoSubscribe: true });
  const track = new LocalAudioTrack(current.microphone, undefined, true);
  current.track = track;
  await room.localParticipant.publishTrack(track, { source: Track.Source.Microphone });
  room.startAudio().catch(() => {});
}

function release(current: Held): void {
  clearTimeout(current.timer);
  current.observer?.disconnect();
  current.microphone.stop();
  const room = current.room;
  current.room = null;
  if (room) void room.disconnect();
  const box = current.section.part<HTMLElement>("audio");
  if (box) box.replaceChildren();
  delete current.section.root.dataset.remoteAudio;
}

/** The takeover is over (ended here or elsewhere): disconnect and say `why`. */
function finish(current: Held, why: string, resume = false): void {
  if (held !== current) return;
  held = null;
  release(current);
  const { section } = current;
  setMuted(section, false);
  const focused = document.activeElement;
  section.state = "idle";
  section.say(why);
  resumeListening(current.stopped, resume);
  // Focus was on a button that is hidden now: it goes to "Take over", not the page's top.
  if (!focused || focused === document.body || section.root.contains(focused)) {
    section.button("start")?.focus();
  }
}

// ---- start, renew, hand back ----

async function start(section: Section): Promise<void> {
  if (held || busy || section.state !== "idle") return;
  busy = true;
  section.fail("");
  section.state = "starting";
  try {
    const devices = navigator.mediaDevices;
    if (!devices || !devices.getUserMedia) {
      section.fail(NO_MICROPHONE_API);
      section.say("");
      return;
    }
    section.say("Asking for your microphone…");
    let microphone: MediaStreamTrack;
    try {
      const stream = await devices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
      microphone = stream.getAudioTracks()[0];
      if (!microphone) throw new DOMException("no audio track", "NotFoundError");
    } catch (error) {
      section.say("");
      section.fail(microphoneError(error));
      return;
    }
    section.say("Taking the call over: waiting for the agent to pause…");
    let answer: Answer;
    try {
      answer = await post(section, section.root.dataset.startUrl || "");
    } catch {
      microphone.stop();
      section.say("");
      section.fail(UNREACHABLE);
      return;
    }
    const grant = answer.ok ? parseGrant(answer.body) : null;
    if (!grant) {
      microphone.stop();
      section.say("");
      section.fail(answer.ok ? UNEXPECTED : `Not taken over: ${refusalMessage(answer.status, answer.body)}`);
      return;
    }
    // Held from here: any failure below hands the call back.
    const current: Held = {
      section,
      grant,
      microphone,
      room: null,
      track: null,
      timer: undefined,
      stopped: [],
      ending: false,
      observer: null,
    };
    held = current;
    section.root.dataset.takeoverId = grant.id;
    current.stopped = await stopListening(section.conversationId);
    section.say("Connecting you to the call…");
    try {
      await connect(current);
    } catch (error) {
      if (held !== current) return; // ended meanwhile: already said why
      const detail = error instanceof Error && error.message ? ` (${error.message})` : "";
      await handBack(current, false, `Could not connect you to the call${detail}, so it was handed back to the agent.`);
      return;
    }
    if (held !== current) return;
    section.state = "speaking";
    section.say(SPEAKING);
    section.button("mute")?.focus();
    schedule(current, renewDelayMs(grant, Date.now()));
    // The section gone (the dashboard's dialog closed): nobody could hand back.
    current.observer = new MutationObserver(() => {
      if (!section.root.isConnected) void handBack(current, false, "");
    });
    current.observer.observe(document.body, { childList: true, subtree: true });
  } finally {
    busy = false;
    if (!held || held.section.root !== section.root) {
      if (section.state === "starting") section.state = "idle";
    }
  }
}

function schedule(current: Held, delay: number): void {
  clearTimeout(current.timer);
  current.timer = window.setTimeout(() => void renew(current), delay);
}

async function renew(current: Held): Promise<void> {
  if (held !== current || current.ending) return;
  let answer: Answer | null = null;
  try {
    answer = await post(current.section, current.section.root.dataset.startUrl || "");
  } catch {
    answer = null;
  }
  if (held !== current || current.ending) return;
  const grant = answer && answer.ok ? parseGrant(answer.body) : null;
  if (grant && grant.id === current.grant.id) {
    current.grant = grant;
    schedule(current, renewDelayMs(grant, Date.now()));
    return;
  }
  if (answer && !answer.ok && OVER.has(refusalCode(answer.body))) {
    finish(current, `The takeover ended: ${refusalMessage(answer.status, answer.body)}`);
    return;
  }
  // Unreachable, rate limited or failing: again soon, while the grant lasts.
  const delay = retryDelayMs(current.grant.expires_at, Date.now());
  if (delay === null) finish(current, endedMessage("expired"));
  else schedule(current, delay);
}

async function handBack(current: Held, resume: boolean, why?: string): Promise<void> {
  if (held !== current || current.ending) return;
  current.ending = true;
  const { section } = current;
  section.state = "ending";
  section.say("Handing the call back to the agent…");
  clearTimeout(current.timer);
  release(current); // first: the caller stops hearing the supervisor at once
  let answer: Answer | null = null;
  try {
    answer = await post(section, section.root.dataset.handBackUrl || "", true);
  } catch {
    answer = null;
  }
  // 404: it had ended already (elsewhere, or by the sweep): handed back all the same.
  const done = !!answer && (answer.ok || answer.status === 404);
  finish(current, why || "Handed back: the agent has the call again.", resume);
  if (!done) {
    const reason = answer ? refusalMessage(answer.status, answer.body) : UNREACHABLE;
    section.fail(
      `The server was not told of the hand-back (${reason}). The call goes back to the agent ` +
        "within 30 seconds by itself.",
    );
  }
}

// ---- the mute toggle ----

function setMuted(section: Section, muted: boolean): void {
  const button = section.button("mute");
  if (button) button.setAttribute("aria-pressed", String(muted));
  section.root.classList.toggle("takeover--muted", muted);
}

async function toggleMute(section: Section): Promise<void> {
  const current = held;
  if (!current || current.section.root !== section.root || !current.track) return;
  const muted = !current.track.isMuted;
  setMuted(section, muted);
  if (muted) await current.track.mute();
  else await current.track.unmute();
  section.say(muted ? `${SPEAKING} (your microphone is muted)` : SPEAKING);
}

// ---- wiring ----

document.addEventListener("click", (event) => {
  const button = (event.target as Element | null)?.closest?.("button[data-takeover-action]");
  const root = button?.closest<HTMLElement>("[data-takeover]");
  if (!button || !root) return;
  const section = new Section(root);
  switch (button.getAttribute("data-takeover-action")) {
    case "start":
      void start(section);
      break;
    case "mute":
      void toggleMute(section);
      break;
    case "hand-back":
      if (held && held.section.root === root) void handBack(held, true);
      break;
  }
});

// Ended elsewhere (the API, another tab, the sweep, the call ending, access lost).
document.addEventListener("anyreach:takeover", (event) => {
  const detail = (event as CustomEvent).detail as
    | { takeover?: { id?: string; ended_at?: string | null; ended_by?: string } }
    | undefined;
  const takeover = detail && detail.takeover;
  const current = held;
  if (!current || !takeover || takeover.id !== current.grant.id || !takeover.ended_at) return;
  if (current.ending) return; // this page is handing it back
  finish(current, endedMessage(takeover.ended_by || ""));
});

// The page going away: the call goes back to the agent now, not after the 30 s grace.
window.addEventListener("pagehide", () => {
  const current = held;
  if (!current || current.ending) return;
  current.ending = true;
  release(current);
  post(current.section, current.section.root.dataset.handBackUrl || "", true).catch(() => {});
});

// What tests and the page's other scripts may read.
window.AnyReachPortalTakeover = Object.freeze({
  current: () =>
    held && {
      id: held.grant.id,
      conversation: held.section.conversationId,
      state: held.section.state,
      muted: !!held.track && held.track.isMuted,
      identity: held.room ? held.room.localParticipant.identity : "",
    },
});
