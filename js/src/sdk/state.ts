// The session's state machine, pure: the page-facing states (idle -> connecting
// -> connected -> disconnected), whether end() has begun, and the legal moves.
import type { ListenState } from "../../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { WireState } from "../protocol";

export interface Phase {
  /** What getState() says and stateChange reports. */
  readonly state: ListenState;
  /** end() has begun: the state stays until the teardown is done, then "disconnected". */
  readonly ended: boolean;
}

export const INITIAL_PHASE: Phase = { state: "idle", ended: false };

export type Input =
  | { type: "connect" } // connect() starts an attempt (none is in flight)
  | { type: "connected" } // the frame answered the attempt's connect command
  | { type: "failed" } // the attempt in flight failed (or timed out)
  | { type: "report"; state: WireState } // the frame reported the room's state
  | { type: "closed" } // the frame's room went away for good
  | { type: "end" } // end() began
  | { type: "torndown" }; // end()'s teardown is done

function to(phase: Phase, state: ListenState): Phase {
  return state === phase.state ? phase : { ...phase, state };
}

/**
 * The phase after `input`, or null when the input is illegal there (the caller
 * then changes nothing). Nothing ever leads back to "idle"; after end() only
 * the teardown's own "torndown" is legal.
 */
export function next(phase: Phase, input: Input): Phase | null {
  if (phase.ended) return input.type === "torndown" ? to(phase, "disconnected") : null;
  switch (input.type) {
    case "connect":
      // Connected already: nothing to do (connect() resolves at once).
      return phase.state === "connected" ? null : to(phase, "connecting");
    case "connected":
      // An attempt in flight means connect() left "idle" for good.
      return phase.state === "idle" ? null : to(phase, "connected");
    case "failed":
      return phase.state === "idle" ? null : to(phase, "disconnected");
    case "report":
      return to(phase, input.state);
    case "closed":
      return to(phase, "disconnected");
    case "end":
      return { ...phase, ended: true };
    case "torndown":
      return null; // only after end()
  }
}
