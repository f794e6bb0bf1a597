"""``manage.py simulate_call``: register a conversation and run a realistic call in its room."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anyreach_listen.conf import listen_settings
from anyreach_listen.management.arguments import find_organization
from anyreach_listen.models import Team
from demo.call_simulator import (
    CallConfig,
    finish_conversation,
    register_conversation,
    run_call,
)

DEFAULT_ORGANIZATION = "demo"  # the organization `manage.py seed_demo` creates

logger = logging.getLogger("demo.call_simulator")


class Command(BaseCommand):
    help = (
        "Register an in-progress conversation and run a simulated call in its LiveKit room: "
        "an AI agent (kind AGENT) and a caller speaking real audio, with interim and final "
        "transcripts for both sides. Prints the conversation id before the call starts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--organization",
            default=DEFAULT_ORGANIZATION,
            help="Organization slug or id (default: the seed_demo organization, 'demo').",
        )
        parser.add_argument("--team", help="Team name in that organization (default: none).")
        parser.add_argument(
            "--duration",
            type=float,
            help="Seconds of conversation; the script repeats until then (default: once).",
        )
        parser.add_argument("--loop", action="store_true", help="Repeat the script until Ctrl-C.")
        parser.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help='Print exactly one line {"conversation_id": …, "room_name": …} on stdout.',
        )
        parser.add_argument("--livekit-url", help="LiveKit ws:// URL (default: settings).")
        parser.add_argument("--caller-label", default="", help="How the caller is shown.")
        parser.add_argument(
            "--webhook-grace",
            type=float,
            default=3.0,
            help="Seconds to wait for the room_finished webhook before completing the "
            "conversation directly (default: 3).",
        )
        parser.add_argument(
            "--report", type=Path, help="Write a JSON summary of the call to this file."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s simulate_call: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        value = options["organization"]
        hint = " Run `manage.py seed_demo` first." if value == DEFAULT_ORGANIZATION else ""
        org = find_organization(value, hint)
        team = None
        if options["team"]:
            team = Team.objects.filter(organization=org, name=options["team"]).first()
            if team is None:
                raise CommandError(f"No team {options['team']!r} in {org.slug!r}.")
        url = options["livekit_url"] or listen_settings.LIVEKIT_URL
        if not url:
            raise CommandError("No LiveKit URL: pass --livekit-url or set LIVEKIT_URL.")

        conversation = register_conversation(org, team=team, caller_label=options["caller_label"])
        room_name = conversation.livekit_room or ""
        if options["as_json"]:
            line = json.dumps({"conversation_id": str(conversation.pk), "room_name": room_name})
            self.stdout.write(line)
            self.stdout.flush()
        else:
            self.stdout.write(f"Conversation {conversation.pk} in room {room_name}")
            self.stdout.flush()

        config = CallConfig(
            url=url,
            api_key=listen_settings.LIVEKIT_API_KEY,
            api_secret=listen_settings.LIVEKIT_API_SECRET,
            room_name=room_name,
            duration=options["duration"],
            loop=options["loop"],
        )
        try:
            report = asyncio.run(self._run(config))
        finally:
            by_webhook = finish_conversation(
                conversation.pk, webhook_grace=options["webhook_grace"]
            )
            logger.info(
                "conversation %s completed (%s)",
                conversation.pk,
                "by the room_finished webhook" if by_webhook else "directly, no webhook seen",
            )
        if options["report"]:
            options["report"].write_text(report.as_json())

    async def _run(self, config: CallConfig) -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await run_call(config, stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
