"""The participant registry of a country: search and filter (paged by key, never loaded whole), one
participant's agency, position and withdrawal edited, and the planned sample imported from a CSV or
XLSX file, checked row by row and shown before anything is stored.

The same services as the API's participant endpoints (``participants.services``, ``importer``), and
the same audit events.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import colander
from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.audit import services as audit
from surveykit.console.fieldwork import page_country, page_study
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.participants import importer, preview, schemas, services
from surveykit.participants.models import PARTICIPANT_STATUSES
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.studies.models import Country, Study

REGISTRY_TEMPLATE = "surveykit.console:templates/fieldwork/registry.jinja2"
IMPORT_TEMPLATE = "surveykit.console:templates/fieldwork/import.jinja2"
PARTICIPANT_TEMPLATE = "surveykit.console:templates/fieldwork/participant.jinja2"


REGISTRY_PAGE = 50
FILTERS = ("id_prefix", "agency", "position", "activity", "status")


# ---------------------------------------------------------------------------------------- the list


def read_filters(request: Request) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """The search form as typed, the filters and paging it asks for (through the API's query schema),
    and an error per field the schema refused."""
    typed = {name: request.GET.get(name, "").strip() for name in FILTERS}
    query = {name: value for name, value in typed.items() if value}
    if request.GET.get("after"):
        query["after"] = request.GET["after"]
    query["limit"] = str(REGISTRY_PAGE)
    try:
        return typed, schemas.ListQuerySchema().deserialize(query), {}
    except colander.Invalid as invalid:
        errors = {path.rsplit(".", 1)[-1]: message for path, message in invalid.asdict().items()}
        if set(errors) - set(FILTERS):  # the paging link itself (edited by hand): start again
            errors["form"] = translate(request, _("This page link is not valid: start from the first page."))
        return typed, {}, errors


@console_view(
    route_name="console.registry",
    request_method="GET",
    permission=Permission.PARTICIPANTS_READ,
    renderer=REGISTRY_TEMPLATE,
)
def registry(request: Request) -> dict[str, Any]:
    study = page_study(request)
    country = page_country(request, study)
    typed, query, errors = read_filters(request)
    page = None
    if not errors:
        filters = services.ParticipantFilter(
            activity=query["activity"],
            status=query["status"],
            id_prefix=query["id_prefix"],
            agency=query["agency"],
            position=query["position"],
        )
        page = services.participant_page(
            request.dbsession, study, country.code, filters, query["after"], query["limit"]
        )
    kept = {name: value for name, value in typed.items() if value}

    def url(**extra: str) -> str:
        return request.route_path(
            "console.registry", study=study.slug, cc=country.code, _query={**kept, **extra}
        )

    return {
        "study": study,
        "country": country,
        "form": typed,
        "errors": errors,
        "activities": _activity_options(request, study),
        "statuses": [(name, name) for name in PARTICIPANT_STATUSES],
        "participants": page.participants if page else [],
        "paging": {
            "label": translate(request, _("Page after ${pid}"), pid=query["after"])
            if query.get("after")
            else translate(request, _("First page")),
            "previous_url": url() if query.get("after") else None,
            "next_url": url(after=page.next_after) if page and page.next_after else None,
        },
        "may_edit": bool(request.has_permission(Permission.PARTICIPANTS_WRITE)),
    }


# ------------------------------------------------------------------------------------------ import


def _activity_options(request: Request, study: Study) -> list[tuple[str, str]]:
    return [
        (activity.code, f"{activity.code} · {activity.name}")
        for activity in studies.list_activities(request.dbsession, study)
    ]


def _import_page(
    request: Request,
    study: Study,
    country: Country,
    *,
    activity: str = "",
    errors: dict[str, str] | None = None,
    problems: list[preview.ProblemRow] | None = None,
    rows: list[preview.PreviewRow] | None = None,
    plan: importer.ImportPlan | None = None,
    upload: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render_page(
        IMPORT_TEMPLATE,
        {
            "study": study,
            "country": country,
            "activity": activity,
            "activities": _activity_options(request, study),
            "errors": errors or {},
            "problems": problems or [],
            "rows": rows,
            "plan": plan,
            "upload": upload,
        },
        request=request,
        status=status,
    )


@console_view(
    route_name="console.registry_import", request_method="GET", permission=Permission.PARTICIPANTS_WRITE
)
def import_form(request: Request) -> Response:
    study = page_study(request)
    return _import_page(request, study, page_country(request, study))


def _rejected(
    request: Request, study: Study, country: Country, activity: str, exc: importer.ImportRejected
) -> Response:
    count = exc.total
    message = translate(
        request,
        _(
            "Nothing was imported: the file has ${count} problem(s), listed below by row. "
            "Fix them and check again."
        ),
        count=count,
    )
    return _import_page(
        request,
        study,
        country,
        activity=activity,
        errors={"file": message},
        problems=preview.problems_by_row(exc.errors),
        status=422,
    )


@console_view(
    route_name="console.registry_import", request_method="POST", permission=Permission.PARTICIPANTS_WRITE
)
def import_file(request: Request) -> Response:
    """``step=check`` (an uploaded file): the dry run shown row by row, nothing stored;
    ``step=store`` (the checked file sent back): the import itself."""
    study = page_study(request)
    country = page_country(request, study)
    session = request.dbsession
    activity = request.POST.get("activity", "")
    errors: dict[str, str] = {}
    if activity not in {code for code, _label in _activity_options(request, study)}:
        errors["activity"] = translate(
            request, _("Choose the research activity these participants take part in.")
        )
    step = request.POST.get("step", "check")
    if step == "store":
        try:
            data = base64.b64decode(request.POST.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        filename = request.POST.get("filename", "")
        content_type = None
    else:
        upload = request.POST.get("file")
        if not hasattr(upload, "file"):
            errors["file"] = translate(request, _("Choose the CSV or XLSX file of the planned sample."))
            data, filename, content_type = b"", "", None
        else:
            data, filename, content_type = upload.file.read(), upload.filename or "", upload.type
    if not data and "file" not in errors:
        errors["file"] = translate(request, _("The file is empty: choose the file again."))
    if errors:
        return _import_page(request, study, country, activity=activity, errors=errors, status=422)
    try:
        kind = importer.file_kind(data, content_type, filename)
        plan = importer.parse(data, kind, scope=(activity, country.code))
        if step != "store":
            services.check_import(session, study, country.code, activity, plan)
            return _import_page(
                request,
                study,
                country,
                activity=activity,
                rows=preview.preview_plan(session, study, country.code, activity, plan),
                plan=plan,
                upload={"data": base64.b64encode(data).decode("ascii"), "filename": filename, "kind": kind},
            )
        created = services.import_plan(session, study, country.code, activity, plan, request.identity.actor)
    except importer.ImportRejected as exc:
        return _rejected(request, study, country, activity, exc)
    except services.RegistryError as exc:
        return _import_page(request, study, country, activity=activity, errors={"file": str(exc)}, status=409)
    numbers = [rows[0].interview_number for rows in created]
    audit.record_in_request(
        request,
        "participant.import",
        target=f"{study.slug}/{country.code}/{activity}",
        file_type=kind,
        rows=plan.rows,
        interviews=len(created),
        participants=plan.participants,
        first_number=min(numbers),
        last_number=max(numbers),
        known_ids=sum(len(interview) for interview in plan.interviews if interview[0].number is not None),
        via="console",
    )
    flash(
        request,
        translate(
            request,
            _("Imported ${participants} participants in ${interviews} interviews from ${file}."),
            participants=plan.participants,
            interviews=len(created),
            file=filename or kind,
        ),
    )
    return HTTPSeeOther(location=request.route_path("console.registry", study=study.slug, cc=country.code))


# ------------------------------------------------------------------------------------ participant


# What a coordinator may set the status to from each status (the registry's transitions).
def status_options(current: str) -> list[str]:
    return [current] + [new for old, new in sorted(services.TRANSITIONS) if old == current]


def _participant_or_404(request: Request, study: Study, for_update: bool = False) -> Any:
    if request.context.country is None:
        raise HTTPNotFound(
            translate(
                request, _("${pid} is not a participant ID like RA1-KE-04-B."), pid=request.matchdict["pid"]
            )
        )
    try:
        return services.get_participant(
            request.dbsession, study, request.matchdict["pid"], for_update=for_update
        )
    except services.ParticipantNotFound as exc:
        raise HTTPNotFound(str(exc)) from exc


def _participant_page(
    request: Request,
    study: Study,
    participant: Any,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    may_edit = request.has_permission(Permission.PARTICIPANTS_WRITE)
    return render_page(
        PARTICIPANT_TEMPLATE,
        {
            "study": study,
            "participant": participant,
            "may_edit": bool(may_edit),
            "form": form
            or {
                "agency": participant.agency,
                "position": participant.position or "",
                "status": participant.status,
            },
            "status_options": [(name, name) for name in status_options(participant.status)],
            "errors": errors or {},
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.participant", request_method="GET", permission=Permission.PARTICIPANTS_READ)
def participant_page(request: Request) -> Response:
    study = page_study(request)
    return _participant_page(request, study, _participant_or_404(request, study))


@console_view(
    route_name="console.participant", request_method="POST", permission=Permission.PARTICIPANTS_WRITE
)
def update_participant(request: Request) -> Response:
    study = page_study(request)
    participant = _participant_or_404(request, study, for_update=True)
    form = {
        "agency": request.POST.get("agency", "").strip(),
        "position": request.POST.get("position", "").strip(),
        "status": request.POST.get("status", participant.status),
    }
    if form["status"] not in PARTICIPANT_STATUSES:
        message = translate(request, _("Choose one of the statuses offered."))
        return _participant_page(request, study, participant, form, {"status": message}, 422)
    changes = {"agency": form["agency"], "position": form["position"] or None, "status": form["status"]}
    try:
        changed = services.update_participant(request.dbsession, participant, changes)
    except services.RegistryError as exc:
        request.dbsession.refresh(participant)
        field = exc.field if exc.field in ("agency", "position", "status") else "form"
        return _participant_page(request, study, participant, form, {field: str(exc)}, 422)
    if changed:
        audit.record_in_request(
            request, "participant.update", target=participant.pid, changed=changed, via="console"
        )
        flash(request, translate(request, _("${pid} is updated."), pid=participant.pid))
    else:
        flash(request, translate(request, _("Nothing changed.")), "info")
    return HTTPSeeOther(
        location=request.route_path("console.participant", study=study.slug, pid=participant.pid)
    )
