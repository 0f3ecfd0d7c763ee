"""A study's codebook: a tree of codes (themes and sub-themes) analysts code passages with.

Plain functions over a session. Nothing is ever deleted: a code is retired (and may be reactivated),
or merged into another code, whose codings then include the merged code's (each remembering where
it came from, ``Coding.original_code_id``). Every change bumps the code's ``version``; a change
names the version its author saw, so two analysts editing one code cannot overwrite each other
silently. Each change is returned as a ``Change`` for the caller to write to the audit log, which is
the code's history.

Sibling names are unique case-insensitively among codes that are not merged, and a name never holds
``/``: a code's path (``Capacity / Training``) names it unambiguously, in files too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from surveykit import text as text_rule
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow
from surveykit.studies.models import Study

NAME_MAX = 200
DEFINITION_MAX = 10_000
DEFAULT_COLOUR = "#808080"
COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
PATH_SEPARATOR = "/"
# Themes, sub-themes and a few levels more; deeper trees are refused rather than walked.
MAX_DEPTH = 12
# Integer columns are 32-bit on PostgreSQL: a larger id is simply no code.
MAX_ID = 2**31 - 1
HISTORY_LIMIT = 1000


class CodebookError(ValueError):
    """A change the codebook refuses; ``field`` is the input it is about."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NameTaken(CodebookError):
    """Another code under the same parent already has this name."""


class StaleVersion(CodebookError):
    """The caller saw an older version of the code than the stored one."""

    def __init__(self, code: Code, expected: int) -> None:
        super().__init__(
            f"code {code.id} is at version {code.version}, not {expected}: it was changed meanwhile; "
            "read it again and re-apply your change",
            "version",
        )
        self.current = code.version


class StatusRefused(CodebookError):
    """The change does not apply to a code in its status (e.g. retiring a merged code)."""


class CodeNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Change:
    """One audit entry to write: ``codebook.code_created`` and the like, with before/after values."""

    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


def code_target(study: Study, code_id: int) -> str:
    """The audit target of a code: its history is every event with this target."""
    return f"{study.slug}/codes/{code_id}"


# ----------------------------------------------------------------------------------------- reading


def study_codes(session: Session, study: Study) -> list[Code]:
    return list(session.scalars(select(Code).where(Code.study_id == study.id).order_by(Code.id)))


def coding_counts(session: Session, study: Study) -> dict[int, int]:
    rows = session.execute(
        select(Coding.code_id, func.count()).where(Coding.study_id == study.id).group_by(Coding.code_id)
    )
    return {code_id: count for code_id, count in rows}


def paths_of(codes: Iterable[Code]) -> dict[int, str]:
    """Each code's path, ``Theme / Sub-theme``, from its ancestors' names."""
    by_id = {code.id: code for code in codes}
    paths: dict[int, str] = {}
    for code in by_id.values():
        chain: list[Code] = []
        current: Code | None = code
        while current is not None and current.id not in paths and len(chain) <= len(by_id):
            chain.append(current)
            current = by_id.get(current.parent_id) if current.parent_id is not None else None
        prefix = paths[current.id] if current is not None and current.id in paths else None
        for link in reversed(chain):
            prefix = link.name if prefix is None else f"{prefix} {PATH_SEPARATOR} {link.name}"
            paths[link.id] = prefix
    return paths


def describe_code(code: Code, path: str, codings: int) -> dict[str, Any]:
    return {
        "id": code.id,
        "guid": code.guid,
        "name": code.name,
        "definition": code.definition,
        "colour": code.colour,
        "status": code.status,
        "parent": code.parent_id,
        "merged_into": code.merged_into_id,
        "version": code.version,
        "path": path,
        "codings": codings,
        "created_by": code.created_by,
        "created_at": code.created_at.isoformat(),
        "updated_at": code.updated_at.isoformat(),
    }


def describe_one(session: Session, study: Study, code: Code) -> dict[str, Any]:
    codes = study_codes(session, study)
    count = session.scalar(select(func.count()).select_from(Coding).where(Coding.code_id == code.id))
    return describe_code(code, paths_of(codes)[code.id], count or 0)


