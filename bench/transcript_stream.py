"""One large ``lk.transcription`` stream through the recorder's job: what it costs.

    .venv/bin/python bench/transcript_stream.py [--size BYTES] [--chunk BYTES] [--spread S]

Feeds ``recorder_agent._Job.consume`` a fake stream and counts what the recorder does
with it (updates queued, CPU, characters of update text built), with no LiveKit and no
network, so a change to the recorder's stream handling can be compared with the code
before it. How to run it and its options: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH=other/checkout
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from anyreach_listen.recorder import agent as recorder_agent  # noqa: E402
from anyreach_listen.recorder.merge import Speaker  # noqa: E402
from anyreach_listen.recorder.wire import Segment  # noqa: E402
from anyreach_listen.recorder.writer import Writer  # noqa: E402


class Reader:
    """A ``TextStreamReader`` stand-in: ``size`` characters in ``chunk``-sized deltas,
    final in its trailer (as an agent's speech arrives)."""

    def __init__(self, size: int, chunk: int, spread: float) -> None:
        self.info = SimpleNamespace(
            attributes={"lk.segment_id": "SG_big", "lk.transcription_final": "false"},
            stream_id="TS_big",
        )
        self.size, self.chunk, self.spread = size, chunk, spread

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        piece = "x" * self.chunk
        count = self.size // self.chunk
        slices = 100
        for i in range(count):
            yield piece
            if self.spread and i % max(1, count // slices) == 0:
                await asyncio.sleep(self.spread / slices)
        self.info.attributes = {**self.info.attributes, "lk.transcription_final": "true"}


class CountingWriter(Writer):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "bench-room")
        self.puts = 0
        self.finals = 0
        self.text_chars = 0
        self.last: Segment | None = None

    def put(self, update: Segment) -> None:
        self.puts += 1
        self.finals += update.final
        self.text_chars += len(update.text)
        self.last = update
        super().put(update)


async def measure(size: int, chunk: int, spread: float) -> dict[str, Any]:
    writer = CountingWriter()
    ctx = SimpleNamespace(room=SimpleNamespace(remote_participants={}, name="bench-room"))
    job = recorder_agent._Job(ctx, writer)  # type: ignore[arg-type]
    reader = Reader(size, chunk, spread)
    cpu, wall = time.process_time(), time.monotonic()
    await job.consume(reader, "SG_big", Speaker("agent-1", True))  # type: ignore[arg-type]
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    queued = writer._queue.qsize() if hasattr(writer._queue, "qsize") else len(writer._queue)
    return {
        "updates": writer.puts,
        "finals": writer.finals,
        "queued": queued,
        "cpu": cpu,
        "wall": wall,
        "text_chars": writer.text_chars,
        "final_text": len(writer.last.text) if writer.last and writer.last.final else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--spread", type=float, default=0.0)
    args = parser.parse_args()
    result = asyncio.run(measure(args.size, args.chunk, args.spread))
    print(
        f"{args.size:,} characters in {args.chunk}-character chunks"
        f"{f' over ~{args.spread:g} s' if args.spread else ' at once'}: "
        f"{result['updates']:,} updates put to the writer ({result['finals']} final, "
        f"{result['queued']:,} queued), {result['cpu']:.3f} s CPU ({result['wall']:.3f} s wall), "
        f"{result['text_chars']:,} characters of update text built; final text "
        f"{result['final_text']} characters"
    )


if __name__ == "__main__":
    main()
