"""The questions of the instrument versions an export uses, as the sheets and files lay them out.

Plain data read from the stored definitions: each question's section path, prompt, choices and
probes in one language (``version_info``), and the columns the versions share (``response_columns``).
``exports.services`` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.instruments.models import Instrument, InstrumentVersion

METADATA_SECTION = "Interview metadata"
SECTION_SEPARATOR = " > "


@dataclass(frozen=True)
class Question:
    slug: str
    version: int
    id: str
    type: str
    prompt: str
    section_ids: tuple[str, ...]
    section_titles: tuple[str, ...]
    choices: dict[str, str]
    required: bool
    relevance: str | None
    minimum: float | None
    maximum: float | None
    # The home of the fact a bound question asks for (surveykit.instruments.bindings): its value in
    # the export comes from there, never from the answer.
    binds: str | None = None
    # The probes' texts in the default language, in the instrument's order (a record's
    # ``probes_used`` ticks them by index).
    probes: tuple[str, ...] = ()
    # Built once: the same string object on every row lets the writer skip re-checking it.
    section_path: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "section_path", SECTION_SEPARATOR.join(self.section_titles))

    @property
    def section_id_path(self) -> str:
        return "/".join(self.section_ids)


@dataclass(frozen=True)
class VersionInfo:
    slug: str
    version: int
    content_hash: str
    questions: tuple[Question, ...]
    by_id: dict[str, Question] = field(hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.slug} v{self.version}"


def _text(value: Any, language: str, default: str) -> str:
    if isinstance(value, dict):
        return value.get(language) or value.get(default) or next(iter(value.values()), "")
    return "" if value is None else str(value)


def version_info(
    slug: str, version: int, digest: str, definition: dict[str, Any], language: str | None = None
) -> VersionInfo:
    """The questions of one instrument version, their texts in ``language`` (a text without a
    translation falls back to the default language, as on the tablet)."""
    default = definition.get("default_language", "en")
    language = language or default
    questions: list[Question] = []

    def add(question: dict[str, Any], ids: tuple[str, ...], titles: tuple[str, ...]) -> None:
        questions.append(
            Question(
                slug=slug,
                version=version,
                id=question["id"],
                type=question["type"],
                prompt=_text(question.get("prompt"), language, default),
                section_ids=ids,
                section_titles=titles,
                choices={
                    c["value"]: _text(c.get("label"), language, default)
                    for c in question.get("choices") or []
                },
                required=bool(question.get("required", False)),
                relevance=question.get("relevance"),
                minimum=question.get("min"),
                maximum=question.get("max"),
                binds=question.get("binds"),
                probes=tuple(_text(probe, language, default) for probe in question.get("probes") or ()),
            )
        )

    for question in definition.get("metadata", []):
        add(question, ("metadata",), (METADATA_SECTION,))

    def walk(sections: list[dict[str, Any]], ids: tuple[str, ...], titles: tuple[str, ...]) -> None:
        for section in sections:
            here_ids = (*ids, section["id"])
            here_titles = (*titles, _text(section.get("title"), language, default) or section["id"])
            for question in section.get("questions", []):
                add(question, here_ids, here_titles)
            walk(section.get("sections", []), here_ids, here_titles)

    walk(definition.get("sections", []), (), ())
    return VersionInfo(slug, version, digest, tuple(questions), {q.id: q for q in questions})


def load_versions(
    session: Session, refs: set[tuple[str, int]], language: str | None = None
) -> dict[tuple[str, int], VersionInfo]:
    if not refs:
        return {}
    rows = session.execute(
        select(
            Instrument.slug,
            InstrumentVersion.version,
            InstrumentVersion.content_hash,
            InstrumentVersion.definition,
        )
        .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
        .where(Instrument.slug.in_(sorted({slug for slug, _ in refs})))
    )
    return {
        (slug, version): version_info(slug, version, digest, definition, language)
        for slug, version, digest, definition in rows
        if (slug, version) in refs
    }


@dataclass(frozen=True)
class ResponseColumn:
    slug: str
    question: Question  # as in the newest version that has it


def response_columns(versions: dict[tuple[str, int], VersionInfo]) -> list[ResponseColumn]:
    """One column per question id per instrument, in instrument order across versions.

    The newest version gives the order; a question that only older versions have keeps its column,
    placed after the question that preceded it there.
    """
    columns: list[ResponseColumn] = []
    for slug in sorted({slug for slug, _ in versions}):
        chain = sorted((v for (s, _), v in versions.items() if s == slug), key=lambda v: -v.version)
        order: list[str] = []
        newest: dict[str, Question] = {}
        for info in chain:
            previous: str | None = None
            for question in info.questions:
                if question.id not in newest:
                    newest[question.id] = question
                    position = order.index(previous) + 1 if previous is not None else 0
                    order.insert(position, question.id)
                previous = question.id
        columns += [ResponseColumn(slug, newest[qid]) for qid in order]
    return columns
