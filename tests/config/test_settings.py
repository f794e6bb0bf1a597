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


# --- a real LiveKit is a deployment (issue 17, item 7) ------------------------------

# A LiveKit off this machine with a dev-sized secret, and nothing else.
REAL_LIVEKIT_ENV = {
    "LIVEKIT_URL": "wss://livekit.example.com",
    "LIVEKIT_API_KEY": "APIkey",
    "LIVEKIT_API_SECRET": "short",
}


@pytest.mark.parametrize(
    "url",
    [
        "wss://livekit.example.com",
        "ws://10.0.0.5:7880",
        "ws://livekit:7880",  # a compose service: another machine as far as we know
        "ws://0.0.0.0:7880",
        "ws://localhost.example.com:7880",
        "ws://[2001:db8::1]:7880",
    ],
)
def test_a_livekit_url_off_this_machine_turns_debug_off(url: str) -> None:
    # DEBUG off needs a real SECRET_KEY: refusing to start proves DEBUG did not stay on,
    # and the message says which setting made this a deployment.
    result = manage({**REAL_LIVEKIT_ENV, "LIVEKIT_URL": url}, "shell", "-c", PRINT_SETTINGS)
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr
    assert "DEBUG is off because LIVEKIT_URL is set" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:7880", "ws://127.8.9.10:7880", "ws://[::1]:7880", "ws://localhost:7880"],
)
def test_a_livekit_dev_server_on_loopback_stays_in_debug(url: str) -> None:
    env = {**REAL_LIVEKIT_ENV, "LIVEKIT_URL": url, "LIVEKIT_API_SECRET": "secret"}
    assert debug_and_engine(env) == "True sqlite3"


def test_a_real_livekit_with_a_short_secret_fails_the_checks() -> None:
    # The reported case: LIVEKIT_* set (SQLite), a 5-character secret accepted in DEBUG.
    env = {**REAL_LIVEKIT_ENV, "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"]}
    result = manage(env, "check")
    assert result.returncode != 0
    assert "anyreach_listen.E004" in result.stderr


def test_debug_1_keeps_debug_on_with_a_real_livekit() -> None:
    assert debug_and_engine({**REAL_LIVEKIT_ENV, "DEBUG": "1"}) == "True sqlite3"


def test_the_portal_refuses_to_serve_without_allowed_hosts_outside_debug() -> None:
    # Every request would be a 400 logged only to mail_admins: the ASGI app must not load.
    env = {
        **REAL_LIVEKIT_ENV,
        "LIVEKIT_API_SECRET": PRODUCTION_ENV["LIVEKIT_API_SECRET"],
        "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"],
    }
    result = manage(env, "shell", "-c", "import config.asgi")
    assert result.returncode != 0
    assert "Set ALLOWED_HOSTS" in result.stderr
    assert shell({**env, "ALLOWED_HOSTS": "listen.example.com"}, "import config.asgi") == ""


# --- the LiveKit secret's length, where daphne loads the app (no system checks) ----------

# A deployment but for the LiveKit secret: everything else the ASGI app needs to load.
SERVED_ENV = {
    **REAL_LIVEKIT_ENV,
    "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"],
    "ALLOWED_HOSTS": "listen.example.com",
}


def load_asgi(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return manage(env, "shell", "-c", "import config.asgi")


@pytest.mark.parametrize("secret", ["short", "s" * 31, None], ids=["5", "31", "unset"])
def test_the_portal_refuses_to_serve_a_short_livekit_secret_outside_debug(
    secret: str | None,
) -> None:
    # E004 is only a system check, which daphne never runs: the app itself must refuse.
    env = {k: v for k, v in SERVED_ENV.items() if k != "LIVEKIT_API_SECRET"}
    if secret is not None:
        env["LIVEKIT_API_SECRET"] = secret
    result = load_asgi(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"LIVEKIT_API_SECRET is {len(secret or '')} characters long" in result.stderr
    assert "at least 32" in result.stderr


def test_the_portal_serves_a_32_character_secret_outside_debug() -> None:
    assert shell({**SERVED_ENV, "LIVEKIT_API_SECRET": "s" * 32}, "import config.asgi") == ""


def test_debug_1_serves_a_short_livekit_secret() -> None:
    assert shell({**SERVED_ENV, "DEBUG": "1"}, "import config.asgi") == ""


@pytest.mark.parametrize(
    "env",
    [
        # tests/support/stack.py: a SQLite file and a LiveKit dev server (--dev: "secret").
        {
            "DATABASE_URL": "sqlite:////tmp/anyreach-settings-test.sqlite3",
            "LIVEKIT_URL": "ws://127.0.0.1:17880",
            "LIVEKIT_API_KEY": "devkey",
            "LIVEKIT_API_SECRET": "secret",
        },
        # `make demo` (run_demo): only its LiveKit dev server's URL, the rest defaults.
        {"LIVEKIT_URL": "ws://127.0.0.1:17880"},
    ],
    ids=["e2e-stack", "make-demo"],
)
def test_the_dev_servers_still_load_the_portal(env: dict[str, str]) -> None:
    assert shell(env, "import config.asgi") == ""
