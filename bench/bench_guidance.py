"""B8: guidance to a call's AI agent, through the API vs a bare PerformRpc to the same agent.

    .venv/bin/python bench/bench_guidance.py [--quick] [--orders N] [--says N]

Its own stack (LiveKit, daphne on SQLite, LiveKit's webhooks) and one simulated call
(``demo.call_simulator``, in this process) whose caller talks and whose agent speaks only
when told to; a hidden listener (an API listen session) timestamps every audible frame.
(i) ``POST …/guidance`` (whisper) → 201 delivered, beside the bare PerformRpc round trip
of the same signed order (``bare_rpc.py``); (ii) ``say`` → the agent's first audible
frame at the listener, through the API and bare. How to run and read it: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
import httpx  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

django.setup()  # the test support modules read the app's settings
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

from anyreach_listen.assist import signing  # noqa: E402
from bench import bare_rpc  # noqa: E402
from bench.support import log, num, percentile, stop_on_signals, table  # noqa: E402
from demo.call_simulator import CallConfig, Turn, run_call  # noqa: E402
from tests.support.guidance import (  # noqa: E402
    LoopThread,
    TimedListener,
    api_key,
    connected_listener,
    give_guidance,
)
from tests.support.processes import wait_until  # noqa: E402
from tests.support.stack import Stack, running_stack  # noqa: E402

ACK_TARGET_P95_MS = 300.0
AUDIO_TARGET_P95_MS = 1000.0
STEP = 30.0  # seconds any one step may take
QUIET = 0.4  # seconds without an audible agent frame: the last say is over
KEY_USES = 50  # guidance POSTs per key (the per-credential limit is 60 a minute)
AGENT = "agent-ava"
# The caller talks; the agent says nothing unless told to, so each say's first audible
# frame at the listener is the say's own.
CALLER_ONLY = (Turn("user", "Mm-hmm. Okay, I see. Go on."),)


class Keys:
    """conversations:guide keys, a fresh one every ``KEY_USES`` orders."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.uses, self.key = stack, 0, ""

    def next(self) -> str:
        if not self.key or self.uses >= KEY_USES:
            name = f"bench-guide-{uuid.uuid4().hex[:6]}"
            self.key, self.uses = api_key(self.stack, name, "conversations:guide"), 0
        self.uses += 1
        return self.key


@dataclass
class Samples:
    ours: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    server_rpc: list[float] = field(default_factory=list)  # the 201's latency_ms


@dataclass
class Bench:
    stack: Stack
    conversation_id: str
    room: str
    listener: TimedListener
    keys: Keys

    def ours(self, mode: str, text: str) -> float:
        """POST the guidance; its latency_ms (the server's own PerformRpc round trip)."""
        response = give_guidance(self.stack, self.conversation_id, self.keys.next(), mode, text)
        if response.status_code != 201 or response.json()["status"] != "delivered":
            raise RuntimeError(f"guidance: HTTP {response.status_code} {response.text[:300]}")
        return float(response.json()["latency_ms"])

    def bare(self, mode: signing.Mode, text: str) -> None:
        lk = self.stack.livekit
        payload = bare_rpc.signed_order(
            mode,
            text,
            room=self.room,
            identity=AGENT,
            api_key=lk.api_key,
            api_secret=lk.api_secret,
        )
        answer = bare_rpc.perform_rpc(
            lk.http_url,
            lk.api_key,
            lk.api_secret,
            room=self.room,
            identity=AGENT,
            method=signing.GUIDANCE_METHOD,
            payload=payload,
        )
        if '"applied"' not in answer:
            raise RuntimeError(f"the agent did not apply the bare order: {answer}")

    def first_audible_after(self, moment: float) -> float:
        return wait_until(
            lambda: self.listener.first_audible_after(AGENT, moment),
            timeout=STEP,
            interval=0.005,
            what="the agent's first audible frame",
        )

    def quiet(self) -> None:
        """Wait until the agent has said nothing audible for ``QUIET`` seconds."""

        def silent() -> bool:
            last = self.listener.last_audible(AGENT)
            return last is None or time.monotonic() - last > QUIET

        wait_until(silent, timeout=STEP, interval=0.02, what="the agent falling silent")


def acknowledged(bench: Bench, rounds: int) -> Samples:
    """(i) whisper orders, ours and bare alternating: sent → acknowledged."""
    out = Samples()
    for index in range(rounds):
        text = f"Keep it short, note {index}."
        started = time.monotonic()
        out.server_rpc.append(bench.ours("whisper", text))
        out.ours.append((time.monotonic() - started) * 1000)
        started = time.monotonic()
        bench.bare("whisper", text)
        out.bare.append((time.monotonic() - started) * 1000)
    return out


def said(bench: Bench, rounds: int) -> tuple[Samples, Samples]:
    """(ii) say orders, ours and bare alternating: (sent → 201 / answer, sent → first
    audible agent frame at the listener). Every text is new, so each is synthesized."""
    acks, audio = Samples(), Samples()
    for index in range(rounds):
        for path in ("ours", "bare"):
            bench.quiet()
            text = f"Order {index} {path} is refunded."
            started = time.monotonic()
            if path == "ours":
                acks.server_rpc.append(bench.ours("say", text))
            else:
                bench.bare("say", text)
            getattr(acks, path).append((time.monotonic() - started) * 1000)
            first = bench.first_audible_after(started)
            getattr(audio, path).append((first - started) * 1000)
    return acks, audio


