// The SDK's event emitter: checked names and handlers, isolation from throwing
// handlers, seal() and clear() for teardown.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createEmitter } from "../src/sdk/emitter";

interface Events {
  ping: { n: number };
  done: void;
}

function setup() {
  const owner = { name: "owner" };
  const events = createEmitter<Events>(["ping", "done"], () => owner);
  const seen: unknown[] = [];
  return { owner, events, seen };
}

/** Runs fn with queueMicrotask captured, returning the callbacks it queued. */
function capturingMicrotasks(fn: () => void): (() => void)[] {
  const queued: (() => void)[] = [];
  const original = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (callback) => void queued.push(callback);
  try {
    fn();
  } finally {
    globalThis.queueMicrotask = original;
  }
  return queued;
}

test("handlers get the payload with this = the owner, in order, once each", () => {
  const { owner, events, seen } = setup();
  events.on("ping", function (this: unknown, p: unknown) {
    seen.push(["a", this, p]);
  });
  const b = (p: unknown) => seen.push(["b", p]);
  events.on("ping", b);
  events.on("ping", b); // a set: registering twice still calls once
  events.emit("ping", { n: 1 });
  events.emit("done");
  assert.deepEqual(seen, [["a", owner, { n: 1 }], ["b", { n: 1 }]]);
});

test("off removes only that handler", () => {
  const { events, seen } = setup();
  const a = () => seen.push("a");
  events.on("ping", a);
  events.on("ping", () => seen.push("b"));
  events.off("ping", a);
  events.off("ping", () => {}); // unknown handler: nothing happens
  events.emit("ping", { n: 1 });
  assert.deepEqual(seen, ["b"]);
});

for (const name of ["pong", "toString", "__proto__", "constructor", 7, undefined]) {
  test(`unknown event name ${String(name)} is a TypeError listing the known ones`, () => {
    const { events } = setup();
    for (const call of [() => events.on(name, () => {}), () => events.off(name, () => {})]) {
      assert.throws(call, { name: "TypeError", message: /unknown event .*known events: ping, done\./ });
    }
  });
}

test("a handler that is not a function is a TypeError", () => {
  const { events } = setup();
  assert.throws(() => events.on("ping", "nope"), { name: "TypeError", message: /"ping" must be a function/ });
});

test("a throwing handler is reported asynchronously and the others still run", () => {
  const { events, seen } = setup();
  events.on("ping", () => {
    throw new Error("handler bug");
  });
  events.on("ping", () => seen.push("after"));
  const queued = capturingMicrotasks(() => events.emit("ping", { n: 1 }));
  assert.deepEqual(seen, ["after"]);
  assert.equal(queued.length, 1);
  assert.throws(queued[0], { message: "handler bug" });
});

test("a handler removed by an earlier one during emit still runs this time", () => {
  const { events, seen } = setup();
  const second = () => seen.push("second");
  events.on("ping", () => {
    seen.push("first");
    events.off("ping", second);
  });
  events.on("ping", second);
  events.emit("ping", { n: 1 });
  events.emit("ping", { n: 2 });
  assert.deepEqual(seen, ["first", "second", "first"]);
});

test("after seal() on() only checks; clear() forgets everyone", () => {
  const { events, seen } = setup();
  events.on("done", () => seen.push("early"));
  events.seal();
  events.on("done", () => seen.push("late"));
  assert.throws(() => events.on("nope", () => {}), { name: "TypeError" });
  events.emit("done");
  events.clear();
  events.emit("done");
  assert.deepEqual(seen, ["early"]);
});
