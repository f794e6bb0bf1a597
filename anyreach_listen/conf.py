"""The app's settings: one ``ANYREACH_LISTEN`` dict, read lazily.

Every key has its default and its one-line doc below (``python -m anyreach_listen.conf``
prints the docs' table). Unknown keys are rejected so a typo never silently falls back
to a default. The cache is dropped whenever Django's
``setting_changed`` signal fires (tests use ``override_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTINGS_NAME = "ANYREACH_LISTEN"


@dataclass(frozen=True)
class Setting:
    default: Any
    doc: str  # one sentence for the settings table (docs/settings.md), with its check ids


SETTINGS: dict[str, Setting] = {
    "LIVEKIT_URL": Setting(
        "", "LiveKit server URL handed to browsers, `ws://` or `wss://` (E002, E003)."
    ),
    "LIVEKIT_API_URL": Setting(
        "", "LiveKit's server API (`http(s)://`); empty: derived from `LIVEKIT_URL`."
    ),
    "LIVEKIT_API_KEY": Setting("", "LiveKit API key (E002)."),
    "LIVEKIT_API_SECRET": Setting(
        "", "LiveKit API secret: 32 characters or more outside DEBUG (E002, E004)."
    ),
    # LiveKit refreshes a connected participant's token: this bounds only redemption.
    "LISTENER_TOKEN_TTL": Setting(300, "Seconds a listener token may be redeemed (E005)."),
    # A takeover's token: redeemed within it, renewed by its holder while they speak; one
    # not renewed in time ends the takeover (``manage.py sweep_listeners``).
    "TAKEOVER_TOKEN_TTL": Setting(
        300, "Seconds a takeover's token lasts unless its holder renews it, 30 to 600 (E020)."
    ),
    "RATE_LIMIT_REQUESTS": Setting(60, "Listener-token requests per credential per window (E006)."),
    "RATE_LIMIT_WINDOW": Setting(60, "That window, in seconds (E006)."),
    # Failed credentials and failed webhook/recorder signatures, per client address (an
    # IPv6 /64): over the limit, every request gets 429 before any lookup or check.
    "FAILED_AUTH_LIMIT": Setting(
        30, "Failed credentials or signatures per client address per window (E013)."
    ),
    "FAILED_AUTH_WINDOW": Setting(300, "That window, in seconds; then 429 until it ends (E013)."),
    # Nth entry from the right of X-Forwarded-For, so no client chooses its own address.
    "TRUSTED_PROXY_COUNT": Setting(
        0, "Reverse proxies in front of the app that append to X-Forwarded-For (E018)."
    ),
    "READ_RATE_LIMIT_REQUESTS": Setting(
        120, "Transcript, alert and rule reads per credential per window."
    ),
    "READ_RATE_LIMIT_WINDOW": Setting(60, "That window, in seconds."),
    "MAX_ALERT_RULES": Setting(
        200, "Active alert rules per organization (409 `too_many_rules` past it)."
    ),
    "MAX_SEGMENTS_PER_CALL": Setting(
        5000, "Transcript segments stored per call; later new ones are dropped and counted."
    ),
    "CREDENTIAL_HASH_KEY": Setting(
        "", "Key of the credential hash; empty: derived from `SECRET_KEY` (W001)."
    ),
    # ["*"]: any origin, as in the hosted product (the listener token is the capability).
    "EMBED_ORIGINS": Setting(
        ["*"], "Origins that may embed the hidden frame (CSP `frame-ancestors`) (E007)."
    ),
    "REMOTE_MINT": Setting(
        None,
        "Mint through a remote API: `{URL, API_KEY, TIMEOUT, RETRIES}`; None: in-process (E008).",
    ),
    "GROUP_PREFIX": Setting("anyreach-listen", "Prefix of the channel-layer group names."),
    "PAGE_SIZE": Setting(
        50, "Default page of `GET /core/conversations`; `?limit=` up to 200 (E011)."
    ),
    "AUTO_REGISTER": Setting(
        None,
        "Register rooms without metadata by name: `{ROOM_PREFIX, ORGANIZATION, TEAM}` (E012).",
    ),
    # The last words often arrive after the hang-up.
    "TRANSCRIPT_LATE_SECONDS": Setting(
        300, "Seconds after a call ended that segments are still accepted (E014)."
    ),
    "TRANSCRIPT_RETENTION_DAYS": Setting(
        30, "Days a transcript is kept after its call ended (`purge_transcripts`) (E015)."
    ),
    # Recorders are opt-in: a site that runs none asks LiveKit for no dispatch. Two per
    # room lose nothing when one dies (LiveKit notices a crash only after about 20 s).
    "RECORDER": Setting(
        None,
        "The transcript recorder: `{AGENT_NAME, PER_ROOM, PORTAL_URL}`; None: none (E016, E017).",
    ),
    # Seen missing on two sweeps this far apart: the call ends as failed (room_gone).
    "ROOM_GONE_GRACE": Setting(
        60, "Seconds a live call's LiveKit room may be missing before it ends (E019)."
    ),
}
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}


def markdown_table() -> str:
    """The settings table of docs/settings.md (a test keeps the page in step)."""
    rows = [f"| `{name}` | `{s.default!r}` | {s.doc} |" for name, s in SETTINGS.items()]
    return "\n".join(["| Key | Default | What it sets |", "|---|---|---|", *rows])


class ListenSettings:
    """Attribute access to the merged settings, computed on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        user = getattr(django_settings, SETTINGS_NAME, {}) or {}
        if not isinstance(user, dict):
            raise ImproperlyConfigured(f"{SETTINGS_NAME} must be a dict.")
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown {SETTINGS_NAME} keys: {', '.join(unknown)}. "
                f"Known keys: {', '.join(sorted(DEFAULTS))}."
            )
        return {**DEFAULTS, **user}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._cache is None:
            self._cache = self._load()
        try:
            return self._cache[name]
        except KeyError:
            raise AttributeError(f"{SETTINGS_NAME} has no setting {name!r}") from None

    @property
    def livekit_api_url(self) -> str:
        """HTTP(S) URL of LiveKit's server API, derived from the client URL."""
        explicit: str = self.LIVEKIT_API_URL
        if explicit:
            return explicit
        url: str = self.LIVEKIT_URL
        if url.startswith("wss://"):
            return "https://" + url.removeprefix("wss://")
        if url.startswith("ws://"):
            return "http://" + url.removeprefix("ws://")
        return url

    def clear(self) -> None:
        self._cache = None


listen_settings = ListenSettings()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTINGS_NAME:
        listen_settings.clear()


if __name__ == "__main__":
    print(markdown_table())
