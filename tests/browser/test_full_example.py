"""The contract's Full example, unchanged except for the script host, runs cleanly."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Observed, SdkHost, fake, listen_frame, make_token
from tests.browser.pages import EmbeddingSite

pytestmark = pytest.mark.browser

# Verbatim from the contract (spec/listen-sdk.md, "Full example"); only
# https://app.anyreach.ai is replaced by the SDK host.
FULL_EXAMPLE = """\
<script src="https://app.anyreach.ai/public/listen-sdk" async></script>
<button id="play">Listen</button>

<script>
  async function startListening(conversationId) {
    // Fetch the token from your backend, which holds the API credential.
    const { url, token } = await fetch(
      `/api/listener-token?conversation=${conversationId}`
    ).then((r) => r.json());

    const session = AnyReach.listen({ url, token });

    session.on("stateChange", (state) => {
      console.log("state:", state);
    });
    session.on("transcript", ({ role, text, final }) => {
      if (final) console.log(`${role}: ${text}`);
    });
    session.on("agentDisconnected", () => {
      console.log("agent left");
    });
    session.on("error", ({ message }) => {
      console.error("listen error:", message);
    });
    session.on("ended", () => {
      console.log("session ended");
    });

    await session.connect();

    // Autoplay policy: resume audio from a user gesture.
    document
      .getElementById("play")
      .addEventListener("click", () => session.startAudio());
  }
</script>
"""


def test_full_example_runs_without_console_errors(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    html = FULL_EXAMPLE.replace("https://app.anyreach.ai", sdk_host.base)
    assert html != FULL_EXAMPLE
    # The embedder's backend: it would mint with its API key; here it hands out a token.
    site.add_json("/api/listener-token", {"url": sdk_host.fake_url("auto"), "token": make_token()})
    page.goto(site.add("/full-example.html", html))
    page.wait_for_function("() => window.AnyReach")
    with page.expect_console_message(lambda m: m.text == "state: connected"):
        page.evaluate("() => startListening('conv-1')")
    page.click("#play")
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('startAudio')", polling=50)
    fake(frame, "(f) => f.segments('agent', true, [{id: 's1', text: 'Hi there', final: false}])")
    fake(frame, "(f) => f.segments('agent', true, [{id: 's1', text: 'Hi there.', final: true}])")
    fake(frame, "(f) => f.participantLeft('agent', true)")
    with page.expect_console_message(lambda m: m.text == "session ended"):
        fake(frame, "(f) => f.close('ROOM_DELETED')")
    page.wait_for_function("() => document.querySelectorAll('iframe').length === 0")
    assert observed.console == [
        "state: connecting",
        "state: connected",
        "agent: Hi there.",
        "agent left",
        "state: disconnected",
        "session ended",
    ]
    assert observed.console_errors == [] and observed.page_errors == []
