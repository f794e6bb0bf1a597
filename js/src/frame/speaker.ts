// Whose speech a lk.transcription text stream is, pure (no LiveKit import): the
// role comes from who published, as LiveKit reports it, never from anything the
// sender says about itself (identity, name, attributes, stream attributes).
//
// LiveKit stamps every stream with its sender's identity and lets only agents
// (participants of kind AGENT, a grant of their token) send under another
// identity. So a sender that is not an agent speaks for itself at most: a
// stream of its naming a track it does not own is dropped. An agent speaks for
// itself, or for the owner of the track it names (the user it transcribes).
import type { ParticipantRef } from "./adapter";

/** The little of livekit-client's RemoteParticipant this needs. */
export interface Publisher {
  identity: string;
  /** livekit-client's isAgent: the participant's kind (or agent grant), from its token. */
  isAgent: boolean;
  trackPublications: { has(trackSid: string): boolean };
}

export interface Publishers<P extends Publisher> {
  get(identity: string): P | undefined;
  values(): Iterable<P>;
}

const ref = (p: Publisher): ParticipantRef => ({ identity: p.identity, isAgent: p.isAgent });

/** The speaker of a stream from `senderIdentity` naming `trackSid`; null: drop it. */
export function streamSpeaker<P extends Publisher>(
  participants: Publishers<P>,
  senderIdentity: string,
  trackSid: string | undefined,
): ParticipantRef | null {
  const sender = participants.get(senderIdentity);
  if (!sender?.isAgent) {
    if (trackSid && !sender?.trackPublications.has(trackSid)) return null;
    return { identity: senderIdentity, isAgent: false };
  }
  if (!trackSid || sender.trackPublications.has(trackSid)) return ref(sender);
  for (const p of participants.values()) {
    if (p.trackPublications.has(trackSid)) return ref(p);
  }
  // An agent transcribing a track nobody here owns: someone else's speech.
  return { identity: "", isAgent: false };
}