def codebook_tree(session: Session, study: Study) -> list[dict[str, Any]]:
    """The codes as a tree (each with its ``children``), siblings by name; merged codes included
    (``status`` says so), retired and merged ones where they stand."""
    codes = study_codes(session, study)
    paths = paths_of(codes)
    counts = coding_counts(session, study)
    nodes = {
        code.id: {**describe_code(code, paths[code.id], counts.get(code.id, 0)), "children": []}
        for code in codes
    }
    roots: list[dict[str, Any]] = []
    for code in sorted(codes, key=lambda c: (c.name.casefold(), c.id)):
        siblings = roots if code.parent_id is None else nodes[code.parent_id]["children"]
        siblings.append(nodes[code.id])
    return roots


def get_code(session: Session, study: Study, code_id: int, for_update: bool = False) -> Code:
    """A code of ``study``; a code of another study is as unknown as a code that does not exist."""
    if not 0 < code_id <= MAX_ID:
        raise CodeNotFound(f"no code {code_id} in study {study.slug}")
    statement = select(Code).where(Code.id == code_id, Code.study_id == study.id)
    if for_update:
        statement = statement.with_for_update()
    code = session.scalar(statement)
    if code is None:
        raise CodeNotFound(f"no code {code_id} in study {study.slug}")
    return code


def code_history(session: Session, study: Study, code: Code) -> list[AuditEvent]:
    """Every audited change of the code, oldest first."""
    statement = (
        select(AuditEvent)
        .where(AuditEvent.target == code_target(study, code.id), AuditEvent.outcome == "success")
        .order_by(AuditEvent.id)
        .limit(HISTORY_LIMIT)
    )
    return list(session.scalars(statement))


def lock_codebook(session: Session, study: Study) -> None:
    """Serialise changes of one study's codebook until the transaction ends (the study's row lock on
    PostgreSQL; SQLite's write lock does it there). Sibling names are unique case-insensitively,
    which no index states, so two concurrent creations must not both pass the check. Taken before
    any code's row, so that two changes never wait on each other.

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: the sync push and a new coding insert rows whose
    foreign key points at the study (``FOR KEY SHARE`` on its row), and must not wait for an
    analyst editing the codebook."""
    session.execute(select(Study.id).where(Study.id == study.id).with_for_update(key_share=True))


# -------------------------------------------------------------------------------------- checking


def clean_name(name: str, field: str = "name") -> str:
    name = " ".join(name.split())
    if not name:
        raise CodebookError("name must not be empty", field)
    if message := text_rule.text_problem(name):
        raise CodebookError(f"name {message}", field)
    if PATH_SEPARATOR in name:
        raise CodebookError(
            f"name must not contain {PATH_SEPARATOR!r}: it separates the levels of a path", field
        )
    if len(name) > NAME_MAX:
        raise CodebookError(f"name is longer than {NAME_MAX} characters ({len(name)})", field)
    return name


def check_definition(definition: str, field: str = "definition") -> str:
    if message := text_rule.text_problem(definition, multiline=True):
        raise CodebookError(f"definition {message}", field)
    if len(definition) > DEFINITION_MAX:
        raise CodebookError(
            f"definition is longer than {DEFINITION_MAX} characters ({len(definition)})", field
        )
    return definition


def check_colour(colour: str, field: str = "colour") -> str:
    if not COLOUR.match(colour):
        raise CodebookError("colour must be #RRGGBB, six hexadecimal digits such as #1F77B4", field)
    return colour.upper()


def check_version(code: Code, expected: int | None) -> None:
    if expected is not None and expected != code.version:
        raise StaleVersion(code, expected)


def name_key(name: str) -> str:
    return name.casefold()


def _sibling_named(
    session: Session, study: Study, parent_id: int | None, name: str, exclude: int | None = None
) -> Code | None:
    statement = select(Code).where(
        Code.study_id == study.id,
        Code.status != "merged",
        Code.parent_id.is_(None) if parent_id is None else Code.parent_id == parent_id,
    )
    for code in session.scalars(statement):
        if code.id != exclude and name_key(code.name) == name_key(name):
            return code
    return None


def _check_name_free(
    session: Session, study: Study, parent_id: int | None, name: str, exclude: int | None = None
) -> None:
    taken = _sibling_named(session, study, parent_id, name, exclude)
    if taken is not None:
        where = "at the top of the codebook" if parent_id is None else f"under code {parent_id}"
        raise NameTaken(f"code {taken.id} is already named {taken.name!r} {where}", "name")


