// TEST ONLY. A scriptable stand-in for LiveKit inside the frame, built into
// js/dist-test/listen-frame-test.js (never into the static directory) and served
// only by the browser tests' own URLconf. Tests drive it from Playwright through
// window.__anyreachFake in the frame.
//
// The LiveKit url passed to AnyReach.listen picks how connect() behaves:
//   ?fake=manual (default)  connecting, then waits for completeConnect()/failConnect()
//   ?fake=auto              connecting -> connected at once
//   ?fake=fail&message=...  rejects with the message
import type { AdapterFactory, AdapterSink, LiveKitState } from "../src/frame/adapter";

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

class ChunkQueue implements AsyncIterable<string> {
  private chunks: string[] = [];
  private done = false;
  private wake: (() => void) | null = null;

  push(chunk: string) {
    this.chunks.push(chunk);
    this.wake?.();
  }

  close() {
    this.done = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.chunks.length) {
        yield this.chunks.shift() as string;
      } else if (this.done) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
      }
    }
  }
}

export interface FakeControl {
  calls: string[];
  /** The urls prepare() was given (apart from calls: it runs at every frame start). */
  prepared: string[];
  ignored: string[];
  hangDisconnect: boolean;
  failStartAudio: string;
  completeConnect(): void;
  failConnect(message: string): void;
  state(state: LiveKitState): void;
  close(reason: string): void;
  segments(identity: string, isAgent: boolean, list: { id: string; text: string; final: boolean }[]): void;
  openStream(identity: string, isAgent: boolean, segmentId: string, final: boolean): number;
  write(stream: number, text: string): void;
  endStream(stream: number, final: boolean): void;
  participantLeft(identity: string, isAgent: boolean): void;
  playbackBlocked(blocked: boolean): void;
  addAudioTrack(): number;
  audioMuted(): boolean[];
  throwInFrame(message: string): void;
}

export function installFake(): { control: FakeControl; factory: AdapterFactory } {
  let sink: AdapterSink | null = null;
  let waiter: Waiter | null = null;
  let queued: { ok: boolean; message: string } | null = null;
  let blocked = false;
  const streams: { queue: ChunkQueue; attributes: Record<string, string> }[] = [];
  const elements: HTMLMediaElement[] = [];
  const need = () => {
    if (!sink) throw new Error("fake: the frame has not created its adapter yet");
    return sink;
  };

  const control: FakeControl = {
    calls: [],
    prepared: [],
    ignored: [],
    hangDisconnect: false,
    failStartAudio: "",
    // Both may be called before connect() reached the frame: the outcome is then queued.
    completeConnect() {
      if (!waiter) return void (queued = { ok: true, message: "" });
      need().state("connected");
      waiter.resolve();
      waiter = null;
    },
    failConnect(message) {
      if (!waiter) return void (queued = { ok: false, message });
      need().state("disconnected");
      waiter.reject(new Error(message));
      waiter = null;
    },
    state: (state) => need().state(state),
    close(reason) {
      need().state("disconnected");
      need().closed(reason);
    },
    segments: (identity, isAgent, list) => need().segments({ identity, isAgent }, list),
    openStream(identity, isAgent, segmentId, final) {
      const queue = new ChunkQueue();
      const attributes: Record<string, string> = {
        "lk.segment_id": segmentId,
        "lk.transcription_final": String(final),
      };
      streams.push({ queue, attributes });
      need().textStream({
        segmentId,
        speaker: { identity, isAgent },
        chunks: queue,
        attributes: () => attributes,
      });
      return streams.length - 1;
    },
    write: (stream, text) => streams[stream].queue.push(text),
    endStream(stream, final) {
      // Like LiveKit's trailer: attributes sent at close are merged in.
      streams[stream].attributes["lk.transcription_final"] = String(final);
      streams[stream].queue.close();
    },
    participantLeft: (identity, isAgent) => need().participantLeft({ identity, isAgent }),
    playbackBlocked(value) {
      blocked = value;
      need().playback(!value);
    },
    addAudioTrack() {
      const el = new Audio();
      elements.push(el);
      need().audioElement(el, true);
      return elements.length;
    },
    audioMuted: () => elements.map((el) => el.muted),
    throwInFrame(message) {
      setTimeout(() => {
        throw new Error(message);
      });
    },
  };

  const factory: AdapterFactory = (s) => {
    sink = s;
    return {
      prepare(url) {
        control.prepared.push(url);
      },
      connect(url) {
        control.calls.push("connect");
        const params = new URL(url).searchParams;
        s.state("connecting");
        const mode = params.get("fake") || "manual";
        if (mode === "auto") {
          s.state("connected");
          return Promise.resolve();
        }
        if (mode === "fail") {
          s.state("disconnected");
          return Promise.reject(new Error(params.get("message") || "fake connect failure"));
        }
        const promise = new Promise<void>((resolve, reject) => (waiter = { resolve, reject }));
        const outcome = queued;
        queued = null;
        if (outcome?.ok) control.completeConnect();
        else if (outcome) control.failConnect(outcome.message);
        return promise;
      },
      disconnect() {
        control.calls.push("disconnect");
        if (control.hangDisconnect) return new Promise<void>(() => {});
        s.state("disconnected");
        return Promise.resolve();
      },
      startAudio() {
        control.calls.push("startAudio");
        if (control.failStartAudio) return Promise.reject(new Error(control.failStartAudio));
        // Like LiveKit's Room.startAudio(): plays (and unmutes) every attached element.
        for (const el of elements) el.muted = false;
        if (blocked) {
          blocked = false;
          s.playback(true);
        }
        return Promise.resolve();
      },
    };
  };
  return { control, factory };
}
