"""The codebook pages (docs/console-analysis.md#the-codebook): the study's codes, and for whoever may
edit the codebook (``CODEBOOK_EDIT``: a grant over the whole study, or its admins) the forms to add a
code, edit one, retire or reactivate it, merge it into another, and see its history.

The same services and audit events as the codebook API (``surveykit.analysis.codebook``:
``codebook.code_created``, ``codebook.code_updated`` and so on, with ``via: console``). A refused
change is shown next to the field it is about and stores nothing. An edit names the version of the
code its form was made from; a change made meanwhile by someone else is shown as an edit conflict.
"""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

from surveykit.analysis import codebook
from surveykit.analysis.models import Code
from surveykit.audit import services as audit
from surveykit.console import analysis_reads as reads
from surveykit.console.analysis import page_scope
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission
from surveykit.studies.models import Study

TEMPLATES = "surveykit.console:templates/analysis"
CODEBOOK_TEMPLATE = f"{TEMPLATES}/codebook.jinja2"
CODE_TEMPLATE = f"{TEMPLATES}/code.jinja2"
MERGE_TEMPLATE = f"{TEMPLATES}/code_merge.jinja2"
CODE_FIELDS = ("name", "definition", "colour", "parent_id")
# Which form field a service's refusal belongs next to.
FIELD_OF = {
    "name": "name",
    "definition": "definition",
    "colour": "colour",
    "parent_id": "parent_id",
    "into": "into",
}


def may_edit(request: Request) -> bool:
    return bool(request.has_permission(Permission.CODEBOOK_EDIT, request.context))


def record_changes(request: Request, changes: list[codebook.Change]) -> None:
    for change in changes:
        audit.record_in_request(request, change.action, target=change.target, via="console", **change.details)


def _whole_number(raw: Any) -> int | None:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 10:
        return int(raw)
    return None


def _code_or_404(request: Request, study: Study, for_update: bool = False) -> Code:
    code_id = int(request.matchdict["code_id"])
    if for_update:
        codebook.lock_codebook(request.dbsession, study)
    try:
        return codebook.get_code(request.dbsession, study, code_id, for_update=for_update)
    except codebook.CodeNotFound as exc:
        raise HTTPNotFound(translate(request, _("The codebook has no code ${id}."), id=code_id)) from exc


def _field_of(exc: codebook.CodebookError) -> str:
    return FIELD_OF.get(exc.field or "", "form")


def _code_form(request: Request) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The add/edit form: what was typed (to show again), the values for the service, and the
    problems the service cannot see (a parent that is no number)."""
    form = request.POST
    typed = {name: form.get(name, "") for name in CODE_FIELDS}
    values: dict[str, Any] = {
        "name": typed["name"],
        "definition": typed["definition"].replace("\r\n", "\n"),
        "colour": typed["colour"] or codebook.DEFAULT_COLOUR,
    }
    errors: dict[str, str] = {}
    if typed["parent_id"] == "":
        values["parent_id"] = None
    elif (parent := _whole_number(typed["parent_id"])) is not None:
        values["parent_id"] = parent
    else:
        errors["parent_id"] = translate(request, _("Choose the code to place it under, or the top."))
    return typed, values, errors


# -------------------------------------------------------------------------------------- codebook


def _codebook_page(
    request: Request,
    study: Study,
    country: Any,
    errors: dict[str, str] | None = None,
    typed: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    codes = reads.codebook(request.dbsession, study)
    return render_page(
        CODEBOOK_TEMPLATE,
        {
            "study": study,
            "country": country,
            "codes": codes,
            "may_edit": may_edit(request),
            "parents": [code for code in codes if code.status != "merged"],
            "errors": errors or {},
            "typed": typed or {"colour": codebook.DEFAULT_COLOUR},
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.codebook", request_method="GET", permission=Permission.ANALYSIS_READ)
def codebook_page(request: Request) -> Response:
    study, country = page_scope(request)
    return _codebook_page(request, study, country)


@console_view(route_name="console.codebook", request_method="POST", permission=Permission.CODEBOOK_EDIT)
def add_code(request: Request) -> Response:
    study, country = page_scope(request)
    typed, values, errors = _code_form(request)
    if errors:
        return _codebook_page(request, study, country, errors, typed, 422)
    session = request.dbsession
    codebook.lock_codebook(session, study)
    try:
        code, change = codebook.create_code(session, study, request.identity.actor, **values)
    except codebook.CodebookError as exc:
        return _codebook_page(request, study, country, {_field_of(exc): str(exc)}, typed, 422)
    record_changes(request, [change])
    flash(request, translate(request, _("Code ${name} added."), name=code.name))
    return HTTPSeeOther(
        location=request.route_path("console.codebook", study=study.slug, country=country.code)
        + f"#code-{code.id}"
    )


# ------------------------------------------------------------------------------------------ a code


def _code_page(
    request: Request,
    study: Study,
    country: Any,
    code: Code,
    errors: dict[str, str] | None = None,
    typed: dict[str, Any] | None = None,
    submitted: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    session = request.dbsession
    rows = reads.codebook(session, study)
    row = next(row for row in rows if row.id == code.id)
    below = {other.id for other in rows if other.path.startswith(f"{row.path} {codebook.PATH_SEPARATOR} ")}
    return render_page(
        CODE_TEMPLATE,
        {
            "study": study,
            "country": country,
            "code": code,
            "row": row,
            "may_edit": may_edit(request),
            "parents": [
                other for other in rows if other.status != "merged" and other.id not in below | {code.id}
            ],
            "targets": [
                other for other in rows if other.status == "active" and other.id not in below | {code.id}
            ],
            "history": codebook.code_history(session, study, code),
            "paths": {other.id: other.path for other in rows},
            "errors": errors or {},
            "typed": typed or _current_values(code),
            "submitted": submitted,
        },
        request=request,
        status=status,
    )


def _current_values(code: Code) -> dict[str, Any]:
    return {
        "name": code.name,
        "definition": code.definition or "",
        "colour": code.colour,
        "parent_id": "" if code.parent_id is None else str(code.parent_id),
    }


def _stale(request: Request, study: Study, country: Any, code: Code, submitted: dict[str, Any]) -> Response:
    """The edit conflict: the form again with the code's current values, and what was sent."""
    message = translate(
        request,
        _(
            "This code was changed by someone else meanwhile (it is now at version ${version}). The form "
            "shows its current values: apply your change to them again."
        ),
        version=code.version,
    )
    return _code_page(request, study, country, code, {"form": message}, _current_values(code), submitted, 409)


