from django.urls import path

from . import assist, organization, takeover, transcript, views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("conversations/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path(
        "conversations/<uuid:conversation_id>/transcript/",
        transcript.conversation_transcript,
        name="conversation-transcript",
    ),
    path(
        "conversations/<uuid:conversation_id>/presence/",
        assist.conversation_presence,
        name="conversation-presence",
    ),
    path(
        "conversations/<uuid:conversation_id>/guidance/",
        assist.give_guidance,
        name="give-guidance",
    ),
    path(
        "conversations/<uuid:conversation_id>/takeover/",
        takeover.take_over,
        name="take-over",
    ),
    path(
        "conversations/<uuid:conversation_id>/takeover/hand-back/",
        takeover.hand_back,
        name="hand-back",
    ),
    path(
        "conversations/<uuid:conversation_id>/listen-dialog/",
        views.listen_dialog,
        name="listen-dialog",
    ),
    path("wall/", views.wall, name="wall"),
    path("wall/tiles/<uuid:conversation_id>/", views.wall_tile, name="wall-tile"),
    path("history/", views.history, name="history"),
    path("organization/", organization.organizations, name="organizations"),
    path("organization/<uuid:organization_id>/", organization.organization, name="organization"),
    path(
        "organization/<uuid:organization_id>/keys/",
        organization.create_api_key,
        name="create-api-key",
    ),
    path(
        "organization/<uuid:organization_id>/keys/<uuid:key_id>/revoke/",
        organization.revoke_api_key,
        name="revoke-api-key",
    ),
    path(
        "organization/<uuid:organization_id>/alert-rules/",
        organization.create_alert_rule,
        name="create-alert-rule",
    ),
    path(
        "organization/<uuid:organization_id>/alert-rules/<uuid:rule_id>/delete/",
        organization.delete_alert_rule,
        name="delete-alert-rule",
    ),
    path(
        "organization/<uuid:organization_id>/members/<int:membership_id>/role/",
        organization.change_role,
        name="change-role",
    ),
    path(
        "organization/<uuid:organization_id>/members/<int:membership_id>/remove/",
        organization.remove_member,
        name="remove-member",
    ),
]
