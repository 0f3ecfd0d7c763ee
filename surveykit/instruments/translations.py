"""Which translations an instrument lacks, and which no longer match their source text.

A text is *missing* in a language when the tablet would fall back to the default language for it.
A translation is *stale* when the default-language text (its source) has changed since the
translation was written. A definition holds no dates, so "since" is read from the published
versions: the translation's current wording was written against the source text of the version
in which that wording first appeared (the latest run of versions carrying it unchanged); if the
source now differs, the translation is stale. Texts are matched across versions by what they
belong to (the question, section or choice id), not by position, so moving a question keeps its
history.

Plain functions over normalised definitions (every text a mapping of language to text); the
validate answer, the CLI and the console all call ``translation_report``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# (stable key, path in this definition, {language: text})
TextEntry = tuple[str, str, dict[str, str]]


def iter_text_entries(definition: dict[str, Any]) -> Iterator[TextEntry]:
    """Every translatable text with a key that survives reordering and its path in this definition."""
    for name in ("title", "description"):
        if name in definition:
            yield name, name, definition[name]
    for index, question in enumerate(definition.get("metadata", [])):
        yield from _question_entries(question, f"metadata[{index}]")

    def sections(items: list[dict[str, Any]], prefix: str) -> Iterator[TextEntry]:
        for index, section in enumerate(items):
            path = f"{prefix}[{index}]"
            for name in ("title", "intro"):
                if name in section:
                    yield f"section:{section['id']}.{name}", f"{path}.{name}", section[name]
            for number, question in enumerate(section.get("questions", [])):
                yield from _question_entries(question, f"{path}.questions[{number}]")
            yield from sections(section.get("sections", []), f"{path}.sections")

    yield from sections(definition.get("sections", []), "sections")


def _question_entries(question: dict[str, Any], path: str) -> Iterator[TextEntry]:
    key = f"question:{question['id']}"
    for name in ("prompt", "notes"):
        if name in question:
            yield f"{key}.{name}", f"{path}.{name}", question[name]
    for index, probe in enumerate(question.get("probes", [])):
        yield f"{key}.probes[{index}]", f"{path}.probes[{index}]", probe
    for index, choice in enumerate(question.get("choices", [])):
        yield f"{key}.choices[{choice['value']}].label", f"{path}.choices[{index}].label", choice["label"]


def translation_report(
    definition: dict[str, Any], history: Iterable[dict[str, Any]] = ()
) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Per language other than the default: ``missing`` texts (``path``, ``source``) and ``stale``
    ones (``path``, ``source``, ``translation``, ``translated_from``: the source text the
    translation was made for). ``history`` is the published versions of the same instrument,
    oldest first (empty for a new one: nothing can be stale yet)."""
    default = definition["default_language"]
    languages = [language for language in definition["languages"] if language != default]
    # (key, language) -> (translation, source text when that translation first appeared)
    written_for: dict[tuple[str, str], tuple[str, str]] = {}
    for earlier in history:
        _remember(earlier, languages, written_for)
    _remember(definition, languages, written_for)

    report: dict[str, dict[str, list[dict[str, str]]]] = {
        language: {"missing": [], "stale": []} for language in languages
    }
    for key, path, texts in iter_text_entries(definition):
        source = texts.get(default, "")
        for language in languages:
            translation = texts.get(language)
            if translation is None:
                report[language]["missing"].append({"path": path, "source": source})
                continue
            _, original = written_for[(key, language)]
            if original != source:
                report[language]["stale"].append(
                    {"path": path, "source": source, "translation": translation, "translated_from": original}
                )
    return report


def _remember(
    definition: dict[str, Any], languages: list[str], written_for: dict[tuple[str, str], tuple[str, str]]
) -> None:
    default = definition["default_language"]
    for key, _, texts in iter_text_entries(definition):
        source = texts.get(default, "")
        for language in languages:
            translation = texts.get(language)
            if translation is None:
                written_for.pop((key, language), None)
                continue
            known = written_for.get((key, language))
            if known is None or known[0] != translation:
                written_for[(key, language)] = (translation, source)


def report_rows(report: dict[str, dict[str, list[dict[str, str]]]]) -> list[tuple[str, str, str, str]]:
    """The report as table rows (language, state, path, source text) for the CLI."""
    rows = []
    for language, states in report.items():
        for state in ("missing", "stale"):
            for item in states[state]:
                rows.append((language, state, item["path"], item["source"]))
    return rows