@console_view(route_name="console.codebook_code", request_method="GET", permission=Permission.ANALYSIS_READ)
def code_page(request: Request) -> Response:
    study, country = page_scope(request)
    return _code_page(request, study, country, _code_or_404(request, study))


@console_view(route_name="console.codebook_code", request_method="POST", permission=Permission.CODEBOOK_EDIT)
def edit_code(request: Request) -> Response:
    study, country = page_scope(request)
    code = _code_or_404(request, study, for_update=True)
    typed, values, errors = _code_form(request)
    version = _whole_number(request.POST.get("version", ""))
    if version is None:
        errors["form"] = translate(request, _("The form lacks the version of the code: open the code again."))
    if errors:
        return _code_page(request, study, country, code, errors, typed, status=422)
    try:
        change = codebook.update_code(request.dbsession, study, code, version, values)
    except codebook.StaleVersion:
        return _stale(request, study, country, code, typed)
    except codebook.CodebookError as exc:
        return _code_page(request, study, country, code, {_field_of(exc): str(exc)}, typed, status=422)
    if change is None:
        flash(request, translate(request, _("Nothing to save: the code is as it was.")), "info")
    else:
        record_changes(request, [change])
        flash(request, translate(request, _("Code ${name} saved."), name=code.name))
    return HTTPSeeOther(location=request.url)


@console_view(
    route_name="console.codebook_code_status", request_method="POST", permission=Permission.CODEBOOK_EDIT
)
def change_status(request: Request) -> Response:
    """``action=retire`` or ``action=reactivate``, for the version the page showed."""
    study, country = page_scope(request)
    code = _code_or_404(request, study, for_update=True)
    action = request.POST.get("action", "")
    version = _whole_number(request.POST.get("version", ""))
    changes = {"retire": codebook.retire_code, "reactivate": codebook.reactivate_code}
    if action not in changes or version is None:
        message = translate(request, _("Choose to retire or to reactivate the code."))
        return _code_page(request, study, country, code, {"status": message}, status=422)
    try:
        change = changes[action](request.dbsession, study, code, version)
    except codebook.StaleVersion:
        return _stale(request, study, country, code, {})
    except codebook.CodebookError as exc:
        return _code_page(request, study, country, code, {"status": str(exc)}, status=409)
    record_changes(request, [change])
    message = _("Code ${name} retired.") if action == "retire" else _("Code ${name} is active again.")
    flash(request, translate(request, message, name=code.name))
    return HTTPSeeOther(
        location=request.route_path(
            "console.codebook_code", study=study.slug, country=country.code, code_id=code.id
        )
    )


@console_view(
    route_name="console.codebook_code_merge", request_method="POST", permission=Permission.CODEBOOK_EDIT
)
def merge_code(request: Request) -> Response:
    """Without ``confirmed``: the confirmation page (what moves where); with it, the merge."""
    study, country = page_scope(request)
    session = request.dbsession
    code = _code_or_404(request, study, for_update=True)
    into = _whole_number(request.POST.get("into", ""))
    version = _whole_number(request.POST.get("version", ""))
    if into is None or version is None:
        message = translate(request, _("Choose the code to merge this one into."))
        return _code_page(request, study, country, code, {"into": message}, status=422)
    if version != code.version:
        return _stale(request, study, country, code, {})
    try:
        target = codebook.get_code(session, study, into)
    except codebook.CodeNotFound:
        message = translate(request, _("The codebook has no code ${id}."), id=into)
        return _code_page(request, study, country, code, {"into": message}, status=422)
    if request.POST.get("confirmed") != "yes":
        codes = codebook.study_codes(session, study)
        response = render_to_response(
            MERGE_TEMPLATE,
            {
                "study": study,
                "country": country,
                "code": code,
                "target": target,
                "paths": codebook.paths_of(codes),
                "codings": codebook.coding_counts(session, study).get(code.id, 0),
                "children": [child for child in codes if child.parent_id == code.id],
            },
            request=request,
        )
        return response
    try:
        changes = codebook.merge_code(session, study, code, into, version)
    except codebook.StaleVersion:
        return _stale(request, study, country, code, {})
    except codebook.CodebookError as exc:
        return _code_page(request, study, country, code, {"into": str(exc)}, status=422)
    record_changes(request, changes)
    flash(
        request,
        translate(
            request,
            _("Code ${name} merged into ${target}: ${count} codings moved."),
            name=code.name,
            target=target.name,
            count=changes[0].details["codings_moved"],
        ),
    )
    return HTTPSeeOther(
        location=request.route_path(
            "console.codebook_code", study=study.slug, country=country.code, code_id=target.id
        )
    )
