"""Login throttling on top of django-axes: per account and per address, each with its own limit.

axes alone holds both counts to one limit. An address is often shared (an office behind
one NAT), so it gets a higher limit than an account: this handler counts each against
its own limit and reports the lockout to axes when either is reached. The address is
the app's one client address (``anyreach_listen.access.client_address``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_lockout_parameters
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

ACCOUNT = "username"
ADDRESS = "ip_address"


def failure_limits() -> dict[str, int]:
    limits: dict[str, int] = settings.LOGIN_FAILURE_LIMITS
    return limits


class PerParameterLimitHandler(AxesDatabaseHandler):
    """axes' database handler, with a limit per lockout parameter instead of one for all."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        limits = failure_limits()
        parameters = get_lockout_parameters(request, credentials)
        attempts = self.get_user_attempts(request, credentials)
        counts: dict[str, int] = {}
        for parameter, rows in zip(parameters, attempts, strict=True):
            total = rows.aggregate(total=Sum("failures_since_start"))["total"] or 0
            counts[str(parameter)] = total
        reached = [name for name, count in counts.items() if count >= limits[name]]
        request.login_locked_by = reached[0] if reached else None  # type: ignore[attr-defined]
        # axes locks out when this reaches AXES_FAILURE_LIMIT: report exactly that once
        # any parameter reached its own limit, and stay below it until then.
        limit: int = settings.AXES_FAILURE_LIMIT
        return limit if reached else min(max(counts.values(), default=0), limit - 1)


def lockout_response(request: HttpRequest, *args: object) -> HttpResponse:
    """The portal's page for a locked-out sign-in (axes' AXES_LOCKOUT_CALLABLE), status 429."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    context = {
        "locked_by": getattr(request, "login_locked_by", None) or ACCOUNT,
        "minutes": max(1, round(cool_off.total_seconds() / 60)),
    }
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
