"""The browser SDK against livekit-client used directly, in Chromium, on one call.

    .venv/bin/python bench/bench_sdk.py [--quick] [--joins N] [--listen-seconds S]

B2 (connect and transcript latency), B3 (first audio) and B6 (asset sizes): what the
SDK's hidden frame costs an embedding site over livekit-client on the page itself
(``js/bench-src/direct.ts``), measured on its own stack with one looping simulated
call. What each row compares and how to run it: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

django.setup()  # the test support modules read the app's settings
# livekit-server --dev signs with its public 6-byte secret "secret": no news here.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

from playwright.sync_api import BrowserContext, Frame, Page  # noqa: E402

from bench.sdk_probe import ProbeThread, parse_text  # noqa: E402
from tests.browser.fixtures import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    shared_browser,
    stop_shared_browser,
)
from tests.browser.pages import EmbeddingSite  # noqa: E402
from tests.e2e.sdk_pages import listen_frame  # noqa: E402
from tests.support.processes import wait_until  # noqa: E402
from tests.support.stack import Call, Stack, running_stack, simulated_call  # noqa: E402

STATIC = ROOT / "anyreach_listen" / "static" / "anyreach_listen"
BENCH_JS = ROOT / "js" / "dist-test" / "bench"
READ_SCOPE = "conversations:read_sensitive"
STEP_TIMEOUT = 20.0  # one join's connect or first audio; the SDK's own timeout is 15 s
TOTAL_DEADLINE = 900.0
DWELL_MS = 1000  # prepared joins: page load -> click  # the whole run, stack included

# Runs in every document (the cross-origin listen frame included) before its
# scripts. Records, on one wall clock (timeOrigin + now), when the signal
# WebSocket and the peer connections progress, the handshake messages, and the
# first inbound audio bytes (getStats, polled from the first audio track on).
# Bench only: no production code knows about it; message contents are never
# recorded (commands carry the token).
INSTRUMENT_JS = """
(() => {
  if (Object.prototype.hasOwnProperty.call(window, "__bench")) return;
  const now = () => performance.timeOrigin + performance.now();
  const bench = { marks: [], firstAudio: null };
  Object.defineProperty(window, "__bench", { value: bench });
  const mark = (name) => bench.marks.push([name, now()]);
  const NativeWS = window.WebSocket;
  window.WebSocket = class extends NativeWS {
    constructor(...args) {
      super(...args);
      mark("ws-new");
      this.addEventListener("open", () => mark("ws-open"), { once: true });
      this.addEventListener("message", () => mark("ws-first-message"), { once: true });
    }
  };
  const NativePC = window.RTCPeerConnection;
  const watch = (pc) => {
    const tick = () => {
      if (bench.firstAudio !== null || pc.connectionState === "closed") return;
      pc.getStats().then((report) => {
        let bytes = 0;
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "audio") bytes += s.bytesReceived || 0;
        });
        if (bytes > 0 && bench.firstAudio === null) {
          bench.firstAudio = now();
          mark("first-audio");
        } else {
          setTimeout(tick, 5);
        }
      });
    };
    tick();
  };
  window.RTCPeerConnection = class extends NativePC {
    constructor(...args) {
      super(...args);
      mark("pc-new");
      let watching = false;
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "connected") mark("pc-connected");
      });
      this.addEventListener("track", (e) => {
        if (e.track.kind !== "audio" || watching) return;
        watching = true;
        mark("track");
        watch(this);
      });
    }
  };
  const portPost = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (msg, ...rest) {
    if (msg && msg.type === "command") mark("cmd-" + msg.name);
    if (msg && msg.type === "event" && msg.name === "state") mark("state-" + msg.data.state);
    if (msg && msg.type === "reply") mark("reply");
    return portPost.call(this, msg, ...rest);
  };
  window.addEventListener("message", (e) => {
    const type = e.data && e.data.protocol === "anyreach-listen" ? e.data.type : null;
    if (type) mark("got-" + type);
  }, true);
  document.addEventListener("DOMContentLoaded", () => mark("dom-content-loaded"));
  // livekit-client's work before it opens the signal WebSocket: its first offer.
  const nativeOffer = NativePC.prototype.createOffer;
  NativePC.prototype.createOffer = function (...args) {
    mark("offer-start");
    return nativeOffer.apply(this, args).then((offer) => { mark("offer-done"); return offer; });
  };
})();
"""

# The bench page's own script: `prepare` (before the click) and the click.
HARNESS_JS = """
window.run = { t0: null, connected: null, error: null, session: null, kind: null, grant: null };
const benchNow = () => performance.timeOrigin + performance.now();
// The page's load event: the SDK loader injects its spare frame after it.
window.addEventListener("load", () => { run.pageLoaded = benchNow(); });
function benchOpen(kind, grant) {
  if (kind === "sdk" || kind === "cold") {
    const s = AnyReach.listen({ url: grant.url, token: grant.token });
    s.on("error", (e) => { run.error = e.message; });
    return { connect: () => s.connect(), end: () => s.end() };
  }
  const d = directListen(grant.url, grant.token);
  return { connect: d.connect, end: d.disconnect, prepare: d.prepare };
}
function benchPrepare(kind, grant, early) {
  run.kind = kind;
  run.grant = grant;
  if (!early) return;
  run.session = benchOpen(kind, grant);
  if (run.session.prepare) run.session.prepare();
}
document.getElementById("go").addEventListener("click", () => {
  run.t0 = benchNow();
  const start = () => {
    const s = run.session || (run.session = benchOpen(run.kind, run.grant));
    s.connect().then(
      () => { run.connected = benchNow(); },
      (e) => { run.error = String((e && e.message) || e); },
    );
  };
  if (run.kind !== "lazy") return start();
  // livekit-client fetched and run on the click, as the SDK's frame does.
  const script = document.createElement("script");
  script.src = "/bench/direct.js";
  script.onload = () => { run.loaded = benchNow(); start(); };
  script.onerror = () => { run.error = "/bench/direct.js did not load"; };
  document.head.appendChild(script);
});
"""

# Both listeners in one page (one clock): an SDK session and a direct Room.
PAIR_JS = """
async ([sdkGrant, directGrant]) => {
  const now = () => performance.timeOrigin + performance.now();
  window.pair = { sdk: [], direct: null, errors: [] };
  const s = AnyReach.listen(sdkGrant);
  s.on("transcript", (t) => pair.sdk.push([t, now()]));
  s.on("error", (e) => pair.errors.push(e.message));
  const d = directListen(directGrant.url, directGrant.token);
  pair.direct = d.transcripts;
  pair.end = () => Promise.all([s.end(), d.disconnect()]);
  await Promise.all([s.connect(), d.connect()]);
}
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_js() -> None:
    subprocess.run(["make", "-s", "-C", str(ROOT / "js"), "build", "bench"], check=True)


