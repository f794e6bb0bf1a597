// The frame talks to LiveKit only through this interface. The production frame
// bundle wires the livekit-client adapter; the test bundle wires a scriptable
// fake. The frame core (transcripts, mute, states, protocol) is shared.

/** LiveKit's connection states (livekit-client's ConnectionState values). */
export type LiveKitState =
  | "connecting"
  | "connected"
  | "reconnecting"
  | "signalReconnecting"
  | "disconnected";

export interface ParticipantRef {
  identity: string;
  isAgent: boolean;
}

export interface SegmentIn {
  id: string;
  text: string;
  final: boolean;
}

/** One text stream on the lk.transcription topic. */
export interface TranscriptStream {
  segmentId: string;
  /** Whose speech this is (the transcribed track's owner, else the sender). */
  speaker: ParticipantRef;
  /** Chunks as they arrive: deltas within one stream. */
  chunks: AsyncIterable<string>;
  /** The stream's attributes; read again after the last chunk (trailers may add some). */
  attributes(): Record<string, string>;
}

/** What an adapter reports to the frame core. */
export interface AdapterSink {
  state(state: LiveKitState): void;
  /** The room connection ended without being asked to (reason: DisconnectReason name). */
  closed(reason: string): void;
  segments(speaker: ParticipantRef, segments: SegmentIn[]): void;
  textStream(stream: TranscriptStream): void;
  participantLeft(participant: ParticipantRef): void;
  playback(playing: boolean): void;
  audioElement(element: HTMLMediaElement, added: boolean): void;
}

export interface ListenAdapter {
  /**
   * Gets ready to connect to `url`, this host's LiveKit server, before any token
   * arrives: whatever can be done without one (build the room, warm the
   * connection). Never throws; connect() works without it.
   */
  prepare(url: string): void;
  /** Resolves once connected (subscribed); rejects with a message a person can act on. */
  connect(url: string, token: string): Promise<void>;
  disconnect(): Promise<void>;
  startAudio(): Promise<void>;
}

export type AdapterFactory = (sink: AdapterSink) => ListenAdapter;
