"""Facts an instrument question can be bound to: each has one home outside the answers.

A question with ``binds: participant.agency`` asks for a fact whose home is the participant registry
(through the record's ``participants[0]``); ``binds: record.mode`` one whose home is the record's own
field. A bound answer may be left out (it is then taken from its home) and must never contradict it.
"""

from __future__ import annotations

from typing import Any

# How consent was recorded: one set of codes for the registry, records and instruments alike.
CONSENT_RECORDED_HOW = ("written_form", "verbal_audio", "verbal_notes")
RECORD_MODES = ("in_person", "virtual", "phone")


# target -> (question types it can bind, the choice values a bound choice question may offer)
BINDING_TARGETS: dict[str, tuple[frozenset[str], tuple[str, ...] | None]] = {
    "participant.agency": (frozenset({"short_text", "long_text"}), None),
    "participant.position": (frozenset({"short_text", "long_text"}), None),
    "participant.consent_given": (frozenset({"yes_no"}), None),
    "participant.consent_date": (frozenset({"date"}), None),
    "participant.consent_recorded_how": (frozenset({"single_choice"}), CONSENT_RECORDED_HOW),
    "record.mode": (frozenset({"single_choice"}), RECORD_MODES),
    # The local date of the record's started_at (the date where the interview took place).
    "record.started_at": (frozenset({"date"}), None),
}


def check_binding(path: str, question: dict[str, Any], seen: dict[str, str]) -> list[tuple[str, str]]:
    """What is wrong with a question's ``binds`` (``seen``: target -> the path that bound it first)."""
    target = question.get("binds")
    if target is None:
        return []
    if target not in BINDING_TARGETS:
        return [(f"{path}.binds", f"must be one of {', '.join(BINDING_TARGETS)}")]
    if target in seen:
        return [(f"{path}.binds", f"{target} is already bound at {seen[target]}")]
    seen[target] = path
    types, codes = BINDING_TARGETS[target]
    if question["type"] not in types:
        return [(f"{path}.binds", f"{target} binds a question of type {' or '.join(sorted(types))}")]
    if codes is not None:
        offered = [choice["value"] for choice in question.get("choices") or []]
        foreign = [value for value in offered if value not in codes]
        if foreign:
            return [(f"{path}.choices", f"{target} has the codes {', '.join(codes)}, not {foreign[0]!r}")]
    return []