# ---------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def p50(values: list[float]) -> float:
    return percentile(values, 50)


def p95(values: list[float]) -> float:
    return percentile(values, 95)


def ms(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base else "n/a"


# ---------------------------------------------------------------- the stack


def bench_stack(tmp: Path) -> contextlib.AbstractContextManager[Stack]:
    """The end-to-end tests' stack: livekit-server --dev + daphne on a seeded SQLite file."""
    return running_stack(tmp)


@dataclass
class Minter:
    """Listener grants through the real API; a fresh key when the rate limit says so."""

    stack: Stack
    call: Call
    key: str = ""

    def grant(self) -> dict[str, str]:
        if not self.key:
            self.key = self.stack.seed["api_keys"]["read_sensitive"]
        for _ in range(2):
            response = self.stack.mint(self.call.conversation_id, self.key)
            if response.status_code == 429:
                name = f"bench-{uuid.uuid4().hex[:6]}"
                self.key = self.stack.manage(
                    "create_api_key", "demo", "--name", name, "--scope", READ_SCOPE
                ).strip()
                continue
            response.raise_for_status()
            data = response.json()
            return {"url": data["url"], "token": data["token"]}
        raise RuntimeError("the listener-token API kept answering 429")


def browser_context(profile: Path, *, incognito: bool) -> BrowserContext:
    """The returning user's browser: a profile on disk. Chromium keeps V8's code cache
    (compiled scripts, by URL and site) only in such a profile; an off-the-record
    context, Playwright's ``new_context()``, compiles every script from scratch."""
    browser = shared_browser()
    if incognito:
        return browser.new_context()
    return browser.browser_type.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )


