// Type declarations for the Anyreach live-listen SDK served at /public/listen-sdk.
// Load the script with <script src="https://HOST/public/listen-sdk" async></script>;
// it registers window.AnyReach.listen. Reference this file from TypeScript with
// /// <reference path="listen-sdk.d.ts" /> or an import type.
//
// This file is also the one source of these types for the SDK itself: js/src
// imports them (event names, payloads, the session), so tsc checks the
// implementation against what is published here.

/** The session's connection state, as reported by getState() and stateChange. */
export type ListenState = "idle" | "connecting" | "connected" | "disconnected";

/** A transcript segment. `text` is the whole segment text so far, not a delta. */
export interface ListenTranscript {
  /** The segment id: interim updates keep it. */
  readonly id: string;
  readonly role: "agent" | "user";
  readonly text: string;
  /** False for interim text, true (once) when the segment is settled. */
  readonly final: boolean;
}

export interface ListenAgentDisconnected {
  readonly participantIdentity: string;
}

export interface ListenError {
  /** What went wrong and what to do about it. */
  readonly message: string;
}

/** Extension to the contract: whether the browser lets the session's audio play. */
export interface ListenAudioPlaybackChanged {
  readonly playing: boolean;
}

/** Event name to payload. `ended` has no payload. */
export interface ListenEventMap {
  stateChange: ListenState;
  transcript: ListenTranscript;
  agentDisconnected: ListenAgentDisconnected;
  error: ListenError;
  ended: void;
  audioPlaybackChanged: ListenAudioPlaybackChanged;
}

export type ListenEventName = keyof ListenEventMap;

export type ListenEventHandler<K extends ListenEventName> = [ListenEventMap[K]] extends [void]
  ? () => void
  : (payload: ListenEventMap[K]) => void;

export interface ListenOptions {
  /** `url` from the listener-token response. */
  url: string;
  /** `token` from the listener-token response. */
  token: string;
}

export interface ListenSession {
  /** Resolves once subscribed; rejects on error or after 15 s. Reuses an in-flight call. */
  connect(): Promise<void>;
  /** Resumes audio playback. Call it from a user-gesture handler. */
  startAudio(): Promise<void>;
  /** Mutes local audio output only. */
  mute(): void;
  unmute(): void;
  isMuted(): boolean;
  getState(): ListenState;
  /** Ends the session and removes the hidden iframe (forced after 3 s). Idempotent. */
  end(): Promise<void>;
  /** Registers a handler. Unknown event names throw a TypeError. */
  on<K extends ListenEventName>(event: K, handler: ListenEventHandler<K>): ListenSession;
  off<K extends ListenEventName>(event: K, handler: ListenEventHandler<K>): ListenSession;
}

export interface AnyReachSdk {
  /**
   * Creates a session (state "idle") and injects its hidden iframe at once, so the
   * frame loads while you wire handlers; only connect() sends it the token. A
   * session not connected within 30 s gives its iframe back (connect() loads a
   * new one); end() removes it at any time.
   */
  listen(options: ListenOptions): ListenSession;
}

declare global {
  interface Window {
    AnyReach: AnyReachSdk;
  }
  // eslint-disable-next-line no-var
  var AnyReach: AnyReachSdk;
}
