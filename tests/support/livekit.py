"""A real ``livekit-server --dev`` for tests: free loopback ports, readiness, cleanup."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from django.test import Client
from google.protobuf.json_format import MessageToJson
from livekit import api

from anyreach_listen.conf import listen_settings
from demo.devserver import DEV_API_KEY, DEV_API_SECRET, DevServerConfig
from tests.support.processes import free_port, http_ok, wait_until


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


class LiveKitProcess:
    """The server's process: a fault test kills it (SIGKILL, as a crash would) and starts
    it again on the same ports."""

    def __init__(self, config: DevServerConfig, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.config.args(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: http_ok(self.config.http_url), timeout=timeout, what="livekit-server"
            )
        except TimeoutError as exc:
            log_text = self.log_path.read_text(errors="replace")[-4000:]
            raise TimeoutError(f"{exc}\n--- livekit log ---\n{log_text}") from None

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within 10 s."""
        if not self._signal(signal.SIGTERM, wait=10):
            self.kill()

    def _signal(self, signum: int, wait: float = 10) -> bool:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True


@dataclass(frozen=True)
class LiveKitServer:
    config: DevServerConfig
    log_path: Path
    api_key: str = DEV_API_KEY
    api_secret: str = DEV_API_SECRET
    process: LiveKitProcess | None = None

    @property
    def url(self) -> str:
        return self.config.ws_url

    @property
    def http_url(self) -> str:
        return self.config.http_url

    def env(self) -> dict[str, str]:
        """Environment for app processes that talk to this server."""
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
        }

    def token(
        self,
        room: str,
        identity: str,
        *,
        kind: Literal["standard", "agent"] | None = None,
        ttl: dt.timedelta = dt.timedelta(minutes=10),
        **grants: object,
    ) -> str:
        video = api.VideoGrants(room_join=True, room=room, **grants)  # type: ignore[arg-type]
        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_ttl(ttl)
            .with_grants(video)
        )
        if kind is not None:
            token = token.with_kind(kind)
        return token.to_jwt()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def livekit_server(log_dir: Path, webhook_urls: Sequence[str] = ()) -> Iterator[LiveKitServer]:
    """Start ``livekit-server --dev`` on free loopback ports; stop it (and its group) on exit."""
    config = DevServerConfig(
        port=free_port(),
        tcp_port=free_port(),
        udp_port=free_udp_port(),
        webhook_urls=list(webhook_urls),
    )
    log_path = log_dir / f"livekit-{config.port}.log"
    process = LiveKitProcess(config, log_path)
    try:
        process.start()
        yield LiveKitServer(config, log_path, process=process)
    finally:
        process.stop()


def sign_webhook(body: str, api_key: str, api_secret: str) -> str:
    """The Authorization header LiveKit sends with a webhook body."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return api.AccessToken(api_key, api_secret).with_sha256(digest).to_jwt()


def deliver_webhook(client: Client, body: str, auth: str | None = None) -> Any:
    """POST ``body`` to the app's webhook through ``client``, signed like LiveKit signs it."""
    if auth is None:
        auth = sign_webhook(
            body, listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
        )
    return client.post(
        "/livekit/webhook",
        data=body,
        content_type="application/webhook+json",
        HTTP_AUTHORIZATION=auth,
    )


def webhook_event(
    name: str,
    room: str,
    *,
    identity: str = "",
    kind: api.ParticipantInfo.Kind = api.ParticipantInfo.Kind.STANDARD,
    created_at: int | None = None,
    event_id: str | None = None,
    room_metadata: str = "",
) -> str:
    """A LiveKit webhook body as the server would send it."""
    message = api.WebhookEvent(
        event=name,
        id=event_id or f"EV_{uuid.uuid4().hex[:12]}",
        created_at=created_at or int(time.time()),
        room=api.Room(name=room, sid=f"RM_{room}", metadata=room_metadata),
    )
    if identity:
        message.participant.CopyFrom(api.ParticipantInfo(identity=identity, kind=kind))
    return MessageToJson(message)
