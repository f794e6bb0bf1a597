// BENCH ONLY (bench/bench_sdk.py): the baseline an integrator would write with
// livekit-client on their own page, with the same Room options as the frame's
// adapter and the same transcript merging, so a comparison with the SDK
// measures only what the hidden frame adds. Built into js/dist-test/ (never
// shipped) and served by the benchmark's embedding site.
import { Room, RoomEvent, setLogLevel } from "livekit-client";
import type { ListenTranscript } from "../../anyreach_listen/static/anyreach_listen/listen-sdk";
import { createTranscripts } from "../src/frame/transcripts";

setLogLevel("warn"); // as in the frame: console logging is not free

/** A wall-clock time in ms, comparable across documents and processes. */
const now = () => performance.timeOrigin + performance.now();

export interface DirectListener {
  connect(): Promise<void>;
  /** livekit-client's own warm-up, for a page that knows the url ahead of the click. */
  prepare(): Promise<void>;
  disconnect(): Promise<void>;
  transcripts: [ListenTranscript, number][];
}

function directListen(url: string, token: string): DirectListener {
  const room = new Room({ adaptiveStream: false, dynacast: false, webAudioMix: false });
  const received: [ListenTranscript, number][] = [];
  const merged = createTranscripts((t) => received.push([t, now()]));
  const none = { identity: "", isAgent: false };
  room.on(RoomEvent.TranscriptionReceived, (segments, p) =>
    merged.segments(p ? { identity: p.identity, isAgent: p.isAgent } : none, segments),
  );
  room.registerTextStreamHandler("lk.transcription", (reader, info) => {
    const sender = room.remoteParticipants.get(info.identity);
    const attributes = () => reader.info.attributes || {};
    void merged.stream({
      segmentId: attributes()["lk.segment_id"] || reader.info.id,
      // The simulator's agent sends the user's transcripts too: the transcribed
      // track's owner is the speaker.
      speaker: speakerOf(attributes()["lk.transcribed_track_id"]) ||
        (sender ? { identity: sender.identity, isAgent: sender.isAgent } : none),
      chunks: reader,
      attributes,
    });
  });
  room.on(RoomEvent.TrackSubscribed, (track) => {
    document.body.appendChild(track.attach());
  });

  function speakerOf(trackSid: string | undefined) {
    if (!trackSid) return null;
    for (const p of room.remoteParticipants.values()) {
      if (p.trackPublications.has(trackSid)) return { identity: p.identity, isAgent: p.isAgent };
    }
    return none;
  }

  return {
    connect: () => room.connect(url, token, { autoSubscribe: true }),
    prepare: () => room.prepareConnection(url),
    disconnect: () => room.disconnect(),
    transcripts: received,
  };
}

(window as unknown as { directListen: typeof directListen }).directListen = directListen;
