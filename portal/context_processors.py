from collections.abc import Callable

from django.http import HttpRequest

from anyreach_listen import access
from anyreach_listen.roles import Role


def navigation(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """Whether to show the Organization link; a callable, so only pages that ask pay."""
    return {
        "is_org_admin": lambda: access.memberships(request.user).filter(role=Role.ADMIN).exists()
    }
