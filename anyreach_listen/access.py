"""Who may see and listen to which conversation, for logged-in users.

Admins see their whole organization; supervisors, QA analysts and viewers see
the conversations of their teams. Listening needs a role whose scopes include
a listen scope (see ``roles.py``). The portal, the session-token view, the
websocket consumer and the admin's listen page all ask here.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, Q, QuerySet

from .models import Conversation, Membership, Team
from .roles import Role, can_listen

UserLike = AbstractBaseUser | AnonymousUser


def memberships(user: UserLike) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user_id=user.pk).select_related("organization")


def visible_conversations(user: UserLike) -> QuerySet[Conversation]:
    if not user.is_authenticated:
        return Conversation.objects.none()
    admin_orgs = memberships(user).filter(role=Role.ADMIN).values("organization_id")
    # A team counts only inside its own organization's membership, so a team
    # mistakenly attached to another organization's membership grants nothing.
    own_teams = Team.objects.filter(
        memberships__user_id=user.pk, organization_id=F("memberships__organization_id")
    ).values("pk")
    return Conversation.objects.filter(
        Q(organization_id__in=admin_orgs) | Q(team_id__in=own_teams)
    ).select_related("organization", "team")


def membership_in(user: UserLike, organization_id: uuid.UUID) -> Membership | None:
    return memberships(user).filter(organization_id=organization_id).first()


def may_listen(user: UserLike, conversation: Conversation) -> bool:
    membership = membership_in(user, conversation.organization_id)
    return (
        membership is not None
        and can_listen(membership.scopes)
        and membership.can_see(conversation)
    )
