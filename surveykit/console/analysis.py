"""The analysts' pages (docs/console-analysis.md): where the caller may analyse, a country's
interviews, the coding page of one interview, and the agreement of two coders.

Codings are made, changed and deleted through ``surveykit.analysis.coding``, with the API's checks
and audit events (``coding.created``, ``coding.updated``, ``coding.deleted``, with ``via: console``).
Offsets are Unicode code points, as in the API; the coding page's script converts the browser's
selection (UTF-16 units) before filling them in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

from surveykit import text as text_rule
from surveykit.accounts.identity import grants_coverage
from surveykit.analysis import ANALYSIS_ROLES
from surveykit.analysis import coding as services
from surveykit.audit import services as audit
from surveykit.console import analysis_reads as reads
from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.studies.models import Study

TEMPLATES = "surveykit.console:templates/analysis"
CODING_TEMPLATE = f"{TEMPLATES}/coding.jinja2"
AGREEMENT_TEMPLATE = f"{TEMPLATES}/agreement.jinja2"
PASSAGE_FIELDS = ("question_id", "start", "end", "code_id", "memo")
QUOTE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _page_study(request: Request) -> Study:
    try:
        return studies.get_study(request.dbsession, request.matchdict["study"])
    except studies.StudyNotFound as exc:
        raise HTTPNotFound(
            translate(request, _("There is no study ${study}."), study=request.matchdict["study"])
        ) from exc


def page_scope(request: Request) -> tuple[Study, Any]:
    """The study and country of the URL (the country of that study), or the console's 404 page."""
    study = _page_study(request)
    try:
        country = studies.get_country(request.dbsession, study, request.matchdict["country"])
    except studies.CountryNotFound as exc:
        raise HTTPNotFound(
            translate(
                request,
                _("Study ${study} has no country ${code}."),
                study=study.slug,
                code=request.matchdict["country"],
            )
        ) from exc
    return study, country


def _coder(request: Request, study: Study, country: str) -> services.Coder:
    identity = request.identity
    return services.Coder(
        identity.user_id, identity.username, identity.has_role("admin", study.slug, country)
    )


def _target(study: Study, country: str, coding_id: int) -> str:
    return f"{study.slug}/{country}/codings/{coding_id}"


def _whole_number(raw: Any) -> int | None:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 10:
        return int(raw)
    return None


def _memo_problem(request: Request, memo: str) -> str | None:
    """Why a memo from a form is refused (too long, or a character no text may hold), or None."""
    if len(memo) > services.MEMO_MAX:
        return translate(request, _("A memo has at most ${count} characters."), count=services.MEMO_MAX)
    if problem := text_rule.text_problem(memo, multiline=True):
        return translate(request, _("The memo ${problem}."), problem=problem)
    return None


# ------------------------------------------------------------------------------------ start page


@dataclass(frozen=True)
class AnalysisArea:
    slug: str
    name: str
    countries: list[Any]


@console_view(
    route_name="console.analysis",
    request_method="GET",
    permission=Permission.ACCOUNT_READ,
    renderer=f"{TEMPLATES}/index.jinja2",
)
def analysis_index(request: Request) -> dict[str, Any]:
    identity = request.identity
    areas = []
    for study in studies.list_studies(request.dbsession, identity.studies()):
        coverage = grants_coverage(identity.grants, frozenset(ANALYSIS_ROLES), study.slug)
        countries = [
            country
            for country in sorted(study.countries, key=lambda c: c.code)
            if coverage is None or country.code in coverage
        ]
        if countries:
            areas.append(AnalysisArea(study.slug, study.name or study.slug, countries))
    return {"areas": areas}


# ------------------------------------------------------------------------------------ interviews


@console_view(
    route_name="console.analysis_interviews",
    request_method="GET",
    permission=Permission.ANALYSIS_READ,
    renderer=f"{TEMPLATES}/interviews.jinja2",
)
def interviews_page(request: Request) -> dict[str, Any]:
    study, country = page_scope(request)
    return {
        "study": study,
        "country": country,
        "interviews": reads.country_interviews(request.dbsession, study, country.code),
    }


# ---------------------------------------------------------------------------------- coding page


def _interview_or_404(request: Request, study: Study, country: str) -> Any:
    try:
        return reads.get_interview(request.dbsession, study, country, request.matchdict["uuid"])
    except services.InterviewNotFound as exc:
        raise HTTPNotFound(
            translate(request, _("There is no interview ${uuid} here."), uuid=request.matchdict["uuid"])
        ) from exc


