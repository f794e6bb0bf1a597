"""Catch-up on a live call's conversation page, in real Chromium against the real stack.

A supervisor who opens a call after the agent's greeting was recorded sees it at once,
then each later line exactly once, whichever of the page's paths (event stream, refetch,
the listen panel's SDK transcript) brings it. The transcript is pushed through the API
as a platform would; the recorder stores the same way.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.test_portal_browser import (  # the portal's browser context and sign-in
    csp_violations,  # noqa: F401  (a fixture the portal fixture uses)
    portal,  # noqa: F401  (fixture)
    shoot,
    sign_in,
)
from tests.support.stack import Stack, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

GREETING = "Thanks for calling Acme support, this is Ava."
LATER = "Could you read me the order number, please?"
CALLER = "It is four two seven, I think."
# Counts the event stream's openings (before the page's own scripts run).
STREAM_OPENS = (
    "window.__streamOpens = 0;"
    "document.addEventListener('anyreach:stream-open', () => window.__streamOpens++);"
)


def push(stack: Stack, conversation_id: str, segment: dict[str, object]) -> dict[str, int]:
    response = httpx.post(
        f"{stack.base_url}/core/conversations/{conversation_id}/transcript",
        headers={"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"},
        json={"segments": [segment]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()
    return result


def line(page: Page, conversation_id: str, role: str, segment_id: str) -> Locator:
    panel = page.locator(f'[data-arl-panel][data-conversation="{conversation_id}"]')
    return panel.locator(f'.arl-line[data-role="{role}"][data-segment-id="{segment_id}"]')


def portal_reads(stack: Stack, conversation_id: str) -> list[str]:
    rows = stack.query(
        "SELECT u.username FROM anyreach_listen_transcriptread r "
        "JOIN auth_user u ON r.user_id = u.id WHERE r.conversation_id = ? AND r.via = 'portal'",
        conversation_id.replace("-", ""),
    )
    return [r["username"] for r in rows]


def test_a_supervisor_opening_a_live_call_sees_the_greeting_then_each_line_once(
    portal: BrowserContext,  # noqa: F811
    stack: Stack,
) -> None:
    page = sign_in(portal, stack, "supervisor")
    # Off the dashboard: its event stream would show the greeting as the row's last
    # line, an audited glance of its own, and this test counts the page's reads only.
    page.goto("about:blank")
    with simulated_call(stack, "--team", "Support", "--duration", "60") as call:
        cid = call.conversation_id
        push(stack, cid, {"id": "SG_e2e_greet", "role": "agent", "text": GREETING, "final": True})

        # The page arrives with the greeting, rendered by the server.
        page.add_init_script(STREAM_OPENS)
        document = page.goto(f"/conversations/{cid}/")
        assert document is not None and GREETING in document.text()
        greeting = line(page, cid, "agent", "SG_e2e_greet")
        expect(greeting).to_have_count(1)
        expect(greeting.locator(".arl-line__text")).to_have_text(GREETING)
        # The stream is open and the page's catch-up reads are done: what follows can
        # only come by the stream.
        page.wait_for_function("() => window.__streamOpens > 0")
        expect(page.locator("[data-transcript-catchup]:not([data-catching-up])")).to_have_count(1)

        # Said after the page loaded: arrives live, once.
        push(stack, cid, {"id": "SG_e2e_later", "role": "agent", "text": LATER, "final": True})
        later = line(page, cid, "agent", "SG_e2e_later")
        expect(later).to_have_count(1)
        expect(later.locator(".arl-line__text")).to_have_text(LATER)
        # The same segment again: stored once, shown once. The caller's next line is
        # the fence: it reaches the page after anything the repeat could have sent.
        again = push(
            stack, cid, {"id": "SG_e2e_later", "role": "agent", "text": LATER, "final": True}
        )
        assert again == {"recorded": 0, "unchanged": 1, "alerts": 0}
        push(stack, cid, {"id": "SG_e2e_caller", "role": "user", "text": CALLER, "final": True})
        expect(line(page, cid, "user", "SG_e2e_caller")).to_have_count(1)
        expect(later).to_have_count(1)

        # An interim line never travels on the stream: only a refetch (the stream
        # reopening) brings it; its final then settles the same line.
        push(stack, cid, {"id": "SG_e2e_half", "role": "agent", "text": "One mo", "final": False})
        with page.expect_response(lambda r: f"/conversations/{cid}/transcript/" in r.url):
            page.evaluate("document.dispatchEvent(new CustomEvent('anyreach:stream-open'))")
        half = line(page, cid, "agent", "SG_e2e_half")
        expect(half).to_have_class("arl-line is-interim")
        expect(half.locator(".arl-line__text")).to_have_text("One mo")
        push(
            stack, cid, {"id": "SG_e2e_half", "role": "agent", "text": "One moment.", "final": True}
        )
        expect(half.locator(".arl-line__text")).to_have_text("One moment.")
        expect(half).to_have_class("arl-line")
        expect(half).to_have_count(1)

        # Every line of the list once, in spoken order for the lines we pushed.
        keys = page.locator(f'[data-arl-panel][data-conversation="{cid}"] .arl-line').evaluate_all(
            "els => els.map(e => `${e.dataset.role}:${e.dataset.segmentId}`)"
        )
        assert len(keys) == len(set(keys)), keys
        ours = [k for k in keys if "SG_e2e_" in k]
        assert ours == [
            "agent:SG_e2e_greet",
            "agent:SG_e2e_later",
            "user:SG_e2e_caller",
            "agent:SG_e2e_half",
        ]
        # An alert raised while the page is open joins the call's list (the seeded
        # rule "charged twice"), phrase and speaker included for a transcript reader.
        said = {"id": "SG_e2e_alert", "role": "user", "text": "Charged twice!", "final": True}
        assert push(stack, cid, said)["alerts"] == 1
        [row] = stack.query(
            "SELECT a.id, a.raised_at FROM anyreach_listen_alert a"
            " JOIN anyreach_listen_transcriptsegment s ON a.segment_id = s.id"
            " WHERE s.segment_id = 'SG_e2e_alert'"
        )
        listed = page.locator(f'[data-conversation-alerts] li[data-alert="{uuid.UUID(row["id"])}"]')
        expect(listed).to_contain_text("“charged twice” · Caller")
        expect(listed.locator(".alert-mark--warning")).to_have_text("Warning")
        # At the server's time (UTC), like the alerts the page arrived with.
        expect(listed).to_contain_text(f"· Caller · {row['raised_at'][11:19]}")

        # One audited read for the page view; its refetches carried the page's token.
        assert portal_reads(stack, cid) == [stack.seed["users"]["supervisor"]["username"]]
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_viewer_opening_a_live_call_gets_no_transcript(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(base_url=stack.base_url)
    try:
        page = sign_in(context, stack, "viewer")
        with simulated_call(stack, "--team", "Support", "--duration", "30") as call:
            cid = call.conversation_id
            push(
                stack, cid, {"id": "SG_e2e_greet", "role": "agent", "text": GREETING, "final": True}
            )
            document = page.goto(f"/conversations/{cid}/")
            assert document is not None and GREETING not in document.text()
            expect(
                page.get_by_text("Your role can see this call but not listen to it.")
            ).to_be_visible()
            # What the page's stream brings: transcript lines, and the ids of alerts. An
            # alert (the seeded rule's phrase) reaches a viewer without its words: one that
            # arrives before the line proves the stream open, and the one pushed after the
            # line arrives after anything the line would have brought.
            page.evaluate(
                """() => { window.streamed = { lines: 0, alerts: [] };
                  document.addEventListener("anyreach:transcript", () => window.streamed.lines++);
                  document.addEventListener("anyreach:alert",
                    (e) => window.streamed.alerts.push(e.detail.alert.id)); }"""
            )
            alerting = {"role": "user", "text": "Charged twice!", "final": True}
            deadline = time.monotonic() + 30
            while not page.evaluate("window.streamed.alerts.length"):
                assert time.monotonic() < deadline, "no alert reached the viewer's page"
                push(stack, cid, {"id": f"SG_e2e_open_{uuid.uuid4().hex[:6]}", **alerting})
                with contextlib.suppress(PlaywrightTimeoutError):
                    page.wait_for_function("() => window.streamed.alerts.length", timeout=1000)
            push(stack, cid, {"id": "SG_e2e_later", "role": "agent", "text": LATER, "final": True})
            push(stack, cid, {"id": "SG_e2e_after", **alerting})
            [after] = stack.query(
                "SELECT a.id FROM anyreach_listen_alert a JOIN anyreach_listen_transcriptsegment"
                " s ON a.segment_id = s.id WHERE s.segment_id = 'SG_e2e_after'"
            )
            page.wait_for_function(
                "id => window.streamed.alerts.includes(id)", arg=str(uuid.UUID(after["id"]))
            )
            assert page.evaluate("window.streamed.lines") == 0
            assert GREETING not in page.content() and LATER not in page.content()
            assert page.request.get(f"/conversations/{cid}/transcript/").status == 403
            assert portal_reads(stack, cid) == []
    finally:
        context.close()


def test_a_completed_call_is_reviewed_with_its_alerts_inline(
    portal: BrowserContext,  # noqa: F811
    stack: Stack,
) -> None:
    """The seeded rule "charged twice" marks the caller's line; the page is the README's
    screenshot of a completed call's transcript."""
    headers = {"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"}
    api = f"{stack.base_url}/core/conversations"
    created = httpx.post(
        api,
        headers=headers,
        json={
            "status": "in_progress",
            "team_id": stack.seed["team_id"],
            "caller_label": "+1 555 0163",
            "agent_label": "Ava (billing agent)",
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    script = [
        ("s1", "agent", GREETING),
        ("s2", "user", "Hi. I was charged twice for my March invoice."),
        ("s3", "agent", "I'm sorry about that. I can see two payments of $49 on March 3."),
        ("s4", "agent", "I've refunded the second one; it takes three to five days."),
        ("s5", "user", "Great, thank you."),
    ]
    for segment_id, role, text in script:
        push(stack, cid, {"id": segment_id, "role": role, "text": text, "final": True})
        time.sleep(1.1)  # lines a second or more apart, as in a call (the times shown)
    done = httpx.patch(f"{api}/{cid}", headers=headers, json={"status": "completed"}, timeout=10)
    assert done.status_code == 200, done.text

    page = sign_in(portal, stack, "supervisor")
    page.goto(f"/conversations/{cid}/")
    lines = page.locator(".review__line")
    expect(lines).to_have_count(len(script))
    assert lines.evaluate_all("els => els.map(e => e.dataset.segmentId)") == [s[0] for s in script]
    alerted = page.locator('.review__line[data-segment-id="s2"]')
    expect(alerted.locator(".alert-mark")).to_have_text("Warning: “charged twice”")
    expect(page.locator(".review__line .alert-mark")).to_have_count(1)
    expect(page.locator("[data-conversation-alerts] li")).to_have_count(1)
    expect(page.locator("[data-arl-panel]")).to_have_count(0)  # nothing left to hear
    shoot(page, "conversation-review")
    assert page.errors == []  # type: ignore[attr-defined]
