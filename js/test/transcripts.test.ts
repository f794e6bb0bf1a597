// Transcript merging: both LiveKit paths (legacy segments, lk.transcription text
// streams) become one whole-text update per change of each segment.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { ListenTranscript } from "../../anyreach_listen/static/anyreach_listen/listen-sdk";
import type { ParticipantRef, TranscriptStream } from "../src/frame/adapter";
import { createTranscripts, FINAL_ATTRIBUTE } from "../src/frame/transcripts";

const AGENT: ParticipantRef = { identity: "agent-1", isAgent: true };
const CALLER: ParticipantRef = { identity: "caller-1", isAgent: false };

type Row = [id: string, role: string, text: string, final: boolean];

function setup() {
  const out: ListenTranscript[] = [];
  const warnings: string[] = [];
  const transcripts = createTranscripts(
    (t) => out.push(t),
    (m) => warnings.push(m),
  );
  const rows = (): Row[] => out.map((t) => [t.id, t.role, t.text, t.final]);
  return { transcripts, rows, warnings };
}

/**
 * A text stream the test feeds chunk by chunk; end() sets the trailer's final
 * flag. idle() resolves once the consumer has taken every chunk and waits for
 * more, so tests interleave deterministically (no timers).
 */
function stream(speaker: ParticipantRef, segmentId: string, finalAtStart: boolean) {
  const attributes: Record<string, string> = {
    "lk.segment_id": segmentId,
    [FINAL_ATTRIBUTE]: String(finalAtStart),
  };
  const chunks: string[] = [];
  let done = false;
  let failure: Error | null = null;
  let blocked = false;
  let wake: () => void = () => {};
  const idlers: (() => void)[] = [];
  async function* read(): AsyncGenerator<string> {
    for (;;) {
      if (chunks.length) yield chunks.shift() as string;
      else if (failure) throw failure;
      else if (done) return;
      else {
        const next = new Promise<void>((resolve) => (wake = resolve));
        blocked = true;
        for (const idle of idlers.splice(0)) idle();
        await next;
      }
    }
  }
  const poke = () => {
    blocked = false;
    wake();
  };
  const s: TranscriptStream = { segmentId, speaker, chunks: read(), attributes: () => attributes };
  return {
    s,
    write(text: string) {
      chunks.push(text);
      poke();
    },
    end(final: boolean) {
      attributes[FINAL_ATTRIBUTE] = String(final);
      done = true;
      poke();
    },
    fail(error: Error) {
      failure = error;
      poke();
    },
    idle: () => new Promise<void>((resolve) => (blocked ? resolve() : idlers.push(resolve))),
  };
}

describe("legacy transcription segments", () => {
  test("interim updates, repeats dropped, final emitted once", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(AGENT, [{ id: "L1", text: "Good", final: false }]);
    transcripts.segments(AGENT, [{ id: "L1", text: "Good", final: false }]);
    transcripts.segments(AGENT, [
      { id: "L1", text: "Good morning", final: false },
      { id: "L2", text: "How", final: false },
    ]);
    transcripts.segments(AGENT, [{ id: "L1", text: "Good morning", final: true }]);
    transcripts.segments(AGENT, [{ id: "L1", text: "Good morning", final: true }]);
    assert.deepEqual(rows(), [
      ["L1", "agent", "Good", false],
      ["L1", "agent", "Good morning", false],
      ["L2", "agent", "How", false],
      ["L1", "agent", "Good morning", true],
    ]);
  });

  test("an interim update that goes backwards is dropped, a shorter final is not", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(CALLER, [{ id: "S", text: "I need help", final: false }]);
    transcripts.segments(CALLER, [{ id: "S", text: "I need", final: false }]);
    transcripts.segments(CALLER, [{ id: "S", text: "I need", final: true }]);
    transcripts.segments(CALLER, [{ id: "S", text: "I need help!", final: false }]);
    assert.deepEqual(rows(), [
      ["S", "user", "I need help", false],
      ["S", "user", "I need", true],
    ]);
  });

  test("a changed interim text that is not a prefix is emitted", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(CALLER, [{ id: "S", text: "I knead", final: false }]);
    transcripts.segments(CALLER, [{ id: "S", text: "I need", final: false }]);
    assert.deepEqual(rows(), [
      ["S", "user", "I knead", false],
      ["S", "user", "I need", false],
    ]);
  });

  test("an empty interim segment is skipped, an empty final one is not", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(AGENT, [{ id: "E", text: "", final: false }]);
    transcripts.segments(AGENT, [{ id: "F", text: "", final: true }]);
    assert.deepEqual(rows(), [["F", "agent", "", true]]);
  });

  test("the role follows the speaker: agents are agent, everyone else user", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(AGENT, [{ id: "A", text: "hi", final: true }]);
    transcripts.segments(CALLER, [{ id: "B", text: "hello", final: true }]);
    transcripts.segments({ identity: "", isAgent: false }, [{ id: "C", text: "?", final: true }]);
    assert.deepEqual(
      rows().map((r) => r[1]),
      ["agent", "user", "user"],
    );
  });
  test("a user's segment reusing the agent's segment id neither settles nor hides it", () => {
    const { transcripts, rows } = setup();
    transcripts.segments(AGENT, [{ id: "SG_A", text: "Your refund", final: false }]);
    transcripts.segments(CALLER, [{ id: "SG_A", text: "Your refund", final: true }]);
    transcripts.segments(AGENT, [{ id: "SG_A", text: "Your refund is on its way", final: true }]);
    assert.deepEqual(rows(), [
      ["SG_A", "agent", "Your refund", false],
      ["SG_A", "user", "Your refund", true],
      ["SG_A", "agent", "Your refund is on its way", true],
    ]);
  });
});

