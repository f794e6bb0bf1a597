// The frame's pure parts besides transcripts: command dispatch, the LiveKit state
// mapping, what a final disconnect tells the page, and the session's prepare().
import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";

import type { AdapterSink, ListenAdapter, LiveKitState } from "../src/frame/adapter";
import { run } from "../src/frame/channel";
import { disconnectMessage, reconnectMessage } from "../src/frame/errors";
import { frameSession } from "../src/frame/session";
import { wireState } from "../src/frame/state";
import type { CommandHandlers, CommandMessage } from "../src/protocol";

describe("run", () => {
  test("each command reaches its own handler with its arguments", async () => {
    const calls: unknown[] = [];
    const handlers: CommandHandlers = {
      connect: async (args) => void calls.push(["connect", args]),
      disconnect: async () => void calls.push(["disconnect"]),
      startAudio: async () => void calls.push(["startAudio"]),
      setMuted: async (args) => void calls.push(["setMuted", args]),
    };
    const commands: CommandMessage[] = [
      { type: "command", id: 1, name: "connect", args: { url: "u", token: "t", muted: true } },
      { type: "command", id: 2, name: "setMuted", args: { muted: false } },
      { type: "command", id: 3, name: "startAudio", args: {} },
      { type: "command", id: 4, name: "disconnect", args: {} },
    ];
    for (const cmd of commands) await run(handlers, cmd);
    assert.deepEqual(calls, [
      ["connect", { url: "u", token: "t", muted: true }],
      ["setMuted", { muted: false }],
      ["startAudio"],
      ["disconnect"],
    ]);
  });
});

describe("wireState", () => {
  const table: [LiveKitState, string][] = [
    ["connecting", "connecting"],
    ["reconnecting", "connecting"],
    ["signalReconnecting", "connecting"],
    ["connected", "connected"],
    ["disconnected", "disconnected"],
  ];
  for (const [livekit, wire] of table) {
    test(`${livekit} -> ${wire}`, () => assert.equal(wireState(livekit), wire));
  }
});

describe("disconnectMessage", () => {
  for (const reason of ["CLIENT_INITIATED", "ROOM_DELETED", "ROOM_CLOSED"]) {
    test(`${reason}: the conversation is over, not a failure`, () =>
      assert.equal(disconnectMessage(reason), undefined));
  }
  const failures: [string, RegExp][] = [
    ["DUPLICATE_IDENTITY", /same listener token/],
    ["PARTICIPANT_REMOVED", /removed from the conversation/],
    ["SERVER_SHUTDOWN", /LiveKit server shut down/],
    ["SIGNAL_CLOSE", /lost the connection to the live conversation \(SIGNAL_CLOSE\)/],
  ];
  for (const [reason, message] of failures) {
    test(`${reason}: explained`, () => assert.match(disconnectMessage(reason) ?? "", message));
  }
});

describe("frameSession.prepare", () => {
  // A JWT-shaped token: the frame only reads its metadata.
  const token = ["e30", btoa(JSON.stringify({ sub: "listener" })), "sig"].join(".");
  const livekitUrl = "wss://lk.example.com";

  function setup(url: string) {
    const calls: unknown[] = [];
    const sent: unknown[] = [];
    let created = 0;
    const adapter: ListenAdapter = {
      prepare: (u) => void calls.push(["prepare", u]),
      connect: async (u, t) => void calls.push(["connect", u, t]),
      disconnect: async () => void calls.push(["disconnect"]),
      startAudio: async () => void calls.push(["startAudio"]),
    };
    const session = frameSession({
      createAdapter: () => {
        created += 1;
        return adapter;
      },
      livekitUrl: url,
      peer: { origin: () => "https://crm.example.com", send: (...args) => void sent.push(args) },
    });
    return { session, calls, sent, created: () => created };
  }

  test("gets the adapter ready for the configured server, tells the page nothing", () => {
    const { session, calls, sent, created } = setup(livekitUrl);
    session.prepare();
    assert.equal(created(), 1);
    assert.deepEqual(calls, [["prepare", livekitUrl]]);
    assert.deepEqual(sent, []);
  });

  test("connect() then uses the prepared adapter", async () => {
    const { session, calls, created } = setup(livekitUrl);
    session.prepare();
    // applyMute() looks for media elements in the frame's document.
    const g = globalThis as { document?: unknown };
    g.document = { querySelectorAll: () => [] };
    try {
      await session.commands.connect({ url: `${livekitUrl}/`, token, muted: false });
    } finally {
      delete g.document;
    }
    assert.equal(created(), 1);
    assert.deepEqual(calls, [["prepare", livekitUrl], ["connect", `${livekitUrl}/`, token]]);
  });

  test("without a configured server there is nothing to prepare", () => {
    const { session, calls, created } = setup("");
    session.prepare();
    assert.equal(created(), 0);
    assert.deepEqual(calls, []);
  });
});

describe("frameSession: a connection that does not come back", () => {
  const token = ["e30", btoa(JSON.stringify({ sub: "listener" })), "sig"].join(".");
  const livekitUrl = "wss://lk.example.com";

  async function connected(limit: number) {
    const sent: [string, unknown][] = [];
    const calls: string[] = [];
    let sink: AdapterSink | null = null;
    const session = frameSession({
      createAdapter: (s) => {
        sink = s;
        return {
          prepare: () => {},
          connect: async () => void calls.push("connect"),
          disconnect: async () => {
            calls.push("disconnect");
            // livekit-client reports its own end after a disconnect() it was asked for.
            s.state("disconnected");
            s.closed("CLIENT_INITIATED");
          },
          startAudio: async () => {},
        };
      },
      livekitUrl,
      reconnectLimitMs: limit,
      peer: { origin: () => "https://crm.example.com", send: (n, d) => void sent.push([n, d]) },
    });
    const g = globalThis as { document?: unknown };
    g.document = { querySelectorAll: () => [] };
    try {
      await session.commands.connect({ url: livekitUrl, token, muted: false });
    } finally {
      delete g.document;
    }
    const lk = sink as unknown as AdapterSink;
    lk.state("connected");
    return { lk, sent, calls, session };
  }

  test("gives up after the limit: closed with a plain message, once, and disconnects", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const { lk, sent, calls } = await connected(10_000);
      lk.state("signalReconnecting");
      lk.state("reconnecting");
      mock.timers.tick(9_999);
      assert.deepEqual(calls, ["connect"]);
      mock.timers.tick(1);
      await Promise.resolve();
      assert.deepEqual(calls, ["connect", "disconnect"]);
      assert.deepEqual(sent, [
        ["state", { state: "connected" }],
        ["state", { state: "connecting" }],
        ["closed", { reason: "RECONNECT_TIMEOUT", message: reconnectMessage(10_000) }],
        ["state", { state: "disconnected" }],
      ]);
      assert.match(reconnectMessage(10_000), /^AnyReach: lost the connection .* within 10 s\./);
    } finally {
      mock.timers.reset();
    }
  });

  test("a connection back in time, or a disconnect asked for, cancels it", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const back = await connected(10_000);
      back.lk.state("reconnecting");
      mock.timers.tick(5_000);
      back.lk.state("connected");
      mock.timers.tick(20_000);
      assert.deepEqual(back.calls, ["connect"]);
      assert.ok(!back.sent.some(([name]) => name === "closed"));

      const ended = await connected(10_000);
      ended.lk.state("reconnecting");
      await ended.session.commands.disconnect({});
      mock.timers.tick(20_000);
      assert.ok(!ended.sent.some(([name]) => name === "closed"), JSON.stringify(ended.sent));
    } finally {
      mock.timers.reset();
    }
  });
});
