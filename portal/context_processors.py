from collections.abc import Callable

from django.http import HttpRequest

from anyreach_listen.access import policy as access
from anyreach_listen.access.roles import Capability


def navigation(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """Whether to show the Organization link; a callable, so only pages that ask pay."""
    manages = Capability.MANAGE_ORGANIZATION
    return {"is_org_admin": lambda: bool(access.for_request(request).organizations_with(manages))}
