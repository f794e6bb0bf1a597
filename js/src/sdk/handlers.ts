// What the session does: each page call (connect, startAudio, mute, end) and
// each frame event, over one session's state, moved only through state.ts.
import type { ListenEventMap } from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { EventHandlers, EventMessage } from "../protocol";
import { deliver, type FrameChannel, type FrameStart, openFrameChannel, startFrame } from "./channel";
import type { Emitter } from "./emitter";
import { type Input, next, type Phase } from "./state";

const CONNECT_TIMEOUT_MS = 15000;
const END_TIMEOUT_MS = 3000;

export interface SessionTarget {
  url: string;
  token: string;
  /** The frame page, /public/listen next to the SDK. */
  frameUrl: URL;
  /** The frame's origin: the only one it may post from or to. */
  origin: string;
}

/** A connect() in flight. */
interface Attempt {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** One session's state, shared by its handlers. */
export interface SessionContext {
  readonly target: SessionTarget;
  readonly events: Emitter<ListenEventMap>;
  phase: Phase;
  muted: boolean;
  channel: FrameChannel | null;
  // Whether the frame was ever asked to connect (only then has it a room to leave).
  sentConnect: boolean;
  attempt: Attempt | null;
  ending: Promise<void> | null;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

const ignore = () => {};

/** Moves the state machine; reports a new state. False when `input` is illegal now. */
function apply(ctx: SessionContext, input: Input): boolean {
  const phase = next(ctx.phase, input);
  if (!phase) return false;
  const changed = phase.state !== ctx.phase.state;
  ctx.phase = phase;
  if (changed) ctx.events.emit("stateChange", phase.state);
  return true;
}

/** Reports an error; one during a connect() fails it (and leaves the frame's room). */
function fail(ctx: SessionContext, message: string) {
  if (ctx.phase.ended) return;
  const attempt = ctx.attempt;
  if (attempt) {
    ctx.attempt = null;
    clearTimeout(attempt.timer);
    apply(ctx, { type: "failed" });
    if (ctx.channel?.isOpen()) ctx.channel.command("disconnect", {}).catch(ignore);
  }
  ctx.events.emit("error", { message });
  if (attempt) attempt.reject(new Error(message));
}

/** The frame's events (tsc checks that each has its handler). */
function eventHandlers(ctx: SessionContext): EventHandlers {
  const { events } = ctx;
  return {
    state: ({ state }) => void apply(ctx, { type: "report", state }),
    // Copied field by field: pages get exactly the contract's payload.
    transcript: ({ id, role, text, final }) => events.emit("transcript", { id, role, text, final }),
    agentDisconnected: ({ participantIdentity }) =>
      events.emit("agentDisconnected", { participantIdentity }),
    audioPlaybackChanged: ({ playing }) => events.emit("audioPlaybackChanged", { playing }),
    error: ({ message }) => fail(ctx, message || "AnyReach: the listen frame failed."),
    closed({ message }) {
      // The room went away for good: report why (when it is a failure), then tear down.
      if (typeof message === "string") fail(ctx, message);
      apply(ctx, { type: "closed" });
      end(ctx).catch(ignore);
    },
  };
}

/**
 * The session's frame, loaded now unless it is loading or open already; `spare`,
 * the loader's prewarmed frame, is used instead of injecting one (listen() only).
 */
export function openFrame(ctx: SessionContext, spare: FrameStart | null = null): FrameChannel {
  // A frame loaded at listen() that never started is replaced, not reported:
  // connect() tries a fresh one and reports what that one does.
  if (ctx.channel?.isDead()) {
    ctx.channel.close();
    ctx.channel = null;
  }
  if (!ctx.channel) {
    const handlers = eventHandlers(ctx);
    const onEvent = (msg: EventMessage) => {
      if (!ctx.phase.ended) deliver(handlers, msg);
    };
    const { frameUrl, origin } = ctx.target;
    ctx.channel = openFrameChannel(spare || startFrame(frameUrl, origin), onEvent);
  }
  return ctx.channel;
}

/** Gives back the frame of a session nobody connected (a later connect() loads another). */
export function releaseIdleFrame(ctx: SessionContext): void {
  if (ctx.phase.state === "idle" && !ctx.phase.ended && ctx.channel) {
    ctx.channel.close();
    ctx.channel = null;
  }
}

function timeoutMessage(ctx: SessionContext): string {
  const { url, frameUrl } = ctx.target;
  return ctx.channel?.isOpen()
    ? "AnyReach: timed out after 15 s connecting to the live conversation. Check that it " +
        `is still in progress and that this network can reach ${url}, then call connect() again.`
    : // A host that accepts the connection but never answers: no load, no "ready".
      `AnyReach: timed out after 15 s: the listen frame ${frameUrl.href} did not start. ` +
        "Check that the host is reachable and allows this page's origin " +
        `(${location.origin}) to embed it, then call connect() again.`;
}

function newAttempt(ctx: SessionContext): Attempt {
  const attempt = {} as Attempt;
  attempt.promise = new Promise<void>((resolve, reject) => {
    attempt.resolve = resolve;
    attempt.reject = reject;
  });
  attempt.timer = setTimeout(() => fail(ctx, timeoutMessage(ctx)), CONNECT_TIMEOUT_MS);
  return attempt;
}

/** Once the frame is ready, sends it the token; settles `attempt` with its answer. */
function sendConnect(ctx: SessionContext, frame: FrameChannel, attempt: Attempt) {
  const { url, token } = ctx.target;
  frame.ready
    .then(() => {
      // Timed out or ended while the frame loaded: never send the token late.
      if (ctx.attempt !== attempt) throw new Error("superseded");
      ctx.sentConnect = true;
      return frame.command("connect", { url, token, muted: ctx.muted });
    })
    .then(
      () => {
        if (ctx.attempt !== attempt) return;
        ctx.attempt = null;
        clearTimeout(attempt.timer);
        apply(ctx, { type: "connected" });
        attempt.resolve();
      },
      (error: Error) => {
        if (ctx.attempt === attempt) fail(ctx, error.message);
      },
    );
}

export function connect(ctx: SessionContext): Promise<void> {
  if (ctx.phase.ended) {
    return Promise.reject(
      new Error("AnyReach: this session has ended; create a new one with AnyReach.listen()."),
    );
  }
  if (ctx.attempt) return ctx.attempt.promise;
  if (ctx.phase.state === "connected") return Promise.resolve();
  clearTimeout(ctx.idleTimer);
  const attempt = newAttempt(ctx);
  ctx.attempt = attempt;
  apply(ctx, { type: "connect" });
  sendConnect(ctx, openFrame(ctx), attempt);
  return attempt.promise;
}

export function startAudio(ctx: SessionContext): Promise<void> {
  if (ctx.phase.ended) return Promise.reject(new Error("AnyReach: this session has ended."));
  const frame = ctx.channel;
  // Before connect() there is nothing to play (and the frame needs no message).
  if (!frame || ctx.phase.state === "idle") return Promise.resolve();
  return frame.ready
    .then(() => frame.command("startAudio", {}))
    .catch((error: Error) => {
      fail(ctx, error.message);
      throw error;
    });
}

export function setMuted(ctx: SessionContext, muted: boolean): void {
  ctx.muted = muted;
  // Before connect() the choice travels with the connect command.
  if (ctx.sentConnect && ctx.channel?.isOpen() && !ctx.phase.ended) {
    ctx.channel.command("setMuted", { muted }).catch(ignore);
  }
}

/** Idempotent: every call shares the one teardown. */
export function end(ctx: SessionContext): Promise<void> {
  if (!ctx.ending) ctx.ending = teardown(ctx);
  return ctx.ending;
}

/** Leaves the frame's room (at most END_TIMEOUT_MS), removes the frame, says "ended". */
async function teardown(ctx: SessionContext) {
  apply(ctx, { type: "end" });
  clearTimeout(ctx.idleTimer);
  ctx.events.seal();
  const attempt = ctx.attempt;
  ctx.attempt = null;
  if (attempt) {
    clearTimeout(attempt.timer);
    attempt.reject(new Error("AnyReach: the session was ended before it connected."));
  }
  const channel = ctx.channel;
  if (ctx.sentConnect && channel?.isOpen()) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      channel.command("disconnect", {}).catch(ignore),
      new Promise((resolve) => (timer = setTimeout(resolve, END_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
  }
  ctx.channel?.close();
  apply(ctx, { type: "torndown" });
  ctx.events.emit("ended");
  ctx.events.clear();
}
