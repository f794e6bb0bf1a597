"""Organization management for org admins: members' roles and API keys.

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
from django.views.decorators.http import require_POST

from anyreach_listen import access
from anyreach_listen.credentials import issue_api_key
from anyreach_listen.models import ApiKey, Membership, Organization
from anyreach_listen.revocation import revoke_credential
from anyreach_listen.roles import Role, Scope


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=False
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


def _administered(request: HttpRequest, organization_id: uuid.UUID) -> Organization:
    policy = access.for_request(request)
    if not policy.can_manage(organization_id):
        raise Http404("No organization you administer.")
    return policy.memberships[organization_id].organization


def _page(
    request: HttpRequest,
    org: Organization,
    *,
    key_form: ApiKeyForm | None = None,
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
        },
    )
    if new_secret:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def organizations(request: HttpRequest) -> HttpResponse:
    """The first organization the user administers."""
    policy = access.for_request(request)
    administered = [
        policy.memberships[org_id].organization for org_id in policy.admin_organization_ids
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
