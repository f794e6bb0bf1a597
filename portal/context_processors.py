from collections.abc import Callable

from django.http import HttpRequest

from anyreach_listen.access import policy as access


def navigation(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """Whether to show the Organization link; a callable, so only pages that ask pay."""
    return {"is_org_admin": lambda: bool(access.for_request(request).admin_organization_ids)}
