// The frame's session: wires the state machine (state.ts) and the handlers
// (handlers.ts) to one LiveKit adapter; the parent channel (channel.ts) is its
// transport. LiveKit's states are mapped to the SDK's, transcripts held until
// "connected", mute kept on every audio element, the room's end reported.
import type { CommandHandlers } from "../protocol";
import type { AdapterFactory } from "./adapter";
import type { ParentChannel } from "./channel";
import { adapterOf, adapterSink, commandHandlers, type FrameContext, offerTranscript } from "./handlers";
import { INITIAL_LINK } from "./state";
import { createTranscripts } from "./transcripts";

/** How long a lost connection may take to come back before the session gives up. */
export const RECONNECT_LIMIT_MS = 10000;

export interface FrameSessionOptions {
  createAdapter: AdapterFactory;
  /** Tests only: RECONNECT_LIMIT_MS otherwise. */
  reconnectLimitMs?: number;
  /** This host's LiveKit server (LIVEKIT_URL): the only url the frame connects to. */
  livekitUrl: string;
  peer: Pick<ParentChannel, "origin" | "send">;
}

export interface FrameSession {
  commands: CommandHandlers;
  /** At the frame's start: the adapter gets ready for this host's LiveKit server. */
  prepare(): void;
}

export function frameSession(options: FrameSessionOptions): FrameSession {
  const ctx: FrameContext = {
    createAdapter: options.createAdapter,
    livekitUrl: options.livekitUrl,
    peer: options.peer,
    reconnectLimit: options.reconnectLimitMs ?? RECONNECT_LIMIT_MS,
    audio: new Set(),
    transcripts: createTranscripts((transcript) => offerTranscript(ctx, transcript)),
    adapter: null,
    link: INITIAL_LINK,
    muted: false,
    playing: true,
    reconnectTimer: undefined,
    early: [],
  };
  const sink = adapterSink(ctx);
  return {
    commands: commandHandlers(ctx, sink),
    prepare() {
      // Only the configured server: nothing the page sent is needed (or trusted) here.
      if (!options.livekitUrl) return;
      adapterOf(ctx, sink).prepare(options.livekitUrl);
    },
  };
}
