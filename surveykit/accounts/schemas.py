"""colander schemas for the account, device and audit endpoints (strict: unknown keys are errors)."""

from __future__ import annotations

from typing import Any

import colander

from surveykit.instruments.schemas import StrictString


class _Strict(colander.MappingSchema):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)


def _text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.Length(max=max_length), **kw)


class LoginSchema(_Strict):
    username = _text("username", 64)
    # Not stripped or shortened: a password is compared exactly as typed.
    password = colander.SchemaNode(colander.String(), validator=colander.Length(min=1, max=1024))


class RefreshSchema(_Strict):
    refresh_token = _text("refresh_token", 200)


class LogoutSchema(_Strict):
    refresh_token = _text("refresh_token", 200, missing=None)


class EnrolSchema(_Strict):
    username = _text("username", 64)
    label = _text("label", 200)


class ActivateSchema(_Strict):
    code = _text("code", 40)


class DeviceQuerySchema(_Strict):
    username = _text("username", 64, missing=None)
