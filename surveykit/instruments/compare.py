"""What changes between two definitions of one instrument, question by question.

Questions are matched by id (the id links answers across versions). Each change is one entry of
``changes`` with its ``question`` and ``kind``:

- ``added``, ``removed``;
- ``moved``: to another section, or out of order with the questions around it;
- ``reworded``: the prompt, one entry per language whose text changed (``old``/``new`` None where a
  translation was added or dropped);
- ``type_changed``, ``required_changed``, ``relevance_changed`` (old and new expression text),
  ``notes_changed``, ``probes_changed``;
- ``choice_added``, ``choice_removed``, ``choice_relabelled`` (per language);
- ``setting_changed``: ``min``, ``max`` or ``binds``.

A ``type_changed`` entry says whether publishing would be refused, and why: the answer comes from
the type-change guard of ``services.publish`` itself (``services.type_change_problems``), which the
caller runs against the stored versions and passes in as ``refusals``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from surveykit.instruments.services import (
    content_hash,
    find_version,
    iter_questions,
    load_definition,
    type_change_problems,
)

CHANGE_KINDS = (
    "added",
    "removed",
    "moved",
    "reworded",
    "type_changed",
    "required_changed",
    "relevance_changed",
    "notes_changed",
    "probes_changed",
    "choice_added",
    "choice_removed",
    "choice_relabelled",
    "setting_changed",
)
SETTINGS = ("min", "max", "binds")


def question_places(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each question id -> its question, path, section (``metadata`` for the interview metadata, else
    the trail of section ids) and position (1-based within its section), in asking order."""
    places: dict[str, dict[str, Any]] = {}
    trails = _section_trails(definition)
    for path, question in iter_questions(definition):
        holder, _, index = path.rpartition("[")
        if holder == "metadata":
            section: list[str] = ["metadata"]
        else:
            section = trails[holder.removesuffix(".questions")]
        places[question["id"]] = {
            "question": question,
            "path": path,
            "section": section,
            "position": int(index.rstrip("]")) + 1,
        }
    return places


def _section_trails(definition: dict[str, Any]) -> dict[str, list[str]]:
    trails: dict[str, list[str]] = {}

    def walk(sections: list[dict[str, Any]], prefix: str, trail: list[str]) -> None:
        for index, section in enumerate(sections):
            path = f"{prefix}[{index}]"
            trails[path] = [*trail, section["id"]]
            walk(section.get("sections", []), f"{path}.sections", trails[path])

    walk(definition["sections"], "sections", [])
    return trails


