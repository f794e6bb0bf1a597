"""The wheel: what it carries, and that it works alone in a fresh Django project.

The second test follows the README's "Adding anyreach_listen to an existing
Django project" literally: it applies the README's own code blocks to a project
made by ``django-admin startproject`` in a new virtualenv holding only the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT, free_port, http_ok, managed_process, wait_until

PROJECT = "yourproject"  # the README's name for the host project
SECTION = "## Adding anyreach_listen to an existing Django project"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("anyreach_listen-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "anyreach_listen/py.typed" in names
    assert "anyreach_listen/migrations/0001_initial.py" in names
    assert "anyreach_listen/templates/anyreach_listen/admin/secret_once.html" in names
    # Built JS ships in the wheel (built by `make setup`).
    assert any(n.startswith("anyreach_listen/static/anyreach_listen/") for n in names)
    assert not any(n.startswith(("portal/", "tests/", "demo/", "config/")) for n in names)
    # Nothing the reusable app ships needs the demo or a dev-only package, except the
    # recorder's agent module (the optional `recorder` extra), which only the
    # run_recorder command imports, inside its handler.
    sources = {
        n: zipfile.ZipFile(wheel).read(n).decode()
        for n in names
        if n.startswith("anyreach_listen/") and n.endswith(".py")
    }
    agent_module = "anyreach_listen/recorder_agent.py"
    assert "from livekit.agents import" in sources[agent_module]
    for forbidden in (
        "livekit.rtc",
        "from livekit import rtc",
        "from livekit.agents",
        "import livekit.agents",
        "import demo",
        "from demo",
    ):
        assert not [n for n, s in sources.items() if forbidden in s and n != agent_module], (
            forbidden
        )
    imports = ("import recorder_agent", "from .recorder_agent", "anyreach_listen.recorder_agent")
    importers = [n for n, s in sources.items() if any(i in s for i in imports)]
    assert importers == ["anyreach_listen/management/commands/run_recorder.py"], importers
    command = sources[importers[0]]
    assert "import recorder_agent" in command
    assert "\nfrom anyreach_listen import recorder_agent" not in command  # not at module top
    metadata = next(
        zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("METADATA")
    )
    agents = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "livekit-agents" in line
    ]
    assert agents and all('extra == "recorder"' in line for line in agents), agents


def readme_steps() -> dict[str, str]:
    """The README section's python blocks by their first line (``# settings.py: append``)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return {block.splitlines()[0].removeprefix("# ").strip(): block for block in blocks}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def host_env(venv: Path) -> dict[str, str]:
    """This machine's environment for the host project: its venv, no settings of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
    }
    return env | {
        # Explicit: managed_process starts from this process's environment (config.settings).
        "DJANGO_SETTINGS_MODULE": f"{PROJECT}.settings",
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "a-host-project-secret-of-32-characters",
    }


def test_the_readme_integration_works_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = host_env(venv)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)
    _run([str(venv / "bin" / "django-admin"), "startproject", PROJECT, "project"], tmp_path, env)
    project = tmp_path / "project"
    steps = readme_steps()
    assert set(steps) == {"settings.py: append", "urls.py: append", "asgi.py: replace"}
    for name, block in steps.items():
        filename, how = name.split(": ")
        target = project / PROJECT / filename
        target.write_text(block if how == "replace" else f"{target.read_text()}\n{block}")

    def manage(*args: str) -> str:
        return _run([python, "manage.py", *args], project, env)

    assert "no issues" in manage("check")
    manage("migrate", "--verbosity", "0")
    org_id = manage("create_organization", "Host Inc.").strip().splitlines()[-1]
    key = manage(
        "create_api_key", org_id, "--name", "backend", "--scope", "conversations:read_sensitive"
    )
    key = key.strip().splitlines()[-1]
    conversation_id = manage(
        "shell",
        "-c",
        "from anyreach_listen.models import Conversation as C; "
        f"print(C.objects.create(organization_id='{org_id}', status='in_progress', "
        "livekit_room='host-room').pk)",
    )
    conversation_id = conversation_id.strip().splitlines()[-1]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daphne = [str(venv / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "daphne.log"
    with managed_process(
        [*daphne, f"{PROJECT}.asgi:application"], env=env, cwd=project, log_path=log
    ):
        wait_until(lambda: http_ok(f"{base}/core/openapi.json"), timeout=30, what="daphne")
        minted = httpx.post(
            f"{base}/core/conversations/{conversation_id}/listener-token",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert minted.status_code == 200, minted.text
        assert minted.json()["room_name"] == "host-room"
        assert httpx.get(f"{base}/public/listen-sdk").status_code == 200
        # The panel's own files are served under daphne too (ASGIStaticFilesHandler in DEBUG).
        css = httpx.get(f"{base}/static/anyreach_listen/panel/listen-panel.css")
        assert css.status_code == 200 and "arl-panel" in css.text
