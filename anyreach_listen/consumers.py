"""Websocket consumer: conversation, listener, takeover, alert, transcript and guidance events
for the signed-in user.

It carries the event stream every portal page holds, and decides in memory which
events its user may see, so one event to many sockets costs no query each. It closes a
socket whose login session or membership is gone, so an open page stops showing what
its user may no longer see, and it audits the transcript lines and alerts it sends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db.models import Subquery
from django.utils import timezone

from anyreach_listen import disclosure
from anyreach_listen.access import policy as access
from anyreach_listen.access.client_address import scope_client_address
from anyreach_listen.access.roles import LISTEN_ROLES, Capability
from anyreach_listen.events import organization_group, session_fingerprint, user_group

SIGNED_OUT = 4401  # the browser stops reconnecting (events.js)
ACCESS_LOST = 4403  # the browser reconnects, with what it may still see
# Re-checks failing in a row before a socket closes (ACCESS_LOST, so the page reconnects
# and connecting checks its access afresh): one failure is a blip, three an outage. With
# each wait drawn at random, sockets opened together do not close together.
MAX_FAILED_RECHECKS = 3
# What of an alert reaches people who see the call but may not read its transcript.
VIEWER_ALERT_FIELDS = ("id", "severity", "raised_at")

logger = logging.getLogger(__name__)


def access_fingerprint(user_id: Any, session_key: str | None) -> tuple[Any, ...]:
    """What an open socket's access depends on, read in one query: the user's row, the
    login session's data while it has not expired, the memberships with their teams.

    Unchanged since a socket's last full check, that check would answer the same, so
    the periodic re-check runs it only when this changed.
    """
    model = auth.get_user_model()
    users = model._default_manager.filter(pk=user_id)
    fields = [field.attname for field in model._meta.concrete_fields]
    fields += [
        "listen_memberships__organization_id",
        "listen_memberships__role",
        "listen_memberships__teams__id",
        "listen_memberships__teams__organization_id",
    ]
    session: Any = None
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if session_key is not None and issubclass(store_class, DatabaseSessionStore):
        live = store_class.get_model_class()._default_manager.filter(
            session_key=session_key, expire_date__gt=timezone.now()
        )
        users = users.annotate(_login_session=Subquery(live.values("session_data")[:1]))
        fields.append("_login_session")
    elif session_key is not None:
        # Cache, file or signed-cookie sessions: read through their engine, not the
        # database (empty when gone or expired).
        session = store_class(session_key).load()
    rows = users.order_by(
        "listen_memberships__organization_id", "listen_memberships__teams__id"
    ).values_list(*fields)
    return (session, tuple(rows))


class ConversationEventsConsumer(AsyncJsonWebsocketConsumer):
    # Seconds between re-checks of an open socket's login session and memberships, at
    # most: what no signal reports (a session expiring, a bulk .update()) still closes
    # it within this. Each wait is drawn from half to all of it, so sockets opened
    # together (a deploy's reconnects) do not all query at once.
    recheck_interval: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Calls whose lines are covered by an audited glance or read of this socket's
        # person: conversation id -> until when (time.time()); their lines cost nothing.
        self.glanced: dict[str, float] = {}
        self._recheck_task: asyncio.Task[None] | None = None
        # The periodic re-check and access.changed must not reload the groups at once.
        self._recheck_lock = asyncio.Lock()
        self._fingerprint: tuple[Any, ...] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the server cancels the consumer without a disconnect message.
            self._stop_rechecks()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first so the browser sees code 4401 (a refused handshake is
            # only 1006) and stops reconnecting.
            await self.accept()
            await self.close(code=SIGNED_OUT)
            return
        # Channels joins ``groups`` before connect() and leaves them on disconnect;
        # ours depend on the user, so they are joined here.
        self.groups = [user_group(user.pk)]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        # Taken before the policy is read: a change in between shows at the first re-check.
        self._fingerprint = await self._access_fingerprint()
        await self._load_access()
        await self.accept()
        self._recheck_task = asyncio.create_task(
            self._recheck_periodically(), name=f"anyreach-listen-recheck {self.channel_name}"
        )

    async def disconnect(self, code: int) -> None:
        self._stop_rechecks()

    def _stop_rechecks(self) -> None:
        if self._recheck_task is not None:
            self._recheck_task.cancel()
            self._recheck_task = None

    async def _recheck_periodically(self) -> None:
        """Re-check the socket's access every ``recheck_interval`` seconds at most.

        One query per round (``_access_fingerprint``); only when what it read changed
        does the full check of ``access.changed`` run. ``MAX_FAILED_RECHECKS`` failed
        rounds in a row close the socket (4403): it does not keep the access it had for
        as long as the database is away.
        """
        failures = 0
        while True:
            spread = random.uniform(0.5, 1.0)  # noqa: S311 (a spread, not a secret)
            await asyncio.sleep(self.recheck_interval * spread)
            try:
                fingerprint = await self._access_fingerprint()
                if fingerprint != self._fingerprint:
                    if await self._recheck():
                        return
                    # Kept only once checked: a failed check is tried again next round.
                    self._fingerprint = fingerprint
            except Exception:
                failures += 1
                if failures >= MAX_FAILED_RECHECKS:
                    logger.warning(
                        "Could not re-check an event socket's access %d times in a row: "
                        "closing it (%d), the page reconnects",
                        failures,
                        ACCESS_LOST,
                        exc_info=True,
                    )
                    await self.close(code=ACCESS_LOST)
                    return
                # A database blip must not close every socket at once (their reconnects
                # would hit it together): the next round tries again.
                logger.warning("Could not re-check an event socket's access.", exc_info=True)
            else:
                failures = 0

    async def _access_fingerprint(self) -> tuple[Any, ...]:
        probe = database_sync_to_async(access_fingerprint)
        return await probe(self.scope["user"].pk, self._session_key())

    async def _recheck(self) -> bool:
        """The check of ``access.changed``: close with 4401 when the login session
        is no longer valid, reload the policy, close with 4403 when a membership was
        lost. Whether it closed the socket."""
        async with self._recheck_lock:
            if not await self._still_signed_in():
                await self.close(code=SIGNED_OUT)
                return True
            before = set(self.policy.memberships)
            await self._load_access()
            if before - set(self.policy.memberships):
                await self.close(code=ACCESS_LOST)
                return True
            return False

    async def _load_access(self) -> None:
        self.policy = await self._policy()
        wanted = [user_group(self.policy.user.pk)]
        wanted += [organization_group(org) for org in self.policy.memberships]
        for group in set(self.groups) - set(wanted):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(wanted) - set(self.groups):
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups = wanted

    @database_sync_to_async
    def _policy(self) -> access.UserAccess:
        policy = access.for_user(self.scope["user"])
        # Load both now, in this thread: the event handlers must not query.
        policy.memberships  # noqa: B018
        policy.teams  # noqa: B018
        return policy

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way; anything a browser sends is ignored."""

    async def access_changed(self, message: dict[str, Any]) -> None:
        await self._recheck()

    async def session_ended(self, message: dict[str, Any]) -> None:
        key = self._session_key()
        if key is None or message.get("session") == session_fingerprint(key):
            await self.close(code=SIGNED_OUT)

    def _session_key(self) -> str | None:
        session = self.scope.get("session")
        return getattr(session, "session_key", None) if session is not None else None

    @database_sync_to_async
    def _still_signed_in(self) -> bool:
        """The socket's login session, read afresh: still there, same user, password
        unchanged, user active (Django's own checks, as for a new request)."""
        key = self._session_key()
        if key is None:  # authenticated without a login session: the user must still be active
            model = auth.get_user_model()
            return model.objects.filter(pk=self.scope["user"].pk, is_active=True).exists()
        store = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        return bool(user.is_authenticated and user.pk == self.scope["user"].pk)

    async def conversation_updated(self, message: dict[str, Any]) -> None:
        await self._forward("conversation.updated", message)

    async def listener_updated(self, message: dict[str, Any]) -> None:
        # Who listens now (presence): those who may see a call's listeners, never viewers;
        # _forward keeps it to the calls this person sees.
        await self._forward_to_presence("listener.updated", message)

    async def takeover_updated(self, message: dict[str, Any]) -> None:
        # Who speaks in the call instead of its agent: presence too, to the same audience.
        await self._forward_to_presence("takeover.updated", message)

    async def _forward_to_presence(self, kind: str, message: dict[str, Any]) -> None:
        """A presence event: sent only to a person who may see the call's listeners
        (``SEE_LISTENERS``: never viewers) and sees the call."""
        organization_id = access.parse_uuid(message["organization_id"])
        if organization_id is not None and self.policy.can(
            Capability.SEE_LISTENERS, organization_id
        ):
            await self._forward(kind, message)

    async def alert_raised(self, message: dict[str, Any]) -> None:
        organization_id = access.parse_uuid(message["organization_id"])
        alert = dict(message["alert"])
        if organization_id is None or not self.policy.reads_transcripts_in(organization_id):
            # A phrase that matched is a piece of what was said: not for viewers.
            alert = {name: alert[name] for name in VIEWER_ALERT_FIELDS}
        elif self._sees(message) and not await self._glance(str(message["conversation"]["id"])):
            # The phrase, the speaker and the segment are a glance at the call, audited
            # as its lines are: not audited, not sent.
            return
        membership = self.policy.memberships.get(organization_id) if organization_id else None
        can_listen = membership is not None and membership.role in LISTEN_ROLES
        await self._forward("alert.raised", {**message, "alert": alert, "can_listen": can_listen})

    async def transcript_segment(self, message: dict[str, Any]) -> None:
        # What was said: viewers never get a word of it.
        await self._forward_to_reader("transcript.segment", message)

    async def guidance_updated(self, message: dict[str, Any]) -> None:
        # Guidance sits on the transcript: viewers never see its text.
        await self._forward_to_reader("guidance.updated", message)

    async def _forward_to_reader(self, kind: str, message: dict[str, Any]) -> None:
        """A transcript-reader event: sent only to a person who may read the call's
        transcript and sees the call, audited as a glance at it (not audited, not sent)."""
        organization_id = access.parse_uuid(message["organization_id"])
        if organization_id is None or not self.policy.reads_transcripts_in(organization_id):
            return
        if not self._sees(message):
            return
        if not await self._glance(str(message["conversation"]["id"])):
            return
        await self._forward(kind, message)

    async def _glance(self, conversation_id: str) -> bool:
        """Whether a line or alert phrase of the call may be shown to this socket's
        person now: covered by their audited glance or read within the hour, or audited
        now (``disclosure.audit_glances``). False when the row could not be written."""
        until = self.glanced.get(conversation_id)
        if until is not None and time.time() < until:
            return True
        try:
            windows = await self._audit_glance(conversation_id)
        except Exception:
            # Not audited, not shown: the call's next line or alert tries again.
            logger.exception("Could not audit a transcript line or alert; it was not sent.")
            return False
        self._remember_glance(conversation_id, windows.get(conversation_id, 0.0))
        return True

    def _remember_glance(self, conversation_id: str, until: float) -> None:
        if len(self.glanced) >= 1000:  # a socket open for days: forget ended windows
            now = time.time()
            self.glanced = {c: end for c, end in self.glanced.items() if end > now}
        self.glanced[conversation_id] = until

    @database_sync_to_async
    def _audit_glance(self, conversation_id: str) -> dict[str, float]:
        return disclosure.audit_glances(
            self.policy.user, [conversation_id], client_ip=scope_client_address(self.scope)
        )

    def _sees(self, message: dict[str, Any]) -> bool:
        organization_id = access.parse_uuid(message["organization_id"])
        team_id = access.parse_uuid(message["team_id"]) if message.get("team_id") else None
        return organization_id is not None and self.policy.sees(organization_id, team_id)

    async def _forward(self, kind: str, message: dict[str, Any]) -> None:
        if not self._sees(message):
            return
        out = {"type": kind, "event": message.get("event"), "conversation": message["conversation"]}
        for extra in (
            "listen_session_id",
            "listener",
            "alert",
            "can_listen",
            "segment",
            "guidance",
            "takeover",
        ):
            if extra in message:
                out[extra] = message[extra]
        await self.send_json(out)
