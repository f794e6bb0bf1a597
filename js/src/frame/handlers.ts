// What the frame does: each SDK command on the LiveKit adapter, and each thing
// the adapter reports turned into protocol events, over one session's state.
import type { ListenTranscript } from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { CommandHandlers } from "../protocol";
import type { AdapterFactory, AdapterSink, ListenAdapter } from "./adapter";
import type { ParentChannel } from "./channel";
import { disconnectMessage, errorMessage, reconnectMessage } from "./errors";
import { checkGrant } from "./grant";
import { type Link, type LinkInput, type LinkStep, step } from "./state";
import type { Transcripts } from "./transcripts";

/** One frame session's state, shared by its handlers. */
export interface FrameContext {
  readonly createAdapter: AdapterFactory;
  /** This host's LiveKit server (LIVEKIT_URL): the only url the frame connects to. */
  readonly livekitUrl: string;
  readonly peer: Pick<ParentChannel, "origin" | "send">;
  readonly reconnectLimit: number;
  readonly audio: Set<HTMLMediaElement>;
  readonly transcripts: Transcripts;
  adapter: ListenAdapter | null;
  link: Link;
  muted: boolean;
  playing: boolean;
  reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  // Transcripts can arrive a moment before LiveKit reports "connected"; they are
  // held until then so pages always see stateChange("connected") first.
  early: ListenTranscript[];
}

/** Sends a transcript now, or holds it until the SDK has been told "connected". */
export function offerTranscript(ctx: FrameContext, transcript: ListenTranscript): void {
  if (ctx.link.sent === "connected") ctx.peer.send("transcript", transcript);
  else ctx.early.push(transcript);
}

/** Feeds the state machine one input and does what it says (but "closed", whose reason the caller has). */
function advance(ctx: FrameContext, input: LinkInput): LinkStep {
  const next = step(ctx.link, input);
  ctx.link = next.link;
  if (next.timer === "stop") {
    clearTimeout(ctx.reconnectTimer);
    ctx.reconnectTimer = undefined;
  } else if (next.timer === "start") {
    ctx.reconnectTimer = setTimeout(() => giveUpReconnecting(ctx), ctx.reconnectLimit);
  }
  if (next.send) {
    ctx.peer.send("state", { state: next.send });
    if (next.send === "connected") {
      for (const transcript of ctx.early) ctx.peer.send("transcript", transcript);
      ctx.early = [];
    }
  }
  return next;
}

function giveUpReconnecting(ctx: FrameContext) {
  ctx.reconnectTimer = undefined;
  if (!advance(ctx, { type: "giveUp" }).close) return;
  const message = reconnectMessage(ctx.reconnectLimit);
  ctx.peer.send("closed", { reason: "RECONNECT_TIMEOUT", message });
  ctx.adapter?.disconnect().catch(() => {});
}

function applyMute(ctx: FrameContext) {
  for (const el of ctx.audio) el.muted = ctx.muted;
  for (const el of document.querySelectorAll<HTMLMediaElement>("audio,video")) el.muted = ctx.muted;
}

function audioElement(ctx: FrameContext, el: HTMLMediaElement, added: boolean) {
  if (!added) {
    ctx.audio.delete(el);
    el.remove();
    return;
  }
  ctx.audio.add(el);
  el.muted = ctx.muted;
  // livekit-client unmutes elements itself (startAudio, iOS visibility
  // changes): put the listener's choice back whenever that happens.
  el.addEventListener("volumechange", () => {
    if (ctx.audio.has(el) && el.muted !== ctx.muted) el.muted = ctx.muted;
  });
  document.body.appendChild(el);
}

/** What the adapter reports, turned into protocol events. */
export function adapterSink(ctx: FrameContext): AdapterSink {
  const sink: AdapterSink = {
    state: (state) => void advance(ctx, { type: "livekit", state }),
    closed(reason) {
      if (advance(ctx, { type: "closed" }).close) {
        ctx.peer.send("closed", { reason, message: disconnectMessage(reason) });
      }
    },
    segments: (speaker, list) => ctx.transcripts.segments(speaker, list),
    textStream(stream) {
      void ctx.transcripts.stream(stream);
    },
    participantLeft(participant) {
      if (participant.isAgent) {
        ctx.peer.send("agentDisconnected", { participantIdentity: participant.identity });
      }
    },
    playback(playing) {
      if (playing !== ctx.playing) {
        ctx.playing = playing;
        ctx.peer.send("audioPlaybackChanged", { playing });
      }
    },
    audioElement: (el, added) => audioElement(ctx, el, added),
  };
  return sink;
}

/** The adapter, created on first use with `sink` as its reporter. */
export function adapterOf(ctx: FrameContext, sink: AdapterSink): ListenAdapter {
  ctx.adapter = ctx.adapter || ctx.createAdapter(sink);
  return ctx.adapter;
}

/** The SDK's commands (tsc checks that each has its handler). */
export function commandHandlers(ctx: FrameContext, sink: AdapterSink): CommandHandlers {
  return {
    async connect({ url, token, muted }) {
      ctx.muted = muted;
      checkGrant(url, token, ctx.livekitUrl, ctx.peer.origin());
      advance(ctx, { type: "connect" });
      await adapterOf(ctx, sink).connect(url, token);
      applyMute(ctx);
    },
    async disconnect() {
      advance(ctx, { type: "disconnect" });
      try {
        await ctx.adapter?.disconnect();
      } finally {
        for (const el of ctx.audio) el.remove();
        ctx.audio.clear();
      }
    },
    async startAudio() {
      try {
        await ctx.adapter?.startAudio();
      } catch (error) {
        throw new Error(
          "AnyReach: the browser blocked audio playback. Call startAudio() from a click or key " +
            `handler on your page. (${errorMessage(error)})`,
        );
      } finally {
        applyMute(ctx); // LiveKit's startAudio() unmutes every element it plays
      }
      sink.playback(true);
    },
    async setMuted({ muted }) {
      ctx.muted = muted;
      applyMute(ctx);
    },
  };
}