# ---------------------------------------------------------------- one join


@dataclass
class Join:
    kind: str  # "sdk" | "cold" (the SDK with data-prewarm="off") | "direct" | "lazy"
    early: bool  # listen()/new Room at page load (prepared) vs in the click (chained)
    connect_ms: float
    first_audio_ms: float
    marks: dict[str, float] = field(default_factory=dict)  # ms after the click


def page_html(kind: str, sdk_url: str) -> str:
    """The SDK ("cold": without its spare frame), or livekit-client (direct), loaded with
    the page; "lazy" loads livekit-client on the click."""
    src = {"sdk": sdk_url, "cold": sdk_url, "direct": "/bench/direct.js"}.get(kind)
    attrs = " data-prewarm='off'" if kind == "cold" else ""
    script = f"<script src='{src}'{attrs}></script>" if src else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>bench</title>"
        f"{script}</head><body><button id='go'>Listen</button>"
        f"<script>{HARNESS_JS}</script></body></html>"
    )


def frame_timings(frame: Frame) -> dict[str, float]:
    """The frame document's navigation and bundle timings, on the wall clock."""
    result: dict[str, float] = frame.evaluate(
        """() => {
            const o = performance.timeOrigin, out = { "frame-nav-start": o };
            const nav = performance.getEntriesByType("navigation")[0];
            if (nav) out["frame-html-end"] = o + nav.responseEnd;
            for (const r of performance.getEntriesByType("resource")) {
              if (r.name.includes("listen-frame")) {
                out["bundle-start"] = o + r.startTime;
                out["bundle-end"] = o + r.responseEnd;
              }
            }
            return out;
        }"""
    )
    return result


def marks_of(target: Page | Frame, prefix: str = "") -> dict[str, float]:
    raw: list[list[Any]] = target.evaluate("() => window.__bench.marks")
    found: dict[str, float] = {}
    for name, at in raw:
        found.setdefault(prefix + str(name), float(at))  # the first of each
    return found


def one_join(
    context: BrowserContext,
    site: EmbeddingSite,
    sdk_url: str,
    grant: dict[str, str],
    kind: str,
    early: bool,
) -> Join:
    page = context.new_page()
    try:
        page.goto(site.add(f"/{kind}-{uuid.uuid4().hex[:8]}.html", page_html(kind, sdk_url)))
        page.wait_for_function("() => window.run && document.readyState === 'complete'")
        page.evaluate("([k, g, e]) => benchPrepare(k, g, e)", [kind, grant, early])
        if early:
            # The user looks at the page before clicking: whatever listen() or
            # prepareConnection() started has this long to finish (a modelled dwell).
            page.wait_for_timeout(DWELL_MS)
        page.click("#go")
        page.wait_for_function(
            "() => run.connected !== null || run.error !== null", timeout=STEP_TIMEOUT * 1000
        )
        error = page.evaluate("() => run.error")
        if error:
            raise RuntimeError(f"{kind} connect failed: {error}")
        t0, connected = page.evaluate("() => [run.t0, run.connected]")
        frame = listen_frame(page, timeout=5) if kind in ("sdk", "cold") else None
        audio_doc: Page | Frame = frame or page
        first_audio = wait_until(
            lambda: audio_doc.evaluate("() => window.__bench.firstAudio"),
            timeout=STEP_TIMEOUT,
            what=f"first audio ({kind})",
        )
        marks = marks_of(page)
        loaded, page_loaded = page.evaluate("() => [run.loaded || null, run.pageLoaded]")
        if loaded:
            marks["library-loaded"] = float(loaded)
        marks["page-load"] = float(page_loaded)
        if frame is not None:
            marks.update(marks_of(frame, "frame:"))
            marks.update(frame_timings(frame))
        relative = {name: at - t0 for name, at in marks.items()}
        page.evaluate("() => run.session.end()")
        return Join(kind, early, connected - t0, first_audio - t0, relative)
    finally:
        page.close()


# ---------------------------------------------------------------- transcripts


@dataclass
class TranscriptResult:
    deltas: list[float]  # SDK arrival - direct arrival, same update, same page
    sdk_latency: list[float]  # probe publish -> SDK handler
    direct_latency: list[float]  # probe publish -> direct handler
    matched: int
    only_sdk: int
    only_direct: int
    clock_error_ms: float