def _levels_below(session: Session, study: Study, code: Code) -> dict[int, int]:
    """The code's descendants, each with how many levels below the code it lies."""
    children: dict[int, list[int]] = {}
    for code_id, parent_id in session.execute(
        select(Code.id, Code.parent_id).where(Code.study_id == study.id, Code.parent_id.is_not(None))
    ):
        children.setdefault(parent_id, []).append(code_id)
    found: dict[int, int] = {}
    pending = [(code.id, 0)]
    while pending:
        current, level = pending.pop()
        for child in children.get(current, []):
            if child not in found:
                found[child] = level + 1
                pending.append((child, level + 1))
    return found


def _depth(session: Session, code: Code) -> int:
    """1 for a code at the top of the tree, 2 for its children, and so on."""
    depth = 1
    while code.parent_id is not None and depth <= MAX_DEPTH:
        code = session.get_one(Code, code.parent_id)
        depth += 1
    return depth


def _check_depth(depth: int, field: str) -> None:
    if depth > MAX_DEPTH:
        raise CodebookError(f"the codebook would be deeper than {MAX_DEPTH} levels", field)


def _parent(session: Session, study: Study, parent_id: int | None, moving: Code | None = None) -> Code | None:
    """The new parent, checked: of the study, not merged, and not the moving code or one below it."""
    if parent_id is None:
        return None
    try:
        parent = get_code(session, study, parent_id)
    except CodeNotFound as exc:
        raise CodebookError(
            f"no code {parent_id} in this study to place the code under", "parent_id"
        ) from exc
    if parent.status == "merged":
        raise CodebookError(
            f"code {parent.id} was merged into code {parent.merged_into_id}: place the code there",
            "parent_id",
        )
    below = _levels_below(session, study, moving) if moving is not None else {}
    if moving is not None and (parent.id == moving.id or parent.id in below):
        raise CodebookError("a code cannot be moved under itself or one of its own sub-codes", "parent_id")
    _check_depth(_depth(session, parent) + 1 + max(below.values(), default=0), "parent_id")
    return parent


def _touch(code: Code) -> None:
    code.version += 1
    code.updated_at = utcnow()


# -------------------------------------------------------------------------------------- changing


