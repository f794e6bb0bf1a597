"""listen-sdk.d.ts matches the contract: tsc accepts correct usage and rejects mistakes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

TSC = ROOT / "js" / "node_modules" / ".bin" / "tsc"
DTS = ROOT / "anyreach_listen" / "static" / "anyreach_listen" / "listen-sdk.d.ts"
TYPINGS = Path(__file__).parent / "typings"


def tsc(workdir: Path, usage: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(DTS, workdir / "listen-sdk.d.ts")
    shutil.copy(TYPINGS / "tsconfig.json", workdir / "tsconfig.json")
    (workdir / "usage.ts").write_text(usage)
    return subprocess.run(
        [str(TSC), "--noEmit", "-p", str(workdir / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def typescript(built_js: None) -> None:
    assert TSC.exists(), "TypeScript is a js devDependency: run `make js`"


def test_declarations_accept_the_contract_and_reject_mistakes(
    typescript: None, tmp_path: Path
) -> None:
    result = tsc(tmp_path, (TYPINGS / "usage.ts").read_text())
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_really_fails_on_a_mistake(typescript: None, tmp_path: Path) -> None:
    usage = (TYPINGS / "usage.ts").read_text()
    broken = usage.replace("// @ts-expect-error: unknown event name\n", "")
    assert broken != usage
    result = tsc(tmp_path, broken)
    assert result.returncode != 0
    assert "transcripts" in result.stdout
