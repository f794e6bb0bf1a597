// Transcript merging, pure (no DOM, no LiveKit): real agents send every segment
// twice, as legacy transcription segments and as lk.transcription text streams,
// and this turns both into one sequence of whole-text updates per segment id.
//
// Rules: `text` is the segment's whole text so far; an update that repeats the
// last text or goes backwards (a prefix of it) is dropped unless it settles the
// segment; a settled (final) segment is never emitted again; an empty interim
// segment is not worth showing. Segments are told apart by role too, so a caller
// reusing the id of the agent's segment can neither settle nor hide it.
import type { ListenTranscript } from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { ParticipantRef, SegmentIn, TranscriptStream } from "./adapter";
import { errorMessage } from "./errors";

/** The attribute that says a text stream's segment is settled ("true"/"false"). */
export const FINAL_ATTRIBUTE = "lk.transcription_final";

export interface Transcripts {
  /** Legacy transcription segments (whole text per update). */
  segments(speaker: ParticipantRef, list: readonly SegmentIn[]): void;
  /** One lk.transcription text stream; resolves once it is consumed. */
  stream(stream: TranscriptStream): Promise<void>;
}

export function createTranscripts(
  emit: (transcript: ListenTranscript) => void,
  warn: (message: string) => void = (m) => console.warn(m),
): Transcripts {
  const seen = new Map<string, { text: string; final: boolean }>();

  function offer(id: string, speaker: ParticipantRef, text: string, final: boolean) {
    const role = speaker.isAgent ? "agent" : "user";
    const key = `${role}:${id}`;
    const prev = seen.get(key);
    if (prev) {
      if (prev.final) return;
      if (!final && prev.text.startsWith(text)) return;
    } else if (!text && !final) {
      return;
    }
    seen.set(key, { text, final });
    emit({ id, role, text, final });
  }

  return {
    segments(speaker, list) {
      for (const s of list) offer(s.id, speaker, s.text, s.final);
    },
    async stream(stream) {
      const id = stream.segmentId;
      // A stream that is final from its first attribute carries the whole text
      // at once (user speech): only its end is worth emitting.
      const finalAtStart = stream.attributes()[FINAL_ATTRIBUTE] === "true";
      let text = "";
      try {
        for await (const chunk of stream.chunks) {
          text += chunk; // the agent's speech arrives as deltas
          if (!finalAtStart) offer(id, stream.speaker, text, false);
        }
      } catch (error) {
        warn(`AnyReach: a transcript stream broke off: ${errorMessage(error)}`);
      }
      // Read again: the final flag may arrive in the stream's trailer.
      offer(id, stream.speaker, text, stream.attributes()[FINAL_ATTRIBUTE] === "true");
    },
  };
}
