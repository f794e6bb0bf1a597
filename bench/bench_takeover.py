"""B9: taking a call over and handing it back, through the API vs bare PerformRpc orders.

    .venv/bin/python bench/bench_takeover.py [--quick] [--rounds N]

Its own stack (LiveKit, daphne on SQLite, LiveKit's webhooks) and one simulated call (in
this process) whose agent talks without pause; a hidden listener stamps every audible
frame. Ours: ``POST …/takeover`` → the agent's last audible frame at the listener, and
``DELETE …/takeover`` → its first audible frame again. Bare: the same signed pause and
resume orders sent with RoomService.PerformRpc straight to the agent. How: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

django.setup()  # the test support modules read the app's settings
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

from anyreach_listen.assist import signing  # noqa: E402
from bench import bare_rpc  # noqa: E402
from bench.bench_guidance import agent_call  # noqa: E402
from bench.support import log, num, percentile, stop_on_signals, table  # noqa: E402
from demo.call_simulator import Turn  # noqa: E402
from tests.support.guidance import (  # noqa: E402
    LoopThread,
    TimedListener,
    api_key,
    connected_listener,
)
from tests.support.processes import wait_until  # noqa: E402
from tests.support.stack import Stack, running_stack  # noqa: E402
from tests.support.takeover import takeover  # noqa: E402

PAUSE_TARGET_P95_MS = 800.0
RESUME_TARGET_P95_MS = 1500.0
STEP = 30.0  # seconds any one step may take
QUIET = 0.5  # seconds without an audible agent frame: the agent is silent
SPEAKING = 0.05  # an audible agent frame this recent: the agent is speaking now
KEY_USES = 25  # takeovers per key (two requests each; the per-credential limit is 60 a minute)
AGENT = "agent-ava"
# The agent talks on and on, so a pause always cuts it mid-line.
AGENT_ONLY = (
    Turn(
        "agent",
        "Let me walk you through the refund, the shipping label, the pickup window and "
        "what happens to the replacement while we wait for the courier to confirm.",
    ),
)


class Keys:
    """conversations:take_over keys, a fresh one every ``KEY_USES`` takeovers."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.uses, self.key = stack, 0, ""

    def next(self) -> str:
        if not self.key or self.uses >= KEY_USES:
            name = f"bench-takeover-{uuid.uuid4().hex[:6]}"
            self.key, self.uses = api_key(self.stack, name, "conversations:take_over"), 0
        self.uses += 1
        return self.key


@dataclass
class Samples:
    ours: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)


