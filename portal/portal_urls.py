from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("conversations/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("wall/", views.wall, name="wall"),
    path("wall/tiles/<uuid:conversation_id>/", views.wall_tile, name="wall-tile"),
    path("history/", views.history, name="history"),
]
