// The session state machine behind AnyReach.listen(): idle -> connecting ->
// connected -> disconnected, the 15 s connect timeout, errors that reject an
// in-flight connect(), and the idempotent end() (forced after 3 s). It opens the
// frame channel lazily, on the first connect().
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
  let connecting: Connecting | null = null;
  let ending: Promise<void> | null = null;
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
    if (!channel) channel = openFrameChannel(frameUrl, origin, onEvent);
    return channel;
  }

  function connect(): Promise<void> {
    if (ended) {
      return Promise.reject(
        new Error("AnyReach: this session has ended; create a new one with AnyReach.listen()."),
      );
    }
    if (connecting) return connecting.promise;
    if (state === "connected") return Promise.resolve();
    const c = {} as Connecting;
    c.promise = new Promise<void>((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.timer = setTimeout(
      () =>
        fail(
          "AnyReach: timed out after 15 s connecting to the live conversation. Check that it is " +
            `still in progress and that this network can reach ${url}, then call connect() again.`,
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
    if (!frame) return Promise.resolve();
    return frame.ready
      .then(() => frame.command("startAudio", {}))
      .catch((error: Error) => {
        fail(error.message);
        throw error;
      });
  }

  function setMuted(value: boolean) {
    muted = value;
    if (channel?.isOpen() && !ended) channel.command("setMuted", { muted }).catch(ignore);
  }

  function end(): Promise<void> {
    if (!ending) ending = teardown();
    return ending;
  }

  async function teardown() {
    ended = true;
    events.seal();
    const c = connecting;
    connecting = null;
    if (c) {
      clearTimeout(c.timer);
      c.reject(new Error("AnyReach: the session was ended before it connected."));
    }
    if (channel?.isOpen()) {
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
