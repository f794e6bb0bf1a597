"""``manage.py simulate_call``: register a conversation through a public door and run a
realistic call in its room (the REST API by default, or LiveKit room metadata)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anyreach_listen.conf import listen_settings
from anyreach_listen.management.arguments import find_organization
from demo.call_simulator import CallConfig, new_room_name, run_call
from demo.registration import ApiRegistrar, Registrar, RoomMetadataRegistrar, default_team

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
        parser.add_argument(
            "--team", help="Team name in that organization (default: its first team)."
        )
        parser.add_argument(
            "--register",
            choices=["api", "room-metadata"],
            default="api",
            help="How the call is registered: POST /core/conversations with an API key "
            "(default), or LiveKit room metadata seen by the room_started webhook.",
        )
        parser.add_argument(
            "--api-url",
            default=os.environ.get("ANYREACH_API_URL", "http://127.0.0.1:8000"),
            help="Base URL of the API (default: $ANYREACH_API_URL or http://127.0.0.1:8000).",
        )
        parser.add_argument(
            "--api-key",
            default=os.environ.get("ANYREACH_API_KEY", ""),
            help="An ak_ key with conversations:manage (default: $ANYREACH_API_KEY; "
            "seed_demo prints one as 'manage').",
        )
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
        team = default_team(org, options["team"])
        url = options["livekit_url"] or listen_settings.LIVEKIT_URL
        if not url:
            raise CommandError("No LiveKit URL: pass --livekit-url or set LIVEKIT_URL.")
        room_name = new_room_name()
        config = CallConfig(
            url=url,
            api_key=listen_settings.LIVEKIT_API_KEY,
            api_secret=listen_settings.LIVEKIT_API_SECRET,
            room_name=room_name,
            duration=options["duration"],
            loop=options["loop"],
        )
        registrar: Registrar
        if options["register"] == "api":
            if not options["api_key"]:
                raise CommandError(
                    "simulate_call registers its call through the REST API: pass --api-key "
                    "(a conversations:manage key; seed_demo prints one) or set "
                    "ANYREACH_API_KEY, or use --register room-metadata."
                )
            registrar = ApiRegistrar(options["api_url"], options["api_key"])
        else:
            livekit = {"url": config.api_url, "api_key": config.api_key}
            registrar = RoomMetadataRegistrar(org, {**livekit, "api_secret": config.api_secret})

        conversation_id = registrar.register(
            room_name,
            {
                "team_id": str(team.pk) if team else None,
                "agent_label": "Ava (AI agent)",
                "caller_label": options["caller_label"] or "+1 555 0100 (simulated)",
                "metadata": {"simulated": True},
            },
        )
        if options["as_json"]:
            line = json.dumps({"conversation_id": conversation_id, "room_name": room_name})
            self.stdout.write(line)
            self.stdout.flush()
        else:
            self.stdout.write(f"Conversation {conversation_id} in room {room_name}")
            self.stdout.flush()

        try:
            report = asyncio.run(self._run(config))
        finally:
            by_webhook = registrar.finish(conversation_id, options["webhook_grace"])
            logger.info(
                "conversation %s completed (%s)",
                conversation_id,
                "by the room_finished webhook" if by_webhook else "directly, no webhook seen",
            )
        if options["report"]:
            options["report"].write_text(report.as_json())
        if sys.argv[1:2] == ["simulate_call"]:  # its own process (manage.py), not call_command
            # livekit's FFI runtime can abort the interpreter's finalization after a call
            # that ended cleanly (a Rust "panic in a function that cannot unwind",
            # SIGABRT): the call is over and all is written, so the process ends here.
            self.stdout.flush()
            self.stderr.flush()
            logging.shutdown()
            os._exit(0)

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
