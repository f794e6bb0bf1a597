// The session state machine behind AnyReach.listen(): idle -> connecting ->
// connected -> disconnected, the 15 s connect timeout, errors that reject an
// in-flight connect(), and the idempotent end() (forced after 3 s).
//
// The hidden frame is injected at listen(), so its page and livekit-client load
// (and warm LiveKit's connection) while the page wires its handlers; nothing but
// the handshake crosses to it before connect(), which alone sends the token. A
// session nobody connects gives its frame back after IDLE_FRAME_MS (it stays
// "idle"; a later connect() loads a new frame).
import type {
  ListenEventMap,
  ListenEventName,
  ListenSession,
  ListenState,
} from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { EventMessage } from "../protocol";
import { type FrameChannel, openFrameChannel } from "./channel";
import { createEmitter } from "./emitter";

const CONNECT_TIMEOUT_MS = 15000;
const END_TIMEOUT_MS = 3000;
// A frame costs a renderer process and livekit-client's heap: a page that forgets
// a session it never connected must not keep one for ever.
const IDLE_FRAME_MS = 30000;

// The event names pages may subscribe to, in the order errors list them; tsc
// checks them against the declarations' event map (none missing, none extra).
const EVENTS = Object.keys({
  stateChange: 0,
  transcript: 0,
  agentDisconnected: 0,
  error: 0,
  ended: 0,
  audioPlaybackChanged: 0,
} satisfies Record<ListenEventName, 0>) as ListenEventName[];

interface Connecting {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface SessionTarget {
  url: string;
  token: string;
  /** The frame page, /public/listen next to the SDK. */
  frameUrl: URL;
  /** The frame's origin: the only one it may post from or to. */
  origin: string;
}

export function createSession({ url, token, frameUrl, origin }: SessionTarget): ListenSession {
  let state: ListenState = "idle";
  let muted = false;
  let ended = false;
  let channel: FrameChannel | null = null;
  // Whether the frame was ever asked to connect (only then has it a room to leave).
  let sentConnect = false;
  let connecting: Connecting | null = null;
  let ending: Promise<void> | null = null;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const events = createEmitter<ListenEventMap>(EVENTS, () => session);
  const ignore = () => {};

  function setState(next: ListenState) {
    if (next !== state) {
      state = next;
      events.emit("stateChange", next);
    }
  }

  function fail(message: string) {
    if (ended) return;
    const c = connecting;
    if (c) {
      connecting = null;
      clearTimeout(c.timer);
      setState("disconnected");
      if (channel?.isOpen()) channel.command("disconnect", {}).catch(ignore);
    }
    events.emit("error", { message });
    if (c) c.reject(new Error(message));
  }

  function onEvent(msg: EventMessage) {
    if (ended) return;
    switch (msg.name) {
      case "state":
        setState(msg.data.state);
        break;
      case "transcript": {
        // Copied field by field: pages get exactly the contract's payload.
        const { id, role, text, final } = msg.data;
        events.emit("transcript", { id, role, text, final });
        break;
      }
      case "agentDisconnected":
        events.emit("agentDisconnected", { participantIdentity: msg.data.participantIdentity });
        break;
      case "audioPlaybackChanged":
        events.emit("audioPlaybackChanged", { playing: msg.data.playing });
        break;
      case "error":
        fail(msg.data.message || "AnyReach: the listen frame failed.");
        break;
      case "closed":
        // The room went away for good: report why (when it is a failure), then tear down.
        if (typeof msg.data.message === "string") fail(msg.data.message);
        setState("disconnected");
        end().catch(ignore);
        break;
    }
  }

  function openFrame(): FrameChannel {
    // A frame loaded at listen() that never started is replaced, not reported:
    // connect() tries a fresh one and reports what that one does.
    if (channel?.isDead()) {
      channel.close();
      channel = null;
    }
    if (!channel) channel = openFrameChannel(frameUrl, origin, onEvent);
    return channel;
  }

  function releaseIdleFrame() {
    if (state === "idle" && !ended && channel) {
      channel.close();
      channel = null;
    }
  }

  function connect(): Promise<void> {
    if (ended) {
      return Promise.reject(
        new Error("AnyReach: this session has ended; create a new one with AnyReach.listen()."),
      );
    }
    if (connecting) return connecting.promise;
    if (state === "connected") return Promise.resolve();
    clearTimeout(idleTimer);
    const c = {} as Connecting;
    c.promise = new Promise<void>((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.timer = setTimeout(
      () =>
        fail(
          channel?.isOpen()
            ? "AnyReach: timed out after 15 s connecting to the live conversation. Check that it " +
                `is still in progress and that this network can reach ${url}, then call connect() again.`
            : // A host that accepts the connection but never answers: no load, no "ready".
              `AnyReach: timed out after 15 s: the listen frame ${frameUrl.href} did not start. ` +
                "Check that the host is reachable and allows this page's origin " +
                `(${location.origin}) to embed it, then call connect() again.`,
        ),
      CONNECT_TIMEOUT_MS,
    );
    connecting = c;
    setState("connecting");
    const frame = openFrame();
    frame.ready
      .then(() => {
        // Timed out or ended while the frame loaded: never send the token late.
        if (connecting !== c) throw new Error("superseded");
        sentConnect = true;
        return frame.command("connect", { url, token, muted });
      })
      .then(
        () => {
          if (connecting !== c) return;
          connecting = null;
          clearTimeout(c.timer);
          setState("connected");
          c.resolve();
        },
        (error: Error) => {
          if (connecting === c) fail(error.message);
        },
      );
    return c.promise;
  }

  function startAudio(): Promise<void> {
    if (ended) return Promise.reject(new Error("AnyReach: this session has ended."));
    const frame = channel;
    // Before connect() there is nothing to play (and the frame needs no message).
    if (!frame || state === "idle") return Promise.resolve();
    return frame.ready
      .then(() => frame.command("startAudio", {}))
      .catch((error: Error) => {
        fail(error.message);
        throw error;
      });
  }

  function setMuted(value: boolean) {
    muted = value;
    // Before connect() the choice travels with the connect command.
    if (sentConnect && channel?.isOpen() && !ended) {
      channel.command("setMuted", { muted }).catch(ignore);
    }
  }

  function end(): Promise<void> {
    if (!ending) ending = teardown();
    return ending;
  }

  async function teardown() {
    ended = true;
    clearTimeout(idleTimer);
    events.seal();
    const c = connecting;
    connecting = null;
    if (c) {
      clearTimeout(c.timer);
      c.reject(new Error("AnyReach: the session was ended before it connected."));
    }
    if (sentConnect && channel?.isOpen()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        channel.command("disconnect", {}).catch(ignore),
        new Promise((resolve) => (timer = setTimeout(resolve, END_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
    }
    channel?.close();
    setState("disconnected");
    events.emit("ended");
    events.clear();
  }

  openFrame();
  idleTimer = setTimeout(releaseIdleFrame, IDLE_FRAME_MS);

  const session: ListenSession = Object.freeze({
    connect,
    startAudio,
    mute: () => setMuted(true),
    unmute: () => setMuted(false),
    isMuted: () => muted,
    getState: () => state,
    end,
    on(name: unknown, handler: unknown) {
      events.on(name, handler);
      return session;
    },
    off(name: unknown, handler: unknown) {
      events.off(name, handler);
      return session;
    },
  });
  return session;
}
