"""colander schemas for instrument definitions (the file format of docs/instruments.md).

The schema checks shape and types; ``services.check_definition`` adds the rules that span fields
(unique ids, choices per type, relevance over earlier questions, known languages).
"""

from __future__ import annotations

import math
import re
from typing import Any

import colander

from surveykit.text import text_problem

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
CHOICE_VALUE_PATTERN = r"^[a-z0-9_]{1,64}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
ACTIVITY_PATTERN = r"^RA[1-9]$"

QUESTION_TYPES = (
    "long_text",
    "short_text",
    "single_choice",
    "multiple_choice",
    "yes_no",
    "number",
    "date",
)
CHOICE_TYPES = {"single_choice", "multiple_choice"}

MAX_TEXT = 20_000

# What a number answer (and a number question's min and max) may be: what a spreadsheet holds
# exactly. Excel keeps numbers as 64-bit floats shown to 15 significant digits, so every whole
# number within 10^15 survives the export unchanged; a decimal must lie in the same range and,
# unless it is 0, be no smaller in size than 10^-300 (Excel turns smaller ones into 0).
NUMBER_LIMIT = 10**15
SMALLEST_DECIMAL = 1e-300


def number_problem(value: int | float) -> str | None:
    """What keeps ``value`` (an int or float, not a bool) from being a number answer, or None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number"
        if value != 0 and abs(value) < SMALLEST_DECIMAL:
            return f"is too small to keep (a decimal other than 0 is at least {SMALLEST_DECIMAL:g} in size)"
    if not -NUMBER_LIMIT <= value <= NUMBER_LIMIT:
        return "is beyond what a spreadsheet holds exactly (numbers run from -10^15 to 10^15)"
    return None


class StrictString(colander.String):
    """A string that must already be a string: YAML's ``yes`` or ``12`` is not silently coerced.

    It obeys the text rule (``surveykit.text``): one line unless ``multiline``.
    """

    def __init__(self, *args: Any, multiline: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.multiline = multiline

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if not isinstance(cstruct, str):
            raise colander.Invalid(node, f"must be text, not {type(cstruct).__name__}")
        stripped = cstruct.strip()
        if not stripped:
            raise colander.Invalid(node, "must not be empty")
        if message := text_problem(stripped, multiline=self.multiline):
            raise colander.Invalid(node, message)
        return stripped


class StrictBoolean(colander.SchemaType):
    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if not isinstance(cstruct, bool):
            raise colander.Invalid(node, f"must be true or false, not {cstruct!r}")
        return cstruct


class StrictNumber(colander.SchemaType):
    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if isinstance(cstruct, bool) or not isinstance(cstruct, int | float):
            raise colander.Invalid(node, f"must be a number, not {cstruct!r}")
        # YAML's .nan/.inf and JSON's NaN/Infinity are floats too, but no database JSON column stores them.
        # (Only floats: math.isfinite raises on an int too large for a float.)
        if isinstance(cstruct, float) and not math.isfinite(cstruct):
            raise colander.Invalid(node, f"must be a finite number, not {cstruct!r}")
        return cstruct


def _storable_number(node: colander.SchemaNode, value: int | float) -> None:
    if problem := number_problem(value):
        raise colander.Invalid(node, problem)


class TranslatableText(colander.SchemaType):
    """Plain text in the default language, or a mapping of language code to text.

    Always deserialises to the mapping form; a plain string is keyed ``""`` until the
    definition's default language is known (``services.normalise`` fills it in).
    """

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if isinstance(cstruct, str):
            if not cstruct.strip():
                raise colander.Invalid(node, "must not be empty")
            return {"": _check_length(node, cstruct.strip())}
        if isinstance(cstruct, dict):
            if not cstruct:
                raise colander.Invalid(node, "a translation mapping must not be empty")
            out = {}
            for language, text in cstruct.items():
                if not isinstance(language, str) or not re.fullmatch(LANGUAGE_PATTERN, language):
                    raise colander.Invalid(node, f"{language!r} is not a language code like 'en' or 'pt-BR'")
                if not isinstance(text, str) or not text.strip():
                    raise colander.Invalid(node, f"translation {language!r} must be non-empty text")
                out[language] = _check_length(node, text.strip())
            return out
        raise colander.Invalid(node, "must be text or a mapping of language code to text")


def _check_length(node: colander.SchemaNode, text: str) -> str:
    if len(text) > MAX_TEXT:
        raise colander.Invalid(node, f"longer than {MAX_TEXT} characters")
    if message := text_problem(text, multiline=True):
        raise colander.Invalid(node, message)
    return text


def _text(name: str, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(TranslatableText(), name=name, **kw)


class ChoiceSchema(colander.MappingSchema):
    value = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(
            CHOICE_VALUE_PATTERN, "must be lower-case letters, digits or _ (at most 64)"
        ),
    )
    label = _text("label")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)


class ChoicesSchema(colander.SequenceSchema):
    choice = ChoiceSchema()


class ProbesSchema(colander.SequenceSchema):
    probe = _text("probe")


class QuestionSchema(colander.MappingSchema):
    id = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(
            ID_PATTERN, "must start with a lower-case letter, then letters, digits or _ (at most 64)"
        ),
    )
    type = colander.SchemaNode(StrictString(), validator=colander.OneOf(QUESTION_TYPES))
    prompt = _text("prompt")
    probes = ProbesSchema(missing=[])
    notes = _text("notes", missing=colander.drop)
    required = colander.SchemaNode(StrictBoolean(), missing=False)
    choices = ChoicesSchema(missing=colander.drop)
    relevance = colander.SchemaNode(
        StrictString(multiline=True), missing=colander.drop, validator=colander.Length(max=1000)
    )
    min = colander.SchemaNode(StrictNumber(), missing=colander.drop, validator=_storable_number)
    max = colander.SchemaNode(StrictNumber(), missing=colander.drop, validator=_storable_number)
    # The home of the fact this question asks for (surveykit.instruments.bindings).
    binds = colander.SchemaNode(StrictString(), missing=colander.drop, validator=colander.Length(max=64))

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)


class QuestionsSchema(colander.SequenceSchema):
    question = QuestionSchema()


class SectionSchema(colander.MappingSchema):
    def __init__(self, *args: Any, depth: int = 0, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)
        self.add(
            colander.SchemaNode(
                StrictString(),
                name="id",
                validator=colander.Regex(
                    ID_PATTERN, "must start with a lower-case letter, then letters, digits or _ (at most 64)"
                ),
            )
        )
        self.add(_text("title"))
        self.add(_text("intro", missing=colander.drop))
        self.add(QuestionsSchema(name="questions", missing=[]))
        if depth < MAX_SECTION_DEPTH:
            self.add(
                colander.SequenceSchema(
                    SectionSchema(name="section", depth=depth + 1), name="sections", missing=[]
                )
            )


MAX_SECTION_DEPTH = 4


class LanguagesSchema(colander.SequenceSchema):
    language = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(LANGUAGE_PATTERN, "must be a language code like 'en' or 'pt-BR'"),
    )


# Path segments the API gives a meaning of its own under /api/v1/instruments/.
RESERVED_SLUGS = frozenset({"validate"})


class InstrumentDefinitionSchema(colander.MappingSchema):
    slug = colander.SchemaNode(
        StrictString(),
        validator=colander.All(
            colander.Regex(SLUG_PATTERN, "must be 2-64 lower-case letters, digits or hyphens"),
            colander.Function(
                lambda slug: slug not in RESERVED_SLUGS,
                "is reserved by the API (/api/v1/instruments/validate); choose another slug",
            ),
        ),
    )
    title = _text("title")
    activity = colander.SchemaNode(
        StrictString(), validator=colander.Regex(ACTIVITY_PATTERN, "must be RA1 to RA9")
    )
    default_language = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(LANGUAGE_PATTERN, "must be a language code like 'en' or 'pt-BR'"),
    )
    languages = LanguagesSchema(validator=colander.Length(min=1))
    description = _text("description", missing=colander.drop)
    study = colander.SchemaNode(
        StrictString(),
        missing=colander.drop,
        validator=colander.Regex(SLUG_PATTERN, "must be the slug of a study (lower-case letters, digits, -)"),
    )
    metadata = QuestionsSchema(missing=[])
    sections = colander.SequenceSchema(
        SectionSchema(name="section"),
        validator=colander.Length(min=1, min_err="at least one section is required"),
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)
