"""config/settings.py: DEBUG only when asked for or unconfigured; secure defaults outside it.

Each case imports the settings in a fresh ``manage.py`` process with exactly the
environment given (nothing inherited), as a deployment would start it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import ROOT

# What a production deployment sets, and nothing else.
PRODUCTION_ENV = {
    "DATABASE_URL": "postgres://listen:a-db-password@db.internal:5432/listen",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "SECRET_KEY": "prod-secret-key-" + "q7Zx" * 12,
    "ALLOWED_HOSTS": "listen.example.com",
    "LIVEKIT_URL": "wss://livekit.example.com",
    "LIVEKIT_API_KEY": "APIprodkey",
    "LIVEKIT_API_SECRET": "a-livekit-api-secret-of-more-than-32-characters",
    "CREDENTIAL_HASH_KEY": "a-credential-hash-key-of-more-than-32-characters",
}

PRINT_SETTINGS = (
    "from django.conf import settings as s; "
    "print(s.DEBUG, s.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1])"
)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,  # exactly this environment: no DEBUG or SECRET_KEY leaks in from the runner
        capture_output=True,
        text=True,
        timeout=120,
    )


def shell(env: dict[str, str], code: str) -> str:
    """What ``code`` printed in ``manage.py shell`` under ``env``."""
    result = manage(env, "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def debug_and_engine(env: dict[str, str]) -> str:
    return shell(env, PRINT_SETTINGS)


def test_production_environment_passes_check_deploy_at_warning_level() -> None:
    result = manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no issues" in result.stdout


def test_production_environment_turns_on_https_hsts_and_secure_cookies() -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)"
    )
    printed = shell(PRODUCTION_ENV, code).split()
    assert printed == ["False", "True", "31536000", "True", "True", "None"]


def test_proxy_ssl_header_is_read_from_the_environment() -> None:
    env = {**PRODUCTION_ENV, "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    code = "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER)"
    assert shell(env, code) == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_no_environment_at_all_is_the_embedded_debug_setup() -> None:
    assert debug_and_engine({}) == "True sqlite3"


def test_a_secret_key_alone_turns_debug_off() -> None:
    assert debug_and_engine({"SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"]}) == "False sqlite3"


def test_allowed_hosts_alone_turns_debug_off_and_then_asks_for_a_secret_key() -> None:
    # DEBUG off needs a real SECRET_KEY: refusing to start proves DEBUG did not stay on.
    result = manage({"ALLOWED_HOSTS": "listen.example.com"}, "shell", "-c", PRINT_SETTINGS)
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


@pytest.mark.parametrize("name", ["REDIS_URL", "CREDENTIAL_HASH_KEY", "DATABASE_URL"])
def test_any_other_production_setting_turns_debug_off(name: str) -> None:
    env = {name: PRODUCTION_ENV[name], "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"]}
    assert debug_and_engine(env).startswith("False ")
    result = manage({name: PRODUCTION_ENV[name]}, "shell", "-c", PRINT_SETTINGS)
    assert result.returncode != 0 and "Set SECRET_KEY" in result.stderr


def test_debug_1_keeps_debug_on_with_production_settings() -> None:
    env = {**PRODUCTION_ENV, "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:"}
    assert debug_and_engine(env) == "True sqlite3"


def test_the_test_servers_environment_stays_in_debug() -> None:
    # tests/support/stack.py and tests/browser/conftest.py start daphne with a SQLite
    # file and their own LiveKit dev server, and `make demo` with LIVEKIT_URL: no deployment.
    env = {
        "DATABASE_URL": "sqlite:////tmp/anyreach-settings-test.sqlite3",
        "LIVEKIT_URL": "ws://127.0.0.1:17880",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "secret",
    }
    assert debug_and_engine(env) == "True sqlite3"
