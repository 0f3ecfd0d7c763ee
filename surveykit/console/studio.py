"""The instrument studio's pages: upload an instrument file as a draft, see its problems next to
where they are, its translations, preview it in each language, compare it with the current
version, publish it; preview and compare published versions and download one as an XLSForm
workbook (docs/console-studio.md).

Drafts are seen and changed by whoever may publish instruments for the study their file names
(``surveykit.instruments.drafts.DraftResource``). The services behind the pages are reached through
``studio_services``.
"""

from __future__ import annotations

import re
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.audit import services as audit
from surveykit.console import studio_services as studio
from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.instruments import StudyInstrumentContext, services
from surveykit.instruments import drafts as drafts_service
from surveykit.instruments.drafts import CheckedFile, InstrumentDraft
from surveykit.security import Permission

TEMPLATES = "surveykit.console:templates/instruments/"
VERSION_NUMBER = re.compile(r"^[1-9][0-9]{0,8}$")
# The file field accepts what the studio reads (browsers use it to filter the file chooser).
ACCEPT = ".yaml,.yml,.json,.xlsx"
EXCERPT_CHARS = 160


def _render(template: str, values: dict[str, Any], request: Request, status: int = 200) -> Response:
    return render_page(TEMPLATES + template, {"accept": ACCEPT, **values}, request=request, status=status)


def _uploaded(request: Request) -> tuple[CheckedFile | None, dict[str, str]]:
    """The file sent in the form's ``file`` field, read and checked, or the error to show beside it."""
    upload = request.POST.get("file")
    if not hasattr(upload, "file"):
        return None, {"file": translate(request, _("Choose the instrument file (YAML, JSON or XLSForm)."))}
    data = upload.file.read(studio.MAX_UPLOAD_BYTES + 1)
    try:
        checked = studio.check_upload(request.dbsession, data, upload.type, upload.filename or "")
    except studio.UploadRefused as exc:
        return None, {"file": translate(request, exc.message)}
    if not drafts_service.may_publish_for(request.identity, checked.study) and (
        checked.study is not None or checked.definition is not None
    ):
        named = checked.study or _("every study (a shared instrument)")
        message = _(
            "This file is an instrument of ${study}: you may not publish instruments there.",
            mapping={"study": named},
        )
        return None, {"file": translate(request, message)}
    return checked, {}


# ------------------------------------------------------------------------------------------ upload


@console_view(
    route_name="console.studio_new", request_method="GET", permission=Permission.INSTRUMENTS_PUBLISH
)
def new_draft_form(request: Request) -> Response:
    return _render("new.jinja2", {"errors": {}}, request)


@console_view(
    route_name="console.studio_new", request_method="POST", permission=Permission.INSTRUMENTS_PUBLISH
)
def upload_draft(request: Request) -> Response:
    checked, errors = _uploaded(request)
    if checked is None:
        return _render("new.jinja2", {"errors": errors}, request, status=422)
    draft = drafts_service.create_draft(
        request.dbsession, checked, request.identity.username, request.identity.user_id
    )
    _audit_draft(request, "instrument.draft_upload", draft)
    _flash_checked(request, draft)
    return HTTPSeeOther(location=request.route_path("console.draft", draft_id=draft.id))


def _audit_draft(request: Request, action: str, draft: InstrumentDraft) -> None:
    audit.record_in_request(
        request,
        action,
        target=f"draft:{draft.id}",
        slug=draft.slug,
        study=draft.study,
        filename=draft.filename,
        problems=len(draft.problems),
        via="console",
    )


def _flash_checked(request: Request, draft: InstrumentDraft) -> None:
    if draft.publishable:
        flash(request, translate(request, _("${file} is checked: no problems found."), file=draft.filename))
    else:
        flash(
            request,
            translate(
                request,
                _("${file} has ${count} problem(s), listed below with where they are."),
                file=draft.filename,
                count=len(draft.problems),
            ),
            "error",
        )


