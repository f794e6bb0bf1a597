"""What each API endpoint needs of its caller, declared as data (like DRF's permission
classes): a capability of the table in ``access/roles.py`` and the rate limit counted
before it is checked. Views say it in one line: ``@requires(GET=READ, POST=WRITE)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec

from django.http import HttpRequest, JsonResponse

from anyreach_listen.access import key_cache, ratelimit
from anyreach_listen.access import policy as access
from anyreach_listen.access.policy import CredentialAccess
from anyreach_listen.access.roles import Capability, scopes_granting
from anyreach_listen.api.errors import ApiError, Errors

P = ParamSpec("P")


def _per_credential(bucket: str) -> None:
    ratelimit.enforce(bucket, "requests for this credential")


@dataclass(frozen=True)
class Needs:
    """What an endpoint needs of its caller, as data (DRF's permission classes): a
    capability, and the rate limit counted before it is checked. The order is the
    API's: credential, rate limit, scope; a refusal names the scopes that would do."""

    capability: Capability
    rate_limit: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if not scopes_granting(self.capability):
            raise ValueError(f"No API scope grants {self.capability}.")

    @property
    def refusal(self) -> str:
        *others, last = scopes_granting(self.capability)
        either = f"{', '.join(others)} or {last}" if others else last
        return f"Needs the {either} scope."

    def check(
        self, request: HttpRequest, *, keep: bool = False, count: bool = True
    ) -> CredentialAccess:
        """The checked caller. ``keep``: its API key may come from ``key_cache``;
        ``count``: the request counts against the rate limit (False: it did already)."""
        caller = access.for_api_request(request, keep=keep)
        if self.rate_limit is not None and count:
            self.rate_limit(caller.rate_limit_bucket)
        if not caller.can(self.capability):
            raise ApiError(Errors.INSUFFICIENT_SCOPE, self.refusal)
        return caller


# What the endpoints need. Conversation reads count against no rate limit; transcript,
# alert, rule, listener, guidance and takeover reads against the read limit; everything
# else the per-credential one.
LISTEN = Needs(Capability.LISTEN, _per_credential)
READ = Needs(Capability.VIEW_CALLS)
WRITE = Needs(Capability.WRITE_CALLS, _per_credential)
READ_TRANSCRIPTS = Needs(Capability.READ_TRANSCRIPTS, ratelimit.enforce_reads)
READ_RULES = Needs(Capability.MANAGE_RULES, ratelimit.enforce_reads)
WRITE_RULES = Needs(Capability.MANAGE_RULES, _per_credential)
SEE_LISTENERS = Needs(Capability.SEE_LISTENERS, ratelimit.enforce_reads)
GUIDE = Needs(Capability.GUIDE_AGENT, _per_credential)
# Taking a call over, renewing it, handing it back (writes), and reading who holds it.
TAKE_OVER = Needs(Capability.TAKE_OVER, _per_credential)
READ_TAKEOVER = Needs(Capability.TAKE_OVER, ratelimit.enforce_reads)


CallerView = Callable[Concatenate[HttpRequest, CredentialAccess, P], JsonResponse]
RequestView = Callable[Concatenate[HttpRequest, P], JsonResponse]


def requires(
    *, keep_keys: bool = False, **needs: Needs
) -> Callable[[CallerView[P]], RequestView[P]]:
    """What each HTTP method of a view needs (``@requires(GET=READ, POST=WRITE)``), under
    ``@endpoint`` (which refuses other methods first); the view gets the checked caller
    after the request.

    ``keep_keys``: the caller's API key may come from ``key_cache``, for a view whose
    every success passes ``caller.kept_key`` to the mint, which confirms it under a lock
    (``grant_listen``). When the kept key turned out ``Stale`` the view ran in a
    transaction that rolled back: the caller is checked again from the database (the
    rate limit counted once) and the view runs again.
    """

    def decorate(view: CallerView[P]) -> RequestView[P]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> JsonResponse:
            need = needs.get(str(request.method))
            if need is None:  # @endpoint allowed a method this view declares no need for
                raise ApiError(Errors.METHOD_NOT_ALLOWED)
            caller = need.check(request, keep=keep_keys)
            try:
                return view(request, caller, *args, **kwargs)
            except key_cache.Stale:  # only ever raised for a kept key
                caller = need.check(request, count=False)
                return view(request, caller, *args, **kwargs)

        return wrapper

    return decorate
