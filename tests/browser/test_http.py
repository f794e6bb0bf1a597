"""Headers and bodies of GET /public/listen-sdk and GET /public/listen (Django test client)."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from anyreach_listen import public
from tests.support.processes import ROOT

STATIC = ROOT / "anyreach_listen" / "static" / "anyreach_listen"

pytestmark = pytest.mark.usefixtures("built_js")


def csp(response: Any) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_sdk_is_cacheable_javascript_any_origin_can_load(client: Client) -> None:
    response = client.get("/public/listen-sdk")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/javascript; charset=utf-8"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "max-age=300" in response["Cache-Control"]
    etag = response["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    body = b"".join(response)
    assert b"AnyReach" in body
    again = client.get("/public/listen-sdk", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again["ETag"] == etag


def test_sdk_is_small_and_free_of_livekit_client() -> None:
    sdk = (STATIC / "listen-sdk.js").read_bytes()
    assert len(gzip.compress(sdk, 9)) <= 4096
    for marker in (b"RTCPeerConnection", b"livekit", b"LiveKit", b"Room"):
        assert marker not in sdk.replace(b"LiveKit server", b"")


def test_production_frame_has_livekit_and_no_fake_adapter() -> None:
    frame = (STATIC / "listen-frame.js").read_bytes()
    assert b"RTCPeerConnection" in frame
    assert b"__anyreachFake" not in frame and b"fake" not in frame.lower()
    assert not list(STATIC.rglob("*test*.js")), "the test bundle must never be in the static dir"
    assert (ROOT / "js" / "dist-test" / "listen-frame-test.js").exists()


def test_frame_page_headers(client: Client, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "LIVEKIT_URL": "wss://lk.example.com"}
    response = client.get("/public/listen")
    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    assert response["Referrer-Policy"] == "no-referrer"
    policy = csp(response)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "wss://lk.example.com https://lk.example.com"
    assert policy["media-src"] == "'self' blob: mediastream:"
    assert policy["frame-ancestors"] == "*"
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "style=" not in html and not re.search(r"\son\w+=", html)
    src = re.search(r'<script src="([^"]+)"', html)
    assert src is not None
    script = client.get(src.group(1).replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"] == "application/javascript; charset=utf-8"
    assert "immutable" in script["Cache-Control"]


def test_frame_links_its_bundle_by_content_hash(client: Client) -> None:
    html = client.get("/public/listen").content.decode()
    digest = hashlib.sha256((STATIC / "listen-frame.js").read_bytes()).hexdigest()
    assert f'src="/public/listen-frame.js?v={digest[:12]}"' in html
    hashed = client.get(f"/public/listen-frame.js?v={digest[:12]}")
    assert hashed["Cache-Control"] == "public, max-age=31536000, immutable"
    # Another version's name (a stale document) gets today's bundle, never for ever.
    for stale in ("/public/listen-frame.js?v=000000000000", "/public/listen-frame.js"):
        response = client.get(stale)
        assert response.status_code == 200
        assert response["Cache-Control"] == "public, max-age=300"


def test_frame_page_is_cached_like_the_loader_and_revalidated(
    client: Client, settings: Any
) -> None:
    response = client.get("/public/listen")
    assert response["Cache-Control"] == "public, max-age=300"
    etag = response["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = client.get("/public/listen", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again["Content-Security-Policy"] == response["Content-Security-Policy"]
    assert again["Cache-Control"] == "public, max-age=300"
    # A new policy is a new version: a revalidating browser gets it.
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "EMBED_ORIGINS": ["https://crm.example.com"],
    }
    changed = client.get("/public/listen", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert "https://crm.example.com" in changed["Content-Security-Policy"]


def test_shipped_bundles_ask_chromium_to_compile_eagerly() -> None:
    # The explicit compile hint must be the file's first line to count.
    for name in ("listen-frame.js", "listen-sdk.js"):
        first = (STATIC / name).read_bytes().split(b"\n", 1)[0]
        assert first == b"//# allFunctionsCalledOnLoad", name


def test_frame_ancestors_and_connect_src_follow_settings(client: Client, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "EMBED_ORIGINS": ["https://crm.example.com", "http://localhost:8000"],
    }
    policy = csp(client.get("/public/listen"))
    assert policy["frame-ancestors"] == "https://crm.example.com http://localhost:8000"
    assert policy["connect-src"] == "ws://127.0.0.1:7880 http://127.0.0.1:7880"


def test_frame_without_livekit_url_connects_nowhere(client: Client, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "LIVEKIT_URL": ""}
    assert csp(client.get("/public/listen"))["connect-src"] == "'none'"


def test_unbuilt_bundle_is_a_clear_503(client: Client, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(public, "SDK_FILE", tmp_path / "listen-sdk.js")
    response = client.get("/public/listen-sdk")
    assert response.status_code == 503
    assert b"make setup" in response.content


def test_only_get_and_head(client: Client) -> None:
    assert client.post("/public/listen-sdk").status_code == 405
    assert client.head("/public/listen-sdk").status_code == 200
