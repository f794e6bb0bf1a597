"""A local LiveKit server for development and tests: finding the binary, its config.

``run_demo`` (which runs the binary itself), ``manage.py livekit_dev`` and the test
fixtures all build the command line here, so the demo and the tests run the server the
same way: ``--dev`` (keys
``devkey`` / ``secret``), HTTP, ICE/TCP and ICE/UDP on loopback, and a webhook
config pointing at the app.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# Where ``make livekit-server`` installs the binary (relative to the project root).
PROJECT_BINARY = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "livekit-server"
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"  # noqa: S105 - the fixed, public key pair of `livekit-server --dev`


def find_livekit_server() -> str:
    """The project's ``.tools/bin/livekit-server``, else ``livekit-server`` on PATH."""
    if PROJECT_BINARY.is_file():
        return str(PROJECT_BINARY)
    found = shutil.which("livekit-server")
    if found:
        return found
    raise ImproperlyConfigured(
        "No livekit-server found: run `make livekit-server` (builds it into .tools/bin with Go) "
        "or put livekit-server on PATH."
    )


@dataclass(frozen=True)
class DevServerConfig:
    port: int = 7880
    tcp_port: int = 7881
    udp_port: int = 7882
    host: str = "127.0.0.1"
    webhook_urls: list[str] = field(default_factory=list)
    api_key: str = DEV_API_KEY

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config_body(self) -> str:
        """The server's YAML config; JSON is valid YAML, so it is written as JSON."""
        config: dict[str, object] = {
            "port": self.port,
            "bind_addresses": [self.host],
            "rtc": {
                "tcp_port": self.tcp_port,
                "udp_port": self.udp_port,
                "use_external_ip": False,
                "node_ip": self.host,
                "enable_loopback_candidate": True,
                # Without this the UDP mux binds every interface's address.
                "ips": {"includes": [f"{self.host}/32"]},
            },
        }
        if self.webhook_urls:
            config["webhook"] = {"api_key": self.api_key, "urls": list(self.webhook_urls)}
        return json.dumps(config)

    def args(self, binary: str | None = None) -> list[str]:
        return [binary or find_livekit_server(), "--dev", "--config-body", self.config_body()]
