"""Conflicts of a country: the queue (record conflicts and field conflicts), each conflict side by
side with the current record, field by field with the differences marked, its resolution (keep
current, take incoming, or merge chosen fields) and the interview's revision history.

Resolving goes through the API's resolution services (``sync.resolve_conflict``,
``sync.resolve_field_conflict``): a merged record is validated exactly as a push is, and the same
audit events are recorded.
"""

from __future__ import annotations

import json
import re
from typing import Any

import zope.sqlalchemy
from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.audit import services as audit
from surveykit.console.fieldwork import page_country, page_study
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission
from surveykit.sync import review, services
from surveykit.sync.services import Caller

QUEUE_TEMPLATE = "surveykit.console:templates/fieldwork/conflicts.jinja2"
CONFLICT_TEMPLATE = "surveykit.console:templates/fieldwork/conflict.jinja2"
FIELD_CONFLICT_TEMPLATE = "surveykit.console:templates/fieldwork/field_conflict.jinja2"
STATUSES = ("open", "resolved", "all")
PAGE_SIZE = 50
_PARTICIPANT_INDEX = re.compile(r"^participants\[(\d+)\](?:\.(\w+))?")


def _status(request: Request) -> str:
    status = request.GET.get("status", "open")
    return status if status in STATUSES else "open"


def _after(request: Request, name: str) -> int:
    raw = request.GET.get(name, "0")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


@console_view(
    route_name="console.conflicts",
    request_method="GET",
    permission=Permission.CONFLICTS_READ,
    renderer=QUEUE_TEMPLATE,
)
def queue(request: Request) -> dict[str, Any]:
    study = page_study(request)
    country = page_country(request, study)
    status = _status(request)
    session = request.dbsession
    records = services.list_conflicts(
        session, study, {country.code}, status, _after(request, "after"), PAGE_SIZE
    )
    fields = services.list_field_conflicts(
        session, study, {country.code}, status, _after(request, "field_after"), PAGE_SIZE
    )

    def more(name: str, after: int) -> str:
        return request.route_path(
            "console.conflicts", study=study.slug, cc=country.code, _query={"status": status, name: after}
        )

    return {
        "study": study,
        "country": country,
        "status": status,
        "statuses": STATUSES,
        "records": records["conflicts"],
        "records_more": more("after", records["next_after"]) if records["has_more"] else None,
        "fields": fields["field_conflicts"],
        "fields_more": more("field_after", fields["next_after"]) if fields["has_more"] else None,
        "first_page": not (request.GET.get("after") or request.GET.get("field_after")),
    }


# ---------------------------------------------------------------------------------- one conflict


def display(value: Any) -> str:
    """A field's value as a person reads it in the comparison."""
    if value is review.MISSING or value is None:
        return ""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)


def problem_fields(problems: list[tuple[str, str]], record: dict[str, Any]) -> dict[str, list[str]]:
    """Validation problems of a merged record keyed by the comparison's field paths (``record.answers.x``
    -> ``answers.x``, ``record.participants[1].agency`` -> ``participants.B.agency``); problems of
    no one field under ``""``."""
    keyed: dict[str, list[str]] = {}
    people = record.get("participants") if isinstance(record.get("participants"), list) else []
    for path, message in problems:
        field = path.removeprefix("record").lstrip(".")
        match = _PARTICIPANT_INDEX.match(field)
        if match is not None:
            index = int(match.group(1))
            person = people[index] if index < len(people) and isinstance(people[index], dict) else {}
            letter = person.get("letter", "?")
            field = f"participants.{letter}" + (f".{match.group(2)}" if match.group(2) else "")
        elif field.startswith("answers."):
            field = "answers." + re.split(r"[.\[]", field[len("answers.") :], maxsplit=1)[0]
        elif field.startswith("quotes"):
            field = "quotes"
        elif field.startswith("probes_used"):
            field = "probes_used"
        keyed.setdefault(field, []).append(message)
    return keyed


def _conflict_or_404(request: Request) -> dict[str, Any]:
    conflict_id = request.context.conflict_id
    conflict = review.get_conflict(request.dbsession, conflict_id) if conflict_id is not None else None
    if conflict is None:
        raise HTTPNotFound(
            translate(request, _("There is no conflict ${id}."), id=request.matchdict["conflict_id"])
        )
    return conflict


