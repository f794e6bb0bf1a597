"""System checks: one per concern of the settings, the channel layer and the database.

Ids are stable: tests and docs refer to them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.utils.module_loading import import_string

from anyreach_listen.access.origins import normalize_origin
from anyreach_listen.conf import DEFAULTS, SETTINGS_NAME, listen_settings

MIN_SECRET_LENGTH = 32
DEV_SECRET = "secret"  # noqa: S105 - the public secret of `livekit-server --dev`
MAX_RECORDERS_PER_ROOM = 5


def secret_too_short(secret: str) -> bool:
    """The LiveKit secret rule (E004, and the host's ``asgi.py``, which runs no checks):
    outside DEBUG the API secret has at least MIN_SECRET_LENGTH characters; DEBUG
    tolerates the LiveKit dev server's ``secret``."""
    return len(secret) < MIN_SECRET_LENGTH and not settings.DEBUG


SettingsCheck = Callable[[dict[str, Any]], Iterator[CheckMessage]]
SETTINGS_CHECKS: list[SettingsCheck] = []


def _read_settings() -> dict[str, Any] | ImproperlyConfigured:
    try:
        return {name: getattr(listen_settings, name) for name in DEFAULTS}
    except ImproperlyConfigured as exc:
        return exc


@register()
def check_keys(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: unknown keys; the other settings checks stay quiet until it is fixed."""
    conf = _read_settings()
    if isinstance(conf, ImproperlyConfigured):
        hint = f"Fix the keys of the {SETTINGS_NAME} setting."
        return [Error(str(conf), hint=hint, id="anyreach_listen.E001")]
    return []


def settings_check(check: SettingsCheck) -> SettingsCheck:
    """Registers one concern's check of the settings (read once, valid keys)."""

    def registered(
        app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
    ) -> list[CheckMessage]:
        conf = _read_settings()
        return [] if isinstance(conf, ImproperlyConfigured) else list(check(conf))

    register()(registered)
    SETTINGS_CHECKS.append(check)
    return check


def check_settings(app_configs: Sequence[AppConfig] | None = None) -> list[CheckMessage]:
    """Every settings check at once, as ``manage.py check`` runs them."""
    conf = _read_settings()
    if isinstance(conf, ImproperlyConfigured):
        return check_keys(app_configs)
    return [message for check in SETTINGS_CHECKS for message in check(conf)]


def _int_in(value: object, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    )


@settings_check
def check_livekit(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E002 configured, E003 a WebSocket URL, E004 a secret long enough outside DEBUG."""
    url, secret = conf["LIVEKIT_URL"], conf["LIVEKIT_API_SECRET"]
    if not (url and conf["LIVEKIT_API_KEY"] and secret):
        yield Error(
            "LiveKit is not configured: listener tokens cannot be minted.",
            hint=f"Set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET in {SETTINGS_NAME}.",
            id="anyreach_listen.E002",
        )
    if url and urlsplit(url).scheme not in ("ws", "wss"):
        yield Error(
            f"LIVEKIT_URL {url!r} is not a ws:// or wss:// URL.",
            hint="Browsers connect to LiveKit over WebSocket, e.g. wss://livekit.example.com.",
            id="anyreach_listen.E003",
        )
    if secret and secret_too_short(secret):  # an empty one is E002's
        yield Error(
            f"LIVEKIT_API_SECRET is shorter than {MIN_SECRET_LENGTH} characters"
            + (" (the LiveKit dev server's 'secret')" if secret == DEV_SECRET else "")
            + " and DEBUG is off.",
            hint="Short secrets can be brute-forced from a token; LiveKit's own tooling "
            "generates longer ones. Only the dev server's 'secret' is tolerated in DEBUG. "
            "Set your LiveKit server's key and secret (the settings in "
            "docs/integrators/django.md read LIVEKIT_API_KEY and LIVEKIT_API_SECRET from the "
            "environment).",
            id="anyreach_listen.E004",
        )


@settings_check
def check_token_ttl(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E005: listener tokens live seconds to a day."""
    ttl = conf["LISTENER_TOKEN_TTL"]
    if not _int_in(ttl, 10, 86400):
        yield Error(
            f"LISTENER_TOKEN_TTL must be an integer between 10 and 86400 seconds, not {ttl!r}.",
            hint="Keep it short (minutes): a connected listener is refreshed by LiveKit.",
            id="anyreach_listen.E005",
        )


@settings_check
def check_takeover_token_ttl(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E020: a takeover's token lives 30 seconds to 10 minutes."""
    ttl = conf["TAKEOVER_TOKEN_TTL"]
    if not _int_in(ttl, 30, 600):
        yield Error(
            f"TAKEOVER_TOKEN_TTL must be an integer from 30 to 600 seconds, not {ttl!r}.",
            hint="The default is 300: the holder's page renews it every third of it, and a "
            "takeover not renewed in time ends (the agent gets the call back).",
            id="anyreach_listen.E020",
        )


@settings_check
def check_rate_limits(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E006 the request limit, E013 the failed-credential limit: positive integers."""
    for name in ("RATE_LIMIT_REQUESTS", "RATE_LIMIT_WINDOW"):
        if not _int_in(conf[name], 1):
            yield Error(
                f"{name} must be a positive integer, not {conf[name]!r}.",
                hint="The defaults are 60 requests per 60 seconds.",
                id="anyreach_listen.E006",
            )
    for name in ("FAILED_AUTH_LIMIT", "FAILED_AUTH_WINDOW"):
        if not _int_in(conf[name], 1):
            yield Error(
                f"{name} must be a positive integer, not {conf[name]!r}.",
                hint="The defaults are 30 failed credentials per client address per 300 seconds.",
                id="anyreach_listen.E013",
            )


@settings_check
def check_trusted_proxies(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E018: the number of proxies whose X-Forwarded-For entry is trusted."""
    proxies = conf["TRUSTED_PROXY_COUNT"]
    if not _int_in(proxies, 0):
        yield Error(
            f"TRUSTED_PROXY_COUNT must be an integer of 0 or more, not {proxies!r}.",
            hint="The number of reverse proxies in front of the app that append to "
            "X-Forwarded-For; 0 (the default) trusts no header. Until it is fixed, no "
            "header is trusted.",
            id="anyreach_listen.E018",
        )


@settings_check
def check_embed_origins(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E007: where the SDK may be embedded."""
    origins = conf["EMBED_ORIGINS"]
    if (
        not isinstance(origins, list)
        or not origins
        or not all(o == "*" or (isinstance(o, str) and normalize_origin(o)) for o in origins)
    ):
        yield Error(
            f"EMBED_ORIGINS must be ['*'] or a list of origins, not {origins!r}.",
            hint="Origins look like https://crm.example.com (scheme, host, optional port).",
            id="anyreach_listen.E007",
        )


@settings_check
def check_remote_mint(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E008: minting through a remote API needs its URL and key."""
    remote = conf["REMOTE_MINT"]
    if remote is not None and not (
        isinstance(remote, dict) and remote.get("URL") and remote.get("API_KEY")
    ):
        yield Error(
            "REMOTE_MINT must be None or a dict with URL and API_KEY.",
            hint="Example: {'URL': 'https://api.anyreach.example', 'API_KEY': 'ak_…'}.",
            id="anyreach_listen.E008",
        )


@settings_check
def check_page_size(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E011: the API's default page."""
    page_size = conf["PAGE_SIZE"]
    if not _int_in(page_size, 1, 200):
        yield Error(
            f"PAGE_SIZE must be an integer from 1 to 200, not {page_size!r}.",
            hint="The default is 50; a request may ask for up to 200 with ?limit=.",
            id="anyreach_listen.E011",
        )


@settings_check
def check_auto_register(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E012: the fallback that registers calls from room names."""
    rule = conf["AUTO_REGISTER"]
    if rule is not None and not (
        isinstance(rule, dict)
        and isinstance(rule.get("ROOM_PREFIX"), str)
        and rule["ROOM_PREFIX"]
        and rule.get("ORGANIZATION")
        and set(rule) <= {"ROOM_PREFIX", "ORGANIZATION", "TEAM"}
    ):
        yield Error(
            "AUTO_REGISTER must be None or a dict with ROOM_PREFIX, ORGANIZATION and "
            "optionally TEAM.",
            hint="Example: {'ROOM_PREFIX': 'call-', 'ORGANIZATION': '<organization uuid>'}.",
            id="anyreach_listen.E012",
        )


@settings_check
def check_transcripts(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E014 how late segments may arrive, E015 how long transcripts are kept."""
    late = conf["TRANSCRIPT_LATE_SECONDS"]
    if not _int_in(late, 0, 86400):
        yield Error(
            f"TRANSCRIPT_LATE_SECONDS must be an integer from 0 to 86400, not {late!r}.",
            hint="The default is 300: segments may arrive up to five minutes after a call ended.",
            id="anyreach_listen.E014",
        )
    retention = conf["TRANSCRIPT_RETENTION_DAYS"]
    if not _int_in(retention, 1):
        yield Error(
            f"TRANSCRIPT_RETENTION_DAYS must be a positive integer, not {retention!r}.",
            hint="The default is 30 days; manage.py purge_transcripts deletes older ones.",
            id="anyreach_listen.E015",
        )


def _recorder_shape_ok(recorder: object) -> bool:
    return (
        isinstance(recorder, dict)
        and {"AGENT_NAME", "PER_ROOM"} <= set(recorder) <= {"AGENT_NAME", "PER_ROOM", "PORTAL_URL"}
        and isinstance(recorder["AGENT_NAME"], str)
        and recorder["AGENT_NAME"].strip() == recorder["AGENT_NAME"] != ""
        and _int_in(recorder["PER_ROOM"], 1, MAX_RECORDERS_PER_ROOM)
    )


@settings_check
def check_recorder(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E016 the recorder's shape, E017 the portal URL recorders deliver to."""
    recorder = conf["RECORDER"]
    if recorder is None:
        return
    if not _recorder_shape_ok(recorder):
        yield Error(
            "RECORDER must be None or a dict with AGENT_NAME (a non-empty name), "
            f"PER_ROOM (an integer from 1 to {MAX_RECORDERS_PER_ROOM}) and optionally "
            "PORTAL_URL.",
            hint="None (the default) dispatches no recorder. To record transcripts: "
            "{'AGENT_NAME': 'anyreach-recorder', 'PER_ROOM': 2}: with two or more "
            "`manage.py run_recorder` processes no segment is lost when a recorder dies.",
            id="anyreach_listen.E016",
        )
    elif not _http_url_or_empty(recorder.get("PORTAL_URL", "")):
        yield Error(
            f"RECORDER['PORTAL_URL'] {recorder['PORTAL_URL']!r} is not an http:// or https:// URL.",
            hint="The URL where recorders reach this app's views (its webhook is at "
            "<PORTAL_URL>/livekit/webhook), e.g. https://portal.example; empty: "
            "`manage.py run_recorder --portal-url` gives it.",
            id="anyreach_listen.E017",
        )


@settings_check
def check_room_gone_grace(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """E019: how long a missing room is given before its call ends."""
    grace = conf["ROOM_GONE_GRACE"]
    if not _int_in(grace, 1, 86400):
        yield Error(
            f"ROOM_GONE_GRACE must be an integer from 1 to 86400 seconds, not {grace!r}.",
            hint="The default is 60: a live call whose LiveKit room is seen missing on two "
            "sweeps that far apart ends as failed (room_gone).",
            id="anyreach_listen.E019",
        )


@settings_check
def check_credential_hash_key(conf: dict[str, Any]) -> Iterator[CheckMessage]:
    """W001: credential hashes keyed by their own key, not SECRET_KEY."""
    if not conf["CREDENTIAL_HASH_KEY"] and not settings.DEBUG:
        yield Warning(
            "CREDENTIAL_HASH_KEY is empty: credential hashes are keyed by SECRET_KEY.",
            hint="Rotating SECRET_KEY would then invalidate every API key and PAT. Set a "
            "dedicated CREDENTIAL_HASH_KEY.",
            id="anyreach_listen.W001",
        )


def _http_url_or_empty(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if not value:
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@register()
def check_channel_layer(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The event stream needs a channel layer whose backend can be imported.

    Without one, ``check`` would pass and the websocket would answer 500.
    """
    backend = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default", {}).get("BACKEND")
    if not backend:
        return [
            Error(
                "CHANNEL_LAYERS has no 'default' layer: the live event stream cannot work.",
                hint="Use channels.layers.InMemoryChannelLayer for one process, or "
                "channels_redis.core.RedisChannelLayer (pip install 'anyreach-listen[redis]').",
                id="anyreach_listen.E009",
            )
        ]
    try:
        import_string(backend)
    except ImportError as exc:
        return [
            Error(
                f"The channel layer backend {backend!r} cannot be imported: {exc}.",
                hint="For channels_redis install the extra: pip install 'anyreach-listen[redis]'.",
                id="anyreach_listen.E010",
            )
        ]
    return []


# SQLite under concurrent writers (webhooks, mints, transcript pushes, the sweep): WAL
# lets readers run beside the writer; IMMEDIATE takes the write lock when a transaction
# begins, so a writer waits for it (up to the timeout) instead of failing "database is
# locked" midway; the busy timeout is that wait (Python's default is 5 s, and writers
# queue behind each other). What docs/integrators/django.md and config/settings.py use:
SQLITE_OPTIONS: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
MIN_SQLITE_TIMEOUT = 10
_SQLITE_ENGINES = ("sqlite3", "spatialite")
_WAL = re.compile(r"\bjournal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


def sqlite_shortfalls(database: Mapping[str, object]) -> list[str]:
    """What a SQLite ``DATABASES`` entry lacks of ``SQLITE_OPTIONS``' safety (W002);
    empty for another engine, an in-memory database (one connection's, as in tests) or a
    complete one."""
    if str(database.get("ENGINE", "")).rsplit(".", 1)[-1] not in _SQLITE_ENGINES:
        return []
    name = str(database.get("NAME", ""))
    if name == ":memory:" or "mode=memory" in name:
        return []
    given = database.get("OPTIONS")
    options: Mapping[str, object] = given if isinstance(given, Mapping) else {}
    missing = []
    if str(options.get("transaction_mode") or "").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
        missing.append('"transaction_mode": "IMMEDIATE"')
    timeout = options.get("timeout")
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or timeout < MIN_SQLITE_TIMEOUT
    ):
        missing.append(f'"timeout" of at least {MIN_SQLITE_TIMEOUT} (seconds)')
    if not _WAL.search(str(options.get("init_command") or "")):
        missing.append('"PRAGMA journal_mode=WAL" in "init_command"')
    return missing


@register()
def check_sqlite(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Django's SQLite defaults answer two webhooks a few milliseconds apart with a 500
    (``database is locked``): warn when the app's database runs on them."""
    models = apps.get_app_config("anyreach_listen").get_models()
    aliases = sorted({router.db_for_write(model) for model in models})
    messages: list[CheckMessage] = []
    for alias in aliases:
        missing = sqlite_shortfalls(settings.DATABASES.get(alias, {}))
        if missing:
            messages.append(
                Warning(
                    f"The database {alias!r} is SQLite without {', '.join(missing)} in its "
                    'OPTIONS: concurrent webhooks and token requests fail with "database is '
                    'locked" (HTTP 500).',
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS'] = {SQLITE_OPTIONS!r} "
                    "(Django 5.1 or later), or use PostgreSQL.",
                    id="anyreach_listen.W002",
                )
            )
    return messages
