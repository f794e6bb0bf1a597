"""The wheel: built from a clean copy of the tree, what it carries, and that it works alone.

Built as a newcomer builds it (``python -m build``: the sdist, then the wheel from it)
from what git would check out, so setup.py's hook must build the SDK's bundles itself.
The integration tests apply docs/integrators/django.md's code blocks, read at test time,
to a ``django-admin startproject`` project in a new virtualenv holding only the wheel;
the last adds the bootstrap command, a real LiveKit with the page's ``webhook:`` block,
a room-metadata call and a Python listener hearing it. More: tests/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pytest
import yaml
from livekit import api, rtc

from anyreach_listen.livekit.service import livekit_api, run_sync
from demo.devserver import DEV_API_KEY, DEV_API_SECRET, DevServerConfig
from tests.e2e.listener import Listener
from tests.support.livekit import LiveKitProcess, free_udp_port
from tests.support.processes import ROOT, daphne_server, free_port, wait_until

pytestmark = pytest.mark.packaging

PROJECT = "yourproject"  # the README's name for the host project
SECTION = "## Adding anyreach_listen to an existing Django project"
STATIC = "anyreach_listen/static/anyreach_listen"
BUNDLES = (f"{STATIC}/listen-sdk.js", f"{STATIC}/listen-frame.js")
BUILD_TIMEOUT = 900  # npm ci with a cold npm cache


# --- a clean copy of the tree, and the build -----------------------------------------------


def clean_copy(dest: Path) -> Path:
    """The files a checkout of the working tree would hold: tracked ones (as they are now,
    uncommitted edits included) and untracked ones git does not ignore. Nothing built."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # What the test is about: the copy has no prebuilt bundles and no npm toolchain.
    assert not [b for b in BUNDLES if (dest / b).exists()]
    assert not (dest / "js" / "node_modules").exists()
    return dest


def build(
    source: Path, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m build`` with this venv's setuptools (no download of the build backend)."""
    return subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-o", str(out), *args, str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=BUILD_TIMEOUT,
        check=False,
    )


