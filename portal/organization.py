"""Organization management for org admins: members' roles, API keys and alert rules.

Only members with the ``admin`` role reach these views, and only for their own
organization. Secrets of new keys are rendered once in the response to the
POST that created them; they never go to the session, a message or a URL.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from anyreach_listen import alerts
from anyreach_listen.access import policy as access
from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Capability, Role, Scope
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.listening.revocation import revoke_credential
from anyreach_listen.models import (
    AlertRole,
    AlertRule,
    AlertSeverity,
    ApiKey,
    Membership,
    Organization,
    Team,
)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=False
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AlertRuleForm(forms.Form):
    """A phrase that raises an alert when said (``alerts.py``), as the API takes it."""

    phrase = forms.CharField(max_length=200)
    role = forms.ChoiceField(choices=AlertRole.choices, initial=AlertRole.ANY, label="Said by")
    severity = forms.ChoiceField(choices=AlertSeverity.choices, initial=AlertSeverity.WARNING)
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), required=False, empty_label="Every team"
    )

    def __init__(self, organization: Organization, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Only this organization's teams: a rule cannot watch another organization's calls.
        self.fields["team"].queryset = organization.teams.order_by("name")  # type: ignore[attr-defined]

    def clean_phrase(self) -> str:
        phrase: str = self.cleaned_data["phrase"].strip()
        if not alerts.valid_phrase(phrase):
            raise forms.ValidationError("An alert phrase needs at least one word.")
        return phrase


def _administered(
    request: HttpRequest,
    organization_id: uuid.UUID,
    capability: Capability = Capability.MANAGE_ORGANIZATION,
) -> Organization:
    """The organization, when the user's role there has ``capability``; else 404."""
    policy = access.for_request(request)
    if not policy.can(capability, organization_id):
        raise Http404("No organization you administer.")
    return policy.memberships[organization_id].organization


def _page(
    request: HttpRequest,
    org: Organization,
    *,
    key_form: ApiKeyForm | None = None,
    rule_form: AlertRuleForm | None = None,
    new_secret: str = "",
) -> HttpResponse:
    response = render(
        request,
        "portal/organization.html",
        {
            "organization": org,
            "members": org.memberships.select_related("user").prefetch_related("teams"),
            "api_keys": org.api_keys.all(),
            "roles": Role.choices,
            "key_form": key_form or ApiKeyForm(),
            "new_secret": new_secret,
            "alert_rules": AlertRule.objects.live()
            .filter(organization=org)
            .select_related("team")
            .order_by("created_at"),
            "rule_form": rule_form or AlertRuleForm(org),
        },
    )
    if new_secret:  # shown once: never kept by a cache
        patch_cache_control(response, no_store=True)
    return response


@login_required
def organizations(request: HttpRequest) -> HttpResponse:
    """The first organization the user administers."""
    policy = access.for_request(request)
    administered = [
        policy.memberships[org_id].organization
        for org_id in policy.organizations_with(Capability.MANAGE_ORGANIZATION)
    ]
    if not administered:
        raise Http404("You do not administer an organization.")
    return redirect("portal:organization", min(administered, key=lambda org: org.name).pk)


@login_required
def organization(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    return _page(request, _administered(request, organization_id))


@login_required
@require_POST
def create_api_key(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    org = _administered(request, organization_id)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, org, key_form=form)
    _, secret = issue_api_key(
        org,
        form.cleaned_data["name"],
        form.cleaned_data["scopes"],
        created_by=request.user,  # type: ignore[arg-type]
    )
    return _page(request, org, new_secret=secret)


@login_required
@require_POST
def revoke_api_key(
    request: HttpRequest, organization_id: uuid.UUID, key_id: uuid.UUID
) -> HttpResponse:
    org = _administered(request, organization_id)
    revoke_credential(get_object_or_404(ApiKey, pk=key_id, organization=org))
    return redirect("portal:organization", org.pk)


def _other_member(
    request: HttpRequest, organization_id: uuid.UUID, membership_id: int
) -> Membership | None:
    """Another member of an organization the user administers; None for themselves.

    Admins cannot demote or remove themselves, so an organization keeps an admin.
    """
    org = _administered(request, organization_id)
    membership = get_object_or_404(Membership, pk=membership_id, organization=org)
    return None if membership.user_id == request.user.pk else membership


@login_required
@require_POST
def change_role(
    request: HttpRequest, organization_id: uuid.UUID, membership_id: int
) -> HttpResponse:
    membership = _other_member(request, organization_id, membership_id)
    form = RoleForm(request.POST)
    if membership is not None and form.is_valid():
        membership.role = form.cleaned_data["role"]
        membership.save(update_fields=["role"])
    return redirect("portal:organization", organization_id)


@login_required
@require_POST
def remove_member(
    request: HttpRequest, organization_id: uuid.UUID, membership_id: int
) -> HttpResponse:
    membership = _other_member(request, organization_id, membership_id)
    if membership is not None:
        membership.delete()  # its live listeners are removed (signals.py)
    return redirect("portal:organization", organization_id)


@login_required
@require_POST
def create_alert_rule(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    org = _administered(request, organization_id, Capability.MANAGE_RULES)
    form = AlertRuleForm(org, request.POST)
    if not form.is_valid():
        return _page(request, org, rule_form=form)
    try:
        alerts.create_rule(
            org,
            phrase=form.cleaned_data["phrase"],
            role=form.cleaned_data["role"],
            severity=form.cleaned_data["severity"],
            team=form.cleaned_data["team"],
            created_by=request.user,  # type: ignore[arg-type]
            created_by_label=request.user.get_username(),
        )
    except ApiError as exc:
        if exc.kind is not Errors.TOO_MANY_RULES:
            raise
        form.add_error(None, exc.message)  # the cap holds at every door, the portal's too
        return _page(request, org, rule_form=form)
    return redirect("portal:organization", org.pk)


@login_required
@require_POST
def delete_alert_rule(
    request: HttpRequest, organization_id: uuid.UUID, rule_id: uuid.UUID
) -> HttpResponse:
    """Stop the rule matching; the alerts it raised stay and still name its phrase."""
    org = _administered(request, organization_id, Capability.MANAGE_RULES)
    alerts.delete_rule(get_object_or_404(AlertRule.objects.live(), pk=rule_id, organization=org))
    return redirect("portal:organization", org.pk)