def _conflict_page(
    request: Request,
    conflict: dict[str, Any],
    errors: dict[str, Any] | None = None,
    chosen: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    current = conflict["current"]["record"]
    rows = review.compare_records(current, conflict["record"])
    return render_page(
        CONFLICT_TEMPLATE,
        {
            "conflict": conflict,
            "rows": rows,
            "differing": [row for row in rows if row.differs],
            "display": display,
            "missing": review.MISSING,
            "history": review.revision_history(request.dbsession, conflict["uuid"]),
            "errors": errors or {},
            "field_errors": (errors or {}).get("fields", {}),
            "chosen": chosen or {"resolution": "", "take": set()},
            "label": f"{conflict['activity']}-{conflict['country']}-{conflict['interview_number']:02d}",
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.conflict", request_method="GET", permission=Permission.CONFLICTS_RESOLVE)
def conflict_page(request: Request) -> Response:
    return _conflict_page(request, _conflict_or_404(request))


@console_view(route_name="console.conflict", request_method="POST", permission=Permission.CONFLICTS_RESOLVE)
def resolve(request: Request) -> Response:
    conflict = _conflict_or_404(request)
    resolution = request.POST.get("resolution", "")
    take = [path for path in request.POST.getall("take") if isinstance(path, str)]
    chosen = {"resolution": resolution, "take": set(take)}
    raw_base = request.POST.get("base_revision", "")
    base = int(raw_base) if raw_base.isascii() and raw_base.isdigit() and len(raw_base) < 10 else None
    if resolution not in ("keep_current", "take_incoming", "merged"):
        message = translate(request, _("Choose how to resolve the conflict."))
        return _conflict_page(request, conflict, {"resolution": message}, chosen, 422)
    if resolution == "merged" and not take:
        message = translate(
            request,
            _("Tick the fields to take from the incoming version (or choose to keep the current record)."),
        )
        return _conflict_page(request, conflict, {"take": message}, chosen, 422)
    record = None
    if resolution == "merged":
        try:
            record = review.merge_records(conflict["current"]["record"], conflict["record"], take)
        except review.UnknownField as exc:
            message = translate(
                request, _("${field} is not a field of this record.", mapping={"field": exc.path})
            )
            return _conflict_page(request, conflict, {"take": message}, chosen, 422)
    caller = Caller.from_identity(request.identity)
    session = request.dbsession
    try:
        result = services.resolve_conflict(session, caller, conflict["id"], resolution, record, base)
    except services.ConflictAlreadyResolved as exc:
        fresh = _conflict_or_404(request)
        return _conflict_page(request, fresh, {"form": str(exc) + "."}, chosen, 409)
    except services.StaleResolution as exc:
        fresh = _conflict_or_404(request)
        message = translate(
            request,
            _(
                "The record changed while you were looking at it (it is now at revision ${revision}): "
                "the comparison below shows it as it is now. Review it and resolve again."
            ),
            revision=exc.current["revision"],
        )
        return _conflict_page(request, fresh, {"form": message}, chosen, 409)
    except services.ResolutionInvalid as exc:
        keyed = problem_fields(exc.problems, record or conflict["record"])
        general = keyed.pop("", [])
        message = translate(
            request,
            _("Nothing was stored: the resolved record would not be valid. See the fields marked below."),
        )
        errors = {"form": " ".join([message, *general]), "fields": keyed}
        return _conflict_page(request, conflict, errors, chosen, 422)
    zope.sqlalchemy.mark_changed(session, request.tm)
    audit.record_in_request(
        request,
        "sync.conflict_resolved",
        target=str(conflict["id"]),
        uuid=result.current["uuid"],
        resolution=resolution,
        revision=result.current["revision"],
        new_revision=result.new_revision,
        via="console",
    )
    for kept in result.field_conflicts:
        details = dict(kept)
        audit.record_in_request(request, details.pop("action"), **details)
    if result.new_revision:
        message = _("Conflict ${id} is resolved: the record is now at revision ${revision}.")
    else:
        message = _("Conflict ${id} is resolved: the record stays at revision ${revision}.")
    flash(request, translate(request, message, id=conflict["id"], revision=result.current["revision"]))
    return HTTPSeeOther(location=request.route_path("console.conflict", conflict_id=conflict["id"]))


# ------------------------------------------------------------------------------ one field conflict


def _field_conflict_or_404(request: Request) -> dict[str, Any]:
    conflict_id = request.context.conflict_id
    conflict = review.get_field_conflict(request.dbsession, conflict_id) if conflict_id is not None else None
    if conflict is None:
        raise HTTPNotFound(
            translate(request, _("There is no field conflict ${id}."), id=request.matchdict["conflict_id"])
        )
    return conflict


def _field_conflict_page(
    request: Request, conflict: dict[str, Any], errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    return render_page(
        FIELD_CONFLICT_TEMPLATE,
        {
            "conflict": conflict,
            "display": display,
            "errors": errors or {},
            "registry_json": json.dumps(conflict["registry"]),
        },
        request=request,
        status=status,
    )


@console_view(
    route_name="console.field_conflict", request_method="GET", permission=Permission.CONFLICTS_RESOLVE
)
def field_conflict_page(request: Request) -> Response:
    return _field_conflict_page(request, _field_conflict_or_404(request))


@console_view(
    route_name="console.field_conflict", request_method="POST", permission=Permission.CONFLICTS_RESOLVE
)
def resolve_field(request: Request) -> Response:
    conflict = _field_conflict_or_404(request)
    resolution = request.POST.get("resolution", "")
    if resolution not in ("keep_current", "take_incoming"):
        message = translate(request, _("Choose which value the registry keeps."))
        return _field_conflict_page(request, conflict, {"resolution": message}, 422)
    extra: dict[str, Any] = {}
    try:
        extra["expected"] = json.loads(request.POST.get("registry", ""))
    except ValueError:
        pass  # without the value the page showed, the resolution is not checked for staleness
    caller = Caller.from_identity(request.identity)
    try:
        result = services.resolve_field_conflict(
            request.dbsession, caller, conflict["id"], resolution, **extra
        )
    except services.ConflictAlreadyResolved as exc:
        return _field_conflict_page(request, _field_conflict_or_404(request), {"form": str(exc) + "."}, 409)
    except services.StaleFieldResolution as exc:
        message = translate(
            request,
            _(
                "The registry's ${field} changed while you were looking at it: it is now shown below. "
                "Review it and resolve again."
            ),
            field=exc.field,
        )
        return _field_conflict_page(request, _field_conflict_or_404(request), {"form": message}, 409)
    audit.record_in_request(
        request,
        "sync.field_conflict_resolved",
        target=str(conflict["id"]),
        pid=result.conflict["pid"],
        field=result.conflict["field"],
        resolution=resolution,
        changed=result.changed,
        via="console",
    )
    flash(request, translate(request, _("Field conflict ${id} is resolved."), id=conflict["id"]))
    return HTTPSeeOther(location=request.route_path("console.field_conflict", conflict_id=conflict["id"]))
