// The SDK <-> frame wire protocol, shared by both bundles. Bump VERSION on any
// incompatible change: the SDK and the frame refuse a peer of another version.
//
// window messages (only two, both carry no secret):
//   frame -> parent  {protocol, version, type: "ready"}        (target "*": nothing secret)
//   parent -> frame  {protocol, version, type: "init"} + 1 transferred MessagePort
//                    (target: the frame's concrete origin)
// MessagePort messages (everything else, including url and token):
//   SDK -> frame     {type: "command", id, name, args}
//                    names: connect {url, token, muted}, disconnect, startAudio, setMuted {muted}
//   frame -> SDK     {type: "reply", id, ok, error?}
//                    {type: "event", name, data}
//                    names: state, transcript, agentDisconnected, audioPlaybackChanged,
//                           error {message}, closed {message?}
export const PROTOCOL = "anyreach-listen";
export const VERSION = 1;

export type Dict = Record<string, unknown>;

export function isDict(value: unknown): value is Dict {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A window message of this protocol with the given type (any version). */
export function isEnvelope(value: unknown, type: string): value is Dict {
  return isDict(value) && value.protocol === PROTOCOL && value.type === type;
}