@dataclass
class Bench:
    stack: Stack
    conversation_id: str
    room: str
    listener: TimedListener
    keys: Keys
    key: str = ""

    def take_over(self) -> None:
        self.key = self.keys.next()
        response = takeover(self.stack, "POST", self.conversation_id, self.key)
        if response.status_code != 201:
            raise RuntimeError(f"takeover: HTTP {response.status_code} {response.text[:300]}")

    def hand_back(self) -> None:
        response = takeover(self.stack, "DELETE", self.conversation_id, self.key)
        if response.status_code != 200:
            raise RuntimeError(f"hand back: HTTP {response.status_code} {response.text[:300]}")

    def bare(self, mode: signing.Mode, text: str = "") -> None:
        lk = self.stack.livekit
        payload = bare_rpc.signed_order(
            mode, text, room=self.room, identity=AGENT, api_key=lk.api_key, api_secret=lk.api_secret
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
            raise RuntimeError(f"the agent did not apply the bare {mode}: {answer}")

    def speaking(self) -> None:
        """Wait until the agent is speaking now (an audible frame in the last 50 ms)."""

        def now_speaking() -> bool:
            last = self.listener.last_audible(AGENT)
            return last is not None and time.monotonic() - last < SPEAKING

        wait_until(now_speaking, timeout=STEP, interval=0.005, what="the agent speaking")

    def last_audible_after_quiet(self) -> float:
        """The agent's last audible frame, once it has been silent for ``QUIET`` s."""

        def silent() -> float | None:
            last = self.listener.last_audible(AGENT)
            return last if last is not None and time.monotonic() - last > QUIET else None

        return wait_until(silent, timeout=STEP, interval=0.01, what="the agent falling silent")

    def first_audible_after(self, moment: float) -> float:
        return wait_until(
            lambda: self.listener.first_audible_after(AGENT, moment),
            timeout=STEP,
            interval=0.005,
            what="the agent's first audible frame again",
        )


def cycle(bench: Bench, path: str, paused: Samples, resumed: Samples) -> None:
    """One takeover and hand-back (ours) or pause and resume (bare), timed at the listener."""
    bench.speaking()
    started = time.monotonic()
    if path == "ours":
        bench.take_over()
    else:
        bench.bare("pause")
    getattr(paused, path).append((bench.last_audible_after_quiet() - started) * 1000)
    started = time.monotonic()
    if path == "ours":
        bench.hand_back()
    else:
        bench.bare("resume", "Caller: Are you still there?")
    getattr(resumed, path).append((bench.first_audible_after(started) - started) * 1000)


def run_cycles(bench: Bench, rounds: int) -> tuple[Samples, Samples]:
    paused, resumed = Samples(), Samples()
    for _ in range(rounds):
        for path in ("ours", "bare"):
            cycle(bench, path, paused, resumed)
    return paused, resumed


def measure(rounds: int) -> tuple[Samples, Samples]:
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-takeover-")))
        log("starting livekit-server and daphne (SQLite), and a simulated call")
        stack = cleanup.enter_context(running_stack(tmp))
        loop = cleanup.enter_context(LoopThread())
        conversation_id, room = cleanup.enter_context(
            agent_call(
                stack, loop, name="takeover", script=AGENT_ONLY, caller_label="+1 555 0109 (bench)"
            )
        )
        grant = stack.mint(conversation_id, stack.seed["api_keys"]["read_sensitive"])
        grant.raise_for_status()
        listener = loop.run(connected_listener(grant.json()["url"], grant.json()["token"]))
        cleanup.callback(lambda: loop.run(listener.close()))
        bench = Bench(stack, conversation_id, room, listener, Keys(stack))
        wait_until(lambda: listener.frames.get(AGENT), timeout=STEP, what="the agent's track")
        log("warming up")
        run_cycles(bench, 1)
        log(f"{rounds} takeovers and hand-backs each way")
        return run_cycles(bench, rounds)


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


def report(paused: Samples, resumed: Samples) -> str:
    pause95, resume95 = percentile(paused.ours, 95), percentile(resumed.ours, 95)
    rows = [
        _row(
            "take over → the agent's last audible frame at a listener (ms)",
            paused,
            f"p95 ≤ {PAUSE_TARGET_P95_MS:.0f}",
        ),
        _row(
            "hand back → the agent's first audible frame again (ms)",
            resumed,
            f"p95 ≤ {RESUME_TARGET_P95_MS:,.0f}",
        ),
    ]
    headers = ["measure", "n each", "ours p50", "ours p95", "bare p50", "bare p95"]
    headers += ["ours/bare p50", "ours/bare p95", "target"]
    met = [
        "met" if pause95 <= PAUSE_TARGET_P95_MS else "NOT met",
        "met" if resume95 <= RESUME_TARGET_P95_MS else "NOT met",
    ]
    return "\n".join(
        [
            "### B9 take over and hand back: API vs bare pause/resume orders (LiveKit, "
            "simulated agent)",
            "",
            table(headers, rows),
            "",
            "Ours: `POST /core/conversations/{id}/takeover` to daphne (SQLite; the key's "
            "check, the call's agent looked up in LiveKit, the takeover committed, the "
            "signed pause sent with PerformRpc and confirmed, the supervisor's token "
            "minted), then `DELETE` (the takeover ended and committed, the supervisor's "
            "participant removed, the resume sent with the lines said meanwhile). Bare "
            "(`bench/bare_rpc.py`): the same signed pause and resume orders sent with "
            "RoomService.PerformRpc straight to the agent. Both reach the same simulated "
            "agent (`demo/call_simulator.py`), alternating, always while it speaks; it "
            "cuts its line on a pause and answers once silent, and on a resume speaks its "
            "pickup line (synthesized once, cached). The clock starts just before the "
            "request; the last and first audible frames are the hidden listener's (livekit "
            "rtc AudioStream, a peak over 1,000), the last taken once the agent has been "
            f"silent for {QUIET:.1f} s. A click in the portal adds its fetch and the page's "
            "LiveKit connection, which run beside these (the agent is paused by the POST).",
            "",
            f"Targets: take over → the agent silent at a listener p95 ≤ "
            f"{PAUSE_TARGET_P95_MS:.0f} ms: {pause95:.0f} ms, {met[0]}; hand back → the "
            f"agent heard again p95 ≤ {RESUME_TARGET_P95_MS:,.0f} ms: {resume95:.0f} ms, "
            f"{met[1]}.",
        ]
    )


def main() -> int:
    stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds")
    parser.add_argument("--rounds", type=int, help="takeovers each way (default 30)")
    args = parser.parse_args()
    rounds = args.rounds or (4 if args.quick else 30)
    print(report(*measure(rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
