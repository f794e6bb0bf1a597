"""config/settings.py's Content-Security-Policy (SECURE_CSP, Django's CSP middleware) on every page.

Each portal page (and the admin's "Listen live" page, which embeds the same
panel) is fetched as the role that sees it: the header must forbid inline
script, allow what the page needs (its scripts, the event stream's websocket,
the listen frame), and the HTML must hold no script the policy would block.
The hidden frame keeps its own stricter policy. The pages offering "Take over"
(to those who may take calls over) also reach the LiveKit server and may use the
microphone; no other page, nor anyone else's copy of those pages, does.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anyreach_listen.conf import listen_settings
from anyreach_listen.public import livekit_origins
from tests.support.world import World, login

EXECUTABLE_TYPES = {"", "text/javascript", "module", "application/javascript"}


def directives(header: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


class Markup(HTMLParser):
    """Every script tag's attributes, and every inline handler or style attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_code: list[str] = []
        self.style_attributes: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.inline_code.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self.style_attributes.append(f"<{tag} style={value!r}>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.inline_code.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = attributes

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        script = self._in_script
        if script is not None and data.strip() and (script.get("type") or "") in EXECUTABLE_TYPES:
            self.inline_code.append(f"<script>{data.strip()[:80]}")


def pages(world: World) -> dict[str, tuple[str, str | None]]:
    """Every page by name: (url, who fetches it)."""
    live = world.conversations["in_progress"].pk
    ended = world.conversations["completed"].pk  # its transcript review instead of catch-up
    return {
        "login": ("/accounts/login/", None),
        "dashboard": ("/", "supervisor"),
        "conversation": (f"/conversations/{live}/", "supervisor"),
        "completed conversation": (f"/conversations/{ended}/", "supervisor"),
        "wall": ("/wall/", "supervisor"),
        "history": ("/history/", "admin"),
        "organization": (f"/organization/{world.org.pk}/", "admin"),
        "password change": ("/accounts/password_change/", "viewer"),
        "admin listen": (f"/admin/anyreach_listen/conversation/{live}/listen/", "root"),
    }


PAGE_NAMES = [
    "login",
    "dashboard",
    "conversation",
    "completed conversation",
    "wall",
    "history",
    "organization",
    "password change",
    "admin listen",
]


def fetch(client: Client, world: World, url: str, who: str | None) -> tuple[str, str]:
    if who == "root":
        User.objects.create_superuser("root", "root@example.com", "pw")
        assert client.login(username="root", password="pw")
    elif who:
        login(client, who)
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response["Content-Security-Policy"], response.content.decode()


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_every_page_sends_a_policy_without_inline_script(
    client: Client, world: World, name: str
) -> None:
    url, who = pages(world)[name]
    header, html = fetch(client, world, url, who)
    policy = directives(header)
    script_src = policy["script-src"]
    assert "'self'" in script_src
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    # The event stream's websocket (same origin) and the listen frame (same origin).
    assert "'self'" in policy["connect-src"] and "'self'" in policy["frame-src"]
    assert policy["frame-ancestors"] == ["'none'"]

    markup = Markup()
    markup.feed(html)
    assert markup.inline_code == [], url
    assert markup.scripts, url  # htmx at least: the check below is not vacuous
    nonces = [v[len("'nonce-") : -1] for v in script_src if v.startswith("'nonce-")]
    for script in markup.scripts:
        assert script.get("src"), (url, script)
        if "nonce" in script:
            assert nonces == [script["nonce"]], (url, script)
    if not url.startswith("/admin/"):  # the admin site's own templates are Django's
        assert markup.style_attributes == [], url


def test_the_list_names_every_portal_page(world: World) -> None:
    from portal.urls import urlpatterns

    html_pages = {p.name for p in urlpatterns} - {
        "wall-tile",
        "conversation-transcript",  # a fragment of lines the conversation page fetches
        "listen-dialog",  # a panel fragment the dashboard fetches (no script, no style)
        "conversation-presence",  # the "Listening now" fragment the page refetches
        "give-guidance",  # a POST answering a status fragment
        "take-over",  # POSTs answering JSON (the takeover section's script)
        "hand-back",
        "create-api-key",
        "revoke-api-key",
        "change-role",
        "remove-member",
        "create-alert-rule",
        "delete-alert-rule",
        "organizations",
    }
    assert html_pages == {"dashboard", "conversation", "wall", "history", "organization"}
    assert set(pages(world)) == set(PAGE_NAMES)


def test_pages_with_listen_assets_nonce_their_scripts(client: Client, world: World) -> None:
    header, html = fetch(client, world, "/wall/", "supervisor")
    [nonce] = [v for v in directives(header)["script-src"] if v.startswith("'nonce-")]
    markup = Markup()
    markup.feed(html)
    sources = {s["src"]: s.get("nonce") for s in markup.scripts}
    for src in ("/public/listen-sdk", "/static/anyreach_listen/events.js"):
        assert sources[src] == nonce[len("'nonce-") : -1]


def test_nonces_differ_between_responses(client: Client, world: World) -> None:
    login(client, "supervisor")
    first = directives(client.get("/wall/")["Content-Security-Policy"])["script-src"]
    second = directives(client.get("/wall/")["Content-Security-Policy"])["script-src"]
    assert first != second


def test_the_lockout_page_sends_the_policy(world: World, settings: Any) -> None:
    settings.AXES_ENABLED = True
    client = Client(REMOTE_ADDR="198.51.100.20")
    for _ in range(settings.LOGIN_FAILURE_LIMITS["username"]):
        response = client.post("/accounts/login/", {"username": "qa", "password": "wrong"})
    assert response.status_code == 429
    script_src = directives(response["Content-Security-Policy"])["script-src"]
    assert "'unsafe-inline'" not in script_src
    markup = Markup()
    markup.feed(response.content.decode())
    assert markup.inline_code == [] and markup.style_attributes == []


def test_the_frame_keeps_its_own_stricter_policy(client: Client, db: None) -> None:
    response = client.get("/public/listen")
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["*"]  # EMBED_ORIGINS, not the portal's 'none'


# ---- "Take over": LiveKit in connect-src and the microphone, only where it is offered ----

LIVEKIT_ORIGINS = ["ws://127.0.0.1:7880", "http://127.0.0.1:7880"]  # the test LIVEKIT_URL's


def test_the_test_livekit_url_gives_these_origins() -> None:
    assert livekit_origins(listen_settings.LIVEKIT_URL) == LIVEKIT_ORIGINS


@pytest.mark.parametrize(
    ("name", "who", "offered"),
    [
        ("conversation", "supervisor", True),
        ("conversation", "admin", True),
        ("dashboard", "supervisor", True),  # its listen dialog offers it
        ("conversation", "qa", False),  # QA may listen, never take over
        ("dashboard", "qa", False),
        ("conversation", "viewer", False),
        ("completed conversation", "supervisor", False),  # nobody to speak with
        ("wall", "supervisor", False),
        ("history", "admin", False),
        ("organization", "admin", False),
    ],
)
def test_only_pages_offering_take_over_reach_livekit_and_the_microphone(
    client: Client, world: World, name: str, who: str, offered: bool
) -> None:
    url, _ = pages(world)[name]
    login(client, who)
    response = client.get(url)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    html = response.content.decode()
    if offered:
        assert policy["connect-src"] == ["'self'", *LIVEKIT_ORIGINS]
        assert response["Permissions-Policy"] == "microphone=(self)"
        assert "/static/portal/takeover.js" in html
    else:
        assert policy["connect-src"] == ["'self'"]
        assert "Permissions-Policy" not in response
        assert "takeover.js" not in html
    # Nothing else changes: the same policy as every other page, connect-src aside.
    base = directives(login(Client(), "viewer").get("/wall/")["Content-Security-Policy"])
    for directive, values in policy.items():
        if directive not in ("connect-src", "script-src"):  # script-src: its own nonce
            assert values == base[directive], directive
    assert [v for v in policy["script-src"] if not v.startswith("'nonce-")] == ["'self'"]


def test_an_htmx_refresh_of_the_rows_carries_no_page_policy_changes(
    client: Client, world: World
) -> None:
    login(client, "supervisor")
    rows = client.get("/", headers={"HX-Request": "true"})
    assert directives(rows["Content-Security-Policy"])["connect-src"] == ["'self'"]
    assert "Permissions-Policy" not in rows