@contextlib.contextmanager
def agent_call(
    stack: Stack, loop: LoopThread, *, name: str, script: tuple[Turn, ...], caller_label: str
) -> Iterator[tuple[str, str]]:
    """A registered in-progress conversation and its simulated call playing ``script``,
    looped, in a room named after ``name``; (id, room). B9 uses it too."""
    room = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        f"{stack.base_url}/core/conversations",
        headers={"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"},
        json={
            "status": "in_progress",
            "team_id": stack.seed["team_id"],
            "room_name": room,
            "agent_label": "Ava (AI agent)",
            "caller_label": caller_label,
        },
        timeout=10,
    )
    created.raise_for_status()
    lk = stack.livekit
    config = CallConfig(lk.url, lk.api_key, lk.api_secret, room, script=script, loop=True)

    async def event() -> asyncio.Event:
        return asyncio.Event()

    stop = loop.run(event())
    running = asyncio.run_coroutine_threadsafe(run_call(config, stop), loop.loop)
    try:
        yield created.json()["id"], room
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        running.result(timeout=STEP)


def measure(orders: int, says: int) -> tuple[Samples, Samples, Samples]:
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-guidance-")))
        log("starting livekit-server and daphne (SQLite), and a simulated call")
        stack = cleanup.enter_context(running_stack(tmp))
        loop = cleanup.enter_context(LoopThread())
        conversation_id, room = cleanup.enter_context(
            agent_call(
                stack, loop, name="guidance", script=CALLER_ONLY, caller_label="+1 555 0108 (bench)"
            )
        )
        grant = stack.mint(conversation_id, stack.seed["api_keys"]["read_sensitive"])
        grant.raise_for_status()
        listener = loop.run(connected_listener(grant.json()["url"], grant.json()["token"]))
        cleanup.callback(lambda: loop.run(listener.close()))
        bench = Bench(stack, conversation_id, room, listener, Keys(stack))
        wait_until(
            lambda: AGENT in listener.room.remote_participants,
            timeout=STEP,
            what="the agent in the room",
        )
        wait_until(lambda: listener.frames.get(AGENT), timeout=STEP, what="the agent's track")
        log("warming up")
        acknowledged(bench, 3)
        said(bench, 1)
        log(f"(i) {orders} whisper orders each way")
        acks = acknowledged(bench, orders)
        log(f"(ii) {says} say orders each way")
        say_acks, audio = said(bench, says)
        bench.quiet()
        return acks, say_acks, audio


def _row(label: str, samples: Samples, target: str) -> list[object]:
    ours50, ours95 = percentile(samples.ours, 50), percentile(samples.ours, 95)
    bare50, bare95 = percentile(samples.bare, 50), percentile(samples.bare, 95)
    return [
        label,
        len(samples.ours),
        num(ours50),
        num(ours95),
        num(bare50),
        num(bare95),
        f"{ours50 / bare50:.2f}",
        f"{ours95 / bare95:.2f}",
        target,
    ]


def report(acks: Samples, say_acks: Samples, audio: Samples) -> str:
    ack95, audio95 = percentile(acks.ours, 95), percentile(audio.ours, 95)
    rows = [
        _row("whisper: sent → acknowledged (ms)", acks, f"p95 ≤ {ACK_TARGET_P95_MS:.0f}"),
        _row("say: sent → acknowledged (ms)", say_acks, ""),
        _row(
            "say: sent → agent's first audible frame at a listener (ms)",
            audio,
            f"p95 ≤ {AUDIO_TARGET_P95_MS:,.0f}",
        ),
    ]
    headers = ["measure", "n each", "ours p50", "ours p95", "bare p50", "bare p95"]
    headers += ["ours/bare p50", "ours/bare p95", "target"]
    met = [
        "met" if ack95 <= ACK_TARGET_P95_MS else "NOT met",
        "met" if audio95 <= AUDIO_TARGET_P95_MS else "NOT met",
    ]
    server = percentile(acks.server_rpc, 50), percentile(acks.server_rpc, 95)
    return "\n".join(
        [
            "### B8 guidance to the agent: API vs bare PerformRpc (LiveKit, simulated agent)",
            "",
            table(headers, rows),
            "",
            "Ours: `POST /core/conversations/{id}/guidance` to daphne (SQLite; the key's "
            "check, the call and its agent looked up in LiveKit, the audit row committed, "
            "PerformRpc, the outcome committed) until its 201 `delivered`. Bare "
            "(`bench/bare_rpc.py`): the same signed order sent with RoomService.PerformRpc "
            "straight to LiveKit (httpx, a room-admin token) until the agent's answer. Both "
            "reach the same simulated agent (`demo/call_simulator.py`), alternating; it "
            "answers a whisper at once and a say once the say's first frame is captured "
            "(after espeak-ng synthesized the new text). The first audible frame is the "
            "first the hidden listener's livekit rtc AudioStream decodes with a peak over "
            "1,000 (the agent is silent otherwise: only the caller talks). Of ours' whisper "
            f"time, the server's own PerformRpc (`latency_ms`) took p50 {num(server[0])} / "
            f"p95 {num(server[1])} ms.",
            "",
            f"Targets: whisper acknowledged p95 ≤ {ACK_TARGET_P95_MS:.0f} ms: "
            f"{ack95:.0f} ms, {met[0]}; say → first audio p95 ≤ {AUDIO_TARGET_P95_MS:,.0f} ms: "
            f"{audio95:.0f} ms, {met[1]}.",
        ]
    )


def main() -> int:
    stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few orders")
    parser.add_argument("--orders", type=int, help="whisper orders each way (default 40)")
    parser.add_argument("--says", type=int, help="say orders each way (default 30)")
    args = parser.parse_args()
    orders = args.orders or (8 if args.quick else 40)
    says = args.says or (5 if args.quick else 30)
    print(report(*measure(orders, says)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