def _longest_common_order(first: list[str], second: list[str]) -> set[str]:
    """The ids of a longest common subsequence of two orders (questions that kept their order)."""
    rows, cols = len(first), len(second)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            if first[i] == second[j]:
                table[i][j] = table[i + 1][j + 1] + 1
            else:
                table[i][j] = max(table[i + 1][j], table[i][j + 1])
    kept, i, j = set(), 0, 0
    while i < rows and j < cols:
        if first[i] == second[j]:
            kept.add(first[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return kept


def _text_changes(old: dict[str, str] | None, new: dict[str, str] | None) -> list[dict[str, Any]]:
    old, new = old or {}, new or {}
    return [
        {"language": language, "old": old.get(language), "new": new.get(language)}
        for language in sorted(set(old) | set(new))
        if old.get(language) != new.get(language)
    ]


def _place(place: dict[str, Any]) -> dict[str, Any]:
    return {"section": place["section"], "position": place["position"], "path": place["path"]}


def compare_definitions(
    old: dict[str, Any],
    new: dict[str, Any],
    refusals: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The changes from ``old`` to ``new`` (both validated definitions of one instrument).

    ``refusals`` are the type-change guard's (path, message) pairs for publishing ``new``; they are
    attached to the ``type_changed`` entries of the questions at those paths.
    """
    before, after = question_places(old), question_places(new)
    refused_at = dict(refusals)
    changes: list[dict[str, Any]] = []

    common_old = [qid for qid in before if qid in after]
    common_new = [qid for qid in after if qid in before]
    in_order = _longest_common_order(common_old, common_new)

    for qid, place in after.items():
        if qid not in before:
            # The guard remembers every earlier version: an id removed once and now back with another
            # type is refused too.
            message = refused_at.get(f"{place['path']}.type")
            changes.append(
                {
                    "question": qid,
                    "kind": "added",
                    "to": _place(place),
                    "refused": message is not None,
                    "refusal": message,
                }
            )
            continue
        was = before[qid]
        if was["section"] != place["section"] or qid not in in_order:
            changes.append({"question": qid, "kind": "moved", "from": _place(was), "to": _place(place)})
        changes.extend(_question_changes(qid, was["question"], place["question"], place, refused_at))
    for qid, place in before.items():
        if qid not in after:
            changes.append({"question": qid, "kind": "removed", "from": _place(place)})

    old_hash, new_hash = content_hash(old), content_hash(new)
    counts = {kind: 0 for kind in CHANGE_KINDS}
    for change in changes:
        counts[change["kind"]] += 1
    refused = [
        {"path": path, "message": message, "question": _question_at(after, path.removesuffix(".type"))}
        for path, message in refused_at.items()
    ]
    return {
        "slug": new["slug"],
        "identical": old_hash == new_hash,
        "from_content_hash": old_hash,
        "to_content_hash": new_hash,
        "changes": changes,
        "counts": counts,
        "refused": refused,
        "publishable": not refused,
    }


def _question_at(places: dict[str, dict[str, Any]], path: str) -> str | None:
    return next((qid for qid, place in places.items() if place["path"] == path), None)


def _question_changes(
    qid: str,
    old: dict[str, Any],
    new: dict[str, Any],
    place: dict[str, Any],
    refused_at: dict[str, str],
) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []

    def add(kind: str, **details: Any) -> None:
        changes.append({"question": qid, "kind": kind, **details})

    for change in _text_changes(old["prompt"], new["prompt"]):
        add("reworded", **change)
    if old["type"] != new["type"]:
        message = refused_at.get(f"{place['path']}.type")
        add("type_changed", old=old["type"], new=new["type"], refused=message is not None, refusal=message)
    if old["required"] != new["required"]:
        add("required_changed", old=old["required"], new=new["required"])
    if old.get("relevance") != new.get("relevance"):
        add("relevance_changed", old=old.get("relevance"), new=new.get("relevance"))
    if old.get("notes") != new.get("notes"):
        add("notes_changed", old=old.get("notes"), new=new.get("notes"))
    if old["probes"] != new["probes"]:
        add("probes_changed", old=old["probes"], new=new["probes"])
    old_choices = {c["value"]: c["label"] for c in old.get("choices", [])}
    new_choices = {c["value"]: c["label"] for c in new.get("choices", [])}
    for value, label in new_choices.items():
        if value not in old_choices:
            add("choice_added", value=value, label=label)
    for value, label in old_choices.items():
        if value not in new_choices:
            add("choice_removed", value=value, label=label)
        else:
            for change in _text_changes(label, new_choices[value]):
                add("choice_relabelled", value=value, **change)
    for setting in SETTINGS:
        if old.get(setting) != new.get(setting):
            add("setting_changed", setting=setting, old=old.get(setting), new=new.get(setting))
    return changes


def compare_versions(
    session: Session, slug: str, from_version: int | None, to_version: int | None = None
) -> dict[str, Any]:
    """Two stored versions of ``slug``; ``to`` defaults to the current version, ``from`` to the one
    before ``to``. Raises ``InstrumentNotFound`` or ``VersionNotFound``."""
    target = find_version(session, slug, to_version)
    source = find_version(
        session, slug, from_version if from_version is not None else max(1, target.version - 1)
    )
    new = load_definition(session, slug, target.version)
    result = compare_definitions(
        load_definition(session, slug, source.version), new, type_change_problems(session, slug, new)
    )
    return {
        "from": {"version": source.version, "draft": False},
        "to": {"version": target.version, "draft": False},
        **result,
    }


def compare_with_draft(
    session: Session, slug: str, from_version: int | None, draft: dict[str, Any]
) -> dict[str, Any]:
    """A stored version of ``slug`` (default: the current one) and a validated draft of it."""
    source = find_version(session, slug, from_version)
    result = compare_definitions(
        load_definition(session, slug, source.version), draft, type_change_problems(session, slug, draft)
    )
    return {
        "from": {"version": source.version, "draft": False},
        "to": {"version": None, "draft": True},
        **result,
    }
