"""The outline of an instrument as the interviewer will see it, in one language.

Built from a validated definition (a published version's, or a draft's that is not stored), so the
API's preview, the printable interview guide and the console show the same thing. Every text is
localised by ``services.localise`` and therefore marked exactly as the serving API marks it:
``{"text", "lang", "fallback"}``, ``fallback`` true where the language lacks a translation and the
default language's text stands in.
"""

from __future__ import annotations

from itertools import count
from typing import Any

from surveykit.instruments.relevance import parse as parse_relevance
from surveykit.instruments.services import LanguageNotOffered, iter_questions, localise


def relevance_dependencies(relevance: str, order: dict[str, int]) -> list[str]:
    """The ids a relevance rule reads, in the order the questions are asked."""
    references = parse_relevance(relevance).references
    return sorted(references, key=lambda qid: (order.get(qid, len(order)), qid))


def preview(definition: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    """The interviewer's outline of ``definition`` in ``language`` (default: its default language).

    Raises ``LanguageNotOffered`` for a language the instrument does not list.
    """
    language = language or definition["default_language"]
    if language not in definition["languages"]:
        raise LanguageNotOffered(language, definition["languages"])
    localised = localise(definition, language)
    order = {question["id"]: index for index, (_, question) in enumerate(iter_questions(definition))}
    # Questions are numbered 1, 2, 3... in asking order, metadata first, as on the printed guide.
    numbers = count(1)

    def question_outline(question: dict[str, Any], path: str) -> dict[str, Any]:
        relevance = question.get("relevance")
        return {
            "id": question["id"],
            "number": next(numbers),
            "path": path,
            "type": question["type"],
            "required": question["required"],
            "prompt": question["prompt"],
            "choices": [{"value": c["value"], "label": c["label"]} for c in question.get("choices", [])],
            "probes": question["probes"],
            "notes": question.get("notes"),
            "relevance": relevance,
            "depends_on": relevance_dependencies(relevance, order) if relevance else [],
            "binds": question.get("binds"),
            "min": question.get("min"),
            "max": question.get("max"),
        }

    def section_outline(section: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        return {
            "id": section["id"],
            "path": path,
            "depth": depth,
            "title": section["title"],
            "intro": section.get("intro"),
            "questions": [
                question_outline(q, f"{path}.questions[{i}]") for i, q in enumerate(section["questions"])
            ],
            "sections": [
                section_outline(s, f"{path}.sections[{i}]", depth + 1)
                for i, s in enumerate(section.get("sections", []))
            ],
        }

    outline = {
        "slug": definition["slug"],
        "activity": definition["activity"],
        "study": definition.get("study"),
        "language": language,
        "default_language": definition["default_language"],
        "languages": list(definition["languages"]),
        "title": localised["title"],
        "description": localised.get("description"),
        "metadata": [
            question_outline(q, f"metadata[{i}]") for i, q in enumerate(localised.get("metadata", []))
        ],
        "sections": [section_outline(s, f"sections[{i}]", 1) for i, s in enumerate(localised["sections"])],
    }
    outline["fallbacks"] = count_fallbacks(outline)
    return outline


def count_fallbacks(value: Any) -> int:
    """How many localised texts in ``value`` fell back to the default language."""
    if isinstance(value, dict):
        if set(value) == {"text", "lang", "fallback"}:
            return 1 if value["fallback"] else 0
        return sum(count_fallbacks(item) for item in value.values())
    if isinstance(value, list):
        return sum(count_fallbacks(item) for item in value)
    return 0