def clock_offset(page: Page) -> tuple[float, float]:
    """The page clock minus time.time(), in ms, from the tightest of a few round trips."""
    best: tuple[float, float] | None = None
    for _ in range(15):
        before = time.time() * 1000
        page_now = float(page.evaluate("() => performance.timeOrigin + performance.now()"))
        after = time.time() * 1000
        sample = (page_now - (before + after) / 2, (after - before) / 2)
        if best is None or sample[1] < best[1]:
            best = sample
    assert best is not None
    return best


def transcripts_phase(
    context: BrowserContext,
    site: EmbeddingSite,
    sdk_url: str,
    stack: Stack,
    minter: Minter,
    call: Call,
    seconds: float,
) -> TranscriptResult:
    page = context.new_page()
    try:
        html = (
            "<!doctype html><html><head><meta charset='utf-8'><title>pair</title>"
            f"<script src='{sdk_url}'></script><script src='/bench/direct.js'></script>"
            "</head><body></body></html>"
        )
        page.goto(site.add(f"/pair-{uuid.uuid4().hex[:8]}.html", html))
        page.wait_for_function("() => window.AnyReach && window.directListen")
        page.evaluate(PAIR_JS, [minter.grant(), minter.grant()])
        offset, error = clock_offset(page)
        probe_token = stack.livekit.token(
            call.room_name,
            f"bench-probe-{uuid.uuid4().hex[:6]}",
            kind="agent",
            can_publish=True,
            can_publish_data=True,
            can_subscribe=False,
        )
        probe = ProbeThread(stack.livekit.url, probe_token, interval=0.1)
        probe.start()
        probe.wait_started(timeout=STEP_TIMEOUT)
        deadline = time.monotonic() + seconds
        # Let the call and the probe talk; poll the page so a failure shows early.
        wait_until(
            lambda: time.monotonic() >= deadline or page.evaluate("() => pair.errors.length"),
            timeout=seconds + 5,
            interval=0.25,
            what="the transcript window",
        )
        sent = probe.finish(timeout=STEP_TIMEOUT)
        errors = page.evaluate("() => pair.errors")
        if errors:
            raise RuntimeError(f"the SDK session failed: {errors}")
        # The last probe segments may still be in flight: wait until the SDK has them all.
        wait_until(
            lambda: page.evaluate(
                "(n) => pair.sdk.filter(([t]) => t.text.startsWith('probe-ts ')).length >= n",
                sent,
            ),
            timeout=5,
            what="the last probe segments",
        )
        sdk, direct = page.evaluate("() => [pair.sdk, pair.direct]")
        page.evaluate("() => pair.end()")
    finally:
        page.close()

    def keyed(events: list[list[Any]]) -> dict[tuple[str, str, bool], float]:
        out: dict[tuple[str, str, bool], float] = {}
        for t, at in events:
            out.setdefault((t["id"], t["text"], bool(t["final"])), float(at))
        return out

    by_sdk, by_direct = keyed(sdk), keyed(direct)
    common = sorted(set(by_sdk) & set(by_direct), key=lambda k: by_direct[k])
    deltas = [by_sdk[k] - by_direct[k] for k in common]
    sdk_latency, direct_latency = [], []
    for key in common:
        published = parse_text(key[1])
        if published is not None:
            sdk_latency.append(by_sdk[key] - offset - published)
            direct_latency.append(by_direct[key] - offset - published)
    return TranscriptResult(
        deltas,
        sdk_latency,
        direct_latency,
        matched=len(common),
        only_sdk=len(set(by_sdk) - set(by_direct)),
        only_direct=len(set(by_direct) - set(by_sdk)),
        clock_error_ms=error,
    )


# ---------------------------------------------------------------- B6


@dataclass
class Sizes:
    loader_gzip: int
    frame: int
    frame_gzip: int
    livekit: int
    livekit_gzip: int


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9))


def sizes() -> Sizes:
    frame, livekit = STATIC / "listen-frame.js", BENCH_JS / "livekit-only.js"
    return Sizes(
        loader_gzip=gz(STATIC / "listen-sdk.js"),
        frame=frame.stat().st_size,
        frame_gzip=gz(frame),
        livekit=livekit.stat().st_size,
        livekit_gzip=gz(livekit),
    )


