"""The supervisor portal in real Chromium, against real daphne, LiveKit and simulated calls.

Each test signs in through the login form like a person would. Screenshots of
the main screens are saved to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.support.processes import ROOT, wait_until
from tests.support.stack import Stack, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Regenerated on every run (gitignored); docs/screenshots/ holds the README's copies.
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 30_000


# Every page and frame reports what its Content-Security-Policy refused.
CSP_RECORDER = """
document.addEventListener("securitypolicyviolation", (e) =>
  window.reportCspViolation(
    `${location.pathname}: ${e.effectiveDirective} refused ${e.blockedURI || "inline"}` +
      ` (${e.sourceFile || "?"}:${e.lineNumber}) ${e.sample}`,
  ),
);
"""
PROBE = "window.__probeRan = true // csp-probe"


@pytest.fixture
def csp_violations() -> list[str]:
    return []


@pytest.fixture
def portal(browser: Browser, stack: Stack, csp_violations: list[str]) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    context.expose_function("reportCspViolation", lambda text: csp_violations.append(text))
    context.add_init_script(CSP_RECORDER)
    context.on(
        "console",
        lambda m: (
            csp_violations.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    yield context
    context.close()
    # No portal test may run into the policy: the pages ship no inline script or style.
    assert csp_violations == []


def probe_policy(page: Page, violations: list[str]) -> None:
    """An inline script the page did not ship is refused and reported: the policy is
    enforced and the recorder hears it, so an empty list means something. Call it with
    no violation recorded; it leaves none."""
    assert violations == []
    page.evaluate(
        "probe => { const s = document.createElement('script'); s.textContent = probe;"
        " document.head.append(s); }",
        PROBE,
    )
    wait_until(
        lambda: page.evaluate("0") == 0 and len(violations) >= 2,  # the event and the console
        timeout=10,
        what="the probe's CSP violation reports",
    )
    assert page.evaluate("window.__probeRan") is None
    assert all("script-src" in v and "inline" in v for v in violations), violations
    violations.clear()


def sign_in(context: BrowserContext, stack: Stack, role: str) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/accounts/login/")
    login = stack.seed["users"][role]
    page.get_by_label("Username").fill(login["username"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    page.errors = errors  # type: ignore[attr-defined]
    return page


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_supervisor_sees_call_appear_listens_reads_mutes_and_stops(
    portal: BrowserContext, stack: Stack, csp_violations: list[str]
) -> None:
    page = sign_in(portal, stack, "supervisor")
    document = page.goto("/")
    assert document is not None
    assert "'unsafe-inline'" not in document.headers["content-security-policy"]
    expect(page.locator("#stream-status")).to_have_text("Updates live.")
    with simulated_call(
        stack, "--team", "Support", "--duration", "45", "--caller-label", "+1 555 0142"
    ) as call:
        # The call appears without a reload (websocket → htmx refresh).
        row = page.locator(f'tr[data-conversation="{call.conversation_id}"]')
        expect(row).to_be_visible()
        expect(row.locator(".status")).to_have_text("In progress")
        shoot(page, "dashboard")

        row.get_by_role("link", name="Open").click()
        live = page.locator(f'[data-arl-panel][data-conversation="{call.conversation_id}"]')
        badge = live.locator("[data-arl-badge]")
        expect(badge).to_have_text("LIVE")  # attached muted as the page opened
        live.get_by_role("button", name="Listen").click()
        expect(live.get_by_role("button", name="Mute")).to_be_enabled()

        # Both sides' transcript, interim lines replaced by final ones.
        expect(live.locator('.arl-line[data-role="agent"]:not(.is-interim)').first).to_be_visible()
        expect(live.locator('.arl-line[data-role="user"]:not(.is-interim)').first).to_be_visible()
        agent_text = live.locator('.arl-line[data-role="agent"] .arl-line__role').first
        expect(agent_text).to_have_text("Agent")
        ids = live.locator(".arl-line").evaluate_all(
            "els => els.map(e => `${e.dataset.role}:${e.dataset.segmentId}`)"
        )
        assert len(ids) == len(set(ids)), "a segment was rendered twice"
        shoot(page, "conversation")

        # Keyboard: M mutes, Esc stops.
        page.locator("body").press("m")
        expect(live.get_by_role("button", name="Unmute")).to_be_visible()
        page.locator("body").press("Escape")
        expect(badge).to_have_text("Not listening")
        # Under the page's policy: the websocket, the SDK, its frame and htmx all ran
        # without a refusal, and the policy is really enforced.
        assert csp_violations == []
        probe_policy(page, csp_violations)
    assert page.errors == []  # type: ignore[attr-defined]


def test_viewer_has_no_listen_controls_and_the_token_view_refuses(
    portal: BrowserContext, stack: Stack
) -> None:
    page = sign_in(portal, stack, "viewer")
    conversation_id = stack.seed["conversations"]["active"]
    page.goto(f"/conversations/{conversation_id}/")
    expect(page.get_by_text("Your role can see this call but not listen to it.")).to_be_visible()
    expect(page.get_by_role("button", name="Listen")).to_have_count(0)
    csrf = next(c["value"] for c in portal.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"/listen/conversations/{conversation_id}/token", headers={"X-CSRFToken": csrf}
    )
    assert response.status == 403
    assert response.json()["error"]["code"] == "listen_not_allowed"


def test_dashboard_updates_when_the_call_ends(portal: BrowserContext, stack: Stack) -> None:
    page = sign_in(portal, stack, "qa")
    with simulated_call(stack, "--team", "Support", "--webhook-grace", "10") as call:
        row = page.locator(f'tr[data-conversation="{call.conversation_id}"]')
        expect(row).to_be_visible()
        call.wait(timeout=120)  # the script ends, the agent leaves, the room closes
        expect(row).to_have_count(0)  # gone from the live list, without a reload
    page.get_by_label("Status").select_option("completed")
    expect(page.locator(f'tr[data-conversation="{call.conversation_id}"] .status')).to_have_text(
        "Completed"
    )


def test_admin_listen_live_page(portal: BrowserContext, stack: Stack) -> None:
    page = sign_in(portal, stack, "admin")
    with simulated_call(
        stack, "--team", "Support", "--duration", "40", "--caller-label", "+1 555 0178"
    ) as call:
        page.goto("/admin/anyreach_listen/conversation/?status__exact=in_progress")
        row = page.locator("#result_list tr", has=page.get_by_text("+1 555 0178"))
        row.get_by_role("link", name="Listen live").click()
        expect(page).to_have_url(re.compile(rf"/{call.conversation_id}/listen/$"))
        live = page.locator(f'[data-arl-panel][data-conversation="{call.conversation_id}"]')
        expect(live.locator("[data-arl-badge]")).to_have_text("LIVE")
        live.get_by_role("button", name="Listen").click()
        expect(live.locator(".arl-line:not(.is-interim)").first).to_be_visible()
        shoot(page, "admin-listen")
    rows = stack.query(
        "SELECT via FROM anyreach_listen_listensession s JOIN anyreach_listen_conversation c "
        "ON s.conversation_id = c.id WHERE c.id = ?",
        call.conversation_id.replace("-", ""),
    )
    assert [r["via"] for r in rows] == ["admin"]


def test_wall_listens_to_two_calls_at_once(portal: BrowserContext, stack: Stack) -> None:
    page = sign_in(portal, stack, "supervisor")
    page.goto("/wall/")
    with (
        simulated_call(
            stack, "--team", "Support", "--duration", "45", "--caller-label", "+1 555 0123"
        ) as first,
        simulated_call(
            stack, "--team", "Support", "--duration", "45", "--caller-label", "+44 20 7946 0011"
        ) as second,
    ):
        for call in (first, second):
            tile = page.locator(f'[data-arl-panel][data-conversation="{call.conversation_id}"]')
            expect(tile.locator("[data-arl-badge]")).to_have_text("LIVE")
            tile.get_by_role("button", name="Listen").click()
            expect(tile.locator(".arl-line:not(.is-interim)").first).to_be_visible()
        # Each tile has its own session: muting one leaves the other playing.
        one = page.locator(f'[data-arl-panel][data-conversation="{first.conversation_id}"]')
        two = page.locator(f'[data-arl-panel][data-conversation="{second.conversation_id}"]')
        one.get_by_role("button", name="Mute").click()
        expect(one.get_by_role("button", name="Unmute")).to_be_visible()
        expect(two.get_by_role("button", name="Mute")).to_be_visible()
        assert page.locator("iframe[src$='/public/listen']").count() >= 2
        shoot(page, "wall")


def test_repeated_clicks_while_connecting_make_one_session(
    portal: BrowserContext, stack: Stack
) -> None:
    page = sign_in(portal, stack, "supervisor")
    # A live call of its own whose room nobody is in yet (the seeded call's room may
    # have been opened and closed by an earlier test, which ends that call).
    created = httpx.post(
        f"{stack.base_url}/core/conversations",
        headers={"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"},
        json={
            "status": "in_progress",
            "team_id": stack.seed["team_id"],
            "caller_label": "+1 555 0191",
            "room_name": f"clicks-{uuid.uuid4().hex[:8]}",
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    token_posts: list[str] = []
    page.on(
        "request",
        lambda r: token_posts.append(r.url) if r.method == "POST" and "/token" in r.url else None,
    )
    page.goto(f"/conversations/{conversation_id}/", wait_until="commit")
    # The panel is still attaching on its own: a click, then the M key twice.
    page.get_by_role("button", name="Listen").click()
    page.keyboard.press("m")
    page.keyboard.press("m")
    live = page.locator(f'[data-arl-panel][data-conversation="{conversation_id}"]')
    expect(live.locator("[data-arl-badge]")).to_have_text("LIVE")
    expect(live.get_by_role("button", name="Mute")).to_be_enabled()
    assert len(token_posts) == 1
    assert page.locator("iframe[src$='/public/listen']").count() == 1
    live.get_by_role("button", name="Stop").click()
    expect(page.locator("iframe[src$='/public/listen']")).to_have_count(0)
    expect(live.locator("[data-arl-badge]")).to_have_text("Not listening")


def _row_status(page: Page, conversation_id: str) -> Locator:
    return page.locator(f'tr[data-conversation="{conversation_id}"] .status')


def test_a_room_with_anyreach_metadata_is_monitored_with_no_integration_code(
    portal: BrowserContext, stack: Stack
) -> None:
    """The platform only creates its LiveKit room with {"anyreach": …} metadata."""
    page = sign_in(portal, stack, "supervisor")
    expect(page.locator("#stream-status")).to_have_text("Updates live.")
    with simulated_call(
        stack, "--register", "room-metadata", "--team", "Support", "--webhook-grace", "10"
    ) as call:
        expect(_row_status(page, call.conversation_id)).to_have_text("In progress")
        minted = stack.mint(call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
        assert minted.status_code == 200 and minted.json()["room_name"] == call.room_name
        call.wait(timeout=120)
        expect(page.locator(f'tr[data-conversation="{call.conversation_id}"]')).to_have_count(0)
    # room_finished completed it (the simulator's fallback would say "simulator").
    rows = stack.query(
        "SELECT status, metadata FROM anyreach_listen_conversation WHERE id = ?",
        call.conversation_id.replace("-", ""),
    )
    assert rows[0]["status"] == "completed" and '"ended_by": "room_finished"' in rows[0]["metadata"]


def test_the_dashboard_follows_each_step_of_the_rest_api(
    portal: BrowserContext, stack: Stack
) -> None:
    page = sign_in(portal, stack, "supervisor")
    expect(page.locator("#stream-status")).to_have_text("Updates live.")
    headers = {"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"}
    api = f"{stack.base_url}/core/conversations"
    created = httpx.post(
        api,
        headers=headers,
        json={"status": "ringing", "team_id": stack.seed["team_id"], "caller_label": "+1 555 0190"},
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    status = _row_status(page, conversation_id)
    expect(status).to_have_text("Ringing")
    moved = httpx.patch(
        f"{api}/{conversation_id}",
        headers=headers,
        json={"status": "in_progress", "room_name": f"rest-{conversation_id}"},
    )
    assert moved.status_code == 200, moved.text
    expect(status).to_have_text("In progress")
    assert stack.mint(conversation_id, stack.seed["api_keys"]["read_sensitive"]).status_code == 200
    done = httpx.patch(f"{api}/{conversation_id}", headers=headers, json={"status": "completed"})
    assert done.status_code == 200 and done.json()["ended_at"]
    expect(page.locator(f'tr[data-conversation="{conversation_id}"]')).to_have_count(0)
