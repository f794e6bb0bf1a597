"""Test-only URLconf: the real routes, except that the frame runs the fake adapter.

The fake adapter is built into js/dist-test/ (never into the static directory the
wheel ships) and only this URLconf serves it, so production cannot enable it.
Set ``LISTEN_TEST_REAL_FRAME=1`` to serve the production frame instead (the same
contract tests can then run against a real LiveKit server). The production pair
is also always mounted under ``/real/``.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path

from anyreach_listen import public
from tests.support.processes import ROOT

TEST_FRAME_FILE = ROOT / "js" / "dist-test" / "listen-frame-test.js"


def fake_frame_script(request: HttpRequest) -> HttpResponse:
    return public.serve_script(request, TEST_FRAME_FILE, max_age=0)


# The production SDK and frame (real livekit-client adapter) under a prefix: the
# SDK derives the frame's URL from its own, so /real/public/listen-sdk injects
# /real/public/listen.
real = [
    path("public/listen-sdk", public.listen_sdk),
    path("public/listen", public.listen_frame),
]
urlpatterns: list[URLPattern | URLResolver] = [path("real/", include(real))]
if os.environ.get("LISTEN_TEST_REAL_FRAME") != "1":
    urlpatterns += [
        path(
            "public/listen",
            public.listen_frame,
            {"script_url": "/test/listen-frame-test.js"},
            name="test-listen-frame",
        ),
        path("test/listen-frame-test.js", fake_frame_script),
    ]
urlpatterns += [path("", include("config.urls"))]
