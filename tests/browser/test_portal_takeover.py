""" "Take over" in Chromium with a fake microphone, against a real ``livekit-server --dev``:
the page's own connection (js/src/portal/takeover.ts) publishes the microphone as a
visible ``supervisor-…`` participant that a hidden listener hears, plays the caller,
mutes, renews, and leaves on "Hand back", on the page going away, or when the takeover
ended elsewhere; a refused microphone is said clearly; a viewer has no button; a second
watcher sees "Taken over by Ana" and the span in the transcript. axe clean, CSP clean.

The portal runs in this process (``portal_pages.InProcessPortal``) with ``take_over`` and
``hand_back`` stood in (``tests/support/portal_takeover.py``: real rows, real tokens, no
agent to pause), and the test plays the events websocket. The agent's pause and resume
through a simulated call are tests/e2e's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from livekit import api
from playwright.sync_api import Browser, BrowserContext, Page, expect

from anyreach_listen import events, transcripts
from anyreach_listen.assist import takeover
from anyreach_listen.models import Conversation, ConversationStatus, Takeover, TakeoverEnd
from anyreach_listen.transcripts import SegmentIn
from tests.browser.fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FAKE_MICROPHONE_ARGS,
    TIMEOUT_MS,
    shared_browser,
)
from tests.browser.portal_pages import HOST, ORIGIN, InProcessPortal
from tests.browser.test_portal_assist import assert_csp_clean
from tests.support.axe import assert_accessible
from tests.support.guidance import LoopThread, TimedListener, connected_listener
from tests.support.livekit import LiveKitServer, livekit_server
from tests.support.portal_takeover import TakeOver
from tests.support.takeover import Supervisor, joined_supervisor
from tests.support.world import TEST_LISTEN_SETTINGS, World

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,  # a real livekit-server
    # The dev server's secret ("secret") is short; production's is checked (E002).
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

NAMES = {"supervisor": ("Ana", "Lopez"), "qa": ("Ben", "Ng"), "admin": ("Cy", "Diaz")}
LIVE_MS = 2000  # an event's effect on a page
LIVEKIT_S = 15.0  # LiveKit's view of a participant follows the page within this
SPEAKING = "You are speaking with the caller"
# The made-up origin of the in-process portal is http: Chromium offers getUserMedia to
# secure contexts only, as it would to the real portal over https.
MEDIA_ARGS = [*FAKE_MICROPHONE_ARGS, f"--unsafely-treat-insecure-origin-as-secure={ORIGIN}"]
REFUSE_MICROPHONE = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


@pytest.fixture(scope="module")
def media_browser() -> Iterator[Browser]:
    """A second Chromium of the process's Playwright, with a fake microphone that says yes."""
    browser = shared_browser().browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *MEDIA_ARGS], headless=True
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    with livekit_server(tmp_path_factory.mktemp("takeover-livekit")) as server:
        yield server


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    with LoopThread() as thread:
        yield thread


@pytest.fixture(autouse=True)
def in_process(
    django_db_setup: None,
    transactional_db: None,
    built_js: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    livekit: LiveKitServer,
    _listen_settings: None,
) -> None:
    # As tests/browser/test_portal_assist.py: the route handlers call the test client on
    # Playwright's loop (committed data, their own connection); the test plays the stream.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.ALLOWED_HOSTS = [HOST]
    settings.CHANNEL_LAYERS = {}
    # Tokens for, and the pages' CSP naming, the real LiveKit of this module.
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, **_settings_of(livekit)}


def _settings_of(livekit: LiveKitServer) -> dict[str, str]:
    return {
        "LIVEKIT_URL": livekit.url,
        "LIVEKIT_API_KEY": livekit.api_key,
        "LIVEKIT_API_SECRET": livekit.api_secret,
    }


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> TakeOver:
    # Grants of 6 s: renewed every 2 s (a third of their life) while the page speaks.
    return TakeOver(ttl=dt.timedelta(seconds=6)).install(monkeypatch)


@pytest.fixture
def call(world: World) -> Conversation:
    """The world's live Support call, two minutes in, with a line said."""
    for role, (first, last) in NAMES.items():
        user = world.users[role]
        user.first_name, user.last_name = first, last
        user.save()
    live = world.conversations[ConversationStatus.IN_PROGRESS]
    start = timezone.now() - dt.timedelta(minutes=2)
    Conversation.objects.filter(pk=live.pk).update(
        started_at=start, caller_label="+1 555 0142", agent_label="Ava"
    )
    live.refresh_from_db()
    transcripts.record(live, [SegmentIn("a1", "agent", "How can I help?", True)], at=start)
    return live


