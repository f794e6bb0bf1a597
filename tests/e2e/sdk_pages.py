"""The embedder's side of the SDK end-to-end tests: a page on another origin, a
"backend" endpoint that hands it a listener grant, and a test-only WebRTC hook.

The page loads the real SDK from the stack's host (``http://127.0.0.1:PORT``)
while it is itself served from ``http://localhost:OTHER`` by ``EmbeddingSite``.
The grant (``url`` and ``token``) reaches the page the way the contract asks:
from the embedder's backend (here a JSON endpoint on the embedding site), never
in a URL the page is loaded with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import BrowserContext, Frame, Page

from tests.browser.pages import EmbeddingSite, sdk_page
from tests.support.processes import wait_until

# Runs in every document of the context, the cross-origin listen frame included,
# before its scripts: remembers every RTCPeerConnection so a test can read its stats.
# No production code knows about it.
RTC_HOOK_JS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Object.prototype.hasOwnProperty.call(window, "__testPeers")) return;
  const peers = [];
  Object.defineProperty(window, "__testPeers", { value: peers });
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      peers.push(this);
    }
  }
  window.RTCPeerConnection = Recorded;
})();
"""

# Sums inbound audio RTP over every live peer connection of the frame.
INBOUND_AUDIO_JS = """
async () => {
  const result = { bytes: 0, packets: 0, level: 0, energy: 0, streams: 0, peers: 0 };
  for (const pc of window.__testPeers || []) {
    if (pc.connectionState === "closed") continue;
    result.peers += 1;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
      result.streams += 1;
      result.bytes += s.bytesReceived || 0;
      result.packets += s.packetsReceived || 0;
      result.level = Math.max(result.level, s.audioLevel || 0);
      result.energy += s.totalAudioEnergy || 0;
    });
  }
  return result;
}
"""

AUDIO_ELEMENTS_JS = """
() => [...document.querySelectorAll("audio")].map((a) => ({
  muted: a.muted, volume: a.volume, paused: a.paused, hasStream: !!a.srcObject,
}))
"""

# Creates session 0 with the grant from the embedder's backend, records when
# things happened, and connects. The button starts audio from a user gesture.
START_JS = """
async (grantPath) => {
  const { url, token } = await fetch(grantPath).then((r) => r.json());
  const i = listenTest.create({ url, token });
  const session = listenTest.sessions[i].session;
  const t0 = performance.now();
  window.timing = { firstTranscript: null, connected: null, ended: null };
  session.on("transcript", () => {
    const t = window.timing;
    if (t.firstTranscript === null) t.firstTranscript = performance.now() - t0;
  });
  session.on("ended", () => { window.timing.ended = performance.now() - t0; });
  document.getElementById("play").onclick = () => session.startAudio();
  listenTest.connect(i).then(
    () => { window.timing.connected = performance.now() - t0; },
    () => {},
  );
  return i;
}
"""


# Creates session 0 with the grant from the embedder's backend and leaves it idle.
CREATE_JS = """
async (grantPath) => {
  const { url, token } = await fetch(grantPath).then((r) => r.json());
  return listenTest.create({ url, token });
}
"""


@dataclass(frozen=True)
class InboundAudio:
    bytes: int
    packets: int
    level: float
    energy: float
    streams: int
    peers: int


def open_listener_page(
    context: BrowserContext,
    site: EmbeddingSite,
    sdk_url: str,
    grant: dict[str, Any],
    *,
    connect: bool = True,
) -> Page:
    """A page on the embedding origin that fetches ``grant`` from its backend, calls
    ``AnyReach.listen()`` and (unless ``connect`` is false) ``connect()``."""
    nonce = secrets.token_hex(8)
    grant_path = f"/backend/listener-token/{nonce}"
    site.add_json(grant_path, {"url": grant["url"], "token": grant["token"]})
    page = context.new_page()
    page.goto(
        site.add(f"/listen-{nonce}.html", sdk_page(sdk_url, "<button id='play'>Listen</button>"))
    )
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    page.evaluate(START_JS if connect else CREATE_JS, grant_path)
    return page


def log(page: Page, name: str | None = None) -> list[Any]:
    """Session 0's events: ``[name, payload]`` pairs, or payloads of ``name``."""
    result: list[Any] = page.evaluate("(name) => listenTest.log(0, name)", name)
    return result


def connects(page: Page) -> list[str]:
    result: list[str] = page.evaluate("() => listenTest.sessions[0].connects")
    return result


def listen_frame(page: Page, timeout: float = 15) -> Frame:
    """The SDK's hidden frame (cross-origin, so looked up among the page's frames)."""

    def find() -> Frame | None:
        # Through the element, not page.frames: each call is a round trip, which
        # also lets Playwright's sync API take in the frame's navigation events.
        handle = page.locator('iframe[src$="/public/listen"]').first.element_handle()
        frame = handle.content_frame()
        if frame and frame.url.endswith("/public/listen") and not frame.is_detached():
            return frame
        return None

    return wait_until(find, timeout=timeout, what="the listen frame")


def inbound_audio(frame: Frame) -> InboundAudio:
    return InboundAudio(**frame.evaluate(INBOUND_AUDIO_JS))


def audio_elements(frame: Frame) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = frame.evaluate(AUDIO_ELEMENTS_JS)
    return result
