"""Admin site: every model, secrets shown once on creation, the listen, guidance and takeover
audits read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import patch_cache_control
from django.utils.html import format_html

from anyreach_listen import conversations
from anyreach_listen.access import credentials
from anyreach_listen.api.errors import ApiError
from anyreach_listen.conf import listen_settings
from anyreach_listen.listening import revocation
from anyreach_listen.livekit import room_ownership
from anyreach_listen.models import (
    ACTIVE_STATUSES,
    Alert,
    AlertRule,
    ApiKey,
    Conversation,
    Guidance,
    ListenSession,
    Membership,
    Organization,
    PersonalAccessToken,
    Takeover,
    Team,
    TranscriptRead,
)


class TeamInline(admin.TabularInline):
    model = Team
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "room_prefix", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [TeamInline]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "organization"]
    list_filter = ["organization"]
    search_fields = ["name"]


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "organization", "role", "teams"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        org, teams = data.get("organization"), data.get("teams")
        if org is not None and teams and any(t.organization_id != org.pk for t in teams):
            raise forms.ValidationError("Pick only teams of this membership's organization.")
        return data


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "organization", "role"]
    list_filter = ["organization", "role"]
    search_fields = ["user__username", "user__email"]
    filter_horizontal = ["teams"]
    autocomplete_fields = ["user"]


class ConversationForm(forms.ModelForm):
    """The service's rules, checked before saving so the form can show them."""

    class Meta:
        model = Conversation
        fields = [
            "organization",
            "team",
            "status",
            "livekit_room",
            "agent_label",
            "caller_label",
            "metadata",
            "external_id",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        status = data.get("status")
        room = data.get("livekit_room")
        if self.instance._state.adding:
            if status not in ACTIVE_STATUSES:
                self.add_error(
                    "status", "A new conversation starts triggered, ringing or in progress."
                )
            organization = data.get("organization")
            if room and organization is not None:
                self._check_claim(organization, room)
            return data
        current = Conversation.objects.select_related("organization").get(pk=self.instance.pk)
        if status and not current.may_move_to(status):
            self.add_error(
                "status", f"The conversation is {current.status}; it cannot move to {status}."
            )
        if current.livekit_room and room != current.livekit_room:
            self.add_error("livekit_room", "The room is set once.")
        elif room and not current.livekit_room:
            if current.is_active:
                self._check_claim(current.organization, room)
            else:
                self.add_error("livekit_room", "An ended conversation takes no room.")
        return data

    def _check_claim(self, organization: Organization, room: str) -> None:
        """The claim every door checks (prefix, another organization's recent use,
        LiveKit's metadata), so a refusal is an error on the field and nothing is
        saved. ``ConversationAdmin.changeform_view`` runs this outside any transaction:
        it may wait on LiveKit."""
        try:
            room_ownership.check_claim(organization, room)
        except ApiError as exc:
            self.add_error("livekit_room", exc.message)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Monitoring: filter live calls and open any of them in the listen panel.

    Edits go through the conversations service like every other door, so they
    publish events and ending a call revokes its listeners.
    """

    form = ConversationForm

    list_display = [
        "__str__",
        "organization",
        "team",
        "status",
        "livekit_room",
        "started_at",
        "listen_live",
    ]
    list_filter = ["status", "team", "organization"]
    list_select_related = ["organization", "team__organization"]
    search_fields = ["id", "livekit_room", "caller_label", "agent_label"]
    date_hierarchy = "created_at"

    @admin.display(description="Monitor")
    def listen_live(self, obj: Conversation) -> str:
        if not (obj.is_active and obj.livekit_room):
            return "—"
        url = reverse("admin:anyreach_listen_conversation_listen", args=[obj.pk])
        return format_html('<a class="button" href="{}">Listen live</a>', url)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Django's changeform_view is this body inside transaction.atomic for a POST. Not
        # here: the form's claim check and the conversations service may ask LiveKit (up
        # to seconds), which must not happen while a transaction holds the database
        # (SQLite's IMMEDIATE mode takes the write lock when it starts). Every write goes
        # through the service, which opens its own transactions; the log entry follows.
        return self._changeform_view(  # type: ignore[attr-defined]  # not in django-stubs
            request, object_id, form_url, extra_context
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The organization and the external id identify the call; the times are the service's.
        fixed = ["organization", "external_id"] if obj is not None else []
        return [*fixed, "started_at", "ended_at"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if not change:
                created, _ = conversations.register(
                    data["organization"],
                    room_name=data.get("livekit_room") or None,
                    status=data["status"],
                    team=data.get("team"),
                    agent_label=data.get("agent_label", ""),
                    caller_label=data.get("caller_label", ""),
                    metadata=data.get("metadata") or {},
                    external_id=data.get("external_id") or None,
                    by="admin",
                )
                obj.pk, obj._state.adding = created.pk, False
                return
            changed = set(form.changed_data)
            conversations.update(
                # The stored row, not the form's instance (which already names the new
                # room): the service checks a room's claim as for every other door.
                Conversation.objects.select_related("organization").get(pk=obj.pk),
                status=data["status"] if "status" in changed else None,
                room_name=data.get("livekit_room") if "livekit_room" in changed else None,
                team=data.get("team"),
                set_team="team" in changed,
                by="admin",
                **{name: data[name] for name in conversations.PLAIN_FIELDS if name in changed},
            )
        except ApiError as exc:  # lost a race with another door since the form was checked
            self.message_user(request, exc.message, messages.ERROR)

    def get_urls(self) -> list[URLPattern]:
        listen = path(
            "<uuid:conversation_id>/listen/",
            self.admin_site.admin_view(self.listen_view),
            name="anyreach_listen_conversation_listen",
        )
        return [listen, *super().get_urls()]

    def listen_view(self, request: HttpRequest, conversation_id: str) -> HttpResponse:
        conversation = get_object_or_404(Conversation, pk=conversation_id)
        if not self.has_view_permission(request, conversation):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Listen live: {conversation}",
            "conversation": conversation,
            "opts": self.opts,
            "original": conversation,
        }
        return TemplateResponse(request, "anyreach_listen/admin/listen.html", context)


class CredentialAdmin(admin.ModelAdmin):
    """Creating a credential shows its plaintext once, on a page of its own.

    The secret is rendered straight into the response to the add form: it never
    goes into a message, the session or a redirect URL.
    """

    readonly_fields = ["display_prefix", "created_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "lookup_id"]
    # Whose credential it is (an organization or a person): fixed once created, so
    # a key or token never moves to someone its issuer did not mean.
    owner_field = ""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = [self.owner_field] if obj is not None else []
        return [*fixed, *super().get_readonly_fields(request, obj)]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            self._refuse_owner_change(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def _refuse_owner_change(self, request: HttpRequest, object_id: str) -> None:
        """A read-only field is left out of the form, so a value POSTed for it would be
        dropped without a word; a POST that tries to move the credential is refused."""
        posted = request.POST.get(self.owner_field)
        obj = self.get_object(request, unquote(object_id)) if posted is not None else None
        if obj is not None and posted != str(getattr(obj, f"{self.owner_field}_id")):
            raise PermissionDenied(f"The {self.owner_field} of a credential cannot change.")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        # Shown by response_add below; kept only on this request's object.
        obj._plaintext_secret = credentials.rotate(obj)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(obj, "_plaintext_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        opts = obj._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"New {opts.verbose_name}",
            "credential": obj,
            "secret": secret,
            "opts": opts,
            "done_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        response = TemplateResponse(request, "anyreach_listen/admin/secret_once.html", context)
        patch_cache_control(response, no_store=True)
        return response


@admin.register(ApiKey)
class ApiKeyAdmin(CredentialAdmin):
    list_display = [
        "name",
        "organization",
        "display_prefix",
        "scopes",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["organization", "revoked_at"]
    owner_field = "organization"
    fields = [
        "organization",
        "name",
        "scopes",
        "expires_at",
        "revoked_at",
        *CredentialAdmin.readonly_fields,
    ]


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(CredentialAdmin):
    list_display = [
        "name",
        "user",
        "display_prefix",
        "scopes",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    fields = [
        "user",
        "name",
        "scopes",
        "expires_at",
        "revoked_at",
        *CredentialAdmin.readonly_fields,
    ]
    owner_field = "user"
    autocomplete_fields = ["user"]

    def may_issue_for_others(self, request: HttpRequest) -> bool:
        return request.user.has_perm("anyreach_listen.issue_pat_for_others")

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        return list(self.autocomplete_fields) if self.may_issue_for_others(request) else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:
        if db_field.name == "user" and not self.may_issue_for_others(request):
            # Themselves as the only choice: the form refuses anyone else.
            users = db_field.remote_field.model._default_manager
            kwargs["queryset"] = users.filter(pk=request.user.pk)
            kwargs["empty_label"] = None
            kwargs["help_text"] = (
                "You can issue tokens only for yourself: tokens for other users need the "
                "permission “Can issue personal access tokens for other users”."
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: listed and inspected, never added, edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ListenSession)
class ListenSessionAdmin(ReadOnlyAdmin):
    """The audit: who listened to what, when and for how long. Never edited by hand."""

    list_display = [
        "listener_identity",
        "conversation",
        "who",
        "via",
        "minted_at",
        "joined_at",
        "left_at",
        "revoked_at",
    ]
    list_filter = ["via", "conversation__organization"]
    search_fields = ["listener_identity", "user__username", "conversation__id"]
    date_hierarchy = "minted_at"

    actions = ["stop_listeners"]

    def has_stop_listener_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("anyreach_listen.stop_listener")

    @admin.action(
        description="Stop this listener (remove from the room)",
        permissions=["stop_listener"],
    )
    def stop_listeners(self, request: HttpRequest, queryset: QuerySet[ListenSession]) -> None:
        stopped = [
            s for s in queryset.select_related("conversation") if revocation.stop_listener(s)
        ]
        self.message_user(
            request,
            f"Stopped {len(stopped)} listener(s); {queryset.count() - len(stopped)} were not live.",
            messages.SUCCESS if stopped else messages.WARNING,
        )


@admin.register(TranscriptRead)
class TranscriptReadAdmin(ReadOnlyAdmin):
    """Who read which call's transcript, next to the listen audit."""

    list_display = ["conversation", "user", "credential_label", "via", "read_at", "client_ip"]
    list_filter = ["via", "conversation__organization"]
    search_fields = ["user__username", "conversation__id"]
    date_hierarchy = "read_at"


@admin.register(Guidance)
class GuidanceAdmin(ReadOnlyAdmin):
    """Who guided which call's agent, what they said and whether it arrived: the text is
    shown, as the guidance audit is for admins to read."""

    list_display = ["conversation", "who", "mode", "status", "text", "created_at", "latency_ms"]
    list_filter = ["status", "mode", "conversation__organization"]
    list_select_related = ["conversation", "user", "api_key"]
    search_fields = ["text", "user__username", "conversation__id"]
    date_hierarchy = "created_at"


class TakeoverHeldFilter(admin.SimpleListFilter):
    """Held now, or ended (``ended_by`` is blank while held, so its own filter cannot say)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("held", "Held now"), ("ended", "Ended")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("held", "ended"):
            return queryset.filter(ended_at__isnull=self.value() == "held")
        return queryset


@admin.register(Takeover)
class TakeoverAdmin(ReadOnlyAdmin):
    """Who took which call over from its agent, when, and how it ended (still held: no
    end). Ends only through ``assist/takeover.py`` (the API, the portal, the sweep)."""

    list_display = [
        "conversation",
        "who",
        "started_at",
        "ended_at",
        "how_it_ended",
        "resumed_at",
        "expires_at",
    ]
    list_filter = [TakeoverHeldFilter, "ended_by", "conversation__organization"]
    list_select_related = ["conversation", "user", "api_key"]
    search_fields = ["identity", "user__username", "credential_label", "conversation__id"]
    date_hierarchy = "started_at"

    @admin.display(description="How it ended", ordering="ended_by")
    def how_it_ended(self, obj: Takeover) -> str:
        # ended_by is blank while held: say so rather than show an empty cell.
        return obj.get_ended_by_display() if obj.ended_at is not None else "Held"


class AlertRuleForm(forms.ModelForm):
    """The cap every door keeps (``alerts.create_rule``): at most ``MAX_ALERT_RULES``
    live rules per organization, here for a new rule, one undeleted, or one moved."""

    class Meta:
        model = AlertRule
        fields = ["organization", "team", "phrase", "role", "severity", "deleted_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        organization = data.get("organization")
        if organization is None or data.get("deleted_at") is not None:
            return data
        if not self.instance._state.adding:
            stored = AlertRule.objects.get(pk=self.instance.pk)
            if stored.deleted_at is None and stored.organization_id == organization.pk:
                return data  # live in this organization already: counted
        limit = int(listen_settings.MAX_ALERT_RULES)
        # As create_rule: the organization's row lock (held until the admin's transaction
        # commits) orders concurrent creators.
        list(Organization.objects.select_for_update().filter(pk=organization.pk).values("pk"))
        if AlertRule.objects.live().filter(organization=organization).count() >= limit:
            raise forms.ValidationError(
                f"An organization may have at most {limit} active alert rules; delete one first."
            )
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["phrase", "organization", "team", "role", "severity", "deleted_at"]
    list_filter = ["organization", "severity", "role"]
    search_fields = ["phrase"]
    readonly_fields = ["created_by", "created_by_label", "created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Set "deleted at" instead: the alerts a rule raised keep naming its phrase.
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Which rule fired in which call, by severity and rule id: never the phrase.

    A phrase next to a call tells what was said in it, which the app shows only
    with an audit row (``disclosure.audit_glances``); here the phrase stays on the
    rule's own page (its configuration), and an alert has no page of its own
    (``Alert.__str__`` names the phrase, and a page's title and breadcrumbs use it).
    """

    list_display = ["conversation", "rule_id_link", "severity", "raised_at"]
    list_display_links = None
    list_filter = ["rule__severity", "conversation__organization"]
    list_select_related = ["conversation", "rule"]
    date_hierarchy = "raised_at"

    @admin.display(description="Rule", ordering="rule_id")
    def rule_id_link(self, obj: Alert) -> str:
        url = reverse("admin:anyreach_listen_alertrule_change", args=[obj.rule_id])
        return format_html('<a href="{}">{}</a>', url, obj.rule_id)

    @admin.display(description="Severity", ordering="rule__severity")
    def severity(self, obj: Alert) -> str:
        return obj.rule.get_severity_display()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        raise Http404("Alerts are listed only.")

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        raise Http404("Alerts are listed only.")
