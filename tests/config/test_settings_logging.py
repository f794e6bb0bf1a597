"""config/settings.py's LOGGING: each log line is written once, with its time, level and
logger, also under daphne (which sets up the root logger itself before Django starts)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

# What daphne's command line does first (daphne/cli.py), then what its application does.
DAPHNE_THEN_DJANGO = """
import logging
logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(levelname)-8s %(message)s")
import django
django.setup()
logging.getLogger("anyreach_listen.livekit.webhooks").info("LiveKit webhook room_started")
logging.getLogger("django.request").warning("Not Found: /nope")
logging.getLogger("some.library").info("a request line nobody needs")
"""

# A management command: no one set up the root logger.
COMMAND = """
import django
django.setup()
logging = __import__("logging")
logging.getLogger("anyreach_listen.livekit.webhooks").info("LiveKit webhook room_started")
"""


@pytest.mark.parametrize("script", [DAPHNE_THEN_DJANGO, COMMAND], ids=["daphne", "command"])
def test_each_line_is_written_once_with_its_level(script: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stderr.splitlines()
    ours = [line for line in lines if "LiveKit webhook room_started" in line]
    assert len(ours) == 1, result.stderr
    assert " INFO anyreach_listen.livekit.webhooks: LiveKit webhook room_started" in ours[0]
    if script is DAPHNE_THEN_DJANGO:
        assert len([line for line in lines if "Not Found: /nope" in line]) == 1, result.stderr
        assert "a request line nobody needs" not in result.stderr
