"""URLs of the benchmarks' Django servers: the project's, and B1's Django floor.

``POST /bench/floor`` answers what the listener-token endpoint answers, signed like
``bench/bare_signer.py`` (no credential check, lookup or audit row), as a sync Django
view: through the project's middleware and Django's handler on the same daphne, it is the
floor any Django view of this project stands on (bench/README.md, B1).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.bare_signer import sign


@csrf_exempt  # bearer-style, as the token endpoint is
@require_POST
@cache_control(no_store=True)
def floor(request: HttpRequest) -> JsonResponse:
    return JsonResponse(sign())


urlpatterns = [path("bench/floor", floor), path("", include("config.urls"))]