# ------------------------------------------------------------------------------------------- draft


def _draft_or_404(request: Request) -> InstrumentDraft | Response:
    draft = request.context.draft
    if draft is None:
        return error_page(
            request,
            404,
            translate(request, _("No such draft")),
            translate(request, _("This draft does not exist (it may have been published or deleted).")),
        )
    return draft


def _excerpts(draft: InstrumentDraft) -> dict[int, str]:
    """The text of each line a problem names, to show beside it (YAML and JSON files)."""
    if draft.format not in ("yaml", "json"):
        return {}
    lines = draft.content.decode("utf-8", "replace").splitlines()
    wanted = {problem.get("line") for problem in draft.problems if problem.get("line")}
    return {number: lines[number - 1][:EXCERPT_CHARS] for number in wanted if 0 < number <= len(lines)}


def _publish_state(
    request: Request, draft: InstrumentDraft, comparison: dict[str, Any] | None
) -> dict[str, Any]:
    """Whether the publish button is enabled, and if not, why."""
    if not draft.publishable:
        return {"allowed": False, "reason": translate(request, _("Fix the problems above first."))}
    if comparison is not None and comparison["refused"]:
        return {
            "allowed": False,
            "reason": translate(
                request,
                _(
                    "Publishing would change the type of a question that earlier versions already hold "
                    "(see below): give the changed question a new id."
                ),
            ),
        }
    if comparison is not None and comparison["identical"]:
        return {
            "allowed": False,
            "reason": translate(request, _("This draft is identical to the current version.")),
        }
    return {"allowed": True, "reason": None}


