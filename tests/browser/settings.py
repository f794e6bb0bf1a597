"""Settings of the daphne server the browser tests start (DJANGO_SETTINGS_MODULE).

The portal's settings plus two test-only things: the test URLconf (which serves
the frame with the fake LiveKit adapter) and an EMBED_ORIGINS override from the
environment, for the "embedding origin not allowed" scenario.
"""

from __future__ import annotations

import json
import os

from config.settings import *  # noqa: F403
from config.settings import ANYREACH_LISTEN

ROOT_URLCONF = "tests.browser.urls"

ANYREACH_LISTEN = {
    **ANYREACH_LISTEN,
    "EMBED_ORIGINS": json.loads(os.environ.get("LISTEN_TEST_EMBED_ORIGINS", '["*"]')),
}
