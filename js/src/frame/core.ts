// The hidden frame: accepts one init from its parent, then serves commands over
// the transferred port and forwards LiveKit activity as protocol events.
import { type Dict, isDict, isEnvelope, PROTOCOL, VERSION } from "../protocol";
import type { AdapterFactory, AdapterSink, LiveKitState, ListenAdapter } from "./adapter";

export interface FrameOptions {
  createAdapter: AdapterFactory;
  /** Test builds only: told about every message the frame ignores, and why. */
  observe?: (what: string) => void;
}

const TOPIC_FINAL = "lk.transcription_final";

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function normalizeOrigin(value: unknown): string | null {
  try {
    return typeof value === "string" ? new URL(value).origin : null;
  } catch {
    return null;
  }
}

/** The payload of a JWT, unverified (LiveKit verifies it; we only read metadata). */
function jwtPayload(token: string): Dict | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) =>
      c.charCodeAt(0),
    );
    const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return isDict(payload) ? payload : null;
  } catch {
    return null;
  }
}

function embedOrigins(payload: Dict): string[] {
  try {
    const metadata: unknown =
      typeof payload.metadata === "string" ? JSON.parse(payload.metadata) : null;
    const list = isDict(metadata) ? metadata.embed_origins : null;
    return Array.isArray(list) ? list.map(normalizeOrigin).filter((o): o is string => !!o) : [];
  } catch {
    return [];
  }
}

function disconnectMessage(reason: string): string | undefined {
  switch (reason) {
    case "CLIENT_INITIATED":
    case "ROOM_DELETED":
    case "ROOM_CLOSED":
      return undefined; // the conversation is over: not a failure
    case "DUPLICATE_IDENTITY":
      return (
        "AnyReach: another connection joined with the same listener token, so this one was " +
        "closed. Mint a new token for every listener."
      );
    case "PARTICIPANT_REMOVED":
      return "AnyReach: this listener was removed from the conversation (its access was revoked).";
    case "SERVER_SHUTDOWN":
      return "AnyReach: the LiveKit server shut down; the conversation is no longer available.";
    default:
      return (
        `AnyReach: lost the connection to the live conversation (${reason}). ` +
        "Start a new session to listen again."
      );
  }
}

