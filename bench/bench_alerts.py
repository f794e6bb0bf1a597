"""B7: a phrase said in a call → the alert on a supervisor's dashboard, vs LiveKit alone.

    .venv/bin/python bench/bench_alerts.py [--quick] [--segments N] [--pushes N]

Its own stack (LiveKit, daphne, a real recorder, a looping simulated call) carries a
timestamping agent's segments, which an alert rule matches; one Chromium times each
alert painted on a supervisor's dashboard (the page in front) against the same segment
on a bare livekit-client page, the floor any alert could reach. Then the same alert
from a platform's ``POST …/transcript``. A bench-only websocket client beside the page
and the alert's own ``raised_at`` split each path per hop. How to run and read it:
bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
import httpx  # noqa: E402
from jwt.warnings import InsecureKeyLengthWarning  # noqa: E402

django.setup()  # the test support modules read the app's settings
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright  # noqa: E402

from bench.bench_sdk import BENCH_JS, build_js, clock_offset  # noqa: E402
from bench.events_client import EventsClient  # noqa: E402
from bench.sdk_probe import ProbeThread, parse_text, segment_text  # noqa: E402
from bench.support import log, num, percentile, table  # noqa: E402
from tests.browser.fixtures import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.pages import EmbeddingSite  # noqa: E402
from tests.support.processes import wait_until  # noqa: E402
from tests.support.stack import Stack, recorders, running_stack, simulated_call  # noqa: E402

PHRASE = "probe ts"  # the probe's text is "probe-ts <epoch ms>"
TARGET_P95_MS = 100.0  # the alert painted on the dashboard (issue 21, target 1)
TARGET_SOCKET_P95_MS = 50.0  # the recorder's alert at the supervisor's socket
TARGET_PUSH_P95_MS = 60.0  # a platform's push → the alert at the socket
STEP_TIMEOUT = 30.0
# The per-credential API limit is 60 requests a minute: pushes go at most one a second.
PUSH_INTERVAL = 1.0
# Chromium throttles timers and animation frames of pages that are not in front (and
# of windows it takes for hidden): the dashboard is brought to front, and these keep
# the bare page, behind it, at full speed too.
UNTHROTTLED = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

# The dashboard's side, per segment id: the page's own `anyreach:alert` event, the
# notice in the DOM (dashboard.js's listener ran first: it was registered with the
# page, this one after load) and painted (Element Timing's renderTime for the notice's
# title; else the first task after the next animation frame).
DASHBOARD_JS = """
() => {
  const now = () => performance.timeOrigin + performance.now();
  window.benchAlerts = {};
  window.benchElementTiming = PerformanceObserver.supportedEntryTypes.includes("element");
  if (benchElementTiming) {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const seen = benchAlerts[entry.identifier];
        if (seen && seen.painted === null) {
          seen.painted = performance.timeOrigin + (entry.renderTime || entry.loadTime);
        }
      }
    }).observe({ type: "element" });
  }
  document.addEventListener("anyreach:alert", (event) => {
    const at = now();
    const id = ((event.detail || {}).alert || {}).segment_id || "";
    const notice = document.querySelector("#alert-notices [data-alert-notice]");
    const title = notice && notice.querySelector(".toast__title");
    const seen = { event: at, dom: title ? now() : null, painted: null, frame: null };
    benchAlerts[id] = seen;
    if (title) title.setAttribute("elementtiming", id);
    requestAnimationFrame(() => setTimeout(() => { seen.frame = now(); }, 0));
  });
}
"""

DIRECT_JS = """
async (grant) => {
  window.direct = directListen(grant.url, grant.token);
  await direct.connect();
}
"""


@dataclass
class Alerted:
    """One segment's alert on its way: epoch ms on the bench's clock (None: never seen)."""

    sent: float  # published by the probe, or the push request sent
    bare: float | None = None  # the transcript at the bare livekit-client page
    intake: float | None = None  # the alert's raised_at: the portal began recording it
    socket: float | None = None  # alert.raised at the bench's websocket client
    event: float | None = None  # the page's anyreach:alert event
    dom: float | None = None  # the notice in the dashboard's DOM
    painted: float | None = None  # the notice painted


def sign_in(context: BrowserContext, stack: Stack, role: str) -> Page:
    page = context.new_page()
    page.goto(f"{stack.base_url}/accounts/login/")
    login = stack.seed["users"][role]
    page.get_by_label("Username").fill(login["username"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.base_url}/")
    return page


def create_rule(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.base_url}/core/alert-rules",
        headers={"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"},
        json={"phrase": PHRASE, "role": "agent", "severity": "critical"},
        timeout=10,
    )
    response.raise_for_status()


def grant(stack: Stack, conversation_id: str) -> dict[str, str]:
    response = stack.mint(conversation_id, stack.seed["api_keys"]["read_sensitive"])
    response.raise_for_status()
    data = response.json()
    return {"url": data["url"], "token": data["token"]}


@contextlib.contextmanager
def probe(stack: Stack, room: str, interval: float) -> Iterator[ProbeThread]:
    token = stack.livekit.token(
        room,
        f"bench-probe-{uuid.uuid4().hex[:6]}",
        kind="agent",
        can_publish=True,
        can_publish_data=True,
        can_subscribe=False,
    )
    thread = ProbeThread(stack.livekit.url, token, interval=interval, stream=True)
    thread.start()
    thread.wait_started(timeout=STEP_TIMEOUT)
    try:
        yield thread
    finally:
        if thread.is_alive():
            thread.finish(timeout=STEP_TIMEOUT)


@contextlib.contextmanager
def unthrottled_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *UNTHROTTLED], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def push(stack: Stack, conversation_id: str, count: int) -> dict[str, float]:
    """``count`` final segments with the rule's phrase through the platform's push API,
    one a second; each segment id → the time its request was sent."""
    sent: dict[str, float] = {}
    url = f"{stack.base_url}/core/conversations/{conversation_id}/transcript"
    headers = {"Authorization": f"Bearer {stack.seed['api_keys']['manage']}"}
    with httpx.Client(headers=headers, timeout=10) as client:
        client.get(f"{stack.base_url}/core/openapi.json")  # the connection, opened
        for _ in range(count):
            segment_id = f"SG_push_{uuid.uuid4().hex[:10]}"
            at = time.time() * 1000
            body = {"id": segment_id, "role": "agent", "text": segment_text(at), "final": True}
            response = client.post(url, json={"segments": [body]})
            response.raise_for_status()
            sent[segment_id] = at
            time.sleep(PUSH_INTERVAL)
    return sent


def measure(
    segments: int, interval: float, pushes: int
) -> tuple[dict[str, Alerted], dict[str, Alerted], float, bool]:
    """Recorder then push path: (recorded segments, pushed segments, clock error ms,
    whether the paint times are Element Timing's)."""
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-alerts-")))
        log("starting livekit-server, daphne, a recorder and a simulated call")
        stack = cleanup.enter_context(running_stack(tmp))
        pool = cleanup.enter_context(recorders(stack, 1))
        call = cleanup.enter_context(simulated_call(stack, "--loop"))
        create_rule(stack)
        wait_until(
            lambda: bool(pool.recording(call.room_name)),
            timeout=60,
            what="the recorder joining the call's room",
        )
        site = cleanup.enter_context(EmbeddingSite().running())
        site.add("/bench/direct.js", (BENCH_JS / "direct.js").read_text(), "text/javascript")
        browser = cleanup.enter_context(unthrottled_browser())
        context = browser.new_context()
        cleanup.callback(context.close)
        context.set_default_timeout(STEP_TIMEOUT * 1000)

        dashboard = sign_in(context, stack, "supervisor")
        dashboard.evaluate(DASHBOARD_JS)
        direct = context.new_page()
        direct.goto(site.add(f"/direct-{uuid.uuid4().hex[:8]}.html", DIRECT_PAGE))
        direct.wait_for_function("() => window.directListen")
        direct.evaluate(DIRECT_JS, grant(stack, call.conversation_id))
        dashboard.bring_to_front()  # what a person sees: the dashboard in front
        offsets = {"dashboard": clock_offset(dashboard), "direct": clock_offset(direct)}
        # The supervisor's own session, on a websocket of the bench's beside the page.
        cookies = {c["name"]: c["value"] for c in context.cookies(stack.base_url)}
        client = EventsClient(stack.base_url, cookies)
        client.start()
        cleanup.callback(client.stop)
        client.wait_open(STEP_TIMEOUT)

        with probe(stack, call.room_name, interval) as thread:
            # Warm-up: the recorder learns of a new participant a moment after its first
            # streams (those wait for it, up to recorder_agent.SENDER_WAIT); measure from
            # the first probe alert on the dashboard on.
            wait_until(
                lambda: dashboard.evaluate(
                    "() => Object.keys(benchAlerts).some((id) => id.startsWith('SG_probe_'))"
                ),
                timeout=STEP_TIMEOUT,
                what="the first probe alert",
            )
            warm_ms = time.time() * 1000
            # The probe counts what it sent only when it stops: let it talk for the window.
            until = time.monotonic() + segments * interval
            wait_until(
                lambda: time.monotonic() >= until or not thread.is_alive(),
                timeout=segments * interval + STEP_TIMEOUT,
                interval=0.25,
                what="the probe's window",
            )
            sent = thread.finish(timeout=STEP_TIMEOUT)
        recorded = {
            t["id"]: Alerted(sent=published, bare=at - offsets["direct"][0])
            for t, at in direct.evaluate("() => direct.transcripts")
            if t["final"] and (published := parse_text(t["text"]) or 0) >= warm_ms
        }
        log(f"probe sent {sent}; {len(recorded)} measured after the warm-up; pushing {pushes}")
        pushed = {
            sid: Alerted(sent=at) for sid, at in push(stack, call.conversation_id, pushes).items()
        }

        everything = {**recorded, **pushed}
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: all(
                    dashboard.evaluate("(id) => (benchAlerts[id] || {}).frame != null", sid)
                    for sid in everything
                ),
                timeout=10,
                what="the last alerts",
            )
        page = dashboard.evaluate("() => benchAlerts")
        element_timing = bool(dashboard.evaluate("() => benchElementTiming"))
        shift = offsets["dashboard"][0]
        for at, message in client.of_type("alert.raised"):
            seen = everything.get(message["alert"].get("segment_id", ""))
            if seen is not None and seen.socket is None:
                seen.socket = at
                raised = dt.datetime.fromisoformat(message["alert"]["raised_at"])
                seen.intake = raised.timestamp() * 1000
        for sid, seen in everything.items():
            on_page = page.get(sid)
            if on_page is None:
                continue
            seen.event = on_page["event"] - shift
            seen.dom = on_page["dom"] - shift if on_page["dom"] is not None else None
            painted = on_page["painted"] if element_timing else on_page["frame"]
            seen.painted = painted - shift if painted is not None else None
        direct.evaluate("() => direct.disconnect()")
        missing = [sid for sid, seen in everything.items() if seen.painted is None]
        if missing:
            log(f"not painted on the dashboard: {missing}")
            log(f"the recorder's log, last lines:\n{pool.log(0)[-3000:]}")
    error = max(offsets["dashboard"][1], offsets["direct"][1])
    return recorded, pushed, error, element_timing


