"""Signal receivers (connected in ``AnyreachListenConfig.ready``): every loss of
access takes its listeners out (``revocation.py``), hands back the calls its holder
had taken over (``assist/takeover.py``: ``access_lost``) and tells the person's open
event streams (``events.publish_access_changed``, ``publish_session_ended``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver
from django.http import HttpRequest

from anyreach_listen.assist import takeover
from anyreach_listen.events import publish_access_changed, publish_session_ended
from anyreach_listen.listening.revocation import (
    revoke_lost_access,
    revoke_lost_conversation_access,
    revoke_membership,
    revoke_sessions,
    revoke_unentitled,
)
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    Membership,
    PersonalAccessToken,
    Takeover,
    TakeoverEnd,
)


@receiver(post_save, sender=ApiKey, dispatch_uid="anyreach_listen.api_key_saved")
@receiver(post_save, sender=PersonalAccessToken, dispatch_uid="anyreach_listen.pat_saved")
def credential_saved(
    sender: type[ApiKey | PersonalAccessToken],
    instance: ApiKey | PersonalAccessToken,
    created: bool = False,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    # Revoked, expired or lost its listen scope (admin form, shell, revoke_credential):
    # the credential's sessions are checked again.
    if raw or created:
        return
    revoke_unentitled(instance.listen_sessions.all())
    takeover.end_lost_access(instance.takeovers.all())


@receiver(pre_delete, sender=ApiKey, dispatch_uid="anyreach_listen.api_key_deleted")
@receiver(pre_delete, sender=PersonalAccessToken, dispatch_uid="anyreach_listen.pat_deleted")
def credential_deleted(
    sender: type[ApiKey | PersonalAccessToken],
    instance: ApiKey | PersonalAccessToken,
    **kwargs: Any,
) -> None:
    # Before Django nulls the sessions' link to the credential (SET NULL), which
    # would hide them from revocation; ``credential_label`` keeps the audit's words.
    revoke_sessions(instance.listen_sessions.revocable())
    takeover.end_takeovers(instance.takeovers.all(), TakeoverEnd.ACCESS_LOST)


# pre_delete: when a whole user is deleted, Django nulls ListenSession.user
# before it deletes the memberships, so afterwards the sessions could not be found.
@receiver(pre_delete, sender=Membership, dispatch_uid="anyreach_listen.revoke_membership")
def membership_deleted(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    revoke_membership(instance)
    # Still there now (pre_delete), so no re-check would see it go: its takeovers end.
    takeover.end_takeovers(
        Takeover.objects.filter(
            user_id=instance.user_id, conversation__organization_id=instance.organization_id
        ),
        TakeoverEnd.ACCESS_LOST,
    )


@receiver(post_save, sender=Membership, dispatch_uid="anyreach_listen.membership_saved")
def membership_saved(
    sender: type[Membership], instance: Membership, created: bool = False, **kwargs: Any
) -> None:
    if not created:  # a new role may not listen (or take calls over) any more
        revoke_lost_access(instance.user_id)
        takeover.end_lost_access(Takeover.objects.filter(user_id=instance.user_id))
    publish_access_changed(instance.user_id)


@receiver(post_delete, sender=Membership, dispatch_uid="anyreach_listen.membership_gone")
def membership_gone(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    publish_access_changed(instance.user_id)


@receiver(
    m2m_changed,
    sender=Membership.teams.through,
    dispatch_uid="anyreach_listen.membership_teams_changed",
)
def membership_teams_changed(
    sender: type, instance: Membership, action: str, **kwargs: Any
) -> None:
    if action in ("post_remove", "post_clear"):
        revoke_lost_access(instance.user_id)
        takeover.end_lost_access(Takeover.objects.filter(user_id=instance.user_id))
    if action in ("post_add", "post_remove", "post_clear"):
        publish_access_changed(instance.user_id)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="anyreach_listen.user_saved")
def user_saved(
    sender: type, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any
) -> None:
    update_fields = kwargs.get("update_fields")
    if raw or created or (update_fields is not None and set(update_fields) == {"last_login"}):
        return
    # Deactivated, or a new password (which signs out its other sessions): open
    # streams check their session again, and an inactive user's listeners go.
    if not instance.is_active:
        revoke_lost_access(instance.pk)
        takeover.end_lost_access(Takeover.objects.filter(user_id=instance.pk))
    publish_access_changed(instance.pk)


@receiver(user_logged_out, dispatch_uid="anyreach_listen.user_logged_out")
def logged_out(sender: type, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        publish_session_ended(user.pk, session_key)


@receiver(post_save, sender=Conversation, dispatch_uid="anyreach_listen.conversation_saved")
def conversation_saved(
    sender: type[Conversation], instance: Conversation, created: bool = False, **kwargs: Any
) -> None:
    update_fields = kwargs.get("update_fields")
    moved = update_fields is None or "team" in update_fields or "team_id" in update_fields
    if not created and moved and instance.is_active:
        revoke_lost_conversation_access(instance)
        takeover.end_lost_access(instance.takeovers.all())
