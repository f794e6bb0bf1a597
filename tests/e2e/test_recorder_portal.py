"""The recorder behind the portal, end to end: nothing is pushed by hand here.

In real Chromium on the embedded defaults, a real recorder hears a simulated call whose
caller says the seeded rule's phrase: the alert reaches a supervisor's dashboard and its
Listen plays the call, a viewer gets the alert but no word of the transcript, and a
supervisor opening the call late sees the greeting at once and every line once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from demo.call_simulator import DEFAULT_SCRIPT
from tests.e2e.sdk_pages import audio_elements, listen_frame
from tests.e2e.test_portal_alerts import (  # recorded websocket frames, a viewer's context
    Frames,
    sign_in_recording,
    viewer_context,  # noqa: F401  (fixture)
)
from tests.e2e.test_portal_browser import (  # the portal's browser context and sign-in
    csp_violations,  # noqa: F401  (a fixture the portal fixture uses)
    portal,  # noqa: F401  (fixture)
    shoot,
    sign_in,
)
from tests.support.processes import wait_until
from tests.support.stack import Recorders, Stack, recorders, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHRASE = "charged twice"  # seed_demo's rule; the simulated caller's second line says it
# Words of the script that only a transcript could carry to a page.
SCRIPT_WORDS = ("charged", "acme support", "order number", "four five seven", "refund")


@pytest.fixture(scope="module")
def recorder(stack: Stack) -> Iterator[Recorders]:
    with recorders(stack, 1) as pool:
        yield pool


def recorded_finals(stack: Stack, conversation_id: str) -> list[tuple[str, str, str]]:
    """(role, segment id, text) of the call's final segments, in spoken order."""
    rows = stack.query(
        "SELECT role, segment_id, text FROM anyreach_listen_transcriptsegment "
        "WHERE conversation_id = ? AND final ORDER BY position",
        conversation_id.replace("-", ""),
    )
    return [(r["role"], r["segment_id"], r["text"]) for r in rows]


def wait_recording(pool: Recorders, room: str) -> None:
    wait_until(lambda: pool.recording(room), timeout=30, what=f"a recorder in room {room}")


def playing(page: Page) -> bool:
    elements = audio_elements(listen_frame(page))
    return bool(elements) and all(
        a["hasStream"] and not a["paused"] and not a["muted"] for a in elements
    )


def test_the_recorders_alert_reaches_the_dashboard_listen_plays_and_viewers_read_nothing(
    portal: BrowserContext,  # noqa: F811
    viewer_context: BrowserContext,  # noqa: F811
    stack: Stack,
    recorder: Recorders,
    csp_violations: list[str],  # noqa: F811
) -> None:
    supervisor = sign_in(portal, stack, "supervisor")
    supervisor_frames = Frames(supervisor)
    supervisor.reload()  # the socket opens again, recorded
    expect(supervisor.locator("#stream-status")).to_have_text("Updates live.")
    viewer, viewer_frames = sign_in_recording(viewer_context, stack, "viewer")

    with simulated_call(stack, "--team", "Support", "--duration", "90") as call:
        cid = call.conversation_id
        wait_recording(recorder, call.room_name)
        row = supervisor.locator(f'tr[data-conversation="{cid}"]')
        notice = supervisor.locator(f'#alert-notices [data-alert-notice="{cid}"]').filter(
            has_text=PHRASE
        )
        expect(notice).to_have_count(1, timeout=60_000)
        expect(notice).to_contain_text("Warning alert")
        expect(row.locator("[data-alert-badge]")).to_have_attribute("data-severity", "warning")
        # The row's last line is a line the recorder stored (the call goes on, so any of them).
        said = {text for _, _, text in recorded_finals(stack, cid)}
        last = row.locator("[data-last-line] .last-line__text")
        wait_until(lambda: last.text_content() in said, timeout=10, what="a recorded last line")

        notice.get_by_role("button", name="Listen").click()
        dialog = supervisor.locator("#listen-dialog")
        panel = dialog.locator(f'[data-arl-panel][data-conversation="{cid}"]')
        expect(panel.locator("[data-arl-badge]")).to_have_text("LIVE")
        wait_until(lambda: playing(supervisor), timeout=20, what="the call's audio playing")
        # The viewer's row got the alert too (so the checks below are not vacuous).
        expect(viewer.locator(f'tr[data-conversation="{cid}"] [data-alert-badge]')).to_have_text(
            re.compile(r"· Warning$")
        )
        viewer_html = viewer.content().lower()
        dialog.get_by_role("button", name="Close").click()

        # The viewer's PAT (every scope it asks for, cut down to what a viewer may do).
        viewer_name = stack.seed["users"]["viewer"]["username"]
        pat = stack.manage(
            "create_pat", viewer_name, "--name", "e2e-viewer",
            "--scope", "conversations:read", "--scope", "conversations:read_sensitive",
        ).strip()  # fmt: skip
        refused = httpx.get(
            f"{stack.base_url}/core/conversations/{cid}/transcript",
            headers={
                "Authorization": f"Bearer {pat}",
                "X-Anyreach-Org": stack.seed["organization_id"],
            },
            timeout=10,
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "insufficient_scope"

    supervisor_types = {m["type"] for m in supervisor_frames.messages()}
    assert {"transcript.segment", "alert.raised"} <= supervisor_types
    viewer_messages = viewer_frames.messages()
    assert any(m["type"] == "alert.raised" for m in viewer_messages)
    assert not any(m["type"] == "transcript.segment" for m in viewer_messages)
    viewer_raw = "\n".join(viewer_frames.received).lower()
    for words in SCRIPT_WORDS:
        assert words not in viewer_raw, words
        assert words not in viewer_html, words
    assert csp_violations == []


def test_a_supervisor_opening_the_call_after_the_greeting_sees_it_then_every_line_once(
    portal: BrowserContext,  # noqa: F811
    stack: Stack,
    recorder: Recorders,
) -> None:
    page = sign_in(portal, stack, "supervisor")
    greeting = DEFAULT_SCRIPT[0].text
    with simulated_call(stack, "--team", "Support") as call:  # the script, once
        cid = call.conversation_id
        wait_recording(recorder, call.room_name)
        wait_until(
            lambda: any(role == "agent" for role, _, _ in recorded_finals(stack, cid)),
            timeout=45,
            what="the recorder storing the agent's greeting",
        )
        document = page.goto(f"/conversations/{cid}/")
        assert document is not None and greeting in document.text()  # server-rendered
        assert call.wait(timeout=120) == 0

    panel = page.locator(f'[data-arl-panel][data-conversation="{cid}"]')

    def settled() -> list[tuple[str, str, str]] | None:
        finals = recorded_finals(stack, cid)
        shown = panel.locator(".arl-line").evaluate_all(
            "els => els.map(e => [e.dataset.role, e.dataset.segmentId,"
            " e.querySelector('.arl-line__text').textContent])"
        )
        return finals if [tuple(s) for s in shown] == finals else None

    finals = wait_until(settled, timeout=20, what="the page showing every recorded line once")
    assert [text for _, _, text in finals] == [turn.text for turn in DEFAULT_SCRIPT]
    shoot(page, "conversation-recorded")
