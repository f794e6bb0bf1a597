"""What ``make demo`` prints after its banner (``demo/console.py``): calls starting and
ending, alerts and errors, each once; nothing of what the processes log otherwise.
The whole demo run is in ``test_run_demo_console.py``."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from anyreach_listen import alerts, conversations
from anyreach_listen.models import ConversationStatus
from anyreach_listen.transcripts import SegmentIn, record
from demo.console import Console, Watcher, write_banner
from tests.support.world import World


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def watcher(tmp_path: Path, said: list[str]) -> Watcher:
    return Watcher(Console(said.append), tmp_path)


def _bodies(said: list[str]) -> list[str]:
    # Each line is "HH:MM:SS  what happened".
    assert all(line[2] == ":" and line[8:10] == "  " for line in said), said
    return [line[10:] for line in said]


def test_calls_and_alerts_are_said_once_each(
    world: World, watcher: Watcher, said: list[str]
) -> None:
    # Calls that were there before (the seed's) are not news.
    conversations.finish(world.conversations[ConversationStatus.IN_PROGRESS])
    watcher.poll()
    assert said == []

    alerts.create_rule(world.org, phrase="charged twice")
    call, _ = conversations.register(
        world.org, room_name="call-1", team=world.team, caller_label="+1 555 0142"
    )
    watcher.poll()
    watcher.poll()
    record(call, [SegmentIn("s1", "user", "I was charged twice", True)])
    watcher.poll()
    conversations.finish(call, status=ConversationStatus.FAILED, by="room_gone")
    watcher.poll()
    watcher.poll()
    assert _bodies(said) == [
        "call started  +1 555 0142 (Support)",
        "alert         warning: 'charged twice' said in +1 555 0142 (Support)",
        "call ended    +1 555 0142 (Support): failed (room_gone)",
    ]


def test_error_lines_of_the_logs_are_said_once_and_the_rest_is_not(
    db: None, tmp_path: Path, said: list[str]
) -> None:
    old = tmp_path / "daphne.log"
    old.write_text("2026-01-01 ERROR anyreach_listen: from an earlier run\n")
    watcher = Watcher(Console(said.append), tmp_path)
    with old.open("a") as log:
        log.write('127.0.0.1:5000 - - [07/Dec/2026:02:00:00] "POST /livekit/webhook" 200 2\n')
        log.write("2026-12-07 02:00:01,000 INFO anyreach_listen.webhooks: LiveKit webhook\n")
        log.write("2026-12-07 02:00:02,000 ERROR anyreach_listen.revocation: it broke\n")
        log.write("Traceback (most recent call last):\n")
        log.write("2026-12-07 02:00:02,000 ERROR anyreach_listen.revocation: it bro")  # unfinished
    (tmp_path / "livekit.log").write_text("2026-12-07T02:00:03Z\tERROR\tlivekit\tno node\n")
    (tmp_path / "recorder.log").write_text(
        "2026-12-07 02:00:04,000 ERROR livekit: livekit::rtc_engine::rtc_session:704:"
        "livekit::rtc_engine::rtc_session - publisher data channel '_lossy' closed unexpectedly\n"
    )
    watcher.poll()
    with old.open("a") as log:
        log.write("ke\n")  # the same error as above, finished: said once
    watcher.poll()
    assert _bodies(said) == [
        "error         daphne.log: 2026-12-07 02:00:02,000 ERROR anyreach_listen.revocation: "
        "it broke",
        "error         livekit.log: 2026-12-07T02:00:03Z\tERROR\tlivekit\tno node",
    ]


def test_a_process_the_demo_needs_that_exits_is_said_once(
    db: None, watcher: Watcher, said: list[str]
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(timeout=30)
    watcher.watch("daphne", proc, "daphne.log")
    watcher.poll()
    watcher.poll()
    assert _bodies(said) == ["error         daphne exited (code 3); see daphne.log"]


def test_the_banner_is_kept_for_its_owner_only(tmp_path: Path) -> None:
    path = write_banner(tmp_path, "Sign in as …\n")
    write_banner(tmp_path, "Sign in as (again) …\n")  # the next start replaces it
    assert path.read_text() == "Sign in as (again) …\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
