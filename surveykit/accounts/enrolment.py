"""Tablets as a coordinator manages them: enrolling one for a field researcher within the device
scope rules (docs/accounts.md), finding a device the caller manages, the QR code of an enrolment,
and the tablets and field researchers of a country.

The API's device views and the console's tablet pages both call these, so they refuse the same
things for the same reasons. Auditing stays with the caller (it needs the request).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts import services
from surveykit.accounts.identity import DEVICE_MANAGING_ROLES, Identity, grants_coverage
from surveykit.accounts.models import Device, Grant, User
from surveykit.errors import ErrorCode
from surveykit.studies.models import Study

QR_SCALE = 6
QR_BORDER = 4


class EnrolmentDenied(Exception):
    """An enrolment (or another device action) refused, as the API answers it: ``status`` and
    ``code``; ``field`` the input at fault (None: the answer names none) and ``detail`` what to say
    beside it; ``audit`` the refusal's audit keywords (``reason``...) when it must be audited."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        *,
        detail: str | None = None,
        location: str = "body",
        audit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.detail = detail or message
        self.location = location
        self.audit = audit


@dataclass(frozen=True)
class Enrolment:
    device: Device
    owner: User
    code: str


def enrol_for(
    session: Session,
    manager: Identity,
    username: str,
    label: str,
    policy: services.AccountPolicy,
    study: str | None = None,
    countries: list[str] | None = None,
) -> Enrolment:
    """A pending device for ``username``, bound to what the owner's fieldworker grants and the
    manager's coordinator and admin grants cover in common (narrowed to ``study``/``countries``)."""
    owner = session.scalar(select(User).where(User.username == username))
    if owner is None and manager.is_global_admin:
        raise EnrolmentDenied(
            404, ErrorCode.USER_NOT_FOUND, f"no user {username!r}", "username", detail="unknown user"
        )
    # A coordinator gets the same answer for an unknown username as for someone else's fieldworker,
    # so enrolment cannot be used to find out which usernames exist.
    scope = services.enrolment_scope(session, owner, manager) if owner else []
    if not scope:
        raise EnrolmentDenied(
            403,
            ErrorCode.FORBIDDEN,
            f"{username} is not a fieldworker in a study and country you coordinate",
            audit={"reason": "unknown_user" if owner is None else "out_of_scope"},
        )
    if study is not None or countries is not None:
        try:
            scope = services.enrolment_scope(session, owner, manager, study, countries)
        except services.DeviceScopeRefused as refused:
            if refused.beyond_manager:
                raise EnrolmentDenied(
                    403,
                    ErrorCode.FORBIDDEN,
                    str(refused),
                    refused.field,
                    audit={"reason": "out_of_scope", "field": refused.field},
                ) from refused
            raise EnrolmentDenied(422, ErrorCode.INVALID_INPUT, str(refused), refused.field) from refused
    try:
        device, code = services.enrol_device(session, owner, label, manager.actor, policy, scope=scope)
    except services.AccountError as exc:
        raise EnrolmentDenied(422, ErrorCode.INVALID_INPUT, str(exc), exc.field or "") from exc
    return Enrolment(device, owner, code)


def manages(manager: Identity, device: Device, slugs: dict[int, str]) -> bool:
    """Whether the caller's coordinator and admin grants cover the device's whole scope."""
    return manager.manages_scope(services.scope_by_slug(device.scope, slugs))


def managed_device(session: Session, manager: Identity, device_id: str) -> Device:
    """The device, if the caller manages its whole scope (404 unknown, 403 beyond the caller)."""
    device = session.get(Device, device_id) if len(device_id) <= 36 else None
    if device is None:
        raise EnrolmentDenied(404, ErrorCode.DEVICE_NOT_FOUND, f"no device {device_id!r}")
    if not manages(manager, device, services.study_slugs(session)):
        raise EnrolmentDenied(
            403,
            ErrorCode.FORBIDDEN,
            "this device reaches studies or countries outside your grants",
            audit={"reason": "out_of_scope"},
        )
    return device


def reenrol(session: Session, manager: Identity, device: Device, policy: services.AccountPolicy) -> str:
    """A fresh one-time code for a device the caller manages (see ``services.reenrol_device``)."""
    try:
        return services.reenrol_device(session, device, manager.actor, policy)
    except services.ReenrolmentRefused as refused:
        raise EnrolmentDenied(
            409,
            ErrorCode.DEVICE_REVOKED,
            "this device was revoked and stays revoked; enrol a new device instead",
            audit={"reason": refused.reason},
        ) from refused
    except services.AccountError as exc:
        raise EnrolmentDenied(
            422,
            ErrorCode.INVALID_INPUT,
            str(exc),
            "device_id",
            location="path",
            audit={"reason": "owner_not_enrollable"},
        ) from exc


def qr_code(payload: str) -> dict[str, str]:
    """The enrolment QR code as PNG (base64) and SVG, and the text it holds."""
    qr = segno.make(payload, error="m")
    png = io.BytesIO()
    qr.save(png, kind="png", scale=QR_SCALE, border=QR_BORDER)
    svg = io.BytesIO()
    qr.save(svg, kind="svg", scale=QR_SCALE, border=QR_BORDER, xmldecl=False)
    return {
        "payload": payload,
        "png_base64": base64.b64encode(png.getvalue()).decode("ascii"),
        "svg": svg.getvalue().decode("utf-8"),
    }


def country_devices(
    session: Session, manager: Identity, study: Study, country: str
) -> list[tuple[Device, str]]:
    """The devices whose scope reaches ``country`` of ``study`` and that the caller manages, with
    their owners' usernames, newest first."""
    slugs = services.study_slugs(session)
    rows = session.execute(
        select(Device, User.username).join(User, User.id == Device.user_id).order_by(Device.created_at.desc())
    ).all()
    found = []
    for device, username in rows:
        reaches = any(
            entry["study_id"] == study.id and (entry["countries"] is None or country in entry["countries"])
            for entry in device.scope
        )
        if reaches and manages(manager, device, slugs):
            found.append((device, username))
    return found


def country_fieldworkers(session: Session, manager: Identity, study: Study, country: str) -> list[str]:
    """Usernames of active field researchers in ``country`` of ``study``, if the caller manages
    devices there (else none)."""
    managed = grants_coverage(manager.grants, DEVICE_MANAGING_ROLES, study.slug)
    if managed is not None and country not in managed:
        return []
    rows = session.execute(
        select(User.username, Grant.countries)
        .join(Grant, Grant.user_id == User.id)
        .where(Grant.role == "fieldworker", Grant.study_id == study.id, User.active.is_(True))
        .order_by(User.username)
    ).all()
    return sorted({name for name, countries in rows if countries is None or country in countries})


def describe(device: Device, username: str, slugs: dict[int, str]) -> dict[str, Any]:
    return services.describe_device(device, username, slugs)
