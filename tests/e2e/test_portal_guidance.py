"""Presence and guidance on the conversation page, in real Chromium against the real stack
(daphne, livekit-server --dev and its webhooks, a recorder, a simulated call whose agent
obeys guidance).

A supervisor on the page of a live call sees a listener join and leave under "Listening
now", tells the agent what to say through the guidance box, reads its delivery, and
sees the guidance and then the agent's line with the said words in the transcript; a
viewer's page of the same call shows neither presence nor the box nor the guidance. No
page runs into its Content-Security-Policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.test_portal_browser import (  # the portal's browser context and sign-in
    CSP_RECORDER,
    TIMEOUT_MS,
    csp_violations,  # noqa: F401  (a fixture the portal fixture uses)
    portal,  # noqa: F401  (fixture)
    probe_policy,
    shoot,
    sign_in,
)
from tests.support.guidance import LoopThread, api_key, connected_listener
from tests.support.processes import wait_until
from tests.support.stack import Stack, recorders, simulated_call

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    # The dev server's secret ("secret") is short; production's is checked (E002).
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

CALLER_LABEL = "+1 555 0149"
CALL_ARGS = ("--team", "Support", "--loop", "--caller-label", CALLER_LABEL)


@pytest.fixture
def viewer_violations() -> list[str]:
    return []


@pytest.fixture
def viewer_context(
    browser: Browser, stack: Stack, viewer_violations: list[str]
) -> Iterator[BrowserContext]:
    """A second signed-in person's browser, recording its CSP violations like ``portal``."""
    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    context.expose_function("reportCspViolation", lambda text: viewer_violations.append(text))
    context.add_init_script(CSP_RECORDER)
    yield context
    context.close()
    assert viewer_violations == []


def _panel(conversation_id: str) -> str:
    return f'[data-arl-panel][data-conversation="{conversation_id}"]'


def test_supervisor_sees_presence_and_has_the_agent_say_it_a_viewer_sees_neither(
    portal: BrowserContext,  # noqa: F811
    viewer_context: BrowserContext,
    stack: Stack,
    csp_violations: list[str],  # noqa: F811
) -> None:
    name = f"wallboard-{uuid.uuid4().hex[:6]}"
    key = api_key(stack, name, "conversations:read_sensitive")
    text = f"I have refunded order {uuid.uuid4().int % 90000 + 10000} in full."
    with (
        recorders(stack, 1) as pool,
        simulated_call(stack, *CALL_ARGS) as call,
        LoopThread() as loop,
    ):
        wait_until(lambda: pool.recording(call.room_name), timeout=60, what="the recorder")
        page = sign_in(portal, stack, "supervisor")
        page.goto(f"/conversations/{call.conversation_id}/")
        presence = page.locator("#presence")
        expect(presence).to_contain_text("Listening now:")
        expect(presence).not_to_contain_text(name)

        # A listener joins (an API listen session): the page names it, without a reload.
        grant = stack.mint(call.conversation_id, key)
        assert grant.status_code == 200, grant.text
        listener = loop.run(connected_listener(grant.json()["url"], grant.json()["token"]))
        try:
            expect(presence).to_contain_text(name)

            form = page.get_by_role("form", name="Guidance to the agent")
            form.get_by_label("What to tell the agent").fill(text)
            form.get_by_role("button", name="Say now").click()
            expect(page.locator("#guidance-status")).to_contain_text("Delivered")

            panel = page.locator(_panel(call.conversation_id))
            given = panel.locator('.arl-guidance[data-mode="say"]', has_text=text)
            expect(given).to_have_count(1)
            expect(given).to_have_attribute("data-status", "delivered")
            # The agent says it: its line, recorded and final, with the words given.
            said = panel.locator('.arl-line[data-role="agent"]:not(.is-interim)', has_text=text)
            expect(said.locator(".arl-line__text")).to_have_text(text)
            shoot(page, "conversation-guidance")

            # The viewer's page of the same call: no presence, no box, no guidance.
            viewer = sign_in(viewer_context, stack, "viewer")
            viewer.goto(f"/conversations/{call.conversation_id}/")
            expect(viewer.get_by_role("heading", name=CALLER_LABEL, exact=True)).to_be_visible()
            expect(viewer.locator("#presence")).to_have_count(0)
            expect(viewer.locator("[data-presence]")).to_have_count(0)
            expect(viewer.get_by_role("form", name="Guidance to the agent")).to_have_count(0)
            expect(viewer.locator(".arl-guidance")).to_have_count(0)
            assert text not in viewer.content()
            assert name not in viewer.content()
        finally:
            loop.run(listener.close())
        # It left: gone from the supervisor's page through LiveKit's webhook.
        expect(presence).not_to_contain_text(name)
        assert csp_violations == []
        probe_policy(page, csp_violations)
    assert page.errors == []  # type: ignore[attr-defined]
    assert viewer.errors == []  # type: ignore[attr-defined]
