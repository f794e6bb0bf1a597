"""Settings of the load tests' servers: the project's, over loopback HTTP, with set limits.

``DJANGO_SETTINGS_MODULE=tests.support.load_settings``. Everything else
(database, channel layer, DEBUG, secrets) comes from ``config.settings`` and the
environment, so the load tests measure what the project ships. The
per-credential limit is ``LOAD_RATE_LIMIT`` requests per ``LOAD_RATE_WINDOW``
seconds (unset: no practical limit); the per-address limit on failed bearer
credentials is raised out of the way (the load sends only valid ones).
"""

import os
from typing import Any, cast

from config.settings import *  # noqa: F403
from config.settings import ANYREACH_LISTEN as _PROJECT_LISTEN

# cast: the project's dict holds strings only, this one ints too.
ANYREACH_LISTEN = cast(
    Any,
    {
        **_PROJECT_LISTEN,
        "RATE_LIMIT_REQUESTS": int(os.environ.get("LOAD_RATE_LIMIT", str(10**9))),
        "RATE_LIMIT_WINDOW": int(os.environ.get("LOAD_RATE_WINDOW", "60")),
        "FAILED_AUTH_LIMIT": 10**9,
    },
)

# Loopback HTTP: no redirect to HTTPS, cookies sent back over plain HTTP.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

# One INFO line per mint or webhook would load the terminal, not the app.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"anyreach_listen": {"handlers": ["console"], "level": "WARNING"}},
}
