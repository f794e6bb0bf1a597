"""The wheel's build hook: it builds the browser SDK's bundles, or fails saying why.

pyproject.toml holds the metadata; setuptools runs this file for every build. Before
the package's files are copied, ``build_py`` builds the bundles from ``js/`` with the
pinned npm toolchain, and without Node.js and npm it stops with a message naming them,
so a wheel never ships without its SDK. The sdist carries ``js/`` and not the bundles,
so a wheel built from it builds them the same way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError, PlatformError

HERE = Path(__file__).resolve().parent
JS = HERE / "js"
STATIC = Path("anyreach_listen", "static", "anyreach_listen")
BUNDLES = ("listen-sdk.js", "listen-frame.js")
NODE_MAJOR = 18  # esbuild's minimum (js/package-lock.json)
INSTALL = (
    f"Install Node.js {NODE_MAJOR} or newer with npm (https://nodejs.org/, or on "
    "Debian/Ubuntu `apt-get install nodejs npm`) and build again."
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PlatformError(
            f"anyreach-listen's wheel ships its browser SDK, built from js/ with Node.js and "
            f"npm, and `{name}` is not on PATH. {INSTALL}"
        )
    return path


def _run(args: list[str], what: str) -> None:
    print(f"anyreach-listen: {what}: {' '.join(args)} (in js/)", flush=True)
    result = subprocess.run(args, cwd=JS, check=False)  # noqa: S603 - fixed commands
    if result.returncode != 0:
        raise ExecError(
            f"anyreach-listen: {what} failed in js/ (exit {result.returncode}); its output "
            "is above. `npm ci` installs the toolchain pinned in js/package-lock.json and "
            "needs the npm registry or a warm npm cache."
        )


def build_bundles() -> None:
    """``npm ci`` when node_modules is older than the lockfile (js/Makefile's rule), then
    esbuild; fails unless both bundles exist afterwards."""
    if not (JS / "package-lock.json").is_file():
        raise ExecError(
            f"anyreach-listen: {JS / 'package-lock.json'} is missing: the wheel's SDK is "
            "built from js/, which a checkout or the sdist carries."
        )
    node, npm = _tool("node"), _tool("npm")
    version = subprocess.run(  # noqa: S603 - fixed command
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major[1]) < NODE_MAJOR:
        raise PlatformError(
            f"anyreach-listen: Node.js {version or '(unknown version)'} at {node} is too old "
            f"to build the browser SDK. {INSTALL}"
        )
    stamp = JS / "node_modules" / ".installed"
    inputs = (JS / "package.json", JS / "package-lock.json")
    if not stamp.exists() or any(p.stat().st_mtime > stamp.stat().st_mtime for p in inputs):
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], "npm ci")
        stamp.touch()
    _run([node, "build.mjs", "shipped"], "bundling the SDK")
    missing = [name for name in BUNDLES if not (HERE / STATIC / name).is_file()]
    if missing:
        raise ExecError(f"anyreach-listen: the JS build did not write {', '.join(missing)}.")


class BuildPyWithBundles(build_py):
    """``build_py`` that builds the SDK's bundles first and checks they were copied."""

    def run(self) -> None:
        if self.editable_mode:
            # ``pip install -e .`` reads the working tree, whose bundles ``make js`` builds:
            # no hook, so the venv needs no Node.js.
            super().run()
            return
        build_bundles()
        # The package-data list may have been globbed before the bundles existed.
        self.__dict__.pop("data_files", None)
        super().run()
        copied = Path(self.build_lib, STATIC)
        missing = [name for name in BUNDLES if not (copied / name).is_file()]
        if missing:
            raise ExecError(f"anyreach-listen: {', '.join(missing)} did not reach the wheel.")


setup(cmdclass={"build_py": BuildPyWithBundles})
