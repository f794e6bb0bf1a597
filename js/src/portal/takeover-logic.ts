// The portal's "Take over" (portal/takeover.py, ./takeover.ts), its pure half (no DOM,
// no LiveKit): the grant the start-or-renew view answers, when to renew it, and the
// words the page shows for a refused microphone, a refused request or a takeover
// that ended elsewhere. Unit-tested in js/test/takeover-logic.test.ts.

/** What POST …/takeover/ answers (anyreach_listen.assist.takeover.TakeoverGrant). */
export interface TakeoverGrant {
  id: string;
  url: string;
  token: string;
  room_name: string;
  expires_at: string;
}

const isText = (value: unknown): value is string => typeof value === "string" && value !== "";

/** The grant in a view's JSON answer, or null when it is not one (every field a
 * non-empty string, a ws(s) url, a parseable expiry). */
export function parseGrant(body: unknown): TakeoverGrant | null {
  if (typeof body !== "object" || body === null) return null;
  const { id, url, token, room_name, expires_at } = body as Record<string, unknown>;
  if (!isText(id) || !isText(url) || !isText(token) || !isText(room_name) || !isText(expires_at)) {
    return null;
  }
  if (!/^wss?:\/\//i.test(url) || Number.isNaN(Date.parse(expires_at))) return null;
  return { id, url, token, room_name, expires_at };
}

export const MIN_RENEW_MS = 1_000;
export const RETRY_RENEW_MS = 5_000;

/** When to renew a grant received at `now`: after a third of its life (the issue's
 * TTL/3), so two renewals can fail before it expires; never sooner than a second. */
export function renewDelayMs(grant: TakeoverGrant, now: number): number {
  const life = Date.parse(grant.expires_at) - now;
  return Math.max(MIN_RENEW_MS, Math.floor(life / 3));
}

/** After a failed renewal (the server unreachable): try again in 5 s, or at once
 * before the grant runs out, and give up (null) once it has. */
export function retryDelayMs(expiresAt: string, now: number): number | null {
  const left = Date.parse(expiresAt) - now;
  if (!(left > 0)) return null;
  return Math.max(0, Math.min(RETRY_RENEW_MS, left - MIN_RENEW_MS));
}

/** A getUserMedia failure in words: what happened and what to do. */
export function microphoneError(error: unknown): string {
  const name = typeof error === "object" && error !== null ? (error as { name?: unknown }).name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return (
        "The microphone was refused, so the call was not taken over. Allow this site to " +
        "use your microphone (the icon in the address bar), then try again."
      );
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found, so the call was not taken over. Connect one and try again.";
    case "NotReadableError":
    case "AbortError":
      return (
        "The microphone could not be started (another application may be using it), so " +
        "the call was not taken over."
      );
  }
  return "The microphone could not be used, so the call was not taken over.";
}

/** The browser cannot capture audio here at all (no mediaDevices: not a secure context). */
export const NO_MICROPHONE_API =
  "This browser offers no microphone to this page (the portal must be served over HTTPS), " +
  "so the call cannot be taken over from here.";

/** A refusal of the portal's takeover views ({"error": {code, message}}) in words. */
export function refusalMessage(status: number, body: unknown): string {
  const error =
    typeof body === "object" && body !== null ? (body as { error?: unknown }).error : undefined;
  const message =
    typeof error === "object" && error !== null ? (error as { message?: unknown }).message : null;
  if (isText(message)) return message;
  if (status === 403) return "The server refused (your session may have expired). Reload the page.";
  return `The server refused (HTTP ${status}). Reload the page and try again.`;
}

/** The stable code of a refusal, or "" (the page keys its reactions on it). */
export function refusalCode(body: unknown): string {
  const error =
    typeof body === "object" && body !== null ? (body as { error?: unknown }).error : undefined;
  const code =
    typeof error === "object" && error !== null ? (error as { code?: unknown }).code : null;
  return isText(code) ? code : "";
}

/** Why the supervisor's own takeover ended, as ``takeover.updated``'s ended_by says. */
export function endedMessage(endedBy: string): string {
  switch (endedBy) {
    case "handed_back":
      return "The call was handed back to the agent.";
    case "left":
      return "You were out of the call for more than 30 seconds: the call went back to the agent.";
    case "access_lost":
      return "You may no longer take this call over: the call went back to the agent.";
    case "call_ended":
      return "The call ended.";
    case "expired":
      return "Your takeover was not renewed in time: the call went back to the agent.";
    case "not_paused":
      return "The agent did not confirm its pause: the call was not taken over.";
  }
  return "The takeover ended: the call went back to the agent.";
}
