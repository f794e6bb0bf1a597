// Whose speech a text stream is: from who published it (the participant's kind
// and the tracks it owns), never from what the sender says about itself.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { type Publisher, streamSpeaker } from "../src/frame/speaker";

function participant(identity: string, isAgent: boolean, ...tracks: string[]): Publisher {
  return { identity, isAgent, trackPublications: new Set(tracks) };
}

const AGENT = participant("agent-ava", true, "TR_agent");
const CALLER = participant("caller", false, "TR_caller");
// A caller dressed as an agent: everything it controls says "agent", its kind does not.
const ROGUE = participant("agent", false, "TR_rogue");
const room = new Map([AGENT, CALLER, ROGUE].map((p) => [p.identity, p]));

describe("streamSpeaker", () => {
  test("an agent's own speech is the agent's, with or without its track", () => {
    assert.deepEqual(streamSpeaker(room, "agent-ava", "TR_agent"), { identity: "agent-ava", isAgent: true });
    assert.deepEqual(streamSpeaker(room, "agent-ava", undefined), { identity: "agent-ava", isAgent: true });
  });

  test("an agent transcribing another participant's track speaks for that participant", () => {
    assert.deepEqual(streamSpeaker(room, "agent-ava", "TR_caller"), { identity: "caller", isAgent: false });
    assert.deepEqual(streamSpeaker(room, "agent-ava", "TR_gone"), { identity: "", isAgent: false });
  });

  test("a stream an agent sends on a caller's behalf (sender identity: the caller) is the user's", () => {
    assert.deepEqual(streamSpeaker(room, "caller", "TR_caller"), { identity: "caller", isAgent: false });
  });

  test("a participant that is not an agent is the user, whatever its identity says", () => {
    assert.deepEqual(streamSpeaker(room, "agent", "TR_rogue"), { identity: "agent", isAgent: false });
    assert.deepEqual(streamSpeaker(room, "agent", undefined), { identity: "agent", isAgent: false });
    assert.deepEqual(streamSpeaker(room, "", undefined), { identity: "", isAgent: false });
  });

  test("a participant that is not an agent naming a track it does not own is dropped", () => {
    assert.equal(streamSpeaker(room, "agent", "TR_agent"), null);
    assert.equal(streamSpeaker(room, "agent", "TR_caller"), null);
    assert.equal(streamSpeaker(room, "caller", "TR_agent"), null);
    assert.equal(streamSpeaker(room, "unknown", "TR_agent"), null);
    assert.equal(streamSpeaker(room, "agent", "TR_nobody"), null);
  });
});
