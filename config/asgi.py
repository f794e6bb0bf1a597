"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.asgi_handler import get_asgi_application

# Django must be set up before anything imports models (the routing does).
django_asgi_app: Any = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

if not settings.DEBUG and not settings.ALLOWED_HOSTS:
    # Django would answer every request 400 and log why only to mail_admins: a server
    # that serves nothing must not start silently (manage.py runserver refuses too).
    raise ImproperlyConfigured(
        "Set ALLOWED_HOSTS (the portal's host names, comma-separated), or DEBUG=1 for "
        "local development: with DEBUG off and no ALLOWED_HOSTS every request is refused."
    )

from anyreach_listen.checks import MIN_SECRET_LENGTH, secret_too_short  # noqa: E402
from anyreach_listen.conf import listen_settings  # noqa: E402

_livekit_secret = str(listen_settings.LIVEKIT_API_SECRET or "")
if secret_too_short(_livekit_secret):
    # The rule of E004, which only manage.py check runs: daphne runs no system checks,
    # and a short secret can be brute-forced offline from any token or webhook it signed.
    raise ImproperlyConfigured(
        f"LIVEKIT_API_SECRET is {len(_livekit_secret)} characters long; with DEBUG off "
        f"the portal needs LiveKit's API secret of at least {MIN_SECRET_LENGTH} (LiveKit's "
        "tooling generates them). Set it, or DEBUG=1 for local development with LiveKit's "
        "dev server."
    )

if settings.DEBUG:
    # The embedded setup serves static files itself; production serves the
    # output of collectstatic from a web server or CDN.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from anyreach_listen.api.asgi import limit_body_size  # noqa: E402
from anyreach_listen.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The JSON endpoints' body limits, before Django spools a body to a temporary file.
        "http": limit_body_size(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
