// What the frame checks before it hands a url and token to LiveKit, pure (no
// DOM): the url is this host's LiveKit server, the token is a LiveKit JWT, and
// the token's organization lets the embedding page's origin listen.
import { type Dict, isDict } from "../protocol";

export function normalizeOrigin(value: unknown): string | null {
  try {
    return typeof value === "string" ? new URL(value).origin : null;
  } catch {
    return null;
  }
}

/** The payload of a JWT, unverified (LiveKit verifies it; we only read metadata). */
export function jwtPayload(token: string): Dict | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) =>
      c.charCodeAt(0),
    );
    const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return isDict(payload) ? payload : null;
  } catch {
    return null;
  }
}

/** The organization's allowed embed origins from the token's metadata ([] = any). */
export function embedOrigins(payload: Dict): string[] {
  try {
    const metadata: unknown =
      typeof payload.metadata === "string" ? JSON.parse(payload.metadata) : null;
    const list = isDict(metadata) ? metadata.embed_origins : null;
    return Array.isArray(list) ? list.map(normalizeOrigin).filter((o): o is string => !!o) : [];
  } catch {
    return [];
  }
}

/** Throws an error a person can act on when this grant must not be used here. */
export function checkGrant(url: string, token: string, livekitUrl: string, parentOrigin: string): void {
  const allowed = normalizeOrigin(livekitUrl);
  if (!allowed) {
    throw new Error(
      "AnyReach: this Anyreach host has no LiveKit server configured (LIVEKIT_URL); " +
        "ask its operator to set it.",
    );
  }
  if (normalizeOrigin(url) !== allowed) {
    throw new Error(
      `AnyReach: the url ${JSON.stringify(url)} is not this host's LiveKit server ` +
        `(${livekitUrl}). Pass the url returned by the listener-token API.`,
    );
  }
  const payload = jwtPayload(token);
  if (!payload) {
    throw new Error(
      "AnyReach: the token is not a LiveKit access token. Pass the token returned by the " +
        "listener-token API.",
    );
  }
  const origins = embedOrigins(payload);
  if (origins.length && !origins.includes(parentOrigin)) {
    throw new Error(
      `AnyReach: this page's origin (${parentOrigin}) is not allowed to listen to this ` +
        "organization's conversations. An organization admin can add it to the allowed " +
        "embed origins.",
    );
  }
}
