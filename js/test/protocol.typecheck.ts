// Type-level tests, checked by `make typecheck` (tsc) and never run: every line
// under @ts-expect-error must be a type error, else tsc reports the unused
// directive. They pin what the typed protocol catches at compile time.
import type { ParentChannel } from "../src/frame/channel";
import type { CommandHandlers, EventHandlers } from "../src/protocol";
import type { FrameChannel } from "../src/sdk/channel";

export function sdkSide(frame: FrameChannel): Promise<unknown>[] {
  const ok: Promise<void>[] = [
    frame.command("connect", { url: "wss://lk", token: "a.b.c", muted: false }),
    frame.command("setMuted", { muted: true }),
    frame.command("disconnect", {}),
  ];
  // @ts-expect-error: not a command
  void frame.command("reboot", {});
  // @ts-expect-error: connect needs muted too
  void frame.command("connect", { url: "wss://lk", token: "a.b.c" });
  // @ts-expect-error: setMuted's muted is a boolean
  void frame.command("setMuted", { muted: "yes" });
  // @ts-expect-error: disconnect takes no arguments
  void frame.command("disconnect", { force: true });
  // @ts-expect-error: startAudio's reply carries no value
  const n: Promise<number> = frame.command("startAudio", {});
  return [...ok, n];
}

export function frameSide(peer: ParentChannel): void {
  peer.send("transcript", { id: "s", role: "agent", text: "hi", final: true });
  peer.send("closed", { reason: "ROOM_DELETED", message: undefined });
  // @ts-expect-error: role is "agent" | "user"
  peer.send("transcript", { id: "s", role: "caller", text: "hi", final: true });
  // @ts-expect-error: "idle" never crosses the wire
  peer.send("state", { state: "idle" });
  // @ts-expect-error: not an event
  peer.send("transcripts", {});
}

export const handlers: CommandHandlers = {
  connect: async ({ url, token, muted }) => void [url.length, token.length, muted],
  disconnect: async () => {},
  startAudio: async () => {},
  // @ts-expect-error: setMuted's reply is void, not a number
  setMuted: async () => 42,
};

// @ts-expect-error: every command needs a handler (startAudio is missing)
export const incomplete: CommandHandlers = {
  connect: async () => {},
  disconnect: async () => {},
  setMuted: async () => {},
};

export const listener: EventHandlers = {
  state: ({ state }) => void state,
  transcript: ({ id, role, text, final }) => void [id, role, text, final],
  agentDisconnected: ({ participantIdentity }) => void participantIdentity,
  audioPlaybackChanged: ({ playing }) => void playing,
  error: ({ message }) => void message,
  // @ts-expect-error: closed's data has no playing
  closed: ({ playing }) => void playing,
};

// @ts-expect-error: every event needs a handler (closed is missing)
export const deaf: EventHandlers = {
  state: () => {},
  transcript: () => {},
  agentDisconnected: () => {},
  audioPlaybackChanged: () => {},
  error: () => {},
};
