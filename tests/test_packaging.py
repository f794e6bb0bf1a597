"""The wheel carries templates, static files, migrations and py.typed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "-o",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("anyreach_listen-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "anyreach_listen/py.typed" in names
    assert "anyreach_listen/migrations/0001_initial.py" in names
    assert "anyreach_listen/templates/anyreach_listen/admin/secret_once.html" in names
    # Built JS ships in the wheel (built by `make setup`).
    assert any(n.startswith("anyreach_listen/static/anyreach_listen/") for n in names)
    assert not any(n.startswith(("portal/", "tests/")) for n in names)
