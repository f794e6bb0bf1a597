// The frame's session state machine: runs the SDK's commands on a LiveKit
// adapter and turns what the adapter reports into protocol events (LiveKit's
// states mapped to the SDK's, transcripts held until "connected", mute kept on
// every audio element, the room closing for good).
import type { ListenTranscript } from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { CommandHandlers, WireState } from "../protocol";
import type { AdapterFactory, AdapterSink, ListenAdapter, LiveKitState } from "./adapter";
import type { ParentChannel } from "./channel";
import { checkGrant } from "./grant";
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

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** LiveKit's states, as the SDK reports them. */
export function wireState(state: LiveKitState): WireState {
  return state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "connecting";
}

export function disconnectMessage(reason: string): string | undefined {
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

// livekit-client retries a lost connection for about 45 s (longer when each attempt
// waits for its own timeouts) while the page only sees "connecting": a listener
// whose LiveKit server died must hear about it while someone still cares.
export function reconnectMessage(limitMs: number): string {
  return (
    "AnyReach: lost the connection to the live conversation and could not get it back " +
    `within ${Math.round(limitMs / 1000)} s. Start a new session to listen again.`
  );
}

export interface FrameSession {
  commands: CommandHandlers;
  /** At the frame's start: the adapter gets ready for this host's LiveKit server. */
  prepare(): void;
}

export function frameSession(options: FrameSessionOptions): FrameSession {
  const { peer } = options;
  let adapter: ListenAdapter | null = null;
  let muted = false;
  let sentState: WireState | "" = "";
  let connected = false;
  let closing = false;
  let playing = true;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  const reconnectLimit = options.reconnectLimitMs ?? RECONNECT_LIMIT_MS;
  const audio = new Set<HTMLMediaElement>();
  // Transcripts can arrive a moment before LiveKit reports "connected"; they are
  // held until then so pages always see stateChange("connected") first.
  let early: ListenTranscript[] = [];
  const transcripts = createTranscripts((transcript) => {
    if (sentState === "connected") peer.send("transcript", transcript);
    else early.push(transcript);
  });

  function applyMute() {
    for (const el of audio) el.muted = muted;
    for (const el of document.querySelectorAll<HTMLMediaElement>("audio,video")) el.muted = muted;
  }

  function stopReconnectTimer() {
    clearTimeout(reconnectTimer);
    reconnectTimer = undefined;
  }

  function giveUpReconnecting() {
    reconnectTimer = undefined;
    if (!connected || closing) return;
    connected = false; // the room's own Disconnected that follows is not reported again
    peer.send("closed", { reason: "RECONNECT_TIMEOUT", message: reconnectMessage(reconnectLimit) });
    adapter?.disconnect().catch(() => {});
  }

  const sink: AdapterSink = {
    state(state) {
      const mapped = wireState(state);
      if (mapped === "connected") {
        connected = true;
        stopReconnectTimer();
      } else if (mapped === "connecting" && connected && !closing && reconnectTimer === undefined) {
        reconnectTimer = setTimeout(giveUpReconnecting, reconnectLimit);
      } else if (mapped === "disconnected") {
        stopReconnectTimer();
      }
      if (mapped !== sentState) {
        sentState = mapped;
        peer.send("state", { state: mapped });
        if (mapped === "connected") {
          for (const transcript of early) peer.send("transcript", transcript);
          early = [];
        }
      }
    },
    closed(reason) {
      if (!connected || closing) return; // a failed connect is reported by connect() itself
      connected = false;
      stopReconnectTimer();
      peer.send("closed", { reason, message: disconnectMessage(reason) });
    },
    segments: (speaker, list) => transcripts.segments(speaker, list),
    textStream(stream) {
      void transcripts.stream(stream);
    },
    participantLeft(participant) {
      if (participant.isAgent) {
        peer.send("agentDisconnected", { participantIdentity: participant.identity });
      }
    },
    playback(value) {
      if (value !== playing) {
        playing = value;
        peer.send("audioPlaybackChanged", { playing });
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

  const commands: CommandHandlers = {
    async connect({ url, token, muted: mute }) {
      muted = mute;
      checkGrant(url, token, options.livekitUrl, peer.origin());
      closing = false;
      adapter = adapter || options.createAdapter(sink);
      await adapter.connect(url, token);
      applyMute();
    },
    async disconnect() {
      closing = true;
      connected = false;
      stopReconnectTimer();
      try {
        await adapter?.disconnect();
      } finally {
        for (const el of audio) el.remove();
        audio.clear();
      }
    },
    async startAudio() {
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
    },
    async setMuted({ muted: mute }) {
      muted = mute;
      applyMute();
    },
  };
  return {
    commands,
    prepare() {
      // Only the configured server: nothing the page sent is needed (or trusted) here.
      if (!options.livekitUrl) return;
      adapter = adapter || options.createAdapter(sink);
      adapter.prepare(options.livekitUrl);
    },
  };
}
