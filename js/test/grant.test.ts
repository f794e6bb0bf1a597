// The frame's checks on the url and token a page passes, before LiveKit sees them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { checkGrant, embedOrigins, jwtPayload, normalizeOrigin } from "../src/frame/grant";

const LIVEKIT = "wss://lk.example.com";
const PAGE = "https://crm.example.org";

/** An unsigned JWT-shaped token (the frame never verifies signatures: LiveKit does). */
function token(payload: object): string {
  const b64url = (s: string) =>
    btoa(String.fromCharCode(...new TextEncoder().encode(s)))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
  return `${b64url('{"alg":"HS256"}')}.${b64url(JSON.stringify(payload))}.sig`;
}
const withOrigins = (origins: unknown) =>
  token({ sub: "listener", metadata: JSON.stringify({ embed_origins: origins }) });

describe("normalizeOrigin", () => {
  const table: [unknown, string | null][] = [
    ["wss://lk.example.com/", "wss://lk.example.com"],
    ["https://CRM.example.org:443/path?q=1", "https://crm.example.org"],
    ["http://localhost:8000", "http://localhost:8000"],
    ["not a url", null],
    [42, null],
  ];
  for (const [value, origin] of table) {
    test(`${JSON.stringify(value)} -> ${origin}`, () => assert.equal(normalizeOrigin(value), origin));
  }
});

describe("jwtPayload", () => {
  test("reads a base64url payload, padding restored", () => {
    // These encode with "_" (base64url for "/") and without their "==" padding.
    assert.deepEqual(jwtPayload(token({ note: "?>?>", n: 1 })), { note: "?>?>", n: 1 });
    assert.deepEqual(jwtPayload(token({ a: 1 })), { a: 1 });
    assert.deepEqual(jwtPayload(token({ name: "Zoë" })), { name: "Zoë" });
  });
  for (const bad of ["", "a.b", "a.b.c.d", "a.%%%.c", `a.${btoa("[1,2]")}.c`, `a.${btoa("nope")}.c`]) {
    test(`not a JWT payload: ${JSON.stringify(bad)}`, () => assert.equal(jwtPayload(bad), null));
  }
});

describe("embedOrigins", () => {
  test("normalized, invalid entries dropped", () => {
    const payload = jwtPayload(withOrigins([`${PAGE}/`, "nonsense", 7, "http://localhost:3000"]));
    assert.ok(payload);
    assert.deepEqual(embedOrigins(payload), [PAGE, "http://localhost:3000"]);
  });
  for (const metadata of [undefined, "{broken", JSON.stringify({ embed_origins: "x" }), "[]"]) {
    test(`no list in metadata ${JSON.stringify(metadata)}`, () => {
      assert.deepEqual(embedOrigins({ metadata }), []);
    });
  }
});

describe("checkGrant", () => {
  test("accepts this host's LiveKit url and an allowed (or unrestricted) origin", () => {
    checkGrant(`${LIVEKIT}/`, withOrigins([PAGE]), LIVEKIT, PAGE);
    checkGrant(LIVEKIT, withOrigins([]), LIVEKIT, PAGE);
    checkGrant(LIVEKIT, token({ sub: "x" }), LIVEKIT, PAGE);
  });

  const refusals: [string, () => void, RegExp][] = [
    ["no LIVEKIT_URL on this host", () => checkGrant(LIVEKIT, withOrigins([]), "", PAGE), /no LiveKit server configured/],
    ["another LiveKit server", () => checkGrant("wss://evil.example", withOrigins([]), LIVEKIT, PAGE), /"wss:\/\/evil.example" is not this host's LiveKit server/],
    ["not a url", () => checkGrant("lk", withOrigins([]), LIVEKIT, PAGE), /is not this host's LiveKit server/],
    ["not a JWT", () => checkGrant(LIVEKIT, "secret", LIVEKIT, PAGE), /not a LiveKit access token/],
    ["origin not listed", () => checkGrant(LIVEKIT, withOrigins(["https://other.example"]), LIVEKIT, PAGE), /\(https:\/\/crm.example.org\) is not allowed/],
  ];
  for (const [name, call, message] of refusals) {
    test(`refuses: ${name}`, () => assert.throws(call, { name: "Error", message }));
  }
});