def _draft_page(
    request: Request, draft: InstrumentDraft, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    session = request.dbsession
    definition = draft.definition
    comparison = studio.compare_with_current(session, definition) if definition is not None else None
    values = {
        "draft": draft,
        "errors": errors or {},
        "excerpts": _excerpts(draft),
        "translations": studio.translation_listing(session, definition) if definition is not None else None,
        "comparison": comparison,
        "publish": _publish_state(request, draft, comparison),
    }
    return _render("draft.jinja2", values, request, status)


@console_view(route_name="console.draft", request_method="GET", permission=Permission.INSTRUMENTS_PUBLISH)
def draft_page(request: Request) -> Response:
    draft = _draft_or_404(request)
    if isinstance(draft, Response):
        return draft
    return _draft_page(request, draft)


@console_view(
    route_name="console.draft_file", request_method="POST", permission=Permission.INSTRUMENTS_PUBLISH
)
def replace_draft_file(request: Request) -> Response:
    draft = _draft_or_404(request)
    if isinstance(draft, Response):
        return draft
    checked, errors = _uploaded(request)
    if checked is None:
        return _draft_page(request, draft, errors, status=422)
    identity = request.identity
    drafts_service.replace_file(request.dbsession, draft, checked, identity.username, identity.user_id)
    _audit_draft(request, "instrument.draft_replace", draft)
    _flash_checked(request, draft)
    return HTTPSeeOther(location=request.route_path("console.draft", draft_id=draft.id))


@console_view(
    route_name="console.draft_delete", request_method="POST", permission=Permission.INSTRUMENTS_PUBLISH
)
def delete_draft(request: Request) -> Response:
    draft = _draft_or_404(request)
    if isinstance(draft, Response):
        return draft
    filename = draft.filename
    _audit_draft(request, "instrument.draft_delete", draft)
    drafts_service.delete_draft(request.dbsession, draft)
    flash(request, translate(request, _("The draft of ${file} is deleted."), file=filename))
    return HTTPSeeOther(location=request.route_path("console.instruments"))


@console_view(
    route_name="console.draft_publish", request_method="POST", permission=Permission.INSTRUMENTS_PUBLISH
)
def publish_draft(request: Request) -> Response:
    """Publish as ``POST /api/v1/instruments`` does: the same checks, the same audit event."""
    draft = _draft_or_404(request)
    if isinstance(draft, Response):
        return draft
    session = request.dbsession
    if not draft.publishable:
        message = translate(request, _("This draft has problems: fix them before publishing."))
        return _draft_page(request, draft, {"publish": message}, status=409)
    try:
        definition = services.validate_definition(draft.definition)
    except services.DefinitionError:
        message = translate(request, _("This draft has problems: upload the file again."))
        return _draft_page(request, draft, {"publish": message}, status=409)
    study = definition.get("study")
    if not request.has_permission(Permission.INSTRUMENTS_PUBLISH, StudyInstrumentContext(study)):
        audit.record_refusal(
            request, "instrument.publish", target=definition["slug"], study=study, via="console"
        )
        return error_page(
            request,
            403,
            translate(request, _("Not allowed")),
            translate(
                request, _("Publishing this instrument needs a coordinator or admin grant in its study.")
            ),
        )
    ownership = studio.ownership_problems(session, definition)
    if ownership:
        return _draft_page(request, draft, {"publish": ownership[0]["message"]}, status=409)
    try:
        result = services.publish(session, definition, request.authenticated_userid)
    except services.DefinitionError as exc:
        return _draft_page(request, draft, {"publish": str(exc)}, status=409)
    if result.created:
        audit.record_in_request(
            request,
            "instrument.publish",
            target=f"{result.slug}@{result.version}",
            content_hash=result.content_hash,
            via="console",
        )
        message = _("${slug} version ${version} is published.")
    else:
        message = _("${slug} version ${version} already holds exactly this: nothing new was published.")
    drafts_service.delete_draft(session, draft)
    flash(request, translate(request, message, slug=result.slug, version=result.version))
    return HTTPSeeOther(location=request.route_path("console.instrument", slug=result.slug))


# ----------------------------------------------------------------------------------------- preview


def _language_not_offered(request: Request, exc: services.LanguageNotOffered) -> Response:
    return error_page(
        request,
        400,
        translate(request, _("Language not offered")),
        translate(
            request,
            _("This instrument is not offered in ${language}; choose one of ${languages}."),
            language=exc.language[:20],
            languages=", ".join(exc.offered),
        ),
    )


def _preview_page(request: Request, definition: dict[str, Any], values: dict[str, Any], url: Any) -> Response:
    try:
        outline = studio.outline(definition, request.GET.get("lang") or None)
    except services.LanguageNotOffered as exc:
        return _language_not_offered(request, exc)
    languages = [
        {"code": code, "url": url(code), "current": code == outline["language"]}
        for code in outline["languages"]
    ]
    return _render("preview.jinja2", {"outline": outline, "languages": languages, **values}, request)


def _readable_draft(request: Request, title: str, explanation: str) -> Any:
    """The draft of the URL, if its file could be read as an instrument; else the page saying so
    (404 for no such draft, 409 with ``title`` and ``explanation`` for a draft with problems)."""
    draft = _draft_or_404(request)
    if isinstance(draft, Response) or draft.definition is not None:
        return draft
    return error_page(request, 409, translate(request, title), translate(request, explanation))


@console_view(
    route_name="console.draft_preview", request_method="GET", permission=Permission.INSTRUMENTS_PUBLISH
)
def draft_preview(request: Request) -> Response:
    draft = _readable_draft(
        request,
        _("Nothing to preview yet"),
        _("This draft has problems: fix them, and the preview will show it."),
    )
    if isinstance(draft, Response):
        return draft

    def url(code: str) -> str:
        return request.route_path("console.draft_preview", draft_id=draft.id, _query={"lang": code})

    return _preview_page(request, draft.definition, {"draft": draft, "version": None}, url)


def _version_number(request: Request) -> int | None:
    raw = request.matchdict["version"]
    return int(raw) if VERSION_NUMBER.match(raw) else None


def _no_version(request: Request) -> Response:
    return error_page(
        request,
        404,
        translate(request, _("No such version")),
        translate(
            request,
            _("Instrument ${slug} has no version ${version}."),
            slug=request.matchdict["slug"],
            version=request.matchdict.get("version", "")[:20],
        ),
    )


@console_view(
    route_name="console.version_preview", request_method="GET", permission=Permission.INSTRUMENTS_READ
)
def version_preview(request: Request) -> Response:
    slug, version = request.matchdict["slug"], _version_number(request)
    try:
        if version is None:
            raise services.VersionNotFound(slug)
        ref = services.find_version(request.dbsession, slug, version)
    except (services.InstrumentNotFound, services.VersionNotFound):
        return _no_version(request)
    definition = services.load_definition(request.dbsession, slug, ref.version)

    def url(code: str) -> str:
        return request.route_path(
            "console.version_preview", slug=slug, version=ref.version, _query={"lang": code}
        )

    return _preview_page(request, definition, {"draft": None, "version": ref.version}, url)


# ----------------------------------------------------------------------------------------- compare


@console_view(
    route_name="console.draft_compare", request_method="GET", permission=Permission.INSTRUMENTS_PUBLISH
)
def draft_compare(request: Request) -> Response:
    draft = _readable_draft(
        request,
        _("Nothing to compare yet"),
        _("This draft has problems: fix them, and it can be compared."),
    )
    if isinstance(draft, Response):
        return draft
    comparison = studio.compare_with_current(request.dbsession, draft.definition)
    values = {
        "draft": draft,
        "slug": draft.definition["slug"],
        "comparison": comparison,
        "publish": _publish_state(request, draft, comparison),
        "versions": [],
        "errors": {},
    }
    return _render("compare.jinja2", values, request)


@console_view(
    route_name="console.instrument_compare", request_method="GET", permission=Permission.INSTRUMENTS_READ
)
def instrument_compare(request: Request) -> Response:
    """Two published versions, chosen with ``from`` and ``to`` (default: the two latest)."""
    slug = request.matchdict["slug"]
    try:
        versions = services.list_versions(request.dbsession, slug)
    except services.InstrumentNotFound:
        return _no_version(request)
    numbers = [item["version"] for item in versions]
    errors: dict[str, str] = {}
    chosen: dict[str, int] = {}
    defaults = {"to": numbers[0], "from": numbers[1] if len(numbers) > 1 else numbers[0]}
    for name in ("from", "to"):
        raw = request.GET.get(name, str(defaults[name]))
        if not VERSION_NUMBER.match(raw) or int(raw) not in numbers:
            errors[name] = translate(request, _("Choose one of the published versions."))
        else:
            chosen[name] = int(raw)
    comparison = None
    if not errors:
        comparison = studio.compare_versions(request.dbsession, slug, chosen["from"], chosen["to"])
    values = {
        "draft": None,
        "slug": slug,
        "comparison": comparison,
        "publish": None,
        "versions": numbers,
        "chosen": chosen,
        "errors": errors,
    }
    return _render("compare.jinja2", values, request, status=422 if errors else 200)


# ---------------------------------------------------------------------------------------- workbook


@console_view(route_name="console.version_xlsx", request_method="GET", permission=Permission.INSTRUMENTS_READ)
def version_workbook(request: Request) -> Response:
    slug, version = request.matchdict["slug"], _version_number(request)
    try:
        if version is None:
            raise services.VersionNotFound(slug)
        body = studio.version_workbook(request.dbsession, slug, version)
    except (services.InstrumentNotFound, services.VersionNotFound):
        return _no_version(request)
    response = Response(body=body, content_type=studio.XLSX_MEDIA_TYPE)
    response.content_disposition = f'attachment; filename="{slug}-v{version}.xlsx"'
    response.cache_control = "no-store"
    return response
