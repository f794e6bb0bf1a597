// The portal takeover's pure half: the grant, its renewal timing, and the page's words.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  endedMessage,
  microphoneError,
  MIN_RENEW_MS,
  parseGrant,
  refusalCode,
  refusalMessage,
  renewDelayMs,
  retryDelayMs,
} from "../src/portal/takeover-logic";

const NOW = Date.parse("2026-03-02T10:00:00Z");
const GRANT = {
  id: "2f0c",
  url: "wss://lk.example.com",
  token: "eyJ.x.y",
  room_name: "call-1",
  expires_at: "2026-03-02T10:05:00Z",
};

describe("parseGrant", () => {
  test("a complete grant", () => assert.deepEqual(parseGrant(GRANT), GRANT));
  test("extra fields are dropped", () => assert.deepEqual(parseGrant({ ...GRANT, x: 1 }), GRANT));
  const broken: [string, unknown][] = [
    ["null", null],
    ["a string", "token"],
    ["no token", { ...GRANT, token: undefined }],
    ["an empty id", { ...GRANT, id: "" }],
    ["an http url", { ...GRANT, url: "https://lk.example.com" }],
    ["a javascript url", { ...GRANT, url: "javascript:alert(1)" }],
    ["an unreadable expiry", { ...GRANT, expires_at: "soon" }],
    ["a number for a field", { ...GRANT, room_name: 7 }],
  ];
  for (const [name, body] of broken) test(`${name} -> null`, () => assert.equal(parseGrant(body), null));
});

describe("renewal timing", () => {
  test("a third of the grant's life (TTL/3)", () => {
    assert.equal(renewDelayMs(GRANT, NOW), 100_000);
  });
  test("never sooner than a second, even for a grant about to expire", () => {
    assert.equal(renewDelayMs({ ...GRANT, expires_at: "2026-03-02T10:00:01Z" }, NOW), MIN_RENEW_MS);
    assert.equal(renewDelayMs({ ...GRANT, expires_at: "2026-03-02T09:00:00Z" }, NOW), MIN_RENEW_MS);
  });
  test("a failed renewal is retried in 5 s, sooner near the end, never after it", () => {
    assert.equal(retryDelayMs(GRANT.expires_at, NOW), 5_000);
    assert.equal(retryDelayMs("2026-03-02T10:00:03Z", NOW), 2_000);
    assert.equal(retryDelayMs("2026-03-02T10:00:00.500Z", NOW), 0);
    assert.equal(retryDelayMs("2026-03-02T10:00:00Z", NOW), null);
    assert.equal(retryDelayMs("not a date", NOW), null);
  });
});

describe("words", () => {
  test("a refused microphone says how to allow it", () => {
    assert.match(microphoneError(new DOMException("denied", "NotAllowedError")), /refused.*Allow/s);
    assert.match(microphoneError({ name: "NotFoundError" }), /No microphone was found/);
    assert.match(microphoneError({ name: "NotReadableError" }), /another application/);
    assert.match(microphoneError("weird"), /could not be used/);
  });
  test("a refusal's own message, else the status", () => {
    const body = { error: { code: "already_taken_over", message: "Ana Lopez has taken this call over." } };
    assert.equal(refusalMessage(409, body), "Ana Lopez has taken this call over.");
    assert.equal(refusalCode(body), "already_taken_over");
    assert.match(refusalMessage(403, "<html>"), /session may have expired/);
    assert.match(refusalMessage(500, null), /HTTP 500/);
    assert.equal(refusalCode({ error: "x" }), "");
  });
  test("every way a takeover ends has its words", () => {
    const ends = ["handed_back", "left", "access_lost", "call_ended", "expired", "not_paused"];
    const said = ends.map(endedMessage);
    assert.equal(new Set(said).size, ends.length);
    assert.match(endedMessage("left"), /30 seconds/);
    assert.match(endedMessage("something new"), /went back to the agent/);
  });
});
