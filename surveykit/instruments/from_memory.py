"""A tablet's instrument check answered from this process's memory, before Pyramid routes it.

Most requests a server gets are tablets asking ``GET /api/v1/instruments/{slug}`` whether their
copy is still current. When this process already holds, under the request's cache epoch
(``surveykit.cache_epoch``), everything that answer depends on (the caller's checked identity, the
instrument's study and current version, and that version's served form), the tween here gives the
answer at once: the same epoch read, token check, access rule and response (``web.representation``)
as the view, without the transaction, events and view machinery around them, which cost more than
the answer itself.

Whatever it does not hold, and every request that is not exactly this one (another method or
route, a query string, a personal access token, a device whose last-seen time is due), goes the
usual way, which gives the same answer and does the writes this one leaves out. A revocation or a
new version renews the epoch, so it is seen here on the very next request, as on the usual way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyramid.interfaces import IRoutesMapper, ISecurityPolicy
from pyramid.request import Request
from pyramid.response import Response
from pyramid.urldispatch import RoutesMapper

from surveykit.accounts.policy import TokenSecurityPolicy
from surveykit.cache_epoch import MISSING, EpochCache
from surveykit.instruments import StudyInstrumentContext, services
from surveykit.instruments.views import CURRENT_CACHE_CONTROL
from surveykit.security import Permission
from surveykit.web import representation

log = logging.getLogger(__name__)

ROUTE_NAME = "instrument"
PATH_PREFIX = "/api/v1/instruments/"


def routes_up_to_instrument(routes: Any) -> RoutesMapper:
    """The application's routes that can take a path under ``PATH_PREFIX``, in the router's order,
    up to the instrument route: matching against these picks the same route as the router does for
    such a path, without trying the many that cannot match it."""
    narrowed = RoutesMapper()
    for route in routes.get_routes():
        literal = "/" + route.pattern.lstrip("/").split("{", 1)[0].split("*", 1)[0]
        if PATH_PREFIX.startswith(literal) or literal.startswith(PATH_PREFIX):
            narrowed.routelist.append(route)
            narrowed.routes[route.name] = route
        if route.name == ROUTE_NAME:
            break
    return narrowed


def answer_from_memory(
    request: Request, routes: RoutesMapper, policy: Any, current_instruments: EpochCache
) -> Response | None:
    """The answer to a current-version GET when it can be given from memory alone, else None."""
    if request.method != "GET" or request.environ.get("QUERY_STRING"):
        return None
    if not request.environ.get("PATH_INFO", "").startswith(PATH_PREFIX):
        return None
    matched = routes(request)
    route = matched["route"]
    if route is None or route.name != ROUTE_NAME:
        return None
    identity = policy.remembered_identity(request)
    if identity is None:
        return None
    # Only a published slug is remembered with a value, and such a slug passes the URL text rule.
    current = current_instruments.get(matched["match"]["slug"], request.cache_epoch)
    if current is MISSING or current is None:
        return None
    served = services.remembered_representation(current.current, None)
    if served is None:
        return None
    context = StudyInstrumentContext(current.study)
    if not policy.permits_identity(identity, request.method, context, Permission.INSTRUMENTS_READ):
        return None  # the usual way words the refusal
    request.matchdict = matched["match"]
    request.matched_route = route
    return representation(request, served, CURRENT_CACHE_CONTROL)


def answers_like_the_token_policy(policy: Any) -> bool:
    """Whether the installed policy decides identity and access as ``TokenSecurityPolicy`` does, so
    that its ``remembered_identity`` and ``permits_identity`` give what its ``identity`` and
    ``permits`` would (a policy installed from Python code may override those)."""
    kind = type(policy)
    return (
        isinstance(policy, TokenSecurityPolicy)
        and kind.identity is TokenSecurityPolicy.identity
        and kind.permits is TokenSecurityPolicy.permits
        and kind.remembered_identity is TokenSecurityPolicy.remembered_identity
    )


def from_memory_tween_factory(handler: Callable[[Request], Response], registry: Any):
    routes = routes_up_to_instrument(registry.getUtility(IRoutesMapper))
    current_instruments = registry["current_instruments"]

    def from_memory_tween(request: Request) -> Response:
        policy = registry.queryUtility(ISecurityPolicy)
        if not answers_like_the_token_policy(policy):
            return handler(request)
        try:
            response = answer_from_memory(request, routes, policy, current_instruments)
        except Exception:  # noqa: BLE001 - e.g. the epoch read failing: the usual way reports it as JSON
            log.debug("answering from memory failed; taking the usual way", exc_info=True)
            response = None
        # The router sends NewResponse for this response as for any other.
        return handler(request) if response is None else response

    return from_memory_tween
