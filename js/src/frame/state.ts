// The frame's connection state machine, pure: what LiveKit and the SDK's
// commands do to the link's state, and which events and timer changes follow.
import type { WireState } from "../protocol";
import type { LiveKitState } from "./adapter";

export interface Link {
  /** The last state sent to the SDK ("" before the first). */
  readonly sent: WireState | "";
  /** The room was connected: only then is its loss reported. */
  readonly connected: boolean;
  /** The SDK asked to disconnect: what follows is not reported. */
  readonly closing: boolean;
  /** A lost connection is being waited for (the reconnect timer runs). */
  readonly waiting: boolean;
}

export const INITIAL_LINK: Link = { sent: "", connected: false, closing: false, waiting: false };

export type LinkInput =
  | { type: "livekit"; state: LiveKitState } // the room's connection state changed
  | { type: "closed" } // the room ended without being asked to
  | { type: "giveUp" } // the connection did not come back within the limit
  | { type: "connect" } // the connect command
  | { type: "disconnect" }; // the disconnect command

export interface LinkStep {
  link: Link;
  /** A state to send to the SDK (it differs from the last one sent). */
  send?: WireState;
  /** The room is gone for good: send "closed" (its reason is the caller's). */
  close?: boolean;
  /** Start the reconnect timer, or stop it. */
  timer?: "start" | "stop";
}

/** LiveKit's states, as the SDK reports them. */
export function wireState(state: LiveKitState): WireState {
  return state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "connecting";
}

function onLiveKit(link: Link, state: LiveKitState): LinkStep {
  const mapped = wireState(state);
  let next: Link = link;
  let timer: LinkStep["timer"];
  if (mapped === "connected") {
    next = { ...next, connected: true, waiting: false };
    timer = "stop";
  } else if (mapped === "connecting" && link.connected && !link.closing && !link.waiting) {
    next = { ...next, waiting: true };
    timer = "start";
  } else if (mapped === "disconnected") {
    next = { ...next, waiting: false };
    timer = "stop";
  }
  if (mapped === link.sent) return { link: next, timer };
  return { link: { ...next, sent: mapped }, send: mapped, timer };
}

/** The next link and what follows from one input. Inputs that change nothing return `link` itself. */
export function step(link: Link, input: LinkInput): LinkStep {
  switch (input.type) {
    case "livekit":
      return onLiveKit(link, input.state);
    case "closed":
      // A failed connect is reported by connect() itself; a disconnect asked for is no loss.
      if (!link.connected || link.closing) return { link };
      return { link: { ...link, connected: false, waiting: false }, close: true, timer: "stop" };
    case "giveUp":
      // The room's own Disconnected that follows is not reported again.
      if (!link.connected || link.closing) return { link: { ...link, waiting: false } };
      return { link: { ...link, connected: false, waiting: false }, close: true };
    case "connect":
      return { link: { ...link, closing: false } };
    case "disconnect":
      return { link: { ...link, closing: true, connected: false, waiting: false }, timer: "stop" };
  }
}
