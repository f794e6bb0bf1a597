"""Taking a live call over from its AI agent, and handing it back: the one writer of ``Takeover``.

``take_over`` writes the audit row (one held per call: row lock and unique constraint),
commits it, has the agent confirm its pause over the signed channel (``signing``), then
mints a visible, microphone-only token. Every end (``hand_back``, the webhooks' ``left``,
lost access, the call ending, expiry: ``sweep``) ends the row in a transaction, then,
once committed, removes the supervisor's participant and resumes the agent with the
lines said meanwhile (``resume_context``). Changes publish ``takeover.updated``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import jwt
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from livekit.api import AccessToken, VideoGrants

from anyreach_listen import disclosure
from anyreach_listen.access import policy as access
from anyreach_listen.access.roles import Capability, capabilities_of
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.api.shapes import TakeoverToken
from anyreach_listen.assist import guidance, signing
from anyreach_listen.conf import listen_settings
from anyreach_listen.events import publish_takeover
from anyreach_listen.listening import entitlement
from anyreach_listen.livekit import service
from anyreach_listen.models import (
    ACTIVE_STATUSES,
    ApiKey,
    Conversation,
    PersonalAccessToken,
    SpeakerRole,
    Takeover,
    TakeoverEnd,
    TranscriptSegment,
)

logger = logging.getLogger(__name__)

IDENTITY_PREFIX = "supervisor-"
LEFT_GRACE = 30.0  # seconds a holder's participant may be gone before it hands back
ACK_TIMEOUT_MS = guidance.ACK_TIMEOUT_MS  # how long the agent has to confirm a pause or resume
REASON_MAX = guidance.REASON_MAX
# Ends that give the call back to the agent: all but the call's. ``not_paused`` too: the
# pause may have landed after we stopped waiting, and a resume to a running agent is a no-op.
RESUMING = frozenset(TakeoverEnd.values) - {TakeoverEnd.CALL_ENDED}
# A resume that failed is sent again by ``sweep`` once the ender had its go, for a while.
RESUME_RETRY_AFTER = dt.timedelta(seconds=10)
RESUME_RETRY_WINDOW = dt.timedelta(minutes=5)

# Why a holder may no longer hold the call (``holder_refusal``).
CREDENTIAL_GONE = "The credential this takeover was started with was revoked, expired or deleted."
HOLDER_GONE = "The account this takeover was started by is no longer active."
NOT_ALLOWED = "The holder may no longer take this call over."


@dataclass(frozen=True)
class TakeoverGrant:
    takeover: Takeover
    url: str
    token: str
    room_name: str
    expires_at: dt.datetime
    renewed: bool  # True: the holder's second POST while held (200, same id)

    def as_response(self) -> dict[str, str]:
        """``{"id", "url", "token", "room_name", "expires_at"}`` (``TakeoverToken``)."""
        return TakeoverToken(
            id=self.takeover.pk,
            url=self.url,
            token=self.token,
            room_name=self.room_name,
            expires_at=self.expires_at,
        ).as_json()


# --- reading ---------------------------------------------------------------------------------


def held(conversation: Conversation) -> Takeover | None:
    """The call's takeover not ended yet (at most one), holder loaded; None without one."""
    rows = Takeover.objects.held().filter(conversation=conversation)
    return rows.select_related("user", "conversation__team").first()


def for_call(conversation: Conversation) -> list[Takeover]:
    """The call's takeovers, oldest first (holder loaded for names)."""
    rows = Takeover.objects.filter(conversation=conversation).select_related("user")
    return list(rows.order_by("started_at", "id"))


