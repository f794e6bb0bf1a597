"""Model rules (``models.py``) not covered through a view: memberships hold own teams only."""

from __future__ import annotations

import pytest

from tests.support.world import World


def test_membership_cannot_hold_another_organizations_team(world: World) -> None:
    from django.core.exceptions import ValidationError

    from anyreach_listen.models import Membership, Team

    foreign = Team.objects.create(organization=world.other_org, name="Support")
    membership = Membership.objects.get(user=world.users["qa"], organization=world.org)
    with pytest.raises(ValidationError, match="own organization"):
        membership.teams.add(foreign)
    assert str(foreign) == "Other / Support"
