"""The system checks (``checks.py``): one test per check id, every message with a hint."""

from __future__ import annotations

from typing import Any

import pytest

from anyreach_listen.checks import check_channel_layer, check_settings
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
