"""Settings of the portal project (the Django project; its apps are ``portal`` and ``demo``).

With nothing set it runs locally (SQLite, in-memory channel layer, local LiveKit dev
server, DEBUG on); a deployment configures it through environment variables, listed in
docs/settings.md. Any production setting turns DEBUG off unless DEBUG=1 says otherwise,
so half a production configuration never runs with development defaults; outside DEBUG
the secure defaults apply and a missing SECRET_KEY stops every process at start.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


DATABASE_URL = os.environ.get("DATABASE_URL", "")
# Settings only a deployment gives. A SQLite DATABASE_URL and a loopback LIVEKIT_URL
# are not among them: `make demo` and the test servers point the embedded setup at
# their own LiveKit dev server and database file. A LIVEKIT_URL off this machine is a
# real LiveKit, whose secret must not be the dev server's.
PRODUCTION_SETTINGS = ("SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "CREDENTIAL_HASH_KEY")


def _is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine: 127.0.0.0/8, ::1 or localhost."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:  # a malformed URL (e.g. a bad port) is no dev server either
        return False
    if not host:
        return False
    if host.rstrip(".") == "localhost":  # hostname is lower-cased already
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only the machine's own resolves here for sure
        return False


def _production_settings_given() -> list[str]:
    """The environment variables that make this process part of a deployment."""
    given = [name for name in PRODUCTION_SETTINGS if os.environ.get(name)]
    if DATABASE_URL and not DATABASE_URL.startswith("sqlite"):
        given.append("DATABASE_URL")
    livekit_url = os.environ.get("LIVEKIT_URL", "")
    if livekit_url and not _is_loopback_url(livekit_url):
        given.append("LIVEKIT_URL")
    return given


# DEBUG is on when asked for (DEBUG=1) or when nothing says this is a deployment:
# half a production configuration (a SECRET_KEY alone, a real LiveKit alone) must
# not serve debug pages nor accept the dev server's LiveKit secret.
_DEPLOYMENT_SIGNS = _production_settings_given()
DEBUG = _env_bool("DEBUG", not _DEPLOYMENT_SIGNS)
# Said in the errors below, so an operator sees why DEBUG is off.
_WHY_NOT_DEBUG = (
    f"DEBUG is off because {', '.join(_DEPLOYMENT_SIGNS)} "
    f"{'is' if len(_DEPLOYMENT_SIGNS) == 1 else 'are'} set"
    if _DEPLOYMENT_SIGNS and "DEBUG" not in os.environ
    else "DEBUG is off"
)


def _local_dev_secret_key() -> str:
    """A random key made once per checkout (var/, gitignored) and shared by its processes."""
    path = BASE_DIR / "var" / "dev-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"Set SECRET_KEY (or DEBUG=1 for local development): {_WHY_NOT_DEBUG}."
        )
    SECRET_KEY = _local_dev_secret_key()

ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h] or (
    ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    # Before the admin, so the portal's registration/ templates win over the admin's.
    "portal",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "anyreach_listen",
    "demo",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: it turns a locked-out sign-in into the lockout page. Under ASGI
    # the chain runs in one thread hop with the view (config/asgi_handler.py).
    "axes.middleware.AxesMiddleware",
]

# Every page's Content-Security-Policy (the hidden frame sends its own, stricter
# one, which the middleware leaves alone). Scripts only from this origin or with
# the page's nonce (csp_nonce; {% listen_assets %} and {% htmx_script %} add it):
# no inline script or handler runs. 'self' also covers the page's own ws(s)
# origin, which the event stream's websocket connects to; the listen frame
# is served by this origin too (frame-src).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# The portal pages that offer "Take over" to the person viewing them (the conversation
# page of a live call, the dashboard with its listen dialog: portal/takeover.py's
# allow_takeover) publish the supervisor's microphone with a LiveKit connection of their
# own: their policy adds the LiveKit server's ws(s) and http(s) origins (LIVEKIT_URL) to
# connect-src, and they send this Permissions-Policy. Every other page is unchanged.
TAKEOVER_PERMISSIONS_POLICY = "microphone=(self)"

# Sign-in throttling (django-axes, portal/login_throttle.py): failures are counted
# per account and, separately, per client address, each against its own limit,
# for AXES_COOLOFF_TIME; reaching either pauses sign-in with the portal's page.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out attempt
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMITS = {
    "username": int(os.environ.get("LOGIN_FAILURES_PER_ACCOUNT", "5")),
    # An address is often shared (one office behind NAT): a higher limit.
    "ip_address": int(os.environ.get("LOGIN_FAILURES_PER_ADDRESS", "20")),
}
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "portal.login_throttle.PerParameterLimitHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMITS["username"]
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_CALLABLE = "portal.login_throttle.lockout_response"
# The app's one rule for the client's address (ANYREACH_LISTEN's TRUSTED_PROXY_COUNT):
# behind proxies the client's own address is counted, not the proxy's (which would
# pause everyone's sign-in at once), and never one the client wrote.
AXES_CLIENT_IP_CALLABLE = "anyreach_listen.access.client_address.client_address"
# A success does not wipe the failures: it would also wipe the address's count,
# letting someone with one account reset it between guesses at others.
AXES_RESET_ON_SUCCESS = False

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "portal.context_processors.navigation",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# SQLite (the embedded default) takes concurrent writers: WAL lets readers run
# beside the writer, IMMEDIATE takes the write lock when a transaction starts (so
# it waits for it, up to the timeout, instead of failing "database is locked"
# midway), and synchronous=NORMAL skips the fsync per commit that WAL makes safe.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
# PostgreSQL under daphne: requests run in 32 kept threads and, past them, a thread
# each (config/asgi_handler.py), so a connection per thread (CONN_MAX_AGE) grows
# until the server refuses. Django's
# psycopg pool shares DB_POOL_SIZE connections per worker process instead.
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))

DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL)
    if DATABASE_URL
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, its connections kept from one request for the next and the
    # process's writers queued on a lock (config/sqlite3/base.py says why).
    DATABASES["default"]["ENGINE"] = "config.sqlite3"
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    # Tests: an in-memory database, as Django gives SQLite. Said outright, because
    # pytest-django knows SQLite by Django's engine name only: under pytest-xdist it
    # would name this engine's test database a file ("test_<path>_gw0").
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": DB_POOL_SIZE, "timeout": 10}
    }
else:
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL or SQLite database.")

REDIS_URL = os.environ.get("REDIS_URL", "")
# redis-py's async pool refuses a 101st connection (MaxConnectionsError); a worker
# with hundreds of open portal websockets joins and leaves groups concurrently.
REDIS_MAX_CONNECTIONS = int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "max_connections": REDIS_MAX_CONNECTIONS}]},
        }
    }
    # A shared cache keeps the API rate limit consistent across workers.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# HTTPS outside DEBUG: plain HTTP is redirected, and browsers remember for a
# year (HSTS) to never try it again. A deployment that serves plain HTTP on
# purpose (a loopback benchmark) says SECURE_SSL_REDIRECT=0 and SECURE_HSTS_SECONDS=0.
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", True)
# Behind a proxy that terminates TLS, Django sees plain HTTP; the proxy's header
# (e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto) says the browser used HTTPS.
# Only set it when the proxy always sets or strips that header itself.
_proxy_ssl_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)

RECORDERS_PER_ROOM = int(os.environ.get("RECORDER_PER_ROOM", "2"))

ANYREACH_LISTEN: dict[str, Any] = {
    "LIVEKIT_URL": os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"),
    "LIVEKIT_API_KEY": os.environ.get("LIVEKIT_API_KEY", "devkey" if DEBUG else ""),
    "LIVEKIT_API_SECRET": os.environ.get("LIVEKIT_API_SECRET", "secret" if DEBUG else ""),
    "CREDENTIAL_HASH_KEY": os.environ.get("CREDENTIAL_HASH_KEY", ""),
    # Proxies in front of the portal that append to X-Forwarded-For (docs/operations/
    # production.md, "The client's address behind a proxy").
    "TRUSTED_PROXY_COUNT": int(os.environ.get("TRUSTED_PROXY_COUNT", "0")),
    # Transcript recorders per live room (manage.py run_recorder workers): 2 lose
    # nothing when a recorder dies (docs/operations/recorder.md); 0 dispatches none.
    # The portal's URL, where run_recorder workers deliver what they hear (the
    # portal records it: workers need no database).
    "RECORDER": {
        "AGENT_NAME": "anyreach-recorder",
        "PER_ROOM": RECORDERS_PER_ROOM,
        "PORTAL_URL": os.environ.get("ANYREACH_PORTAL_URL", ""),
    }
    if RECORDERS_PER_ROOM
    else None,
    # Seconds a live call's room may be missing from LiveKit before sweep_listeners
    # ends the call as failed (room_gone; docs/operations/processes.md).
    "ROOM_GONE_GRACE": int(os.environ.get("ROOM_GONE_GRACE", "60")),
}

# One handler, on the root logger, so each line is written once: daphne configures the
# root logger itself (logging.basicConfig) before Django applies this, and a handler of
# our own on "anyreach_listen" besides printed every line twice (once plain, once with
# daphne's timestamp). Replacing the root's handlers ends that; the app's loggers and
# Django's propagate to it. Other libraries: warnings and errors only.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "line"},
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "anyreach_listen": {"level": "INFO"},
        # Django's default config gives "django" a console handler of its own (in DEBUG)
        # while it also propagates to the root: a second copy of each line.
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
    },
}
