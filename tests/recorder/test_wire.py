"""``recorder/wire.py``: the signing both halves share, and the worker's imports (no ORM)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anyreach_listen.recorder import wire
from anyreach_listen.recorder.wire import SegmentIn

KEY, SECRET = "APIwire", "a-secret-of-more-than-32-characters-for-wire"
ORM = ("django.db", "django.db.models", "anyreach_listen.models", "anyreach_listen.api.payloads")


def test_a_signed_delivery_is_accepted_for_its_body_only() -> None:
    body = wire.delivery_body("room-1", [SegmentIn("s1", "user", "hello", True)], None)
    authorization = wire.sign(body, KEY, SECRET)
    assert wire.refusal(authorization, body, KEY, SECRET) is None
    assert wire.refusal(authorization, body + b" ", KEY, SECRET) == "body hash mismatch"
    assert wire.refusal(authorization, body, KEY, SECRET + "!") is not None
    assert wire.refusal("", body, KEY, SECRET) == "no bearer token"


def test_the_delivery_body_is_the_declared_shape() -> None:
    body = json.loads(wire.delivery_body("r", [SegmentIn("s1", "agent", "hi", False)], "c-1"))
    assert set(body) == wire.DELIVERY_FIELDS
    assert body["segments"] == [{"id": "s1", "role": "agent", "text": "hi", "final": False}]
    assert json.loads(wire.registered_body("w-1")) == {wire.REGISTERED: "w-1"}


def _loaded_by(module: str) -> list[str]:
    """Which of ``ORM`` importing ``module`` loads, in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([name for name in {ORM!r} if name in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "anyreach_listen.recorder.wire",
        "anyreach_listen.recorder.writer",
        "anyreach_listen.recorder.merge",
        "anyreach_listen.recorder.agent",
    ],
)
def test_the_worker_modules_never_load_the_orm(module: str) -> None:
    assert _loaded_by(module) == []
