// Compiled by tests/browser/test_typings.py with tsc --noEmit against listen-sdk.d.ts.
// Every line under @ts-expect-error must be an error; if the declarations were too
// loose, tsc reports the unused directive and the test fails.
import type { ListenSession, ListenState, ListenTranscript } from "./listen-sdk";

async function startListening(url: string, token: string): Promise<ListenSession> {
  const session = AnyReach.listen({ url, token });
  const chained: ListenSession = session
    .on("stateChange", (state: ListenState) => console.log(state))
    .on("transcript", ({ id, role, text, final }) => {
      const r: "agent" | "user" = role;
      console.log(id.length, r, text.toUpperCase(), final === true);
    })
    .on("agentDisconnected", ({ participantIdentity }) => console.log(participantIdentity))
    .on("error", ({ message }) => console.error(message))
    .on("ended", () => console.log("ended"))
    .on("audioPlaybackChanged", ({ playing }) => console.log(playing ? "playing" : "blocked"));
  const handler = (t: ListenTranscript) => console.log(t.text);
  session.on("transcript", handler).off("transcript", handler);
  await session.connect();
  await session.startAudio();
  session.mute();
  session.unmute();
  const muted: boolean = session.isMuted();
  const state: ListenState = session.getState();
  console.log(muted, state, chained === session);
  await session.end();
  window.AnyReach.listen({ url, token });
  return session;
}

function mistakes(session: ListenSession): void {
  // @ts-expect-error: unknown event name
  session.on("transcripts", () => {});
  // @ts-expect-error: the transcript payload has no "speaker"
  session.on("transcript", (t) => console.log(t.speaker));
  // @ts-expect-error: stateChange's payload is a string union, not an object
  session.on("stateChange", (s: { state: string }) => console.log(s));
  // @ts-expect-error: role is "agent" | "user"
  session.on("transcript", (t) => { const r: "caller" = t.role; console.log(r); });
  // @ts-expect-error: getState() returns a ListenState
  const n: number = session.getState();
  // @ts-expect-error: listen needs a token
  AnyReach.listen({ url: "wss://x" });
  // @ts-expect-error: mute() returns nothing
  session.mute().then(() => {});
  console.log(n);
}

export { mistakes, startListening };
