// The frame's connection state machine (src/frame/state.ts): what each LiveKit
// state and command does to the link, which events and timer changes follow,
// and the inputs that must change nothing (no report, no timer).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { INITIAL_LINK, type Link, type LinkInput, step } from "../src/frame/state";

/** Runs inputs from the initial link; returns the last link and every step's effects. */
function run(inputs: LinkInput[], from: Link = INITIAL_LINK) {
  let link = from;
  const effects: unknown[] = [];
  for (const input of inputs) {
    const { link: next, ...effect } = step(link, input);
    link = next;
    effects.push(JSON.parse(JSON.stringify(effect))); // without the undefined ones
  }
  return { link, effects };
}

const lk = (state: LiveKit): LinkInput => ({ type: "livekit", state });
type LiveKit = Extract<LinkInput, { type: "livekit" }>["state"];
const LIVE: Link = { sent: "connected", connected: true, closing: false, waiting: false };

describe("frame state: legal moves", () => {
  test("a first connection: connecting then connected, each state sent once", () => {
    const { link, effects } = run([{ type: "connect" }, lk("connecting"), lk("connecting"), lk("connected")]);
    assert.deepEqual(link, LIVE);
    assert.deepEqual(effects, [{}, { send: "connecting" }, {}, { send: "connected", timer: "stop" }]);
  });

  test("a lost connection starts the reconnect timer once; its return stops it", () => {
    const { link, effects } = run([lk("signalReconnecting"), lk("reconnecting"), lk("connected")], LIVE);
    assert.deepEqual(link, LIVE);
    assert.deepEqual(effects, [
      { send: "connecting", timer: "start" },
      {},
      { send: "connected", timer: "stop" },
    ]);
  });

  test("the limit passing while waiting closes the link", () => {
    const { link, effects } = run([lk("reconnecting"), { type: "giveUp" }, lk("disconnected")], LIVE);
    assert.deepEqual(effects, [
      { send: "connecting", timer: "start" },
      { close: true },
      { send: "disconnected", timer: "stop" },
    ]);
    assert.deepEqual(link, { sent: "disconnected", connected: false, closing: false, waiting: false });
  });

  test("a room lost while connected is reported once", () => {
    const { link, effects } = run([{ type: "closed" }, { type: "closed" }], LIVE);
    assert.deepEqual(effects, [{ close: true, timer: "stop" }, {}]);
    assert.equal(link.connected, false);
  });

  test("disconnect stops the timer and marks the link closing; connect clears that", () => {
    const waiting = { ...LIVE, sent: "connecting", waiting: true } as const;
    const { link, effects } = run([{ type: "disconnect" }], waiting);
    assert.deepEqual(link, { sent: "connecting", connected: false, closing: true, waiting: false });
    assert.deepEqual(effects, [{ timer: "stop" }]);
    assert.equal(step(link, { type: "connect" }).link.closing, false);
  });
});

describe("frame state: inputs that change nothing", () => {
  test("a failed first connect (never connected) is not reported as a loss", () => {
    const { effects } = run([{ type: "connect" }, lk("connecting"), { type: "closed" }]);
    assert.deepEqual(effects[2], {});
  });

  test("after disconnect: no loss reported, no reconnect timer", () => {
    const { effects } = run([{ type: "disconnect" }, lk("connecting"), { type: "closed" }, { type: "giveUp" }], LIVE);
    assert.deepEqual(effects.slice(1), [{ send: "connecting" }, {}, {}]);
  });

  test("a room that connects after a disconnect was asked for: its loss is no news", () => {
    const inputs: LinkInput[] = [{ type: "disconnect" }, lk("connected"), lk("reconnecting")];
    const { link, effects } = run([...inputs, { type: "giveUp" }, { type: "closed" }], LIVE);
    assert.deepEqual(effects.slice(2), [{ send: "connecting" }, {}, {}]);
    assert.deepEqual(link, { sent: "connecting", connected: true, closing: true, waiting: false });
  });

  test("connecting before the first connection starts no timer", () => {
    assert.deepEqual(step(INITIAL_LINK, lk("reconnecting")).timer, undefined);
  });

  test("a state already sent is not sent again, and the link object is kept", () => {
    const result = step(LIVE, { type: "closed" });
    const again = step(result.link, lk("disconnected"));
    assert.deepEqual(again.send, "disconnected");
    assert.equal(step(again.link, lk("disconnected")).send, undefined);
    const idle = step(INITIAL_LINK, { type: "closed" });
    assert.equal(idle.link, INITIAL_LINK);
  });
});
