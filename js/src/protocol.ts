// The SDK <-> frame wire protocol, shared by both bundles. Bump VERSION on any
// incompatible change: the SDK and the frame refuse a peer of another version.
//
// Two layers, each with its own messages and guards:
//   handshake (window.postMessage, only two messages, neither carries a secret)
//     frame -> parent  ReadyMessage                 (target "*": nothing secret)
//     parent -> frame  InitMessage + 1 transferred MessagePort (target: the frame's origin)
//   transport (that MessagePort, everything else, including url and token)
//     SDK -> frame     CommandMessage  (CommandMap: name -> args and reply)
//     frame -> SDK     ReplyMessage, EventMessage (EventMap: name -> data)
//
// Types only (erased by esbuild): the public payloads come from the published
// declarations, so the wire and the page-facing contract cannot drift apart.
import type {
  ListenAgentDisconnected,
  ListenAudioPlaybackChanged,
  ListenError,
  ListenTranscript,
} from "../../anyreach_listen/static/anyreach_listen/listen-sdk";

export const PROTOCOL = "anyreach-listen";
export const VERSION = 1;

export type Dict = Record<string, unknown>;

export function isDict(value: unknown): value is Dict {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---- handshake ----

interface Envelope<T extends string> {
  protocol: typeof PROTOCOL;
  /** Any number: the receiver reports a mismatch instead of ignoring it. */
  version: number;
  type: T;
}
export type ReadyMessage = Envelope<"ready">;
export type InitMessage = Envelope<"init">;
export type HandshakeMessage = ReadyMessage | InitMessage;

function isEnvelope<T extends HandshakeMessage["type"]>(value: unknown, type: T): value is Envelope<T> {
  return isDict(value) && value.protocol === PROTOCOL && value.type === type;
}
export const isReady = (value: unknown): value is ReadyMessage => isEnvelope(value, "ready");
export const isInit = (value: unknown): value is InitMessage => isEnvelope(value, "init");

export function handshake<T extends HandshakeMessage["type"]>(type: T): Envelope<T> {
  return { protocol: PROTOCOL, version: VERSION, type };
}

// ---- transport: commands and their replies ----

/** Every command the frame runs: its arguments and the value its reply carries. */
export interface CommandMap {
  connect: { args: { url: string; token: string; muted: boolean }; reply: void };
  disconnect: { args: Record<string, never>; reply: void };
  startAudio: { args: Record<string, never>; reply: void };
  setMuted: { args: { muted: boolean }; reply: void };
}
export type CommandName = keyof CommandMap;
export type CommandArgs<N extends CommandName> = CommandMap[N]["args"];
export type CommandReply<N extends CommandName> = CommandMap[N]["reply"];

export interface CommandOf<N extends CommandName> {
  type: "command";
  id: number;
  name: N;
  args: CommandArgs<N>;
}
/** The discriminated union of all commands: switching on `name` narrows `args`. */
export type CommandMessage = { [N in CommandName]: CommandOf<N> }[CommandName];

/** A command's envelope: an id to reply to, whatever its name and arguments. */
export interface CommandEnvelope {
  type: "command";
  id: number;
  name?: unknown;
  args?: unknown;
}

export function isCommandEnvelope(value: unknown): value is CommandEnvelope {
  return isDict(value) && value.type === "command" && typeof value.id === "number";
}

/** An allow-listed name with well-formed arguments (a switch: nothing is looked up by name). */
export function isCommand(value: unknown): value is CommandMessage {
  if (!isCommandEnvelope(value)) return false;
  const args = value.args;
  switch (value.name) {
    case "connect":
      return (
        isDict(args) &&
        typeof args.url === "string" &&
        typeof args.token === "string" &&
        typeof args.muted === "boolean"
      );
    case "setMuted":
      return isDict(args) && typeof args.muted === "boolean";
    case "disconnect":
    case "startAudio":
      return true;
    default:
      return false;
  }
}

export type ReplyMessage =
  | { type: "reply"; id: number; ok: true; result?: unknown }
  | { type: "reply"; id: number; ok: false; error: string };

export function isReply(value: unknown): value is ReplyMessage {
  return (
    isDict(value) &&
    value.type === "reply" &&
    typeof value.id === "number" &&
    (value.ok === true || (value.ok === false && typeof value.error === "string"))
  );
}

// ---- transport: events ----

/** The frame's session states (the page-facing "idle" never crosses the wire). */
export type WireState = "connecting" | "connected" | "disconnected";

/** Every event the frame sends: its name and data. */
export interface EventMap {
  state: { state: WireState };
  transcript: ListenTranscript;
  agentDisconnected: ListenAgentDisconnected;
  audioPlaybackChanged: ListenAudioPlaybackChanged;
  error: ListenError;
  /** The room went away for good; `message` only when that is a failure. */
  closed: { reason: string; message?: string };
}
export type EventName = keyof EventMap;

export interface EventOf<N extends EventName> {
  type: "event";
  name: N;
  data: EventMap[N];
}
export type EventMessage = { [N in EventName]: EventOf<N> }[EventName];

export function event<N extends EventName>(name: N, data: EventMap[N]): EventOf<N> {
  return { type: "event", name, data };
}

/** An event with a known name and well-formed data. */
export function isEvent(value: unknown): value is EventMessage {
  if (!isDict(value) || value.type !== "event" || !isDict(value.data)) return false;
  const d = value.data;
  switch (value.name) {
    case "state":
      return d.state === "connecting" || d.state === "connected" || d.state === "disconnected";
    case "transcript":
      return (
        typeof d.id === "string" &&
        (d.role === "agent" || d.role === "user") &&
        typeof d.text === "string" &&
        typeof d.final === "boolean"
      );
    case "agentDisconnected":
      return typeof d.participantIdentity === "string";
    case "audioPlaybackChanged":
      return typeof d.playing === "boolean";
    case "error":
      return typeof d.message === "string";
    case "closed":
      return typeof d.reason === "string" && (d.message === undefined || typeof d.message === "string");
    default:
      return false;
  }
}

/** The frame's side of every command: tsc checks each handler's arguments and reply. */
export type CommandHandlers = {
  [N in CommandName]: (args: CommandArgs<N>) => Promise<CommandReply<N>>;
};

/** The SDK's side of every event: tsc checks that each has its handler and its data. */
export type EventHandlers = { [N in EventName]: (data: EventMap[N]) => void };
