"""Bring work done in a QDA tool back: a .qdc codebook into the study's codes, and the codings of a
.qdpx that surveykit exported into the country's codings.

Both are all-or-nothing: every problem is collected first, and if there is one, ``ImportRefused``
lists them all and nothing is written. Both can be dry runs that report what would change.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis import codebook as codebook_rules
from surveykit.analysis import refi_model as refi
from surveykit.analysis.exchange import ExchangeScope, source_guid
from surveykit.analysis.models import Code, Coding
from surveykit.analysis.refi_read import Problem, selection_path
from surveykit.db import utcnow
from surveykit.studies.models import Study
from surveykit.sync.models import Interview

MAX_NAME = 200
DEFAULT_COLOUR = "#808080"
_SHORT_RGB = re.compile(r"#([0-9A-Fa-f])([0-9A-Fa-f])([0-9A-Fa-f])")


class ImportRefused(Exception):
    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


def _colour(value: str | None) -> str | None:
    if value is None:
        return None
    short = _SHORT_RGB.fullmatch(value)
    if short:
        return "#" + "".join(part * 2 for part in short.groups()).lower()
    return value.lower()


# ---------------------------------------------------------------------------------------- codebook


@dataclass
class CodebookChanges:
    created: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def _codebook_problems(
    session: Session, study_id: int, codes: list[tuple[refi.Code, str | None, str]]
) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for code, _parent, path in codes:
        if code.guid in seen:
            problems.append(Problem(path, f"the guid {code.guid} appears twice in the codebook"))
        seen.add(code.guid)
        if not code.name.strip():
            problems.append(Problem(path, "a code needs a name"))
        elif len(code.name) > MAX_NAME:
            problems.append(Problem(path, f"the name is longer than {MAX_NAME} characters"))
    foreign = session.scalars(select(Code.guid).where(Code.guid.in_(seen), Code.study_id != study_id)).all()
    paths = {code.guid: path for code, _parent, path in codes}
    problems += [Problem(paths[guid], f"the guid {guid} is a code of another study") for guid in foreign]
    return problems


def _flatten(codes: list[refi.Code]) -> list[tuple[refi.Code, str | None, str]]:
    """(code, parent guid, path in the .qdc), parents first."""
    found: list[tuple[refi.Code, str | None, str]] = []

    def walk(level: list[refi.Code], parent: str | None, path: str) -> None:
        for index, code in enumerate(level, start=1):
            here = f"{path}/Code[{index}]"
            found.append((code, parent, here))
            walk(code.children, code.guid, here)

    walk(codes, None, "codebook:/CodeBook/Codes[1]")
    return found


def import_codebook(
    session: Session, study_id: int, codebook: refi.Codebook, username: str, *, dry_run: bool
) -> CodebookChanges:
    """Codes matched by guid are updated (name, definition, colour, parent), new guids become codes;
    no code is deleted, and a code's status (retired, merged) is left as it is."""
    flat = _flatten(codebook.codes)
    problems = _codebook_problems(session, study_id, flat)
    if problems:
        raise ImportRefused("the codebook cannot be imported", problems)
    existing = {
        code.guid: code
        for code in session.scalars(
            select(Code).where(Code.study_id == study_id, Code.guid.in_([c.guid for c, _, _ in flat]))
        )
    }
    changes = CodebookChanges()
    ids: dict[str, int | None] = {guid: code.id for guid, code in existing.items()}
    now = utcnow()
    for code, parent, _path in flat:
        colour = _colour(code.color)
        current = existing.get(code.guid)
        if current is None:
            changes.created.append({"guid": code.guid, "name": code.name, "parent": parent})
            if not dry_run:
                row = Code(
                    guid=code.guid,
                    study_id=study_id,
                    parent_id=ids[parent] if parent else None,
                    name=code.name,
                    definition=code.description,
                    colour=colour or DEFAULT_COLOUR,
                    created_by=username,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                ids[code.guid] = row.id
            else:
                ids[code.guid] = None
            continue
        wanted = {
            "name": code.name,
            "definition": code.description,
            "colour": colour or current.colour,
            "parent_id": ids[parent] if parent else None,
        }
        if dry_run and parent and ids[parent] is None:
            wanted["parent_id"] = -1  # under a code the import would create: a change either way
        changed = sorted(key for key, value in wanted.items() if getattr(current, key) != value)
        if not changed:
            changes.unchanged += 1
            continue
        changes.updated.append({"guid": code.guid, "name": code.name, "fields": changed})
        if not dry_run:
            for key in changed:
                setattr(current, key, wanted[key])
            current.version += 1
            current.updated_at = now
    if not dry_run:
        session.flush()
    return changes


# ----------------------------------------------------------------------------------------- codings


@dataclass
class CodingChanges:
    created: list[dict[str, Any]] = field(default_factory=list)
    already_there: int = 0
    sources_ignored: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "already_there": self.already_there,
            "sources_ignored": self.sources_ignored,
        }


@dataclass(frozen=True)
class _Answer:
    interview: Interview
    question_id: str
    text: str
    quotes: dict[str, tuple[int, int]]


