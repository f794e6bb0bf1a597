"""Signal receivers (connected in ``AnyreachListenConfig.ready``): revocation hooks."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver

from .events import publish_access_changed
from .models import ApiKey, Membership, PersonalAccessToken
from .revocation import revoke_membership, revoke_sessions


@receiver(post_save, sender=ApiKey, dispatch_uid="anyreach_listen.revoke_api_key")
@receiver(post_save, sender=PersonalAccessToken, dispatch_uid="anyreach_listen.revoke_pat")
def credential_saved(
    sender: type[ApiKey | PersonalAccessToken],
    instance: ApiKey | PersonalAccessToken,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    # Any save with revoked_at set (admin form, shell, revoke_credential): sessions
    # already revoked are not live, so saving again changes nothing.
    if raw or instance.revoked_at is None:
        return
    revoke_sessions(instance.listen_sessions.revocable())


# pre_delete: when a whole user is deleted, Django nulls ListenSession.user
# before it deletes the memberships, so afterwards the sessions could not be found.
@receiver(pre_delete, sender=Membership, dispatch_uid="anyreach_listen.revoke_membership")
def membership_deleted(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    revoke_membership(instance)


@receiver(post_save, sender=Membership, dispatch_uid="anyreach_listen.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="anyreach_listen.membership_gone")
def membership_changed(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    # The member's open event streams reload what they may see.
    publish_access_changed(instance.user_id)


@receiver(
    m2m_changed,
    sender=Membership.teams.through,
    dispatch_uid="anyreach_listen.membership_teams_changed",
)
def membership_teams_changed(
    sender: type, instance: Membership, action: str, **kwargs: Any
) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        publish_access_changed(instance.user_id)
