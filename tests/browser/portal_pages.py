"""The portal served to Chromium from this test process: ``InProcessPortal``.

Every request of the page to ``ORIGIN`` is answered by Django's test client (the real
views, templates and middleware, the CSP header and CSRF checks included, on the test
database), static files by the staticfiles finders. The listen SDK is a stand-in whose
sessions never reach LiveKit, and the test plays the events websocket (``send``), so
it can say "someone joined" or "guidance delivered" and watch the page react.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from django.contrib.staticfiles import finders
from django.test import Client
from playwright.sync_api import Page, Route, WebSocketRoute

ORIGIN = "http://portal.test"
HOST = "portal.test"
# Whose sessions say they connected at once: no LiveKit (nor audio) behind the panel.
FAKE_SDK = """
window.AnyReach = {
  listen() {
    const handlers = {};
    const session = {
      on(name, handler) { handlers[name] = handler; return session; },
      mute() {}, unmute() {}, startAudio() { return Promise.resolve(); },
      connect() {
        if (handlers.stateChange) handlers.stateChange("connected");
        return Promise.resolve();
      },
      end() { return Promise.resolve(); },
    };
    return session;
  },
};
"""
TOKEN_PATH = re.compile(r"^/listen/conversations/[^/]+/token$")
NOT_FORWARDED = {"host", "cookie", "content-length", "connection"}

# Every page reports what its Content-Security-Policy refused (as tests/e2e's portal does).
# And counts the event stream's (re)openings.
RECORDER = """
window.cspReported = 0;
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspReported += 1;
  window.reportCspViolation(`${location.pathname}: ${e.effectiveDirective} refused ` +
    `${e.blockedURI || "inline"} (${e.sourceFile || "?"}:${e.lineNumber}) ${e.sample}`);
});
window.streamOpened = 0;
document.addEventListener("anyreach:stream-open", () => { window.streamOpened += 1; });
"""


class InProcessPortal:
    def __init__(self, page: Page, client: Client) -> None:
        self.page = page
        self.client = client  # signed in by the test; its cookies are the browser's session
        self.sockets: list[WebSocketRoute] = []
        self.csp_violations: list[str] = []
        page.expose_function("reportCspViolation", lambda text: self.csp_violations.append(text))
        page.add_init_script(RECORDER)
        page.route(f"{ORIGIN}/**", self._serve)
        page.route_web_socket(re.compile(r".*/ws/listen/events/$"), self._socket)

    def _socket(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws)  # not connected to a server: the test plays it

    def goto(self, path: str) -> None:
        self.page.goto(ORIGIN + path)

    def _serve(self, route: Route) -> None:
        request = route.request
        url = urlsplit(request.url)
        if url.path.startswith("/static/"):
            found = finders.find(url.path.removeprefix("/static/"))
            if found is None:
                route.fulfill(status=404)
            else:
                route.fulfill(path=str(found))
            return
        if url.path == "/public/listen-sdk":
            route.fulfill(body=FAKE_SDK, content_type="text/javascript")
            return
        if TOKEN_PATH.match(url.path):
            route.fulfill(json={"url": "ws://livekit.invalid", "token": "t"})
            return
        headers = {
            name: value
            for name, value in request.all_headers().items()
            if name.lower() not in NOT_FORWARDED and not name.startswith(":")
        }
        headers["host"] = HOST
        response = self.client.generic(
            request.method,
            f"{url.path}?{url.query}" if url.query else url.path,
            data=request.post_data_buffer or b"",
            content_type=headers.pop("content-type", "application/octet-stream"),
            headers=headers,
        )
        route.fulfill(
            status=response.status_code,
            headers={name: value for name, value in response.items()},
            body=response.content,
        )

    def stream(self) -> WebSocketRoute:
        """The page's events websocket, once it connected."""
        self.page.wait_for_function("() => window.streamOpened > 0")
        return self.sockets[-1]

    def send(self, message: dict[str, Any]) -> None:
        """A message of the events consumer, as the page's socket gets it."""
        self.stream().send(json.dumps(message, default=str))
