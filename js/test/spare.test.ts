// The loader's spare frame slot (src/sdk/spare.ts): at most one spare, adopted by
// the first listen() only, never once it failed, and never made after that listen().
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { type SpareFrame, spareSlot } from "../src/sdk/spare";

/** A frame whose handshake the test settles; records what the slot did to it. */
class FakeFrame implements SpareFrame {
  readonly port: Promise<MessagePort>;
  discarded: Error[] = [];
  private didFail = false;
  private settle!: { resolve: (port: MessagePort) => void; reject: (error: Error) => void };

  constructor() {
    this.port = new Promise<MessagePort>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }
  failed = () => this.didFail;
  discard = (error: Error) => void this.discarded.push(error);
  ready() {
    this.settle.resolve({} as MessagePort);
  }
  fail() {
    this.didFail = true; // synchronously, as startFrame's handshake does
    this.settle.reject(new Error("did not start"));
  }
}

function slot() {
  const started: FakeFrame[] = [];
  const s = spareSlot(() => {
    const frame = new FakeFrame();
    started.push(frame);
    return frame;
  });
  return { slot: s, started };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("spare frame slot", () => {
  test("the first listen() adopts the spare, even once its handshake is done", async () => {
    const { slot: s, started } = slot();
    s.fill();
    assert.equal(started.length, 1);
    started[0].ready(); // "ready" came (and was answered) before the listen()
    await settle();
    assert.equal(s.take(), started[0]);
    assert.deepEqual(started[0].discarded, []);
  });

  test("a spare still loading is adopted too", () => {
    const { slot: s, started } = slot();
    s.fill();
    assert.equal(s.take(), started[0]);
  });

  test("only one spare, and only the first listen() gets it", () => {
    const { slot: s, started } = slot();
    s.fill();
    s.fill();
    assert.equal(started.length, 1);
    assert.equal(s.take(), started[0]);
    assert.equal(s.take(), null);
  });

  test("no spare is made after the first listen(), adopting or not", () => {
    const { slot: s, started } = slot();
    assert.equal(s.take(), null); // listen() before the page finished loading
    s.fill();
    assert.equal(started.length, 0);
  });

  test("a spare that failed is removed and never adopted", async () => {
    const { slot: s, started } = slot();
    s.fill();
    started[0].fail();
    await settle();
    assert.equal(started[0].discarded.length, 1);
    assert.equal(s.take(), null);
    s.fill();
    assert.equal(started.length, 1, "no second spare after the listen()");
  });

  test("a spare failing in the same task as the listen() is not adopted, and is removed", async () => {
    const { slot: s, started } = slot();
    s.fill();
    started[0].fail(); // failed() is true; the rejection's handlers have not run yet
    assert.equal(s.take(), null);
    await settle();
    assert.equal(started[0].discarded.length, 1);
  });

  test("an adopted frame's later failure is its session's: the slot leaves it alone", async () => {
    const { slot: s, started } = slot();
    s.fill();
    assert.equal(s.take(), started[0]);
    started[0].fail();
    await settle();
    assert.deepEqual(started[0].discarded, []);
  });

  test("a spare that cannot even be injected throws nothing: listen() makes its own", () => {
    const s = spareSlot<FakeFrame>(() => {
      throw new Error("no document");
    });
    s.fill();
    assert.equal(s.take(), null);
  });
});
