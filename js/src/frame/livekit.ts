// The production adapter: livekit-client's Room, subscribe-only.
import {
  ConnectionError,
  ConnectionErrorReason,
  DisconnectReason,
  Room,
  RoomEvent,
  setLogLevel,
  Track,
} from "livekit-client";
import type { AdapterFactory, AdapterSink, ParticipantRef } from "./adapter";
import { errorMessage } from "./errors";
import { streamSpeaker } from "./speaker";

const TOPIC = "lk.transcription";

// livekit-client logs every state change at info level; the frame is invisible
// plumbing, so only warnings and errors reach the console.
setLogLevel("warn");

function describeConnectError(error: unknown, url: string): string {
  if (error instanceof ConnectionError) {
    switch (error.reason) {
      case ConnectionErrorReason.NotAllowed:
        return (
          "AnyReach: LiveKit refused the listener token (expired, revoked or for another " +
          "server). Mint a new token and call connect() again."
        );
      case ConnectionErrorReason.ServerUnreachable:
      case ConnectionErrorReason.WebSocket:
        return `AnyReach: cannot reach the LiveKit server at ${url}. Check the network, then call connect() again.`;
      case ConnectionErrorReason.Cancelled:
        return "AnyReach: the connection attempt was cancelled.";
    }
  }
  return `AnyReach: could not connect to the live conversation: ${errorMessage(error)}`;
}

const ref = (p: { identity: string; isAgent: boolean }): ParticipantRef => ({
  identity: p.identity,
  isAgent: p.isAgent,
});

/** A Room, subscribe-only, that reports everything to `sink`. */
function newRoom(sink: AdapterSink): Room {
  const r = new Room({ adaptiveStream: false, dynacast: false, webAudioMix: false });
  r.on(RoomEvent.ConnectionStateChanged, (state) => sink.state(state));
  r.on(RoomEvent.Disconnected, (reason) =>
    sink.closed(reason === undefined ? "UNKNOWN_REASON" : DisconnectReason[reason] || String(reason)),
  );
  r.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === Track.Kind.Audio) sink.audioElement(track.attach(), true);
  });
  r.on(RoomEvent.TrackUnsubscribed, (track) => {
    for (const el of track.detach()) sink.audioElement(el, false);
  });
  // LiveKit forwards legacy transcriptions from agents only; the participant is the
  // one the agent names as transcribed (its own speech, or the user's).
  r.on(RoomEvent.TranscriptionReceived, (segments, participant) => {
    sink.segments(participant ? ref(participant) : { identity: "", isAgent: false }, segments);
  });
  r.on(RoomEvent.ParticipantDisconnected, (participant) => sink.participantLeft(ref(participant)));
  r.on(RoomEvent.AudioPlaybackStatusChanged, (playing: boolean) => sink.playback(playing));
  r.registerTextStreamHandler(TOPIC, (reader, info) => {
    const attributes = () => reader.info.attributes || {};
    const trackSid = attributes()["lk.transcribed_track_id"];
    const speaker = streamSpeaker(r.remoteParticipants, info.identity, trackSid);
    // A participant claiming a track it does not own: never shown, not even as the user's.
    if (!speaker) return;
    const segmentId = attributes()["lk.segment_id"] || reader.info.id;
    sink.textStream({ segmentId, speaker, chunks: reader, attributes });
  });
  return r;
}

export const createLiveKitAdapter: AdapterFactory = (sink) => {
  let room: Room | null = null;
  // Built by prepare() before any token: the first connect() uses it.
  let spare: Room | null = null;

  return {
    prepare(url) {
      spare = spare || newRoom(sink);
      // A HEAD request to the server (DNS, TCP, TLS) with no token; it logs and
      // swallows its own failures.
      void spare.prepareConnection(url);
    },
    async connect(url, token) {
      if (room) {
        room.removeAllListeners();
        await room.disconnect();
      }
      const r = spare || newRoom(sink);
      spare = null;
      room = r;
      try {
        await r.connect(url, token, { autoSubscribe: true });
      } catch (error) {
        if (room === r) room = null;
        r.removeAllListeners();
        throw new Error(describeConnectError(error, url));
      }
      sink.playback(r.canPlaybackAudio);
    },
    async disconnect() {
      const r = room;
      room = null;
      if (r) await r.disconnect();
    },
    async startAudio() {
      if (room) await room.startAudio();
    },
  };
};