# ---------------------------------------------------------------- report

# The phases of a join, in the order they happen: (label, from mark, to mark).
# "t0" is the click; "frame:" marks come from the frame's document.
FRAME_BOOT = [
    ("click -> frame navigation starts", "t0", "frame-nav-start"),
    ("frame HTML (request -> response end)", "frame-nav-start", "frame-html-end"),
    ("HTML received -> bundle requested (commit, parse)", "frame-html-end", "bundle-start"),
    ("bundle fetched (start -> end)", "bundle-start", "bundle-end"),
    ("bundle compiled + run (-> DOMContentLoaded)", "bundle-end", "frame:dom-content-loaded"),
    ("DOMContentLoaded -> ready at the page", "frame:dom-content-loaded", "got-ready"),
    ("ready -> connect command (handshake)", "got-ready", "cmd-connect"),
]
CONNECT = [
    ("connect command -> first offer requested", "cmd-connect", "frame:offer-start"),
    ("first offer created", "frame:offer-start", "frame:offer-done"),
    ("offer -> signal WebSocket opened", "frame:offer-done", "frame:ws-new"),
    ("WebSocket connect (new -> open)", "frame:ws-new", "frame:ws-open"),
    ("join response (open -> first message)", "frame:ws-open", "frame:ws-first-message"),
    ("join -> peer connection connected", "frame:ws-first-message", "frame:pc-connected"),
    ("pc connected -> page's connect() resolves", "frame:pc-connected", "connected"),
    ("click -> first audio bytes", "t0", "first-audio"),
]
SDK_CHAINED = [
    ("(page load event -> click)", "page-load", "t0"),
    *FRAME_BOOT,
    ("= click -> connect command", "t0", "cmd-connect"),
    *CONNECT,
]
SDK_PREPARED = [("click -> connect command (frame ready)", "t0", "cmd-connect"), *CONNECT]
ON_PAGE = [(label, a.replace("frame:", ""), b.replace("frame:", "")) for label, a, b in CONNECT[1:]]
DIRECT = [("click -> first offer requested", "t0", "offer-start"), *ON_PAGE]
LAZY = [
    ("click -> livekit-client fetched and run", "t0", "library-loaded"),
    ("-> first offer requested", "library-loaded", "offer-start"),
    *ON_PAGE,
]


def paired_ratios(
    joins: list[Join], early: bool, base: str = "direct", ours: str = "sdk"
) -> list[float]:
    """SDK / baseline connect time of the joins of each round (run back to back, so
    both saw about the same machine load)."""
    sdk = [j.connect_ms for j in joins if j.kind == ours and j.early == early]
    other = [j.connect_ms for j in joins if j.kind == base and j.early == early]
    return [a / b for a, b in zip(sdk, other, strict=True) if b]


def profile(joins: list[Join], phases: list[tuple[str, str, str]], title: str) -> None:
    log(f"\nprofile: {title} (median ms over {len(joins)} joins)")
    for label, start, end in phases:
        values = []
        for join in joins:
            marks = {"t0": 0.0, "connected": join.connect_ms, "first-audio": join.first_audio_ms}
            marks.update(join.marks)
            if start in marks and end in marks:
                values.append(marks[end] - marks[start])
        shown = f"{statistics.median(values):7.1f}" if values else "    n/a"
        log(f"  {label:48s} {shown}")


