"""The ANYREACH_LISTEN settings object (``conf.py``): defaults, lazy reads, unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from anyreach_listen import conf
from anyreach_listen.conf import DEFAULTS, listen_settings


def test_defaults_apply_and_overrides_win(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {"LIVEKIT_URL": "wss://lk.example.com"}
    assert listen_settings.LIVEKIT_URL == "wss://lk.example.com"
    assert listen_settings.LISTENER_TOKEN_TTL == DEFAULTS["LISTENER_TOKEN_TTL"]
    assert listen_settings.livekit_api_url == "https://lk.example.com"


def test_cache_is_cleared_when_the_setting_changes(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {"LISTENER_TOKEN_TTL": 60}
    assert listen_settings.LISTENER_TOKEN_TTL == 60
    settings.ANYREACH_LISTEN = {"LISTENER_TOKEN_TTL": 90}
    assert listen_settings.LISTENER_TOKEN_TTL == 90


def test_unknown_keys_are_rejected(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {"LIVEKIT_URLS": "ws://typo"}
    with pytest.raises(ImproperlyConfigured, match="LIVEKIT_URLS"):
        _ = listen_settings.LIVEKIT_URL


def test_unknown_attribute_is_an_attribute_error(settings: Any) -> None:
    with pytest.raises(AttributeError):
        _ = listen_settings.NOT_A_SETTING


def test_api_url_can_be_explicit(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {"LIVEKIT_URL": "ws://a:7880", "LIVEKIT_API_URL": "http://b:7880"}
    assert listen_settings.livekit_api_url == "http://b:7880"


def test_the_failed_credential_limit_has_documented_defaults(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {}
    assert (listen_settings.FAILED_AUTH_LIMIT, listen_settings.FAILED_AUTH_WINDOW) == (30, 300)
    settings.ANYREACH_LISTEN = {"FAILED_AUTH_LIMIT": 5, "FAILED_AUTH_WINDOW": 60}
    assert (listen_settings.FAILED_AUTH_LIMIT, listen_settings.FAILED_AUTH_WINDOW) == (5, 60)


def test_the_transcript_settings_have_documented_defaults(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {}
    assert listen_settings.TRANSCRIPT_LATE_SECONDS == 300
    assert listen_settings.TRANSCRIPT_RETENTION_DAYS == 30
    settings.ANYREACH_LISTEN = {"TRANSCRIPT_LATE_SECONDS": 0, "TRANSCRIPT_RETENTION_DAYS": 7}
    assert (listen_settings.TRANSCRIPT_LATE_SECONDS, listen_settings.TRANSCRIPT_RETENTION_DAYS) == (
        0,
        7,
    )


SETTINGS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_the_docs_settings_table_is_generated_from_the_settings() -> None:
    assert conf.markdown_table() in SETTINGS_PAGE.read_text()


def test_every_setting_has_a_default_and_a_one_line_doc() -> None:
    assert list(conf.DEFAULTS) == list(conf.SETTINGS)
    assert all(s.doc.strip() and "\n" not in s.doc for s in conf.SETTINGS.values())
    # A table row per key, nothing else (the page cannot hide a key).
    rows = conf.markdown_table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(conf.SETTINGS)