export function startFrame(options: FrameOptions): void {
  const observe = options.observe || (() => {});
  const parentWindow = window.parent;
  if (parentWindow === window) {
    document.body.textContent = "This page is used by the Anyreach listen SDK inside an iframe.";
    return;
  }
  const meta = document.querySelector<HTMLMetaElement>('meta[name="anyreach-livekit-url"]');
  const livekitUrl = meta ? meta.content : "";

  let port: MessagePort | null = null;
  let parentOrigin = "";
  let adapter: ListenAdapter | null = null;
  let muted = false;
  let sentState = "";
  let connected = false;
  let closing = false;
  let playing = true;
  const audio = new Set<HTMLMediaElement>();
  const segments = new Map<string, { text: string; final: boolean }>();
  // Transcripts can arrive a moment before LiveKit reports "connected"; they are
  // held until then so pages always see stateChange("connected") first.
  let early: Dict[] = [];

  function send(name: string, data: Dict) {
    port?.postMessage({ type: "event", name, data });
  }

  function applyMute() {
    for (const el of audio) el.muted = muted;
    for (const el of document.querySelectorAll<HTMLMediaElement>("audio,video")) el.muted = muted;
  }

  function offer(id: string, agent: boolean, text: string, final: boolean) {
    const prev = segments.get(id);
    if (prev) {
      if (prev.final) return; // settled: never emitted again
      if (!final && prev.text.startsWith(text)) return; // a repeat or going backwards
    } else if (!text && !final) {
      return;
    }
    segments.set(id, { text, final });
    const event = { id, role: agent ? "agent" : "user", text, final };
    if (sentState === "connected") send("transcript", event);
    else early.push(event);
  }

  const sink: AdapterSink = {
    state(state: LiveKitState) {
      const mapped =
        state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "connecting";
      if (mapped === "connected") connected = true;
      if (mapped !== sentState) {
        sentState = mapped;
        send("state", { state: mapped });
        if (mapped === "connected") {
          for (const event of early) send("transcript", event);
          early = [];
        }
      }
    },
    closed(reason: string) {
      if (!connected || closing) return; // a failed connect is reported by connect() itself
      connected = false;
      send("closed", { reason, message: disconnectMessage(reason) });
    },
    segments(speaker, list) {
      for (const s of list) offer(s.id, speaker.isAgent, s.text, s.final);
    },
    textStream(stream) {
      const id = stream.segmentId;
      const finalAtStart = stream.attributes()[TOPIC_FINAL] === "true";
      void (async () => {
        let text = "";
        try {
          for await (const chunk of stream.chunks) {
            text += chunk;
            if (!finalAtStart) offer(id, stream.speaker.isAgent, text, false);
          }
        } catch (error) {
          console.warn("AnyReach: a transcript stream broke off:", message(error));
        }
        offer(id, stream.speaker.isAgent, text, stream.attributes()[TOPIC_FINAL] === "true");
      })();
    },
    participantLeft(participant) {
      if (participant.isAgent) {
        send("agentDisconnected", { participantIdentity: participant.identity });
      }
    },
    playback(value: boolean) {
      if (value !== playing) {
        playing = value;
        send("audioPlaybackChanged", { playing });
      }
    },
    audioElement(el, added) {
      if (added) {
        audio.add(el);
        el.muted = muted;
        // livekit-client unmutes elements itself (startAudio, iOS visibility
        // changes): put the listener's choice back whenever that happens.
        el.addEventListener("volumechange", () => {
          if (audio.has(el) && el.muted !== muted) el.muted = muted;
        });
        document.body.appendChild(el);
      } else {
        audio.delete(el);
        el.remove();
      }
    },
  };

  async function connect(args: Dict): Promise<void> {
    const { url, token } = args;
    if (typeof url !== "string" || typeof token !== "string") {
      throw new Error("AnyReach: connect needs the url and token of the listener-token API.");
    }
    muted = args.muted === true;
    const allowed = normalizeOrigin(livekitUrl);
    if (!allowed) {
      throw new Error(
        "AnyReach: this Anyreach host has no LiveKit server configured (LIVEKIT_URL); " +
          "ask its operator to set it.",
      );
    }
    if (normalizeOrigin(url) !== allowed) {
      throw new Error(
        `AnyReach: the url ${JSON.stringify(url)} is not this host's LiveKit server ` +
          `(${livekitUrl}). Pass the url returned by the listener-token API.`,
      );
    }
    const payload = jwtPayload(token);
    if (!payload) {
      throw new Error(
        "AnyReach: the token is not a LiveKit access token. Pass the token returned by the " +
          "listener-token API.",
      );
    }
    const origins = embedOrigins(payload);
    if (origins.length && !origins.includes(parentOrigin)) {
      throw new Error(
        `AnyReach: this page's origin (${parentOrigin}) is not allowed to listen to this ` +
          "organization's conversations. An organization admin can add it to the allowed " +
          "embed origins.",
      );
    }
    closing = false;
    adapter = adapter || options.createAdapter(sink);
    await adapter.connect(url, token);
    applyMute();
  }

  async function disconnect(): Promise<void> {
    closing = true;
    connected = false;
    try {
      await adapter?.disconnect();
    } finally {
      for (const el of audio) el.remove();
      audio.clear();
    }
  }

  async function startAudio(): Promise<void> {
    try {
      await adapter?.startAudio();
    } catch (error) {
      throw new Error(
        "AnyReach: the browser blocked audio playback. Call startAudio() from a click or key " +
          `handler on your page. (${message(error)})`,
      );
    } finally {
      applyMute(); // LiveKit's startAudio() unmutes every element it plays
    }
    sink.playback(true);
  }

  function run(name: unknown, args: Dict): Promise<void> {
    // An explicit allow-list: nothing is looked up by name on any object.
    switch (name) {
      case "connect":
        return connect(args);
      case "disconnect":
        return disconnect();
      case "startAudio":
        return startAudio();
      case "setMuted":
        muted = args.muted === true;
        applyMute();
        return Promise.resolve();
      default:
        return Promise.reject(new Error(`AnyReach: unknown command ${JSON.stringify(name)}.`));
    }
  }

  function onCommand(event: MessageEvent) {
    const msg = event.data;
    if (!isDict(msg) || msg.type !== "command" || typeof msg.id !== "number") {
      return observe("malformed command");
    }
    const id = msg.id;
    run(msg.name, isDict(msg.args) ? msg.args : {}).then(
      () => port?.postMessage({ type: "reply", id, ok: true }),
      (error: unknown) => port?.postMessage({ type: "reply", id, ok: false, error: message(error) }),
    );
  }

  function onWindowMessage(event: MessageEvent) {
    // Source first, then shape; the parent's origin is learned from the browser.
    if (event.source !== parentWindow) return observe("message from a window other than the parent");
    if (!isEnvelope(event.data, "init") || event.ports.length !== 1) {
      return observe("malformed message from the parent");
    }
    if (port) return observe("second init");
    if (event.data.version !== VERSION) {
      event.ports[0].postMessage({
        type: "event",
        name: "error",
        data: { message: `AnyReach: the SDK speaks protocol ${String(event.data.version)}, the frame ${VERSION}.` },
      });
      return observe("version mismatch");
    }
    parentOrigin = event.origin;
    port = event.ports[0];
    port.onmessage = onCommand;
    observe("init");
  }

  const report = (what: string) =>
    send("error", { message: `AnyReach: the listen frame failed: ${what}` });
  window.addEventListener("error", (event) => report(event.message));
  window.addEventListener("unhandledrejection", (event) => report(message(event.reason)));
  window.addEventListener("message", onWindowMessage);
  parentWindow.postMessage({ protocol: PROTOCOL, version: VERSION, type: "ready" }, "*");
}