@pytest.fixture
def caller(call: Conversation, livekit: LiveKitServer, loop: LoopThread) -> Iterator[Supervisor]:
    """Someone in the call's room speaking (a steady tone), for the page to play."""
    token = livekit.token(str(call.livekit_room), "caller", can_publish=True, can_subscribe=True)
    person = loop.run(joined_supervisor(livekit.url, token))
    yield person
    loop.run(person.close())


@pytest.fixture
def listener(
    call: Conversation, livekit: LiveKitServer, loop: LoopThread
) -> Iterator[TimedListener]:
    """A hidden listener in the room, timing what it hears of whom."""
    token = livekit.token(
        str(call.livekit_room), "listener-test", hidden=True, can_publish=False, can_subscribe=True
    )
    heard = loop.run(connected_listener(livekit.url, token))
    yield heard
    loop.run(heard.close())


@pytest.fixture
def contexts(media_browser: Browser) -> Iterator[list[BrowserContext]]:
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def open_page(
    contexts: list[BrowserContext], media_browser: Browser, world: World, role: str
) -> tuple[InProcessPortal, list[str]]:
    """A page of its own browser context signed in as ``role``, and its page errors."""
    # The made-up public origin reaching LiveKit on loopback is a local network access
    # Chromium asks about (a real portal and LiveKit share an address space).
    context = media_browser.new_context(permissions=["local-network-access"])
    context.set_default_timeout(TIMEOUT_MS)
    contexts.append(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: print("CONSOLE", m.type, m.text))
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users[role])
    return InProcessPortal(page, client), errors


