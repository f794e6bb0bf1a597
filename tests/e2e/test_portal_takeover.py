"""What the demo shows, in real Chromium with a fake microphone against the real stack
(daphne, livekit-server --dev and its webhooks, a recorder, a simulated call whose agent
obeys pause and resume): a supervisor clicks "Take over" on the conversation page, a
hidden listener hears them and the agent falls silent, the page and the transcript say
who took it over, "Hand back" gives the call to the agent, which speaks again. No page
runs into its Content-Security-Policy. Saves the screenshot of a taken-over call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from demo.call_simulator import CallConfig
from tests.browser.fixtures import CHROMIUM, CHROMIUM_ARGS, FAKE_MICROPHONE_ARGS, shared_browser
from tests.e2e.test_portal_browser import (  # the portal's browser context and sign-in
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

AGENT = CallConfig.agent_identity
CALL_ARGS = ("--team", "Support", "--loop", "--caller-label", "+1 555 0163")
SPEAKING = "You are speaking with the caller"
STEP = 60  # seconds any one condition may take (a script turn is a few seconds)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """This module's pages get a microphone (Chromium's fake one, a beep) without asking;
    the portal on 127.0.0.1 is a secure context, as the real one over https."""
    chromium = shared_browser().browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *FAKE_MICROPHONE_ARGS], headless=True
    )
    yield chromium
    chromium.close()


def test_a_supervisor_takes_a_call_over_from_the_portal_and_hands_it_back(
    portal: BrowserContext,  # noqa: F811
    stack: Stack,
    csp_violations: list[str],  # noqa: F811
) -> None:
    reader = api_key(stack, f"reader-{uuid.uuid4().hex[:6]}", "conversations:read_sensitive")
    with (
        recorders(stack, 1) as pool,
        simulated_call(stack, *CALL_ARGS) as call,
        LoopThread() as loop,
    ):
        wait_until(lambda: pool.recording(call.room_name), timeout=STEP, what="the recorder")
        grant = stack.mint(call.conversation_id, reader)
        assert grant.status_code == 200, grant.text
        listener = loop.run(connected_listener(grant.json()["url"], grant.json()["token"]))
        try:
            wait_until(
                lambda: listener.first_audible_after(AGENT, 0) is not None,
                timeout=STEP,
                what="the agent's voice before the takeover",
            )
            page = sign_in(portal, stack, "supervisor")
            page.goto(f"/conversations/{call.conversation_id}/")
            section = page.get_by_role("region", name="Take the call over")
            status = section.locator("[data-takeover-status]")

            error = section.locator("[data-takeover-error]")
            section.get_by_role("button", name="Take over").click()
            wait_until(
                lambda: status.text_content() == SPEAKING or error.is_visible(),
                timeout=STEP,
                what="the takeover started or refused",
            )
            assert error.is_hidden(), error.text_content()
            taken = time.monotonic()
            identity = page.evaluate("() => AnyReachPortalTakeover.current().identity")
            assert identity.startswith("supervisor-"), identity
            # The hidden listener hears the supervisor's microphone (the fake one beeps)…
            wait_until(
                lambda: listener.first_audible_after(identity, taken - 5) is not None,
                timeout=STEP,
                what="the supervisor's voice at a hidden listener",
            )
            expect(page.locator("#presence")).to_contain_text("Taken over by", timeout=STEP * 1000)
            panel = page.locator(f'[data-arl-panel][data-conversation="{call.conversation_id}"]')
            expect(panel.locator(".arl-takeover")).to_have_count(1, timeout=STEP * 1000)
            shoot(page, "conversation-takeover")
            # …and, through all of that, never the agent: it was paused before the 201.
            assert listener.first_audible_after(AGENT, taken) is None

            section.get_by_role("button", name="Hand back").click()
            expect(status).to_have_text("Handed back: the agent has the call again.")
            handed_back = time.monotonic()
            wait_until(
                lambda: listener.first_audible_after(AGENT, handed_back) is not None,
                timeout=STEP,
                what="the agent's voice after the hand-back",
            )
            expect(page.locator("#presence")).not_to_contain_text("Taken over by")
            assert csp_violations == []
            probe_policy(page, csp_violations)
        finally:
            loop.run(listener.close())
    assert page.errors == []  # type: ignore[attr-defined]
