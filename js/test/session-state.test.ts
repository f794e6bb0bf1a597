// The SDK session's state machine (src/sdk/state.ts): every legal move, and
// the illegal ones that leave the session as it is.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { ListenState } from "../../anyreach_listen/static/anyreach_listen/listen-sdk";
import { INITIAL_PHASE, type Input, next, type Phase } from "../src/sdk/state";

const STATES: ListenState[] = ["idle", "connecting", "connected", "disconnected"];
const INPUTS: Input[] = [
  { type: "connect" },
  { type: "connected" },
  { type: "failed" },
  { type: "report", state: "connecting" },
  { type: "report", state: "connected" },
  { type: "report", state: "disconnected" },
  { type: "closed" },
  { type: "end" },
  { type: "torndown" },
];

const open = (state: ListenState): Phase => ({ state, ended: false });
const ending = (state: ListenState): Phase => ({ state, ended: true });
const label = (input: Input) => (input.type === "report" ? `report(${input.state})` : input.type);

describe("session state: legal moves", () => {
  const legal: [Phase, Input, Phase][] = [
    [open("idle"), { type: "connect" }, open("connecting")],
    [open("disconnected"), { type: "connect" }, open("connecting")],
    // A lost connection LiveKit is getting back: connect() tries again.
    [open("connecting"), { type: "connect" }, open("connecting")],
    [open("connecting"), { type: "connected" }, open("connected")],
    // The frame's "connected" arrives before the connect command's reply.
    [open("connected"), { type: "connected" }, open("connected")],
    [open("connecting"), { type: "failed" }, open("disconnected")],
    [open("connected"), { type: "failed" }, open("disconnected")],
    [open("connecting"), { type: "report", state: "connected" }, open("connected")],
    [open("connected"), { type: "report", state: "connecting" }, open("connecting")],
    [open("connected"), { type: "report", state: "disconnected" }, open("disconnected")],
    [open("connected"), { type: "closed" }, open("disconnected")],
    [open("idle"), { type: "end" }, ending("idle")],
    [open("connected"), { type: "end" }, ending("connected")],
    [ending("connected"), { type: "torndown" }, ending("disconnected")],
    [ending("idle"), { type: "torndown" }, ending("disconnected")],
  ];
  for (const [from, input, to] of legal) {
    test(`${JSON.stringify(from)} --${label(input)}--> ${JSON.stringify(to)}`, () =>
      assert.deepEqual(next(from, input), to));
  }

  test("a session starts idle, not ended", () =>
    assert.deepEqual(INITIAL_PHASE, { state: "idle", ended: false }));

  test("a move that keeps the state returns the same phase (no stateChange)", () => {
    const phase = open("connected");
    assert.equal(next(phase, { type: "report", state: "connected" }), phase);
  });

  test("end() keeps the state until the teardown is done", () => {
    let phase: Phase | null = INITIAL_PHASE;
    for (const input of [{ type: "connect" }, { type: "connected" }, { type: "end" }] as Input[]) {
      phase = next(phase as Phase, input);
    }
    assert.deepEqual(phase, ending("connected"));
    assert.deepEqual(next(phase as Phase, { type: "torndown" }), ending("disconnected"));
  });
});

describe("session state: illegal moves", () => {
  const illegal: [Phase, Input][] = [
    // connect() on a connected session resolves at once: no move.
    [open("connected"), { type: "connect" }],
    // No attempt can be in flight while idle.
    [open("idle"), { type: "connected" }],
    [open("idle"), { type: "failed" }],
    // The teardown's end comes only after end().
    [open("connected"), { type: "torndown" }],
    [open("idle"), { type: "torndown" }],
  ];
  for (const [from, input] of illegal) {
    test(`${JSON.stringify(from)} --${label(input)}--> refused`, () =>
      assert.equal(next(from, input), null));
  }

  for (const state of STATES) {
    test(`after end() (${state}) only the teardown's own move is legal`, () => {
      for (const input of INPUTS) {
        const result = next(ending(state), input);
        if (input.type === "torndown") assert.deepEqual(result, ending("disconnected"));
        else assert.equal(result, null, label(input));
      }
    });
  }

  test("nothing leads back to idle: only end() stays there", () => {
    for (const state of STATES) {
      for (const ended of [false, true]) {
        for (const input of INPUTS) {
          if (next({ state, ended }, input)?.state !== "idle") continue;
          assert.deepEqual([state, ended, input.type], ["idle", false, "end"]);
        }
      }
    }
  });
});
