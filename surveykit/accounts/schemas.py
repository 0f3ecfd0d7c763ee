"""colander schemas for the account, device and audit endpoints (strict: unknown keys are errors)."""

from __future__ import annotations

from typing import Any

import colander

from surveykit.accounts.access_tokens import DEFAULT_DAYS as ACCESS_TOKEN_DEFAULT_DAYS
from surveykit.accounts.access_tokens import MAX_DAYS as ACCESS_TOKEN_MAX_DAYS
from surveykit.accounts.access_tokens import NAME_MAX_LENGTH as ACCESS_TOKEN_NAME_MAX
from surveykit.accounts.models import ROLES
from surveykit.instruments.schemas import StrictString
from surveykit.participants.schemas import StrictInteger
from surveykit.studies.schemas import Strict
from surveykit.studies.services import COUNTRY_CODE, STUDY_SLUG


class NullableSlug(StrictString):
    """A string, or JSON null (kept as None)."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        return None if cstruct is None else super().deserialize(node, cstruct)


def _text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.Length(max=max_length), **kw)


class LoginSchema(Strict):
    username = _text("username", 64)
    # Not stripped or shortened: a password is compared exactly as typed.
    password = colander.SchemaNode(colander.String(), validator=colander.Length(min=1, max=1024))


class RefreshSchema(Strict):
    refresh_token = _text("refresh_token", 200)


class LogoutSchema(Strict):
    refresh_token = _text("refresh_token", 200, missing=None)


class _Countries(colander.SequenceSchema):
    country = colander.SchemaNode(
        StrictString(), validator=colander.Regex(COUNTRY_CODE.pattern, "must be two capital letters")
    )


class EnrolSchema(Strict):
    username = _text("username", 64)
    label = _text("label", 200)
    # The scope the device is bound to; by default all the owner's fieldworker grants that the
    # caller manages. Countries need their study.
    study = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(STUDY_SLUG.pattern, "must be the slug of a study"),
        missing=None,
    )
    countries = _Countries(validator=colander.Length(min=1, max=100), missing=None)


class ActivateSchema(Strict):
    code = _text("code", 40)


class DeviceQuerySchema(Strict):
    username = _text("username", 64, missing=None)


class PasswordChangeSchema(Strict):
    # Not stripped or shortened, as at login.
    current_password = colander.SchemaNode(colander.String(), validator=colander.Length(min=1, max=1024))
    new_password = colander.SchemaNode(colander.String(), validator=colander.Length(min=1, max=1024))


class PasswordResetSchema(Strict):
    # Missing: the server generates one and answers it once.
    password = colander.SchemaNode(
        colander.String(), validator=colander.Length(min=1, max=1024), missing=None
    )


def _study_or_none(node: colander.SchemaNode, value: str | None) -> None:
    if value is not None and not STUDY_SLUG.match(value):
        raise colander.Invalid(node, "must be the slug of a study, or null for every study")


class UserCreateSchema(Strict):
    username = _text("username", 64)
    # Missing: the server generates one and answers it once.
    password = colander.SchemaNode(
        colander.String(), validator=colander.Length(min=1, max=1024), missing=None
    )


class GrantCreateSchema(Strict):
    role = colander.SchemaNode(StrictString(), validator=colander.OneOf(ROLES))
    # Null or missing: every study (admins only).
    study = colander.SchemaNode(NullableSlug(), validator=_study_or_none, missing=None)
    # Missing: every country of the study.
    countries = _Countries(validator=colander.Length(min=1, max=100), missing=None)


class AccessTokenCreateSchema(Strict):
    name = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=ACCESS_TOKEN_NAME_MAX))
    expires_in_days = colander.SchemaNode(
        StrictInteger(),
        validator=colander.Range(1, ACCESS_TOKEN_MAX_DAYS, "a token lasts from 1 to ${max} days"),
        missing=ACCESS_TOKEN_DEFAULT_DAYS,
    )
