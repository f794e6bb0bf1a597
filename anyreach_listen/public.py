"""The browser side, served to any origin: the SDK loader and its hidden frame.

``GET /public/listen-sdk`` is the script pages include; ``GET /public/listen``
is the frame it injects, which loads ``GET /public/listen-frame.js?v=<hash>`` (the
only code that runs livekit-client; immutable under its content hash). Both
documents are cached for ``SDK_MAX_AGE`` and revalidated by ETag. The JavaScript
is built by ``make setup`` (``js/``) into ``static/anyreach_listen/`` and read from
there, so the app works without any static-files server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

from anyreach_listen.access.origins import normalize_origin
from anyreach_listen.conf import listen_settings

STATIC_DIR = Path(__file__).resolve().parent / "static" / "anyreach_listen"
SDK_FILE = STATIC_DIR / "listen-sdk.js"
FRAME_FILE = STATIC_DIR / "listen-frame.js"
JS_CONTENT_TYPE = "application/javascript; charset=utf-8"
SDK_MAX_AGE = 300
IMMUTABLE_MAX_AGE = 365 * 24 * 3600
# The frame document changes only with a deploy (its bundle's hash) or the settings
# (LIVEKIT_URL, EMBED_ORIGINS): cached as long as the loader, it costs a returning
# user no request before the frame's process can commit it.
FRAME_MAX_AGE = SDK_MAX_AGE


@dataclass(frozen=True)
class Bundle:
    content: bytes
    etag: str  # quoted, strong
    version: str  # short content hash, for cache-busting URLs


_bundles: dict[Path, tuple[tuple[int, int], Bundle]] = {}


def load_bundle(path: Path) -> Bundle | None:
    """The file's bytes and hashes, cached until the file changes (None when not built)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _bundles.get(path)
    if cached and cached[0] == key:
        return cached[1]
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    bundle = Bundle(content=content, etag=f'"{digest[:32]}"', version=digest[:12])
    _bundles[path] = (key, bundle)
    return bundle


def _not_built(path: Path) -> HttpResponse:
    return HttpResponse(
        f"{path.name} is not built. Run `make setup` (or `make -C js build`) and restart.",
        status=503,
        content_type="text/plain; charset=utf-8",
    )


def serve_script(request: HttpRequest, path: Path, *, max_age: int) -> HttpResponse:
    """A JavaScript file any origin may load, with an ETag and ``max_age`` caching."""
    bundle = load_bundle(path)
    if bundle is None:
        return _not_built(path)
    response: HttpResponse
    if bundle.etag in parse_etags(request.headers.get("If-None-Match", "")):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(bundle.content, content_type=JS_CONTENT_TYPE)
    response["ETag"] = bundle.etag
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    patch_cache_control(response, public=True, max_age=max_age)
    if max_age == IMMUTABLE_MAX_AGE:
        patch_cache_control(response, immutable=True)
    return response


@require_safe
def listen_sdk(request: HttpRequest) -> HttpResponse:
    """The loader pages include with a script tag; registers ``window.AnyReach.listen``."""
    return serve_script(request, SDK_FILE, max_age=SDK_MAX_AGE)


@require_safe
def listen_frame_script(request: HttpRequest) -> HttpResponse:
    """The frame's script (livekit-client). Immutable when asked for by its content hash."""
    bundle = load_bundle(FRAME_FILE)
    immutable = bundle is not None and request.GET.get("v") == bundle.version
    return serve_script(
        request, FRAME_FILE, max_age=IMMUTABLE_MAX_AGE if immutable else SDK_MAX_AGE
    )


def livekit_origins(url: str) -> list[str]:
    """CSP sources for the LiveKit server: its ws(s) origin and the matching http(s) one."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        return []
    http = normalize_origin(f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}")
    if http is None:
        return []
    ws = ("wss" if parts.scheme == "wss" else "ws") + http[http.index(":") :]
    return [ws, http]


def frame_ancestors(origins: list[str]) -> str:
    if "*" in origins:
        return "*"
    sources = [o for o in (normalize_origin(x) for x in origins) if o]
    return " ".join(sources) or "'none'"


def frame_csp(livekit_url: str, embed_origins: list[str]) -> str:
    connect = " ".join(livekit_origins(livekit_url)) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            f"connect-src {connect}",
            "media-src 'self' blob: mediastream:",
            f"frame-ancestors {frame_ancestors(embed_origins)}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


@require_safe
@xframe_options_exempt
def listen_frame(request: HttpRequest, script_url: str | None = None) -> HttpResponse:
    """The hidden frame the SDK injects. ``script_url`` exists for the test URLconf only."""
    if script_url is None:
        bundle = load_bundle(FRAME_FILE)
        if bundle is None:
            return _not_built(FRAME_FILE)
        script_url = f"{reverse('anyreach_listen:listen-frame-js')}?v={bundle.version}"
    livekit_url: str = listen_settings.LIVEKIT_URL
    page = render(
        request,
        "anyreach_listen/frame.html",
        {"script_url": script_url, "livekit_url": livekit_url},
    )
    policy = frame_csp(livekit_url, listen_settings.EMBED_ORIGINS)
    # The same for every request: its body and policy are its version.
    etag = f'"{hashlib.sha256(page.content + policy.encode()).hexdigest()[:32]}"'
    response: HttpResponse
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        response = HttpResponseNotModified()
    else:
        response = page
    response["ETag"] = etag
    response["Content-Security-Policy"] = policy
    response["Referrer-Policy"] = "no-referrer"
    patch_cache_control(response, public=True, max_age=FRAME_MAX_AGE)
    return response
