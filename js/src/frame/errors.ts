// The frame's words for failures: any thrown value as a message, and what a
// room that went away for good (or never came back) tells the page.

/** A thrown value of any kind (an Error or not) as a message string. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function disconnectMessage(reason: string): string | undefined {
  switch (reason) {
    case "CLIENT_INITIATED":
    case "ROOM_DELETED":
    case "ROOM_CLOSED":
      return undefined; // the conversation is over: not a failure
    case "DUPLICATE_IDENTITY":
      return (
        "AnyReach: another connection joined with the same listener token, so this one was " +
        "closed. Mint a new token for every listener."
      );
    case "PARTICIPANT_REMOVED":
      return "AnyReach: this listener was removed from the conversation (its access was revoked).";
    case "SERVER_SHUTDOWN":
      return "AnyReach: the LiveKit server shut down; the conversation is no longer available.";
    default:
      return (
        `AnyReach: lost the connection to the live conversation (${reason}). ` +
        "Start a new session to listen again."
      );
  }
}

// livekit-client retries a lost connection for about 45 s (longer when each attempt
// waits for its own timeouts) while the page only sees "connecting": a listener
// whose LiveKit server died must hear about it while someone still cares.
export function reconnectMessage(limitMs: number): string {
  return (
    "AnyReach: lost the connection to the live conversation and could not get it back " +
    `within ${Math.round(limitMs / 1000)} s. Start a new session to listen again.`
  );
}