def wait_until[T](page: Page, condition: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``condition`` until it is truthy, failing after ``timeout`` seconds. Between
    tries Playwright runs (``wait_for_timeout``), not ``time.sleep``: the page's requests
    are answered by route handlers on this thread, only while Playwright runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(50)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def participants(livekit: LiveKitServer, loop: LoopThread, room: str) -> list[Any]:
    """LiveKit's RoomService ListParticipants: who is in ``room`` and what they publish."""

    async def ask() -> list[Any]:
        async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
            answer = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return list(answer.participants)

    return loop.run(ask())


def supervisor_in(
    livekit: LiveKitServer, loop: LoopThread, room: str
) -> api.ParticipantInfo | None:
    found = [p for p in participants(livekit, loop, room) if p.identity.startswith("supervisor-")]
    assert len(found) <= 1, found
    return found[0] if found else None


def microphone_of(person: api.ParticipantInfo | None) -> api.TrackInfo | None:
    tracks = [t for t in person.tracks if t.type == api.TrackType.AUDIO] if person else []
    return tracks[0] if tracks else None


def microphone_muted(livekit: LiveKitServer, loop: LoopThread, room: str) -> bool | None:
    """Whether the supervisor's microphone is muted in LiveKit's view; None: no microphone."""
    track = microphone_of(supervisor_in(livekit, loop, room))
    return None if track is None else track.muted


def takeover_event(row: Takeover, event: str) -> dict[str, Any]:
    """The ``takeover.updated`` message the events consumer forwards for ``row`` as it is."""
    row.refresh_from_db()
    return {
        "type": "takeover.updated",
        "event": event,
        "conversation": events.live_conversation(row.conversation).as_json(),
        "takeover": events.live_takeover(row).as_json(),
    }


def panel_of(page: Page, call: Conversation) -> Any:
    return page.locator(f'[data-arl-panel][data-conversation="{call.pk}"]')


def test_a_supervisor_takes_over_speaks_mutes_and_hands_back(
    world: World,
    call: Conversation,
    stand_in: TakeOver,
    livekit: LiveKitServer,
    loop: LoopThread,
    caller: Supervisor,
    listener: TimedListener,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    room = str(call.livekit_room)
    portal, errors = open_page(contexts, media_browser, world, "supervisor")
    page = portal.page
    document = page.goto(f"{ORIGIN}/conversations/{call.pk}/")
    assert document is not None
    assert document.headers["permissions-policy"] == "microphone=(self)"
    assert livekit.url in document.headers["content-security-policy"]
    portal.stream()
    section = page.get_by_role("region", name="Take the call over")
    start = section.get_by_role("button", name="Take over")
    mute = section.get_by_role("button", name="Mute my microphone")
    hand_back = section.get_by_role("button", name="Hand back")
    status = section.locator("[data-takeover-status]")
    badge = panel_of(page, call).locator("[data-arl-badge]")
    expect(badge).to_have_text("LIVE")  # the panel attached (muted) as the page opened
    expect(mute).to_be_hidden()
    assert_accessible(page)

    # A second watcher: QA, who may see who is in the call but never take it over.
    watcher, watcher_errors = open_page(contexts, media_browser, world, "qa")
    watcher.goto(f"/conversations/{call.pk}/")
    watcher.stream()
    assert watcher.page.locator("[data-takeover]").count() == 0

    # By keyboard: Tab to "Take over", Enter.
    start.focus()
    page.keyboard.press("Enter")
    expect(status).to_have_text(SPEAKING)
    expect(status).to_have_attribute("role", "status")
    expect(mute).to_be_visible()
    expect(mute).to_have_attribute("aria-pressed", "false")
    expect(mute).to_be_focused()
    expect(hand_back).to_be_visible()
    expect(start).to_be_hidden()
    expect(badge).to_have_text("Not listening")  # the frame stopped: no voice played back
    # The caller's audio plays through the page's own connection.
    expect(section).to_have_attribute("data-remote-audio", "1")
    assert page.evaluate(
        "() => [...document.querySelectorAll('[data-takeover-audio] audio')]"
        ".every((a) => !a.paused && a.srcObject && a.srcObject.getAudioTracks().length === 1)"
    )
    row = takeover.held(call)
    assert row is not None and stand_in.done == ["start"]
    identity = f"supervisor-{row.pk}"
    assert page.evaluate("() => AnyReachPortalTakeover.current().identity") == identity

    # LiveKit: a visible supervisor-… participant, named, publishing its microphone.
    wait_until(
        page,
        lambda: (p := supervisor_in(livekit, loop, room)) is not None and microphone_of(p),
        timeout=LIVEKIT_S,
        what="the supervisor's microphone in LiveKit",
    )
    person = supervisor_in(livekit, loop, room)
    assert person is not None
    assert person.identity == identity and person.name == "Ana Lopez"
    assert not person.permission.hidden
    track = microphone_of(person)
    assert track is not None
    assert track.source == api.TrackSource.MICROPHONE and not track.muted
    # …which a hidden listener hears (the fake microphone beeps).
    spoke = time.monotonic()
    wait_until(
        page,
        lambda: listener.first_audible_after(identity, spoke - 10) is not None,
        timeout=LIVEKIT_S,
        what="the supervisor's voice at a hidden listener",
    )

    # Everyone watching sees who took it over, and where, live (as the consumer sends it).
    for each in (portal, watcher):
        each.send(takeover_event(row, "started"))
    presence = watcher.page.locator("#presence")
    expect(presence).to_contain_text("Taken over by Ana Lopez", timeout=LIVE_MS)
    mark = watcher.page.locator(f'.arl-takeover[data-takeover-id="{row.pk}"]')
    expect(mark).to_have_count(1, timeout=LIVE_MS)
    expect(mark).to_contain_text("Taken over by Ana Lopez")
    expect(page.locator("#presence")).to_contain_text("Taken over by Ana Lopez", timeout=LIVE_MS)
    assert_accessible(page)  # speaking: the section, the marks and presence as they are
    assert_accessible(watcher.page)

    # Mute and unmute (Space on the focused toggle): LiveKit says so.
    page.keyboard.press("Space")
    expect(mute).to_have_attribute("aria-pressed", "true")
    wait_until(
        page,
        lambda: microphone_muted(livekit, loop, room) is True,
        timeout=LIVEKIT_S,
        what="the microphone muted in LiveKit",
    )
    page.keyboard.press("Space")
    expect(mute).to_have_attribute("aria-pressed", "false")
    wait_until(
        page,
        lambda: microphone_muted(livekit, loop, room) is False,
        timeout=LIVEKIT_S,
        what="the microphone unmuted in LiveKit",
    )
    # M does not start the listen panel meanwhile (it would play the supervisor back).
    page.locator("body").press("m")
    expect(badge).to_have_text("Not listening")

    # Renewed every third of the grant's life (6 s here), same takeover.
    wait_until(page, lambda: stand_in.done.count("renew") >= 2, timeout=15, what="two renewals")
    assert {c.conversation.pk for c in stand_in.calls} == {call.pk}

    # Hand back: out of the room, the row ended, the panel back to what it was doing.
    hand_back.click()
    expect(status).to_have_text("Handed back: the agent has the call again.")
    expect(start).to_be_visible()
    expect(start).to_be_focused()
    expect(mute).to_be_hidden()
    expect(badge).to_have_text("LIVE")
    assert stand_in.done[-1] == "hand_back"
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.HANDED_BACK
    wait_until(
        page,
        lambda: supervisor_in(livekit, loop, room) is None,
        timeout=LIVEKIT_S,
        what="the supervisor out of the room",
    )
    assert page.evaluate("() => AnyReachPortalTakeover.current()") is None
    assert page.locator("[data-takeover-audio] audio").count() == 0

    # The watcher sees it end, with how.
    watcher.send(takeover_event(row, "ended"))
    expect(presence).not_to_contain_text("Taken over", timeout=LIVE_MS)
    ended = watcher.page.locator(f'.arl-takeover[data-takeover-id="{row.pk}"][data-edge="ended"]')
    expect(ended).to_contain_text("Handed back")
    expect(ended).to_contain_text("Ana Lopez · Handed back")
    assert_accessible(watcher.page)
    assert errors == [] and watcher_errors == []
    assert_csp_clean(portal)
    assert_csp_clean(watcher)


def test_a_refused_microphone_is_said_and_nothing_is_taken_over(
    world: World,
    call: Conversation,
    stand_in: TakeOver,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    portal, errors = open_page(contexts, media_browser, world, "supervisor")
    portal.page.add_init_script(REFUSE_MICROPHONE)
    portal.goto(f"/conversations/{call.pk}/")
    portal.stream()
    section = portal.page.get_by_role("region", name="Take the call over")
    section.get_by_role("button", name="Take over").click()
    alert = section.get_by_role("alert")
    expect(alert).to_contain_text("The microphone was refused, so the call was not taken over.")
    expect(alert).to_contain_text("Allow this site to use your microphone")
    expect(section.get_by_role("button", name="Take over")).to_be_enabled()
    expect(panel_of(portal.page, call).locator("[data-arl-badge]")).to_have_text("LIVE")
    assert stand_in.calls == [] and not Takeover.objects.exists()
    assert_accessible(portal.page)
    assert errors == []
    assert_csp_clean(portal)


def test_a_refusal_names_the_holder_and_an_end_elsewhere_disconnects(
    world: World,
    call: Conversation,
    stand_in: TakeOver,
    livekit: LiveKitServer,
    loop: LoopThread,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    room = str(call.livekit_room)
    portal, errors = open_page(contexts, media_browser, world, "supervisor")
    page = portal.page
    portal.goto(f"/conversations/{call.pk}/")
    portal.stream()
    section = page.get_by_role("region", name="Take the call over")
    start = section.get_by_role("button", name="Take over")
    status = section.locator("[data-takeover-status]")

    # Someone else holds it: the server's words, the microphone released.
    other = Takeover.objects.create(
        conversation=call,
        user=world.users["admin"],
        identity="supervisor-cy",
        agent_identity="agent-ava",
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    start.click()
    expect(section.get_by_role("alert")).to_have_text(
        "Not taken over: Taken over by Cy Diaz.", timeout=LIVE_MS
    )
    expect(start).to_be_enabled()
    assert page.evaluate("() => AnyReachPortalTakeover.current()") is None
    Takeover.objects.filter(pk=other.pk).update(ended_at=timezone.now(), ended_by="handed_back")

    # Taken over, then ended elsewhere (the right withdrawn): the page leaves and says why.
    start.click()
    expect(status).to_have_text(SPEAKING)
    expect(section.get_by_role("alert")).to_be_hidden()
    wait_until(
        page,
        lambda: supervisor_in(livekit, loop, room) is not None,
        timeout=LIVEKIT_S,
        what="the supervisor in the room",
    )
    row = takeover.held(call)
    assert row is not None
    Takeover.objects.filter(pk=row.pk).update(
        ended_at=timezone.now(), ended_by=TakeoverEnd.ACCESS_LOST
    )
    portal.send(takeover_event(row, "ended"))
    expect(status).to_have_text(
        "You may no longer take this call over: the call went back to the agent.",
        timeout=LIVE_MS,
    )
    expect(start).to_be_visible()
    wait_until(
        page,
        lambda: supervisor_in(livekit, loop, room) is None,
        timeout=LIVEKIT_S,
        what="the page's participant gone",
    )
    assert "hand_back" not in stand_in.done  # nothing to hand back: it ended there
    assert errors == []
    assert_csp_clean(portal)


def test_leaving_the_page_hands_back(
    world: World,
    call: Conversation,
    stand_in: TakeOver,
    livekit: LiveKitServer,
    loop: LoopThread,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    room = str(call.livekit_room)
    portal, errors = open_page(contexts, media_browser, world, "supervisor")
    portal.goto(f"/conversations/{call.pk}/")
    portal.stream()
    section = portal.page.get_by_role("region", name="Take the call over")
    section.get_by_role("button", name="Take over").click()
    expect(section.locator("[data-takeover-status]")).to_have_text(SPEAKING)
    row = takeover.held(call)
    assert row is not None
    portal.goto("/history/")  # the page goes away: its keepalive request hands back
    wait_until(
        portal.page, lambda: "hand_back" in stand_in.done, timeout=10, what="the unload's hand-back"
    )
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.HANDED_BACK
    wait_until(
        portal.page,
        lambda: supervisor_in(livekit, loop, room) is None,
        timeout=LIVEKIT_S,
        what="the supervisor out of the room",
    )
    # The history lists it (read again: the page may have been rendered before the end).
    portal.goto("/history/")
    expect(portal.page.locator(f'[data-takeover-row="{row.pk}"]')).to_contain_text("Handed back")
    assert errors == []


def test_the_dashboards_dialog_offers_it_and_closing_the_dialog_hands_back(
    world: World,
    call: Conversation,
    stand_in: TakeOver,
    livekit: LiveKitServer,
    loop: LoopThread,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    room = str(call.livekit_room)
    portal, errors = open_page(contexts, media_browser, world, "supervisor")
    page = portal.page
    document = page.goto(f"{ORIGIN}/")
    assert document is not None and document.headers["permissions-policy"] == "microphone=(self)"
    portal.stream()
    portal.send(
        {
            "type": "alert.raised",
            "conversation": {"id": str(call.pk), "is_active": True, "caller_label": "+1 555 0142"},
            "can_listen": True,
            "alert": {"id": "al1", "severity": "warning", "raised_at": timezone.now()},
        }
    )
    page.get_by_role("button", name="Listen").click()
    dialog = page.locator("#listen-dialog")
    section = dialog.get_by_role("region", name="Take the call over")
    section.get_by_role("button", name="Take over").click()
    expect(section.locator("[data-takeover-status]")).to_have_text(SPEAKING)
    assert_accessible(page)  # the dialog with the section, speaking
    row = takeover.held(call)
    assert row is not None
    # The row names the holder after the event's refresh.
    portal.send(takeover_event(row, "started"))
    cell = page.locator(f'tr[data-conversation="{call.pk}"] [data-listeners]')
    expect(cell).to_contain_text("Taken over by Ana Lopez", timeout=LIVE_MS)
    expect(dialog.locator(f'.arl-takeover[data-takeover-id="{row.pk}"]')).to_have_count(1)
    # Closing the dialog removes the section: the call goes back to the agent.
    dialog.get_by_role("button", name="Close").click()
    wait_until(page, lambda: "hand_back" in stand_in.done, timeout=10, what="the hand-back")
    wait_until(
        page,
        lambda: supervisor_in(livekit, loop, room) is None,
        timeout=LIVEKIT_S,
        what="the supervisor out of the room",
    )
    assert errors == []
    assert_csp_clean(portal)


def test_a_viewer_and_qa_have_no_button(
    world: World,
    call: Conversation,
    media_browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    for role in ("viewer", "qa"):
        portal, errors = open_page(contexts, media_browser, world, role)
        document = portal.page.goto(f"{ORIGIN}/conversations/{call.pk}/")
        assert document is not None and "permissions-policy" not in document.headers
        portal.stream()
        expect(portal.page.get_by_role("heading", level=1)).to_have_text("+1 555 0142")
        assert portal.page.get_by_role("button", name="Take over").count() == 0
        assert portal.page.locator("[data-takeover]").count() == 0
        assert portal.page.evaluate("() => window.AnyReachPortalTakeover") is None
        assert_accessible(portal.page)
        assert errors == []
        assert_csp_clean(portal)
