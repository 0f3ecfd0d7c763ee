"""colander schemas for the study configuration endpoints.

Every mapping is strict: an unknown key is an error reported at its own path (``details[].path``),
without echoing its value (a client might have put a person's name in it).
"""

from __future__ import annotations

from typing import Any

import colander

from surveykit.instruments.schemas import StrictString
from surveykit.studies import services

LANGUAGE_PATTERN = services.LANGUAGE_CODE.pattern


class StrictMapping(colander.Mapping):
    """``Mapping(unknown="raise")`` that reports each unknown key at its path, value left out."""

    def __init__(self) -> None:
        super().__init__(unknown="raise")

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if not isinstance(cstruct, dict):
            return super().deserialize(node, cstruct)
        known = {child.name for child in node.children}
        unknown = sorted(str(key) for key in cstruct if key not in known)
        if not unknown:
            return super().deserialize(node, cstruct)
        # Report the known fields' errors too, so one round trip shows every problem. The mapping's
        # own message (a whole-body validator) is left out: it may only reflect the removed keys.
        error = colander.Invalid(node, None)
        try:
            super().deserialize(node, {key: value for key, value in cstruct.items() if key in known})
        except colander.Invalid as inner:
            for child in inner.children:
                error.add(child)
        for key in unknown:
            placeholder = colander.SchemaNode(colander.String(), name=key)
            error.add(colander.Invalid(placeholder, unknown_key_message(key)))
        raise error


NAME_KEYS = {"name", "names", "full_name", "fullname", "first_name", "last_name", "surname", "given_name"}


def unknown_key_message(key: str) -> str:
    if key.strip().lower().replace(" ", "_") in NAME_KEYS:
        return "unknown field: surveykit stores no names of participants"
    return "unknown field"


class Strict(colander.MappingSchema):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=StrictMapping(), **kw)


def text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.Length(max=max_length), **kw)


class NullableText(StrictString):
    """Text, or JSON null (or an empty string) to clear the field."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is None or (isinstance(cstruct, str) and not cstruct.strip()):
            return None
        return super().deserialize(node, cstruct)


def nullable_text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    def validate(node: colander.SchemaNode, value: Any) -> None:
        if value is not None and len(value) > max_length:
            raise colander.Invalid(node, f"Longer than maximum length {max_length}")

    return colander.SchemaNode(NullableText(), name=name, validator=validate, **kw)


class Languages(colander.SequenceSchema):
    language = colander.SchemaNode(
        StrictString(), validator=colander.Regex(LANGUAGE_PATTERN, "not a language code like 'en' or 'pt-BR'")
    )

    def validator(self, node: colander.SchemaNode, value: list[str]) -> None:
        if len(value) > services.MAX_LANGUAGES:
            raise colander.Invalid(node, f"at most {services.MAX_LANGUAGES} languages")
        if len(set(value)) != len(value):
            raise colander.Invalid(node, "a language is listed twice")


class StudyCreateSchema(Strict):
    slug = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(services.STUDY_SLUG.pattern, "2-64 lower-case letters, digits or hyphens"),
    )
    name = text("name", services.STUDY_NAME_MAX, missing=None)


class CountryCreateSchema(Strict):
    code = colander.SchemaNode(
        StrictString(), validator=colander.Regex(services.COUNTRY_CODE.pattern, "two capital letters")
    )
    name = text("name", services.COUNTRY_NAME_MAX)
    region = nullable_text("region", services.REGION_MAX, missing=None)
    languages = Languages(missing=())


class CountryUpdateSchema(Strict):
    name = text("name", services.COUNTRY_NAME_MAX, missing=colander.drop)
    region = nullable_text("region", services.REGION_MAX, missing=colander.drop)
    languages = Languages(missing=colander.drop)

    def validator(self, node: colander.SchemaNode, value: dict[str, Any]) -> None:
        if not value:
            raise colander.Invalid(node, "give at least one of name, region, languages")


class ActivityCreateSchema(Strict):
    code = colander.SchemaNode(
        StrictString(), validator=colander.Regex(services.ACTIVITY_CODE.pattern, "RA1 to RA9")
    )
    name = text("name", services.ACTIVITY_NAME_MAX)


class ActivityUpdateSchema(Strict):
    name = text("name", services.ACTIVITY_NAME_MAX)
