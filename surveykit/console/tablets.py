"""The tablets of a country: enrol one for a field researcher (the one-time code and the QR code on
screen, for the tablet to scan from the monitor), re-enrol one, revoke one after a confirmation.

The same services as the API's device endpoints (``accounts.enrolment``): the device scope rules of
docs/accounts.md apply, and the same audit events are recorded.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

from surveykit.accounts import enrolment
from surveykit.accounts import services as accounts
from surveykit.accounts.models import Device, User
from surveykit.audit import services as audit
from surveykit.console.fieldwork import page_country, page_study
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.participants import services as participants
from surveykit.security import Permission
from surveykit.studies.models import Country, Study

TABLETS_TEMPLATE = "surveykit.console:templates/fieldwork/tablets.jinja2"
ENROLLED_TEMPLATE = "surveykit.console:templates/fieldwork/tablet_enrolled.jinja2"
REVOKE_TEMPLATE = "surveykit.console:templates/fieldwork/tablet_revoke.jinja2"


def _policy(request: Request) -> accounts.AccountPolicy:
    return accounts.AccountPolicy.from_settings(request.registry.settings)


def numbers_left_by_device(request: Request, study: Study, country: str) -> dict[str, int]:
    """Unused numbers in each device's open blocks of this country."""
    left: dict[str, int] = defaultdict(int)
    for block, _used, unused in participants.country_blocks(request.dbsession, study, country):
        left[block.device_id] += unused
    return left


def _tablets_page(
    request: Request,
    study: Study,
    country: Country,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    session = request.dbsession
    devices = enrolment.country_devices(session, request.identity, study, country.code)
    fieldworkers = enrolment.country_fieldworkers(session, request.identity, study, country.code)
    return render_page(
        TABLETS_TEMPLATE,
        {
            "study": study,
            "country": country,
            "devices": devices,
            "numbers_left": numbers_left_by_device(request, study, country.code),
            "fieldworkers": fieldworkers,
            "fieldworker_options": [(name, name) for name in fieldworkers],
            "form": form or {"username": "", "label": ""},
            "errors": errors or {},
        },
        request=request,
        status=status,
    )


@console_view(route_name="console.tablets", request_method="GET", permission=Permission.DEVICES_ENROL)
def tablets(request: Request) -> Response:
    study = page_study(request)
    return _tablets_page(request, study, page_country(request, study))


def _enrolled_page(
    request: Request, study: Study, country: Country, device: Device, owner: str, code: str, again: bool
) -> Response:
    server_url = request.registry.settings["surveykit.public_url"] or request.application_url
    payload = accounts.enrolment_payload(server_url, code)
    response = render_to_response(
        ENROLLED_TEMPLATE,
        {
            "study": study,
            "country": country,
            "device": device,
            "owner": owner,
            "code": code,
            "qr": enrolment.qr_code(payload),
            "server_url": server_url,
            "again": again,
            "expires_at": device.enrolment_expires_at,
        },
        request=request,
    )
    # The one-time code is shown once: no cache, no back button, keeps it.
    response.cache_control = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@console_view(route_name="console.tablets", request_method="POST", permission=Permission.DEVICES_ENROL)
def enrol(request: Request) -> Response:
    study = page_study(request)
    country = page_country(request, study)
    form = {
        "username": request.POST.get("username", "").strip(),
        "label": request.POST.get("label", "").strip(),
    }
    errors = {}
    if not form["username"]:
        errors["username"] = translate(request, _("Choose the field researcher who will use the tablet."))
    if not form["label"]:
        errors["label"] = translate(
            request, _("Give the tablet a label you will recognise, such as “KE tablet 3”.")
        )
    if errors:
        return _tablets_page(request, study, country, form, errors, 422)
    try:
        enrolled = enrolment.enrol_for(
            request.dbsession,
            request.identity,
            form["username"],
            form["label"],
            _policy(request),
            study.slug,
            [country.code],
        )
    except enrolment.EnrolmentDenied as denied:
        if denied.audit is not None:
            audit.record_refusal(
                request, "device.enrol", target=form["username"], via="console", **denied.audit
            )
        field = denied.field if denied.field in ("username", "label") else "username"
        return _tablets_page(request, study, country, form, {field: denied.message}, denied.status)
    device = enrolled.device
    audit.record_in_request(
        request,
        "device.enrol",
        target=device.id,
        owner=enrolled.owner.username,
        label=device.label,
        scope=accounts.describe_scope(device.scope, accounts.study_slugs(request.dbsession)),
        via="console",
    )
    return _enrolled_page(
        request, study, country, device, enrolled.owner.username, enrolled.code, again=False
    )


def _device_or_page(request: Request, study: Study, country: Country, action: str) -> Device | Response:
    """The device in the URL if the caller manages it, else the tablets page with the reason."""
    device_id = request.matchdict["device_id"]
    try:
        return enrolment.managed_device(request.dbsession, request.identity, device_id)
    except enrolment.EnrolmentDenied as denied:
        if denied.audit is not None:
            audit.record_refusal(request, action, target=device_id, via="console", **denied.audit)
        return _tablets_page(
            request, study, country, errors={"devices": denied.message}, status=denied.status
        )


@console_view(route_name="console.tablet_reenrol", request_method="POST", permission=Permission.DEVICES_ENROL)
def reenrol(request: Request) -> Response:
    study = page_study(request)
    country = page_country(request, study)
    device = _device_or_page(request, study, country, "device.reenrol")
    if isinstance(device, Response):
        return device
    try:
        code = enrolment.reenrol(request.dbsession, request.identity, device, _policy(request))
    except enrolment.EnrolmentDenied as denied:
        if denied.audit is not None:
            audit.record_refusal(request, "device.reenrol", target=device.id, via="console", **denied.audit)
        return _tablets_page(
            request, study, country, errors={"devices": denied.message}, status=denied.status
        )
    owner = request.dbsession.get(User, device.user_id)
    audit.record_in_request(
        request, "device.reenrol", target=device.id, owner=owner.username, label=device.label, via="console"
    )
    return _enrolled_page(request, study, country, device, owner.username, code, again=True)


@console_view(
    route_name="console.tablet_revoke",
    request_method="GET",
    permission=Permission.DEVICES_ENROL,
    renderer=REVOKE_TEMPLATE,
)
def revoke_confirm(request: Request) -> Any:
    study = page_study(request)
    country = page_country(request, study)
    device = _device_or_page(request, study, country, "device.revoke")
    if isinstance(device, Response):
        return device
    owner = request.dbsession.get(User, device.user_id)
    left = numbers_left_by_device(request, study, country.code).get(device.id, 0)
    return {
        "study": study,
        "country": country,
        "device": device,
        "owner": owner.username,
        "numbers_left": left,
    }


@console_view(route_name="console.tablet_revoke", request_method="POST", permission=Permission.DEVICES_ENROL)
def revoke(request: Request) -> Response:
    study = page_study(request)
    country = page_country(request, study)
    device = _device_or_page(request, study, country, "device.revoke")
    if isinstance(device, Response):
        return device
    accounts.revoke_device(request.dbsession, device)
    owner = request.dbsession.get(User, device.user_id)
    audit.record_in_request(request, "device.revoke", target=device.id, owner=owner.username, via="console")
    flash(
        request,
        translate(
            request,
            _("Tablet “${label}” is revoked: it is refused from its next request."),
            label=device.label,
        ),
    )
    return HTTPSeeOther(location=request.route_path("console.tablets", study=study.slug, cc=country.code))
