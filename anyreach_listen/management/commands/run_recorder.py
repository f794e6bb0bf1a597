"""``manage.py run_recorder``: a transcript recorder worker (a LiveKit agent worker).

Run one per machine or more; LiveKit balances the rooms over every worker
registered under the same agent name. Needs the ``recorder`` extra, LiveKit's
URL, key and secret, and the portal's URL (``--portal-url``, default
``RECORDER["PORTAL_URL"]``): the worker delivers what it hears there, signed
with the LiveKit secret, and the portal records it. No database.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anyreach_listen.conf import listen_settings


class Command(BaseCommand):
    help = (
        "Run a transcript recorder: a LiveKit agent worker that joins the rooms of live "
        "calls it is dispatched to (hidden, subscribe-only, no audio) and stores both "
        "transcript paths. Stops on SIGTERM, SIGINT or SIGHUP within --drain-timeout seconds "
        "(and one more to leave)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--http-port",
            type=int,
            default=0,
            help="Port of the worker's health check (GET / answers OK); default: any free port.",
        )
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=None,
            help="Seconds a stopping worker spends delivering what it heard before it exits "
            "(what is left then is logged as not delivered); default: 10.",
        )
        parser.add_argument(
            "--portal-url",
            default="",
            help="Where this app's views are served (the worker posts to <URL>/livekit/recorder); "
            "default: ANYREACH_LISTEN['RECORDER']['PORTAL_URL'].",
        )

    def handle(
        self,
        *args: Any,
        http_port: int,
        portal_url: str,
        drain_timeout: float | None,
        **options: Any,
    ) -> None:
        conf = listen_settings.RECORDER
        if conf is None:
            raise CommandError(
                "ANYREACH_LISTEN['RECORDER'] is None (the default): no recorder is ever "
                "dispatched. Set it, e.g. {'AGENT_NAME': 'anyreach-recorder', 'PER_ROOM': 2} "
                "(docs/operations/recorder.md), to run one."
            )
        if not listen_settings.LIVEKIT_URL or not listen_settings.LIVEKIT_API_SECRET:
            raise CommandError("LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET are needed.")
        portal_url = portal_url or conf.get("PORTAL_URL", "")
        if not portal_url:
            raise CommandError(
                "The recorder needs the portal's URL to deliver transcripts to: pass "
                "--portal-url or set ANYREACH_LISTEN['RECORDER']['PORTAL_URL'] (the portal "
                "project reads ANYREACH_PORTAL_URL). See docs/operations/recorder.md."
            )
        if urlsplit(portal_url).scheme not in ("http", "https"):
            raise CommandError(f"--portal-url {portal_url!r} is not an http:// or https:// URL.")
        if drain_timeout is not None and not 0 <= drain_timeout <= 3600:
            raise CommandError(f"--drain-timeout {drain_timeout} is not 0 to 3600 seconds.")
        try:
            # The optional extra, imported late: the app works without it. The import
            # takes seconds (livekit-agents pulls in openai, opentelemetry, av, ...).
            from anyreach_listen.recorder import agent as recorder_agent
        except ImportError as exc:
            raise CommandError(
                f"The recorder needs livekit-agents: pip install 'anyreach-listen[recorder]' "
                f"({exc})."
            ) from None
        except KeyboardInterrupt:
            return  # stopped (Ctrl-C, run_demo ending) before it started: nothing to undo
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in ("anyreach_listen", "livekit.agents"):
            log = logging.getLogger(name)
            # The project's LOGGING may route it already, on the logger itself or on an
            # ancestor (the root): a handler of ours besides would print each line twice.
            if not log.hasHandlers():
                log.addHandler(handler)
            if log.level == logging.NOTSET:  # a level the project chose is kept
                log.setLevel(logging.INFO)
        self.stderr.write(
            f"Recorder worker for agent {conf['AGENT_NAME']!r} on {listen_settings.LIVEKIT_URL}, "
            f"delivering to {portal_url}"
        )
        drain = recorder_agent.DRAIN_TIMEOUT if drain_timeout is None else drain_timeout
        recorder_agent.run(conf["AGENT_NAME"], portal_url, http_port=http_port, drain_timeout=drain)