def _answers(session: Session, scope: ExchangeScope, lock: bool) -> dict[str, _Answer]:
    """Every text answer of the scope's interviews, by the guid its source has in an export; with
    ``lock``, the interviews are held ``FOR SHARE`` (in UUID order, as the sync push locks them) so
    that no new revision is accepted before the codings made on these answers commit."""
    statement = select(Interview).where(
        Interview.study_id == scope.study_id, Interview.country_code.in_(scope.countries)
    )
    if lock:
        statement = (
            statement.order_by(Interview.uuid)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
    found = {}
    for interview in session.scalars(statement):
        record = interview.record or {}
        quotes: dict[str, dict[str, tuple[int, int]]] = {}
        for quote in record.get("quotes") or []:
            if isinstance(quote, dict) and isinstance(quote.get("id"), str):
                start, end = quote.get("start"), quote.get("end")
                quotes.setdefault(str(quote.get("question_id")), {})[quote["id"].lower()] = (start, end)
        for question_id, text in (record.get("answers") or {}).items():
            if isinstance(text, str) and text:
                found[source_guid(interview.uuid, question_id)] = _Answer(
                    interview, question_id, text, quotes.get(question_id, {})
                )
    return found


def _coding_guid(guid: str) -> str:
    try:
        return str(uuid.UUID(guid))
    except ValueError:
        return str(uuid.uuid4())


def import_codings(
    session: Session,
    scope: ExchangeScope,
    project: refi.Project,
    coder_id: int,
    coder: str,
    *,
    dry_run: bool,
) -> CodingChanges:
    """The codings of ``project`` on sources surveykit exported become codings of ``coder``.

    A coding is matched to its answer by the source's guid, its text checked against the current
    answer, and its code found by guid in the study's codebook. A coding already in surveykit (same
    guid, or the same code on the same passage by the same coder) is not created again.
    """
    if not dry_run:
        # The codebook first (no code is merged or retired under the new codings), then the
        # interviews: the order a coding made through the API takes its locks in.
        codebook_rules.lock_codebook(session, session.get_one(Study, scope.study_id))
    answers = _answers(session, scope, lock=not dry_run)
    codes = {code.guid: code for code in session.scalars(select(Code).where(Code.study_id == scope.study_id))}
    wanted = [c.guid for s in project.sources for sel in s.selections for c in sel.codings]
    known_guids = (
        set(session.scalars(select(Coding.guid).where(Coding.guid.in_(wanted)))) if wanted else set()
    )
    mine = {
        (c.interview_uuid, c.question_id, c.code_id, c.start_offset, c.end_offset)
        for c in session.scalars(
            select(Coding).where(
                Coding.study_id == scope.study_id,
                Coding.country_code.in_(scope.countries),
                Coding.coder_id == coder_id,
            )
        )
    }
    problems: list[Problem] = []
    changes = CodingChanges()
    rows: list[Coding] = []
    now = utcnow()
    for source_index, source in enumerate(project.sources):
        coded = [sel for sel in source.selections if sel.codings]
        answer = answers.get(source.guid)
        if answer is None:
            if coded:
                problems.append(
                    Problem(
                        f"project.qde:/Project/Sources[1]/TextSource[{source_index + 1}]",
                        f"the source {source.name!r} ({source.guid}) is not an answer of {scope.target}: "
                        "only sources surveykit exported can carry codings back",
                    )
                )
            else:
                changes.sources_ignored += 1
            continue
        if coded and source.text != answer.text:
            problems.append(
                Problem(
                    f"project.qde:/Project/Sources[1]/TextSource[{source_index + 1}]",
                    f"the text of {source.name!r} differs from the current answer (revision "
                    f"{answer.interview.revision}): export the project again and redo these codings there",
                )
            )
            continue
        for selection_index, selection in enumerate(source.selections):
            where = selection_path(source_index, selection_index)
            if not selection.codings:
                continue
            if not 0 <= selection.start < selection.end <= len(answer.text):
                problems.append(
                    Problem(
                        where,
                        f"positions {selection.start}-{selection.end} are outside the answer "
                        f"(0-{len(answer.text)} characters)",
                    )
                )
                continue
            quote_id = (
                selection.guid
                if answer.quotes.get(selection.guid) == (selection.start, selection.end)
                else None
            )
            for coding in selection.codings:
                if coding.guid in known_guids:
                    changes.already_there += 1
                    continue
                code = codes.get(coding.code_guid)
                if code is None:
                    problems.append(
                        Problem(
                            where,
                            f"the code {coding.code_guid} is not in the study's codebook: import the "
                            "project's codebook first (POST codebook.qdc)",
                        )
                    )
                    continue
                if code.status != "active":
                    problems.append(Problem(where, f"the code {code.name!r} is {code.status}"))
                    continue
                key = (answer.interview.uuid, answer.question_id, code.id, selection.start, selection.end)
                if key in mine:
                    changes.already_there += 1
                    continue
                mine.add(key)
                known_guids.add(coding.guid)
                row = Coding(
                    guid=_coding_guid(coding.guid),
                    study_id=scope.study_id,
                    country_code=answer.interview.country_code,
                    code_id=code.id,
                    interview_uuid=answer.interview.uuid,
                    question_id=answer.question_id,
                    quote_id=quote_id,
                    start_offset=selection.start,
                    end_offset=selection.end,
                    text=answer.text[selection.start : selection.end],
                    memo=selection.description if quote_id is None else "",
                    coder_id=coder_id,
                    coder=coder,
                    anchor="current",
                    anchored_revision=answer.interview.revision,
                    created_at=now,
                    updated_at=now,
                )
                rows.append(row)
                changes.created.append(
                    {
                        "guid": row.guid,
                        "code": code.guid,
                        "source": source.name,
                        "start": row.start_offset,
                        "end": row.end_offset,
                    }
                )
    if problems:
        raise ImportRefused("the codings cannot be imported", problems[:50])
    if not dry_run:
        session.add_all(rows)
        session.flush()
    return changes