def create_code(
    session: Session,
    study: Study,
    actor: str,
    *,
    name: str,
    definition: str = "",
    colour: str | None = None,
    parent_id: int | None = None,
    guid: str | None = None,
) -> tuple[Code, Change]:
    name = clean_name(name)
    definition = check_definition(definition)
    colour = check_colour(colour) if colour is not None else DEFAULT_COLOUR
    parent = _parent(session, study, parent_id)
    _check_name_free(session, study, parent_id, name)
    now = utcnow()
    code = Code(
        guid=guid or str(uuid.uuid4()),
        study_id=study.id,
        parent_id=parent.id if parent is not None else None,
        name=name,
        definition=definition,
        colour=colour,
        status="active",
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(code)
    session.flush()
    after = {
        "name": name,
        "definition": definition,
        "colour": colour,
        "parent": code.parent_id,
        "guid": code.guid,
    }
    return code, Change(
        "codebook.code_created", code_target(study, code.id), {"code": code.id, "after": after}
    )


EDITABLE = ("name", "definition", "colour", "parent_id")


def update_code(
    session: Session, study: Study, code: Code, expected_version: int | None, changes: dict[str, Any]
) -> Change | None:
    """Apply ``changes`` (any of name, definition, colour, parent_id); None when nothing differs."""
    check_version(code, expected_version)
    if code.status == "merged":
        raise StatusRefused(
            f"code {code.id} was merged into code {code.merged_into_id}: change that one", "status"
        )
    wanted: dict[str, Any] = {}
    if "name" in changes:
        wanted["name"] = clean_name(changes["name"])
    if "definition" in changes:
        wanted["definition"] = check_definition(changes["definition"] or "")
    if "colour" in changes:
        wanted["colour"] = check_colour(changes["colour"])
    if "parent_id" in changes:
        parent = _parent(session, study, changes["parent_id"], moving=code)
        wanted["parent_id"] = parent.id if parent is not None else None
    differing = {key: value for key, value in wanted.items() if getattr(code, key) != value}
    if not differing:
        return None
    if "name" in differing or "parent_id" in differing:
        _check_name_free(
            session, study, wanted.get("parent_id", code.parent_id), wanted.get("name", code.name), code.id
        )
    before = {_public(key): getattr(code, key) for key in differing}
    for key, value in differing.items():
        setattr(code, key, value)
    _touch(code)
    session.flush()
    after = {_public(key): value for key, value in differing.items()}
    return Change(
        "codebook.code_updated",
        code_target(study, code.id),
        {"code": code.id, "version": code.version, "before": before, "after": after},
    )


def _public(key: str) -> str:
    return "parent" if key == "parent_id" else key


def retire_code(session: Session, study: Study, code: Code, expected_version: int | None) -> Change:
    """Retired: kept with its codings, offered no more for new codings."""
    return _set_status(session, study, code, expected_version, "active", "retired", "codebook.code_retired")


def reactivate_code(session: Session, study: Study, code: Code, expected_version: int | None) -> Change:
    return _set_status(
        session, study, code, expected_version, "retired", "active", "codebook.code_reactivated"
    )


def _set_status(
    session: Session, study: Study, code: Code, expected: int | None, before: str, after: str, action: str
) -> Change:
    check_version(code, expected)
    if code.status != before:
        raise StatusRefused(f"code {code.id} is {code.status}, not {before}", "status")
    code.status = after
    _touch(code)
    session.flush()
    details = {
        "code": code.id,
        "version": code.version,
        "before": {"status": before},
        "after": {"status": after},
    }
    return Change(action, code_target(study, code.id), details)


def merge_code(
    session: Session, study: Study, source: Code, target_id: int, expected_version: int | None
) -> list[Change]:
    """Merge ``source`` into code ``target_id``: its codings and sub-codes move there, it stays
    as a ``merged`` code pointing at the target (so old references still resolve)."""
    check_version(source, expected_version)
    if source.status == "merged":
        raise StatusRefused(
            f"code {source.id} was already merged into code {source.merged_into_id}", "status"
        )
    try:
        target = get_code(session, study, target_id, for_update=True)
    except CodeNotFound as exc:
        raise CodebookError(f"no code {target_id} in this study to merge into", "into") from exc
    if target.id == source.id:
        raise CodebookError("a code cannot be merged into itself", "into")
    if target.status != "active":
        raise CodebookError(f"code {target.id} is {target.status}: merge into an active code", "into")
    below = _levels_below(session, study, source)
    if target.id in below:
        raise CodebookError(
            f"code {target.id} lies under code {source.id}: move it out before merging into it", "into"
        )
    # The sub-codes move up or down to the target's level, with everything below them.
    _check_depth(_depth(session, target) + max(below.values(), default=0), "into")
    children = list(session.scalars(select(Code).where(Code.parent_id == source.id).order_by(Code.id)))
    for child in children:
        if child.status != "merged" and (clash := _sibling_named(session, study, target.id, child.name)):
            raise NameTaken(
                f"sub-code {child.id} ({child.name!r}) would sit beside code {clash.id} of the same name "
                f"under code {target.id}: rename one of them first",
                "into",
            )
    # The codings' rows in id order, as the sync push locks an interview's codings: the two never
    # wait on each other in a circle.
    session.execute(
        select(Coding.id).where(Coding.code_id == source.id).order_by(Coding.id).with_for_update()
    )
    moved = session.execute(
        update(Coding)
        .where(Coding.code_id == source.id)
        .values(
            code_id=target.id,
            original_code_id=func.coalesce(Coding.original_code_id, source.id),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    # Codes merged into the source earlier now point at the final target, as their codings do.
    session.execute(
        update(Code)
        .where(Code.merged_into_id == source.id)
        .values(merged_into_id=target.id)
        .execution_options(synchronize_session="fetch")
    )
    changes = []
    for child in children:
        child.parent_id = target.id
        _touch(child)
        changes.append(
            Change(
                "codebook.code_updated",
                code_target(study, child.id),
                {
                    "code": child.id,
                    "version": child.version,
                    "before": {"parent": source.id},
                    "after": {"parent": target.id},
                },
            )
        )
    before_status = source.status
    source.status = "merged"
    source.merged_into_id = target.id
    _touch(source)
    _touch(target)
    session.flush()
    details = {
        "code": source.id,
        "into": target.id,
        "codings_moved": moved,
        "children_moved": [child.id for child in children],
    }
    return [
        Change(
            "codebook.code_merged",
            code_target(study, source.id),
            {
                **details,
                "version": source.version,
                "before": {"status": before_status, "merged_into": None},
                "after": {"status": "merged", "merged_into": target.id},
            },
        ),
        Change("codebook.code_merged", code_target(study, target.id), {**details, "version": target.version}),
        *changes,
    ]