def table(rows: list[tuple[str, list[float], list[float]]]) -> list[str]:
    lines = [
        "| measure | SDK p50 | SDK p95 | direct p50 | direct p95 | SDK/direct p50 "
        "| SDK/direct p95 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, ours, base in rows:
        lines.append(
            f"| {label} | {ms(p50(ours))} | {ms(p95(ours))} | {ms(p50(base))} | {ms(p95(base))} "
            f"| {ratio(p50(ours), p50(base))} | {ratio(p95(ours), p95(base))} |"
        )
    return lines


def report(joins: list[Join], tr: TranscriptResult, size: Sizes, n: int, *, incognito: bool) -> str:
    def pick(kind: str, early: bool) -> list[Join]:
        return [j for j in joins if j.kind == kind and j.early == early]

    chained_sdk, chained_direct = pick("sdk", False), pick("direct", False)
    chained_lazy, chained_cold = pick("lazy", False), pick("cold", False)
    early_sdk, early_direct = pick("sdk", True), pick("direct", True)
    after_load = [-j.marks["page-load"] for j in chained_sdk if "page-load" in j.marks]
    out = ["### B2 connect and transcripts: SDK vs direct livekit-client (Chromium)", ""]
    browser = (
        "an off-the-record context: no V8 code cache"
        if incognito
        else "a browser profile on disk: HTTP and V8 code caches warm"
    )

    def compared(
        measure: str, field: str, chained: str = "chained"
    ) -> list[tuple[str, list[float], list[float]]]:
        """The click rows of one measure: chained, lazy baseline, without the spare frame,
        listen() early."""

        def values(joins: list[Any]) -> list[float]:
            return [getattr(j, field) for j in joins]

        return [
            (f"{measure}, {chained} (ms)", values(chained_sdk), values(chained_direct)),
            (
                "the same, baseline loading livekit-client on the click (ms)",
                values(chained_sdk),
                values(chained_lazy),
            ),
            (
                'the same, no spare frame (`data-prewarm="off"`) (ms)',
                values(chained_cold),
                values(chained_direct),
            ),
            (f"{measure}, listen() at page load (ms)", values(early_sdk), values(early_direct)),
        ]

    out += table(
        [
            *compared("click → connect() resolved", "connect_ms", "`listen().connect()` chained"),
            ("agent publish → transcript handler (ms)", tr.sdk_latency, tr.direct_latency),
        ]
    )
    out += [
        # The same update reaching both listeners of one page: the frame's own cost.
        f"| transcript handler, SDK arrival minus direct arrival, same update (ms) "
        f"| {ms(p50(tr.deltas))} | {ms(p95(tr.deltas))} | 0 | 0 | n/a | n/a |",
        "",
        f"Measured: {n} joins of each kind per row, alternating, each a fresh page on another "
        "origin than the SDK host with a freshly minted token, on one looping simulated call "
        f"over loopback (after two unmeasured warm-up joins of each, in {browser}); "
        "the prepared rows "
        f"click {DWELL_MS} ms after page load, the chained rows as soon as the page has "
        f"loaded (its load event → the click: median {p50(after_load):.0f} ms; the SDK "
        "loader injects its spare frame once the page has loaded and is idle, which the "
        "chained click then adopts, as a real page's would; the no-spare row's pages say "
        '`data-prewarm="off"`, so listen() injects its frame on the click); '
        "the direct baseline is "
        "livekit-client on the page with the frame's Room options, loaded with the page "
        "(or on the click, from the HTTP cache like the frame's bundle). Transcripts: one page "
        f"holding an SDK session and a direct Room; {tr.matched} updates both emitted "
        f"({tr.only_sdk} only SDK, {tr.only_direct} only direct); publish times from a "
        f"timestamping agent (clock offset ±{tr.clock_error_ms:.1f} ms).",
        "",
    ]
    out += ["### B3 click → first audio packet at the listener (Chromium)", ""]
    out += table(compared("click → inbound-rtp audio bytes > 0", "first_audio_ms"))
    out += [
        "",
        "Measured: the joins of B2; the first getStats report with inbound audio "
        "bytesReceived > 0 in the listener's peer connection (the hidden frame's for the SDK), "
        "polled every 5 ms from its first audio track on.",
        "",
        "### B6 asset sizes",
        "",
        "| asset | ours (bytes) | baseline (bytes) | ratio |",
        "|---|---:|---:|---:|",
        f"| loader `listen-sdk.js`, gzip -9 | {size.loader_gzip} | 4096 (budget) "
        f"| {size.loader_gzip / 4096:.2f} |",
        f"| frame `listen-frame.js` vs livekit-client alone, minified | {size.frame} "
        f"| {size.livekit} | {size.frame / size.livekit:.3f} |",
        f"| the same, gzip -9 | {size.frame_gzip} | {size.livekit_gzip} "
        f"| {size.frame_gzip / size.livekit_gzip:.3f} |",
        "",
        'Measured: the built bundles; livekit-client alone is `import "livekit-client"` '
        "bundled with the frame's esbuild settings (iife, minify, es2020).",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few joins")
    parser.add_argument("--joins", type=int, help="joins of each kind per row (default 12)")
    parser.add_argument("--listen-seconds", type=float, help="transcript window (default 20)")
    parser.add_argument(
        "--incognito",
        action="store_true",
        help="an off-the-record context: no V8 code cache, a first visit's compile on every join",
    )
    args = parser.parse_args()
    n = args.joins or (3 if args.quick else 12)
    seconds = args.listen_seconds or (6.0 if args.quick else 20.0)
    started = time.monotonic()

    def check_deadline() -> None:
        if time.monotonic() - started > TOTAL_DEADLINE:
            raise TimeoutError(f"the benchmark ran over its {TOTAL_DEADLINE:.0f} s deadline")

    log("building the bundles (make -C js build bench)")
    build_js()
    size = sizes()
    with contextlib.ExitStack() as stack_cm:
        tmp = Path(stack_cm.enter_context(tempfile.TemporaryDirectory(prefix="bench-sdk-")))
        log("starting livekit-server, daphne and a simulated call")
        stack = stack_cm.enter_context(bench_stack(tmp))
        call = stack_cm.enter_context(simulated_call(stack, "--loop"))
        site = stack_cm.enter_context(EmbeddingSite().running())
        # Cached like the frame's bundle (immutable): the lazy baseline loads it on the click.
        site.add(
            "/bench/direct.js",
            (BENCH_JS / "direct.js").read_text(),
            "text/javascript",
            cache_control="public, max-age=31536000, immutable",
        )
        stack_cm.callback(stop_shared_browser)
        context = browser_context(tmp / "profile", incognito=args.incognito)
        stack_cm.callback(context.close)
        context.set_default_timeout(STEP_TIMEOUT * 1000)
        context.add_init_script(INSTRUMENT_JS)
        sdk_url = f"{stack.base_url}/public/listen-sdk"
        minter = Minter(stack, call)

        def join(kind: str, early: bool) -> Join:
            check_deadline()
            if call.proc.poll() is not None:
                raise RuntimeError(f"the simulated call stopped:\n{call.log()[-2000:]}")
            return one_join(context, site, sdk_url, minter.grant(), kind, early)

        # Warm-up, as for a returning user: the HTTP cache, and V8's code cache
        # (made on a script's second run, used from its third; not off the record).
        for kind in ("sdk", "direct", "lazy", "cold") * 2:
            warm = join(kind, False)
            log(f"warm-up {kind}: connect {warm.connect_ms:.0f} ms")
        joins: list[Join] = []
        for early in (False, True):
            kinds = ["sdk", "direct"] if early else ["sdk", "direct", "lazy", "cold"]
            for i in range(n):
                order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]  # rotate who goes first
                for kind in order:
                    result = join(kind, early)
                    joins.append(result)
                    log(
                        f"{'prepared' if early else 'chained':8s} {kind:6s} #{i + 1}: connect "
                        f"{result.connect_ms:6.0f} ms, first audio {result.first_audio_ms:6.0f} ms"
                    )
        for kind, early, phases in [
            ("sdk", False, SDK_CHAINED),
            ("direct", False, DIRECT),
            ("sdk", True, SDK_PREPARED),
            ("direct", True, DIRECT),
            ("lazy", False, LAZY),
            ("cold", False, SDK_CHAINED),
        ]:
            title = f"{kind}, {'prepared' if early else 'chained'}"
            profile([j for j in joins if j.kind == kind and j.early == early], phases, title)
        for early, base, ours in (
            (False, "direct", "sdk"),
            (False, "lazy", "sdk"),
            (False, "direct", "cold"),
            (True, "direct", "sdk"),
        ):
            ratios = paired_ratios(joins, early, base, ours)
            log(
                f"connect, {'prepared' if early else 'chained'}: median of per-round "
                f"{ours}/{base} ratios {statistics.median(ratios):.2f} over {len(ratios)} rounds"
            )
        check_deadline()
        log(f"\ntranscripts: both listeners on one page for {seconds:.0f} s")
        tr = transcripts_phase(context, site, sdk_url, stack, minter, call, seconds)
        log(
            f"  {tr.matched} updates matched, {len(tr.sdk_latency)} probe segments, "
            f"clock offset ±{tr.clock_error_ms:.1f} ms"
        )
    print(report(joins, tr, size, n, incognito=args.incognito))
    return 0


if __name__ == "__main__":
    sys.exit(main())
