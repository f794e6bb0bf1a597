"""The system checks (``checks.py``): one test per check id, every message with a hint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.checks import WARNING

from anyreach_listen.checks import (
    check_channel_layer,
    check_settings,
    check_sqlite,
    sqlite_shortfalls,
)
from anyreach_listen.conf import DEFAULTS
from tests.support.world import TEST_LISTEN_SETTINGS

RECORDER = {"AGENT_NAME": "rec", "PER_ROOM": 2}


def ids(settings: Any, debug: bool = False, **overrides: Any) -> set[str]:
    settings.DEBUG = debug
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "CREDENTIAL_HASH_KEY": "k" * 40,
        **overrides,
    }
    return {str(message.id) for message in check_settings(None)}


def test_valid_configuration_has_no_messages(settings: Any) -> None:
    assert ids(settings) == set()


@pytest.mark.parametrize(
    ("overrides", "debug", "expected"),
    [
        ({"UNKNOWN": 1}, False, "anyreach_listen.E001"),
        ({"LIVEKIT_API_KEY": ""}, False, "anyreach_listen.E002"),
        ({"LIVEKIT_URL": ""}, False, "anyreach_listen.E002"),
        ({"LIVEKIT_URL": "http://lk:7880"}, False, "anyreach_listen.E003"),
        ({"LIVEKIT_API_SECRET": "secret"}, False, "anyreach_listen.E004"),
        ({"LIVEKIT_API_SECRET": "5char"}, False, "anyreach_listen.E004"),
        ({"LIVEKIT_API_SECRET": "s" * 31}, False, "anyreach_listen.E004"),
        ({"LISTENER_TOKEN_TTL": 0}, False, "anyreach_listen.E005"),
        ({"LISTENER_TOKEN_TTL": "300"}, False, "anyreach_listen.E005"),
        ({"TAKEOVER_TOKEN_TTL": 29}, False, "anyreach_listen.E020"),
        ({"TAKEOVER_TOKEN_TTL": 601}, False, "anyreach_listen.E020"),
        ({"TAKEOVER_TOKEN_TTL": "300"}, False, "anyreach_listen.E020"),
        ({"TAKEOVER_TOKEN_TTL": True}, False, "anyreach_listen.E020"),
        ({"RATE_LIMIT_REQUESTS": 0}, False, "anyreach_listen.E006"),
        ({"RATE_LIMIT_WINDOW": True}, False, "anyreach_listen.E006"),
        ({"FAILED_AUTH_LIMIT": 0}, False, "anyreach_listen.E013"),
        ({"FAILED_AUTH_LIMIT": "30"}, False, "anyreach_listen.E013"),
        ({"FAILED_AUTH_WINDOW": -1}, False, "anyreach_listen.E013"),
        ({"FAILED_AUTH_WINDOW": False}, False, "anyreach_listen.E013"),
        ({"FAILED_AUTH_WINDOW": 1.5}, False, "anyreach_listen.E013"),
        ({"TRUSTED_PROXY_COUNT": -1}, False, "anyreach_listen.E018"),
        ({"TRUSTED_PROXY_COUNT": "1"}, False, "anyreach_listen.E018"),
        ({"TRUSTED_PROXY_COUNT": True}, False, "anyreach_listen.E018"),
        ({"EMBED_ORIGINS": ["crm.example.com"]}, False, "anyreach_listen.E007"),
        ({"EMBED_ORIGINS": []}, False, "anyreach_listen.E007"),
        ({"REMOTE_MINT": {"URL": "https://x"}}, False, "anyreach_listen.E008"),
        ({"PAGE_SIZE": 0}, False, "anyreach_listen.E011"),
        ({"PAGE_SIZE": 201}, False, "anyreach_listen.E011"),
        ({"AUTO_REGISTER": {"ROOM_PREFIX": "call-"}}, False, "anyreach_listen.E012"),
        (
            {"AUTO_REGISTER": {"ROOM_PREFIX": "", "ORGANIZATION": "x"}},
            False,
            "anyreach_listen.E012",
        ),
        ({"TRANSCRIPT_LATE_SECONDS": -1}, False, "anyreach_listen.E014"),
        ({"TRANSCRIPT_LATE_SECONDS": 86401}, False, "anyreach_listen.E014"),
        ({"TRANSCRIPT_LATE_SECONDS": "300"}, False, "anyreach_listen.E014"),
        ({"TRANSCRIPT_LATE_SECONDS": True}, False, "anyreach_listen.E014"),
        ({"TRANSCRIPT_RETENTION_DAYS": 0}, False, "anyreach_listen.E015"),
        ({"TRANSCRIPT_RETENTION_DAYS": 30.5}, False, "anyreach_listen.E015"),
        ({"TRANSCRIPT_RETENTION_DAYS": None}, False, "anyreach_listen.E015"),
        ({"RECORDER": {"AGENT_NAME": "", "PER_ROOM": 2}}, False, "anyreach_listen.E016"),
        ({"RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": 0}}, False, "anyreach_listen.E016"),
        ({"RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": True}}, False, "anyreach_listen.E016"),
        ({"RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": 6}}, False, "anyreach_listen.E016"),
        ({"RECORDER": {"AGENT_NAME": "rec"}}, False, "anyreach_listen.E016"),
        ({"RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": 2, "X": 1}}, False, "anyreach_listen.E016"),
        ({"RECORDER": "anyreach-recorder"}, False, "anyreach_listen.E016"),
        ({"RECORDER": {**RECORDER, "PORTAL_URL": "portal.example"}}, False, "anyreach_listen.E017"),
        ({"RECORDER": {**RECORDER, "PORTAL_URL": "ftp://portal"}}, False, "anyreach_listen.E017"),
        ({"RECORDER": {**RECORDER, "PORTAL_URL": None}}, False, "anyreach_listen.E017"),
        ({"ROOM_GONE_GRACE": 0}, False, "anyreach_listen.E019"),
        ({"ROOM_GONE_GRACE": 86401}, False, "anyreach_listen.E019"),
        ({"ROOM_GONE_GRACE": 1.5}, False, "anyreach_listen.E019"),
        ({"ROOM_GONE_GRACE": True}, False, "anyreach_listen.E019"),
        ({"CREDENTIAL_HASH_KEY": ""}, False, "anyreach_listen.W001"),
    ],
)
def test_each_check_id(
    settings: Any, overrides: dict[str, Any], debug: bool, expected: str
) -> None:
    assert expected in ids(settings, debug, **overrides)


def test_a_secret_of_32_characters_is_long_enough_outside_debug(settings: Any) -> None:
    assert ids(settings, False, LIVEKIT_API_SECRET="s" * 32) == set()


def test_dev_secret_and_derived_hash_key_are_tolerated_in_debug(settings: Any) -> None:
    assert ids(settings, True, LIVEKIT_API_SECRET="secret", CREDENTIAL_HASH_KEY="") == set()


def test_a_takeover_token_lives_30_seconds_to_10_minutes(settings: Any) -> None:
    assert DEFAULTS["TAKEOVER_TOKEN_TTL"] == 300
    for ttl in (30, 600):
        assert ids(settings, True, TAKEOVER_TOKEN_TTL=ttl) == set()


def test_recorders_are_off_by_default() -> None:
    # Opt-in: a site that runs no run_recorder asks LiveKit for no dispatch.
    assert DEFAULTS["RECORDER"] is None
    assert DEFAULTS["ROOM_GONE_GRACE"] == 60


def test_recorder_may_be_turned_off_or_set(settings: Any) -> None:
    assert ids(settings, True, RECORDER=None) == set()
    assert ids(settings, True, RECORDER={"AGENT_NAME": "rec-eu", "PER_ROOM": 1}) == set()
    for url in ("", "http://127.0.0.1:8000", "https://portal.example/"):
        assert ids(settings, True, RECORDER={**RECORDER, "PORTAL_URL": url}) == set()


def test_check_messages_have_hints(settings: Any) -> None:
    settings.DEBUG = False
    settings.ANYREACH_LISTEN = {"LIVEKIT_URL": "http://x", "LISTENER_TOKEN_TTL": -1}
    messages = check_settings(None)
    assert messages and all(m.hint for m in messages)


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, set()),
        ({}, {"anyreach_listen.E009"}),
        (
            {"default": {"BACKEND": "no_such_package.core.RedisChannelLayer"}},
            {"anyreach_listen.E010"},
        ),
    ],
)
def test_channel_layer_backend_must_import(
    settings: Any, layers: dict[str, Any], expected: set[str]
) -> None:
    settings.CHANNEL_LAYERS = layers
    assert {str(m.id) for m in check_channel_layer(None)} == expected


SQLITE = "django.db.backends.sqlite3"
SAFE_SQLITE = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def sqlite_warnings(
    monkeypatch: pytest.MonkeyPatch, engine: str, options: Any, name: str = "db.sqlite3"
) -> list[Any]:
    # A new entry, not the test database's (whose connection keeps its own dict).
    database = {"ENGINE": engine, "NAME": name}
    if options is not None:
        database["OPTIONS"] = options
    monkeypatch.setitem(django_settings.DATABASES, "default", database)
    return check_sqlite(None)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (None, "transaction_mode"),  # startproject's: no OPTIONS at all
        ({}, "journal_mode=WAL"),
        ({**SAFE_SQLITE, "init_command": "PRAGMA synchronous=NORMAL;"}, "journal_mode=WAL"),
        ({**SAFE_SQLITE, "init_command": "PRAGMA journal_mode=DELETE;"}, "journal_mode=WAL"),
        ({**SAFE_SQLITE, "transaction_mode": "DEFERRED"}, "transaction_mode"),
        ({k: v for k, v in SAFE_SQLITE.items() if k != "transaction_mode"}, "transaction_mode"),
        ({k: v for k, v in SAFE_SQLITE.items() if k != "timeout"}, '"timeout"'),  # Python's 5 s
        ({**SAFE_SQLITE, "timeout": 5}, '"timeout"'),
        ({**SAFE_SQLITE, "timeout": "20"}, '"timeout"'),
    ],
)
def test_w002_sqlite_without_wal_immediate_and_a_busy_timeout_warns(
    monkeypatch: pytest.MonkeyPatch, options: Any, named: str
) -> None:
    messages = sqlite_warnings(monkeypatch, SQLITE, options)
    assert [str(m.id) for m in messages] == ["anyreach_listen.W002"]
    assert messages[0].level == WARNING
    assert named in messages[0].msg and "'default'" in messages[0].msg
    assert "'transaction_mode': 'IMMEDIATE'" in messages[0].hint  # what to paste


@pytest.mark.parametrize(
    ("engine", "options"),
    [
        (SQLITE, SAFE_SQLITE),
        (SQLITE, {**SAFE_SQLITE, "transaction_mode": "exclusive", "timeout": 10.0}),
        (SQLITE, {**SAFE_SQLITE, "init_command": "pragma JOURNAL_MODE = 'wal'"}),
        ("django.db.backends.postgresql", None),
    ],
)
def test_w002_is_quiet_with_the_options_or_another_database(
    monkeypatch: pytest.MonkeyPatch, engine: str, options: Any
) -> None:
    assert sqlite_warnings(monkeypatch, engine, options) == []


@pytest.mark.parametrize("name", [":memory:", "file:tests?mode=memory&cache=shared"])
def test_w002_leaves_an_in_memory_database_alone(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    assert sqlite_warnings(monkeypatch, SQLITE, None, name) == []
    assert sqlite_warnings(monkeypatch, SQLITE, None, "/srv/site/db.sqlite3") != []


def test_our_own_settings_pass_w002() -> None:
    # config/settings.py, which the tests run on (SQLite unless DATABASE_URL says otherwise).
    assert check_sqlite(None) == []
    # The test database is in memory, which W002 leaves alone: judge the file it stands for.
    on_disk = {**django_settings.DATABASES["default"], "NAME": "/var/lib/app/db.sqlite3"}
    assert sqlite_shortfalls(on_disk) == []


def test_the_readme_settings_default_to_the_dev_server_and_pass_w002(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # The "settings.py: append" block (docs/integrators/django.md), run on what startproject writes.
    page = Path(__file__).resolve().parents[1] / "docs" / "integrators" / "django.md"
    readme = page.read_text()
    block = re.search(r"```python\n(# settings\.py: append\n.*?)```", readme, flags=re.S)
    assert block is not None
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    startproject: dict[str, Any] = {
        "DEBUG": True,
        "BASE_DIR": Path("/site"),
        "INSTALLED_APPS": ["django.contrib.admin"],
        "MIDDLEWARE": [],
        "DATABASES": {"default": {"ENGINE": SQLITE, "NAME": Path("/site/db.sqlite3")}},
    }
    exec(block.group(1), startproject)  # noqa: S102 - our own README
    listen = startproject["ANYREACH_LISTEN"]
    assert listen == {
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "secret",
    }
    assert sqlite_shortfalls(startproject["DATABASES"]["default"]) == []
    # In DEBUG the dev values pass; with DEBUG off the dev secret is refused, saying so.
    settings.ANYREACH_LISTEN = {**listen, "CREDENTIAL_HASH_KEY": "k" * 40}
    settings.DEBUG = True
    assert check_settings(None) == []
    settings.DEBUG = False
    (refusal,) = check_settings(None)
    assert refusal.id == "anyreach_listen.E004" and "dev server" in refusal.msg


def run_registered() -> list[str]:
    """Our checks as Django's registry holds them (not the ``check_settings`` aggregate)."""
    from django.core.checks.registry import registry

    ours = [c for c in registry.get_checks() if c.__module__ == "anyreach_listen.checks"]
    return [str(m.id) for check in ours for m in check(app_configs=None, databases=None)]


def test_manage_py_check_runs_each_concern_once(settings: Any) -> None:
    settings.DEBUG = False
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "CREDENTIAL_HASH_KEY": "",
        "PAGE_SIZE": 0,
        "LISTENER_TOKEN_TTL": 1,
    }
    found = sorted(run_registered())
    assert found == ["anyreach_listen.E005", "anyreach_listen.E011", "anyreach_listen.W001"]


def test_unknown_keys_silence_the_other_settings_checks(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "PAGE_SIZ": 10, "PAGE_SIZE": 0}
    assert run_registered() == ["anyreach_listen.E001"]
