"""The recorder's merge of LiveKit's two transcript paths and its speaker rule
(``anyreach_listen/recorder/merge.py``), the frame's rules in Python
(``js/src/frame/transcripts.ts``, ``speaker.ts``; their tests in js/ are the model)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from anyreach_listen.livekit.service import run_sync
from anyreach_listen.recorder.merge import NOBODY, Merger, Speaker, stream_speaker
from anyreach_listen.recorder.wire import MAX_SEGMENT_TEXT
from anyreach_listen.transcripts import SegmentIn

AGENT = Speaker("agent-ava", True)
CALLER = Speaker("caller", False)


@dataclass(frozen=True)
class P:
    identity: str
    is_agent: bool
    track_sids: frozenset[str] = field(default_factory=frozenset)


ROOM = {
    "agent-ava": P("agent-ava", True, frozenset({"TR_agent"})),
    "caller": P("caller", False, frozenset({"TR_caller"})),
    "rogue": P("rogue", False, frozenset({"TR_rogue"})),
}


@pytest.mark.parametrize(
    ("sender", "track", "expected"),
    [
        # An agent speaks for itself, or for the owner of the track it names.
        ("agent-ava", None, AGENT),
        ("agent-ava", "TR_agent", AGENT),
        ("agent-ava", "TR_caller", CALLER),
        # ... or for someone no longer here: the user's side.
        ("agent-ava", "TR_gone", NOBODY),
        # Anyone else speaks for itself at most.
        ("caller", None, CALLER),
        ("caller", "TR_caller", CALLER),
        ("rogue", "TR_rogue", Speaker("rogue", False)),
        ("rogue", None, Speaker("rogue", False)),
        # Claiming a track it does not own: dropped, never shown as anyone's.
        ("rogue", "TR_agent", None),
        ("rogue", "TR_caller", None),
        ("rogue", "TR_gone", None),
        # A sender not (or no longer) in the room: the user's, unless it names a track.
        ("stranger", None, Speaker("stranger", False)),
        ("stranger", "TR_agent", None),
    ],
)
def test_stream_speaker(sender: str, track: str | None, expected: Speaker | None) -> None:
    assert stream_speaker(ROOM, sender, track) == expected


def test_a_sender_is_an_agent_by_its_kind_never_by_its_name() -> None:
    room = {"agent-ava": P("agent-ava", False, frozenset({"TR_x"}))}
    assert stream_speaker(room, "agent-ava", "TR_x") == Speaker("agent-ava", False)


def test_legacy_segments_interim_then_final() -> None:
    merger = Merger()
    out = merger.segments(AGENT, [("s1", "Thank", False), ("s1", "Thank you", False)])
    out += merger.segments(AGENT, [("s1", "Thank you", False), ("s1", "Thank", False)])
    out += merger.segments(AGENT, [("s1", "Thank you for calling.", True)])
    out += merger.segments(AGENT, [("s1", "Thank you for calling.", True), ("s1", "x", False)])
    assert out == [
        SegmentIn("s1", "agent", "Thank", False),
        SegmentIn("s1", "agent", "Thank you", False),
        SegmentIn("s1", "agent", "Thank you for calling.", True),
    ]


def test_a_final_that_repeats_the_interim_text_still_settles_it() -> None:
    merger = Merger()
    assert merger.offer("s1", CALLER, "Hi there", False)
    assert merger.offer("s1", CALLER, "Hi there", True) == SegmentIn("s1", "user", "Hi there", True)


def test_an_empty_interim_of_a_new_segment_is_dropped_an_empty_final_is_not() -> None:
    merger = Merger()
    assert merger.offer("s1", CALLER, "", False) is None
    assert merger.offer("s1", CALLER, "", True) == SegmentIn("s1", "user", "", True)


def test_segments_are_told_apart_by_role() -> None:
    merger = Merger()
    assert merger.offer("s1", AGENT, "Hello", True)
    # The caller reusing the agent's id neither is dropped nor settles the agent's.
    assert merger.offer("s1", CALLER, "Hello", True) == SegmentIn("s1", "user", "Hello", True)


async def _chunks(parts: Iterable[str], fail: bool = False) -> AsyncIterator[str]:
    for part in parts:
        yield part
    if fail:
        raise RuntimeError("stream aborted")


def _collect(merger: Merger, *args: object, **kwargs: object) -> list[SegmentIn]:
    async def run() -> list[SegmentIn]:
        return [u async for u in merger.stream(*args, **kwargs)]  # type: ignore[arg-type]

    return run_sync(run())


def test_agent_stream_of_deltas_then_a_final_trailer() -> None:
    attributes = {"lk.transcription_final": "false"}
    merger = Merger()

    async def deltas() -> AsyncIterator[str]:
        for part in ("Thank", " you", " for calling."):
            yield part
        attributes["lk.transcription_final"] = "true"  # the trailer's attributes

    # interval=0: deltas spaced out in time, each an interim (tests below coalesce them).
    out = _collect(merger, "s1", AGENT, deltas(), lambda: attributes, interval=0)
    assert out == [
        SegmentIn("s1", "agent", "Thank", False),
        SegmentIn("s1", "agent", "Thank you", False),
        SegmentIn("s1", "agent", "Thank you for calling.", False),
        SegmentIn("s1", "agent", "Thank you for calling.", True),
    ]


def test_user_streams_full_text_per_update_the_final_one_only_at_its_end() -> None:
    merger = Merger()
    final = {"lk.transcription_final": "true"}
    interim = {"lk.transcription_final": "false"}
    out = _collect(merger, "s2", CALLER, _chunks(["Hi,"]), lambda: interim)
    out += _collect(merger, "s2", CALLER, _chunks(["Hi, I was"]), lambda: interim)
    out += _collect(merger, "s2", CALLER, _chunks(["Hi, I was", " charged"]), lambda: final)
    assert out == [
        SegmentIn("s2", "user", "Hi,", False),
        SegmentIn("s2", "user", "Hi, I was", False),
        SegmentIn("s2", "user", "Hi, I was charged", True),
    ]


def test_both_paths_together_record_each_update_once() -> None:
    merger = Merger()
    interim = {"lk.transcription_final": "false"}
    out = merger.segments(AGENT, [("s1", "Thank", False)])
    out += _collect(merger, "s1", AGENT, _chunks(["Thank", " you"]), lambda: interim)
    out += merger.segments(AGENT, [("s1", "Thank you", False), ("s1", "Thank you.", True)])
    out += _collect(merger, "s1", AGENT, _chunks(["Thank you."]), lambda: {**interim})
    assert [(u.text, u.final) for u in out] == [
        ("Thank", False),
        ("Thank you", False),
        ("Thank you.", True),
    ]


def test_a_broken_stream_ends_with_what_it_carried() -> None:
    merger = Merger()
    interim = {"lk.transcription_final": "false"}
    out = _collect(merger, "s1", AGENT, _chunks(["Thank", " you"], fail=True), lambda: interim)
    assert out == [
        SegmentIn("s1", "agent", "Thank", False),
        SegmentIn("s1", "agent", "Thank you", False),
    ]


# --- a stream of any size costs the same bounded work ---------------------------------


def test_a_stream_of_many_tiny_chunks_makes_one_interim_per_interval_then_its_final() -> None:
    # 5,000 one-character deltas, 1 ms apart (a fake clock: no timing in the test).
    now = [0.0]
    attributes = {"lk.transcription_final": "false"}

    async def deltas() -> AsyncIterator[str]:
        for i in range(5_000):
            now[0] = i / 1000
            yield "ab"[i % 2]
        attributes["lk.transcription_final"] = "true"

    out = _collect(Merger(), "s1", AGENT, deltas(), lambda: attributes, clock=lambda: now[0])
    interims = [u for u in out if not u.final]
    # One per 100 ms of the stream's 5 s (the first at once): 50, not 5,000.
    assert len(interims) == 50
    assert all(b.text.startswith(a.text) and b.text != a.text for a, b in itertools.pairwise(out))
    assert out[-1] == SegmentIn("s1", "agent", "ab" * 2_500, True)


def test_a_streams_text_stops_at_the_intakes_limit_and_the_stream_is_read_to_its_end() -> None:
    read = 0
    attributes = {"lk.transcription_final": "false"}

    async def two_megabytes() -> AsyncIterator[str]:
        nonlocal read
        for _ in range(20_000):
            read += 1
            yield "x" * 100
        attributes["lk.transcription_final"] = "true"

    out = _collect(Merger(), "s1", AGENT, two_megabytes(), lambda: attributes, clock=lambda: 0.0)
    assert read == 20_000  # drained: an unread stream holds LiveKit's
    # The clock stands still: the first interim, then the final, cut at the limit.
    assert out == [
        SegmentIn("s1", "agent", "x" * 100, False),
        SegmentIn("s1", "agent", "x" * MAX_SEGMENT_TEXT, True),
    ]


def test_interims_are_coalesced_per_segment_across_its_streams() -> None:
    merger, now = Merger(), [0.0]
    interim = {"lk.transcription_final": "false"}

    def stream(parts: list[str], at: float) -> list[str]:
        now[0] = at
        out = _collect(merger, "s2", CALLER, _chunks(parts), lambda: interim, clock=lambda: now[0])
        return [u.text for u in out]

    assert stream(["Hi"], 0.0) == ["Hi"]
    # 30 ms later, another stream of the segment: no interim of its own within the
    # first's 100 ms, but its last update goes out (what it says is never lost).
    assert stream(["Hi, I", " was", " charged"], 0.03) == ["Hi, I was charged"]
    # Past the interval, a stream's first chunk is an interim again.
    assert stream(["Hi, I was charged", " twice"], 0.2) == [
        "Hi, I was charged twice"  # its first chunk repeats the text so far: nothing new
    ]
    assert stream(["Hi, I was charged twice.", " Why?"], 0.4) == [
        "Hi, I was charged twice.",
        "Hi, I was charged twice. Why?",
    ]


# --- a room's segments are bounded on the recorder's side too -------------------------


def test_the_merger_tracks_at_most_max_segments_new_ones_dropped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    merger = Merger(max_segments=3)
    with caplog.at_level("WARNING", logger="anyreach_listen.recorder.merge"):
        out = merger.segments(AGENT, [(f"s{i}", f"line {i}", i != 1) for i in range(10)])
    # s0..s2 tracked (s1 still open), the seven after dropped; one log line.
    assert [(u.id, u.final) for u in out] == [("s0", True), ("s1", False), ("s2", True)]
    assert merger.dropped == 7
    assert len([r for r in caplog.records if "drops its new segments" in r.message]) == 1
    # A tracked segment goes on (s1 settles); a new one is still dropped, also from a stream.
    assert merger.segments(AGENT, [("s1", "line 1.", True)]) == [
        SegmentIn("s1", "agent", "line 1.", True)
    ]
    interim = {"lk.transcription_final": "false"}
    assert _collect(merger, "s9", AGENT, _chunks(["a", "b"]), lambda: interim, interval=0) == []
    assert merger.dropped == 8  # its interims were not even joined: only its end offered
    # What it keeps stays bounded: no interim clock and no text of an untracked segment.
    assert len(merger._next_interim) <= 3 and not merger._open


def test_the_default_cap_is_the_portals_segments_per_call(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "MAX_SEGMENTS_PER_CALL": 7}
    assert Merger().max_segments == 7


def test_a_settled_segment_keeps_no_text_and_is_never_emitted_again() -> None:
    merger = Merger()
    long = "x" * MAX_SEGMENT_TEXT
    assert merger.segments(CALLER, [("s1", long, False), ("s1", long + ".", True)]) == [
        SegmentIn("s1", "user", long, False),
        SegmentIn("s1", "user", long + ".", True),
    ]
    assert not merger._open  # only its key is kept: a final is never emitted again
    assert merger.segments(CALLER, [("s1", "other", True), ("s1", "", False)]) == []


def test_a_long_segment_id_is_kept_as_a_digest_and_told_apart() -> None:
    merger = Merger()
    first, second = "i" * 5_000 + "1", "i" * 5_000 + "2"
    out = merger.segments(CALLER, [(first, "a", True), (second, "b", True), (first, "a", True)])
    assert [u.id for u in out] == [first, second]  # emitted with the id the sender gave
    assert all(len(key[1]) < 100 for key in merger._settled)
