// The session behind AnyReach.listen(): its state machine (state.ts), its
// handlers (handlers.ts) and its transport to the hidden frame (channel.ts),
// wired into the frozen object pages hold.
//
// The hidden frame is injected at listen() (the page's first session adopts the
// loader's spare instead, injected after page load: spare.ts), so its page and
// livekit-client load (and warm LiveKit's connection) while the page wires its
// handlers; nothing but the handshake crosses to it before connect(), which alone
// sends the token. A session nobody connects gives its frame back after
// IDLE_FRAME_MS (it stays "idle"; a later connect() loads a new frame).
import type {
  ListenEventMap,
  ListenEventName,
  ListenSession,
} from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { FrameStart } from "./channel";
import { createEmitter } from "./emitter";
import {
  connect,
  end,
  openFrame,
  releaseIdleFrame,
  type SessionContext,
  type SessionTarget,
  setMuted,
  startAudio,
} from "./handlers";
import { INITIAL_PHASE } from "./state";

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

/** A session on `target`; `spare` is the loader's prewarmed frame to adopt, if any. */
export function createSession(target: SessionTarget, spare: FrameStart | null = null): ListenSession {
  const ctx: SessionContext = {
    target,
    events: createEmitter<ListenEventMap>(EVENTS, () => session),
    phase: INITIAL_PHASE,
    muted: false,
    channel: null,
    sentConnect: false,
    attempt: null,
    ending: null,
    idleTimer: undefined,
  };
  openFrame(ctx, spare);
  ctx.idleTimer = setTimeout(() => releaseIdleFrame(ctx), IDLE_FRAME_MS);

  const session: ListenSession = Object.freeze({
    connect: () => connect(ctx),
    startAudio: () => startAudio(ctx),
    mute: () => setMuted(ctx, true),
    unmute: () => setMuted(ctx, false),
    isMuted: () => ctx.muted,
    getState: () => ctx.phase.state,
    end: () => end(ctx),
    on(name: unknown, handler: unknown) {
      ctx.events.on(name, handler);
      return session;
    },
    off(name: unknown, handler: unknown) {
      ctx.events.off(name, handler);
      return session;
    },
  });
  return session;
}