@dataclass(frozen=True)
class Dist:
    source: Path  # the clean copy it was built from
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    source = clean_copy(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    result = build(source, out)  # the sdist, then the wheel from the unpacked sdist
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return Dist(
        source, next(out.glob("anyreach_listen-*.tar.gz")), next(out.glob("anyreach_listen-*.whl"))
    )


@pytest.fixture(scope="module")
def wheel(dist: Dist) -> Path:
    return dist.wheel


def test_the_wheel_carries_its_sdk_built_from_a_clean_tree(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    # The SDK bundles, built by setup.py's hook (esbuild's minified output, not stubs).
    sdk, frame = (zipfile.ZipFile(dist.wheel).read(b) for b in BUNDLES)
    assert len(sdk) > 2_000 and b"listen" in sdk
    assert len(frame) > 100_000 and b"livekit" in frame.lower()  # the frame bundles LiveKit
    # Every template, static file and migration of the package, and py.typed.
    package = dist.source / "anyreach_listen"
    for folder in ("templates", "static", "migrations"):
        shipped = {
            p.relative_to(dist.source).as_posix()
            for p in (package / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert shipped and shipped <= names, sorted(shipped - names)
    assert "anyreach_listen/py.typed" in names
    assert "anyreach_listen/migrations/0001_initial.py" in names
    assert "anyreach_listen/templates/anyreach_listen/admin/secret_once.html" in names
    assert f"{STATIC}/panel/listen-panel.css" in names
    # The test-only frame never ships.
    assert not [n for n in names if "listen-frame-test" in n or n.startswith("js/")]

    # The sdist carries what the hook needs, and not what it builds.
    with tarfile.open(dist.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for needed in (
        "setup.py",
        "pyproject.toml",
        "js/package.json",
        "js/package-lock.json",
        "js/build.mjs",
        "js/tsconfig.json",
        "js/src/sdk.ts",
        "js/src/frame/main.ts",
        f"{STATIC}/listen-sdk.d.ts",
    ):
        assert needed in members, needed
    # Not the built bundles, nor tests that cannot run without tests/support/.
    assert not [m for m in members if m.startswith(("js/node_modules", "tests/")) or m in BUNDLES]


def test_a_build_without_node_says_what_to_install(tmp_path: Path) -> None:
    source = clean_copy(tmp_path / "checkout")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(empty)}
    result = build(source, tmp_path / "out", "--wheel", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "`node` is not on PATH" in output, output[-3000:]
    assert "Install Node.js 18 or newer with npm" in output
    assert not list((tmp_path / "out").glob("*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not any(n.startswith(("portal/", "tests/", "demo/", "config/")) for n in names)
    # Nothing the reusable app ships needs the demo or a dev-only package, except the
    # recorder's agent module (the optional `recorder` extra), which only the
    # run_recorder command imports, inside its handler, and the guidance package for
    # customers' own agents (the optional `agent` extra), which nothing of ours imports.
    sources = {
        n: zipfile.ZipFile(wheel).read(n).decode()
        for n in names
        if n.startswith("anyreach_listen/") and n.endswith(".py")
    }
    agent_module = "anyreach_listen/recorder/agent.py"
    guidance_package = "anyreach_listen/agent/"
    assert "from livekit.agents import" in sources[agent_module]
    assert "from livekit.agents import" in sources[f"{guidance_package}guidance.py"]
    with_agents = {agent_module, *(n for n in sources if n.startswith(guidance_package))}
    for forbidden in (
        "livekit.rtc",
        "from livekit import rtc",
        "from livekit.agents",
        "import livekit.agents",
        "import demo",
        "from demo",
    ):
        assert not [n for n, s in sources.items() if forbidden in s and n not in with_agents], (
            forbidden
        )
    # The guidance package imports nothing of the server but the pure signing module,
    # and nothing of ours imports it.
    for name in (n for n in sources if n.startswith(guidance_package)):
        source = sources[name]
        ours = re.findall(r"^\s*(?:from|import) (anyreach_listen[\w.]*)", source, re.M)
        assert set(ours) <= {"anyreach_listen.agent.guidance", "anyreach_listen.assist"}, ours
        assert not re.search(r"^\s*(?:from|import) (?:django|channels|\.)", source, re.M), name
    for name, source in sources.items():
        if name.startswith(guidance_package):
            continue
        up = "." * name.count("/")  # a relative import of anyreach_listen/agent from here
        assert not re.search(
            rf"anyreach_listen\.agent\b|from anyreach_listen import [^\n]*\bagent\b"
            rf"|^\s*from {re.escape(up)}agent\b|^\s*from {re.escape(up)} import [^\n]*\bagent\b",
            source,
            re.M,
        ), f"{name} imports the guidance package"
    imports = ("import agent as recorder_agent", "from .agent", "anyreach_listen.recorder.agent")
    importers = [n for n, s in sources.items() if any(i in s for i in imports)]
    assert importers == ["anyreach_listen/management/commands/run_recorder.py"], importers
    command = sources[importers[0]]
    assert "import agent as recorder_agent" in command
    assert "\nfrom anyreach_listen.recorder import agent" not in command  # not at module top
    metadata = next(
        zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("METADATA")
    )
    agents = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "livekit-agents" in line
    ]
    assert agents and all(
        'extra == "recorder"' in line or 'extra == "agent"' in line for line in agents
    ), agents
    assert [line for line in agents if 'extra == "agent"' in line], agents


# --- the README's integration section, read at test time -----------------------------------


def readme_section() -> str:
    text = (ROOT / "docs" / "integrators" / "django.md").read_text()
    section = text[text.index(SECTION) :]
    return section[: section.index("\n## ", len(SECTION))]


def readme_steps() -> dict[str, str]:
    """The section's python blocks by their first line (``# settings.py: append``)."""
    blocks = re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S)
    return {block.splitlines()[0].removeprefix("# ").strip(): block for block in blocks}


def readme_webhook_block() -> dict[str, Any]:
    """The LiveKit ``webhook:`` block the section tells a reader to paste."""
    blocks = re.findall(r"```ya?ml\n(.*?)```", readme_section(), flags=re.S)
    found = [yaml.safe_load(b) for b in blocks if re.search(r"^webhook:", b, flags=re.M)]
    assert len(found) == 1, f"one yaml block with `webhook:` in {SECTION!r}, found {len(found)}"
    webhook = found[0]["webhook"]
    assert isinstance(webhook, dict) and webhook["urls"], webhook
    return webhook


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def host_env(venv: Path, **livekit: str) -> dict[str, str]:
    """This machine's environment for the host project: its venv, no settings of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
        and not k.startswith("LIVEKIT_")
    }
    return env | {
        # Explicit: managed_process starts from this process's environment (config.settings).
        "DJANGO_SETTINGS_MODULE": f"{PROJECT}.settings",
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        **livekit,
    }


@dataclass(frozen=True)
class HostSite:
    """A ``startproject`` site with the README's steps applied, in a venv holding the wheel."""

    venv: Path
    project: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def manage(self, env: dict[str, str], *args: str) -> str:
        return _run([self.python, "manage.py", *args], self.project, env)


@pytest.fixture(scope="module")
def host_template(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> HostSite:
    """Built once per module: the venv (the wheel and its dependencies from PyPI, which
    pip's cache usually answers) and the project; each test works on its own copy."""
    tmp = tmp_path_factory.mktemp("host")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = host_env(venv)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp, env)
    _run([str(venv / "bin" / "django-admin"), "startproject", PROJECT, "project"], tmp, env)
    project = tmp / "project"
    steps = readme_steps()
    assert set(steps) == {"settings.py: append", "urls.py: append", "asgi.py: replace"}
    for name, block in steps.items():
        filename, how = name.split(": ")
        target = project / PROJECT / filename
        target.write_text(block if how == "replace" else f"{target.read_text()}\n{block}")
    return HostSite(venv, project)


@pytest.fixture
def host(host_template: HostSite, tmp_path: Path) -> HostSite:
    project = tmp_path / "project"
    shutil.copytree(host_template.project, project)
    return HostSite(host_template.venv, project)


def test_the_readme_integration_works_from_the_wheel_alone(host: HostSite, tmp_path: Path) -> None:
    env = host_env(
        host.venv,
        LIVEKIT_URL="ws://127.0.0.1:7880",
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-host-project-secret-of-32-characters",
    )
    assert "no issues" in host.manage(env, "check")
    host.manage(env, "migrate", "--verbosity", "0")
    org_id = host.manage(env, "create_organization", "Host Inc.").strip().splitlines()[-1]
    scope = "conversations:read_sensitive"
    key = host.manage(env, "create_api_key", org_id, "--name", "backend", "--scope", scope)
    key = key.strip().splitlines()[-1]
    conversation_id = host.manage(
        env,
        "shell",
        "-c",
        "from anyreach_listen.models import Conversation as C; "
        f"print(C.objects.create(organization_id='{org_id}', status='in_progress', "
        "livekit_room='host-room').pk)",
    )
    conversation_id = conversation_id.strip().splitlines()[-1]

    with daphne_server(
        free_port(),
        env,
        log_path=tmp_path / "daphne.log",
        application=f"{PROJECT}.asgi:application",
        python=host.python,
        cwd=host.project,
    ) as base:
        minted = httpx.post(
            f"{base}/core/conversations/{conversation_id}/listener-token",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert minted.status_code == 200, minted.text
        assert minted.json()["room_name"] == "host-room"
        # The SDK the build hook bundled is served (503 without it).
        sdk = httpx.get(f"{base}/public/listen-sdk")
        assert sdk.status_code == 200 and "listen" in sdk.text
        # The panel's own files are served under daphne too (ASGIStaticFilesHandler in DEBUG).
        css = httpx.get(f"{base}/static/anyreach_listen/panel/listen-panel.css")
        assert css.status_code == 200 and "arl-panel" in css.text


# --- the integrator: bootstrap, a real LiveKit, a call from room metadata, a listener ------


@dataclass(frozen=True)
class ReadmeLiveKitConfig(DevServerConfig):
    """``livekit-server --dev`` on free loopback ports with the README's ``webhook:`` block."""

    webhook: dict[str, Any] | None = None

    def config_body(self) -> str:
        config = json.loads(super().config_body())
        config["webhook"] = self.webhook
        return json.dumps(config)


def at_port(url: str, port: int) -> str:
    """``url`` on this test's free port (the README says :8000, ``runserver``'s)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def until[T](condition: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


SAMPLE_RATE = 48_000
FRAME = 480  # 10 ms


async def play_tone(source: rtc.AudioSource) -> None:
    """A 440 Hz sine at real-time pace, until cancelled."""
    start = time.monotonic()
    for index in itertools.count():
        t = (index * FRAME + np.arange(FRAME)) / SAMPLE_RATE
        samples = (8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, FRAME))
        await asyncio.sleep(max(0.0, start + (index + 1) * FRAME / SAMPLE_RATE - time.monotonic()))


@contextlib.contextmanager
def livekit_running(config: DevServerConfig, log_path: Path) -> Iterator[LiveKitProcess]:
    process = LiveKitProcess(config, log_path)
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.mark.e2e
# The caller's token is signed with the dev server's short secret, as the README's defaults.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_the_integrator_hears_a_call_through_the_readme_setup(
    host: HostSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No LiveKit settings from this machine: the site gets the README's dev defaults, and
    # only the URL of this test's server (free ports) from the environment.
    for name in [k for k in os.environ if k.startswith("LIVEKIT_")]:
        monkeypatch.delenv(name)
    daphne_port = free_port()
    webhook = readme_webhook_block()
    config = ReadmeLiveKitConfig(
        port=free_port(),
        tcp_port=free_port(),
        udp_port=free_udp_port(),
        webhook={**webhook, "urls": [at_port(u, daphne_port) for u in webhook["urls"]]},
    )
    env = host_env(host.venv, LIVEKIT_URL=config.ws_url)
    # The README's commands after the code blocks: check, migrate, createsuperuser,
    # anyreach_bootstrap --user <that username>.
    assert "no issues" in host.manage(env, "check")
    host.manage(env, "migrate", "--verbosity", "0")
    superuser = {
        **env,
        "DJANGO_SUPERUSER_PASSWORD": "integrator-password-1",
        "DJANGO_SUPERUSER_EMAIL": "integrator@example.com",
    }
    host.manage(superuser, "createsuperuser", "--noinput", "--username", "integrator")
    made = json.loads(host.manage(env, "anyreach_bootstrap", "--user", "integrator", "--json"))
    assert made["created"] == dict.fromkeys(
        ("organization", "team", "membership", "api_key"), True
    ) | {"user": False}, made
    key = made["api_key"]
    # The README's room metadata (integrating your call platform, door 2).
    call = {
        "organization_id": made["organization_id"],
        "team_id": made["team_id"],
        "external_id": "integrator-call",
    }
    with (
        livekit_running(config, tmp_path / "livekit.log") as livekit,
        daphne_server(
            daphne_port,
            env,
            log_path=tmp_path / "daphne.log",
            application=f"{PROJECT}.asgi:application",
            python=host.python,
            cwd=host.project,
        ) as base,
    ):
        try:
            # run_sync, not asyncio.run: Playwright's sync API may keep a loop in this thread.
            conversation_id, listener = run_sync(call_and_listen(config, base, key, call))
        except BaseException:
            print("--- livekit log ---", livekit.log_path.read_text(errors="replace")[-4000:])
            print("--- daphne log ---", (tmp_path / "daphne.log").read_text(errors="replace"))
            raise
        # The tone, heard by the minted listener (a sine of amplitude 8000).
        assert listener.frames.get("caller", 0) >= 50, listener.frames
        assert listener.peak["caller"] > 4000, listener.peak
        # room_finished (the README's webhook again) completed the call.
        url = f"{base}/core/conversations/{conversation_id}"

        def completed() -> bool:
            found = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
            return bool(found.json()["status"] == "completed")

        wait_until(completed, timeout=15, what="room_finished to complete the conversation")


async def call_and_listen(
    config: DevServerConfig, base: str, key: str, call: dict[str, str]
) -> tuple[str, Listener]:
    """Create the call's room with the README's metadata (``{"anyreach": call}``), a caller
    publishing a tone, the conversation the webhook registered, a token minted through the
    API, a listener hearing the caller."""
    auth = {"Authorization": f"Bearer {key}"}
    room = call["external_id"]
    async with (
        livekit_api(config.http_url, DEV_API_KEY, DEV_API_SECRET) as livekit,
        httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as client,
    ):
        await livekit.room.create_room(
            api.CreateRoomRequest(name=room, metadata=json.dumps({"anyreach": call}))
        )
        caller = rtc.Room()
        grant = api.VideoGrants(room_join=True, room=room)
        token = api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity("caller")
        await caller.connect(config.ws_url, token.with_grants(grant).to_jwt())
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("caller-voice", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await caller.local_participant.publish_track(track, options)
        tone = asyncio.ensure_future(play_tone(source))
        listener: Listener | None = None
        try:

            async def registered() -> dict[str, Any] | None:
                found = await client.get("/core/conversations", params={"external_id": room})
                assert found.status_code == 200, found.text
                results = found.json()["results"]
                return results[0] if results else None

            conversation = await until(registered, timeout=15, what="room_started to register")
            assert conversation["status"] == "in_progress", conversation
            assert conversation["organization_id"] == call["organization_id"]
            assert conversation["team_id"] == call["team_id"]
            assert conversation["room_name"] == room
            minted = await client.post(f"/core/conversations/{conversation['id']}/listener-token")
            assert minted.status_code == 200, minted.text
            listen = minted.json()
            assert listen["url"] == config.ws_url and listen["room_name"] == room
            listener = Listener(listen["url"], listen["token"])
            await asyncio.wait_for(listener.connect(), timeout=15)

            async def heard() -> bool:
                assert listener is not None
                return listener.frames.get("caller", 0) >= 50

            await until(heard, timeout=20, what="the listener to receive the caller's audio")
        finally:
            tone.cancel()
            await asyncio.gather(tone, return_exceptions=True)
            if listener is not None:
                await listener.close()
            await caller.disconnect()
            await livekit.room.delete_room(api.DeleteRoomRequest(room=room))
    assert listener is not None
    return str(conversation["id"]), listener
