// The wire protocol's guards: what each side accepts, as tables.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  event,
  handshake,
  isCommand,
  isCommandEnvelope,
  isEvent,
  isInit,
  isReady,
  isReply,
  PROTOCOL,
  VERSION,
} from "../src/protocol";

describe("handshake", () => {
  test("ready and init are told apart; any version passes (the receiver reports it)", () => {
    assert.deepEqual(handshake("ready"), { protocol: PROTOCOL, version: VERSION, type: "ready" });
    assert.ok(isReady(handshake("ready")) && !isInit(handshake("ready")));
    assert.ok(isInit(handshake("init")) && !isReady(handshake("init")));
    assert.ok(isInit({ protocol: PROTOCOL, version: 99, type: "init" }));
  });

  for (const bad of [null, "init", 42, [], {}, { protocol: "other", version: 1, type: "init" },
    { protocol: PROTOCOL }, { protocol: PROTOCOL, type: "INIT" }]) {
    test(`not a handshake message: ${JSON.stringify(bad)}`, () => {
      assert.ok(!isInit(bad) && !isReady(bad));
    });
  }
});

describe("commands", () => {
  const command = (name: unknown, args?: unknown) => ({ type: "command", id: 1, name, args });
  const accepted = [
    command("connect", { url: "wss://lk", token: "a.b.c", muted: false }),
    command("disconnect", {}),
    command("disconnect"),
    command("startAudio", {}),
    command("setMuted", { muted: true }),
  ];
  const refused = [
    command("connect", { url: "wss://lk", token: "a.b.c" }),
    command("connect", { url: 1, token: "a.b.c", muted: false }),
    command("connect", { url: "wss://lk", token: null, muted: false }),
    command("connect"),
    command("setMuted", { muted: "yes" }),
    command("setMuted", []),
    // Inherited and unknown names are not commands.
    command("constructor", {}),
    command("__proto__", {}),
    command("toString", {}),
    command("hasOwnProperty", {}),
    command("Connect", {}),
    command(undefined, {}),
  ];
  for (const msg of accepted) {
    test(`accepted: ${JSON.stringify(msg)}`, () => assert.ok(isCommand(msg)));
  }
  for (const msg of refused) {
    test(`refused with a reply: ${JSON.stringify(msg)}`, () => {
      assert.ok(!isCommand(msg));
      assert.ok(isCommandEnvelope(msg), "still an envelope: it gets an error reply");
    });
  }
  for (const msg of [null, [], { type: "command" }, { type: "command", id: "1", name: "connect" },
    { type: "reply", id: 1, name: "disconnect" }]) {
    test(`not even an envelope: ${JSON.stringify(msg)}`, () => {
      assert.ok(!isCommandEnvelope(msg) && !isCommand(msg));
    });
  }
});

describe("replies", () => {
  const table: [unknown, boolean][] = [
    [{ type: "reply", id: 1, ok: true }, true],
    [{ type: "reply", id: 1, ok: true, result: 3 }, true],
    [{ type: "reply", id: 1, ok: false, error: "no" }, true],
    [{ type: "reply", id: 1, ok: false }, false],
    [{ type: "reply", id: 1, ok: "true" }, false],
    [{ type: "reply", id: "1", ok: true }, false],
    [{ type: "event", id: 1, ok: true }, false],
  ];
  for (const [msg, ok] of table) {
    test(`${ok ? "a reply" : "not a reply"}: ${JSON.stringify(msg)}`, () => assert.equal(isReply(msg), ok));
  }
});

describe("events", () => {
  const good = [
    event("state", { state: "connecting" }),
    event("state", { state: "disconnected" }),
    event("transcript", { id: "s", role: "agent", text: "hi", final: false }),
    event("transcript", { id: "s", role: "user", text: "", final: true }),
    event("agentDisconnected", { participantIdentity: "agent-1" }),
    event("audioPlaybackChanged", { playing: false }),
    event("error", { message: "boom" }),
    event("closed", { reason: "ROOM_DELETED" }),
    event("closed", { reason: "ROOM_DELETED", message: undefined }),
    event("closed", { reason: "PARTICIPANT_REMOVED", message: "revoked" }),
  ];
  const bad = [
    { type: "event", name: "state", data: { state: "idle" } },
    { type: "event", name: "transcript", data: { id: "s", role: "caller", text: "hi", final: true } },
    { type: "event", name: "transcript", data: { id: 1, role: "agent", text: "hi", final: true } },
    { type: "event", name: "transcript", data: { id: "s", role: "agent", text: "hi" } },
    { type: "event", name: "agentDisconnected", data: {} },
    { type: "event", name: "audioPlaybackChanged", data: { playing: 1 } },
    { type: "event", name: "error", data: {} },
    { type: "event", name: "closed", data: { message: "no reason" } },
    { type: "event", name: "toString", data: {} },
    { type: "event", name: "state" },
    { type: "command", name: "state", data: { state: "connected" } },
  ];
  for (const msg of good) test(`accepted: ${JSON.stringify(msg)}`, () => assert.ok(isEvent(msg)));
  for (const msg of bad) test(`ignored: ${JSON.stringify(msg)}`, () => assert.ok(!isEvent(msg)));
});