describe("lk.transcription text streams", () => {
  test("agent deltas accumulate; the legacy copy of the same segment is deduplicated", async () => {
    const { transcripts, rows } = setup();
    const a = stream(AGENT, "SG_1", false);
    const done = transcripts.stream(a.s);
    a.write("Hello");
    await a.idle();
    transcripts.segments(AGENT, [{ id: "SG_1", text: "Hello", final: false }]);
    a.write(" there");
    await a.idle();
    transcripts.segments(AGENT, [{ id: "SG_1", text: "Hel", final: false }]);
    a.end(true);
    await done;
    transcripts.segments(AGENT, [{ id: "SG_1", text: "Hello there", final: true }]);
    assert.deepEqual(rows(), [
      ["SG_1", "agent", "Hello", false],
      ["SG_1", "agent", "Hello there", false],
      ["SG_1", "agent", "Hello there", true],
    ]);
  });

  test("user speech: a new full-text stream per interim update, final once", async () => {
    const { transcripts, rows } = setup();
    for (const [text, final] of [
      ["I need", false],
      ["I need help", false],
      ["I need help.", true],
    ] as const) {
      const u = stream(CALLER, "SG_U", final);
      const done = transcripts.stream(u.s);
      u.write(text);
      u.end(final);
      await done;
    }
    transcripts.segments(CALLER, [{ id: "SG_U", text: "I need help.", final: true }]);
    transcripts.segments(CALLER, [{ id: "SG_U", text: "I need", final: false }]);
    assert.deepEqual(rows(), [
      ["SG_U", "user", "I need", false],
      ["SG_U", "user", "I need help", false],
      ["SG_U", "user", "I need help.", true],
    ]);
  });

  test("a stream final from its start emits only its whole text at the end", async () => {
    const { transcripts, rows } = setup();
    const u = stream(CALLER, "F", true);
    const done = transcripts.stream(u.s);
    u.write("All ");
    await u.idle();
    u.write("at once.");
    await u.idle();
    assert.deepEqual(rows(), []);
    u.end(true);
    await done;
    assert.deepEqual(rows(), [["F", "user", "All at once.", true]]);
  });

  test("the final flag is read again from the trailer", async () => {
    const { transcripts, rows } = setup();
    const a = stream(AGENT, "T", false);
    const done = transcripts.stream(a.s);
    a.write("Bye.");
    a.end(true);
    await done;
    assert.deepEqual(rows(), [
      ["T", "agent", "Bye.", false],
      ["T", "agent", "Bye.", true],
    ]);
  });

  test("a stream that ends without final leaves the segment open for the legacy path", async () => {
    const { transcripts, rows } = setup();
    const a = stream(AGENT, "O", false);
    const done = transcripts.stream(a.s);
    a.write("Open");
    a.end(false);
    await done;
    transcripts.segments(AGENT, [{ id: "O", text: "Open", final: true }]);
    assert.deepEqual(rows(), [
      ["O", "agent", "Open", false],
      ["O", "agent", "Open", true],
    ]);
  });

  test("a stream that breaks off warns and still offers what arrived", async () => {
    const { transcripts, rows, warnings } = setup();
    const a = stream(AGENT, "B", false);
    const done = transcripts.stream(a.s);
    a.write("Half a sen");
    await a.idle();
    a.fail(new Error("reset by peer"));
    await done;
    assert.deepEqual(warnings, ["AnyReach: a transcript stream broke off: reset by peer"]);
    assert.deepEqual(rows(), [["B", "agent", "Half a sen", false]]);
  });

  test("interleaved streams of two segments stay apart", async () => {
    const { transcripts, rows } = setup();
    const a = stream(AGENT, "A", false);
    const b = stream(AGENT, "B", false);
    const doneA = transcripts.stream(a.s);
    const doneB = transcripts.stream(b.s);
    a.write("one");
    await a.idle();
    b.write("two");
    await b.idle();
    a.write(" more");
    await a.idle();
    a.end(true);
    await doneA;
    b.end(true);
    await doneB;
    assert.deepEqual(rows(), [
      ["A", "agent", "one", false],
      ["B", "agent", "two", false],
      ["A", "agent", "one more", false],
      ["A", "agent", "one more", true],
      ["B", "agent", "two", true],
    ]);
  });
});
