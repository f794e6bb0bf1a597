"""The JS side's own tests, so ``make test`` runs them: the pure modules' unit tests
(``js/test/*.test.ts`` on Node's built-in runner, after tsc) and the typed
protocol's type-level tests (``js/test/*.typecheck.ts``)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "js"
TSC = JS / "node_modules" / ".bin" / "tsc"
TYPECHECK = JS / "test" / "protocol.typecheck.ts"
DIRECTIVE = "// @ts-expect-error"


def test_js_unit_tests_pass() -> None:
    result = subprocess.run(
        ["make", "-s", "-C", str(JS), "test"], capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Node's TAP summary: something ran, and nothing failed.
    summary = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", output, re.MULTILINE))
    assert int(summary["fail"]) == 0, output
    assert int(summary["pass"]) == int(summary["tests"]) > 0, output


def test_each_expected_type_error_is_a_type_error(tmp_path: Path) -> None:
    """Without its @ts-expect-error, each line of protocol.typecheck.ts fails tsc, and
    nothing else does (tsc would also flag a directive whose line compiles)."""
    subprocess.run(["make", "-s", "-C", str(JS), "build"], check=True)  # installs tsc
    source = TYPECHECK.read_text()
    lines = source.splitlines()
    expected = {n + 2 for n, line in enumerate(lines) if line.strip().startswith(DIRECTIVE)}
    assert len(expected) >= 10
    # Same line numbers, directives disarmed, imports pointed back at js/.
    mutated = source.replace(DIRECTIVE, "// expect an error:").replace('"../src/', f'"{JS}/src/')
    (tmp_path / "mutated.ts").write_text(mutated)
    (tmp_path / "tsconfig.json").write_text(
        json.dumps({"extends": str(JS / "tsconfig.json"), "include": [], "files": ["mutated.ts"]})
    )
    result = subprocess.run(
        [str(TSC), "--noEmit", "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = {
        int(n) for n in re.findall(r"^\S*mutated\.ts\((\d+),\d+\): error", result.stdout, re.M)
    }
    assert result.returncode != 0
    assert errors == expected, result.stdout