def _clock(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%H:%M")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _taken(row: Takeover) -> ApiError:
    return ApiError(
        Errors.ALREADY_TAKEN_OVER,
        f"Taken over by {row.display_name} since {_clock(row.started_at)} UTC.",
    )


# --- the token -------------------------------------------------------------------------------


def takeover_grants(room_name: str) -> VideoGrants:
    """Visible, hears everyone, speaks with its microphone only: no camera, screen or data."""
    return VideoGrants(
        room_join=True,
        room=room_name,
        can_subscribe=True,
        can_publish=True,
        can_publish_sources=["microphone"],
        can_publish_data=False,
        can_update_own_metadata=False,
        hidden=False,
    )


def _mint(row: Takeover, room_name: str) -> tuple[str, dt.datetime]:
    """The holder's token and its ``exp`` (what ``expires_at`` must equal)."""
    token = (
        AccessToken(listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
        .with_identity(row.identity)
        .with_name(row.participant_name)
        .with_ttl(dt.timedelta(seconds=int(listen_settings.TAKEOVER_TOKEN_TTL)))
        .with_grants(takeover_grants(room_name))
        .with_metadata(json.dumps({"takeover": True}))
        .to_jwt()
    )
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return token, dt.datetime.fromtimestamp(int(exp), tz=dt.UTC)


def _grant(row: Takeover, room_name: str, token: str, renewed: bool) -> TakeoverGrant:
    return TakeoverGrant(
        takeover=row,
        url=listen_settings.LIVEKIT_URL,
        token=token,
        room_name=room_name,
        expires_at=row.expires_at,
        renewed=renewed,
    )


# --- orders to the agent ---------------------------------------------------------------------


def _order(row: Takeover, mode: signing.Mode, text: str, room: str) -> str | None:
    """Sign and relay a pause or resume to the paused agent; None when it confirmed,
    else why not (in words for the row)."""
    order = signing.GuidanceOrder(id=f"{row.pk}:{mode}", mode=mode, text=text)
    payload = signing.sign(
        order,
        room=room,
        api_key=listen_settings.LIVEKIT_API_KEY,
        api_secret=listen_settings.LIVEKIT_API_SECRET,
        identity=row.agent_identity,
    )
    try:
        answer = service.perform_rpc(
            room, row.agent_identity, signing.GUIDANCE_METHOD, payload, timeout_ms=ACK_TIMEOUT_MS
        )
    except service.RpcFailed as exc:
        return str(exc)
    except Exception:
        logger.exception("Could not send the %s of takeover %s to %s", mode, row.pk, room)
        return "unexpected error while sending"
    return signing.read_acknowledgement(answer, order.id)


def resume_context(takeover: Takeover) -> str:
    """The resume order's text: one line saying who spoke with the caller and for how
    long, then the call's lines said meanwhile ("Caller: …", "Agent: …"), the oldest
    left out first so it fits ``signing.MAX_CONTEXT_BYTES``."""
    until = takeover.ended_at or timezone.now()
    segments = TranscriptSegment.objects.filter(
        conversation_id=takeover.conversation_id,
        first_seen_at__gte=takeover.started_at,
        first_seen_at__lte=until,
    ).order_by("position")
    lines = [
        f"{SpeakerRole(role).label}: {' '.join(text.split())}"
        for role, text in segments.values_list("role", "text")
        if text.strip() and role in SpeakerRole.values
    ]
    spoke = _duration((until - takeover.started_at).total_seconds())
    header = (
        f"A supervisor, {takeover.participant_name}, took this call over from you for {spoke} "
        "and spoke with the caller; you have it back now. The supervisor's own words were "
        "not transcribed."
    )
    return _fitted(header, lines, signing.MAX_CONTEXT_BYTES)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _fitted(header: str, lines: list[str], limit: int) -> str:
    """``header``, then the newest of ``lines`` that fit in ``limit`` UTF-8 bytes."""
    if not lines:
        return _cut(f"{header}\nNothing was transcribed meanwhile.", limit)
    said = "What was said meanwhile:"
    kept: list[str] = []
    for line in reversed(lines):
        left_out = len(lines) - len(kept) - 1
        note = [f"({left_out} earlier lines left out.)"] if left_out else []
        if _size("\n".join([header, said, *note, line, *reversed(kept)])) > limit:
            break
        kept.append(line)
    left_out = len(lines) - len(kept)
    note = [f"({left_out} earlier lines left out.)"] if left_out else []
    if not kept:
        # Even the newest line alone is too long: its end is what the agent needs most.
        start = "\n".join([header, said, *note]) + "\n… "
        return start + _tail(lines[-1], limit - _size(start))
    return "\n".join([header, said, *note, *reversed(kept)])


def _tail(text: str, budget: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    return data[max(0, len(data) - max(0, budget)) :].decode("utf-8", "ignore")


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


# --- starting and renewing -------------------------------------------------------------------


def _same_holder(row: Takeover, who: Mapping[str, Any]) -> bool:
    """The same person (portal or their PAT), or the same API key."""
    api_key, user = who.get("api_key"), who.get("user")
    if row.api_key_id is not None or api_key is not None:
        return api_key is not None and row.api_key_id == api_key.pk
    return user is not None and row.user_id == user.pk


def _lock_live_call(conversation: Conversation) -> str:
    """Lock the call's row (takeovers of one call queue here); its room, while it is live
    in the same room, else ``conversation_not_active``."""
    row = (
        Conversation.objects.select_for_update(of=("self",))
        .filter(pk=conversation.pk)
        .values_list("status", "livekit_room")
        .first()
    )
    if row is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    if row[0] not in ACTIVE_STATUSES or not row[1] or row[1] != conversation.livekit_room:
        raise ApiError(Errors.CONVERSATION_NOT_ACTIVE, "Only a live call can be taken over.")
    return str(row[1])


def _held_locked(conversation: Conversation) -> Takeover | None:
    rows = Takeover.objects.held().select_for_update(of=("self",)).filter(conversation=conversation)
    return rows.select_related("user", "conversation__team").first()


def _renew(
    conversation: Conversation, who: Mapping[str, Any], renewing: uuid.UUID | None
) -> TakeoverGrant | None:
    """The holder's renewal (a fresh token, a later ``expires_at``); None when nobody
    holds the call; ``already_taken_over`` when someone else does, or while the agent's
    pause is unconfirmed (no token before it). ``renewing``: the takeover the caller
    renews; ``takeover_not_found`` when it is no longer held, rather than a new one."""
    with transaction.atomic(durable=True):
        room = _lock_live_call(conversation)
        row = _held_locked(conversation)
        if renewing is not None and (row is None or row.pk != renewing):
            raise ApiError(
                Errors.TAKEOVER_NOT_FOUND, "That takeover has ended: the agent has the call."
            )
        if row is None:
            return None
        if not _same_holder(row, who):
            raise _taken(row)
        if row.paused_at is None:
            raise ApiError(
                Errors.ALREADY_TAKEN_OVER,
                "Your takeover is still starting: the agent has not confirmed its pause yet. "
                "Try again in a moment.",
            )
        row.conversation = conversation
        token, row.expires_at = _mint(row, room)
        row.save(update_fields=["expires_at"])
        publish_takeover(row, "renewed")
    return _grant(row, room, token, renewed=True)


def _create(
    conversation: Conversation, who: Mapping[str, Any], agent: str, now: dt.datetime
) -> tuple[Takeover, str]:
    """The audit row, committed before the pause goes out; ``already_taken_over`` when
    someone got there first (the lock, or the unique constraint for a racing one)."""
    try:
        with transaction.atomic(durable=True):
            room = _lock_live_call(conversation)
            other = _held_locked(conversation)
            if other is not None:
                raise _taken(other)
            pk = uuid.uuid4()
            ttl = dt.timedelta(seconds=int(listen_settings.TAKEOVER_TOKEN_TTL))
            row = Takeover.objects.create(
                id=pk,
                conversation=conversation,
                identity=f"{IDENTITY_PREFIX}{pk}",
                agent_identity=agent,
                started_at=now,
                expires_at=now + ttl,  # a start that never finishes still ends (``sweep``)
                **who,
            )
    except IntegrityError:
        other = held(conversation)
        if other is None:
            raise
        raise _taken(other) from None
    return row, room


def take_over(
    conversation: Conversation,
    *,
    audit: Mapping[str, Any],
    request: HttpRequest | None = None,
    renewing: uuid.UUID | None = None,
) -> TakeoverGrant:
    """Take the call over for ``audit``'s holder (a policy's ``audit_fields``), or renew
    their takeover while they hold it (``renewed``; ``renewing``: only that one, never a
    new one); the grant (token and row).

    ``ApiError``: ``conversation_not_active``, ``agent_not_present`` (also when LiveKit
    cannot be asked; nothing recorded), ``already_taken_over`` (naming the holder),
    ``takeover_not_confirmed`` (the row stays, ended ``not_paused``, with the reason).
    Runs outside any transaction (durable blocks, like ``guidance.give``).
    """
    if not conversation.is_active:
        raise ApiError(Errors.CONVERSATION_NOT_ACTIVE, "Only a live call can be taken over.")
    if not conversation.livekit_room:
        raise ApiError(Errors.AGENT_NOT_PRESENT, "The call has no LiveKit room yet.")
    who = disclosure.who_columns(audit, client_ip=disclosure.request_ip(request))
    renewal = _renew(conversation, who, renewing)
    if renewal is not None:
        return renewal
    try:
        agent = guidance.find_agent(conversation.livekit_room)
    except guidance.LIVEKIT_FAILURES as exc:
        logger.warning("Could not list the participants of %s", conversation.livekit_room)
        raise ApiError(
            Errors.AGENT_NOT_PRESENT,
            f"LiveKit could not be asked whether the call has an agent ({type(exc).__name__}); "
            "try again.",
        ) from None
    if agent is None:
        raise ApiError(Errors.AGENT_NOT_PRESENT)
    row, room = _create(conversation, who, agent, timezone.now())
    row.conversation = conversation
    refusal = _order(row, "pause", "", room)
    if refusal is not None:
        _not_paused(row, refusal)
        raise ApiError(
            Errors.TAKEOVER_NOT_CONFIRMED, f"The agent did not confirm its pause: {refusal}."
        )
    return _confirm(row, room)


def _not_paused(row: Takeover, refusal: str) -> None:
    with transaction.atomic(durable=True):
        fresh = _lock(row)
        if fresh is not None:
            fresh.resume_error = f"Pause not confirmed: {refusal}"[:REASON_MAX]
            _end_locked(fresh, TakeoverEnd.NOT_PAUSED, timezone.now())
    if fresh is not None:
        _after_end(fresh)


def _confirm(row: Takeover, room: str) -> TakeoverGrant:
    """The pause confirmed: the holder's token, the row's ``expires_at`` its exp."""
    with transaction.atomic(durable=True):
        fresh = _lock(row)
        if fresh is None and row.ended_by == TakeoverEnd.CALL_ENDED:
            raise ApiError(Errors.CONVERSATION_NOT_ACTIVE, "The call ended meanwhile.")
        if fresh is None:
            raise ApiError(
                Errors.TAKEOVER_NOT_FOUND,
                f"The takeover ended ({row.get_ended_by_display().lower()}) before the agent "
                "confirmed its pause.",
            )
        fresh.paused_at = timezone.now()
        token, fresh.expires_at = _mint(fresh, room)
        fresh.save(update_fields=["paused_at", "expires_at"])
        publish_takeover(fresh, "started")
    return _grant(fresh, room, token, renewed=False)


def _lock(row: Takeover) -> Takeover | None:
    """``row`` read again under a lock while held (None once ended: ``row`` then has
    the ended state)."""
    fresh = (
        Takeover.objects.select_for_update(of=("self",))
        .select_related("user", "conversation__team")
        .get(pk=row.pk)
    )
    if fresh.ended_at is not None:
        row.ended_at, row.ended_by = fresh.ended_at, fresh.ended_by
        return None
    return fresh


# --- ending ----------------------------------------------------------------------------------


def _end_locked(row: Takeover, how: str, now: dt.datetime) -> None:
    """End a held row (locked, in a transaction); ``_after_end`` follows the commit."""
    row.ended_at, row.ended_by = now, how
    row.save(update_fields=["ended_at", "ended_by", "resume_error"])
    publish_takeover(row, "ended")


def _after_end(row: Takeover, *, remove: bool = True) -> None:
    """Once the end is committed: the participant out (retried in the background as a
    revoked listener's is; ``sweep`` is the net), then (unless the call ended) the agent
    resumed."""
    # Here, not at the top: revocation hands takeovers back through this module.
    from anyreach_listen.listening.revocation import remove_with_retries

    room = row.conversation.livekit_room
    if room and remove:
        remove_with_retries([(room, row.identity)])
    if row.ended_by in RESUMING and room:
        _resume(row, room)


def _resume(row: Takeover, room: str) -> None:
    """Resume the agent with the lines said meanwhile (nothing after ``not_paused``: it
    only undoes a pause that landed late); ``resumed_at`` or ``resume_error`` recorded
    (the pause's reason stays on a ``not_paused`` row)."""
    not_paused = row.ended_by == TakeoverEnd.NOT_PAUSED
    refusal = _order(row, "resume", "" if not_paused else resume_context(row), room)
    if refusal is None:
        row.resumed_at = timezone.now()
    else:
        if not not_paused:
            row.resume_error = refusal[:REASON_MAX]
        logger.warning("The agent of takeover %s did not resume: %s", row.pk, refusal)
    with transaction.atomic():
        # update(), not save(): the credential may have been deleted since (its pre_delete
        # ended this), and ``row`` still holds it.
        Takeover.objects.filter(pk=row.pk).update(
            resumed_at=row.resumed_at, resume_error=row.resume_error
        )
        publish_takeover(row, "resumed")


def hand_back(
    conversation: Conversation,
    *,
    how: str = TakeoverEnd.HANDED_BACK,
    takeover_id: uuid.UUID | None = None,
) -> Takeover:
    """End the call's held takeover (``takeover_not_found`` when none, or when it is not
    ``takeover_id``), remove the supervisor's participant and resume the agent with the
    lines said meanwhile (``resumed_at`` or ``resume_error`` recorded); the ended row.
    Outside transactions."""
    with transaction.atomic(durable=True):
        row = _held_locked(conversation)
        if row is None or (takeover_id is not None and row.pk != takeover_id):
            raise ApiError(Errors.TAKEOVER_NOT_FOUND)
        _end_locked(row, how, timezone.now())
    _after_end(row)
    return row


def end_takeovers(
    takeovers: QuerySet[Takeover],
    how: str,
    *,
    only: Callable[[Takeover], bool] | None = None,
    remove: bool = True,
) -> list[Takeover]:
    """End the held ones of ``takeovers`` (those ``only`` picks, on the locked rows), in
    the caller's transaction; the participant removal and resume follow its commit.
    ``remove`` False: the room is gone already."""
    ended: list[Takeover] = []
    with transaction.atomic():
        rows = (takeovers & Takeover.objects.held()).select_for_update(of=("self",))
        for row in rows.select_related("user", "conversation__team", "conversation__organization"):
            if only is not None and not only(row):
                continue
            _end_locked(row, how, timezone.now())
            ended.append(row)
        for row in ended:
            transaction.on_commit(partial(_after_end, row, remove=remove), robust=True)
    return ended


def end_lost_access(takeovers: QuerySet[Takeover]) -> list[Takeover]:
    """End (``access_lost``) the held ones of ``takeovers`` whose holder may no longer
    take their call over: the revocation paths' counterpart (``listening/signals.py``)."""
    return end_takeovers(
        takeovers, TakeoverEnd.ACCESS_LOST, only=lambda row: holder_refusal(row) is not None
    )


def end_for_call(conversation: Conversation, *, room_closed: bool = False) -> list[Takeover]:
    """The call ended: its held takeover ends (``call_ended``; no resume)."""
    return end_takeovers(
        Takeover.objects.filter(conversation=conversation),
        TakeoverEnd.CALL_ENDED,
        remove=not room_closed,
    )


# --- whether the holder may still hold it ------------------------------------------------------


def holder_refusal(takeover: Takeover) -> str | None:
    """Why ``takeover``'s holder may no longer take its call over, or None: the
    credential usable and granting TAKE_OVER in the call's organization (a PAT never
    beyond its owner's role), the person active with the role's grant on the call.

    Reads without locks: the sweep holds the takeover's lock when it asks, and the
    revocation paths lock the credential or membership first, then the takeover (one
    order of locks); a revocation that commits meanwhile ends the takeover itself."""
    conversation = takeover.conversation
    if takeover.api_key_id is not None:
        key = ApiKey.objects.filter(pk=takeover.api_key_id).first()
        if not entitlement.usable(key):
            return CREDENTIAL_GONE
        assert key is not None
        if key.organization_id != conversation.organization_id:
            return NOT_ALLOWED
        return None if Capability.TAKE_OVER in capabilities_of(key.scopes) else NOT_ALLOWED
    pat: PersonalAccessToken | None = None
    if takeover.personal_access_token_id is not None:
        pat = PersonalAccessToken.objects.filter(pk=takeover.personal_access_token_id).first()
        if not entitlement.usable(pat):
            return CREDENTIAL_GONE
    elif takeover.credential_label:
        return CREDENTIAL_GONE  # started with a credential deleted since
    if takeover.user_id is None:
        return HOLDER_GONE  # the person was deleted
    policy = entitlement.policy_of(takeover.user_id, lock=False)
    if policy is None:
        return HOLDER_GONE
    if not policy.can_on(Capability.TAKE_OVER, entitlement.without_visibility(conversation)):
        return NOT_ALLOWED
    if pat is not None:
        role_scopes = policy.memberships[conversation.organization_id].scopes
        if Capability.TAKE_OVER not in capabilities_of(frozenset(pat.scopes) & role_scopes):
            return NOT_ALLOWED
    return None


# --- the webhooks ----------------------------------------------------------------------------


def is_ours(identity: str) -> bool:
    """An identity of the shape this module gives (``supervisor-<uuid>``): only those
    are taken out of rooms; a host's own participant that merely starts alike is not."""
    suffix = identity.removeprefix(IDENTITY_PREFIX)
    return identity.startswith(IDENTITY_PREFIX) and str(access.parse_uuid(suffix)) == suffix


def participant_event(
    conversation: Conversation, identity: str, *, joined: bool, at: dt.datetime
) -> tuple[str, bool]:
    """A ``supervisor-`` participant joined or left ``conversation``'s room (inside the
    webhook's transaction): (what was done, whether to remove it from the room). One
    that holds no takeover of this call (ended, another call's, one of ours unknown)
    is removed as it joins; a name of this shape that is not ours is left alone."""
    row = (
        Takeover.objects.select_for_update(of=("self",))
        .select_related("user", "conversation__team")
        .filter(identity=identity)
        .first()
    )
    if row is None:
        return "unknown_supervisor", joined and is_ours(identity)
    if row.conversation_id != conversation.pk:
        return "supervisor_foreign", joined
    if row.ended_at is not None:
        return "supervisor_ended", joined
    if joined:
        if row.left_at is not None and at < row.left_at:
            return "unchanged", False  # an older join, delivered after the leave
        row.joined_at, row.left_at = at, None
        row.save(update_fields=("joined_at", "left_at"))
        publish_takeover(row, "joined")
        return "supervisor_joined", False
    if row.left_at is not None or (row.joined_at is not None and at < row.joined_at):
        return "unchanged", False
    row.left_at = at
    row.save(update_fields=("left_at",))
    publish_takeover(row, "left")
    return "supervisor_left", False


# --- the sweep ---------------------------------------------------------------------------------


def _due(row: Takeover, now: dt.datetime, present: Iterable[str]) -> str | None:
    """How a held, locked row ends now, if it does."""
    if not row.conversation.is_active:
        return TakeoverEnd.CALL_ENDED
    if holder_refusal(row) is not None:
        return TakeoverEnd.ACCESS_LOST
    grace = dt.timedelta(seconds=LEFT_GRACE)
    if row.left_at is not None and now - row.left_at > grace:
        return TakeoverEnd.LEFT
    if row.joined_at is None and now - row.started_at > grace and row.identity not in present:
        return TakeoverEnd.LEFT  # never came (a webhook lost: LiveKit was asked)
    if row.expires_at <= now:
        return TakeoverEnd.EXPIRED
    return None


def _never_joined(now: dt.datetime) -> set[str]:
    """The supervisors in their rooms now, of held takeovers no webhook saw join within
    ``LEFT_GRACE`` (LiveKit asked only about those; when it cannot be, all count as present)."""
    since = now - dt.timedelta(seconds=LEFT_GRACE)
    rows = Takeover.objects.held().filter(joined_at__isnull=True, started_at__lt=since)
    rooms = {room for room in rows.values_list("conversation__livekit_room", flat=True) if room}
    present: set[str] = set()
    for room in rooms:
        try:
            people = service.run_sync(service.participants(room))
        except Exception:
            logger.warning("Could not list the participants of %s", room, exc_info=True)
            return set(rows.values_list("identity", flat=True))
        present |= {p.identity for p in people if p.identity.startswith(IDENTITY_PREFIX)}
    return present


def _lingering() -> int:
    """Supervisors of ended takeovers still in a live call's room, taken out: the net
    under a removal that failed. Only rooms of live calls with an ended takeover are asked."""
    live = Conversation.objects.active().exclude(livekit_room=None)
    calls = live.filter(takeovers__ended_at__isnull=False).distinct()
    removed = 0
    for room, conversation_id in calls.values_list("livekit_room", "pk"):
        current = set(
            Takeover.objects.held()
            .filter(conversation_id=conversation_id)
            .values_list("identity", flat=True)
        )
        try:
            people = service.run_sync(service.participants(str(room)))
        except Exception:
            logger.warning("Could not list the participants of %s", room, exc_info=True)
            continue
        for person in people:
            if is_ours(person.identity) and person.identity not in current:
                gone = service.run_sync(service.remove_listeners([(str(room), person.identity)]))
                removed += gone.get(person.identity) is True
    return removed


def _resume_overdue(now: dt.datetime) -> int:
    """Resumes that failed (the agent or LiveKit did not answer) sent again while the
    call is live, for ``RESUME_RETRY_WINDOW``: an agent is never left paused by one lost
    answer. The number the agent confirmed."""
    rows = Takeover.objects.filter(
        ended_by__in=RESUMING,
        resumed_at__isnull=True,
        ended_at__lte=now - RESUME_RETRY_AFTER,
        ended_at__gte=now - RESUME_RETRY_WINDOW,
        conversation__status__in=ACTIVE_STATUSES,
    ).select_related("user", "conversation__team")
    resumed = 0
    for row in rows:
        if row.conversation.livekit_room:
            _resume(row, row.conversation.livekit_room)
            resumed += row.resumed_at is not None
    return resumed


def sweep(now: dt.datetime | None = None) -> int:
    """End what is due: the holder's participant gone more than ``LEFT_GRACE`` (or never
    come), the token expired unrenewed, the holder's right gone, the call over; then take
    ended takeovers' supervisors out of live rooms. The number of takeovers ended."""
    now = now or timezone.now()
    present = _never_joined(now)
    ended = 0
    for pk in list(Takeover.objects.held().values_list("pk", flat=True)):
        with transaction.atomic(durable=True):
            rows = Takeover.objects.held().select_for_update(of=("self",)).filter(pk=pk)
            row = rows.select_related("user", "conversation__team").first()
            how = _due(row, now, present) if row is not None else None
            if row is None or how is None:
                continue
            _end_locked(row, how, now)
        ended += 1
        _after_end(row)
    removed = _lingering()
    if removed:
        logger.info("Removed %d supervisor(s) of ended takeovers from live rooms", removed)
    resumed = _resume_overdue(now)
    if resumed:
        logger.info("Resumed %d agent(s) whose resume had failed", resumed)
    return ended
