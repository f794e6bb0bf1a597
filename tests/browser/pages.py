"""Embedding pages on another origin than the SDK host, for browser tests.

``EmbeddingSite`` is a tiny threaded HTTP server for pages registered by tests.
It listens on 127.0.0.1 and is addressed as ``http://localhost:PORT`` (the page
origin) while the SDK host runs on ``http://127.0.0.1:OTHER``, so every test is
cross-origin. ``other_origin`` is a third origin (same server, other host name)
for forged-window scenarios. Reusable by the end-to-end tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.processes import free_port

# Records every session event in window.listenTest; tests read it with page.evaluate.
HARNESS_JS = """
window.listenTest = {
  events: ["stateChange", "transcript", "agentDisconnected", "error", "ended",
           "audioPlaybackChanged"],
  sessions: [],
  create(options) {
    const session = AnyReach.listen(options);
    const rec = { session, log: [], connects: [], starts: [] };
    for (const name of this.events) {
      session.on(name, (payload) => rec.log.push([name, payload === undefined ? null : payload]));
    }
    this.sessions.push(rec);
    return this.sessions.length - 1;
  },
  connect(i) {
    const rec = this.sessions[i];
    const n = rec.connects.length;
    rec.connects.push("pending");
    const promise = rec.session.connect();
    promise.then(() => { rec.connects[n] = "resolved"; },
                 (e) => { rec.connects[n] = "rejected: " + e.message; });
    return promise;
  },
  log(i, name) {
    return this.sessions[i].log.filter((e) => !name || e[0] === name).map((e) => name ? e[1] : e);
  },
};
"""


def sdk_page(sdk_url: str, body: str = "", *, harness: bool = True, attrs: str = "") -> str:
    """An HTML page that loads the SDK synchronously (and the test harness); ``attrs``
    go on its script tag (``data-prewarm="off"``: no spare frame)."""
    harness_tag = f"<script>{HARNESS_JS}</script>" if harness else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>embedder</title>"
        f"<script src='{sdk_url}' {attrs}></script>{harness_tag}</head>"
        f"<body>{body}</body></html>"
    )


class EmbeddingSite:
    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.other_origin = f"http://127.0.0.1:{self.port}"
        # path -> (content type, body, Cache-Control)
        self._pages: dict[str, tuple[str, bytes, str]] = {}
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/favicon.ico":  # no 404 noise in the console
                    self.send_response(204)
                    self.end_headers()
                    return
                with site._lock:
                    found = site._pages.get(path)
                if found is None:
                    self.send_error(404)
                    return
                content_type, body, cache_control = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True

    def add(
        self,
        path: str,
        body: str,
        content_type: str = "text/html; charset=utf-8",
        cache_control: str = "no-store",
    ) -> str:
        """Serve ``body`` at ``path``; returns the URL on the embedding origin."""
        with self._lock:
            self._pages[path] = (content_type, body.encode(), cache_control)
        return self.origin + path

    def add_json(self, path: str, data: object) -> str:
        return self.add(path, json.dumps(data), "application/json")

    @contextmanager
    def running(self) -> Iterator[EmbeddingSite]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
