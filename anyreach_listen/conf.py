"""The app's settings: one ``ANYREACH_LISTEN`` dict, read lazily.

Every key has a documented default below. Unknown keys are rejected so a typo
never silently falls back to a default. The cache is dropped whenever Django's
``setting_changed`` signal fires (tests use ``override_settings``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTINGS_NAME = "ANYREACH_LISTEN"

DEFAULTS: dict[str, Any] = {
    # LiveKit server URL handed to browsers (ws:// or wss://). The server-side
    # API URL is derived from it (http:// or https://) unless LIVEKIT_API_URL is set.
    "LIVEKIT_URL": "",
    "LIVEKIT_API_URL": "",
    "LIVEKIT_API_KEY": "",
    "LIVEKIT_API_SECRET": "",
    # Lifetime of a listener token in seconds. LiveKit refreshes the token of a
    # connected participant, so this only bounds how long a token can be redeemed.
    "LISTENER_TOKEN_TTL": 300,
    # Per-credential rate limit of the listener-token API: requests per window.
    "RATE_LIMIT_REQUESTS": 60,
    "RATE_LIMIT_WINDOW": 60,
    # Failed bearer credentials (unknown, malformed, revoked, expired), and failed
    # signatures of the webhook and the recorder intake, per client address
    # (client_address.py; an IPv6 /64) per window in seconds. An address over the
    # limit gets 429 on every API request, webhook and recorder delivery until the
    # window ends, before any lookup or signature check.
    "FAILED_AUTH_LIMIT": 30,
    "FAILED_AUTH_WINDOW": 300,
    # Reverse proxies in front of the app that append to X-Forwarded-For. 0: the
    # client's address is REMOTE_ADDR. N: the Nth entry from the right of
    # X-Forwarded-For (the one the outermost trusted proxy wrote), so no client can
    # choose its own address (client_address.py). Count only proxies that append, and
    # let clients reach the app only through them.
    "TRUSTED_PROXY_COUNT": 0,
    # Per-credential limit of the transcript, alert and rule reads (GET), apart from
    # the listener-token limit: requests per window in seconds.
    "READ_RATE_LIMIT_REQUESTS": 120,
    "READ_RATE_LIMIT_WINDOW": 60,
    # Active alert rules an organization may have (409 too_many_rules past it).
    "MAX_ALERT_RULES": 200,
    # Transcript segments stored per call; later ones are dropped, counted on the
    # conversation (dropped_segments) and logged once.
    "MAX_SEGMENTS_PER_CALL": 5000,
    # Key for the keyed hash of API keys and PATs. Empty: derived from SECRET_KEY.
    "CREDENTIAL_HASH_KEY": "",
    # Origins that may embed the hidden frame (CSP frame-ancestors). ["*"]: any
    # origin, as in the hosted product (the listener token is the capability).
    "EMBED_ORIGINS": ["*"],
    # Mint through a remote Anyreach-compatible API instead of in-process:
    # {"URL": "https://api.example", "API_KEY": "ak_...", "TIMEOUT": 5, "RETRIES": 2}.
    "REMOTE_MINT": None,
    # Channel-layer group prefix for conversation events.
    "GROUP_PREFIX": "anyreach-listen",
    # Default page size of GET /core/conversations (a request's ?limit= goes up to 200).
    "PAGE_SIZE": 50,
    # Register rooms without "anyreach" metadata by name prefix:
    # {"ROOM_PREFIX": "call-", "ORGANIZATION": "<uuid>", "TEAM": "<uuid>" or None}.
    "AUTO_REGISTER": None,
    # Seconds after a conversation ended during which transcript segments may still be
    # pushed (the last words often arrive after the hang-up); later pushes get 409.
    "TRANSCRIPT_LATE_SECONDS": 300,
    # Days a transcript is kept after its conversation ended (manage.py purge_transcripts).
    "TRANSCRIPT_RETENTION_DAYS": 30,
    # The transcript recorder (manage.py run_recorder, a LiveKit agent worker):
    # {"AGENT_NAME": the name workers register under and rooms are dispatched to,
    #  "PER_ROOM": recorders per live room, each in another worker process,
    #  "PORTAL_URL" (optional): where the workers deliver what they hear, the URL
    #  this app's views are served at (its POST /livekit/recorder); the portal
    #  records it, so workers need no database. run_recorder --portal-url overrides it}.
    # Two lose nothing when one dies (LiveKit notices a crashed one only after about
    # 20 s); run at least PER_ROOM workers. None: no recorder is dispatched (a platform
    # that pushes its transcripts, and the default: recorders are opt-in, so a site that
    # runs none asks LiveKit for no dispatch). Typical: {"AGENT_NAME": "anyreach-recorder",
    # "PER_ROOM": 2}.
    "RECORDER": None,
    # Seconds a live call's LiveKit room may be missing before the sweep
    # (manage.py sweep_listeners, reconciliation.py) ends the call as failed
    # (room_gone): the room must be seen missing on two sweeps this far apart.
    "ROOM_GONE_GRACE": 60,
}


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