def _coding_page(
    request: Request,
    study: Study,
    country: Any,
    interview: Any,
    errors: dict[str, str] | None = None,
    chosen: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    session = request.dbsession
    show_others = request.GET.get("others") == "show"
    everyone = services.coding_page(
        session,
        study,
        country.code,
        services.CodingFilter(interview_uuid=interview.uuid),
        limit=services.MAX_PAGE,
    ).codings
    me = request.identity.user_id
    shown = everyone if show_others else [c for c in everyone if c.coder_id == me]
    codes = reads.codebook(session, study)
    here = request.route_path("console.coding", study=study.slug, country=country.code, uuid=interview.uuid)
    return render_page(
        CODING_TEMPLATE,
        {
            "study": study,
            "country": country,
            "interview": interview,
            "label": reads.interview_label(interview),
            "pids": reads.interview_pids(session, study, interview),
            "answers": reads.interview_answers(session, interview, shown),
            "codings": shown,
            "by_id": {coding.id: coding for coding in shown},
            "codes": {code.id: code for code in codes},
            "active_codes": [code for code in codes if code.status == "active"],
            "show_others": show_others,
            "others_hidden": len(everyone) - len(shown),
            "others_count": sum(1 for c in everyone if c.coder_id != me),
            "me": me,
            "may_change_any": _coder(request, study, country.code).may_change_any,
            "action": here + ("?others=show" if show_others else ""),
            "toggle": here + ("" if show_others else "?others=show"),
            "errors": errors or {},
            "chosen": chosen or {},
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.coding", request_method="GET", permission=Permission.ANALYSIS_READ)
def coding_page(request: Request) -> Response:
    study, country = page_scope(request)
    return _coding_page(request, study, country, _interview_or_404(request, study, country.code))


def _passage_from_form(request: Request, interview: Any) -> tuple[services.Passage, dict[str, str], str]:
    """The passage a form names, the problems found in its fields, and the key its errors go under
    (the apply form's fields, or one quote's form)."""
    form = request.POST
    errors: dict[str, str] = {}
    quote_id = form.get("quote_id")
    if quote_id:
        if not QUOTE_ID.match(quote_id):
            errors["form"] = translate(request, _("There is no such quote in this interview."))
            return services.Passage(interview.uuid), errors, "form"
        return services.Passage(interview.uuid, quote_id=quote_id), errors, f"quote:{quote_id}"
    question_id = form.get("question_id", "")
    if not question_id:
        errors["question_id"] = translate(request, _("Choose the answer the passage is in."))
    bounds: dict[str, int | None] = {}
    for name in ("start", "end"):
        bounds[name] = _whole_number(form.get(name, "").strip())
        if bounds[name] is None:
            errors[name] = translate(
                request, _("Select a passage of an answer (or give its first and last character as numbers).")
            )
    return services.Passage(interview.uuid, question_id or None, bounds["start"], bounds["end"]), errors, ""


@console_view(route_name="console.coding", request_method="POST", permission=Permission.ANALYSIS_CODE)
def apply_code(request: Request) -> Response:
    study, country = page_scope(request)
    interview = _interview_or_404(request, study, country.code)
    form = request.POST
    chosen = {name: form.get(name, "") for name in PASSAGE_FIELDS}
    passage, errors, quote_key = _passage_from_form(request, interview)
    code_id = _whole_number(form.get("code_id", ""))
    if code_id is None:
        errors["code_id"] = translate(request, _("Choose a code."))
    memo = form.get("memo", "")
    if problem := _memo_problem(request, memo):
        errors["memo"] = problem
    if not errors:
        assert code_id is not None
        try:
            coding = services.create_coding(
                request.dbsession,
                study,
                country.code,
                _coder(request, study, country.code),
                passage,
                code_id,
                memo,
            )
        except services.CodingInvalid as exc:
            errors[exc.path] = str(exc)
        else:
            audit.record_in_request(
                request,
                "coding.created",
                target=_target(study, country.code, coding.id),
                interview=coding.interview_uuid,
                question_id=coding.question_id,
                code_id=coding.code_id,
                quote_id=coding.quote_id,
                via="console",
            )
            flash(request, translate(request, _("Code applied to “${text}”."), text=coding.text[:80]))
            target = request.route_path(
                "console.coding",
                study=study.slug,
                country=country.code,
                uuid=interview.uuid,
                _query={"others": "show"} if request.GET.get("others") == "show" else {},
            )
            return HTTPSeeOther(location=f"{target}#coding-{coding.id}")
    if quote_key:
        errors = {quote_key: " ".join(errors.values())}
    return _coding_page(request, study, country, interview, errors, chosen, 422)


@console_view(route_name="console.coding_change", request_method="POST", permission=Permission.ANALYSIS_CODE)
def change_coding(request: Request) -> Response:
    study, country = page_scope(request)
    session = request.dbsession
    try:
        coding = services.get_coding(session, study, country.code, int(request.matchdict["coding_id"]))
    except services.CodingNotFound as exc:
        raise HTTPNotFound(
            translate(request, _("There is no coding ${id} here."), id=request.matchdict["coding_id"])
        ) from exc
    interview = reads.get_interview(session, study, country.code, coding.interview_uuid)
    coder = _coder(request, study, country.code)
    action = request.POST.get("action", "")
    target = _target(study, country.code, coding.id)
    audit_action = "coding.deleted" if action == "delete" else "coding.updated"
    back = request.route_path("console.coding", study=study.slug, country=country.code, uuid=interview.uuid)
    memo = request.POST.get("memo", "")
    if action not in ("delete", "confirm", "memo"):
        message = translate(request, _("Choose what to do with the coding."))
        return _coding_page(request, study, country, interview, {f"coding:{coding.id}": message}, None, 422)
    if action == "memo" and (message := _memo_problem(request, memo)):
        return _coding_page(request, study, country, interview, {f"memo-{coding.id}": message}, None, 422)
    try:
        if action == "delete":
            details = {"interview": coding.interview_uuid, "code_id": coding.code_id}
            services.delete_coding(session, coding, coder)
            audit.record_in_request(
                request, audit_action, target=target, coder=coding.coder, via="console", **details
            )
            flash(request, translate(request, _("The coding is deleted.")))
            return HTTPSeeOther(location=back)
        changes: dict[str, Any] = {"confirm": True} if action == "confirm" else {"memo": memo}
        changed = services.update_coding(session, study, coding, coder, changes)
    except services.CodingNotFound as exc:
        raise HTTPNotFound(
            translate(request, _("There is no coding ${id} here."), id=request.matchdict["coding_id"])
        ) from exc
    except services.NotYourCoding as exc:
        audit.record_refusal(request, audit_action, target=target, coder=coding.coder, via="console")
        return error_page(request, 403, translate(request, _("Not allowed")), str(exc))
    except services.CodingInvalid as exc:
        return _coding_page(request, study, country, interview, {f"coding:{coding.id}": str(exc)}, None, 422)
    if changed:
        audit.record_in_request(
            request, audit_action, target=target, changed=changed, coder=coding.coder, via="console"
        )
    message = _("The coding's place is confirmed.") if action == "confirm" else _("The memo is saved.")
    flash(request, translate(request, message))
    return HTTPSeeOther(location=f"{back}#coding-{coding.id}")


# ------------------------------------------------------------------------------------- agreement


@console_view(route_name="console.agreement", request_method="GET", permission=Permission.ANALYSIS_READ)
def agreement_page(request: Request) -> Response:
    study, country = page_scope(request)
    session = request.dbsession
    coders = reads.country_coders(session, study, country.code)
    first = request.GET.get("first", "")
    second = request.GET.get("second", "")
    errors: dict[str, str] = {}
    result = None
    if first or second:
        unknown = translate(request, _("Choose someone who has coded in this country."))
        if first not in coders:
            errors["first"] = unknown
        if second not in coders:
            errors["second"] = unknown
        elif first == second:
            errors["second"] = translate(request, _("Choose a coder other than the first one."))
        if not errors:
            result = services.coder_agreement(session, study, country.code, first, second)
    elif request.identity.username in coders:
        first = request.identity.username
    codes = {code.id: code for code in reads.codebook(session, study)}
    response = render_to_response(
        AGREEMENT_TEMPLATE,
        {
            "study": study,
            "country": country,
            "coders": coders,
            "first": first,
            "second": second,
            "errors": errors,
            "result": result,
            "codes": codes,
        },
        request=request,
    )
    response.status = 422 if errors else 200
    return response