DIRECT_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>direct</title>"
    "<script src='/bench/direct.js'></script></head><body></body></html>"
)


def span(seen: dict[str, Alerted], start: str, end: str) -> list[float]:
    """``end`` minus ``start`` (fields of ``Alerted``) for each segment that has both."""
    out = []
    for alerted in seen.values():
        a, b = getattr(alerted, start), getattr(alerted, end)
        if a is not None and b is not None:
            out.append(b - a)
    return out


def row(label: str, values: list[float]) -> list[object]:
    return [label, len(values), num(percentile(values, 50)), num(percentile(values, 95))]


# Each path's hops, in order: (label, from, to).
HOPS = [
    ("→ intake (`raised_at`: the portal begins recording it)", "sent", "intake"),
    ("intake → socket (commit, channel layer, consumer, websocket)", "intake", "socket"),
    ("socket → the page's `anyreach:alert` (its own websocket, events.js)", "socket", "event"),
    ("`anyreach:alert` → notice in the DOM (dashboard.js)", "event", "dom"),
    ("notice in the DOM → painted", "dom", "painted"),
]


def report(
    recorded: dict[str, Alerted],
    pushed: dict[str, Alerted],
    error: float,
    interval: float,
    element_timing: bool,
) -> str:
    ours = span(recorded, "sent", "painted")
    bare = span(recorded, "sent", "bare")
    socket = span(recorded, "sent", "socket")
    push_socket = span(pushed, "sent", "socket")
    push_painted = span(pushed, "sent", "painted")
    missing = sum(1 for a in [*recorded.values(), *pushed.values()] if a.painted is None)
    rows = [
        row("said (probe publishes a final segment) → alert painted on the dashboard", ours),
        row("said → alert at the supervisor's websocket", socket),
        row("said → transcript at a bare livekit-client page (the floor)", bare),
        row("platform `POST …/transcript` sent → alert at the websocket", push_socket),
        row("platform `POST …/transcript` sent → alert painted on the dashboard", push_painted),
    ]
    hops = [
        row(f"said {label}" if start == "sent" else label, span(recorded, start, end))
        for label, start, end in HOPS
    ]
    push_hops = [
        row(f"POST sent {label}" if start == "sent" else label, span(pushed, start, end))
        for label, start, end in HOPS
    ]
    base50, base95 = percentile(bare, 50), percentile(bare, 95)
    p95, socket95, push95 = (
        percentile(ours, 95),
        percentile(socket, 95),
        percentile(push_socket, 95),
    )

    def ratios(values: list[float]) -> str:
        return f"{percentile(values, 50) / base50:.1f}x / {percentile(values, 95) / base95:.1f}x"

    def verdict(value: float, target: float, none_missing: bool = True) -> str:
        return "met" if value <= target and none_missing else "NOT met"

    painted = (
        "Element Timing's render time of the notice's title"
        if element_timing
        else "the first task after the animation frame that follows the notice"
    )
    return "\n".join(
        [
            "### B7 live alert latency (Chromium, recorder, SQLite + in-memory layer)",
            "",
            table(["path", "segments", "p50 ms", "p95 ms"], rows),
            "",
            "Ours ÷ bare (p50 / p95): painted on the dashboard "
            f"{ratios(ours)}, at the websocket {ratios(socket)}; the platform's push at "
            f"the websocket {ratios(push_socket)}, painted {ratios(push_painted)}. "
            f"Alerts never painted on the dashboard: {missing}.",
            "",
            "Per hop, said through the recorder:",
            "",
            table(["hop", "segments", "p50 ms", "p95 ms"], hops),
            "",
            "Per hop, pushed by a platform:",
            "",
            table(["hop", "segments", "p50 ms", "p95 ms"], push_hops),
            "",
            f"Measured: a timestamping agent published one final segment every {interval:g} s "
            "into a looping simulated call's room (measured from its first alert on the "
            "dashboard on); one recorder (`manage.py run_recorder`) "
            'stored them and the rule "probe ts" raised an alert for each; then the same '
            f"segments pushed through `POST /core/conversations/{{id}}/transcript`, one a "
            "second. The dashboard is in front (`bring_to_front`), Chromium's background "
            f"throttling off for the bare page behind it; painted is {painted}. The socket "
            "is a websocket of the bench's, signed in as the same supervisor; intake is "
            "the alert's own `raised_at`. Hops are each one's own percentiles (they do not "
            f"add up). Both pages in one Chromium, clock offset ±{error:.1f} ms.",
            "",
            f"Targets: painted ≤ {TARGET_P95_MS:.0f} ms at p95, none missing: p95 "
            f"{p95:.0f} ms, {missing} missing: {verdict(p95, TARGET_P95_MS, not missing)}; "
            f"at the socket ≤ {TARGET_SOCKET_P95_MS:.0f} ms: p95 {socket95:.0f} ms: "
            f"{verdict(socket95, TARGET_SOCKET_P95_MS)}; push → socket ≤ "
            f"{TARGET_PUSH_P95_MS:.0f} ms: p95 {push95:.0f} ms: "
            f"{verdict(push95, TARGET_PUSH_P95_MS)}.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few segments")
    parser.add_argument("--segments", type=int, help="probe segments (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between them")
    parser.add_argument("--pushes", type=int, help="pushed segments, one a second (default 40)")
    args = parser.parse_args()
    segments = args.segments or (10 if args.quick else 60)
    pushes = args.pushes or (8 if args.quick else 40)
    log("building the bundles (make -C js build bench)")
    build_js()
    recorded, pushed, error, element_timing = measure(segments, args.interval, pushes)
    if not span(recorded, "sent", "painted"):
        raise SystemExit("no alert reached the dashboard")
    print(report(recorded, pushed, error, args.interval, element_timing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
