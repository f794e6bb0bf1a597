"""Settings of the benchmarks' servers: the portal project's, with limits raised for load.

``DJANGO_SETTINGS_MODULE=bench.settings``. Everything else (database, channel
layer, DEBUG, secrets) comes from ``config.settings`` and the same environment
variables, so whatever the project changes there is what gets measured.
"""

from typing import Any, cast

from config.settings import *  # noqa: F403
from config.settings import ANYREACH_LISTEN as _PROJECT_LISTEN

# The per-credential limit (60 a minute) would answer 429 within a second of load.
# cast: the project's dict holds strings only, this one an int too.
ANYREACH_LISTEN = cast(
    Any, {**_PROJECT_LISTEN, "RATE_LIMIT_REQUESTS": 10**9, "FAILED_AUTH_LIMIT": 10**9}
)

# The project's URLs plus B1's Django floor (a bare view on the same middleware).
ROOT_URLCONF = "bench.urls"

# Loopback HTTP only: no redirect to HTTPS, and clients send the session and CSRF
# cookies back.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

# One INFO line per webhook or mint would measure the terminal, not the app.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"anyreach_listen": {"handlers": ["console"], "level": "WARNING"}},
}
